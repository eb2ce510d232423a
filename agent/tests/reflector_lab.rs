//! Route reflection end to end in `twill lab`: the shipped `rr-fabric` topology (twelve Twill
//! nodes in three racks, two Twill reflectors with one cluster ID), and three Twill nodes as
//! clients of an external FRR or BIRD reflector. Pods ping; one reflector stops while steady
//! pings run (to its own pods too: graceful restart) and none of them may lose a packet.

mod common;

use common::lab::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use twill_lab::topology::{copy_with_view, rr_fabric_full_mesh, rr_fabric_mesh_on};
use twill_lab::wait_for;

const REFLECTORS: [&str; 2] = ["a1", "b1"];

#[test]
fn rr_fabric_reflects_and_a_stopped_reflector_costs_other_pods_nothing() {
    let lab = Lab::up_file("rr-fabric", &topology("rr-fabric"));
    assert!(lab.up_output.contains("12 pods"), "{}", lab.up_output);
    let o = lab.test();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("all 132 pod pairs reachable"),
        "{}",
        text(&o)
    );

    // Each client has exactly one session per reflector; each reflector one per other node.
    let nodes = twelve();
    for n in &nodes {
        let p = lab.peers(n);
        let kinds: Vec<&str> = p.iter().map(|p| p["kind"].as_str().unwrap()).collect();
        if REFLECTORS.contains(&n.as_str()) {
            assert_eq!(p.len(), 11, "{n}: {kinds:?}");
            assert_eq!(kinds.iter().filter(|k| **k == "client").count(), 10, "{n}");
        } else {
            assert_eq!(kinds, ["reflector", "reflector"], "{n}");
        }
    }
    // A route one client learned from another through a reflector: the owner's address as
    // next hop (direct inside rack c), the owner as ORIGINATOR_ID, the cluster ID in the list.
    let r = lab.route_json("c2", "10.244.11.0/24");
    assert_eq!(r["nextHops"], serde_json::json!(["10.3.0.13"]), "{r}");
    assert_eq!(r["via"], "direct");
    assert_eq!(r["originatorId"], "10.3.0.13");
    assert_eq!(r["clusterList"], serde_json::json!(["10.255.0.1"]));
    assert!(
        ["10.1.0.11", "10.2.0.11"].contains(&r["learnedFrom"].as_str().unwrap()),
        "{r}"
    );
    assert!(lab
        .kernel_route("c2", "10.244.11.0/24")
        .contains("via 10.3.0.13"));

    // Steady pings across racks and within racks, to a1's pods too, while a1's agent is
    // stopped (SIGTERM: the sessions close without a NOTIFICATION) and started again.
    let pairs = [
        ("a2", "c1"),
        ("c2", "a1"),
        ("c3", "b2"),
        ("b4", "a3"),
        ("a3", "a4"),
        ("c2", "c4"),
    ];
    let pings = Steady::start_all(&lab, &pairs);
    let o = lab.twill(&["lab", "stop", "a1"], None);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(
        "the clients to see a1 gone",
        Duration::from_secs(20),
        || {
            nodes
                .iter()
                .filter(|n| !REFLECTORS.contains(&n.as_str()))
                .all(|n| {
                    lab.peers(n)
                        .iter()
                        .any(|p| p["address"] == "10.1.0.11" && p["state"] != "Established")
                })
                .then_some(())
        },
    );
    // Graceful restart: the clients keep what a1 reflected, a1's own pod CIDR included, as
    // stale for a1's restart time; everything is also reflected by b1, fresh.
    let a1 = lab
        .peers("c2")
        .into_iter()
        .find(|p| p["address"] == "10.1.0.11")
        .unwrap();
    let gr = &a1["gracefulRestart"];
    assert!(
        gr["restartTimeLeft"].as_u64().is_some_and(|t| t > 60),
        "{a1}"
    );
    assert!(gr["staleRoutes"].as_u64().unwrap() >= 11, "{a1}");
    // (Across racks: through the tunnel to a1's VTEP.)
    let k = lab.kernel_route("c2", "10.244.1.0/24");
    assert!(
        k.contains("dev twill.vxlan") && k.contains("proto 77"),
        "{k}"
    );
    assert!(lab
        .kernel_route("c2", "10.244.11.0/24")
        .contains("via 10.3.0.13"));
    let o = lab.twill(&["lab", "start", "a1"], None);
    assert!(o.status.success(), "{}", text(&o));
    Steady::none_lost(pings, "reflector a1 was stopped and started");
    // a1's pods are back.
    all_reachable_then_down(&lab);
}

