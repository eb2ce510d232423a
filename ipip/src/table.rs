//! From learned next hops to kernel routes and tunnel peers, without I/O: the one place that
//! composes "route event → reach decision → tunnel peers + programmed routes", used by the
//! agent and by the lab harness alike. It takes prefixes, next-hop addresses and the map of
//! which addresses are nodes (with their underlay addresses), not speaker types, and plans
//! only the prefixes that changed.

use crate::reach::{NextHop, Planner, Reach, TunnelPeer};
use felix_lite::{Change, Route};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// One planned prefix: its kernel route and how each of its next hops is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub route: Route,
    pub reach: Vec<Reach>,
}

/// What one update changed.
#[derive(Debug, Default)]
pub struct Delta {
    /// Routes to set or remove, one per prefix whose planned route changed.
    pub changes: Vec<Change>,
    /// Whether the set of tunnel peers ([`RouteTable::tunnel_peers`]) changed.
    pub tunnels_changed: bool,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Next-hop addresses per prefix, as learned.
    learned: BTreeMap<IpNet, Vec<IpAddr>>,
    /// Node address → that node's underlay address (its tunnel endpoint).
    nodes: HashMap<IpAddr, IpAddr>,
    planned: BTreeMap<IpNet, Planned>,
    /// How many planned prefixes use each tunnel peer.
    tunnels: BTreeMap<TunnelPeer, usize>,
}

impl RouteTable {
    /// Replace the map of node addresses (next hop → underlay). Call [`RouteTable::replan`]
    /// after it if it changed: a next hop may have become, or stopped being, a node.
    pub fn set_nodes(&mut self, nodes: HashMap<IpAddr, IpAddr>) -> bool {
        let changed = nodes != self.nodes;
        self.nodes = nodes;
        changed
    }

    /// Set the next hops of each given prefix (empty: no route any more) and plan those
    /// prefixes only.
    pub fn update(
        &mut self,
        planner: &Planner,
        updates: impl IntoIterator<Item = (IpNet, Vec<IpAddr>)>,
    ) -> Delta {
        let mut touched = BTreeSet::new();
        for (prefix, hops) in updates {
            if hops.is_empty() {
                self.learned.remove(&prefix);
            } else {
                self.learned.insert(prefix, hops);
            }
            touched.insert(prefix);
        }
        self.plan(planner, touched)
    }

    /// Plan every learned prefix again (the node map or the local subnets changed).
    pub fn replan(&mut self, planner: &Planner) -> Delta {
        let all: BTreeSet<IpNet> = self
            .learned
            .keys()
            .chain(self.planned.keys())
            .copied()
            .collect();
        self.plan(planner, all)
    }

    fn plan(&mut self, planner: &Planner, prefixes: BTreeSet<IpNet>) -> Delta {
        let mut delta = Delta::default();
        // Peers that lost their last user and peers that gained their first: a peer moving
        // from one prefix to another within this call is in neither.
        let (mut gone, mut new_peers) = (BTreeSet::new(), BTreeSet::new());
        for prefix in prefixes {
            let new = self.learned.get(&prefix).and_then(|hops| {
                let nhs: Vec<NextHop> = hops
                    .iter()
                    .map(|a| match self.nodes.get(a) {
                        Some(underlay) => NextHop::node(*a, *underlay),
                        None => NextHop::router(*a),
                    })
                    .collect();
                planner
                    .route(prefix, &nhs)
                    .map(|(route, reach)| Planned { route, reach })
            });
            if self.planned.get(&prefix) == new.as_ref() {
                continue;
            }
            let old = match &new {
                Some(p) => {
                    delta.changes.push(Change::Set(p.route.clone()));
                    self.planned.insert(prefix, p.clone())
                }
                None => {
                    delta.changes.push(Change::Remove(prefix));
                    self.planned.remove(&prefix)
                }
            };
            for t in old.iter().flat_map(tunnels_of) {
                if let Some(n) = self.tunnels.get_mut(&t) {
                    *n -= 1;
                    if *n == 0 {
                        self.tunnels.remove(&t);
                        if !new_peers.remove(&t) {
                            gone.insert(t);
                        }
                    }
                }
            }
            for t in new.iter().flat_map(tunnels_of) {
                let n = self.tunnels.entry(t).or_insert(0);
                if *n == 0 && !gone.remove(&t) {
                    new_peers.insert(t);
                }
                *n += 1;
            }
        }
        delta.tunnels_changed = !gone.is_empty() || !new_peers.is_empty();
        delta
    }

