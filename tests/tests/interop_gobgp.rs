//! Twill against GoBGP: iBGP and eBGP, IPv4 and IPv6, withdrawal both ways, hold timer.

mod common;

use common::*;
use speaker::Family;
use twill_lab::{daemons::Daemon, wait_for, SpeakerInNs};

fn gobgp_conf(gobgp_as: u32, twill_as: u32) -> String {
    format!(
        r#"[global.config]
  as = {gobgp_as}
  router-id = "{P4}"
  local-address-list = ["{P4}", "{P6}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{T4}"
    peer-as = {twill_as}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 3
    keepalive-interval = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{T6}"
    peer-as = {twill_as}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 3
    keepalive-interval = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#
    )
}

fn gobgp_has(d: &Daemon, family: &str, prefix: &str) -> bool {
    let out = d.gobgp_cli(&["global", "rib", "-a", family, prefix]);
    let s = String::from_utf8_lossy(&out.stdout);
    s.contains(prefix)
}

fn run(twill_as: u32, gobgp_as: u32) {
    let pair = pair();
    let gobgp = Daemon::gobgp(&pair.peer, &gobgp_conf(gobgp_as, twill_as));
    for (fam, p, nh) in [("ipv4", PEER_V4, P4), ("ipv6", PEER_V6, P6)] {
        let out = gobgp.gobgp_cli(&["global", "rib", "add", "-a", fam, p, "nexthop", nh]);
        assert!(
            out.status.success(),
            "gobgp rib add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tw = SpeakerInNs::start(
        &pair.twill,
        speaker_cfg(twill_as, T4, &[TWILL_V4, TWILL_V6]),
    );
    tw.speaker
        .add_peer(peer(P4, gobgp_as, &[Family::Ipv4Unicast]))
        .unwrap();
    tw.speaker
        .add_peer(peer(P6, gobgp_as, &[Family::Ipv6Unicast]))
        .unwrap();

    let r4 = wait_for("Twill learns GoBGP's IPv4 prefix", WAIT, || {
        tw.learned(PEER_V4)
    });
    assert_eq!(r4.next_hops[0].address, ip(P4));
    let r6 = wait_for("Twill learns GoBGP's IPv6 prefix", WAIT, || {
        tw.learned(PEER_V6)
    });
    assert_eq!(r6.next_hops[0].address, ip(P6));
    wait_for("GoBGP learns Twill's IPv4 prefix", WAIT, || {
        gobgp_has(&gobgp, "ipv4", TWILL_V4).then_some(())
    });
    wait_for("GoBGP learns Twill's IPv6 prefix", WAIT, || {
        gobgp_has(&gobgp, "ipv6", TWILL_V6).then_some(())
    });

    tw.speaker
        .set_originated(vec![TWILL_V6.parse().unwrap()])
        .unwrap();
    wait_for("GoBGP drops the withdrawn prefix", WAIT, || {
        (!gobgp_has(&gobgp, "ipv4", TWILL_V4)).then_some(())
    });
    let out = gobgp.gobgp_cli(&["global", "rib", "del", "-a", "ipv4", PEER_V4]);
    assert!(out.status.success());
    wait_for("Twill drops GoBGP's withdrawn prefix", WAIT, || {
        tw.learned(PEER_V4).is_none().then_some(())
    });

    assert_hold_timer_expiry(&tw, &gobgp, P6, PEER_V6);
}

#[test]
fn gobgp_ibgp() {
    run(64512, 64512);
}

#[test]
fn gobgp_ebgp() {
    run(65001, 65002);
}