/// rr-fabric with no reflector named: `routeReflectors: {mode: Auto, perZone: 1, zoneLabel:
/// rack}` makes every agent choose the same one node per rack, the mesh goes, and every pod
/// reaches every other through them.
#[test]
fn reflectors_chosen_automatically_one_per_rack() {
    let dir = copy_with_view("rr-fabric", |v| {
        v.replace(", routeReflectorClusterID: 10.255.0.1", "")
            .replace(
                "nodeToNodeMesh: false\n",
                "routeReflectors: {mode: Auto, perZone: 1, zoneLabel: rack}\n",
            )
    });
    let lab = Lab::up_file("rr-fabric", &dir.join("rr-fabric.clab.yml"));
    let status = lab.json("status", "c2");
    let chosen = status["reflectors"]
        .as_object()
        .expect("reflectors in status")
        .clone();
    assert_eq!(chosen.len(), 3, "{chosen:?}");
    for rack in ["a", "b", "c"] {
        assert_eq!(
            chosen
                .values()
                .filter(|w| w
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("auto: zone {rack}, rank 1")))
                .count(),
            1,
            "{chosen:?}"
        );
    }
    // The same choice on every node; a client peers with the three reflectors only.
    for n in ["a1", "b3", "c4"] {
        assert_eq!(
            lab.json("status", n)["reflectors"].as_object().unwrap(),
            &chosen,
            "{n}"
        );
    }
    let client = [
        "a2", "a3", "a4", "b2", "b3", "b4", "c2", "c3", "c4", "a1", "b1", "c1",
    ]
    .into_iter()
    .find(|n| !chosen.contains_key(*n))
    .unwrap();
    let peers = lab.peers(client);
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert!(peers.iter().all(|p| p["kind"] == "reflector"), "{peers:?}");
    all_reachable_then_down(&lab);
}

/// Every pod of rr-fabric reaches every other; then the lab comes down leaving no namespace.
fn all_reachable_then_down(lab: &Lab) {
    let o = lab.test();
    assert!(
        text(&o).contains("all 132 pod pairs reachable"),
        "{}",
        text(&o)
    );
    assert!(lab.down().status.success());
    assert!(namespaces_with(&lab.prefix).is_empty(), "namespaces left");
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/external-rr/{name}.clab.yml"))
}

/// Three Twill clients of an external reflector: routes `via` the owning node, the
/// reflector's attributes visible, pods ping.
fn external_reflector(name: &'static str) -> Lab {
    let lab = Lab::up_file(name, &fixture(name));
    let o = lab.test();
    assert!(
        text(&o).contains("all 6 pod pairs reachable"),
        "{}",
        text(&o)
    );
    for (node, prefix, owner) in [
        ("a1", "10.244.2.0/24", "10.9.0.12"),
        ("a1", "10.244.3.0/24", "10.9.0.13"),
        ("a3", "10.244.1.0/24", "10.9.0.11"),
    ] {
        let r = lab.route_json(node, prefix);
        assert_eq!(r["nextHops"], serde_json::json!([owner]), "{name} {r}");
        assert_eq!(r["learnedFrom"], "10.9.0.2");
        assert_eq!(r["originatorId"], owner);
        assert_eq!(r["clusterList"], serde_json::json!(["10.255.0.9"]));
        let k = lab.kernel_route(node, prefix);
        assert!(
            k.contains(&format!("via {owner}")) && k.contains("proto 77"),
            "{k}"
        );
    }
    lab
}

#[test]
fn bird_reflects_for_three_twill_clients() {
    let lab = external_reflector("bird-rr");
    assert!(lab.down().status.success());
}

