//! Every RFC 4271 §8 state crossed with every event: the resulting state, and what is sent.

use speaker::fsm::{Action, Event, Fsm, FsmConfig, Send, State};
use speaker::notification::Notification;
use speaker::wire::{Capabilities, Family, Open};
use std::time::Duration;

fn cfg(passive: bool) -> FsmConfig {
    FsmConfig {
        local_as: 64512,
        router_id: "10.0.0.1".parse().unwrap(),
        peer_as: 64512,
        hold_time: 90,
        keepalive: 30,
        connect_retry: Duration::from_secs(5),
        passive,
        families: vec![Family::Ipv4Unicast],
        extended_message: false,
        idle_hold: Duration::from_secs(1),
    }
}

fn open(hold: u16) -> Open {
    Open {
        version: 4,
        my_as: 64512,
        hold_time: hold,
        router_id: "10.0.0.2".parse().unwrap(),
        caps: Capabilities {
            families: vec![Family::Ipv4Unicast],
            mp_present: true,
            asn4: Some(64512),
            route_refresh: true,
            ..Default::default()
        },
    }
}

/// Drive a fresh FSM into `state`.
fn fsm_in(state: State) -> Fsm {
    let mut f = Fsm::new(cfg(false));
    let path: &[Event] = match state {
        State::Idle => &[],
        State::Connect => &[Event::ManualStart],
        State::Active => &[Event::ManualStart, Event::TcpFails],
        State::OpenSent => &[Event::ManualStart, Event::TcpConnected],
        State::OpenConfirm => &[
            Event::ManualStart,
            Event::TcpConnected,
            Event::OpenReceived(open(90)),
        ],
        State::Established => &[
            Event::ManualStart,
            Event::TcpConnected,
            Event::OpenReceived(open(90)),
            Event::KeepaliveReceived,
        ],
    };
    for e in path {
        f.handle(e.clone());
    }
    assert_eq!(f.state(), state);
    f
}

fn events() -> Vec<(&'static str, Event)> {
    let n = Notification::new(6, 2, vec![]);
    vec![
        ("ManualStart", Event::ManualStart),
        ("ManualStop", Event::ManualStop),
        ("GracefulStop", Event::GracefulStop),
        ("ConnectRetryExpired", Event::ConnectRetryExpired),
        ("HoldExpired", Event::HoldExpired),
        ("KeepaliveExpired", Event::KeepaliveExpired),
        ("TcpConnected", Event::TcpConnected),
        ("TcpFails", Event::TcpFails),
        ("OpenReceived", Event::OpenReceived(open(90))),
        (
            "MessageError",
            Event::MessageError(Notification::new(1, 1, vec![])),
        ),
        ("NotificationReceived", Event::NotificationReceived(n)),
        ("KeepaliveReceived", Event::KeepaliveReceived),
        ("UpdateReceived", Event::UpdateReceived),
        ("RouteRefreshReceived", Event::RouteRefreshReceived),
        ("CollisionDump", Event::CollisionDump),
    ]
}

