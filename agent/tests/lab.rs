//! `twill lab` end to end, as the README's main command runs it: each shipped containerlab
//! topology is brought up in namespaces, every pod pings every other, routes are what the
//! topology promises, and `lab down` leaves nothing behind.

mod common;

use common::lab::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use twill_lab::{unique, wait_for, TempDir};

#[test]
fn two_racks_vxlan_end_to_end() {
    let lab = Lab::up("two-racks-vxlan");
    let o = lab.test();
    let out = text(&o);
    assert!(o.status.success(), "lab test failed:\n{out}");
    assert!(out.contains("all 56 pod pairs reachable"), "{out}");
    for node in ["a1", "a2", "b1", "b2"] {
        assert!(
            out.contains(&format!("== {node} ==")),
            "status of {node}:\n{out}"
        );
    }
    // Within a rack straight to the node, across racks through the tunnel.
    assert_eq!(
        lab.route("a1", "10.244.2.0/24"),
        (vec!["10.1.0.12".into()], "direct".into())
    );
    assert_eq!(
        lab.route("a1", "10.244.3.0/24"),
        (vec!["10.244.3.0".into()], "vxlan".into())
    );
    assert_eq!(lab.route("b2", "10.244.1.0/24").1, "vxlan");
    assert_eq!(lab.route("b2", "10.244.3.0/24").1, "direct");
    let k = lab.kernel_route("a1", "10.244.4.0/24");
    assert!(
        k.contains("via 10.244.4.0 dev twill.vxlan") && k.contains("onlink"),
        "{k}"
    );
    let k = lab.kernel_route("a1", "10.244.2.0/24");
    assert!(k.contains("via 10.1.0.12 dev eth1"), "{k}");

    // `lab test` can fail: the router stops forwarding, pods across racks are cut off.
    let router = lab.ns("router");
    let sysctl = |v: &str| {
        let s = Command::new("ip")
            .args([
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                &format!("net.ipv4.ip_forward={v}"),
            ])
            .status()
            .unwrap();
        assert!(s.success());
    };
    sysctl("0");
    let o = lab.test();
    let out = text(&o);
    sysctl("1");
    assert!(
        !o.status.success(),
        "lab test passed with the router cut:\n{out}"
    );
    assert!(
        out.contains("FAILED: 32 of 56 pod pairs unreachable"),
        "{out}"
    );
    assert!(out.contains("a1-pod1 → b1-pod1"), "{out}");

    // A second `up` of the same lab is refused with a way out.
    let o = lab.twill(
        &["lab", "up", "--prefix", &lab.prefix.clone()],
        Some(&topology(lab.name)),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("is already up"), "{}", text(&o));

    let o = lab.down();
    assert!(o.status.success(), "{}", text(&o));
    // 4 nodes, 8 pods, the router, two switches and the outside host.
    assert!(text(&o).contains("16 namespaces"), "{}", text(&o));
    assert!(namespaces_with(&lab.prefix).is_empty(), "namespaces left");
    assert!(!lab.dir.join(lab.name).exists(), "state left");
    let o = lab.test();
    assert!(!o.status.success());
    assert!(text(&o).contains("no lab is up in"), "{}", text(&o));
}

