//! Which BGP peers a node has, derived from the cluster view: the node-to-node mesh, route
//! reflectors and their clients, and external peers (ToRs) whose node selector matches.

use cluster::{ClusterView, Node};
use speaker::{
    ExportFilter, GracefulRestartConfig, ImportFilter, NextHopOwners, Password, PeerConfig,
    PrefixRule, SpeakerConfig,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerKind {
    Mesh,
    /// The peer is a route reflector (seen from a client or another reflector).
    Reflector,
    /// The peer is this reflector's client (`client` in `twill status`).
    ReflectorClient,
    External,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Mesh => "mesh",
            PeerKind::Reflector => "reflector",
            PeerKind::ReflectorClient => "client",
            PeerKind::External => "external",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedPeer {
    pub address: IpAddr,
    pub as_number: u32,
    pub kind: PeerKind,
    pub import: ImportFilter,
    /// Pod CIDRs only with their owner's address as next hop (cluster and iBGP peers).
    pub next_hop_owners: NextHopOwners,
    pub password_file: Option<PathBuf>,
    /// The key read from `password_file` (by the agent, which owns the I/O).
    pub password: Option<Password>,
}

/// Which next hop each node's pod CIDRs may arrive with: that node's addresses. Built once per
/// view and shared by every peer (a reflector has one per client).
pub fn owners(view: &ClusterView) -> NextHopOwners {
    NextHopOwners::new(
        view.nodes
            .iter()
            .flat_map(|n| n.pod_cidrs.iter().map(move |c| (*c, n.addresses.clone()))),
    )
}

/// Everything the node `me` peers with. Calico's semantics: nodes with a cluster ID are route
/// reflectors; every other node is a client of every reflector, and reflectors peer with each
/// other as non-clients. The node-to-node mesh adds sessions between the other pairs while it
/// is on, so a running mesh can gain reflectors first and then be turned off without a route
/// going away (each client already has every route through a reflector when its mesh
/// sessions close).
pub fn peers_for(view: &ClusterView, me: &Node) -> Vec<DerivedPeer> {
    let mut out = Vec::new();
    let owners = owners(view);
    let same_as = view
        .nodes
        .iter()
        .filter(|n| n.name != me.name && n.as_number == me.as_number);
    let cluster = |n: &Node, kind| DerivedPeer {
        // Sessions between nodes use their first addresses (one family cluster-wide, checked
        // by the view).
        address: n.address,
        as_number: n.as_number,
        kind,
        // A cluster node may only announce the pod CIDRs it owns.
        import: ImportFilter::exact(n.pod_cidrs.iter().copied()),
        next_hop_owners: owners.clone(),
        password_file: None,
        password: None,
    };
    let i_reflect = me.route_reflector_cluster_id.is_some();
    for n in same_as {
        match (i_reflect, n.route_reflector_cluster_id.is_some()) {
            (_, true) => {
                // A reflector passes on every other node's pod CIDR, each only with its owner
                // as next hop (`next_hop_owners`).
                let mut p = cluster(n, PeerKind::Reflector);
                p.import = reflected(view, me);
                out.push(p);
            }
            (true, false) => out.push(cluster(n, PeerKind::ReflectorClient)),
            (false, false) if view.node_to_node_mesh => out.push(cluster(n, PeerKind::Mesh)),
            (false, false) => {}
        }
    }
    for p in &view.peers {
        if p.node_selector
            .as_ref()
            .is_none_or(|s| s.matches(&me.labels))
        {
            // From outside the cluster, only pod routes are taken unless the peer says which.
            let accept = p
                .accept_prefixes
                .clone()
                .unwrap_or_else(|| view.pod_networks.clone());
            out.push(DerivedPeer {
                address: p.address,
                as_number: p.as_number,
                kind: PeerKind::External,
                // An external peer in our AS (a reflector such as FRR or BIRD) passes node
                // routes with their next hop unchanged, so it gets the owner check too; an eBGP
                // ToR puts itself as next hop and is trusted with the pod network.
                next_hop_owners: if p.as_number == me.as_number {
                    owners.clone()
                } else {
                    NextHopOwners::default()
                },
                import: ImportFilter::Prefixes(
                    accept
                        .into_iter()
                        .map(|prefix| PrefixRule {
                            prefix,
                            max_len: if prefix.addr().is_ipv4() { 32 } else { 128 },
                        })
                        .collect(),
                ),
                password_file: p.password_file.clone(),
                password: None,
            });
        }
    }
    out.sort_by_key(|p| (p.kind, p.address));
    out
}

/// What a reflector may pass to `me`: every other node's pod CIDRs.
fn reflected(view: &ClusterView, me: &Node) -> ImportFilter {
    ImportFilter::exact(
        view.nodes
            .iter()
            .filter(|o| o.name != me.name)
            .flat_map(|o| o.pod_cidrs.iter().copied()),
    )
}

/// A cluster peer kept in its old role while a make-before-break handover runs
/// (`node::peering`): one the view no longer wants (retiring), or one going from reflection to
/// mesh (narrowing). Its role stays; what it may announce follows the new view: every other
/// node's pod CIDRs from a reflector, its own `node`'s from anyone else.
pub fn retiring(
    view: &ClusterView,
    me: &Node,
    old: &DerivedPeer,
    node: &Node,
    owners: &NextHopOwners,
) -> DerivedPeer {
    let mut p = old.clone();
    p.next_hop_owners = owners.clone();
    p.import = match old.kind {
        PeerKind::Reflector => reflected(view, me),
        _ => ImportFilter::exact(node.pod_cidrs.iter().copied()),
    };
    p
}

/// A BGP identifier: the node's IPv4 address (first or second), or for an IPv6-only node a
/// stable value hashed from its name (FNV-1a), kept out of 0.0.0.0.
pub fn router_id(me: &Node) -> Ipv4Addr {
    if let Some(IpAddr::V4(a)) = me.addresses.iter().find(|a| a.is_ipv4()) {
        return *a;
    }
    let mut h: u32 = 0x811c9dc5;
    for b in me.name.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x01000193);
    }
    Ipv4Addr::from(h | 1)
}

