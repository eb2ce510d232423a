//! The netlink calls the fabric makes: interface addresses, the tunnel device, and the VXLAN
//! neighbour / FDB entries. The [`crate::Fabric`] is their only caller.

use crate::error::Error;
use crate::reach::{LocalNet, TunnelPeer};
use crate::vtep::Mac;
use felix_lite::PROTO_TWILL;
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVxlan};
use std::collections::HashMap;
use std::net::IpAddr;

fn nl(what: &str) -> impl Fn(rtnetlink::Error) -> Error + '_ {
    move |e| Error::Netlink {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// What the fabric needs to know about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub mtu: u32,
    /// `(vni, port, local address)` for a VXLAN device.
    pub vxlan: Option<(u32, u16, Option<IpAddr>)>,
    /// The hardware address, if it has one.
    pub mac: Option<Vec<u8>>,
    /// Administratively up.
    pub up: bool,
}

fn link_of(m: &LinkMessage) -> Link {
    let mut l = Link {
        ifindex: m.header.index,
        mtu: 0,
        vxlan: None,
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Address(mac) => l.mac = Some(mac.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Data(InfoData::Vxlan(vx)) = i {
                        let (mut id, mut port, mut local) = (0, 0, None);
                        for v in vx {
                            match v {
                                InfoVxlan::Id(x) => id = *x,
                                InfoVxlan::Port(x) => port = *x,
                                InfoVxlan::Local(x) => local = Some(IpAddr::V4(*x)),
                                InfoVxlan::Local6(x) => local = Some(IpAddr::V6(*x)),
                                _ => {}
                            }
                        }
                        l.vxlan = Some((id, port, local));
                    }
                }
            }
            _ => {}
        }
    }
    l
}

pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<Link>, Error> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(link_of(&m))),
        Ok(None) => Ok(None),
        // ENODEV: no such device.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(nl("link lookup")(e)),
    }
}

pub async fn link_by_index(h: &Handle, ifindex: u32) -> Result<Link, Error> {
    let mut s = h.link().get().match_index(ifindex).execute();
    match s.try_next().await.map_err(nl("link lookup"))? {
        Some(m) => Ok(link_of(&m)),
        None => Err(Error::Netlink {
            what: "link lookup".into(),
            message: format!("no interface {ifindex}"),
        }),
    }
}

/// Every address on every interface except `lo` and `skip`, with its subnet.
pub async fn local_nets(h: &Handle, skip: &[u32]) -> Result<Vec<LocalNet>, Error> {
    let mut out = Vec::new();
    let mut s = h.address().get().execute();
    while let Some(m) = s.try_next().await.map_err(nl("address dump"))? {
        if skip.contains(&m.header.index) {
            continue;
        }
        let addr = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = addr.or_else(|| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        let Some(addr) = addr else { continue };
        if addr.is_loopback() {
            continue;
        }
        if let Ok(net) = IpNet::new(addr, m.header.prefix_len) {
            out.push(LocalNet {
                ifindex: m.header.index,
                net,
            });
        }
    }
    Ok(out)
}

pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    pub local: IpAddr,
    pub underlay: u32,
    pub mtu: u32,
    pub mac: Mac,
}

/// Create the VXLAN device, or adopt an existing one whose VNI, port and local address match
/// (a previous run's: its neighbour and FDB entries keep traffic flowing across the restart).
/// An adopted device gets only the writes that change something: setting a MAC address, even
/// the one it has, makes the kernel flush the device's neighbour entries (NETDEV_CHANGEADDR),
/// and cross-rack pod traffic would have no VTEP until they are written again. A mismatched
/// device is recreated.
pub async fn ensure_vxlan(h: &Handle, spec: &VxlanSpec<'_>) -> Result<u32, Error> {
    if let Some(l) = link_by_name(h, spec.name).await? {
        if l.vxlan == Some((spec.vni, spec.port, Some(spec.local))) {
            let mut msg = LinkUnspec::new_with_index(l.ifindex);
            let mut changes = Vec::new();
            if l.mtu != spec.mtu {
                msg = msg.mtu(spec.mtu);
                changes.push("mtu");
            }
            if l.mac.as_deref() != Some(&spec.mac[..]) {
                msg = msg.address(spec.mac.to_vec());
                changes.push("mac");
            }
            if !l.up {
                msg = msg.up();
                changes.push("up");
            }
            if changes.is_empty() {
                tracing::info!(device = spec.name, "adopted the tunnel device unchanged");
                return Ok(l.ifindex);
            }
            tracing::info!(device = spec.name, ?changes, "adopted the tunnel device");
            h.link()
                .set(msg.build())
                .execute()
                .await
                .map_err(nl("set vxlan device"))?;
            return Ok(l.ifindex);
        }
        tracing::warn!(device = spec.name, found = ?l.vxlan,
            "tunnel device has other parameters; recreating it");
        delete_link(h, l.ifindex).await?;
    }
    let mut b = LinkVxlan::new(spec.name, spec.vni)
        .port(spec.port)
        .dev(spec.underlay)
        .learning(false);
    b = match spec.local {
        IpAddr::V4(a) => b.local(a),
        IpAddr::V6(a) => b.local6(a),
    };
    let msg = b.mtu(spec.mtu).address(spec.mac.to_vec()).up().build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(nl("create vxlan device"))?;
    link_by_name(h, spec.name)
        .await?
        .map(|l| l.ifindex)
        .ok_or_else(|| Error::Netlink {
            what: "create vxlan device".into(),
            message: "device missing after creation".into(),
        })
}

pub async fn set_mtu_up(h: &Handle, ifindex: u32, mtu: u32) -> Result<(), Error> {
    let msg = LinkUnspec::new_with_index(ifindex).mtu(mtu).up().build();
    h.link()
        .set(msg)
        .execute()
        .await
        .map_err(nl("set tunnel device"))
}

