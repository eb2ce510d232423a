//! Encoding: OPEN, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH, and packed UPDATEs.
//!
//! Attribute flags are set here from the encoded size (netgauze writes a >255-byte value with
//! a 2-byte length but without the Extended Length flag), and UPDATEs are split so that none
//! exceeds the negotiated limit (netgauze writes any size).

use super::attrs::{AsSegment, Origin, PathAttrs, RawAttr};
use super::decode::GracefulRestart;
use super::{msg_type, Family, Negotiated};
use crate::notification::Notification;
use ipnet::IpNet;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::community::Community;
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::path_attribute::{
    Aggregator, As2Aggregator, As2PathSegment, As4Aggregator, As4Path, As4PathSegment, AsPath,
    AsPathSegmentType, AtomicAggregate, ClusterId, ClusterList, Communities, LocalPreference,
    MpReach, MpUnreach, MultiExitDiscriminator, NextHop, Origin as NgOrigin, Originator,
    PathAttribute, PathAttributeValue, UnknownAttribute,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::WritablePdu;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// AS_TRANS (RFC 6793): stands in for a 4-octet AS in 2-octet fields.
pub const AS_TRANS: u16 = 23456;

fn header(len: usize, kind: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&[0xff; 16]);
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.push(kind);
    v
}

fn write(msg: BgpMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    // Writing to a Vec only fails for values netgauze cannot represent, which we never build.
    msg.write(&mut out)
        .expect("netgauze refused a message built by the encoder");
    out
}

pub fn encode_keepalive() -> Vec<u8> {
    header(19, msg_type::KEEPALIVE)
}

/// NOTIFICATION, data truncated so the message stays within 4096 bytes.
pub fn encode_notification(n: &Notification) -> Vec<u8> {
    let data = &n.data[..n.data.len().min(4096 - 21)];
    let mut v = header(21 + data.len(), msg_type::NOTIFICATION);
    v.push(n.code);
    v.push(n.subcode);
    v.extend_from_slice(data);
    v
}

pub fn encode_route_refresh(f: Family) -> Vec<u8> {
    let (afi, safi) = f.afi_safi();
    let mut v = header(23, msg_type::ROUTE_REFRESH);
    v.extend_from_slice(&afi.to_be_bytes());
    v.push(0);
    v.push(safi);
    v
}

#[derive(Clone, Debug)]
pub struct OpenParams {
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub families: Vec<Family>,
    pub extended_message: bool,
    /// The Graceful Restart capability (RFC 4724, with RFC 8538's N bit) to offer.
    pub graceful_restart: Option<GracefulRestart>,
}

pub fn encode_open(p: &OpenParams) -> Vec<u8> {
    let my_as = u16::try_from(p.asn).unwrap_or(AS_TRANS);
    let mut caps: Vec<BgpCapability> = p
        .families
        .iter()
        .map(|f| {
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                address_type(*f),
            ))
        })
        .collect();
    caps.push(BgpCapability::RouteRefresh);
    caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(
        p.asn,
    )));
    if p.extended_message {
        caps.push(BgpCapability::ExtendedMessage);
    }
    if let Some(gr) = &p.graceful_restart {
        let families: Vec<GracefulRestartAddressFamily> = gr
            .families
            .iter()
            .map(|(f, fwd)| GracefulRestartAddressFamily::new(*fwd, address_type(*f)))
            .collect();
        // netgauze ORs the time into the flags word: keep it to its 12 bits.
        caps.push(BgpCapability::GracefulRestartCapability(
            GracefulRestartCapability::new(
                gr.restart_state,
                gr.notification,
                gr.restart_time & 0x0fff,
                families,
            ),
        ));
    }
    let open = BgpOpenMessage::new(
        my_as,
        p.hold_time,
        p.router_id,
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    );
    write(BgpMessage::Open(open))
}

fn address_type(f: Family) -> AddressType {
    match f {
        Family::Ipv4Unicast => AddressType::Ipv4Unicast,
        Family::Ipv6Unicast => AddressType::Ipv6Unicast,
    }
}

/// Build a path attribute with flags chosen here: the well-known ones from the RFCs, the
/// extended-length bit from the encoded size.
fn attr(
    optional: bool,
    transitive: bool,
    partial: bool,
    value: PathAttributeValue,
) -> PathAttribute {
    let short = PathAttribute::from(optional, transitive, partial, false, value)
        .expect("flags chosen to match the attribute");
    if short.len() - 3 <= 255 {
        return short;
    }
    PathAttribute::from(optional, transitive, partial, true, short.value().clone())
        .expect("flags chosen to match the attribute")
}

fn raw_attr(r: &RawAttr) -> PathAttribute {
    attr(
        r.flags & 0x80 != 0,
        r.flags & 0x40 != 0,
        r.flags & 0x20 != 0,
        PathAttributeValue::UnknownAttribute(UnknownAttribute::new(r.code, r.value.clone())),
    )
}