/// The speaker's configuration. `restarting`: this agent found its own routes or tunnel
/// entries in the kernel (a restart, not a boot), so it may claim kept forwarding state.
pub fn speaker_config(view: &ClusterView, me: &Node, restarting: bool) -> SpeakerConfig {
    let mut c = SpeakerConfig::new(me.as_number, router_id(me));
    c.listen_port = view.listen_port;
    c.originate = me.pod_cidrs.clone();
    c.cluster_id = me.route_reflector_cluster_id;
    c.graceful_restart = view.graceful_restart.map(|g| GracefulRestartConfig {
        restart_time: g.restart_time,
        stale_time: Duration::from_secs(g.stale_routes_time.into()),
        restarting,
        deferral: Duration::from_secs(g.deferral_time.into()),
    });
    c
}

pub fn peer_config(view: &ClusterView, me: &Node, d: &DerivedPeer) -> PeerConfig {
    let mut p = PeerConfig::new(d.address, d.as_number);
    // Cluster nodes listen on the cluster's port; routers outside it on BGP's own.
    if d.kind != PeerKind::External {
        p.port = view.listen_port;
    }
    p.local_address = me.address_like(d.address);
    // On a dual-stack node, the other family's pod CIDR goes out with this node's address of
    // that family as its next hop (MP-BGP carries both families on one session).
    for a in &me.addresses {
        match a {
            IpAddr::V4(v4) if d.address.is_ipv6() => p.next_hop_v4 = Some(*v4),
            IpAddr::V6(v6) if d.address.is_ipv4() => p.next_hop_v6 = Some(*v6),
            _ => {}
        }
    }
    p.hold_time = view.timers.hold;
    p.keepalive = view.timers.keepalive;
    p.connect_retry = Duration::from_secs(view.timers.connect_retry.into());
    p.import = d.import.clone();
    p.next_hop_owners = d.next_hop_owners.clone();
    p.password = d.password.clone();
    // A node announces the pod CIDR it owns and nothing it learned; a reflector node also
    // passes on, to its clients and the other reflectors, what the reflection rules allow.
    // Never what it learned from a ToR: a node is not a transit.
    let reflecting = me.route_reflector_cluster_id.is_some()
        && matches!(d.kind, PeerKind::ReflectorClient | PeerKind::Reflector);
    p.export = if reflecting {
        ExportFilter::OriginatedAndReflected
    } else {
        ExportFilter::Originated
    };
    // The speaker's role for the peer; what `twill status` calls it stays the agent's kind.
    p.reflector_client = d.kind == PeerKind::ReflectorClient;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(extra: &str) -> ClusterView {
        ClusterView::parse(&format!(
            "podNetwork: 10.244.0.0/16\nnodes:\n  - {{name: a1, address: 10.1.0.11, podCIDR: 10.244.1.0/24, labels: {{rack: a}}}}\n  - {{name: a2, address: 10.1.0.12, podCIDR: 10.244.2.0/24, labels: {{rack: a}}}}\n  - {{name: b1, address: 10.2.0.11, podCIDR: 10.244.3.0/24, labels: {{rack: b}}}}\n{extra}"
        ))
        .unwrap()
    }

    fn kinds(v: &ClusterView, node: &str) -> Vec<(String, &'static str)> {
        peers_for(v, v.node(node).unwrap())
            .into_iter()
            .map(|p| (p.address.to_string(), p.kind.as_str()))
            .collect()
    }

    #[test]
    fn full_mesh_by_default_each_peer_limited_to_its_own_cidr() {
        let v = view("");
        assert_eq!(
            kinds(&v, "a1"),
            vec![("10.1.0.12".into(), "mesh"), ("10.2.0.11".into(), "mesh")]
        );
        let p = &peers_for(&v, v.node("a1").unwrap())[0];
        assert_eq!(
            p.import,
            ImportFilter::exact(["10.244.2.0/24".parse().unwrap()])
        );
    }

    #[test]
    fn reflectors_replace_the_mesh_once_it_is_off() {
        let mut v = view("nodeToNodeMesh: false\n");
        v.nodes[2].route_reflector_cluster_id = Some("10.255.0.1".parse().unwrap());
        assert_eq!(kinds(&v, "a1"), vec![("10.2.0.11".into(), "reflector")]);
        assert_eq!(
            kinds(&v, "b1"),
            vec![
                ("10.1.0.11".into(), "client"),
                ("10.1.0.12".into(), "client")
            ]
        );
        let b1 = v.node("b1").unwrap();
        assert_eq!(
            speaker_config(&v, b1, false).cluster_id,
            Some("10.255.0.1".parse().unwrap())
        );
        // The reflector passes on its clients' routes (never a ToR's); a client only its own.
        let peers = peers_for(&v, b1);
        assert_eq!(
            peer_config(&v, b1, &peers[0]).export,
            ExportFilter::OriginatedAndReflected
        );
        let a1 = v.node("a1").unwrap();
        let to_reflector = &peers_for(&v, a1)[0];
        assert_eq!(
            peer_config(&v, a1, to_reflector).export,
            ExportFilter::Originated
        );
        // From its reflector a client takes the other nodes' pod CIDRs, each only with its
        // owner's address as next hop.
        assert!(to_reflector
            .import
            .allows(&"10.244.2.0/24".parse().unwrap()));
        assert!(!to_reflector
            .import
            .allows(&"10.244.1.0/24".parse().unwrap()));
        let owners = &to_reflector.next_hop_owners;
        assert!(owners.allows(
            &"10.244.2.0/24".parse().unwrap(),
            &"10.1.0.12".parse().unwrap()
        ));
        assert!(!owners.allows(
            &"10.244.2.0/24".parse().unwrap(),
            &"10.2.0.11".parse().unwrap()
        ));
    }

    #[test]
    fn while_the_mesh_is_on_reflectors_join_it() {
        // The migration's middle step: reflectors labelled, mesh still on. Clients keep their
        // mesh sessions to each other; sessions with a reflector take the reflector's roles.
        let mut v = view("");
        v.nodes[2].route_reflector_cluster_id = Some("10.255.0.1".parse().unwrap());
        assert_eq!(
            kinds(&v, "a1"),
            vec![
                ("10.1.0.12".into(), "mesh"),
                ("10.2.0.11".into(), "reflector")
            ]
        );
        assert_eq!(
            kinds(&v, "b1"),
            vec![
                ("10.1.0.11".into(), "client"),
                ("10.1.0.12".into(), "client")
            ]
        );
    }

    #[test]
    fn external_peers_follow_their_selector_and_take_only_pod_routes() {
        let v = view("nodeToNodeMesh: false\npeers:\n  - {address: 10.1.0.1, asNumber: 65000, nodeSelector: {matchLabels: {rack: a}}}\n  - {address: 10.2.0.1, asNumber: 65000, nodeSelector: {matchLabels: {rack: b}}}\n");
        assert_eq!(kinds(&v, "a1"), vec![("10.1.0.1".into(), "external")]);
        assert_eq!(kinds(&v, "b1"), vec![("10.2.0.1".into(), "external")]);
        let p = &peers_for(&v, v.node("a1").unwrap())[0];
        assert_eq!(
            p.import,
            ImportFilter::Prefixes(vec![PrefixRule {
                prefix: "10.244.0.0/16".parse().unwrap(),
                max_len: 32
            }])
        );
        let cfg = peer_config(&v, v.node("a1").unwrap(), p);
        let v2 = view("peers:\n  - {address: 10.1.0.1, asNumber: 65000, acceptPrefixes: [0.0.0.0/0, 10.244.0.0/16]}\n");
        let p2 = &peers_for(&v2, v2.node("a1").unwrap())[2];
        assert!(
            p2.import.allows(&"0.0.0.0/0".parse().unwrap()),
            "configured otherwise"
        );
        assert!(p2.import.allows(&"10.244.9.0/24".parse().unwrap()));
        assert!(
            !p.import.allows(&"0.0.0.0/0".parse().unwrap()),
            "default: pod network only"
        );
        assert_eq!(cfg.port, 179);
        assert_eq!(cfg.export, ExportFilter::Originated);
        assert_eq!(cfg.local_address, Some("10.1.0.11".parse().unwrap()));
    }

    #[test]
    fn dual_stack_nodes_peer_once_and_announce_both_families() {
        let v = ClusterView::parse(
            "podNetwork: 10.244.0.0/16,fd00:244::/48\nnodes:\n  - {name: a1, address: \"10.1.0.11,fd00:1::11\", podCIDR: \"10.244.1.0/24,fd00:244:0:1::/64\"}\n  - {name: a2, address: \"10.1.0.12,fd00:1::12\", podCIDR: \"10.244.2.0/24,fd00:244:0:2::/64\"}\n",
        )
        .unwrap();
        let a1 = v.node("a1").unwrap();
        let peers = peers_for(&v, a1);
        assert_eq!(peers.len(), 1, "one session carries both families");
        assert_eq!(peers[0].address.to_string(), "10.1.0.12");
        // And the same session seen from a2.
        let from_a2 = peers_for(&v, v.node("a2").unwrap());
        assert_eq!(from_a2[0].address.to_string(), "10.1.0.11");
        assert!(peers[0]
            .import
            .allows(&"fd00:244:0:2::/64".parse().unwrap()));
        assert!(peers[0].import.allows(&"10.244.2.0/24".parse().unwrap()));
        let cfg = peer_config(&v, a1, &peers[0]);
        assert_eq!(cfg.local_address, Some("10.1.0.11".parse().unwrap()));
        assert_eq!(cfg.next_hop_v6, Some("fd00:1::11".parse().unwrap()));
        assert_eq!(speaker_config(&v, a1, false).originate.len(), 2);
    }

    #[test]
    fn nodes_of_another_as_are_not_meshed() {
        let mut v = view("");
        v.nodes[2].as_number = 65002;
        assert_eq!(kinds(&v, "a1"), vec![("10.1.0.12".into(), "mesh")]);
    }
}