/// FRR as the reflector; then FRR announces a2's pod CIDR and half of it with itself as next
/// hop (a misconfigured or hostile reflector): the clients refuse both and count them, and the
/// kernel never sends a2's pod traffic to the reflector.
#[test]
fn frr_reflects_for_three_twill_clients_and_cannot_pull_a_node_s_traffic() {
    let lab = external_reflector("frr-rr");
    let vty = lab.dir.join("frr-rr/rr");
    let vtysh = |lines: &[&str]| {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket")
            .arg(&vty)
            .args(["-c", "configure terminal"]);
        for l in lines {
            c.args(["-c", l]);
        }
        let o = c.output().expect("vtysh");
        assert!(o.status.success(), "{}", text(&o));
    };
    vtysh(&[
        "route-map HIJACK permit 10",
        "set ip next-hop 10.9.0.2",
        "exit",
        "router bgp 64512",
        "address-family ipv4 unicast",
        "network 10.244.2.0/24 route-map HIJACK",
        // A more specific route would win by longest match without replacing a2's.
        "network 10.244.2.128/25 route-map HIJACK",
    ]);
    let refused = |node: &str| {
        lab.peers(node)[0]["prefixesRejected"]["next-hop-not-owner"]
            .as_u64()
            .unwrap_or(0)
    };
    wait_for(
        "a1 and a3 to refuse the hijack",
        Duration::from_secs(20),
        || (refused("a1") == 2 && refused("a3") == 2).then_some(()),
    );
    // FRR prefers its own announcement, so a2's reflected one is replaced: the clients are
    // left with no route to a2's pods (a bad reflector can blackhole a CIDR) but never with
    // one through the reflector (it cannot redirect it), not even for half of the CIDR.
    // The withdrawal reaches the kernel after the speaker: wait for it, and check at every
    // look that no route points at the reflector.
    for node in ["a1", "a3"] {
        wait_for(
            &format!("{node} to drop its route to a2's pods"),
            Duration::from_secs(10),
            || {
                let whole = lab.kernel_route(node, "10.244.2.0/24");
                let half = lab.kernel_route(node, "10.244.2.128/25");
                for k in [&whole, &half] {
                    assert!(
                        !k.contains("10.9.0.2 "),
                        "{node} routes a2's pods through the reflector: {k}"
                    );
                }
                assert!(half.is_empty(), "{node} routes half of a2's pods: {half}");
                whole.is_empty().then_some(())
            },
        );
    }
    // Withdrawn again: a2's own announcement, reflected, is the best path once more.
    vtysh(&[
        "router bgp 64512",
        "address-family ipv4 unicast",
        "no network 10.244.2.0/24 route-map HIJACK",
        "no network 10.244.2.128/25 route-map HIJACK",
    ]);
    wait_for(
        "a1 to route a2's pods via a2 again",
        Duration::from_secs(20),
        || {
            lab.kernel_route("a1", "10.244.2.0/24")
                .contains("via 10.9.0.12")
                .then_some(())
        },
    );
    // The two withdrawals may come in separate UPDATEs: the count follows the second.
    wait_for("a1 to refuse nothing", Duration::from_secs(10), || {
        (refused("a1") == 0).then_some(())
    });
    assert!(lab.down().status.success());
}

fn twelve() -> Vec<String> {
    ["a", "b", "c"]
        .iter()
        .flat_map(|r| (1..=4).map(move |k| format!("{r}{k}")))
        .collect()
}

/// rr-fabric's nodes that are not its shipped reflectors.
fn ten_clients() -> Vec<String> {
    twelve()
        .into_iter()
        .filter(|n| !REFLECTORS.contains(&n.as_str()))
        .collect()
}

/// Steady pings across and within racks over rr-fabric, as the handover tests use them.
const RR_PAIRS: [(&str, &str); 5] = [
    ("a2", "c1"),
    ("c3", "b2"),
    ("b4", "a3"),
    ("a3", "a4"),
    ("a1", "c4"),
];

/// The README's migration, on a running 12-node mesh with steady pings: annotate the
/// reflectors with the mesh still on, then turn the mesh off (each step a SIGHUP reload).
/// No ping may lose a packet, and at the end every client has exactly the two reflector
/// sessions.
#[test]
fn a_running_mesh_moves_to_reflectors_without_losing_a_packet() {
    let dir = copy_with_view("rr-fabric", rr_fabric_full_mesh);
    let view = dir.join("rr-fabric/cluster.yaml");
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/containerlab/rr-fabric/cluster.yaml"),
    )
    .unwrap();
    let lab = Lab::up_file("rr-fabric", &dir.join("rr-fabric.clab.yml"));
    let nodes = twelve();
    let clients = ten_clients();
    assert!(lab.peers("c2").iter().all(|p| p["kind"] == "mesh"));

    let pings = Steady::start_all(&lab, &RR_PAIRS);
    // Step 1: reflectors annotated, mesh on. Sessions keep running and take their roles.
    std::fs::write(&view, rr_fabric_mesh_on(&shipped)).unwrap();
    lab.signal(&nodes, "-HUP");
    // The README's check before the mesh goes: every client holds every other node's pod
    // CIDR through each reflector (so the reflectors have reloaded and reflect).
    let through_reflector =
        |p: &&serde_json::Value| p["kind"] == "reflector" && p["prefixesAccepted"] == 11;
    wait_for(
        "clients to hold every route through both reflectors",
        Duration::from_secs(20),
        || {
            clients
                .iter()
                .all(|n| {
                    let p = lab.peers(n);
                    p.len() == 11 && p.iter().filter(through_reflector).count() == 2
                })
                .then_some(())
        },
    );
    // Step 2: the mesh off. Client-to-client sessions close; nothing else changes.
    std::fs::write(&view, &shipped).unwrap();
    lab.signal(&nodes, "-HUP");
    wait_for(
        "clients to keep only the reflectors",
        Duration::from_secs(20),
        || {
            clients
                .iter()
                .all(|n| {
                    let p = lab.peers(n);
                    p.len() == 2 && p.iter().all(|p| p["state"] == "Established")
                })
                .then_some(())
        },
    );
    Steady::none_lost(pings, "the mesh moved to reflectors");
    let r = lab.route_json("c2", "10.244.11.0/24");
    assert_eq!(r["clusterList"], serde_json::json!(["10.255.0.1"]), "{r}");
    all_reachable_then_down(&lab);
}

