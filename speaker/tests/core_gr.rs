//! Graceful restart (RFC 4724, RFC 8538) between cores in memory: the helper's stale routes,
//! their sweep and timers, the Hard Reset, and the restarting side's deferral.

mod common;

use common::Wire;
use speaker::core::Input;
use speaker::core::{PeerTimer, TimerKey};
use speaker::{Family, PeerConfig, ShutdownMode, SpeakerConfig};
use std::net::IpAddr;
use std::time::Instant;

const AS: u32 = 64512;

fn config(id: &str, originate: &[&str], restarting: bool) -> SpeakerConfig {
    let mut c = SpeakerConfig::new(AS, id.parse().unwrap());
    c.originate = originate.iter().map(|p| p.parse().unwrap()).collect();
    c.graceful_restart.as_mut().unwrap().restarting = restarting;
    c
}

fn peer(w: &mut Wire, c: usize, other: usize, client: bool) {
    let mut p = PeerConfig::new(w.addrs[other], AS);
    p.families = vec![Family::Ipv4Unicast];
    p.reflector_client = client;
    w.push(c, Input::AddPeer(p));
}

/// Whether core `c` emitted "no route" for `prefix` at any point from event `from` on.
fn withdrawn_since(w: &Wire, c: usize, from: usize, prefix: &str) -> bool {
    w.routes[c][from..]
        .iter()
        .any(|r| r.prefix.to_string() == prefix && r.best.is_none())
}

fn gr(w: &Wire, c: usize, other: usize) -> speaker::core::GrSnapshot {
    w.cores[c]
        .snapshot(Instant::now())
        .into_iter()
        .find(|p| p.address == w.addrs[other])
        .unwrap()
        .gr
}

/// 0 and 1 peered; 1 originates two /24s.
fn pair() -> Wire {
    let mut w = Wire::new(&[(AS, "10.0.0.1"), (AS, "10.0.0.2")]);
    w.cores[1] = speaker::core::Core::new(config(
        "10.0.0.2",
        &["10.244.2.0/24", "10.244.20.0/24"],
        false,
    ))
    .unwrap();
    peer(&mut w, 0, 1, false);
    peer(&mut w, 1, 0, false);
    w.run();
    assert!(w.best_of(0, "10.244.2.0/24") && w.best_of(0, "10.244.20.0/24"));
    let g = gr(&w, 0, 1);
    assert!(g.negotiated && g.notification, "{g:?}");
    w
}

#[test]
fn a_killed_peer_keeps_its_routes_as_stale_and_its_end_of_rib_sweeps_what_it_did_not_resend() {
    let mut w = pair();
    let mark = w.routes[0].len();
    w.kill(1);
    // Kept: no event at all (the kernel is not touched), counted as stale, the restart
    // time (120 s, as offered in the capability) running.
    assert_eq!(w.routes[0].len(), mark, "{:?}", &w.routes[0][mark..]);
    let g = gr(&w, 0, 1);
    assert_eq!(g.stale_routes, 2);
    assert!(
        g.restart_time_left.is_some_and(|t| t > 100 && t <= 120),
        "{g:?}"
    );
    assert!(w.armed(0, w.addrs[1], TimerKey::Peer(PeerTimer::Restart)));
    // The new process originates only one of the two, and says it kept its forwarding state.
    w.replace(1, config("10.0.0.2", &["10.244.2.0/24"], true));
    peer(&mut w, 1, 0, false);
    w.run();
    assert!(w.best_of(0, "10.244.2.0/24"));
    assert!(
        !withdrawn_since(&w, 0, mark, "10.244.2.0/24"),
        "never withdrawn"
    );
    assert!(
        withdrawn_since(&w, 0, mark, "10.244.20.0/24"),
        "swept at End-of-RIB"
    );
    let g = gr(&w, 0, 1);
    assert_eq!(
        (g.stale_routes, g.restart_time_left, g.stale_time_left),
        (0, None, None)
    );
    assert!(!w.armed(0, w.addrs[1], TimerKey::Peer(PeerTimer::Restart)));
    assert!(!w.armed(0, w.addrs[1], TimerKey::Peer(PeerTimer::Stale)));
}

