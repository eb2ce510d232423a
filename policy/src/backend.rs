//! Which iptables Twill's rules go through: `iptables-legacy` (the kernel's x_tables) or
//! `iptables-nft` (the same rules as nftables). Both can hold rules at once and the kernel runs
//! both, but rules must sit beside kube-proxy's and kubelet's: NAT split across the two breaks
//! connections, and a chain in one cannot be jumped to from the other. So the backend is read
//! from the node, by Twill's own rule built from two others': kubelet's marker chain, looked
//! for in nft first (as Kubernetes' iptables-wrapper does); else the backend holding more rules
//! not Twill's own (as Calico's `iptablesBackend: Auto` counts them; a tie goes to nft); else
//! nft, the default of Debian 11+, RHEL 8+ and Ubuntu 21.04+. [`decide`] is the rule,
//! [`resolve`] reads the node for it.

use crate::exec::{ExecError, Tools};
use crate::ruleset::Family;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// An iptables backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Legacy,
    Nft,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Legacy => "legacy",
            Backend::Nft => "nft",
        }
    }

    fn other(self) -> Backend {
        match self {
            Backend::Legacy => Backend::Nft,
            Backend::Nft => Backend::Legacy,
        }
    }
}

/// What the operator asked for (`--iptables-backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Auto,
    Fixed(Backend),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("iptables backend {0:?}: expected auto, legacy or nft")]
pub struct BackendChoiceError(pub String);

impl FromStr for BackendChoice {
    type Err = BackendChoiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "legacy" => Ok(BackendChoice::Fixed(Backend::Legacy)),
            "nft" | "nftables" => Ok(BackendChoice::Fixed(Backend::Nft)),
            _ => Err(BackendChoiceError(s.to_string())),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendChoice::Auto => f.write_str("auto"),
            BackendChoice::Fixed(b) => f.write_str(b.name()),
        }
    }
}

/// Chains kubelet (and kube-proxy) create in the backend they use, precisely so that others
/// can tell which one that is.
pub const HINT_CHAINS: [&str; 2] = ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"];

/// What one backend holds on this node (IPv4 and IPv6 together).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Its `…-save` programs exist and ran.
    pub present: bool,
    /// Why one of them could not be read, when it exists (not installed is no failure).
    pub failed: Option<String>,
    /// The first of [`HINT_CHAINS`] found in it.
    pub hint: Option<&'static str>,
    /// Rules (`-A` lines) in all its tables, Twill's own left out (they follow the choice,
    /// so counting them would only repeat the last one).
    pub rules: usize,
}

impl Evidence {
    /// Add one `iptables-save` output (all tables) to the evidence.
    pub fn read(&mut self, save: &str) {
        self.present = true;
        for line in save.lines() {
            if line.starts_with("-A ") {
                if !line.contains("TWILL-") {
                    self.rules += 1;
                }
            } else if let Some(chain) = line.strip_prefix(':') {
                let name = chain.split_whitespace().next().unwrap_or_default();
                if self.hint.is_none() {
                    self.hint = HINT_CHAINS.iter().copied().find(|h| *h == name);
                }
            }
        }
    }

    /// Read `program`'s output into the evidence; a program that is not installed adds
    /// nothing, one that fails is remembered.
    fn take(&mut self, program: &str, out: Result<String, ExecError>) {
        match out {
            Ok(text) => self.read(&text),
            Err(e) if e.not_installed() => {}
            Err(e) => {
                self.failed.get_or_insert_with(|| format!("{program}: {e}"));
            }
        }
    }
}

/// The backend in use and why it was chosen (for the log and `twill status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// `None`: neither `iptables-legacy` nor `iptables-nft` can be used (iptables before 1.8),
    /// so plain `iptables` is, whatever it is.
    pub backend: Option<Backend>,
    pub why: String,
}

