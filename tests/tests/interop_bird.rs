//! Twill against BIRD 2: iBGP and eBGP, IPv4 and IPv6, withdrawal both ways, hold timer.

mod common;

use common::*;
use speaker::{Family, State};
use twill_lab::{daemons::Daemon, wait_for, SpeakerInNs};

fn bird_conf(bird_as: u32, twill_as: u32) -> String {
    format!(
        r#"
router id {P4};
protocol device {{ scan time 5; }}
protocol static static4 {{ ipv4; route {PEER_V4} blackhole; }}
protocol static static6 {{ ipv6; route {PEER_V6} blackhole; }}
protocol bgp tw4 {{
  local {P4} as {bird_as}; neighbor {T4} as {twill_as}; direct;
  hold time 3; keepalive time 1; connect delay time 1; connect retry time 2; error wait time 1, 10;
  ipv4 {{ gateway direct; import all; export where source = RTS_STATIC; }};
}}
protocol bgp tw6 {{
  local {P6} as {bird_as}; neighbor {T6} as {twill_as}; direct;
  hold time 3; keepalive time 1; connect delay time 1; connect retry time 2; error wait time 1, 10;
  ipv6 {{ gateway direct; import all; export where source = RTS_STATIC; }};
}}
"#
    )
}

fn bird_has(bird: &Daemon, prefix: &str) -> bool {
    let out = bird.birdc(&format!("show route for {prefix} all"));
    out.contains(prefix) && out.contains("BGP")
}

fn run(twill_as: u32, bird_as: u32) {
    let pair = pair();
    let bird = Daemon::bird(&pair.peer, &bird_conf(bird_as, twill_as));
    let tw = SpeakerInNs::start(
        &pair.twill,
        speaker_cfg(twill_as, T4, &[TWILL_V4, TWILL_V6]),
    );
    tw.speaker
        .add_peer(peer(P4, bird_as, &[Family::Ipv4Unicast]))
        .unwrap();
    tw.speaker
        .add_peer(peer(P6, bird_as, &[Family::Ipv6Unicast]))
        .unwrap();

    let r4 = wait_for("Twill learns BIRD's IPv4 prefix", WAIT, || {
        tw.learned(PEER_V4)
    });
    assert_eq!(r4.next_hops[0].address, ip(P4));
    assert_eq!(r4.ebgp, twill_as != bird_as);
    let r6 = wait_for("Twill learns BIRD's IPv6 prefix", WAIT, || {
        tw.learned(PEER_V6)
    });
    assert_eq!(r6.next_hops[0].address, ip(P6));
    wait_for("BIRD learns Twill's IPv4 prefix", WAIT, || {
        bird_has(&bird, TWILL_V4).then_some(())
    });
    wait_for("BIRD learns Twill's IPv6 prefix", WAIT, || {
        bird_has(&bird, TWILL_V6).then_some(())
    });
    let shown = bird.birdc(&format!("show route for {TWILL_V4} all"));
    assert!(
        shown.contains(&format!("BGP.next_hop: {T4}")),
        "next hop in BIRD: {shown}"
    );
    if twill_as != bird_as {
        assert!(
            shown.contains(&format!("BGP.as_path: {twill_as}")),
            "AS path in BIRD: {shown}"
        );
    }
    let snap = tw.snapshot();
    let p = snap.iter().find(|p| p.address == ip(P4)).unwrap();
    assert_eq!(p.state, State::Established);
    assert!(p.four_octet_as && p.route_refresh, "capabilities: {p:?}");
    assert!(p.end_of_rib_sent);

    // Withdrawal, both directions.
    tw.speaker
        .set_originated(vec![TWILL_V6.parse().unwrap()])
        .unwrap();
    wait_for("BIRD drops the withdrawn prefix", WAIT, || {
        (!bird_has(&bird, TWILL_V4)).then_some(())
    });
    assert!(bird_has(&bird, TWILL_V6), "the other prefix stays");
    bird.birdc("disable static4");
    wait_for("Twill drops BIRD's withdrawn prefix", WAIT, || {
        tw.learned(PEER_V4).is_none().then_some(())
    });

    assert_hold_timer_expiry(&tw, &bird, P6, PEER_V6);
}

#[test]
fn bird_ibgp() {
    run(64512, 64512);
}

#[test]
fn bird_ebgp() {
    run(65001, 65002);
}
