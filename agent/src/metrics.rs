//! `/metrics`: the speaker's peers and the route programmer's counters, read at scrape time
//! and written by `prometheus-client` as OpenMetrics text.
//!
//! The values live in the speaker and felix-lite, not in metric objects the agent updates, so
//! each scrape copies them into a [`Scrape`] and encodes that through a `Collector` (the
//! crate's way to report values read on demand). Metric names are the ones Twill always had:
//! counters are registered without `_total`, which the encoder appends.

use felix_lite::CounterSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use speaker::{PeerSnapshot, State};

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything one scrape reports, copied out of the running agent.
#[derive(Debug, Default)]
pub struct Scrape {
    pub peers: Vec<PeerSnapshot>,
    pub routes: CounterSnapshot,
    pub ready: bool,
    /// NetworkPolicy, when enforced here.
    pub policy: Option<crate::status::PolicyStatus>,
    /// Outgoing NAT.
    pub nat: Option<crate::status::NatStatus>,
    /// Connections refused for coming from no configured peer's address.
    pub refused: u64,
    /// The Kubernetes view watcher's counts (Kubernetes mode only).
    pub watch: Option<WatchCounts>,
}

/// [`cluster::k8s::watch::WatchStats`] as read at the scrape.
#[derive(Debug, Default, Clone, Copy)]
pub struct WatchCounts {
    pub node_events: u64,
    pub node_updates_ignored: u64,
    pub views_built: u64,
    pub views_published: u64,
}

/// Name, help, and how to read it from a peer's snapshot.
type PeerMetric = (&'static str, &'static str, fn(&PeerSnapshot) -> u64);

const PEER_COUNTERS: [PeerMetric; 2] = [
    (
        "twill_bgp_updates_received",
        "UPDATE messages received.",
        |p| p.updates_received,
    ),
    ("twill_bgp_updates_sent", "UPDATE messages sent.", |p| {
        p.updates_sent
    }),
];

const PEER_GAUGES: [PeerMetric; 6] = [
    (
        "twill_bgp_prefixes_received",
        "Prefixes received from the peer.",
        |p| p.prefixes_received as u64,
    ),
    (
        "twill_bgp_prefixes_accepted",
        "Prefixes accepted by the import filter.",
        |p| p.prefixes_accepted as u64,
    ),
    (
        "twill_bgp_prefixes_advertised",
        "Prefixes advertised to the peer.",
        |p| p.prefixes_advertised as u64,
    ),
    (
        "twill_bgp_graceful_restart_negotiated",
        "1 if both sides offered graceful restart (RFC 4724) on the peer's session.",
        |p| p.gr.negotiated as u64,
    ),
    (
        "twill_bgp_peer_restart_seconds_left",
        "The peer is restarting: seconds until its stale routes are dropped (0: not restarting).",
        |p| p.gr.restart_time_left.unwrap_or(0),
    ),
    (
        "twill_bgp_stale_prefixes",
        "Prefixes of the peer kept as stale through its restart.",
        |p| p.gr.stale_routes as u64,
    ),
];

