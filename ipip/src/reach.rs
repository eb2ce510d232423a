//! How a remote pod CIDR is reached, decided without I/O from the next hop, the node's own
//! subnets and the encapsulation mode.

use crate::encap::{Encap, EncapMode, EncapType};
use crate::vtep::{vtep_address, vtep_mac, Mac};
use felix_lite::{Hop, Route};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

/// An address on one of the node's interfaces, with its subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalNet {
    pub ifindex: u32,
    pub net: IpNet,
}

/// One way to a remote pod CIDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The next hop is another node on a local subnet: flannel host-gw's `via NODE dev IF`.
    Direct { gateway: IpAddr, ifindex: u32 },
    /// Another node off-link: through the VXLAN device to its VTEP.
    Vxlan(TunnelPeer),
    /// Another node off-link: through `tunl0` straight to its address.
    Ipip { node: IpAddr },
    /// Through a router: the next hop is not a node (a ToR), or is an off-link node with
    /// encapsulation off. On a local subnet (`ifindex`) the route is `via GATEWAY dev IF`;
    /// otherwise it is resolved through the kernel's own routes.
    ViaRouter {
        gateway: IpAddr,
        ifindex: Option<u32>,
    },
}

impl Reach {
    /// The short name `twill routes` prints.
    pub fn name(&self) -> &'static str {
        match self {
            Reach::Direct { .. } => "direct",
            Reach::Vxlan(_) => "vxlan",
            Reach::Ipip { .. } => "ipip",
            Reach::ViaRouter { .. } => "via router",
        }
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A remote VTEP: the neighbour and FDB entries that make `via VTEP dev twill.vxlan onlink` work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelPeer {
    /// The remote node's underlay address (FDB `dst`).
    pub node: IpAddr,
    /// The remote VTEP address, derived from the remote pod CIDR.
    pub vtep: IpAddr,
    pub mac: Mac,
}

impl TunnelPeer {
    pub fn new(node: IpAddr, pod_cidr: &IpNet) -> TunnelPeer {
        TunnelPeer {
            node,
            vtep: vtep_address(pod_cidr),
            mac: vtep_mac(node),
        }
    }
}

/// The VXLAN peers a set of reaches needs (what [`crate::Fabric::set_tunnel_peers`] takes).
pub fn tunnel_peers<'a>(reaches: impl IntoIterator<Item = &'a Reach>) -> BTreeSet<TunnelPeer> {
    reaches
        .into_iter()
        .filter_map(|r| match r {
            Reach::Vxlan(p) => Some(*p),
            _ => None,
        })
        .collect()
}

/// A next hop the speaker chose and, when it is one of a cluster node's addresses, that node's
/// underlay address (the tunnel endpoint; on a dual-stack node it may be of the other family,
/// as an IPv6 pod CIDR crosses an IPv4 underlay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub address: IpAddr,
    pub node: Option<IpAddr>,
}

impl NextHop {
    /// A next hop that is a node's address, with the node's tunnel endpoint.
    pub fn node(address: IpAddr, underlay: IpAddr) -> NextHop {
        NextHop {
            address,
            node: Some(underlay),
        }
    }

    /// A next hop outside the cluster (a router).
    pub fn router(address: IpAddr) -> NextHop {
        NextHop {
            address,
            node: None,
        }
    }
}

/// The pure half of the fabric: the node's subnets, the mode, and the tunnel device if any.
#[derive(Clone, Debug)]
pub struct Planner {
    pub encap: Encap,
    pub local: Vec<LocalNet>,
    /// The tunnel device's index; `None` when mode is `Never` (no device).
    pub tunnel: Option<u32>,
}

impl Planner {
    pub fn on_link(&self, addr: IpAddr) -> Option<u32> {
        self.local
            .iter()
            .find(|l| l.net.contains(&addr))
            .map(|l| l.ifindex)
    }

    /// How `prefix` is reached through one next hop.
    pub fn reach(&self, prefix: &IpNet, nh: NextHop) -> Reach {
        let link = self.on_link(nh.address);
        let encapsulate = nh.node.is_some()
            && self.tunnel.is_some()
            && match self.encap.mode {
                EncapMode::Always => true,
                EncapMode::CrossSubnet => link.is_none(),
                EncapMode::Never => false,
            };
        match (encapsulate, nh.node, link) {
            (true, Some(underlay), _) => match self.encap.kind {
                EncapType::Vxlan => Reach::Vxlan(TunnelPeer::new(underlay, prefix)),
                EncapType::Ipip => Reach::Ipip { node: underlay },
            },
            (false, Some(_), Some(ifindex)) => Reach::Direct {
                gateway: nh.address,
                ifindex,
            },
            (_, _, ifindex) => Reach::ViaRouter {
                gateway: nh.address,
                ifindex,
            },
        }
    }

