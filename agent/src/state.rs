//! The state the control socket and the HTTP endpoints read: handles to the speaker and the
//! route programmer, the route table as programmed, the peers as derived, readiness and the
//! main loop's heartbeat. Written by the main loop only; the control socket and HTTP take snapshots through it and never
//! change it.

use crate::peers::DerivedPeer;
use crate::status::{rfc3339_ago, GracefulRestartStatus, PeerStatus, RouteStatus, Status};
use felix_lite::Programmer;
use ipip::Planned;
use ipnet::IpNet;
use speaker::{BestRoute, Speaker};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The planned prefixes as `twill routes` shows them, kept in step by the node's dataplane.
pub type RouteView = Arc<Mutex<BTreeMap<IpNet, Planned>>>;

/// What the control socket and the metrics endpoint read.
pub struct NodeState {
    pub node: String,
    pub speaker: Speaker,
    pub programmer: Programmer,
    pub table: RouteView,
    pub peers: Mutex<BTreeMap<IpAddr, DerivedPeer>>,
    /// Peers the view no longer wants, kept until their routes come from another peer too.
    pub retiring: Mutex<BTreeSet<IpAddr>>,
    /// Sessions going from reflection to mesh, still in their reflection role.
    pub narrowing: Mutex<BTreeSet<IpAddr>>,
    /// The cluster's route reflectors by node name, and why each is one.
    pub reflectors: Mutex<BTreeMap<String, String>>,
    pub ready: AtomicBool,
    /// NetworkPolicy, when this node enforces it (Kubernetes mode, or file mode with
    /// `--workloads`).
    pub policy: Option<crate::netpol::PolicyHandle>,
    /// The owner of Twill's iptables chains and ipsets (NetworkPolicy and outgoing NAT).
    pub firewall: policy::Enforcer,
    /// The cluster's outgoing NAT setting as last applied.
    pub nat: Mutex<cluster::NatOutgoingSettings>,
    /// What the Kubernetes view watcher did (Kubernetes mode).
    pub watch: Option<Arc<cluster::k8s::watch::WatchStats>>,
    /// Milliseconds since start at the main loop's last turn (`/healthz`).
    pub alive_ms: AtomicU64,
    pub started: Instant,
}

impl NodeState {
    pub async fn status(&self) -> Status {
        let kinds = self.peers.lock().expect("peers").clone();
        let retiring = self.retiring.lock().expect("retiring").clone();
        let narrowing = self.narrowing.lock().expect("narrowing").clone();
        let peers = self
            .speaker
            .snapshot()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|p| PeerStatus {
                address: p.address.to_string(),
                as_number: p.asn,
                kind: match kinds.get(&p.address) {
                    Some(d) if retiring.contains(&p.address) => {
                        format!("{} (retiring)", d.kind.as_str())
                    }
                    Some(d) if narrowing.contains(&p.address) => {
                        format!("{} (until the mesh is up)", d.kind.as_str())
                    }
                    Some(d) => d.kind.as_str().to_string(),
                    None => p.role.to_string(),
                },
                state: p.state.to_string(),
                since: rfc3339_ago(Duration::from_secs(p.since_secs)),
                prefixes_received: p.prefixes_received,
                prefixes_accepted: p.prefixes_accepted,
                prefixes_rejected: p
                    .prefixes_rejected
                    .iter()
                    .map(|(k, v)| (k.key().to_string(), *v))
                    .collect(),
                prefixes_advertised: p.prefixes_advertised,
                last_error: p.last_error,
                last_down: p.last_down,
                graceful_restart: GracefulRestartStatus {
                    negotiated: p.gr.negotiated,
                    notification: p.gr.notification,
                    restart_time_left: p.gr.restart_time_left,
                    stale_time_left: p.gr.stale_time_left,
                    stale_routes: p.gr.stale_routes,
                },
            })
            .collect();
        let best: BTreeMap<IpNet, BestRoute> = self
            .speaker
            .routes()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| Some((e.prefix, e.best?)))
            .collect();
        let routes = self
            .table
            .lock()
            .expect("route table")
            .values()
            .map(|v| {
                let b = best.get(&v.route.prefix);
                RouteStatus {
                    learned_from: b.and_then(|b| b.from).map(|a| a.to_string()),
                    originator_id: b.and_then(|b| b.attrs.originator_id).map(|a| a.to_string()),
                    cluster_list: b
                        .map(|b| b.attrs.cluster_list.iter().map(|c| c.to_string()).collect())
                        .unwrap_or_default(),
                    prefix: v.route.prefix.to_string(),
                    next_hops: v
                        .route
                        .next_hops()
                        .iter()
                        .map(|h| h.gateway.to_string())
                        .collect(),
                    via: {
                        let mut names: Vec<&str> = v.reach.iter().map(|r| r.name()).collect();
                        names.dedup();
                        names.join(",")
                    },
                }
            })
            .collect();
        Status {
            node: self.node.clone(),
            ready: self.ready.load(std::sync::atomic::Ordering::Relaxed),
            peers,
            routes,
            policy: self.policy.as_ref().map(|p| p.status()),
            nat: Some(self.nat_status()),
            iptables: self.iptables_status(),
            reflectors: self.reflectors.lock().expect("reflectors").clone(),
        }
    }

    /// The iptables backend, once the firewall's owner has resolved it.
    pub fn iptables_status(&self) -> Option<crate::status::IptablesStatus> {
        let r = self.firewall.status().iptables?;
        Some(crate::status::IptablesStatus {
            backend: r.backend.map_or("plain", |b| b.name()).to_string(),
            why: r.why,
        })
    }

    pub fn nat_status(&self) -> crate::status::NatStatus {
        let fw = self.firewall.status();
        let setting = self.nat.lock().expect("nat").clone();
        crate::status::NatStatus {
            programmed: fw.syncs > 0 && fw.error.is_none(),
            families: fw.nat_families.iter().map(|f| f.to_string()).collect(),
            setting: setting.describe(),
            masqueraded: fw.nat_masqueraded,
            non_masquerade: setting
                .non_masquerade
                .iter()
                .map(|n| n.to_string())
                .collect(),
            error: fw.error,
        }
    }
}