const STATES: [State; 6] = [
    State::Idle,
    State::Connect,
    State::Active,
    State::OpenSent,
    State::OpenConfirm,
    State::Established,
];

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(0i64);
        let counter = ConstCounter::new(0u64);
        let mut m = e.encode_descriptor(
            "twill_bgp_sessions",
            "BGP sessions by state.",
            None,
            gauge.metric_type(),
        )?;
        for state in STATES {
            let n = self.peers.iter().filter(|p| p.state == state).count();
            let labels = [("state", state.to_string())];
            ConstGauge::new(n as i64).encode(m.encode_family(&labels)?)?;
        }
        for (name, help, get) in PEER_COUNTERS {
            let mut m = e.encode_descriptor(name, help, None, counter.metric_type())?;
            for p in &self.peers {
                let labels = [("peer", p.address.to_string())];
                ConstCounter::new(get(p)).encode(m.encode_family(&labels)?)?;
            }
        }
        for (name, help, get) in PEER_GAUGES {
            let mut m = e.encode_descriptor(name, help, None, gauge.metric_type())?;
            for p in &self.peers {
                let labels = [("peer", p.address.to_string())];
                ConstGauge::new(get(p) as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = e.encode_descriptor(
            "twill_bgp_prefixes_rejected",
            "Prefixes held from the peer but not accepted, by reason (cluster-loop, next-hop-not-owner, import-filter, ...).",
            None,
            gauge.metric_type(),
        )?;
        for p in &self.peers {
            for (why, n) in &p.prefixes_rejected {
                let labels = [
                    ("peer", p.address.to_string()),
                    ("reason", why.key().to_string()),
                ];
                ConstGauge::new(*n as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        let r = &self.routes;
        ConstGauge::new(r.programmed as i64).encode(e.encode_descriptor(
            "twill_routes_programmed",
            "Kernel routes of protocol twill.",
            None,
            gauge.metric_type(),
        )?)?;
        let route_counters = [
            ("twill_routes_added", "Routes added.", r.added),
            ("twill_routes_replaced", "Routes replaced.", r.replaced),
            ("twill_routes_deleted", "Routes deleted.", r.deleted),
            (
                "twill_routes_repaired",
                "Operations that undid a change made behind Twill's back.",
                r.repaired,
            ),
            (
                "twill_route_errors",
                "Route operations the kernel refused.",
                r.errors,
            ),
        ];
        ConstCounter::new(self.refused).encode(e.encode_descriptor(
            "twill_bgp_connections_refused",
            "BGP connections refused because they came from no configured peer's address (logged once a minute).",
            None,
            counter.metric_type(),
        )?)?;
        let mut counters = route_counters.to_vec();
        if let Some(w) = self.watch {
            counters.extend([
                (
                    "twill_k8s_node_events",
                    "Node events that could change the cluster view (changes to what Twill reads, deletions, relists).",
                    w.node_events,
                ),
                (
                    "twill_k8s_node_updates_ignored",
                    "Node updates that changed nothing Twill reads (kubelet heartbeats): no view rebuilt.",
                    w.node_updates_ignored,
                ),
                (
                    "twill_k8s_views_built",
                    "Cluster views built and validated from the watched objects.",
                    w.views_built,
                ),
                (
                    "twill_k8s_views_published",
                    "Cluster views that differed from the last and were applied.",
                    w.views_published,
                ),
            ]);
        }
        for (name, help, v) in counters {
            ConstCounter::new(v).encode(e.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        ConstGauge::new(r.last_reconcile.as_secs_f64()).encode(e.encode_descriptor(
            "twill_route_reconcile_seconds",
            "Duration of the last reconcile.",
            None,
            gauge.metric_type(),
        )?)?;
        ConstGauge::new(i64::from(self.ready)).encode(e.encode_descriptor(
            "twill_ready",
            "Whether the agent is ready.",
            None,
            gauge.metric_type(),
        )?)?;
        if let Some(n) = &self.nat {
            let mut m = e.encode_descriptor(
                "twill_nat_outgoing_enabled",
                "1 if outgoing NAT is in force for the family on this node.",
                None,
                gauge.metric_type(),
            )?;
            for family in ["IPv4", "IPv6"] {
                let on = n.families.iter().any(|f| f == family);
                ConstGauge::new(i64::from(on))
                    .encode(m.encode_family(&[("family", family.to_string())])?)?;
            }
            ConstCounter::new(n.masqueraded).encode(e.encode_descriptor(
                "twill_nat_outgoing_connections",
                "Connections from this node's pods masqueraded to the node's address (the nat table sees the first packet of each).",
                None,
                counter.metric_type(),
            )?)?;
        }
        if let Some(p) = &self.policy {
            let mut m = e.encode_descriptor(
                "twill_policy_packets",
                "Packets of new connections to or from this node's pods, per policy selecting the pod, direction and verdict (allowed: by one of this policy's rules; denied: no policy selecting the pod allowed it).",
                None,
                counter.metric_type(),
            )?;
            for c in &p.counters {
                for (verdict, n) in [("allowed", c.allowed), ("denied", c.denied)] {
                    let labels = [
                        ("policy", c.policy.clone()),
                        ("direction", c.direction.clone()),
                        ("verdict", verdict.to_string()),
                    ];
                    ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
            let gauges = [
                ("twill_policy_rules", "iptables rules Twill has for NetworkPolicy on this node.", p.rules as i64),
                ("twill_policy_sets", "ipsets Twill has for NetworkPolicy on this node.", p.sets as i64),
                ("twill_policy_set_entries", "Entries in those ipsets.", p.set_entries as i64),
                ("twill_policy_in_force", "1 if the newest NetworkPolicy rules are in force, 0 if programming or failed (the previous rules stay).", i64::from(p.error.is_none() && p.in_force >= p.wanted)),
            ];
            for (name, help, v) in gauges {
                ConstGauge::new(v).encode(e.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}

/// The OpenMetrics text of one scrape (`None`: the agent is not running yet, so only the
/// closing `# EOF`).
pub fn encode(scrape: Option<Scrape>) -> String {
    let mut registry = Registry::default();
    if let Some(s) = scrape {
        registry.register_collector(Box::new(s));
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn peer(addr: &str, state: State) -> PeerSnapshot {
        PeerSnapshot {
            address: addr.parse().unwrap(),
            asn: 64512,
            role: speaker::PeerRole::Ibgp,
            state,
            since_secs: 3,
            remote_id: None,
            hold_time: None,
            prefixes_received: 2,
            prefixes_accepted: 1,
            prefixes_rejected: [(speaker::Rejection::NextHopNotOwner, 1)].into(),
            prefixes_advertised: 1,
            updates_received: 7,
            updates_sent: 5,
            last_error: None,
            last_down: None,
            end_of_rib_received: true,
            end_of_rib_sent: true,
            families: BTreeMap::new(),
            graceful_restart: None,
            gr: speaker::GrSnapshot {
                negotiated: true,
                notification: true,
                restart_time_left: Some(97),
                stale_time_left: None,
                stale_routes: 3,
            },
            four_octet_as: true,
            route_refresh: true,
            extended_message: false,
        }
    }

    /// What a Prometheus server would read: parsed by an independent text-format parser.
    #[test]
    fn a_scrape_parses_with_the_names_twill_always_had() {
        let text = encode(Some(Scrape {
            peers: vec![
                peer("10.1.0.12", State::Established),
                peer("10.2.0.11", State::Active),
            ],
            routes: CounterSnapshot {
                added: 3,
                programmed: 2,
                last_reconcile: std::time::Duration::from_micros(1500),
                ..Default::default()
            },
            ready: true,
            refused: 5,
            watch: Some(WatchCounts {
                node_events: 3,
                node_updates_ignored: 500,
                views_built: 2,
                views_published: 1,
            }),
            policy: Some(crate::status::PolicyStatus {
                rules: 12,
                counters: vec![crate::status::PolicyCounter {
                    policy: "x/deny-all".into(),
                    direction: "ingress".into(),
                    allowed: 4,
                    denied: 9,
                }],
                ..Default::default()
            }),
            nat: Some(crate::status::NatStatus {
                families: vec!["IPv4".into()],
                masqueraded: 42,
                ..Default::default()
            }),
        }));
        assert!(text.ends_with("# EOF\n"), "{text}");
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("a Prometheus text parser accepts the output");
        let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
            let s = scrape
                .samples
                .iter()
                .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
                .unwrap_or_else(|| panic!("{name} {label:?} in\n{text}"));
            match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name}: {other:?}"),
            }
        };
        assert_eq!(
            value("twill_bgp_sessions", Some(("state", "Established"))),
            1.0
        );
        assert_eq!(value("twill_policy_rules", None), 12.0);
        assert_eq!(
            value("twill_nat_outgoing_enabled", Some(("family", "IPv4"))),
            1.0
        );
        assert_eq!(
            value("twill_nat_outgoing_enabled", Some(("family", "IPv6"))),
            0.0
        );
        assert_eq!(value("twill_nat_outgoing_connections_total", None), 42.0);
        assert_eq!(value("twill_bgp_connections_refused_total", None), 5.0);
        assert_eq!(value("twill_k8s_node_updates_ignored_total", None), 500.0);
        assert_eq!(value("twill_k8s_views_built_total", None), 2.0);
        let policy = |verdict: &str| {
            scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == "twill_policy_packets_total"
                        && s.labels.get("policy") == Some("x/deny-all")
                        && s.labels.get("verdict") == Some(verdict)
                })
                .map(|s| format!("{:?}", s.value))
        };
        assert_eq!(policy("denied").as_deref(), Some("Untyped(9.0)"), "{text}");
        assert_eq!(policy("allowed").as_deref(), Some("Untyped(4.0)"), "{text}");
        assert_eq!(value("twill_bgp_sessions", Some(("state", "Idle"))), 0.0);
        assert_eq!(
            value(
                "twill_bgp_updates_received_total",
                Some(("peer", "10.2.0.11"))
            ),
            7.0
        );
        assert_eq!(
            value("twill_bgp_prefixes_accepted", Some(("peer", "10.1.0.12"))),
            1.0
        );
        for (name, want) in [
            ("twill_bgp_graceful_restart_negotiated", 1.0),
            ("twill_bgp_peer_restart_seconds_left", 97.0),
            ("twill_bgp_stale_prefixes", 3.0),
        ] {
            assert_eq!(value(name, Some(("peer", "10.1.0.12"))), want, "{name}");
        }
        let rejected = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "twill_bgp_prefixes_rejected"
                    && s.labels.get("reason") == Some("next-hop-not-owner")
            })
            .expect("rejections by reason");
        assert_eq!(rejected.labels.get("peer"), Some("10.1.0.12"));
        assert_eq!(value("twill_routes_programmed", None), 2.0);
        assert_eq!(value("twill_routes_added_total", None), 3.0);
        assert_eq!(value("twill_route_errors_total", None), 0.0);
        assert_eq!(value("twill_route_reconcile_seconds", None), 0.0015);
        assert_eq!(value("twill_ready", None), 1.0);
        assert_eq!(encode(None), "# EOF\n");
    }
}