/// The rule for `auto`.
pub fn decide(legacy: &Evidence, nft: &Evidence) -> Resolved {
    let pick = |b: Backend, why: String| Resolved {
        backend: Some(b),
        why,
    };
    let unusable = |name: &str, e: &Evidence| match &e.failed {
        Some(f) => format!("{name} cannot be read ({f})"),
        None => format!("{name} is not installed"),
    };
    match (legacy.present, nft.present) {
        (false, false) => {
            return Resolved {
                backend: None,
                why: format!(
                    "{}, {}: plain iptables",
                    unusable("iptables-legacy", legacy),
                    unusable("iptables-nft", nft)
                ),
            }
        }
        (true, false) => return pick(Backend::Legacy, unusable("iptables-nft", nft)),
        (false, true) => return pick(Backend::Nft, unusable("iptables-legacy", legacy)),
        (true, true) => {}
    }
    // nft first, as iptables-wrapper does: a node moved from legacy to nft may keep a stale
    // legacy marker, never the other way round.
    if let Some(h) = nft.hint {
        return pick(Backend::Nft, format!("kubelet's {h} chain is in nft"));
    }
    if let Some(h) = legacy.hint {
        return pick(Backend::Legacy, format!("kubelet's {h} chain is in legacy"));
    }
    if legacy.rules > nft.rules {
        return pick(
            Backend::Legacy,
            format!(
                "no kubelet chain; legacy holds more rules ({} against {})",
                legacy.rules, nft.rules
            ),
        );
    }
    pick(
        Backend::Nft,
        format!(
            "no kubelet chain; nft holds as many rules or more ({} against {})",
            nft.rules, legacy.rules
        ),
    )
}

/// Resolve `choice` on this node (`tools.prefix` says where: a namespace in tests). Both
/// backends' `iptables-save` and `ip6tables-save` run once, at start, even when the choice is
/// fixed: a fixed choice that differs from what the node shows is said.
pub fn resolve(choice: BackendChoice, tools: &Tools) -> Resolved {
    let read = |b: Backend| {
        let tools = tools.clone().with_backend(Some(b));
        let mut e = Evidence::default();
        for family in [Family::V4, Family::V6] {
            e.take(tools.save_program(family), tools.save_existing(family));
        }
        e
    };
    let auto = decide(&read(Backend::Legacy), &read(Backend::Nft));
    match choice {
        BackendChoice::Auto => auto,
        BackendChoice::Fixed(b) if auto.backend.is_none_or(|a| a == b) => Resolved {
            backend: Some(b),
            why: "set explicitly".into(),
        },
        BackendChoice::Fixed(b) => Resolved {
            backend: Some(b),
            why: format!(
                "set explicitly, though auto would take {}: {}",
                b.other().name(),
                auto.why
            ),
        },
    }
}

impl Tools {
    /// These tools, through `backend`'s programs (`iptables-nft-save`, …); `None` leaves
    /// them as they are.
    pub fn with_backend(mut self, backend: Option<Backend>) -> Tools {
        if let Some(b) = backend {
            let b = b.name();
            self.iptables_save = format!("iptables-{b}-save");
            self.iptables_restore = format!("iptables-{b}-restore");
            self.ip6tables_save = format!("ip6tables-{b}-save");
            self.ip6tables_restore = format!("ip6tables-{b}-restore");
        }
        self
    }

