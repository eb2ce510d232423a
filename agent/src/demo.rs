//! The README's main job for now: two nodes, two namespaces, one veth, iBGP over IPv4 and
//! IPv6; each originates its pod CIDRs and must learn the other's.

use ipnet::IpNet;
use speaker::{Family, PeerConfig, SpeakerConfig};
use std::time::{Duration, Instant};
use twill_lab::{Link, Netns, SpeakerInNs};

struct Node {
    name: &'static str,
    v4: &'static str,
    v6: &'static str,
    pods: [&'static str; 2],
}

const NODES: [Node; 2] = [
    Node {
        name: "node-a",
        v4: "10.0.0.1",
        v6: "fd00::1",
        pods: ["10.244.1.0/24", "fd00:244:1::/64"],
    },
    Node {
        name: "node-b",
        v4: "10.0.0.2",
        v6: "fd00::2",
        pods: ["10.244.2.0/24", "fd00:244:2::/64"],
    },
];

fn peer(addr: &str, family: Family) -> PeerConfig {
    let mut p = PeerConfig::new(addr.parse().expect("address"), 64512);
    p.families = vec![family];
    p.hold_time = 9;
    p.keepalive = 3;
    p.connect_retry = Duration::from_secs(1);
    p.idle_hold = Duration::from_millis(200);
    p.kind = "mesh".into();
    p
}

pub fn run(timeout: Duration) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (it creates network namespaces)".into());
    }
    let a = Netns::new("demoa");
    let b = Netns::new("demob");
    Link::connect(
        &a,
        &[
            &format!("{}/24", NODES[0].v4),
            &format!("{}/64", NODES[0].v6),
        ],
        &b,
        &[
            &format!("{}/24", NODES[1].v4),
            &format!("{}/64", NODES[1].v6),
        ],
    );
    let speakers: Vec<SpeakerInNs> = [(&a, 0usize), (&b, 1usize)]
        .into_iter()
        .map(|(ns, i)| {
            let me = &NODES[i];
            let other = &NODES[1 - i];
            let mut cfg = SpeakerConfig::new(64512, me.v4.parse().expect("router id"));
            cfg.originate = me.pods.iter().map(|p| p.parse().expect("prefix")).collect();
            let s = SpeakerInNs::start(ns, cfg);
            s.speaker
                .add_peer(peer(other.v4, Family::Ipv4Unicast))
                .expect("peer");
            s.speaker
                .add_peer(peer(other.v6, Family::Ipv6Unicast))
                .expect("peer");
            s
        })
        .collect();

    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let done = speakers
            .iter()
            .enumerate()
            .all(|(i, s)| NODES[1 - i].pods.iter().all(|p| s.learned(p).is_some()));
        if done {
            break;
        }
        if Instant::now() > deadline {
            print_tables(&speakers);
            return Err(format!("pod prefixes not exchanged within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "Two Twill speakers in namespaces {} and {} exchanged their pod prefixes in {:.2} s.\n",
        a.name,
        b.name,
        started.elapsed().as_secs_f64()
    );
    print_tables(&speakers);
    Ok(())
}

fn print_tables(speakers: &[SpeakerInNs]) {
    println!(
        "{:<8} {:<10} {:<7} {:<6} {:<12} {:>6} {:>5} {:>5} {:>5}",
        "NODE", "PEER", "AS", "KIND", "STATE", "SINCE", "RECV", "ACPT", "ADV"
    );
    for (i, s) in speakers.iter().enumerate() {
        for p in s.snapshot() {
            println!(
                "{:<8} {:<10} {:<7} {:<6} {:<12} {:>5}s {:>5} {:>5} {:>5}",
                NODES[i].name,
                p.address.to_string(),
                p.asn,
                p.kind,
                p.state.to_string(),
                p.since_secs,
                p.prefixes_received,
                p.prefixes_accepted,
                p.prefixes_advertised
            );
        }
    }
    println!();
    println!(
        "{:<8} {:<18} {:<10} {:<8} FROM",
        "NODE", "PREFIX", "NEXT HOP", "ORIGIN"
    );
    for (i, s) in speakers.iter().enumerate() {
        let mut routes = s.routes();
        routes.sort_by_key(|r| (r.prefix.addr().is_ipv6(), r.prefix));
        for r in routes {
            let Some(b) = r.best else { continue };
            let (hop, from) = match b.from {
                None => ("-".to_string(), "local".to_string()),
                Some(peer) => (
                    b.next_hops
                        .iter()
                        .map(|n| n.address.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    format!("{peer} ({})", if b.ebgp { "eBGP" } else { "iBGP" }),
                ),
            };
            println!(
                "{:<8} {:<18} {:<10} {:<8} {}",
                NODES[i].name,
                fmt_prefix(&r.prefix),
                hop,
                format!("{:?}", b.attrs.origin).to_lowercase(),
                from
            );
        }
    }
}

fn fmt_prefix(p: &IpNet) -> String {
    p.to_string()
}