pub async fn delete_link(h: &Handle, ifindex: u32) -> Result<(), Error> {
    h.link()
        .del(ifindex)
        .execute()
        .await
        .map_err(nl("delete tunnel device"))
}

/// Put `addr` (a host address) on the device, leaving it alone if already there.
pub async fn ensure_host_address(h: &Handle, ifindex: u32, addr: IpAddr) -> Result<(), Error> {
    let plen = if addr.is_ipv4() { 32 } else { 128 };
    h.address()
        .add(ifindex, addr, plen)
        .replace()
        .execute()
        .await
        .map_err(nl("add tunnel address"))
}

/// `ip neigh replace VTEP lladdr MAC dev DEV nud permanent` and
/// `bridge fdb replace MAC dev DEV dst NODE self permanent`, both tagged with Twill's protocol.
pub async fn set_peer(h: &Handle, ifindex: u32, p: &TunnelPeer) -> Result<(), Error> {
    let mut n = h
        .neighbours()
        .add(ifindex, p.vtep)
        .link_layer_address(&p.mac)
        .state(NeighbourState::Permanent)
        .replace();
    n.message_mut()
        .attributes
        .push(NeighbourAttribute::Protocol(RouteProtocol::Other(
            PROTO_TWILL,
        )));
    n.execute().await.map_err(nl("add vxlan neighbour"))?;
    let mut f = h
        .neighbours()
        .add_bridge(ifindex, &p.mac)
        .destination(p.node)
        .flags(NeighbourFlags::Own)
        .state(NeighbourState::Permanent)
        .replace();
    f.message_mut()
        .attributes
        .push(NeighbourAttribute::Protocol(RouteProtocol::Other(
            PROTO_TWILL,
        )));
    f.execute().await.map_err(nl("add vxlan fdb entry"))
}

/// What of a tunnel peer's entries to leave when it goes: its neighbour entry when a wanted
/// peer has the same VTEP address (a pod CIDR now on another node: the entry was already
/// rewritten to the new MAC), its FDB entry when a wanted peer has the same MAC and node
/// (another pod CIDR of the same node).
#[derive(Clone, Copy, Debug, Default)]
pub struct Keep {
    pub neighbour: bool,
    pub fdb: bool,
}

async fn delete_neighbour(h: &Handle, ifindex: u32, p: &TunnelPeer) -> Result<(), Error> {
    let mut n = NeighbourMessage::default();
    n.header.family = if p.vtep.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    n.header.ifindex = ifindex;
    n.attributes
        .push(NeighbourAttribute::Destination(addr(p.vtep)));
    ignore_missing(h.neighbours().del(n).execute().await).map_err(nl("delete vxlan neighbour"))?;
    Ok(())
}

pub async fn delete_peer(
    h: &Handle,
    ifindex: u32,
    p: &TunnelPeer,
    keep: Keep,
) -> Result<(), Error> {
    if !keep.neighbour {
        delete_neighbour(h, ifindex, p).await?;
    }
    if keep.fdb {
        return Ok(());
    }
    let mut f = NeighbourMessage::default();
    f.header.family = AddressFamily::Bridge;
    f.header.ifindex = ifindex;
    f.header.flags = NeighbourFlags::Own;
    f.attributes
        .push(NeighbourAttribute::LinkLayerAddress(p.mac.to_vec()));
    f.attributes
        .push(NeighbourAttribute::Destination(addr(p.node)));
    ignore_missing(h.neighbours().del(f).execute().await).map_err(nl("delete vxlan fdb entry"))
}

fn addr(a: IpAddr) -> NeighbourAddress {
    match a {
        IpAddr::V4(v) => NeighbourAddress::Inet(v),
        IpAddr::V6(v) => NeighbourAddress::Inet6(v),
    }
}

fn ip_of(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v) => Some(IpAddr::V4(*v)),
        NeighbourAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn ignore_missing(r: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match r {
        // ENOENT: already gone, which is what we wanted.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -2 => Ok(()),
        other => other,
    }
}

/// A neighbour or FDB entry's destination address and MAC.
fn dst_and_mac(m: &NeighbourMessage) -> (Option<IpAddr>, Option<Mac>) {
    let mut dst = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(d) => dst = ip_of(d),
            NeighbourAttribute::LinkLayerAddress(l) => mac = <Mac>::try_from(l.as_slice()).ok(),
            _ => {}
        }
    }
    (dst, mac)
}

/// The permanent neighbour + FDB pairs on the device: what a previous run left.
pub async fn peers_on(h: &Handle, ifindex: u32) -> Result<Vec<TunnelPeer>, Error> {
    let mut vteps: Vec<(IpAddr, Mac)> = Vec::new();
    let mut dst_of: HashMap<Mac, IpAddr> = HashMap::new();
    let mut s = h.neighbours().get().execute();
    while let Some(m) = s.try_next().await.map_err(nl("neighbour dump"))? {
        if m.header.ifindex != ifindex {
            continue;
        }
        let (dst, mac) = dst_and_mac(&m);
        if let (Some(d), Some(m)) = (dst, mac) {
            vteps.push((d, m));
        }
    }
    let mut s = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute();
    while let Some(m) = s.try_next().await.map_err(nl("fdb dump"))? {
        if m.header.ifindex != ifindex {
            continue;
        }
        let (dst, mac) = dst_and_mac(&m);
        if let (Some(d), Some(m)) = (dst, mac) {
            dst_of.insert(m, d);
        }
    }
    Ok(vteps
        .into_iter()
        .filter_map(|(vtep, mac)| {
            dst_of.get(&mac).map(|node| TunnelPeer {
                node: *node,
                vtep,
                mac,
            })
        })
        .collect())
}