/// rr-fabric with one automatic reflector for the whole cluster (`perZone: 1`, no zone label),
/// then that node marked not Ready: every agent chooses another, and the change is
/// make-before-break. Clients add the new reflector's session and keep the old one until
/// every route they had from it also comes from the new one; the old reflector keeps
/// reflecting until its clients are handed over. Steady pings across and within racks, to
/// and from both reflectors' pods, lose nothing; without the handover every client would have
/// no route at all between the old session's removal and the new one's first UPDATE.
#[test]
fn a_replaced_reflector_is_handed_over_make_before_break() {
    let auto = |v: &str| {
        v.replace(", routeReflectorClusterID: 10.255.0.1", "")
            .replace(
                "nodeToNodeMesh: false\n",
                "routeReflectors: {mode: Auto, perZone: 1}\n",
            )
    };
    let dir = copy_with_view("rr-fabric", auto);
    let view = dir.join("rr-fabric/cluster.yaml");
    let lab = Lab::up_file("rr-fabric", &dir.join("rr-fabric.clab.yml"));
    let reflectors = |node: &str| -> Vec<String> {
        lab.json("status", node)["reflectors"]
            .as_object()
            .expect("reflectors in status")
            .keys()
            .cloned()
            .collect()
    };
    let old = reflectors("c2");
    assert_eq!(old.len(), 1, "{old:?}");
    let old = old[0].clone();
    let nodes = twelve();
    // Pings across racks and within them, to and from the old reflector's pods, and between
    // every rack's first and last node (one of which becomes the new reflector or not: the
    // ranking is a hash, so the pairs cover both).
    let other_rack = |n: &str| if n.starts_with('a') { "b2" } else { "a2" };
    let pairs = [
        ("a3", "c1"),
        ("c3", "b2"),
        ("b4", "a4"),
        ("a3", "a4"),
        ("c2", "c4"),
        (other_rack(&old), old.as_str()),
        (old.as_str(), "c3"),
    ];
    let pings = Steady::start_all_n(&lab, &pairs, 2000);
    // The old reflector is no longer Ready: every agent reloads the view.
    let edited = auto(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/containerlab/rr-fabric/cluster.yaml"),
        )
        .unwrap(),
    )
    .replace(
        &format!("{{name: {old}, "),
        &format!("{{name: {old}, ready: false, "),
    );
    assert!(edited.contains("ready: false"), "{edited}");
    std::fs::write(&view, edited).unwrap();
    lab.signal(&nodes, "-HUP");
    let new = wait_for(
        "every node to choose one new reflector",
        Duration::from_secs(20),
        || {
            let first = reflectors("c2");
            (first.len() == 1 && first[0] != old && nodes.iter().all(|n| reflectors(n) == first))
                .then(|| first[0].clone())
        },
    );
    // The handover completes: every other node has exactly the new reflector as its peer,
    // Established; the new reflector serves the eleven others, the old one among them.
    wait_for(
        "the old reflector's sessions to be retired",
        Duration::from_secs(40),
        || {
            nodes
                .iter()
                .all(|n| {
                    let p = lab.peers(n);
                    if *n == new {
                        p.len() == 11
                            && p.iter()
                                .all(|p| p["kind"] == "client" && p["state"] == "Established")
                    } else {
                        p.len() == 1
                            && p[0]["kind"] == "reflector"
                            && p[0]["state"] == "Established"
                    }
                })
                .then_some(())
        },
    );
    Steady::none_lost(pings, "the reflector was replaced");
    // The handover was one: the clients retired the old reflector's session, not dropped it.
    let client = nodes
        .iter()
        .find(|n| **n != old && **n != new)
        .expect("a client");
    let log = std::fs::read_to_string(lab.dir.join(format!("rr-fabric/{client}/twill.log")))
        .unwrap_or_default();
    assert!(log.contains("retired peer removed"), "{client}: {log}");
    // The new reflector reflected under its router ID until its clients had connected, then
    // took the shared cluster ID, which the reflected routes now carry.
    let log = std::fs::read_to_string(lab.dir.join(format!("rr-fabric/{new}/twill.log")))
        .unwrap_or_default();
    assert!(log.contains("clients connected"), "{new}: {log}");
    let shared = serde_json::json!(["10.255.255.1"]);
    wait_for(
        "reflected routes with the shared cluster ID",
        Duration::from_secs(10),
        || {
            let r = lab.route_json(client, "10.244.11.0/24");
            (client == "c3" || r["clusterList"] == shared).then_some(())
        },
    );
    all_reachable_then_down(&lab);
}