#[test]
fn two_racks_tor_end_to_end() {
    let lab = Lab::up("two-racks-tor");
    let o = lab.test();
    let out = text(&o);
    assert!(o.status.success(), "lab test failed:\n{out}");
    assert!(out.contains("all 56 pod pairs reachable"), "{out}");
    // Within a rack straight to the node (the rack's iBGP mesh), across racks via the ToR.
    assert_eq!(
        lab.route("a1", "10.244.2.0/24"),
        (vec!["10.1.0.12".into()], "direct".into())
    );
    assert_eq!(
        lab.route("a1", "10.244.3.0/24"),
        (vec!["10.1.0.1".into()], "via router".into())
    );
    assert_eq!(
        lab.route("b1", "10.244.1.0/24"),
        (vec!["10.2.0.1".into()], "via router".into())
    );
    let k = lab.kernel_route("a1", "10.244.4.0/24");
    assert!(k.contains("via 10.1.0.1 dev eth1"), "{k}");
    assert!(!k.contains("vxlan"), "{k}");
    // Each node gives its ToR exactly its own pod CIDR, nothing it learned.
    let s = lab.json("status", "a1");
    let tor = s["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["address"] == "10.1.0.1")
        .unwrap_or_else(|| panic!("no ToR peer: {s}"));
    assert_eq!(tor["kind"], "external");
    assert_eq!(tor["state"], "Established");
    assert_eq!(tor["asNumber"], 65101);
    assert_eq!(tor["prefixesAdvertised"], 1);
    // The ToR (FRR) learned each node's CIDR from that node.
    let k = lab.kernel_route("tor-a", "10.244.2.0/24");
    assert!(
        k.contains("via 10.1.0.12") && k.contains("proto bgp"),
        "{k}"
    );
    let k = lab.kernel_route("tor-a", "10.244.3.0/24");
    assert!(k.contains("via 10.0.0.1") && k.contains("proto bgp"), "{k}");
    let o = lab.down();
    assert!(o.status.success(), "{}", text(&o));
    assert!(namespaces_with(&lab.prefix).is_empty(), "namespaces left");
}

#[test]
fn bird_and_gobgp_images_run_the_local_daemons() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/daemons-lab/daemons.clab.yml");
    // `up` returns once every Twill node has all its sessions Established: the BIRD and GoBGP
    // peers included.
    let lab = Lab::up_file("daemons", &file);
    let o = lab.test();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("all 2 pod pairs reachable"),
        "{}",
        text(&o)
    );
    let s = lab.json("status", "a1");
    for (addr, asn) in [("10.9.0.2", 65010), ("10.9.0.3", 65020)] {
        let p = s["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["address"] == addr)
            .unwrap_or_else(|| panic!("no peer {addr}: {s}"));
        assert_eq!(
            (p["state"].as_str(), p["asNumber"].as_u64()),
            (Some("Established"), Some(asn))
        );
    }
    // Each daemon runs with the bound configuration and learned both nodes' pod CIDRs.
    // `lab up` waits for the agents' side of each session; the daemons' RIBs follow the
    // UPDATEs a moment later.
    let ctl = lab.dir.join("daemons/bird/bird.ctl");
    let both = |rib: &str| rib.contains("10.244.1.0/24") && rib.contains("10.244.2.0/24");
    wait_for(
        "BIRD to learn both pod CIDRs",
        Duration::from_secs(10),
        || {
            let o = Command::new("birdc")
                .arg("-s")
                .arg(&ctl)
                .args(["show", "route"])
                .output()
                .unwrap();
            both(&String::from_utf8_lossy(&o.stdout)).then_some(())
        },
    );
    wait_for(
        "GoBGP to learn both pod CIDRs",
        Duration::from_secs(10),
        || {
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.ns("gobgp"),
                    "gobgp",
                    "global",
                    "rib",
                    "-a",
                    "ipv4",
                ])
                .output()
                .unwrap();
            both(&String::from_utf8_lossy(&o.stdout)).then_some(())
        },
    );
    assert!(lab.down().status.success());
    assert!(namespaces_with(&lab.prefix).is_empty(), "namespaces left");
}

#[test]
fn a_bad_topology_names_the_field_and_builds_nothing() {
    let dir = TempDir::new("badtopo");
    let f = dir.join("bad.clab.yml");
    std::fs::write(
        &f,
        "name: bad\ntopology:\n  nodes:\n    a: {kind: linux, image: alpine}\n  links:\n    - endpoints: [a:eth1, b:eth1]\n",
    )
    .unwrap();
    let prefix = unique("b");
    let o = twill(&[
        "lab",
        "up",
        "--dir",
        &dir.path.display().to_string(),
        "--prefix",
        &prefix,
        f.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "twill lab: topology topology.links[0].endpoints[1]: b:eth1 names no node (b is not in topology.nodes)"
    );
    assert!(namespaces_with(&prefix).is_empty());
    let o = twill(&[
        "lab",
        "up",
        "no-such-topology",
        "--dir",
        &dir.path.display().to_string(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no topology no-such-topology: looked for"),
        "{}",
        text(&o)
    );
}
