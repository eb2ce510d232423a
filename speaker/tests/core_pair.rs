//! Two sans-IO cores wired back to back in memory: no sockets, no clock, no tokio. Shows the
//! core's outputs are all a transport needs, and tests what needs two speakers.

use proptest::prelude::*;
mod common;

use common::Wire;
use speaker::core::{Core, Input, Output};
use speaker::{ExportFilter, Family, NextHopOwners, PeerConfig, Rejection, SpeakerConfig};
use std::net::IpAddr;
use std::time::Instant;

#[test]
fn collision_keeps_one_connection_the_higher_identifier_opened() {
    let mut w = Wire::new(&[(64512, "10.0.0.1"), (64512, "10.0.0.2")]);
    // Both add each other in the same instant: both dial, two connections cross.
    w.peer(0, 1, 64512);
    w.peer(1, 0, 64512);
    w.run();
    assert_eq!(w.established(0), 1);
    assert_eq!(w.established(1), 1);
    // Both sides resolved the collision with Cease / Connection Collision Resolution…
    let collisions: Vec<_> = w
        .sent_notifications
        .iter()
        .filter(|n| (n.1, n.2) == (6, 7))
        .collect();
    assert!(!collisions.is_empty(), "{:?}", w.sent_notifications);
    // …and agreed: 10.0.0.1 < 10.0.0.2, so the connection 10.0.0.2 opened survives.
    assert_eq!(w.links.len(), 2, "exactly one connection left (two ends)");
    for end in w.links.keys() {
        assert_eq!(
            w.opened_by[end], 1,
            "the survivor was opened by the higher identifier"
        );
    }
    // And routes flowed over the survivor.
    assert!(w.routes[0]
        .iter()
        .any(|r| r.prefix.to_string() == "10.244.2.0/24" && r.best.is_some()));
}

