//! What `twill status` / `twill routes` show, as it crosses the control socket (JSON), and how
//! it prints as columns.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    pub address: String,
    pub as_number: u32,
    pub kind: String,
    pub state: String,
    /// When the state last changed, RFC 3339 UTC.
    pub since: String,
    pub prefixes_received: usize,
    pub prefixes_accepted: usize,
    /// Held but not accepted, by reason (`cluster-loop`, `next-hop-not-owner`, …).
    #[serde(default)]
    pub prefixes_rejected: BTreeMap<String, usize>,
    pub prefixes_advertised: usize,
    pub last_error: Option<String>,
    /// Why the last Established session ended (NOTIFICATION sent or received, hold timer,
    /// connection closed, stopped here).
    pub last_down: Option<String>,
    /// Graceful restart: negotiated, the peer restarting (seconds left), stale routes.
    #[serde(default)]
    pub graceful_restart: GracefulRestartStatus,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GracefulRestartStatus {
    pub negotiated: bool,
    /// RFC 8538's N bit, both sides.
    pub notification: bool,
    /// The peer is restarting: seconds until its stale routes go.
    pub restart_time_left: Option<u64>,
    /// The peer is back: seconds until its stale routes go without End-of-RIB.
    pub stale_time_left: Option<u64>,
    pub stale_routes: usize,
}

impl GracefulRestartStatus {
    /// One column: `no`, `yes`, or what is going on (`restarting 97s, 12 stale`).
    fn column(&self) -> String {
        match (self.negotiated, self.restart_time_left, self.stale_routes) {
            (_, Some(t), n) => format!("restarting {t}s, {n} stale"),
            (_, None, n) if n > 0 => format!("{n} stale"),
            (true, None, _) => "yes".into(),
            (false, None, _) => "no".into(),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    pub prefix: String,
    pub next_hops: Vec<String>,
    /// direct / vxlan / ipip / via router (several, comma-separated, for a mixed ECMP route).
    pub via: String,
    /// The BGP peer of the best path (a reflector, for a reflected route).
    #[serde(default)]
    pub learned_from: Option<String>,
    /// Set by the first reflector the route crossed (RFC 4456).
    #[serde(default)]
    pub originator_id: Option<String>,
    /// The reflectors' cluster IDs, nearest first.
    #[serde(default)]
    pub cluster_list: Vec<String>,
}

/// NetworkPolicy on this node: where the workloads come from, what is in force, why not.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// `kubernetes` or `file PATH`.
    pub source: String,
    /// File mode: the FNV-1a hash of the workloads file last read, and the generation of
    /// the model built from it.
    pub file_hash: Option<String>,
    #[serde(default)]
    pub file_generation: u64,
    /// Kubernetes mode: the highest resourceVersion of the Namespaces, Pods and
    /// NetworkPolicies seen, and the generation whose rules include it.
    #[serde(default)]
    pub source_version: u64,
    #[serde(default)]
    pub source_generation: u64,
    /// Objects refused (their previous version, if any, stays in force).
    pub problems: Vec<String>,
    /// Generations of the model: the newest handed over, the newest in force.
    pub wanted: u64,
    pub in_force: u64,
    /// Why the last batch failed; the rules in force are the previous ones.
    pub error: Option<String>,
    /// Policies selecting a pod of this node, and the rules and sets they take.
    pub policies: usize,
    pub rules: usize,
    pub sets: usize,
    pub set_entries: usize,
    /// Microseconds the last changing batch took.
    pub last_apply_us: u64,
    /// Bridged (same-node) pod traffic passes through iptables.
    pub bridge_netfilter: bool,
    pub counters: Vec<PolicyCounter>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCounter {
    pub policy: String,
    pub direction: String,
    pub allowed: u64,
    pub denied: u64,
}

impl PolicyStatus {
    /// The line under the peers table.
    fn line(&self) -> String {
        let state = match &self.error {
            Some(e) => format!("NOT IN FORCE (previous rules kept): {e}"),
            None if self.in_force < self.wanted => "programming".into(),
            None => "in force".into(),
        };
        let mut s = format!(
            "policy ({}): {state}; {} policies here, {} rules, {} sets ({} entries)",
            self.source, self.policies, self.rules, self.sets, self.set_entries
        );
        if !self.bridge_netfilter {
            s.push_str("; same-node traffic NOT policed (bridge netfilter unavailable)");
        }
        for p in &self.problems {
            s.push_str(&format!("\n  refused: {p}"));
        }
        s
    }
}

/// Outgoing NAT on this node.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NatStatus {
    /// The rules have been written (or found in place) at least once since the agent
    /// started, and the last batch did not fail.
    #[serde(default)]
    pub programmed: bool,
    /// The families it is in force for ("IPv4", "IPv6"); empty: off.
    pub families: Vec<String>,
    /// What the cluster setting asks for ("IPv4, IPv6", "IPv4", "off").
    pub setting: String,
    /// Connections translated since the agent started (the nat table sees each one's first
    /// packet).
    pub masqueraded: u64,
    /// Destinations that keep the pod's address.
    pub non_masquerade: Vec<String>,
    /// Why the last batch of rules failed (the previous ones stay in force).
    pub error: Option<String>,
}

/// Which iptables the firewall's owner uses.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IptablesStatus {
    /// "legacy", "nft", or "plain" (programs with no backend in their name: iptables before
    /// 1.8).
    pub backend: String,
    pub why: String,
}