/// The way back: rr-fabric's two reflectors, then the full mesh (mesh on, no reflector), with
/// steady pings across and within racks, to and from the reflectors' pods. The reflectors
/// reload first and run the new view alone for 5 s (clients lag behind: a ConfigMap, a slow
/// watch); they go on reflecting for their former clients meanwhile. Then the clients reload:
/// each keeps its reflector sessions' routes until its own mesh sessions have brought every
/// route. No ping may lose a packet.
#[test]
fn reflectors_give_way_to_the_mesh_without_losing_a_packet() {
    let dir = copy_with_view("rr-fabric", str::to_string);
    let view = dir.join("rr-fabric/cluster.yaml");
    let shipped = std::fs::read_to_string(&view).unwrap();
    let lab = Lab::up_file("rr-fabric", &dir.join("rr-fabric.clab.yml"));
    let nodes = twelve();
    let reflectors: Vec<String> = REFLECTORS.iter().map(|r| r.to_string()).collect();
    let clients = ten_clients();
    assert!(lab.peers("c2").iter().all(|p| p["kind"] == "reflector"));
    // And to a reflector's pods.
    let mut pairs = RR_PAIRS.to_vec();
    pairs.push(("c2", "b1"));
    // 50 s of pings: the reflectors hold their roles for three hold times (27 s here).
    let pings = Steady::start_all_n(&lab, &pairs, 5000);
    std::fs::write(&view, rr_fabric_full_mesh(&shipped)).unwrap();
    lab.signal(&reflectors, "-HUP");
    let holding = |n: &String| {
        lab.peers(n)
            .iter()
            .filter(|p| p["kind"] == "client (until the mesh is up)")
            .count()
            == 10
    };
    wait_for(
        "the reflectors on the new view, still reflecting",
        Duration::from_secs(20),
        || reflectors.iter().all(holding).then_some(()),
    );
    let alone = std::time::Instant::now();
    wait_for(
        "5 s of reflectors on the mesh view, clients not",
        Duration::from_secs(20),
        || {
            assert!(reflectors.iter().all(holding), "a reflector let go early");
            (alone.elapsed() > Duration::from_secs(5)).then_some(())
        },
    );
    lab.signal(&clients, "-HUP");
    wait_for(
        "every node in the full mesh, every session Established",
        Duration::from_secs(60),
        || {
            nodes
                .iter()
                .all(|n| {
                    let p = lab.peers(n);
                    p.len() == 11
                        && p.iter()
                            .all(|p| p["kind"] == "mesh" && p["state"] == "Established")
                })
                .then_some(())
        },
    );
    Steady::none_lost(pings, "the reflectors gave way to the mesh");
    // Both sides held their reflection roles and then let go: a client and a former
    // reflector.
    for node in ["c2", "a1"] {
        let log = std::fs::read_to_string(lab.dir.join(format!("rr-fabric/{node}/twill.log")))
            .unwrap_or_default();
        assert!(
            log.contains("keeping its reflection role")
                && log.contains("sessions now mesh sessions"),
            "{node}:\n{log}"
        );
    }
    // Routes now come from their owners, with no reflector's trace.
    let r = lab.route_json("c2", "10.244.11.0/24");
    assert_eq!(r["learnedFrom"], "10.3.0.13", "{r}");
    assert_eq!(r["clusterList"], serde_json::json!([]), "{r}");
    all_reachable_then_down(&lab);
}
