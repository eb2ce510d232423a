//! Wire adapter: OPEN/UPDATE round trips (property tests), packing within the size limit,
//! and the RFC 7606 cases one by one.

use ipnet::IpNet;
use proptest::prelude::*;
use speaker::wire::{
    self, decode, encode_open, frame_len, pack_updates, AsPath, AsSegment, Family, Message,
    Negotiated, OpenParams, Origin, PathAttrs, RawAttr,
};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

fn neg(asn4: bool, ebgp: bool) -> Negotiated {
    Negotiated {
        asn4,
        extended_message: false,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        ebgp,
    }
}

fn one(bytes: &[u8], n: &Negotiated) -> Result<Message, speaker::notification::Notification> {
    let len = frame_len(bytes, n.max_message())?.expect("complete frame");
    assert_eq!(len, bytes.len());
    decode(bytes, n)
}

fn update_bytes(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let len = 23 + withdrawn.len() + attrs.len() + nlri.len();
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.push(2);
    v.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    v.extend_from_slice(withdrawn);
    v.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    v.extend_from_slice(attrs);
    v.extend_from_slice(nlri);
    v
}

/// ORIGIN IGP, AS_PATH [65001] (4-octet), NEXT_HOP 10.0.0.2.
const BASE: &[u8] = &[
    0x40, 1, 1, 0, //
    0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9, //
    0x40, 3, 4, 10, 0, 0, 2,
];
const NLRI: &[u8] = &[24, 10, 244, 2];

