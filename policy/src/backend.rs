//! Which iptables Twill's rules go through: `iptables-legacy` (the kernel's x_tables) or
//! `iptables-nft` (the same rules as nftables). Both can hold rules at once and the kernel runs
//! both, but rules must sit beside kube-proxy's and kubelet's: NAT split across the two breaks
//! connections, and a chain in one cannot be jumped to from the other. So, as Calico's
//! `iptablesBackend: Auto` and Kubernetes' iptables-wrapper do, the backend is read from the
//! node: the one holding kubelet's marker chains, else the one holding more rules, else nft
//! (the default of Debian 11+, RHEL 8+, Ubuntu 21.04+). `decide` is the rule, `detect` reads
//! the node for it.

use crate::exec::Tools;
use std::fmt;
use std::str::FromStr;

/// An iptables backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// What the operator asked for (`--iptables-backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Auto,
    Legacy,
    Nft,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("iptables backend {0:?}: expected auto, legacy or nft")]
pub struct BackendChoiceError(pub String);

impl FromStr for BackendChoice {
    type Err = BackendChoiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "legacy" => Ok(BackendChoice::Legacy),
            "nft" | "nftables" => Ok(BackendChoice::Nft),
            _ => Err(BackendChoiceError(s.to_string())),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Legacy => "legacy",
            BackendChoice::Nft => "nft",
        })
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
    /// The first of [`HINT_CHAINS`] found in it.
    pub hint: Option<&'static str>,
    /// Rules (`-A` lines) in all its tables.
    pub rules: usize,
}

impl Evidence {
    /// Add one `iptables-save` output (all tables) to the evidence.
    pub fn read(&mut self, save: &str) {
        self.present = true;
        for line in save.lines() {
            if line.starts_with("-A ") {
                self.rules += 1;
            } else if let Some(chain) = line.strip_prefix(':') {
                let name = chain.split_whitespace().next().unwrap_or_default();
                if self.hint.is_none() {
                    self.hint = HINT_CHAINS.iter().copied().find(|h| *h == name);
                }
            }
        }
    }
}

/// The backend in use and why it was chosen (for the log and `twill status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// `None`: neither `iptables-legacy` nor `iptables-nft` exists (iptables before 1.8), so
    /// plain `iptables` is used, whatever it is.
    pub backend: Option<Backend>,
    pub why: String,
}

/// The rule for `auto`.
pub fn decide(legacy: &Evidence, nft: &Evidence) -> Resolved {
    let pick = |b: Backend, why: String| Resolved {
        backend: Some(b),
        why,
    };
    match (legacy.present, nft.present) {
        (false, false) => {
            return Resolved {
                backend: None,
                why: "no iptables-legacy or iptables-nft programs: plain iptables".into(),
            }
        }
        (true, false) => return pick(Backend::Legacy, "only iptables-legacy is installed".into()),
        (false, true) => return pick(Backend::Nft, "only iptables-nft is installed".into()),
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
                "legacy holds more rules ({} against {})",
                legacy.rules, nft.rules
            ),
        );
    }
    pick(
        Backend::Nft,
        format!(
            "no kubelet chain, nft holds as many rules or more ({} against {})",
            nft.rules, legacy.rules
        ),
    )
}

/// Resolve `choice` on this node (`tools.prefix` says where: a namespace in tests). `auto`
/// runs both backends' `iptables-save` and `ip6tables-save` once, at start.
pub fn resolve(choice: BackendChoice, tools: &Tools) -> Resolved {
    match choice {
        BackendChoice::Legacy => Resolved {
            backend: Some(Backend::Legacy),
            why: "set by --iptables-backend".into(),
        },
        BackendChoice::Nft => Resolved {
            backend: Some(Backend::Nft),
            why: "set by --iptables-backend".into(),
        },
        BackendChoice::Auto => {
            let read = |b: Backend| {
                let mut e = Evidence::default();
                for family in ["iptables", "ip6tables"] {
                    // A backend that cannot be read (program missing, module absent) is no
                    // evidence for it.
                    if let Ok(text) = tools.save_all(&format!("{family}-{}-save", b.name())) {
                        e.read(&text);
                    }
                }
                e
            };
            decide(&read(Backend::Legacy), &read(Backend::Nft))
        }
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
        assert_eq!(r.why, "legacy holds more rules (3 against 0)");
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
        assert_eq!("nftables".parse(), Ok(BackendChoice::Nft));
        assert_eq!("legacy".parse(), Ok(BackendChoice::Legacy));
        let e = "ipvs".parse::<BackendChoice>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "iptables backend \"ipvs\": expected auto, legacy or nft"
        );
        let t = Tools::default().with_backend(Some(Backend::Legacy));
        assert_eq!(t.ip6tables_restore, "ip6tables-legacy-restore");
    }
}