    /// The VXLAN peers the planned routes need (what `Fabric::set_tunnel_peers` takes).
    pub fn tunnel_peers(&self) -> BTreeSet<TunnelPeer> {
        self.tunnels.keys().copied().collect()
    }

    pub fn planned(&self) -> &BTreeMap<IpNet, Planned> {
        &self.planned
    }

    /// Every planned route (a complete set for `Programmer::replace_all`).
    pub fn routes(&self) -> Vec<Route> {
        self.planned.values().map(|p| p.route.clone()).collect()
    }
}

/// The tunnel peers of one planned prefix, each once.
fn tunnels_of(p: &Planned) -> BTreeSet<TunnelPeer> {
    crate::reach::tunnel_peers(&p.reach)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::{Encap, EncapMode, EncapType};
    use crate::reach::LocalNet;

    fn planner() -> Planner {
        Planner {
            encap: Encap {
                kind: EncapType::Vxlan,
                mode: EncapMode::CrossSubnet,
            },
            local: vec![LocalNet {
                ifindex: 2,
                net: "10.1.0.11/24".parse().unwrap(),
            }],
            tunnel: Some(9),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn table() -> RouteTable {
        let mut t = RouteTable::default();
        t.set_nodes(
            ["10.1.0.12", "10.2.0.11", "fd00:b::11"]
                .iter()
                .map(|a| {
                    (
                        ip(a),
                        if a.contains(':') {
                            ip("10.2.0.11")
                        } else {
                            ip(a)
                        },
                    )
                })
                .collect(),
        );
        t
    }

    #[test]
    fn only_changed_prefixes_are_planned_and_reported() {
        let p = planner();
        let mut t = table();
        let d = t.update(
            &p,
            [
                (net("10.244.2.0/24"), vec![ip("10.1.0.12")]),
                (net("10.244.3.0/24"), vec![ip("10.2.0.11")]),
                (net("fd00:244:0:3::/64"), vec![ip("fd00:b::11")]),
            ],
        );
        assert_eq!(d.changes.len(), 3);
        assert!(d.tunnels_changed);
        // Both of b1's CIDRs share one tunnel endpoint and MAC but need a VTEP each.
        let peers = t.tunnel_peers();
        assert_eq!(peers.len(), 2);
        assert!(peers.iter().all(|x| x.node == ip("10.2.0.11")));
        assert_eq!(t.planned()[&net("10.244.2.0/24")].reach[0].name(), "direct");
        // The same next hops again: nothing to do.
        let d = t.update(&p, [(net("10.244.3.0/24"), vec![ip("10.2.0.11")])]);
        assert!(d.changes.is_empty() && !d.tunnels_changed);
        // One of b1's CIDRs goes: its route is removed, the other tunnel peer stays.
        let d = t.update(&p, [(net("10.244.3.0/24"), vec![])]);
        assert_eq!(d.changes, vec![Change::Remove(net("10.244.3.0/24"))]);
        assert!(d.tunnels_changed);
        assert_eq!(t.tunnel_peers().len(), 1);
        assert_eq!(t.routes().len(), 2);
    }

    #[test]
    fn a_changed_route_with_the_same_tunnel_peer_changes_no_tunnel() {
        let p = planner();
        let mut t = table();
        t.update(&p, [(net("10.244.3.0/24"), vec![ip("10.2.0.11")])]);
        // An ECMP hop via a router joins: a new route, the same tunnel peer.
        let d = t.update(
            &p,
            [(net("10.244.3.0/24"), vec![ip("10.2.0.11"), ip("10.1.0.1")])],
        );
        assert_eq!(d.changes.len(), 1);
        assert!(!d.tunnels_changed);
        assert_eq!(t.tunnel_peers().len(), 1);
    }

    #[test]
    fn a_next_hop_that_stops_being_a_node_is_replanned_through_a_router() {
        let p = planner();
        let mut t = table();
        t.update(&p, [(net("10.244.3.0/24"), vec![ip("10.2.0.11")])]);
        assert_eq!(t.planned()[&net("10.244.3.0/24")].reach[0].name(), "vxlan");
        assert!(t.set_nodes(HashMap::new()));
        let d = t.replan(&p);
        assert_eq!(d.changes.len(), 1);
        assert!(d.tunnels_changed);
        assert!(t.tunnel_peers().is_empty());
        assert_eq!(
            t.planned()[&net("10.244.3.0/24")].reach[0].name(),
            "via router"
        );
    }
}
