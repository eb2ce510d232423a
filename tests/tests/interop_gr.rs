//! Graceful restart (RFC 4724) with FRR, both ways:
//! - Twill restarts (its sessions closed without a NOTIFICATION, a new speaker that says it
//!   kept its forwarding state): FRR keeps Twill's routes, marked stale in its own output, and
//!   its kernel route never goes; FRR sweeps the route the new Twill no longer announces; a
//!   stop for good (Cease as a Hard Reset) makes FRR flush at once.
//! - FRR's bgpd is killed and started again (`bgp graceful-restart preserve-fw-state`): Twill
//!   keeps FRR's routes as stale meanwhile (never a withdrawal), and sweeps at FRR's
//!   End-of-RIB the one FRR no longer announces.

mod common;

use common::*;
use speaker::{Family, ShutdownMode};
use twill_lab::capture::RouteMonitor;
use twill_lab::{daemons::Daemon, wait_for, SpeakerInNs};

const AS: u32 = 64512;
/// Announced before the restart only: swept by the helper at End-of-RIB.
const GONE_TWILL: &str = "10.244.10.0/24";
const GONE_PEER: &str = "10.244.20.0/24";

fn frr_conf(networks: &[&str]) -> String {
    let networks: String = networks
        .iter()
        .map(|n| format!("  network {n}\n"))
        .collect();
    format!(
        r#"frr defaults traditional
hostname frr
router bgp {AS}
 bgp router-id {P4}
 no bgp network import-check
 no bgp default ipv4-unicast
 bgp graceful-restart
 bgp graceful-restart preserve-fw-state
 bgp graceful-restart restart-time 120
 timers bgp 1 3
 neighbor {T4} remote-as {AS}
 neighbor {T4} timers connect 1
 address-family ipv4 unicast
{networks}  neighbor {T4} activate
  neighbor {T4} advertisement-interval 0
 exit-address-family
"#
    )
}

fn start_twill(p: &Pair, originate: &[&str], restarting: bool) -> SpeakerInNs {
    let mut cfg = speaker_cfg(AS, T4, originate);
    cfg.graceful_restart.as_mut().unwrap().restarting = restarting;
    let tw = SpeakerInNs::start(&p.twill, cfg);
    tw.speaker
        .add_peer(peer(P4, AS, &[Family::Ipv4Unicast]))
        .unwrap();
    tw
}

fn frr_route(frr: &Daemon, prefix: &str) -> String {
    frr.vtysh(&format!("show bgp ipv4 unicast {prefix}"))
}

