//! Translation between felix-lite's routes and rtnetlink route messages.

use crate::route::{Hop, KernelRoute, Route, PROTO_TWILL, TABLE_MAIN};
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use std::net::IpAddr;

fn family(prefix: &IpNet) -> AddressFamily {
    match prefix {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

fn address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    }
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn header(prefix: &IpNet) -> RouteHeader {
    RouteHeader {
        address_family: family(prefix),
        destination_prefix_length: prefix.prefix_len(),
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Other(PROTO_TWILL),
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..Default::default()
    }
}

/// The message that installs `route` (every hop resolved) with Twill's protocol number.
pub fn to_message(route: &Route) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = header(&route.prefix);
    m.attributes.push(RouteAttribute::Table(TABLE_MAIN));
    m.attributes
        .push(RouteAttribute::Destination(address(route.prefix.addr())));
    match route.next_hops() {
        [one] => {
            m.attributes
                .push(RouteAttribute::Gateway(address(one.gateway)));
            if let Some(i) = one.ifindex {
                m.attributes.push(RouteAttribute::Oif(i));
            }
            if one.onlink {
                m.header.flags |= RouteFlags::Onlink;
            }
        }
        many => {
            let hops = many
                .iter()
                .map(|h| {
                    let mut nh = RouteNextHop::default();
                    nh.interface_index = h.ifindex.unwrap_or(0);
                    nh.attributes = vec![RouteAttribute::Gateway(address(h.gateway))];
                    if h.onlink {
                        nh.flags |= RouteNextHopFlags::Onlink;
                    }
                    nh
                })
                .collect();
            m.attributes.push(RouteAttribute::MultiPath(hops));
        }
    }
    m
}

/// The message that deletes exactly this route of ours: the protocol number is part of the match,
/// so the kernel refuses to delete another protocol's route of the same prefix.
pub fn to_delete_message(k: &KernelRoute) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = header(&k.route.prefix);
    m.header.scope = RouteScope::NoWhere;
    m.attributes.push(RouteAttribute::Table(TABLE_MAIN));
    m.attributes
        .push(RouteAttribute::Destination(address(k.route.prefix.addr())));
    m.attributes.push(RouteAttribute::Priority(k.priority));
    m
}

/// A lookup request for `addr` (what `ip route get ADDR` sends).
pub fn lookup_message(addr: IpAddr) -> RouteMessage {
    let prefix = IpNet::from(addr);
    let mut m = RouteMessage::default();
    m.header.address_family = family(&prefix);
    m.header.destination_prefix_length = prefix.prefix_len();
    m.attributes
        .push(RouteAttribute::Destination(address(addr)));
    m
}

/// The gateway and interface a lookup answered with; the gateway is `addr` itself when the
/// kernel reaches it on a connected subnet.
pub fn lookup_answer(addr: IpAddr, m: &RouteMessage) -> Option<(IpAddr, u32)> {
    let mut gateway = addr;
    let mut oif = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Gateway(g) => gateway = ip(g)?,
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Some((gateway, oif?))
}

/// A main-table unicast-ish route (unicast, blackhole, unreachable, prohibit) from a dump or a
/// notification; `None` for other tables, cached clones, local and broadcast routes.
pub fn from_message(m: &RouteMessage) -> Option<KernelRoute> {
    let h = &m.header;
    if h.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let kind: u8 = u8::from(h.kind);
    // 1 unicast, 6 blackhole, 7 unreachable, 8 prohibit; local (2), broadcast (3), multicast …
    // are the kernel's own business.
    if !matches!(kind, 1 | 6 | 7 | 8) {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut priority = 0;
    let mut multipath = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = ip(d),
            RouteAttribute::Gateway(g) => gateway = ip(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => priority = *p,
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    if table != TABLE_MAIN {
        return None;
    }
    let dst = dst.unwrap_or(match h.address_family {
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    });
    let prefix = IpNet::new(dst, h.destination_prefix_length).ok()?;
    let onlink = h.flags.contains(RouteFlags::Onlink);
    let hops: Vec<Hop> = match multipath {
        Some(list) => list
            .iter()
            .filter_map(|nh| {
                let gw = nh.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(g) => ip(g),
                    _ => None,
                })?;
                Some(Hop {
                    gateway: gw,
                    ifindex: Some(nh.interface_index),
                    onlink: nh.flags.contains(RouteNextHopFlags::Onlink),
                })
            })
            .collect(),
        None => gateway
            .map(|g| Hop {
                gateway: g,
                ifindex: oif,
                onlink,
            })
            .into_iter()
            .collect(),
    };
    Some(KernelRoute {
        route: Route::new(prefix, hops),
        protocol: u8::from(h.protocol),
        priority,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_survives_the_trip_through_a_message() {
        let p: IpNet = "10.244.2.0/24".parse().unwrap();
        for hops in [
            vec![Hop::direct("192.168.31.62".parse().unwrap(), 3)],
            vec![Hop::onlink("10.244.2.0".parse().unwrap(), 9)],
            vec![
                Hop::direct("192.168.31.62".parse().unwrap(), 3),
                Hop::direct("192.168.31.63".parse().unwrap(), 3),
            ],
        ] {
            let r = Route::new(p, hops);
            let k = from_message(&to_message(&r)).expect("main-table unicast");
            assert_eq!(k.route, r);
            assert!(k.is_ours());
        }
    }

    #[test]
    fn other_tables_are_not_ours_to_see() {
        let r = Route::new(
            "10.0.0.0/8".parse().unwrap(),
            [Hop::direct("10.1.1.1".parse().unwrap(), 2)],
        );
        let mut m = to_message(&r);
        m.attributes
            .retain(|a| !matches!(a, RouteAttribute::Table(_)));
        m.attributes.push(RouteAttribute::Table(100));
        assert_eq!(from_message(&m), None);
    }
}