impl NatStatus {
    fn line(&self) -> String {
        let mut s = if !self.programmed && self.error.is_none() {
            format!(
                "outgoing NAT: not programmed yet (setting: {})",
                self.setting
            )
        } else if self.families.is_empty() {
            format!("outgoing NAT: off (setting: {})", self.setting)
        } else {
            format!(
                "outgoing NAT: {} to outside the pod CIDRs; {} connections translated",
                self.families.join(", "),
                self.masqueraded
            )
        };
        if !self.non_masquerade.is_empty() {
            s.push_str(&format!("; kept: {}", self.non_masquerade.join(", ")));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("; NOT IN FORCE (previous rules kept): {e}"));
        }
        s
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub node: String,
    /// The agent has handed the complete route set to the kernel (what `/readyz` says).
    #[serde(default)]
    pub ready: bool,
    pub peers: Vec<PeerStatus>,
    pub routes: Vec<RouteStatus>,
    /// NetworkPolicy, when this node enforces it.
    #[serde(default)]
    pub policy: Option<PolicyStatus>,
    /// Outgoing NAT.
    #[serde(default)]
    pub nat: Option<NatStatus>,
    /// The iptables backend Twill's rules go through.
    #[serde(default)]
    pub iptables: Option<IptablesStatus>,
    /// The cluster's route reflectors by node name, and why each is one (chosen
    /// automatically, or `routeReflectorClusterID`).
    #[serde(default)]
    pub reflectors: BTreeMap<String, String>,
}

