//! Twill as a route reflector (RFC 4456) for FRR, BIRD and GoBGP clients on one segment: each
//! client learns the others' prefixes with their own next hop, its show command prints the
//! ORIGINATOR_ID and CLUSTER_LIST Twill set, and a withdrawal at one client reaches the others.

mod common;

use common::*;
use speaker::Family;
use twill_lab::{daemons::Daemon, wait_for, Netns, SpeakerInNs, Switch};

const AS: u32 = 64512;
const CLUSTER: &str = "10.255.0.1";
const TW: &str = "10.0.0.1";
const FRR: &str = "10.0.0.2";
const BIRD: &str = "10.0.0.3";
const GOBGP: &str = "10.0.0.4";
const TW_P: &str = "10.244.1.0/24";
const FRR_P: &str = "10.244.2.0/24";
const BIRD_P: &str = "10.244.3.0/24";
const GOBGP_P: &str = "10.244.4.0/24";

fn frr_conf() -> String {
    format!(
        r#"frr defaults traditional
hostname frr
router bgp {AS}
 bgp router-id {FRR}
 no bgp network import-check
 no bgp default ipv4-unicast
 timers bgp 1 3
 coalesce-time 50
 neighbor {TW} remote-as {AS}
 neighbor {TW} timers connect 1
 address-family ipv4 unicast
  network {FRR_P}
  neighbor {TW} activate
  neighbor {TW} advertisement-interval 0
 exit-address-family
"#
    )
}

fn bird_conf() -> String {
    format!(
        r#"
router id {BIRD};
protocol device {{ scan time 5; }}
protocol static {{ ipv4; route {BIRD_P} blackhole; }}
protocol bgp tw {{
  local {BIRD} as {AS}; neighbor {TW} as {AS}; direct;
  hold time 3; keepalive time 1; connect delay time 1; connect retry time 2; error wait time 1, 10;
  ipv4 {{ gateway direct; import all; export where source = RTS_STATIC; }};
}}
"#
    )
}

fn gobgp_conf() -> String {
    format!(
        r#"[global.config]
  as = {AS}
  router-id = "{GOBGP}"
  local-address-list = ["{GOBGP}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{TW}"
    peer-as = {AS}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 3
    keepalive-interval = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"#
    )
}

/// How a daemon prints one route.
type Show = fn(&Daemon, &str) -> String;

fn frr_show(d: &Daemon, prefix: &str) -> String {
    d.vtysh(&format!("show bgp ipv4 unicast {prefix}"))
}

fn bird_show(d: &Daemon, prefix: &str) -> String {
    d.birdc(&format!("show route for {prefix} all"))
}

fn gobgp_show(d: &Daemon, prefix: &str) -> String {
    let o = d.gobgp_cli(&["global", "rib", "-a", "ipv4", prefix]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn twill_reflects_between_frr_bird_and_gobgp_clients() {
    let lan = Switch::new("rl");
    let nss: Vec<Netns> = ["rt", "rf", "rb", "rg"]
        .iter()
        .map(|t| Netns::new(t))
        .collect();
    for (ns, a) in nss.iter().zip([TW, FRR, BIRD, GOBGP]) {
        lan.attach(ns, &[&format!("{a}/24")], 1500);
    }
    let frr = Daemon::frr(&nss[1], &frr_conf());
    let bird = Daemon::bird(&nss[2], &bird_conf());
    let gobgp = Daemon::gobgp(&nss[3], &gobgp_conf());
    let out = gobgp.gobgp_cli(&[
        "global", "rib", "add", "-a", "ipv4", GOBGP_P, "nexthop", GOBGP,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut cfg = speaker_cfg(AS, TW, &[TW_P]);
    cfg.cluster_id = Some(CLUSTER.parse().unwrap());
    let tw = SpeakerInNs::start(&nss[0], cfg);
    for client in [FRR, BIRD, GOBGP] {
        let mut p = peer(client, AS, &[Family::Ipv4Unicast]);
        p.reflector_client = true;
        tw.speaker.add_peer(p).unwrap();
    }
    for (prefix, owner) in [(FRR_P, FRR), (BIRD_P, BIRD), (GOBGP_P, GOBGP)] {
        let r = wait_for(&format!("Twill learns {prefix}"), WAIT, || {
            tw.learned(prefix)
        });
        assert_eq!(r.next_hops[0].address, ip(owner));
    }

    // Every client holds the other two clients' prefixes with the owner as next hop, the
    // owner as ORIGINATOR_ID and Twill's cluster ID as CLUSTER_LIST; and Twill's own route
    // without either.
    let show: [(&str, &Daemon, Show); 3] = [
        (FRR, &frr, frr_show),
        (BIRD, &bird, bird_show),
        (GOBGP, &gobgp, gobgp_show),
    ];
    let owners = [(FRR_P, FRR), (BIRD_P, BIRD), (GOBGP_P, GOBGP)];
    for (me, d, f) in show {
        for (prefix, owner) in owners.iter().filter(|(_, o)| *o != me) {
            let text = wait_for(&format!("{} learns {prefix}", d.kind), WAIT, || {
                let s = f(d, prefix);
                s.contains(prefix).then_some(s)
            });
            let (nh, orig, cl) = match d.kind {
                "frr" => (
                    format!("{owner} from {TW}"),
                    format!("Originator: {owner}"),
                    format!("Cluster list: {CLUSTER}"),
                ),
                "bird" => (
                    format!("BGP.next_hop: {owner}"),
                    format!("BGP.originator_id: {owner}"),
                    format!("BGP.cluster_list: {CLUSTER}"),
                ),
                _ => (
                    format!("{owner} "),
                    format!("{{Originator: {owner}}}"),
                    format!("{{ClusterList: [{CLUSTER}]}}"),
                ),
            };
            for want in [&nh, &orig, &cl] {
                assert!(
                    text.contains(want.as_str()),
                    "{} for {prefix}: want {want:?} in\n{text}",
                    d.kind
                );
            }
        }
        let own = f(d, TW_P);
        assert!(
            own.contains(TW_P),
            "{} has Twill's own route: {own}",
            d.kind
        );
        assert!(
            !own.contains(CLUSTER),
            "Twill's own route is not reflected: {own}"
        );
    }
    let snap = tw.snapshot();
    assert!(
        snap.iter().all(|p| p.prefixes_rejected.is_empty()),
        "{snap:?}"
    );

    // A withdrawal at GoBGP leaves FRR and BIRD; the other routes stay.
    let out = gobgp.gobgp_cli(&["global", "rib", "del", "-a", "ipv4", GOBGP_P]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("FRR and BIRD lose GoBGP's prefix", WAIT, || {
        (!frr_show(&frr, GOBGP_P).contains(GOBGP_P) && !bird_show(&bird, GOBGP_P).contains("BGP"))
            .then_some(())
    });
    assert!(frr_show(&frr, BIRD_P).contains(BIRD_P));
    assert!(bird_show(&bird, FRR_P).contains(FRR_P));
    assert!(tw.learned(GOBGP_P).is_none());
}