#[test]
fn frr_keeps_twill_s_routes_through_a_twill_restart() {
    let p = pair();
    let frr = Daemon::frr(&p.peer, &frr_conf(&[PEER_V4]));
    let tw = start_twill(&p, &[TWILL_V4, GONE_TWILL], false);
    wait_for("FRR installs Twill's routes", WAIT, || {
        let k = p.peer.exec(&["ip", "route", "show", "proto", "bgp"]);
        (k.contains(TWILL_V4) && k.contains(GONE_TWILL)).then_some(())
    });
    let gr = frr.vtysh(&format!("show bgp neighbors {T4}"));
    for want in [
        "Graceful Restart Capability: advertised and received",
        "Remote GR Mode: Restart",
        "N bit: True",
    ] {
        assert!(gr.contains(want), "{want:?} in FRR's view of Twill:\n{gr}");
    }
    let mon = RouteMonitor::start(&p.peer);

    tw.stop(ShutdownMode::Graceful);
    // FRR's own word for it: the routes are kept, marked stale.
    let stale = wait_for("FRR marks Twill's routes stale", WAIT, || {
        let s = frr_route(&frr, TWILL_V4);
        s.to_lowercase().contains("stale").then_some(s)
    });
    eprintln!("FRR while Twill is down:\n{stale}");
    assert!(p
        .peer
        .exec(&["ip", "route", "show", TWILL_V4])
        .contains("proto bgp"));

    // The new Twill announces only one of the two; FRR sweeps the other at End-of-RIB.
    let tw = start_twill(&p, &[TWILL_V4], true);
    wait_for("FRR sweeps what Twill no longer announces", WAIT, || {
        let s = frr_route(&frr, TWILL_V4);
        let gone = !frr_route(&frr, GONE_TWILL).contains(GONE_TWILL);
        // bgpd's table changes first; zebra removes the kernel route after it, so the sweep
        // is done only when the kernel no longer has the route either.
        let gone_in_kernel = !p
            .peer
            .exec(&["ip", "route", "show", GONE_TWILL])
            .contains("proto bgp");
        (gone && gone_in_kernel && s.contains(TWILL_V4) && !s.to_lowercase().contains("stale"))
            .then_some(())
    });
    let mut mon = mon;
    mon.barrier(&p.peer);
    let deleted: Vec<String> = mon
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("Deleted") && l.contains(TWILL_V4))
        .collect();
    assert!(
        deleted.is_empty(),
        "FRR's kernel lost Twill's route: {deleted:?}"
    );
    assert!(mon
        .lines()
        .iter()
        .any(|l| l.starts_with("Deleted") && l.contains(GONE_TWILL)));

    // Stopping for good sends a Cease as a Hard Reset (both set the N bit): FRR flushes at
    // once instead of keeping the routes for 120 s.
    tw.stop(ShutdownMode::Cease);
    wait_for("FRR flushes Twill's route", WAIT, || {
        (!frr_route(&frr, TWILL_V4).contains(TWILL_V4)).then_some(())
    });
    let n = frr.vtysh(&format!("show bgp neighbors {T4}"));
    assert!(n.contains("Hard Reset"), "FRR's last reset:\n{n}");
}

#[test]
fn twill_keeps_frr_s_routes_through_an_frr_restart() {
    let p = pair();
    let mut frr = Daemon::frr(&p.peer, &frr_conf(&[PEER_V4, GONE_PEER]));
    let tw = start_twill(&p, &[TWILL_V4], false);
    let mut events = tw.speaker.subscribe().unwrap();
    for prefix in [PEER_V4, GONE_PEER] {
        wait_for(&format!("Twill learns {prefix}"), WAIT, || {
            tw.learned(prefix)
        });
    }
    let snap = tw.snapshot();
    let g = &snap[0].gr;
    assert!(g.negotiated, "{:?}", snap[0]);
    while events.try_recv().is_ok() {}

    frr.kill_bgpd();
    let g = wait_for("Twill sees FRR restarting", WAIT, || {
        let s = tw.snapshot();
        (s[0].state != speaker::State::Established && s[0].gr.restart_time_left.is_some())
            .then(|| s[0].gr.clone())
    });
    assert_eq!(g.stale_routes, 2, "{g:?}");
    assert!(tw.learned(PEER_V4).is_some(), "kept while FRR is away");
    frr.start_bgpd(&p.peer, &frr_conf(&[PEER_V4]));
    wait_for("Twill sweeps what FRR no longer announces", WAIT, || {
        let s = tw.snapshot();
        (s[0].state == speaker::State::Established
            && s[0].gr.stale_routes == 0
            && tw.learned(GONE_PEER).is_none())
        .then_some(())
    });
    assert!(tw.learned(PEER_V4).is_some());
    // Never withdrawn in between: the route programmer would not have seen it go.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        !seen
            .iter()
            .any(|e| e.prefix.to_string() == PEER_V4 && e.best.is_none()),
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .any(|e| e.prefix.to_string() == GONE_PEER && e.best.is_none()));
    // Sanity: the capability FRR sent after its restart said it kept forwarding state.
    let caps = tw.snapshot()[0].graceful_restart.clone().unwrap();
    assert!(
        caps.families.contains(&(Family::Ipv4Unicast, true)),
        "{caps:?}"
    );
}