/// `now - ago` as RFC 3339 UTC in whole seconds (`2026-11-21T12:00:00Z`).
pub fn rfc3339_ago(ago: Duration) -> String {
    let now = jiff::Timestamp::now();
    let then = jiff::SignedDuration::try_from(ago)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .filter(|t| *t >= jiff::Timestamp::UNIX_EPOCH)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::Timestamp::from_second(then.as_second())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

impl Status {
    /// Columns like `birdc show protocols` / `calicoctl node status`.
    pub fn peers_table(&self) -> String {
        let mut rows = vec![[
            "PEER",
            "AS",
            "KIND",
            "STATE",
            "SINCE",
            "RCVD",
            "ACCEPTED",
            "ADVERTISED",
            "REJECTED",
            "GR",
            "LAST ERROR",
        ]
        .map(String::from)
        .to_vec()];
        for p in &self.peers {
            rows.push(vec![
                p.address.clone(),
                p.as_number.to_string(),
                p.kind.clone(),
                p.state.clone(),
                p.since.clone(),
                p.prefixes_received.to_string(),
                p.prefixes_accepted.to_string(),
                p.prefixes_advertised.to_string(),
                p.prefixes_rejected.values().sum::<usize>().to_string(),
                p.graceful_restart.column(),
                p.last_error.clone().unwrap_or_default(),
            ]);
        }
        let mut out = format!("node {}\n{}", self.node, table(rows));
        if !self.reflectors.is_empty() {
            let list: Vec<String> = self
                .reflectors
                .iter()
                .map(|(n, why)| format!("{n} ({why})"))
                .collect();
            out.push_str(&format!("reflectors: {}\n", list.join(", ")));
        }
        if let Some(p) = &self.policy {
            out.push_str(&p.line());
            out.push('\n');
        }
        if let Some(n) = &self.nat {
            out.push_str(&n.line());
            out.push('\n');
        }
        if let Some(i) = &self.iptables {
            out.push_str(&format!("iptables: {} ({})\n", i.backend, i.why));
        }
        out
    }

    /// `detail` adds where the route was learned and what reflectors added to it.
    pub fn routes_table(&self, detail: bool) -> String {
        let mut head = vec!["PREFIX", "NEXT HOPS", "VIA"];
        if detail {
            head.extend(["FROM", "ORIGINATOR", "CLUSTER LIST"]);
        }
        let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
        for r in &self.routes {
            let mut row = vec![r.prefix.clone(), r.next_hops.join(","), r.via.clone()];
            if detail {
                row.push(r.learned_from.clone().unwrap_or_else(|| "-".into()));
                row.push(r.originator_id.clone().unwrap_or_else(|| "-".into()));
                row.push(if r.cluster_list.is_empty() {
                    "-".into()
                } else {
                    r.cluster_list.join(",")
                });
            }
            rows.push(row);
        }
        table(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_the_documented_ones() {
        let s = Status {
            node: "a1".into(),
            ready: true,
            policy: None,
            nat: None,
            iptables: None,
            reflectors: Default::default(),
            peers: vec![PeerStatus {
                address: "10.1.0.12".into(),
                as_number: 64512,
                kind: "mesh".into(),
                state: "Established".into(),
                since: rfc3339_ago(Duration::ZERO),
                prefixes_received: 1,
                prefixes_accepted: 1,
                prefixes_rejected: [("next-hop-not-owner".to_string(), 2)].into(),
                prefixes_advertised: 1,
                last_error: None,
                last_down: None,
                graceful_restart: GracefulRestartStatus {
                    negotiated: true,
                    notification: true,
                    restart_time_left: Some(97),
                    stale_time_left: None,
                    stale_routes: 12,
                },
            }],
            routes: vec![RouteStatus {
                prefix: "10.244.2.0/24".into(),
                next_hops: vec!["10.1.0.12".into()],
                via: "direct".into(),
                learned_from: Some("10.2.0.11".into()),
                originator_id: Some("10.1.0.12".into()),
                cluster_list: vec!["10.255.0.1".into()],
            }],
        };
        let v = serde_json::to_value(&s).unwrap();
        for k in [
            "address",
            "asNumber",
            "kind",
            "state",
            "since",
            "prefixesReceived",
            "prefixesAccepted",
            "prefixesRejected",
            "prefixesAdvertised",
            "lastError",
            "lastDown",
            "gracefulRestart",
        ] {
            assert!(v["peers"][0].get(k).is_some(), "missing {k}");
        }
        for k in [
            "prefix",
            "nextHops",
            "via",
            "learnedFrom",
            "originatorId",
            "clusterList",
        ] {
            assert!(v["routes"][0].get(k).is_some(), "missing {k}");
        }
        assert!(s
            .peers_table()
            .contains("10.1.0.12  64512  mesh  Established"));
        assert!(
            s.peers_table()
                .contains("  2         restarting 97s, 12 stale\n"),
            "{}",
            s.peers_table()
        );
        assert_eq!(
            v["peers"][0]["gracefulRestart"]["restartTimeLeft"], 97,
            "{v}"
        );
        let detail = s.routes_table(true);
        let row: Vec<&str> = detail.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            [
                "10.244.2.0/24",
                "10.1.0.12",
                "direct",
                "10.2.0.11",
                "10.1.0.12",
                "10.255.0.1"
            ]
        );
        assert!(!s.routes_table(false).contains("10.255.0.1"));
        // The backend line, once the firewall's owner has resolved it.
        assert!(!s.peers_table().contains("iptables:"));
        let mut s = s;
        s.iptables = Some(IptablesStatus {
            backend: "legacy".into(),
            why: "kubelet's KUBE-KUBELET-CANARY chain is in legacy".into(),
        });
        assert!(s
            .peers_table()
            .ends_with("iptables: legacy (kubelet's KUBE-KUBELET-CANARY chain is in legacy)\n"));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["iptables"]["backend"], "legacy");
    }

    #[test]
    fn dates() {
        let s = rfc3339_ago(Duration::ZERO);
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'));
        let t: jiff::Timestamp = s.parse().unwrap();
        let a: jiff::Timestamp = rfc3339_ago(Duration::from_secs(3600)).parse().unwrap();
        assert!((t - a).get_seconds() >= 3599, "{t} {a}");
        // Longer ago than the epoch: the epoch, not a panic.
        assert_eq!(rfc3339_ago(Duration::MAX), "1970-01-01T00:00:00Z");
        let ages = Duration::from_secs(200 * 365 * 86_400);
        assert_eq!(rfc3339_ago(ages), "1970-01-01T00:00:00Z");
    }
}