    /// The tools of the backend not chosen (where Twill's rules from an earlier choice may be
    /// left); `None` when plain iptables is used.
    pub fn of_other_backend(&self, chosen: Option<Backend>) -> Option<Tools> {
        chosen.map(|b| self.clone().with_backend(Some(b.other())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(save: &str) -> Evidence {
        let mut e = Evidence::default();
        e.read(save);
        e
    }

    const KUBELET_NFT: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n";
    const DOCKER: &str = "*filter\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n-A FORWARD -j DOCKER\n-A DOCKER -i docker0 -j RETURN\n-A FORWARD -o docker0 -j ACCEPT\nCOMMIT\n";

    #[test]
    fn kubelet_s_chains_win_over_rule_counts() {
        let legacy = evidence(DOCKER);
        let nft = evidence(KUBELET_CANARY_ONLY);
        assert_eq!(legacy.rules, 3);
        assert_eq!(decide(&legacy, &nft).backend, Some(Backend::Nft));
        let r = decide(&evidence(KUBELET_NFT), &evidence(DOCKER));
        assert_eq!(r.backend, Some(Backend::Legacy), "{r:?}");
        assert_eq!(r.why, "kubelet's KUBE-IPTABLES-HINT chain is in legacy");
    }

    const KUBELET_CANARY_ONLY: &str = "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n";

    #[test]
    fn marked_in_both_nft_wins() {
        let r = decide(&evidence(KUBELET_NFT), &evidence(KUBELET_CANARY_ONLY));
        assert_eq!(r.backend, Some(Backend::Nft));
    }

    #[test]
    fn without_a_marker_the_fuller_backend_wins_and_a_tie_is_nft() {
        let r = decide(&evidence(DOCKER), &evidence("*filter\nCOMMIT\n"));
        assert_eq!(r.backend, Some(Backend::Legacy));
        assert_eq!(
            r.why,
            "no kubelet chain; legacy holds more rules (3 against 0)"
        );
        let r = decide(&evidence(DOCKER), &evidence(DOCKER));
        assert_eq!(r.backend, Some(Backend::Nft));
        let r = decide(&evidence(""), &evidence(""));
        assert_eq!(r.backend, Some(Backend::Nft));
    }

    #[test]
    fn a_missing_backend_is_never_chosen() {
        let absent = Evidence::default();
        let r = decide(&evidence(DOCKER), &absent);
        assert_eq!(r.backend, Some(Backend::Legacy));
        let r = decide(&absent, &evidence(""));
        assert_eq!(r.backend, Some(Backend::Nft));
        let r = decide(&absent, &absent);
        assert_eq!(r.backend, None);
        assert_eq!(Tools::default().with_backend(None), Tools::default());
        assert_eq!(Tools::default().of_other_backend(None), None);
    }

    #[test]
    fn a_backend_that_fails_is_not_chosen_and_the_reason_is_kept() {
        let mut nft = Evidence::default();
        let failed = ExecError::Failed {
            program: "iptables-nft-save".into(),
            status: "exit status: 1".into(),
            stderr: "iptables/1.8.9 Failed to initialize nft: Protocol not supported".into(),
        };
        nft.take("iptables-nft-save", Err(failed));
        let not_found = ExecError::Spawn {
            program: "ip6tables-nft-save".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        nft.take("ip6tables-nft-save", Err(not_found));
        assert!(!nft.present);
        let r = decide(&evidence(""), &nft);
        assert_eq!(r.backend, Some(Backend::Legacy));
        assert!(
            r.why
                .starts_with("iptables-nft cannot be read (iptables-nft-save:")
                && r.why.contains("Failed to initialize nft"),
            "{}",
            r.why
        );
        let mut missing = Evidence::default();
        missing.take(
            "iptables-legacy-save",
            Err(ExecError::Spawn {
                program: "iptables-legacy-save".into(),
                source: std::io::ErrorKind::NotFound.into(),
            }),
        );
        assert_eq!(missing, Evidence::default());
        let r = decide(&missing, &evidence(""));
        assert_eq!(r.why, "iptables-legacy is not installed");
    }

    #[test]
    fn twill_s_own_rules_are_not_counted() {
        let ours = "*filter\n:TWILL-FORWARD - [0:0]\n-A FORWARD -m comment --comment twill:policy -j TWILL-FORWARD\n-A TWILL-FORWARD -j RETURN\nCOMMIT\n";
        assert_eq!(evidence(ours).rules, 0);
        // A legacy node with one Docker rule, Twill's leftovers in nft: legacy.
        let r = decide(
            &evidence("*filter\n-A FORWARD -j DOCKER\nCOMMIT\n"),
            &evidence(ours),
        );
        assert_eq!(r.backend, Some(Backend::Legacy));
        let other = Tools::default().of_other_backend(r.backend).unwrap();
        assert_eq!(other.iptables_save, "iptables-nft-save");
    }

    #[test]
    fn a_chain_whose_name_only_starts_like_a_marker_is_no_marker() {
        let e = evidence("*mangle\n:KUBE-KUBELET-CANARY-X - [0:0]\n-A X -m comment --comment \":KUBE-IPTABLES-HINT\" -j RETURN\nCOMMIT\n");
        assert_eq!(e.hint, None);
        assert_eq!(e.rules, 1);
    }

    #[test]
    fn choices_parse_and_a_bad_one_is_named() {
        assert_eq!("Auto".parse(), Ok(BackendChoice::Auto));
        assert_eq!("nftables".parse(), Ok(BackendChoice::Fixed(Backend::Nft)));
        assert_eq!("legacy".parse(), Ok(BackendChoice::Fixed(Backend::Legacy)));
        assert_eq!(BackendChoice::Fixed(Backend::Nft).to_string(), "nft");
        let e = "ipvs".parse::<BackendChoice>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "iptables backend \"ipvs\": expected auto, legacy or nft"
        );
        let t = Tools::default().with_backend(Some(Backend::Legacy));
        assert_eq!(t.ip6tables_restore, "ip6tables-legacy-restore");
    }
}