fn upd(bytes: &[u8], n: &Negotiated) -> wire::Update {
    match one(bytes, n) {
        Ok(Message::Update(u)) => u,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

fn p(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn well_formed_update_is_accepted() {
    let u = upd(&update_bytes(&[], BASE, NLRI), &neg(true, true));
    assert!(u.treat_as_withdraw.is_none());
    assert_eq!(u.announced.len(), 1);
    let (a, ps) = &u.announced[0];
    assert_eq!(ps, &vec![p("10.244.2.0/24")]);
    assert_eq!(a.as_path.flat(), vec![65001]);
    assert_eq!(a.next_hop, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
}

fn taw(attrs: &[u8], n: &Negotiated) -> (u8, u8) {
    let u = upd(&update_bytes(&[], attrs, NLRI), n);
    assert!(u.announced.is_empty(), "nothing may be announced: {u:?}");
    assert_eq!(
        u.withdrawn,
        vec![p("10.244.2.0/24")],
        "announced NLRI become withdrawals"
    );
    let e = u.treat_as_withdraw.expect("treat-as-withdraw");
    (e.code, e.subcode)
}

fn with(extra: &[u8]) -> Vec<u8> {
    let mut v = BASE.to_vec();
    v.extend_from_slice(extra);
    v
}

#[test]
fn rfc7606_treat_as_withdraw_cases() {
    let n = neg(true, false);
    // §7.1 ORIGIN with an undefined value.
    let mut a = BASE.to_vec();
    a[3] = 7;
    assert_eq!(taw(&a, &n), (3, 6));
    // §7.1 ORIGIN with wrong flags (optional bit set).
    let mut a = BASE.to_vec();
    a[0] = 0xc0;
    assert_eq!(taw(&a, &n).0, 3);
    // §3.d missing NEXT_HOP with IPv4 NLRI.
    assert_eq!(taw(&BASE[..13], &n), (3, 3));
    // §7.4 MED of length 3.
    assert_eq!(taw(&with(&[0x80, 4, 3, 0, 0, 1]), &n).0, 3);
    // §7.8 COMMUNITIES not a multiple of 4.
    assert_eq!(taw(&with(&[0xc0, 8, 3, 0, 0, 1]), &n).0, 3);
    // §4 last attribute overruns the attribute section.
    assert_eq!(taw(&with(&[0x80, 4, 9, 0, 0, 0, 1]), &n), (3, 5));
    // §4 a stub too short to be an attribute.
    assert_eq!(taw(&with(&[0x80]), &n), (3, 5));
    // §7.3 martian NEXT_HOP.
    let mut a = BASE.to_vec();
    a[16..20].copy_from_slice(&[127, 0, 0, 1]);
    assert_eq!(taw(&a, &n), (3, 8));
    // §7.2 AS_PATH segment of zero length.
    let a = [&BASE[..4], &[0x40, 2, 2, 2, 0], &BASE[13..]].concat();
    assert_eq!(taw(&a, &n), (3, 11));
}

#[test]
fn rfc7606_attribute_discard_cases() {
    // ATOMIC_AGGREGATE with a length of 1 is discarded; the route stays.
    let u = upd(
        &update_bytes(&[], &with(&[0x40, 6, 1, 0]), NLRI),
        &neg(true, false),
    );
    assert!(u.treat_as_withdraw.is_none());
    assert_eq!(u.announced.len(), 1);
    assert_eq!(u.discarded, vec![6]);
    // LOCAL_PREF from an eBGP peer is discarded (§7.5).
    let u = upd(
        &update_bytes(&[], &with(&[0x40, 5, 4, 0, 0, 0, 200]), NLRI),
        &neg(true, true),
    );
    assert_eq!(u.announced[0].0.local_pref, None);
    let u = upd(
        &update_bytes(&[], &with(&[0x40, 5, 4, 0, 0, 0, 200]), NLRI),
        &neg(true, false),
    );
    assert_eq!(u.announced[0].0.local_pref, Some(200), "kept from iBGP");
    // A repeated attribute (other than MP_*) is dropped, the first one kept (§3.g).
    let u = upd(
        &update_bytes(
            &[],
            &with(&[0x80, 4, 4, 0, 0, 0, 1, 0x80, 4, 4, 0, 0, 0, 2]),
            NLRI,
        ),
        &neg(true, false),
    );
    assert_eq!(u.announced[0].0.med, Some(1));
    // An unknown optional transitive attribute is passed on with Partial set.
    let u = upd(
        &update_bytes(&[], &with(&[0xc0, 99, 2, 1, 2]), NLRI),
        &neg(true, false),
    );
    assert_eq!(
        u.announced[0].0.other,
        vec![RawAttr {
            flags: 0xe0,
            code: 99,
            value: vec![1, 2]
        }]
    );
    // An unknown optional non-transitive one is dropped quietly.
    let u = upd(
        &update_bytes(&[], &with(&[0x80, 99, 2, 1, 2]), NLRI),
        &neg(true, false),
    );
    assert!(u.announced[0].0.other.is_empty());
}

fn reset(bytes: &[u8]) -> (u8, u8) {
    let e = one(bytes, &neg(true, false)).expect_err("session reset");
    (e.code, e.subcode)
}

#[test]
fn rfc7606_session_reset_cases() {
    // Two MP_UNREACH attributes (§3.g).
    let mp = [0x80, 15, 3, 0, 2, 1];
    assert_eq!(
        reset(&update_bytes(&[], &[&mp[..], &mp[..]].concat(), &[])),
        (3, 1)
    );
    // Unrecognised well-known attribute.
    assert_eq!(
        reset(&update_bytes(&[], &with(&[0x40, 99, 0]), NLRI)),
        (3, 2)
    );
    // NLRI that cannot be parsed (§5.3).
    assert_eq!(
        reset(&update_bytes(&[], BASE, &[33, 10, 0, 0, 0, 0])),
        (3, 10)
    );
    assert_eq!(reset(&update_bytes(&[], BASE, &[24, 10])), (3, 10));
    // Withdrawn length beyond the message.
    let mut b = update_bytes(&[], BASE, NLRI);
    b[19..21].copy_from_slice(&500u16.to_be_bytes());
    assert_eq!(reset(&b), (3, 1));
    // Malformed MP_REACH.
    assert_eq!(
        reset(&update_bytes(&[], &[0x80, 14, 3, 0, 2, 1], &[])),
        (3, 1)
    );
}

#[test]
fn end_of_rib_markers() {
    let n = neg(true, false);
    let u = upd(&wire::encode_end_of_rib(Family::Ipv4Unicast), &n);
    assert_eq!(u.end_of_rib, Some(Family::Ipv4Unicast));
    let u = upd(&wire::encode_end_of_rib(Family::Ipv6Unicast), &n);
    assert_eq!(u.end_of_rib, Some(Family::Ipv6Unicast));
}

#[test]
fn open_errors() {
    let mut o = encode_open(&OpenParams {
        asn: 65001,
        hold_time: 90,
        router_id: "10.0.0.1".parse().unwrap(),
        families: vec![Family::Ipv4Unicast],
        extended_message: false,
        graceful_restart: None,
    });
    let good = one(&o, &Negotiated::initial()).unwrap();
    assert!(matches!(good, Message::Open(_)));
    o[19] = 3;
    let e = one(&o, &Negotiated::initial()).unwrap_err();
    assert_eq!((e.code, e.subcode, e.data), (2, 1, vec![0, 4]));
    // An optional parameter of type 1 (deprecated authentication).
    let mut o = vec![0xff; 16];
    o.extend_from_slice(&32u16.to_be_bytes());
    o.extend_from_slice(&[1, 4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 3, 1, 1, 0]);
    let e = one(&o, &Negotiated::initial()).unwrap_err();
    assert_eq!((e.code, e.subcode), (2, 4));
}

#[test]
fn open_round_trip_with_four_octet_as() {
    let o = encode_open(&OpenParams {
        asn: 4_200_000_001,
        hold_time: 9,
        router_id: "10.0.0.1".parse().unwrap(),
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        extended_message: true,
        graceful_restart: None,
    });
    let Message::Open(open) = one(&o, &Negotiated::initial()).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(open.my_as, wire::AS_TRANS, "AS_TRANS in the 2-octet field");
    assert_eq!(open.asn(), 4_200_000_001);
    assert_eq!(open.hold_time, 9);
    assert_eq!(
        open.caps.families,
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert!(open.caps.route_refresh && open.caps.extended_message);
}

fn attrs(nh: IpAddr, path: Vec<u32>) -> PathAttrs {
    let mut a = PathAttrs::local(nh);
    a.as_path = AsPath(vec![AsSegment::Sequence(path)]);
    a
}

#[test]
fn packing_shares_messages_and_respects_the_limit() {
    let n = neg(true, false);
    let v4: Vec<IpNet> = (0..3000u32)
        .map(|i| IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap())
        .collect();
    let a = Arc::new(attrs(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), vec![65001]));
    let msgs = pack_updates(&n, &[], &[(a, v4.clone())]);
    // 3000 × 4 bytes of NLRI at ~4050 bytes per message: 3 messages, not 3000.
    assert_eq!(msgs.len(), 3, "packed");
    let mut seen = BTreeSet::new();
    for m in &msgs {
        assert!(m.len() <= 4096);
        for (_, ps) in upd(m, &n).announced {
            seen.extend(ps);
        }
    }
    assert_eq!(seen, v4.into_iter().collect());
    // With Extended Message, one message holds them all.
    let mut big = n.clone();
    big.extended_message = true;
    let v6: Vec<IpNet> = (0..3000u32)
        .map(|i| {
            IpNet::new(
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, i as u16, 0, 0, 0, 0, 0)),
                48,
            )
            .unwrap()
        })
        .collect();
    let a = Arc::new(attrs(IpAddr::V6("fd00::1".parse().unwrap()), vec![65001]));
    let msgs = pack_updates(&big, &v6[..10], &[(a, v6[10..].to_vec())]);
    assert!(msgs.iter().all(|m| m.len() <= 65535));
    assert_eq!(msgs.len(), 2, "one withdrawal, one announcement");
}

#[test]
fn long_attributes_get_the_extended_length_flag() {
    let n = neg(true, false);
    let path: Vec<u32> = (1..=100).collect();
    let a = Arc::new(attrs(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), path.clone()));
    let msgs = pack_updates(&n, &[], &[(a, vec![p("10.1.0.0/16")])]);
    // The AS_PATH (2 + 400 bytes) must be written with the flag, or the decode would fail.
    let u = upd(&msgs[0], &n);
    assert_eq!(u.announced[0].0.as_path.flat(), path);
    let m = &msgs[0];
    let attrs_start = 23;
    let second = attrs_start + 4; // ORIGIN is 4 bytes
    assert_eq!(m[second + 1], 2, "AS_PATH follows ORIGIN");
    assert_eq!(m[second] & 0x10, 0x10, "Extended Length set");
}

#[test]
fn two_octet_peer_gets_as_trans_and_as4_path() {
    let n = neg(false, true);
    let a = Arc::new(attrs(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        vec![4_200_000_001, 65001],
    ));
    let msgs = pack_updates(&n, &[], &[(a, vec![p("10.1.0.0/16")])]);
    let u = upd(&msgs[0], &n);
    // Decoding as the 2-octet peer would, then merging AS4_PATH, restores the real path.
    assert_eq!(u.announced[0].0.as_path.flat(), vec![4_200_000_001, 65001]);
}

fn arb_prefix() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::new(IpAddr::V4(a.into()), l).unwrap().trunc()),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::new(IpAddr::V6(a.into()), l).unwrap().trunc()),
    ]
}