    /// The kernel route for `prefix` over `next_hops` (several make ECMP), with the way each hop
    /// is reached. `None` when there is no next hop.
    pub fn route(&self, prefix: IpNet, next_hops: &[NextHop]) -> Option<(Route, Vec<Reach>)> {
        if next_hops.is_empty() {
            return None;
        }
        let reaches: Vec<Reach> = next_hops
            .iter()
            .map(|nh| self.reach(&prefix, *nh))
            .collect();
        let hops = reaches.iter().map(|r| self.hop(r));
        Some((Route::new(prefix, hops), reaches))
    }

    fn hop(&self, r: &Reach) -> Hop {
        let tunnel = self.tunnel.unwrap_or(0);
        match r {
            Reach::Direct { gateway, ifindex } => Hop::direct(*gateway, *ifindex),
            Reach::Vxlan(p) => Hop::onlink(p.vtep, tunnel),
            Reach::Ipip { node } => Hop::onlink(*node, tunnel),
            Reach::ViaRouter {
                gateway,
                ifindex: Some(i),
            } => Hop::direct(*gateway, *i),
            Reach::ViaRouter {
                gateway,
                ifindex: None,
            } => Hop::recursive(*gateway),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(mode: EncapMode, tunnel: bool) -> Planner {
        Planner {
            encap: Encap {
                kind: EncapType::Vxlan,
                mode,
            },
            local: vec![LocalNet {
                ifindex: 2,
                net: "10.1.0.11/24".parse().unwrap(),
            }],
            tunnel: tunnel.then_some(9),
        }
    }

    fn nh(a: &str, is_node: bool) -> NextHop {
        let address = a.parse().unwrap();
        if is_node {
            NextHop::node(address, address)
        } else {
            NextHop::router(address)
        }
    }

    #[test]
    fn a_tunnel_goes_to_the_nodes_underlay_not_the_next_hop() {
        // An IPv6 pod CIDR of a dual-stack node off-link: the next hop is its IPv6 address,
        // the VXLAN endpoint its IPv4 one; the VTEP is the pod CIDR's network address.
        let p: IpNet = "fd00:244:0:3::/64".parse().unwrap();
        let nh = NextHop::node("fd00:b::11".parse().unwrap(), "10.2.0.11".parse().unwrap());
        match planner(EncapMode::CrossSubnet, true).reach(&p, nh) {
            Reach::Vxlan(t) => {
                assert_eq!(t.node.to_string(), "10.2.0.11");
                assert_eq!(t.vtep.to_string(), "fd00:244:0:3::");
                assert_eq!(t.mac, vtep_mac("10.2.0.11".parse().unwrap()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_decision_table() {
        let p: IpNet = "10.244.2.0/24".parse().unwrap();
        let same = nh("10.1.0.12", true);
        let far = nh("10.2.0.11", true);
        let tor_far = nh("10.9.9.9", false);
        let tor_near = nh("10.1.0.1", false);
        let cs = planner(EncapMode::CrossSubnet, true);
        assert_eq!(cs.reach(&p, same).name(), "direct");
        assert_eq!(cs.reach(&p, far).name(), "vxlan");
        assert_eq!(cs.reach(&p, tor_far).name(), "via router");
        // A ToR on the node's subnet is a router all the same, reached straight over the link.
        assert_eq!(
            cs.reach(&p, tor_near),
            Reach::ViaRouter {
                gateway: "10.1.0.1".parse().unwrap(),
                ifindex: Some(2)
            }
        );
        let always = planner(EncapMode::Always, true);
        assert_eq!(always.reach(&p, same).name(), "vxlan");
        assert_eq!(always.reach(&p, tor_near).name(), "via router");
        let never = planner(EncapMode::Never, false);
        assert_eq!(never.reach(&p, same).name(), "direct");
        assert_eq!(never.reach(&p, far).name(), "via router");
    }

    #[test]
    fn a_vxlan_route_points_onlink_at_the_derived_vtep() {
        let p: IpNet = "10.244.2.0/24".parse().unwrap();
        let (route, reach) = planner(EncapMode::CrossSubnet, true)
            .route(p, &[nh("10.2.0.11", true)])
            .unwrap();
        assert_eq!(
            route.next_hops(),
            &[Hop::onlink("10.244.2.0".parse().unwrap(), 9)]
        );
        let Reach::Vxlan(peer) = &reach[0] else {
            panic!("expected vxlan, got {reach:?}")
        };
        assert_eq!(peer.node, "10.2.0.11".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn equal_next_hops_become_one_ecmp_route() {
        let p: IpNet = "10.244.0.0/16".parse().unwrap();
        let (route, _) = planner(EncapMode::CrossSubnet, true)
            .route(p, &[nh("10.1.0.1", false), nh("10.1.0.2", false)])
            .unwrap();
        assert_eq!(route.next_hops().len(), 2);
    }
}
