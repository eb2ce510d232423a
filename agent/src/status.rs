//! What `twill status` / `twill routes` show, as it crosses the control socket (JSON), and how
//! it prints as columns.

use serde::{Deserialize, Serialize};
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
    pub prefixes_advertised: usize,
    pub last_error: Option<String>,
    /// Why the last Established session ended (NOTIFICATION sent or received, hold timer,
    /// connection closed, stopped here).
    pub last_down: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    pub prefix: String,
    pub next_hops: Vec<String>,
    /// direct / vxlan / ipip / via router (several, comma-separated, for a mixed ECMP route).
    pub via: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub node: String,
    pub peers: Vec<PeerStatus>,
    pub routes: Vec<RouteStatus>,
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
                p.last_error.clone().unwrap_or_default(),
            ]);
        }
        format!("node {}\n{}", self.node, table(rows))
    }

    pub fn routes_table(&self) -> String {
        let mut rows = vec![["PREFIX", "NEXT HOPS", "VIA"].map(String::from).to_vec()];
        for r in &self.routes {
            rows.push(vec![r.prefix.clone(), r.next_hops.join(","), r.via.clone()]);
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
            peers: vec![PeerStatus {
                address: "10.1.0.12".into(),
                as_number: 64512,
                kind: "mesh".into(),
                state: "Established".into(),
                since: rfc3339_ago(Duration::ZERO),
                prefixes_received: 1,
                prefixes_accepted: 1,
                prefixes_advertised: 1,
                last_error: None,
                last_down: None,
            }],
            routes: vec![RouteStatus {
                prefix: "10.244.2.0/24".into(),
                next_hops: vec!["10.1.0.12".into()],
                via: "direct".into(),
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
            "prefixesAdvertised",
            "lastError",
            "lastDown",
        ] {
            assert!(v["peers"][0].get(k).is_some(), "missing {k}");
        }
        for k in ["prefix", "nextHops", "via"] {
            assert!(v["routes"][0].get(k).is_some(), "missing {k}");
        }
        assert!(s
            .peers_table()
            .contains("10.1.0.12  64512  mesh  Established"));
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