/// What the RFC expects: (next state, NOTIFICATION code sent if any, other sends).
fn expected(state: State, event: &str) -> (State, Option<(u8, u8)>, Vec<&'static str>) {
    use State::*;
    let fsm_err = |s: State| match s {
        OpenSent => Some((5, 1)),
        OpenConfirm => Some((5, 2)),
        _ => Some((5, 3)),
    };
    match (state, event) {
        (Idle, "ManualStart") => (Connect, None, vec![]),
        (Idle, _) => (Idle, None, vec![]),
        (Connect | Active, "ManualStart") => (state, None, vec![]),
        (Connect | Active, "ManualStop") => (Idle, None, vec![]),
        (Connect | Active, "ConnectRetryExpired") => (Connect, None, vec![]),
        (Connect | Active, "TcpConnected") => (OpenSent, None, vec!["Open"]),
        (Connect, "TcpFails") => (Active, None, vec![]),
        (Active, "TcpFails") => (Idle, None, vec![]),
        (Connect | Active, _) => (Idle, None, vec![]),
        (_, "ManualStart") => (state, None, vec![]),
        (_, "ManualStop") => (Idle, Some((6, 2)), vec![]),
        // A restart closes the connection without a NOTIFICATION (RFC 4724 §4.1).
        (_, "GracefulStop") => (Idle, None, vec![]),
        (_, "HoldExpired") => (Idle, Some((4, 0)), vec![]),
        (_, "TcpFails") => (Idle, None, vec![]),
        (_, "MessageError") => (Idle, Some((1, 1)), vec![]),
        (_, "NotificationReceived") => (Idle, None, vec![]),
        (_, "CollisionDump") => (Idle, Some((6, 7)), vec![]),
        (OpenSent, "OpenReceived") => (OpenConfirm, None, vec!["Keepalive"]),
        (OpenSent, _) => (Idle, fsm_err(OpenSent), vec![]),
        (OpenConfirm | Established, "KeepaliveExpired") => (state, None, vec!["Keepalive"]),
        (OpenConfirm, "KeepaliveReceived") => (Established, None, vec![]),
        (OpenConfirm, _) => (Idle, fsm_err(OpenConfirm), vec![]),
        (Established, "KeepaliveReceived" | "UpdateReceived" | "RouteRefreshReceived") => {
            (Established, None, vec![])
        }
        (Established, _) => (Idle, fsm_err(Established), vec![]),
    }
}

#[test]
fn every_state_times_every_event() {
    use State::*;
    let mut checked = 0;
    for state in [Idle, Connect, Active, OpenSent, OpenConfirm, Established] {
        for (name, ev) in events() {
            let mut f = fsm_in(state);
            let actions = f.handle(ev);
            let (want_state, want_notif, want_sends) = expected(state, name);
            assert_eq!(f.state(), want_state, "{state:?} × {name}: state");
            let notif = actions.iter().find_map(|a| match a {
                Action::Send(Send::Notification(n)) => Some((n.code, n.subcode)),
                _ => None,
            });
            assert_eq!(notif, want_notif, "{state:?} × {name}: NOTIFICATION");
            let sends: Vec<&str> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Send(Send::Open) => Some("Open"),
                    Action::Send(Send::Keepalive) => Some("Keepalive"),
                    _ => None,
                })
                .collect();
            assert_eq!(sends, want_sends, "{state:?} × {name}: sends");
            // Leaving Established always reports Down; nothing else does.
            let down = actions.iter().any(|a| matches!(a, Action::Down(_)));
            assert_eq!(
                down,
                state == Established && want_state == Idle,
                "{state:?} × {name}: Down"
            );
            // Every way into Idle closes the connection.
            if want_state == Idle && state != Idle {
                assert!(actions.contains(&Action::Drop), "{state:?} × {name}: Drop");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * 15);
}

#[test]
fn passive_peer_waits_in_active_and_never_dials() {
    let mut f = Fsm::new(cfg(true));
    let a = f.handle(Event::ManualStart);
    assert_eq!(f.state(), State::Active);
    assert!(!a.contains(&Action::Connect));
    let a = f.handle(Event::ConnectRetryExpired);
    assert_eq!(f.state(), State::Active);
    assert!(!a.contains(&Action::Connect));
}

fn negotiate_err(o: Open) -> (u8, u8) {
    let f = Fsm::new(cfg(false));
    let n = f.negotiate(&o).unwrap_err();
    (n.code, n.subcode)
}

#[test]
fn open_validation_notifications() {
    let mut o = open(90);
    o.caps.asn4 = Some(65000);
    assert_eq!(negotiate_err(o), (2, 2), "bad peer AS");
    let mut o = open(90);
    o.router_id = "0.0.0.0".parse().unwrap();
    assert_eq!(negotiate_err(o), (2, 3), "zero BGP identifier");
    let mut o = open(90);
    o.router_id = "10.0.0.1".parse().unwrap();
    assert_eq!(negotiate_err(o), (2, 3), "iBGP peer with our identifier");
    assert_eq!(negotiate_err(open(2)), (2, 6), "hold time 2");
    assert_eq!(negotiate_err(open(1)), (2, 6), "hold time 1");
}

