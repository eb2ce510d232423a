//! Twill speakers among themselves: a three-node iBGP full mesh on one bridge, import
//! filtering to the owned pod CIDR, max-prefix, and refusal of unconfigured peers.

mod common;

use common::*;
use speaker::{Family, ImportFilter, State};
use std::time::Duration;
use twill_lab::{wait_for, Netns, SpeakerInNs};

/// Three namespaces on one bridge (in a fourth namespace): 10.0.0.1-3/24.
fn three_nodes() -> (Netns, Vec<Netns>) {
    let sw = Netns::new("sw");
    sw.exec(&["ip", "link", "add", "name", "br0", "type", "bridge"]);
    sw.exec(&["ip", "link", "set", "br0", "up"]);
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let n = Netns::new(&format!("n{i}"));
        let (_, port) = twill_lab::Link::connect(&n, &[&format!("10.0.0.{i}/24")], &sw, &[]);
        sw.exec(&["ip", "link", "set", &port, "master", "br0"]);
        nodes.push(n);
    }
    (sw, nodes)
}

fn pod(i: u8) -> String {
    format!("10.244.{i}.0/24")
}

#[test]
fn three_node_full_mesh_learns_every_pod_cidr() {
    let (_sw, nodes) = three_nodes();
    let speakers: Vec<SpeakerInNs> = (1..=3u8)
        .map(|i| {
            let s = SpeakerInNs::start(
                &nodes[i as usize - 1],
                speaker_cfg(64512, &format!("10.0.0.{i}"), &[&pod(i)]),
            );
            for j in (1..=3u8).filter(|j| *j != i) {
                let mut p = peer(&format!("10.0.0.{j}"), 64512, &[Family::Ipv4Unicast]);
                // A cluster node accepts from a mesh peer exactly the pod CIDR it owns.
                p.import = ImportFilter::exact([pod(j).parse().unwrap()]);
                s.speaker.add_peer(p).unwrap();
            }
            s
        })
        .collect();
    for (i, s) in speakers.iter().enumerate() {
        let i = i as u8 + 1;
        for j in (1..=3u8).filter(|j| *j != i) {
            let r = wait_for(
                &format!("node {i} learns node {j}'s pod CIDR"),
                WAIT,
                || s.learned(&pod(j)),
            );
            assert_eq!(r.next_hops[0].address, ip(&format!("10.0.0.{j}")));
            assert!(!r.ebgp);
        }
    }
    // iBGP routes are not re-advertised over iBGP: each node advertises only its own.
    for s in &speakers {
        for p in s.snapshot() {
            assert_eq!(p.prefixes_advertised, 1, "{p:?}");
            assert_eq!(p.state, State::Established);
        }
    }
    // Node 3 starts announcing a prefix it does not own: its peers refuse it.
    speakers[2]
        .speaker
        .set_originated(vec![
            pod(3).parse().unwrap(),
            pod(1).parse().unwrap(),
            "10.244.3.0/25".parse().unwrap(),
        ])
        .unwrap();
    wait_for(
        "node 2 receives and rejects the foreign prefixes",
        WAIT,
        || {
            let snap = speakers[1].snapshot();
            let p = snap
                .iter()
                .find(|p| p.address == ip("10.0.0.3"))
                .unwrap()
                .clone();
            (p.prefixes_received == 3).then_some(p)
        },
    );
    let snap = speakers[1].snapshot();
    let p = snap.iter().find(|p| p.address == ip("10.0.0.3")).unwrap();
    assert_eq!(p.prefixes_accepted, 1, "only the owned pod CIDR: {p:?}");
    let r = speakers[1].learned(&pod(1)).expect("node 1's route");
    assert_eq!(
        r.next_hops[0].address,
        ip("10.0.0.1"),
        "the owner stays the next hop"
    );
    assert!(speakers[1].learned("10.244.3.0/25").is_none());
}

#[test]
fn unconfigured_peer_is_refused_and_max_prefix_closes_with_cease() {
    let pair = pair();
    let a = SpeakerInNs::start(&pair.twill, speaker_cfg(64512, T4, &[]));
    let b = SpeakerInNs::start(
        &pair.peer,
        speaker_cfg(
            64512,
            P4,
            &["10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24"],
        ),
    );
    // B knows A, A does not know B: B's connection is refused, nothing comes up.
    b.speaker
        .add_peer(peer(T4, 64512, &[Family::Ipv4Unicast]))
        .unwrap();
    // Wait until B has tried and been turned away, then check nothing came up.
    wait_for("B's attempt is refused", WAIT, || {
        let snap = b.snapshot();
        snap[0]
            .last_error
            .clone()
            .filter(|_| snap[0].state != State::OpenConfirm)
    });
    let snap = b.snapshot();
    assert_ne!(snap[0].state, State::Established);
    assert!(a.snapshot().is_empty());

    // Now A configures B with a limit of 2 prefixes: B announces 3.
    let mut p = peer(P4, 64512, &[Family::Ipv4Unicast]);
    p.max_prefixes = Some(2);
    p.idle_hold = Duration::from_secs(30);
    a.speaker.add_peer(p).unwrap();
    let err = wait_for("max-prefix Cease", WAIT, || {
        let snap = a.snapshot();
        snap[0]
            .last_error
            .clone()
            .filter(|e| e.contains("Maximum Number of Prefixes"))
    });
    assert!(err.contains("(6/1)"), "{err}");
    // A's writer sends the NOTIFICATION after the step that records the error: B hears it
    // a moment later.
    wait_for("the peer hears the Cease", WAIT, || {
        let snap = b.snapshot();
        (snap[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("Maximum Number of Prefixes")
            || snap[0].state != State::Established)
            .then_some(())
    });
    assert!(
        a.learned("10.244.2.0/24").is_none(),
        "routes withdrawn when the session closes"
    );
}
