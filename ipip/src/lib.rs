//! ipip: how each remote pod CIDR is reached — directly where the next hop is on-link (flannel
//! host-gw), through VXLAN or IPIP where it is another node off-link, through the kernel's
//! table where it is a router — and the tunnel device, neighbour and FDB entries that takes.
//!
//! [`reach`] decides without I/O; [`table`] turns learned next hops into planned routes and
//! tunnel peers, prefix by prefix; [`fabric`] owns the kernel objects; [`links`] holds the
//! netlink calls; [`vtep`] documents how tunnel identities derive from cluster data; [`mtu`] the
//! overheads.

pub mod encap;
pub mod error;
pub mod fabric;
pub mod links;
pub mod mtu;
pub mod reach;
pub mod table;
pub mod vtep;

pub use encap::{Encap, EncapMode, EncapType, VxlanConfig};
pub use error::Error;
pub use fabric::{ipip_available, Fabric, FabricConfig, IPIP_DEVICE};
pub use reach::{tunnel_peers, LocalNet, NextHop, Planner, Reach, TunnelPeer};
pub use table::{Delta, Planned, RouteTable};