fn segment_type(s: &AsSegment) -> (AsPathSegmentType, &[u32]) {
    match s {
        AsSegment::Sequence(v) => (AsPathSegmentType::AsSequence, v),
        AsSegment::Set(v) => (AsPathSegmentType::AsSet, v),
    }
}

/// Attributes other than NEXT_HOP and MP_REACH, in type-code order.
fn common_attrs(a: &PathAttrs, neg: &Negotiated) -> Vec<PathAttribute> {
    let mut out = Vec::with_capacity(8);
    let origin = match a.origin {
        Origin::Igp => NgOrigin::IGP,
        Origin::Egp => NgOrigin::EGP,
        Origin::Incomplete => NgOrigin::Incomplete,
    };
    out.push(attr(false, true, false, PathAttributeValue::Origin(origin)));
    let mut needs_as4 = false;
    let path = if neg.asn4 {
        AsPath::As4PathSegments(
            a.as_path
                .0
                .iter()
                .map(|s| {
                    let (t, v) = segment_type(s);
                    As4PathSegment::new(t, v.to_vec())
                })
                .collect::<Vec<_>>()
                .into(),
        )
    } else {
        AsPath::As2PathSegments(
            a.as_path
                .0
                .iter()
                .map(|s| {
                    let (t, v) = segment_type(s);
                    let v: Vec<u16> = v
                        .iter()
                        .map(|asn| {
                            u16::try_from(*asn).unwrap_or_else(|_| {
                                needs_as4 = true;
                                AS_TRANS
                            })
                        })
                        .collect();
                    As2PathSegment::new(t, v)
                })
                .collect::<Vec<_>>()
                .into(),
        )
    };
    out.push(attr(false, true, false, PathAttributeValue::AsPath(path)));
    if let Some(med) = a.med {
        out.push(attr(
            true,
            false,
            false,
            PathAttributeValue::MultiExitDiscriminator(MultiExitDiscriminator::new(med)),
        ));
    }
    if let Some(lp) = a.local_pref {
        out.push(attr(
            false,
            true,
            false,
            PathAttributeValue::LocalPreference(LocalPreference::new(lp)),
        ));
    }
    if a.atomic_aggregate {
        out.push(attr(
            false,
            true,
            false,
            PathAttributeValue::AtomicAggregate(AtomicAggregate),
        ));
    }
    if let Some((asn, id)) = a.aggregator {
        let agg = if neg.asn4 {
            Aggregator::As4Aggregator(As4Aggregator::new(asn, id))
        } else {
            Aggregator::As2Aggregator(As2Aggregator::new(
                u16::try_from(asn).unwrap_or(AS_TRANS),
                id,
            ))
        };
        out.push(attr(true, true, false, PathAttributeValue::Aggregator(agg)));
    }
    if !a.communities.is_empty() {
        out.push(attr(
            true,
            true,
            false,
            PathAttributeValue::Communities(Communities::new(
                a.communities
                    .iter()
                    .map(|c| Community::new(*c))
                    .collect::<Vec<_>>(),
            )),
        ));
    }
    if let Some(id) = a.originator_id {
        out.push(attr(
            true,
            false,
            false,
            PathAttributeValue::Originator(Originator::new(id)),
        ));
    }
    if !a.cluster_list.is_empty() {
        out.push(attr(
            true,
            false,
            false,
            PathAttributeValue::ClusterList(ClusterList::new(
                a.cluster_list
                    .iter()
                    .map(|c| ClusterId::new(*c))
                    .collect::<Vec<_>>(),
            )),
        ));
    }
    if needs_as4 {
        out.push(attr(
            true,
            true,
            false,
            PathAttributeValue::As4Path(As4Path::new(
                a.as_path
                    .0
                    .iter()
                    .map(|s| {
                        let (t, v) = segment_type(s);
                        As4PathSegment::new(t, v.to_vec())
                    })
                    .collect::<Vec<_>>(),
            )),
        ));
    }
    out.extend(a.other.iter().map(raw_attr));
    out
}

fn prefix_size(p: &IpNet) -> usize {
    1 + (p.prefix_len() as usize).div_ceil(8)
}

/// Whether `p` can be carried as unicast NLRI: not multicast, and for IPv4 neither starting
/// nor ending on a multicast or broadcast address. The encoder leaves out any prefix that
/// fails this, so the speaker refuses such prefixes on receipt and at origination, rather than
/// recording routes as advertised that never went out (found by the established fuzz target).
pub fn unicast_prefix(p: &IpNet) -> bool {
    match p {
        IpNet::V4(n) => Ipv4Unicast::from_net(*n).is_ok(),
        IpNet::V6(n) => Ipv6Unicast::from_net(*n).is_ok(),
    }
}

fn v4_nlri(ps: &[IpNet]) -> Vec<Ipv4UnicastAddress> {
    ps.iter()
        .filter_map(|p| match p {
            IpNet::V4(n) => Ipv4Unicast::from_net(*n)
                .ok()
                .map(Ipv4UnicastAddress::new_no_path_id),
            IpNet::V6(_) => None,
        })
        .collect()
}

