//! Twill against FRR: iBGP and eBGP, IPv4 and IPv6, withdrawal both ways, hold timer.

mod common;

use common::*;
use speaker::Family;
use twill_lab::{daemons::Daemon, wait_for, SpeakerInNs};

fn frr_conf(frr_as: u32, twill_as: u32) -> String {
    format!(
        r#"frr defaults traditional
hostname frr
router bgp {frr_as}
 bgp router-id {P4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 timers bgp 1 3
 coalesce-time 50
 neighbor {T4} remote-as {twill_as}
 neighbor {T4} timers connect 1
 neighbor {T6} remote-as {twill_as}
 neighbor {T6} timers connect 1
 address-family ipv4 unicast
  network {PEER_V4}
  neighbor {T4} activate
  neighbor {T4} advertisement-interval 0
 exit-address-family
 address-family ipv6 unicast
  network {PEER_V6}
  neighbor {T6} activate
  neighbor {T6} advertisement-interval 0
 exit-address-family
"#
    )
}

fn frr_has(frr: &Daemon, family: &str, prefix: &str) -> Option<serde_json::Value> {
    let out = frr.vtysh(&format!("show bgp {family} unicast {prefix} json"));
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let paths = v.get("paths")?.as_array()?;
    (!paths.is_empty()).then(|| paths[0].clone())
}

fn run(twill_as: u32, frr_as: u32) {
    let pair = pair();
    let frr = Daemon::frr(&pair.peer, &frr_conf(frr_as, twill_as));
    let tw = SpeakerInNs::start(
        &pair.twill,
        speaker_cfg(twill_as, T4, &[TWILL_V4, TWILL_V6]),
    );
    tw.speaker
        .add_peer(peer(P4, frr_as, &[Family::Ipv4Unicast]))
        .unwrap();
    tw.speaker
        .add_peer(peer(P6, frr_as, &[Family::Ipv6Unicast]))
        .unwrap();

    let r4 = wait_for("Twill learns FRR's IPv4 prefix", WAIT, || {
        tw.learned(PEER_V4)
    });
    assert_eq!(r4.next_hops[0].address, ip(P4));
    let r6 = wait_for("Twill learns FRR's IPv6 prefix", WAIT, || {
        tw.learned(PEER_V6)
    });
    assert_eq!(r6.next_hops[0].address, ip(P6));
    if twill_as != frr_as {
        assert_eq!(r4.attrs.as_path.flat(), vec![frr_as]);
    }
    let p4 = wait_for("FRR learns Twill's IPv4 prefix", WAIT, || {
        frr_has(&frr, "ipv4", TWILL_V4)
    });
    wait_for("FRR learns Twill's IPv6 prefix", WAIT, || {
        frr_has(&frr, "ipv6", TWILL_V6)
    });
    let nh = p4["nexthops"][0]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(nh, T4, "next hop in FRR: {p4}");
    if twill_as != frr_as {
        assert_eq!(
            p4["aspath"]["string"].as_str(),
            Some(twill_as.to_string().as_str())
        );
    } else {
        assert_eq!(
            p4["locPrf"].as_u64(),
            Some(100),
            "LOCAL_PREF over iBGP: {p4}"
        );
    }

    tw.speaker
        .set_originated(vec![TWILL_V6.parse().unwrap()])
        .unwrap();
    wait_for("FRR drops the withdrawn prefix", WAIT, || {
        frr_has(&frr, "ipv4", TWILL_V4).is_none().then_some(())
    });
    frr.vtysh_config(&[
        &format!("router bgp {frr_as}"),
        "address-family ipv4 unicast",
        &format!("no network {PEER_V4}"),
    ]);
    wait_for("Twill drops FRR's withdrawn prefix", WAIT, || {
        tw.learned(PEER_V4).is_none().then_some(())
    });

    assert_hold_timer_expiry(&tw, &frr, P6, PEER_V6);
}

#[test]
fn frr_ibgp() {
    run(64512, 64512);
}

#[test]
fn frr_ebgp() {
    run(65001, 65002);
}

/// TCP MD5 (RFC 2385) with FRR, over IPv4 and IPv6: a wrong key is dropped by the kernel (its
/// MD5 failure counter rises, no session), the right one brings the sessions up, and changing
/// it at run time reconnects with the new key.
#[test]
fn frr_tcp_md5() {
    let pair = pair();
    let conf = frr_conf(65002, 65001).replace(
        &format!(" neighbor {T6} timers connect 1\n"),
        &format!(
            " neighbor {T6} timers connect 1\n neighbor {T4} password s3cr3t\n neighbor {T6} password s3cr3t\n"
        ),
    );
    let frr = Daemon::frr(&pair.peer, &conf);
    let tw = SpeakerInNs::start(&pair.twill, speaker_cfg(65001, T4, &[TWILL_V4, TWILL_V6]));
    let keyed = |addr: &str, family: Family, key: &str| {
        let mut p = peer(addr, 65002, &[family]);
        p.password = Some(speaker::Password::new(key));
        p
    };
    tw.speaker
        .add_peer(keyed(P4, Family::Ipv4Unicast, "wrong"))
        .unwrap();
    tw.speaker
        .add_peer(keyed(P6, Family::Ipv6Unicast, "wrong"))
        .unwrap();
    let failures = |ns: &twill_lab::Netns| ns.tcp_ext("TcpExtTCPMD5Failure");
    wait_for("segments with the wrong key dropped", WAIT, || {
        (failures(&pair.twill) + failures(&pair.peer) >= 2).then_some(())
    });
    assert!(
        tw.snapshot()
            .iter()
            .all(|p| p.state != speaker::State::Established),
        "a session came up with the wrong key"
    );

    tw.speaker
        .update_peer(keyed(P4, Family::Ipv4Unicast, "s3cr3t"))
        .unwrap();
    tw.speaker
        .update_peer(keyed(P6, Family::Ipv6Unicast, "s3cr3t"))
        .unwrap();
    wait_for("Twill learns FRR's IPv4 prefix over MD5", WAIT, || {
        tw.learned(PEER_V4)
    });
    wait_for("Twill learns FRR's IPv6 prefix over MD5", WAIT, || {
        tw.learned(PEER_V6)
    });
    wait_for("FRR learns Twill's prefix over MD5", WAIT, || {
        frr_has(&frr, "ipv4", TWILL_V4)
    });
    let signed =
        pair.twill.tcp_ext("TcpExtTCPMD5NotFound") + pair.twill.tcp_ext("TcpExtTCPMD5Unexpected");
    assert_eq!(signed, 0, "every segment carried the expected signature");
}