#[test]
fn the_stale_routes_go_when_the_restart_time_runs_out() {
    let mut w = pair();
    let mark = w.routes[0].len();
    w.kill(1);
    assert!(!withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
    w.fire(0, w.addrs[1], TimerKey::Peer(PeerTimer::Restart));
    assert!(withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
    assert!(withdrawn_since(&w, 0, mark, "10.244.20.0/24"));
    assert_eq!(gr(&w, 0, 1).stale_routes, 0);
}

#[test]
fn a_hard_reset_flushes_at_once_and_a_hold_timer_expiry_with_the_n_bit_does_not() {
    // Stopping for good (Cease / Administrative Shutdown) goes as a Hard Reset: flushed.
    let mut w = pair();
    let mark = w.routes[0].len();
    w.push(1, Input::Shutdown(ShutdownMode::Cease));
    w.run();
    assert!(
        w.sent_notifications.contains(&(1, 6, 9)),
        "{:?}",
        w.sent_notifications
    );
    assert!(withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
    assert_eq!(gr(&w, 0, 1).stale_routes, 0);
    assert!(!w.armed(0, w.addrs[1], TimerKey::Peer(PeerTimer::Restart)));

    // A hold-timer expiry sends a NOTIFICATION; with the N bit (RFC 8538) that keeps routes.
    let mut w = pair();
    let mark = w.routes[0].len();
    let hold = *w
        .timers
        .keys()
        .find(|(c, p, k)| {
            *c == 0
                && *p == w.addrs[1]
                && matches!(
                    k,
                    TimerKey::Session {
                        timer: speaker::fsm::Timer::Hold,
                        ..
                    }
                )
        })
        .expect("hold timer armed");
    w.fire(hold.0, hold.1, hold.2);
    assert!(w.sent_notifications.contains(&(0, 4, 0)));
    assert!(!withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
    assert_eq!(gr(&w, 0, 1).stale_routes, 2);
    // Core 0's automatic restart brings the session back; End-of-RIB confirms both routes.
    let idle = *w
        .timers
        .keys()
        .find(|(c, _, k)| {
            *c == 0
                && matches!(
                    k,
                    TimerKey::Session {
                        timer: speaker::fsm::Timer::IdleHold,
                        ..
                    }
                )
        })
        .expect("automatic restart armed");
    w.fire(idle.0, idle.1, idle.2);
    assert_eq!(w.established(0), 1);
    assert_eq!(gr(&w, 0, 1).stale_routes, 0);
    assert!(!withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
}

#[test]
fn a_graceful_stop_sends_no_notification_and_a_fresh_start_without_forwarding_state_flushes() {
    let mut w = pair();
    let mark = w.routes[0].len();
    let sent = w.sent_notifications.len();
    w.push(1, Input::Shutdown(ShutdownMode::Graceful));
    w.run();
    assert_eq!(w.sent_notifications.len(), sent, "no NOTIFICATION");
    assert_eq!(gr(&w, 0, 1).stale_routes, 2);
    assert!(!withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
    // A start that did not keep forwarding state (F bit clear: a rebooted node) makes the
    // helper drop the stale routes at once (RFC 4724 §4.2), then take the new ones.
    w.replace(1, config("10.0.0.2", &["10.244.2.0/24"], false));
    peer(&mut w, 1, 0, false);
    w.run();
    assert!(withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
    assert!(w.best_of(0, "10.244.2.0/24"));
    assert!(!w.best_of(0, "10.244.20.0/24"));
}

#[test]
fn stale_routes_without_end_of_rib_go_when_the_stale_routes_time_runs_out() {
    // 2 restarts and defers (it waits for 3, which does not answer): 0 gets neither routes nor
    // End-of-RIB from 2, so 2's routes stay stale with the session up, until the stale timer.
    let mut w = Wire::new(&[(AS, "10.0.0.1"), (AS, "10.0.0.2"), (AS, "10.0.0.3")]);
    peer(&mut w, 0, 1, false);
    peer(&mut w, 1, 0, false);
    w.run();
    w.kill(1);
    w.replace(1, config("10.0.0.2", &["10.244.2.0/24"], true));
    w.paused.insert(2);
    peer(&mut w, 1, 0, false);
    peer(&mut w, 1, 2, false);
    w.run();
    assert_eq!(w.established(0), 1);
    let g = gr(&w, 0, 1);
    assert_eq!(g.stale_routes, 1, "{g:?}");
    assert!(g.stale_time_left.is_some() && g.restart_time_left.is_none());
    let mark = w.routes[0].len();
    w.fire(0, w.addrs[1], TimerKey::Peer(PeerTimer::Stale));
    assert!(withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
}

/// A restarting reflector (1) with clients 0 and 2: it sends its clients nothing until both
/// have sent End-of-RIB, so client 0 never loses client 2's route; with client 2 silent, the
/// deferral timer ends the wait.
#[test]
fn a_restarting_reflector_defers_its_advertisements_until_every_client_sent_end_of_rib() {
    for silent in [false, true] {
        let mut w = Wire::new(&[(AS, "10.0.0.1"), (AS, "10.0.0.2"), (AS, "10.0.0.3")]);
        let mut rr = config("10.0.0.2", &["10.244.2.0/24"], false);
        rr.cluster_id = Some("10.255.0.1".parse().unwrap());
        w.cores[1] = speaker::core::Core::new(rr.clone()).unwrap();
        for (c, o, client) in [(0, 1, false), (2, 1, false), (1, 0, true), (1, 2, true)] {
            peer(&mut w, c, o, client);
        }
        w.run();
        assert!(w.best_of(0, "10.244.3.0/24"), "reflected");
        let mark = w.routes[0].len();
        w.kill(1);
        rr.graceful_restart.as_mut().unwrap().restarting = true;
        w.replace(1, rr);
        w.paused.insert(2);
        peer(&mut w, 1, 0, true);
        peer(&mut w, 1, 2, true);
        w.run();
        // Up with 0, which sent End-of-RIB; 2 not yet: nothing sent to 0 but the OPEN and
        // KEEPALIVEs, and 0 still has 2's route (stale).
        assert_eq!(w.established(1), 1);
        assert!(w.cores[1].adj_rib_out(w.addrs[0]).is_empty());
        assert_eq!(gr(&w, 0, 1).stale_routes, 2);
        assert!(w.armed(1, "0.0.0.0".parse::<IpAddr>().unwrap(), TimerKey::Deferral));
        if silent {
            w.fire(1, "0.0.0.0".parse().unwrap(), TimerKey::Deferral);
            // The wait is over: 0 gets what 1 has (its own route), and End-of-RIB sweeps 2's.
            assert!(w.best_of(0, "10.244.2.0/24"));
            assert!(withdrawn_since(&w, 0, mark, "10.244.3.0/24"));
            assert!(!withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
            w.resume(2);
            assert!(w.best_of(0, "10.244.3.0/24"), "back once 2 is");
        } else {
            w.resume(2);
            assert_eq!(w.established(1), 2);
            for c in [0, 2] {
                assert!(!withdrawn_since(&w, c, 0, "10.244.2.0/24"));
                assert_eq!(gr(&w, c, 1).stale_routes, 0);
            }
            assert!(!withdrawn_since(&w, 0, mark, "10.244.3.0/24"), "never lost");
            assert!(w.best_of(0, "10.244.3.0/24") && w.best_of(2, "10.244.1.0/24"));
            assert!(!w.armed(1, "0.0.0.0".parse().unwrap(), TimerKey::Deferral));
        }
    }
}

#[test]
fn two_speakers_restarting_together_do_not_wait_for_each_other() {
    let mut w = Wire::new(&[(AS, "10.0.0.1"), (AS, "10.0.0.2")]);
    w.cores[0] = speaker::core::Core::new(config("10.0.0.1", &["10.244.1.0/24"], true)).unwrap();
    w.cores[1] = speaker::core::Core::new(config("10.0.0.2", &["10.244.2.0/24"], true)).unwrap();
    peer(&mut w, 0, 1, false);
    peer(&mut w, 1, 0, false);
    w.run();
    // Each saw the other's R bit: no deferral timer needed to exchange routes.
    assert!(w.best_of(0, "10.244.2.0/24") && w.best_of(1, "10.244.1.0/24"));
    let snap = w.cores[0].snapshot(Instant::now());
    assert!(snap[0].end_of_rib_sent && snap[0].end_of_rib_received);
}

#[test]
fn a_peer_removed_while_restarting_takes_its_stale_routes_with_it() {
    let mut w = pair();
    let mark = w.routes[0].len();
    w.kill(1);
    assert_eq!(gr(&w, 0, 1).stale_routes, 2);
    w.push(0, Input::RemovePeer(w.addrs[1]));
    w.run();
    assert!(withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
    assert!(withdrawn_since(&w, 0, mark, "10.244.20.0/24"));
    assert!(!w.armed(0, w.addrs[1], TimerKey::Peer(PeerTimer::Restart)));
}

#[test]
fn stale_routes_kept_through_a_reset_pass_the_new_import_filter() {
    let mut w = pair();
    let mark = w.routes[0].len();
    w.kill(1);
    // 1 stays away (its new process not up yet).
    w.paused.insert(1);
    // A reset (new hold time) and a filter that lets only one of the two in.
    let mut p = PeerConfig::new(w.addrs[1], AS);
    p.families = vec![Family::Ipv4Unicast];
    p.hold_time = 30;
    p.import = speaker::ImportFilter::exact(["10.244.2.0/24".parse().unwrap()]);
    w.push(0, Input::UpdatePeer(p));
    w.run();
    assert!(
        withdrawn_since(&w, 0, mark, "10.244.20.0/24"),
        "refused now"
    );
    assert!(!withdrawn_since(&w, 0, mark, "10.244.2.0/24"), "still kept");
    assert_eq!(
        gr(&w, 0, 1).stale_routes,
        2,
        "held (one refused), both stale"
    );
}

#[test]
fn a_connection_from_a_restarted_peer_replaces_a_session_that_still_looks_up() {
    // 1's FIN was lost: 0 still has the session Established when the new 1 dials.
    let mut w = pair();
    let mark = w.routes[0].len();
    let ends: Vec<_> = w.links.keys().filter(|(c, _)| *c == 1).copied().collect();
    for end in ends {
        let other = w.links.remove(&end).unwrap();
        w.links.remove(&other);
    }
    w.cores[1] = speaker::core::Core::new(config("10.0.0.2", &["10.244.2.0/24"], true)).unwrap();
    peer(&mut w, 1, 0, false);
    w.run();
    assert_eq!(w.established(0), 1);
    assert!(w.best_of(0, "10.244.2.0/24"));
    assert!(
        !withdrawn_since(&w, 0, mark, "10.244.2.0/24"),
        "kept as stale, never withdrawn"
    );
    assert!(
        withdrawn_since(&w, 0, mark, "10.244.20.0/24"),
        "swept at End-of-RIB"
    );
}

#[test]
fn the_deferral_waits_for_a_session_even_if_something_arrives_before_the_peers() {
    let mut w = Wire::new(&[(AS, "10.0.0.1"), (AS, "10.0.0.2")]);
    w.cores[0] = speaker::core::Core::new(config("10.0.0.1", &["10.244.1.0/24"], true)).unwrap();
    // A connection from an address not configured (yet): refused, the deferral goes on.
    let conn = w.cores[0].alloc_conn();
    w.push(
        0,
        Input::Incoming {
            conn,
            remote: "10.0.0.9:40000".parse().unwrap(),
            local: "10.0.0.1:179".parse().unwrap(),
        },
    );
    w.run();
    assert!(w.cores[0].deferring());
    peer(&mut w, 0, 1, false);
    peer(&mut w, 1, 0, false);
    w.run();
    assert!(
        !w.cores[0].deferring(),
        "over once its only peer sent End-of-RIB"
    );
    assert!(w.best_of(1, "10.244.1.0/24"));
}

/// 1's OPEN as a Twill speaker sends it on a connection it dials.
fn open_from_1() -> Vec<u8> {
    use speaker::wire::{encode_open, GracefulRestart, OpenParams};
    encode_open(&OpenParams {
        asn: AS,
        hold_time: 90,
        router_id: "10.0.0.2".parse().unwrap(),
        families: vec![Family::Ipv4Unicast],
        extended_message: false,
        graceful_restart: Some(GracefulRestart {
            restart_state: false,
            notification: true,
            restart_time: 120,
            families: vec![(Family::Ipv4Unicast, true)],
        }),
    })
}

#[test]
fn a_connection_the_peer_abandons_leaves_the_session_up() {
    // Both ends dialled at once; 1 took 0's connection and closed its own, which 0's kernel had
    // already accepted. 0 sees it arrive after the session is up, then close: with nothing on
    // it, or with the OPEN 1 sent before it lost the collision and the Cease that ended it.
    // Not a restart either way: nothing goes stale, and the next one is handled alike (its slot
    // was freed: no Cease for a second connection).
    let mut w = pair();
    let mark = w.routes[0].len();
    let collision =
        speaker::wire::encode_notification(&speaker::notification::Notification::cease(
            speaker::notification::cease::CONNECTION_COLLISION,
        ));
    // pair()'s own start was a collision: only Ceases from here on count.
    let ceases = |w: &Wire| {
        w.sent_notifications
            .iter()
            .filter(|n| **n == (0, 6, 7))
            .count()
    };
    let before = ceases(&w);
    for round in 0..3u16 {
        let conn = w.cores[0].alloc_conn();
        w.push(
            0,
            Input::Incoming {
                conn,
                remote: format!("10.0.0.2:{}", 41000 + round).parse().unwrap(),
                local: "10.0.0.1:179".parse().unwrap(),
            },
        );
        w.run();
        assert_eq!(
            w.established(0),
            1,
            "round {round}: up with the connection pending"
        );
        if round == 2 {
            let mut bytes = open_from_1();
            bytes.extend(&collision);
            w.push(0, Input::Data { conn, bytes });
            w.run();
        }
        w.push(0, Input::Closed { conn });
        w.run();
        assert_eq!(w.established(0), 1, "round {round}");
        let g = gr(&w, 0, 1);
        assert_eq!(g.stale_routes, 0, "round {round}: {g:?}");
        assert!(g.restart_time_left.is_none(), "round {round}: {g:?}");
        assert_eq!(
            ceases(&w),
            before,
            "round {round}: the connection was refused as a collision, its slot still taken"
        );
    }
    assert!(!withdrawn_since(&w, 0, mark, "10.244.2.0/24"));
    assert!(w.best_of(0, "10.244.2.0/24"));
}