fn v6_nlri(ps: &[IpNet]) -> Vec<Ipv6UnicastAddress> {
    ps.iter()
        .filter_map(|p| match p {
            IpNet::V6(n) => Ipv6Unicast::from_net(*n)
                .ok()
                .map(|u| Ipv6UnicastAddress::new(None, u)),
            IpNet::V4(_) => None,
        })
        .collect()
}

/// Split `prefixes` into runs whose encoded size fits in `room` bytes.
fn chunks(prefixes: &[IpNet], room: usize) -> Vec<&[IpNet]> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, p) in prefixes.iter().enumerate() {
        let s = prefix_size(p);
        if used + s > room && i > start {
            out.push(&prefixes[start..i]);
            start = i;
            used = 0;
        }
        used += s;
    }
    if start < prefixes.len() {
        out.push(&prefixes[start..]);
    }
    out
}

fn attrs_len(attrs: &[PathAttribute]) -> usize {
    attrs.iter().map(|a| a.len()).sum()
}

/// MP attribute overhead: flags, code, 2-byte length (extended, as MP attributes easily
/// exceed 255 bytes), AFI, SAFI.
const MP_HEADER: usize = 4 + 3;

/// Pack withdrawals and announcements into as few UPDATEs as the size limit allows:
/// prefixes sharing an attribute set go together; IPv6 travels in MP_REACH / MP_UNREACH.
pub fn pack_updates(
    neg: &Negotiated,
    withdraw: &[IpNet],
    announce: &[(Arc<PathAttrs>, Vec<IpNet>)],
) -> Vec<Vec<u8>> {
    let max = neg.max_message();
    let mut out = Vec::new();
    let (w4, w6): (Vec<IpNet>, Vec<IpNet>) =
        withdraw.iter().partition(|p| matches!(p, IpNet::V4(_)));
    for chunk in chunks(&w4, max - 23) {
        out.push(write(BgpMessage::Update(BgpUpdateMessage::new(
            v4_nlri(chunk),
            Vec::new(),
            Vec::new(),
        ))));
    }
    for chunk in chunks(&w6, max - 23 - MP_HEADER) {
        let a = attr(
            true,
            false,
            false,
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                nlri: v6_nlri(chunk).into(),
            }),
        );
        out.push(write(BgpMessage::Update(BgpUpdateMessage::new(
            Vec::new(),
            vec![a],
            Vec::new(),
        ))));
    }
    for (attrs, prefixes) in announce {
        let (p4, p6): (Vec<IpNet>, Vec<IpNet>) =
            prefixes.iter().partition(|p| matches!(p, IpNet::V4(_)));
        let common = common_attrs(attrs, neg);
        if !p4.is_empty() {
            let nh = match attrs.next_hop {
                IpAddr::V4(a) => a,
                // An IPv4 prefix with an IPv6 next hop needs RFC 8950, which we do not
                // negotiate: such routes are filtered before they get here.
                IpAddr::V6(_) => continue,
            };
            let mut list = common.clone();
            list.insert(
                2,
                attr(
                    false,
                    true,
                    false,
                    PathAttributeValue::NextHop(NextHop::new(nh)),
                ),
            );
            let room = max - 23 - attrs_len(&list);
            for chunk in chunks(&p4, room) {
                out.push(write(BgpMessage::Update(BgpUpdateMessage::new(
                    Vec::new(),
                    list.clone(),
                    v4_nlri(chunk),
                ))));
            }
        }
        if !p6.is_empty() {
            let IpAddr::V6(global) = attrs.next_hop else {
                continue;
            };
            let nh_len = if attrs.next_hop_local.is_some() {
                32
            } else {
                16
            };
            let room = max - 23 - attrs_len(&common) - MP_HEADER - 1 - nh_len - 1;
            for chunk in chunks(&p6, room) {
                let mut list = common.clone();
                list.insert(
                    0,
                    attr(
                        true,
                        false,
                        false,
                        PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                            next_hop_global: global,
                            next_hop_local: attrs.next_hop_local,
                            nlri: v6_nlri(chunk).into(),
                        }),
                    ),
                );
                out.push(write(BgpMessage::Update(BgpUpdateMessage::new(
                    Vec::new(),
                    list,
                    Vec::new(),
                ))));
            }
        }
    }
    out
}

/// End-of-RIB marker (RFC 4724 §2).
pub fn encode_end_of_rib(f: Family) -> Vec<u8> {
    match f {
        Family::Ipv4Unicast => write(BgpMessage::Update(BgpUpdateMessage::new(
            Vec::new(),
            Vec::new(),
            Vec::new(),
        ))),
        Family::Ipv6Unicast => write(BgpMessage::Update(BgpUpdateMessage::new(
            Vec::new(),
            vec![attr(
                true,
                false,
                false,
                PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                    nlri: Vec::new().into(),
                }),
            )],
            Vec::new(),
        ))),
    }
}