fn arb_attrs() -> impl Strategy<Value = PathAttrs> {
    (
        0u8..3,
        prop::collection::vec(prop::collection::vec(1u32.., 1..10), 0..4),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::collection::vec(any::<u32>(), 0..5),
        any::<bool>(),
    )
        .prop_map(|(o, segs, med, lp, comms, atomic)| {
            let mut a = PathAttrs::local(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
            a.origin = [Origin::Igp, Origin::Egp, Origin::Incomplete][o as usize];
            a.as_path = AsPath(segs.into_iter().map(AsSegment::Sequence).collect());
            a.med = med;
            a.local_pref = lp;
            a.communities = comms;
            a.atomic_aggregate = atomic;
            a
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever is packed decodes back to the same prefixes with the same attributes.
    #[test]
    fn update_round_trip(a in arb_attrs(), prefixes in prop::collection::btree_set(arb_prefix(), 1..300),
                         withdrawn in prop::collection::btree_set(arb_prefix(), 0..50), asn4 in any::<bool>()) {
        // Multicast ranges are not unicast NLRI; netgauze refuses to encode them.
        let ok = |p: &IpNet| match p {
            IpNet::V4(n) => !n.addr().is_multicast() && !n.broadcast().is_multicast() && !n.broadcast().is_broadcast() && !n.addr().is_broadcast(),
            IpNet::V6(n) => !n.addr().is_multicast() && !n.broadcast().is_multicast(),
        };
        let prefixes: Vec<IpNet> = prefixes.into_iter().filter(ok).collect();
        let withdrawn: Vec<IpNet> = withdrawn.into_iter().filter(ok).collect();
        let mut a = a;
        if !asn4 {
            // Keep to 2-octet ASNs so the AS4_PATH merge is not exercised here.
            for s in &mut a.as_path.0 { if let AsSegment::Sequence(v) = s { for x in v { *x %= 65535; *x += 1; } } }
        }
        let n = neg(asn4, false);
        let a4 = Arc::new(a.clone());
        let mut a6 = a.clone();
        a6.next_hop = IpAddr::V6("fd00::1".parse().unwrap());
        let a6 = Arc::new(a6);
        let (p4, p6): (Vec<IpNet>, Vec<IpNet>) = prefixes.iter().partition(|p| p.addr().is_ipv4());
        let msgs = pack_updates(&n, &withdrawn, &[(a4, p4.clone()), (a6, p6.clone())]);
        let mut got_w = BTreeSet::new();
        let mut got_a = BTreeSet::new();
        for m in &msgs {
            prop_assert!(m.len() <= 4096);
            let u = upd(m, &n);
            prop_assert!(u.treat_as_withdraw.is_none());
            got_w.extend(u.withdrawn);
            for (attrs, ps) in u.announced {
                let mut want = a.clone();
                want.next_hop = attrs.next_hop;
                prop_assert_eq!(&attrs, &want);
                got_a.extend(ps);
            }
        }
        prop_assert_eq!(got_w, withdrawn.into_iter().collect::<BTreeSet<_>>());
        prop_assert_eq!(got_a, prefixes.into_iter().collect::<BTreeSet<_>>());
    }

    /// No byte string makes framing or decoding panic.
    #[test]
    fn decode_never_panics(kind in 1u8..=5, body in prop::collection::vec(any::<u8>(), 0..600), asn4 in any::<bool>(), ebgp in any::<bool>()) {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(kind);
        m.extend_from_slice(&body);
        let n = neg(asn4, ebgp);
        if let Ok(Some(len)) = frame_len(&m, 4096) {
            let _ = decode(&m[..len], &n);
        }
    }

    /// Mutating valid UPDATEs (the interesting neighbourhood) never panics either.
    #[test]
    fn mutated_updates_never_panic(flips in prop::collection::vec((0usize..200, any::<u8>()), 1..8)) {
        let mut m = update_bytes(&[], &with(&[0x80, 4, 4, 0, 0, 0, 1, 0xc0, 8, 4, 0, 0, 0, 1]), NLRI);
        for (i, b) in flips {
            let i = 19 + i % (m.len() - 19);
            m[i] = b;
        }
        if let Ok(Some(len)) = frame_len(&m, 4096) {
            let _ = decode(&m[..len], &neg(true, false));
        }
    }
}

#[test]
fn an_unknown_attribute_keeps_only_the_flags_that_mean_something() {
    // Optional + Transitive + Extended Length + the four unused low bits, one byte of value.
    let attrs = [
        0x40, 1, 1, 0, // ORIGIN IGP
        0x40, 2, 0, // AS_PATH empty (iBGP)
        0x40, 3, 4, 10, 0, 0, 2, // NEXT_HOP
        0xdd, 0xea, 0, 1, 0x7f, // unknown type 234
    ];
    let u = upd(
        &update_bytes(&[], &attrs, &[24, 10, 244, 1]),
        &neg(true, false),
    );
    let (a, _) = &u.announced[0];
    assert_eq!(a.other.len(), 1);
    assert_eq!(
        (
            a.other[0].flags,
            a.other[0].code,
            a.other[0].value.as_slice()
        ),
        (0xe0, 0xea, &[0x7f][..]),
        "Optional, Transitive, and Partial as it is passed on"
    );
}

#[test]
fn only_prefixes_unicast_nlri_can_carry_are_unicast() {
    let u = |s: &str| wire::unicast_prefix(&s.parse().unwrap());
    assert!(u("10.244.1.0/24") && u("0.0.0.0/0") && u("fd00:244:1::/64"));
    // What the encoder would leave out: multicast, or ending on the broadcast address.
    assert!(!u("234.253.0.0/24") && !u("224.0.0.0/4") && !u("255.255.255.255/32"));
    assert!(!u("ff02::/16"));
}

#[test]
fn attributes_we_do_not_interpret_go_on_unvalidated_and_known_ones_without_partial() {
    // OTC (35) with Partial and a length its own definition would refuse, as one Twill passes
    // it to the next; large communities (32) as they came.
    let attrs = [
        0x40, 1, 1, 0, // ORIGIN IGP
        0x40, 2, 0, // AS_PATH empty (iBGP)
        0x40, 3, 4, 10, 0, 0, 2, // NEXT_HOP
        0xc0, 32, 12, 0, 0, 0xfd, 0xea, 0, 0, 0, 1, 0, 0, 0, 1, // large community
        0xe0, 35, 3, 1, 2, 3, // OTC, Partial, 3 bytes
    ];
    let u = upd(
        &update_bytes(&[], &attrs, &[24, 10, 244, 1]),
        &neg(true, false),
    );
    assert!(
        u.discarded.is_empty() && u.treat_as_withdraw.is_none(),
        "{u:?}"
    );
    let other: Vec<(u8, u8)> = u.announced[0]
        .0
        .other
        .iter()
        .map(|r| (r.code, r.flags))
        .collect();
    assert_eq!(other, vec![(32, 0xc0), (35, 0xe0)]);
}

#[test]
fn graceful_restart_capability_round_trip_with_r_n_and_f_bits() {
    let gr = wire::GracefulRestart {
        restart_state: true,
        notification: true,
        restart_time: 120,
        families: vec![(Family::Ipv4Unicast, true), (Family::Ipv6Unicast, false)],
    };
    let o = encode_open(&OpenParams {
        asn: 64512,
        hold_time: 90,
        router_id: "10.0.0.1".parse().unwrap(),
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        extended_message: false,
        graceful_restart: Some(gr.clone()),
    });
    let Message::Open(open) = one(&o, &Negotiated::initial()).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(open.caps.graceful_restart, Some(gr));
    // The capability's value as RFC 4724 §3 lays it out: R and N bits over a 12-bit time,
    // then AFI, SAFI and the F bit per family.
    let cap = [64u8, 10, 0xc0, 120, 0, 1, 1, 0x80, 0, 2, 1, 0];
    assert!(o.windows(cap.len()).any(|w| w == cap), "{o:02x?}");
    // A time beyond 12 bits never spills into the flags.
    let o = encode_open(&OpenParams {
        asn: 64512,
        hold_time: 90,
        router_id: "10.0.0.1".parse().unwrap(),
        families: vec![Family::Ipv4Unicast],
        extended_message: false,
        graceful_restart: Some(wire::GracefulRestart {
            restart_state: false,
            notification: false,
            restart_time: 0x1005,
            families: vec![],
        }),
    });
    let Message::Open(open) = one(&o, &Negotiated::initial()).unwrap() else {
        panic!("not an OPEN")
    };
    let got = open.caps.graceful_restart.unwrap();
    assert!(!got.restart_state && !got.notification);
    assert_eq!(got.restart_time, 5);
}
