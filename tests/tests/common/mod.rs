//! Shared set-up for the interop tests: a Twill namespace and a peer namespace joined by a
//! veth pair, 10.0.0.1/24 + fd00::1/64 on Twill's side, .2 / ::2 on the peer's.
#![allow(dead_code)]

use speaker::{Family, PeerConfig, SpeakerConfig};
use std::net::IpAddr;
use std::time::Duration;
use twill_lab::{daemons::Daemon, wait_for, Link, Netns, SpeakerInNs};

pub const T4: &str = "10.0.0.1";
pub const T6: &str = "fd00::1";
pub const P4: &str = "10.0.0.2";
pub const P6: &str = "fd00::2";
pub const TWILL_V4: &str = "10.244.1.0/24";
pub const TWILL_V6: &str = "fd00:244:1::/64";
pub const PEER_V4: &str = "10.244.2.0/24";
pub const PEER_V6: &str = "fd00:244:2::/64";
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Pair {
    pub twill: Netns,
    pub peer: Netns,
}

pub fn pair() -> Pair {
    let twill = Netns::new("t");
    let peer = Netns::new("p");
    Link::connect(
        &twill,
        &[&format!("{T4}/24"), &format!("{T6}/64")],
        &peer,
        &[&format!("{P4}/24"), &format!("{P6}/64")],
    );
    Pair { twill, peer }
}

pub fn speaker_cfg(asn: u32, router_id: &str, originate: &[&str]) -> SpeakerConfig {
    let mut c = SpeakerConfig::new(asn, router_id.parse().unwrap());
    c.originate = originate.iter().map(|p| p.parse().unwrap()).collect();
    c
}

/// A peer with test timers: hold 3 s (the minimum), keepalive 1 s, quick retries.
pub fn peer(addr: &str, asn: u32, families: &[Family]) -> PeerConfig {
    let mut p = PeerConfig::new(addr.parse::<IpAddr>().unwrap(), asn);
    p.hold_time = 3;
    p.keepalive = 1;
    p.connect_retry = Duration::from_secs(1);
    p.idle_hold = Duration::from_millis(200);
    p.families = families.to_vec();
    p
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Freeze the peer daemon (SIGSTOP): Twill's hold timer must expire, a Hold Timer Expired
/// NOTIFICATION be recorded, and the peer's routes leave the Loc-RIB.
pub fn assert_hold_timer_expiry(tw: &SpeakerInNs, daemon: &Daemon, peer: &str, prefix: &str) {
    daemon.freeze();
    wait_for("hold timer expiry", WAIT, || {
        let snap = tw.snapshot();
        let p = snap.iter().find(|p| p.address == ip(peer)).unwrap();
        let err = p.last_error.clone().unwrap_or_default();
        (p.state != speaker::State::Established && err.contains("Hold Timer Expired")).then_some(())
    });
    assert!(
        tw.learned(prefix).is_none(),
        "routes of the dead peer must be withdrawn"
    );
}