#[test]
fn hold_time_negotiation() {
    let f = Fsm::new(cfg(false));
    let s = f.negotiate(&open(9)).unwrap();
    assert_eq!((s.hold_time, s.keepalive), (9, 3));
    let s = f.negotiate(&open(0)).unwrap();
    assert_eq!((s.hold_time, s.keepalive), (0, 0), "0 = no keepalives");
    let s = f.negotiate(&open(240)).unwrap();
    assert_eq!((s.hold_time, s.keepalive), (90, 30));
    // Hold 0: Established without hold or keepalive timers.
    let mut f = Fsm::new(cfg(false));
    f.handle(Event::ManualStart);
    f.handle(Event::TcpConnected);
    let a = f.handle(Event::OpenReceived(open(0)));
    assert!(!a
        .iter()
        .any(|a| matches!(a, Action::StartTimer(speaker::fsm::Timer::Keepalive, _))));
}

#[test]
fn four_octet_as_is_read_from_the_capability() {
    let mut c = cfg(false);
    c.peer_as = 4_200_000_000;
    let f = Fsm::new(c);
    let mut o = open(90);
    o.my_as = 23456;
    o.caps.asn4 = Some(4_200_000_000);
    let s = f.negotiate(&o).unwrap();
    assert_eq!(s.remote_as, 4_200_000_000);
    assert!(s.negotiated.asn4 && s.negotiated.ebgp);
}

#[test]
fn automatic_restart_backs_off() {
    let mut f = Fsm::new(cfg(false));
    f.handle(Event::ManualStart);
    let delays: Vec<Duration> = (0..3)
        .map(|_| {
            let a = f.handle(Event::TcpFails); // Connect -> Active
            let _ = a;
            let a = f.handle(Event::TcpFails); // Active -> Idle
            let d = a
                .iter()
                .find_map(|a| match a {
                    Action::StartTimer(speaker::fsm::Timer::IdleHold, d) => Some(*d),
                    _ => None,
                })
                .expect("idle hold armed");
            f.handle(Event::IdleHoldExpired);
            d
        })
        .collect();
    assert_eq!(
        delays,
        vec![
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4)
        ]
    );
    // After ManualStop, no restart.
    let a = f.handle(Event::ManualStop);
    assert!(!a
        .iter()
        .any(|a| matches!(a, Action::StartTimer(speaker::fsm::Timer::IdleHold, _))));
}

#[test]
fn every_way_out_of_established_says_why() {
    use speaker::DownCause;
    let n = Notification::cease(4);
    let cases = [
        (Event::HoldExpired, DownCause::HoldExpired),
        (Event::TcpFails, DownCause::TcpClosed),
        (
            Event::NotificationReceived(n.clone()),
            DownCause::NotificationReceived(n.clone()),
        ),
        (
            Event::MessageError(n.clone()),
            DownCause::NotificationSent(n.clone()),
        ),
        (Event::ManualStop, DownCause::Administrative(2)),
        (Event::AutomaticStop(3), DownCause::Administrative(3)),
        (Event::GracefulStop, DownCause::GracefulStop),
    ];
    for (ev, want) in cases {
        let mut f = fsm_in(State::Established);
        let name = format!("{ev:?}");
        let got = f.handle(ev).into_iter().find_map(|a| match a {
            Action::Down(c) => Some(c),
            _ => None,
        });
        assert_eq!(got, Some(want), "{name}");
    }
}

#[test]
fn a_manual_start_cancels_a_pending_automatic_restart() {
    let mut f = fsm_in(State::Established);
    let a = f.handle(Event::HoldExpired);
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::StartTimer(speaker::fsm::Timer::IdleHold, _))));
    let a = f.handle(Event::ManualStart);
    assert!(
        a.contains(&Action::StopTimer(speaker::fsm::Timer::IdleHold)),
        "{a:?}"
    );
    assert_eq!(f.state(), State::Connect);
}