#[test]
fn ebgp_advertisement_rules() {
    // 1 (AS 65001) -- eBGP -- 2 (AS 65002) -- iBGP -- 3 (AS 65002)
    let mut w = Wire::new(&[
        (65001, "10.0.0.1"),
        (65002, "10.0.0.2"),
        (65002, "10.0.0.3"),
    ]);
    w.peer(0, 1, 65002);
    w.peer(1, 0, 65001);
    w.peer(1, 2, 65002);
    w.peer(2, 1, 65002);
    w.run();
    // Node 3 learns node 1's prefix through 2 over iBGP: AS path [65001], next hop unchanged
    // (node 1's address, as received over eBGP), LOCAL_PREF set.
    let r = w
        .last_event(2, "10.244.1.0/24")
        .and_then(|r| r.best.clone())
        .expect("node 3 learns 10.244.1.0/24");
    assert_eq!(r.attrs.as_path.flat(), vec![65001]);
    assert_eq!(
        r.next_hops[0].address,
        "10.0.0.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(r.attrs.local_pref, Some(100));
    // Node 1 learns node 3's prefix through 2 over eBGP: 65002 prepended once, next-hop-self.
    let r = w
        .last_event(0, "10.244.3.0/24")
        .and_then(|r| r.best.clone())
        .expect("node 1 learns 10.244.3.0/24");
    assert_eq!(r.attrs.as_path.flat(), vec![65002]);
    assert_eq!(
        r.next_hops[0].address,
        "10.0.0.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(r.attrs.local_pref, None);
    // Node 2 does not send node 3's iBGP route back to node 3, nor node 1's to node 1.
    let snap = w.cores[1].snapshot(Instant::now());
    for p in snap {
        assert_eq!(p.prefixes_advertised, 2, "{p:?}");
    }
}

#[test]
fn export_originated_only_keeps_a_node_from_being_transit() {
    // 1 (AS 65100, a ToR) -- eBGP -- 2 (AS 65001) -- iBGP -- 3 (AS 65001): nodes 2 and 3
    // export only what they originate, as the agent configures cluster nodes.
    let mut w = Wire::new(&[
        (65100, "10.0.0.1"),
        (65001, "10.0.0.2"),
        (65001, "10.0.0.3"),
    ]);
    w.peer(0, 1, 65001);
    w.peer_with(1, 0, 65100, ExportFilter::Originated);
    w.peer_with(1, 2, 65001, ExportFilter::Originated);
    w.peer_with(2, 1, 65001, ExportFilter::Originated);
    w.run();
    assert!(
        w.best_of(0, "10.244.2.0/24"),
        "the ToR gets node 2's own CIDR"
    );
    assert!(
        !w.best_of(0, "10.244.3.0/24"),
        "node 2 does not pass node 3's iBGP route to the ToR"
    );
    assert!(w.best_of(1, "10.244.1.0/24"), "node 2 learns the ToR's");
    assert!(
        !w.best_of(2, "10.244.1.0/24"),
        "node 2 does not pass the ToR's eBGP route to node 3"
    );
    for p in w.cores[1].snapshot(Instant::now()) {
        assert_eq!(p.prefixes_advertised, 1, "{p:?}");
    }
    // Relaxing the filter at run time re-advertises without a reset.
    let before = w.sent_notifications.len();
    w.peer_with(1, 0, 65100, ExportFilter::All);
    w.run();
    assert!(w.best_of(0, "10.244.3.0/24"));
    // And tightening it withdraws again.
    w.peer_with(1, 0, 65100, ExportFilter::Originated);
    w.run();
    assert!(!w.best_of(0, "10.244.3.0/24"));
    assert!(w.best_of(0, "10.244.2.0/24"));
    assert_eq!(w.sent_notifications.len(), before, "no session was reset");
}

#[test]
fn withdrawal_propagates_and_removal_of_a_peer_withdraws_its_routes() {
    let mut w = Wire::new(&[(64512, "10.0.0.1"), (64512, "10.0.0.2")]);
    w.peer(0, 1, 64512);
    w.peer(1, 0, 64512);
    w.run();
    w.push(1, Input::SetOriginated(vec![]));
    w.run();
    let last = w.last_event(0, "10.244.2.0/24").unwrap();
    assert!(last.best.is_none(), "withdrawn");
    w.push(
        1,
        Input::SetOriginated(vec!["10.244.2.0/24".parse().unwrap()]),
    );
    w.run();
    w.push(0, Input::RemovePeer("10.0.0.2".parse().unwrap()));
    w.run();
    let last = w.last_event(0, "10.244.2.0/24").unwrap();
    assert!(last.best.is_none(), "a removed peer's routes go");
    // Both sides set RFC 8538's N bit: the Cease goes as a Hard Reset, so the peer flushes
    // our routes instead of keeping them as for a restart.
    assert!(
        w.sent_notifications.contains(&(0, 6, 9)),
        "Cease / Hard Reset for Peer De-configured: {:?}",
        w.sent_notifications
    );
}

#[test]
fn route_refresh_resends_the_adj_rib_out() {
    let mut w = Wire::new(&[(64512, "10.0.0.1"), (64512, "10.0.0.2")]);
    w.peer(0, 1, 64512);
    w.peer(1, 0, 64512);
    w.run();
    let before = w.cores[0].snapshot(Instant::now())[0].updates_received;
    // Core 0 asks core 1 for a refresh over the live connection.
    let (&(_, conn), _) = w.links.iter().find(|(k, _)| k.0 == 0).unwrap();
    let (o, their) = w.links[&(0, conn)];
    w.push(
        o,
        Input::Data {
            conn: their,
            bytes: speaker::wire::encode_route_refresh(Family::Ipv4Unicast),
        },
    );
    w.run();
    let after = w.cores[0].snapshot(Instant::now())[0].updates_received;
    assert_eq!(after, before + 1, "the refresh re-sent one UPDATE");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary bytes from an established or fresh peer never panic the core, and it always
    /// answers garbage with a NOTIFICATION or waits for more bytes.
    #[test]
    fn arbitrary_input_never_panics_the_core(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6),
                                             establish in any::<bool>(), marker in any::<bool>()) {
        let mut w = Wire::new(&[(64512, "10.0.0.1"), (64512, "10.0.0.2")]);
        w.peer(0, 1, 64512);
        if establish {
            w.peer(1, 0, 64512);
        }
        w.run();
        let conn = w.links.keys().find(|k| k.0 == 0).map(|k| k.1);
        let Some(conn) = conn else { return Ok(()) };
        for mut c in chunks {
            if marker && c.len() >= 19 {
                // Often give it a valid marker so the decoders behind framing are reached.
                c[..16].fill(0xff);
            }
            let out = w.cores[0].handle(Input::Data { conn, bytes: c }, Instant::now());
            drop(out);
        }
    }
}

/// The TCP MD5 key travels as data: the core hands it to the transport for the listener when a
/// peer is added, re-keyed or removed, and with every connection it asks for.
#[test]
fn md5_keys_are_outputs_for_the_listener_and_each_connect() {
    use speaker::Password;
    let now = Instant::now();
    let mut core = Core::new(SpeakerConfig::new(65001, "10.0.0.1".parse().unwrap())).unwrap();
    let peer_addr: IpAddr = "10.0.0.2".parse().unwrap();
    let keyed = |key: Option<&str>| {
        let mut p = PeerConfig::new(peer_addr, 65002);
        p.password = key.map(Password::new);
        p
    };
    let listen_keys = |out: &[Output]| -> Vec<Option<Password>> {
        out.iter()
            .filter_map(|o| match o {
                Output::ListenKey { peer, password } if *peer == peer_addr => {
                    Some(password.clone())
                }
                _ => None,
            })
            .collect()
    };
    let connect_key = |out: &[Output]| {
        out.iter().find_map(|o| match o {
            Output::Connect { password, .. } => Some(password.clone()),
            _ => None,
        })
    };

    let out = core.handle(Input::AddPeer(keyed(Some("s3cr3t"))), now);
    assert_eq!(listen_keys(&out), [Some(Password::new("s3cr3t"))]);
    assert_eq!(connect_key(&out), Some(Some(Password::new("s3cr3t"))));

    // The same config again: nothing to re-key, no reset.
    let out = core.handle(Input::UpdatePeer(keyed(Some("s3cr3t"))), now);
    assert!(listen_keys(&out).is_empty(), "{out:?}");
    assert_eq!(connect_key(&out), None);

    // A new key: the listener first, then a new connection with it.
    let out = core.handle(Input::UpdatePeer(keyed(Some("n3w"))), now);
    assert_eq!(listen_keys(&out), [Some(Password::new("n3w"))]);
    assert_eq!(connect_key(&out), Some(Some(Password::new("n3w"))));

    // A rejected config changes nothing.
    let mut bad = keyed(Some("x"));
    bad.hold_time = 1;
    let out = core.handle(Input::UpdatePeer(bad), now);
    assert!(listen_keys(&out).is_empty(), "{out:?}");

    let out = core.handle(Input::RemovePeer(peer_addr), now);
    assert_eq!(listen_keys(&out), [None], "the key leaves with the peer");
}

#[test]
fn end_of_rib_per_family_role_and_the_cause_of_a_session_down() {
    let mut w = Wire::new(&[
        (64512, "10.0.0.1"),
        (64512, "10.0.0.2"),
        (65002, "10.0.0.3"),
    ]);
    for (a, b) in [(0, 1), (1, 0)] {
        let mut p = PeerConfig::new(w.addrs[b], 64512);
        p.families = vec![Family::Ipv4Unicast, Family::Ipv6Unicast];
        p.reflector_client = a == 0;
        w.push(a, Input::AddPeer(p));
    }
    w.peer(0, 2, 65002);
    w.peer(2, 0, 64512);
    w.run();
    let snap = w.cores[0].snapshot(Instant::now());
    let client = snap.iter().find(|p| p.address == w.addrs[1]).unwrap();
    assert_eq!(client.role, speaker::PeerRole::ReflectorClient);
    assert_eq!(
        client.families.keys().copied().collect::<Vec<_>>(),
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert!(client
        .families
        .values()
        .all(|f| f.eor_received && f.eor_sent));
    assert!(client.end_of_rib_received && client.end_of_rib_sent);
    let ext = snap.iter().find(|p| p.address == w.addrs[2]).unwrap();
    assert_eq!(ext.role, speaker::PeerRole::Ebgp);
    assert_eq!(
        ext.families.len(),
        1,
        "only IPv4 negotiated with the eBGP peer"
    );
    // A reflector client must be iBGP: refused, and the running session is left alone.
    let mut bad = PeerConfig::new(w.addrs[2], 65002);
    bad.families = vec![Family::Ipv4Unicast];
    bad.reflector_client = true;
    w.push(0, Input::UpdatePeer(bad));
    w.run();
    assert_eq!(w.established(0), 2);
    // A new role on a running peer re-advertises; it does not reset the session.
    let notifications = w.sent_notifications.len();
    let mut plain = PeerConfig::new(w.addrs[1], 64512);
    plain.families = vec![Family::Ipv4Unicast, Family::Ipv6Unicast];
    w.push(0, Input::UpdatePeer(plain));
    w.run();
    assert_eq!(w.sent_notifications.len(), notifications);
    let snap = w.cores[0].snapshot(Instant::now());
    let p = snap.iter().find(|p| p.address == w.addrs[1]).unwrap();
    assert_eq!(
        (p.role, p.state),
        (speaker::PeerRole::Ibgp, speaker::State::Established)
    );
    // Core 1 removes core 0: core 0 sees a Cease and says so; its per-family state is gone.
    w.push(1, Input::RemovePeer(w.addrs[0]));
    w.run();
    let snap = w.cores[0].snapshot(Instant::now());
    let gone = snap.iter().find(|p| p.address == w.addrs[1]).unwrap();
    assert_eq!(
        gone.last_down.as_deref(),
        Some("received Cease / Hard Reset (6/9) for Cease / Peer De-configured (6/3)"),
        "{gone:?}"
    );
    assert!(gone.families.is_empty() && !gone.end_of_rib_received);
}

/// A reflector (cluster 10.255.0.1) and two clients: each client's route reaches the other
/// with ORIGINATOR_ID and CLUSTER_LIST set and its next hop unchanged (RFC 4456 §8); without a
/// cluster ID the same sessions do not pass routes between the clients (RFC 4271 §9.2).
#[test]
fn a_reflector_passes_routes_between_its_clients() {
    for reflecting in [true, false] {
        let mut w = Wire::new(&[
            (64512, "10.0.0.1"),
            (64512, "10.0.0.2"),
            (64512, "10.0.0.3"),
        ]);
        let mut c = SpeakerConfig::new(64512, "10.0.0.1".parse().unwrap());
        c.originate = vec!["10.244.1.0/24".parse().unwrap()];
        c.cluster_id = reflecting.then(|| "10.255.0.1".parse().unwrap());
        w.cores[0] = Core::new(c).unwrap();
        for client in [1, 2] {
            let mut p = PeerConfig::new(w.addrs[client], 64512);
            p.families = vec![Family::Ipv4Unicast];
            p.reflector_client = true;
            w.push(0, Input::AddPeer(p));
            w.peer(client, 0, 64512);
        }
        w.run();
        assert_eq!(w.established(0), 2);
        let got = w
            .last_event(2, "10.244.2.0/24")
            .and_then(|r| r.best.clone());
        if !reflecting {
            assert!(got.is_none(), "no reflection without a cluster ID");
            continue;
        }
        let b = got.expect("client 2 learns client 1's route through the reflector");
        assert_eq!(b.next_hops[0].address, w.addrs[1], "next hop unchanged");
        assert_eq!(b.attrs.originator_id, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(
            b.attrs.cluster_list,
            vec!["10.255.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert!(w.best_of(1, "10.244.3.0/24"));
        // The reflector's own route goes to both as usual, without reflection attributes.
        let own = w
            .last_event(1, "10.244.1.0/24")
            .and_then(|r| r.best.clone())
            .unwrap();
        assert!(own.attrs.cluster_list.is_empty() && own.attrs.originator_id.is_none());
        // Roles change without a reset: 2 becomes a non-client (a client's routes still reach
        // it), then 1 does too (a non-client's routes go to clients only: 2 loses 1's route).
        let notifications = w.sent_notifications.len();
        for (client, still_learns) in [(2, true), (1, false)] {
            let mut p = PeerConfig::new(w.addrs[client], 64512);
            p.families = vec![Family::Ipv4Unicast];
            w.push(0, Input::UpdatePeer(p));
            w.run();
            assert_eq!(
                w.best_of(2, "10.244.2.0/24"),
                still_learns,
                "after {client}"
            );
        }
        assert_eq!(
            w.sent_notifications.len(),
            notifications,
            "no session was reset"
        );
    }
}

/// Configure core `c` as a reflector with `cluster`, peered with `clients` as its clients and
/// `others` as non-clients, all iBGP; `clients` peer back with plain iBGP sessions.
fn reflector(w: &mut Wire, c: usize, cluster: &str, clients: &[usize], others: &[usize]) {
    let id = w.addrs[c].to_string();
    let mut cfg = SpeakerConfig::new(64512, id.parse().unwrap());
    cfg.originate = vec![format!("10.244.{}.0/24", &id[id.len() - 1..])
        .parse()
        .unwrap()];
    cfg.cluster_id = Some(cluster.parse().unwrap());
    w.cores[c] = Core::new(cfg).unwrap();
    for (&o, client) in clients
        .iter()
        .map(|o| (o, true))
        .chain(others.iter().map(|o| (o, false)))
    {
        let mut p = PeerConfig::new(w.addrs[o], 64512);
        p.families = vec![Family::Ipv4Unicast];
        p.reflector_client = client;
        w.push(c, Input::AddPeer(p));
    }
}

fn rejected(w: &Wire, c: usize, from: usize, why: Rejection) -> usize {
    w.cores[c]
        .snapshot(Instant::now())
        .into_iter()
        .find(|p| p.address == w.addrs[from])
        .and_then(|p| p.prefixes_rejected.get(&why).copied())
        .unwrap_or(0)
}

/// Two reflectors with one cluster ID (a redundant pair), both serving clients 3 and 4: each
/// client learns the other's route through both; what one reflector reflects to the other
/// comes back with their shared cluster ID and is refused (RFC 4456 §8), counted in the
/// snapshot, and nothing loops (the exchange settles).
#[test]
fn a_redundant_reflector_pair_with_one_cluster_id_does_not_loop() {
    let mut w = Wire::new(&[
        (64512, "10.0.0.1"),
        (64512, "10.0.0.2"),
        (64512, "10.0.0.3"),
        (64512, "10.0.0.4"),
    ]);
    reflector(&mut w, 0, "10.255.0.1", &[2, 3], &[1]);
    reflector(&mut w, 1, "10.255.0.1", &[2, 3], &[0]);
    for client in [2, 3] {
        w.peer(client, 0, 64512);
        w.peer(client, 1, 64512);
    }
    w.run();
    assert_eq!((w.established(0), w.established(1)), (3, 3));
    for (client, other) in [(2, "10.244.4.0/24"), (3, "10.244.3.0/24")] {
        let paths = w.cores[client]
            .snapshot(Instant::now())
            .iter()
            .filter(|p| p.prefixes_accepted > 0)
            .count();
        assert_eq!(paths, 2, "client {client} hears from both reflectors");
        assert!(w.best_of(client, other));
    }
    // Each reflector refuses the two clients' routes reflected by the other.
    assert_eq!(rejected(&w, 0, 1, Rejection::ClusterLoop), 2);
    assert_eq!(rejected(&w, 1, 0, Rejection::ClusterLoop), 2);
}

/// Two reflectors with different cluster IDs, one client each: a client's route crosses both
/// (to the other reflector as a non-client, from it to its client), arriving with both
/// cluster IDs, the nearer first, and the first originator kept.
#[test]
fn reflectors_with_different_cluster_ids_chain_their_clusters() {
    let mut w = Wire::new(&[
        (64512, "10.0.0.1"),
        (64512, "10.0.0.2"),
        (64512, "10.0.0.3"),
        (64512, "10.0.0.4"),
    ]);
    reflector(&mut w, 0, "10.255.0.1", &[2], &[1]);
    reflector(&mut w, 1, "10.255.0.2", &[3], &[0]);
    w.peer(2, 0, 64512);
    w.peer(3, 1, 64512);
    w.run();
    let b = w
        .last_event(3, "10.244.3.0/24")
        .and_then(|r| r.best.clone())
        .expect("client 4 learns client 3's route across both clusters");
    assert_eq!(b.next_hops[0].address, w.addrs[2], "next hop unchanged");
    assert_eq!(b.attrs.originator_id, Some("10.0.0.3".parse().unwrap()));
    let ids: Vec<std::net::Ipv4Addr> =
        vec!["10.255.0.2".parse().unwrap(), "10.255.0.1".parse().unwrap()];
    assert_eq!(b.attrs.cluster_list, ids);
    assert!(w.best_of(2, "10.244.4.0/24"));
}

/// The hijack filter across a reflector: a client that knows who owns which pod CIDR refuses
/// one reflected with another node's next hop, counts it, and takes it once the owner is right.
#[test]
fn a_client_refuses_a_reflected_pod_cidr_whose_next_hop_is_not_its_owner() {
    let mut w = Wire::new(&[
        (64512, "10.0.0.1"),
        (64512, "10.0.0.2"),
        (64512, "10.0.0.3"),
    ]);
    reflector(&mut w, 0, "10.255.0.1", &[1, 2], &[]);
    w.peer(1, 0, 64512);
    let mut p = PeerConfig::new(w.addrs[0], 64512);
    p.families = vec![Family::Ipv4Unicast];
    // Client 3 believes 10.244.2.0/24 belongs to 10.0.0.9, not to 10.0.0.2 which announces it.
    let owners = |owner: &str| {
        NextHopOwners::new([(
            "10.244.2.0/24".parse().unwrap(),
            vec![owner.parse().unwrap()],
        )])
    };
    p.next_hop_owners = owners("10.0.0.9");
    w.push(2, Input::AddPeer(p.clone()));
    w.run();
    assert!(!w.best_of(2, "10.244.2.0/24"));
    assert_eq!(rejected(&w, 2, 0, Rejection::NextHopNotOwner), 1);
    assert!(
        w.best_of(2, "10.244.1.0/24"),
        "the reflector's own route is not listed"
    );
    p.next_hop_owners = owners("10.0.0.2");
    w.push(2, Input::UpdatePeer(p));
    w.run();
    assert!(w.best_of(2, "10.244.2.0/24"));
    assert_eq!(rejected(&w, 2, 0, Rejection::NextHopNotOwner), 0);
}

/// What a make-before-break handover asks before it drops a reflector: how many routes only
/// that reflector provides. A client of reflector 0 alone has every route only from it; once
/// it also peers with reflector 1 (same cluster ID), every route has a second path and
/// reflector 0 can go without a withdrawal.
#[test]
fn only_from_counts_the_routes_no_other_peer_provides() {
    let mut w = Wire::new(&[
        (64512, "10.0.0.1"),
        (64512, "10.0.0.2"),
        (64512, "10.0.0.3"),
        (64512, "10.0.0.4"),
    ]);
    reflector(&mut w, 0, "10.255.0.1", &[2, 3], &[1]);
    reflector(&mut w, 1, "10.255.0.1", &[3], &[0]);
    w.peer(2, 0, 64512);
    w.peer(3, 0, 64512);
    w.peer(3, 1, 64512);
    w.run();
    let r0 = w.addrs[0];
    let r1 = w.addrs[1];
    // Client 2 hears 10.244.1 (reflector 0's own), .2 (reflector 1's, reflected) and .4
    // (client 3's) only through reflector 0; its own .3 is local.
    assert_eq!(w.cores[2].only_from(&[r0]), 3);
    assert_eq!(w.cores[2].only_from(&[]), 0);
    // Client 3 hears everything twice but client 2's route: reflector 1 refuses that one
    // from reflector 0 (their shared cluster ID), so only reflector 0 passes it on.
    assert_eq!(w.cores[3].only_from(&[r0]), 1);
    assert_eq!(w.cores[3].only_from(&[r1]), 0);
    assert_eq!(w.cores[3].only_from(&[r0, r1]), 3);
    // Client 2 gains reflector 1: nothing depends on reflector 0 alone any more.
    let mut p = PeerConfig::new(w.addrs[2], 64512);
    p.families = vec![Family::Ipv4Unicast];
    p.reflector_client = true;
    w.push(1, Input::AddPeer(p));
    w.peer(2, 1, 64512);
    w.run();
    assert_eq!(w.cores[2].only_from(&[r0]), 0);
    assert_eq!(w.cores[3].only_from(&[r0]), 0);
    // Written as an IPv4-mapped address, the peer is the same peer.
    let mapped = match r1 {
        IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
        IpAddr::V6(_) => unreachable!(),
    };
    assert_eq!(w.cores[2].only_from(&[r0, mapped]), 3);
}
