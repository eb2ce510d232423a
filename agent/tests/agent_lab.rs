//! `twill agent` processes in network namespaces, two racks behind a router that knows nothing
//! of pods; pods attached through `twill` as a CNI plugin; the agents' CLI, metrics, readiness,
//! SIGHUP reload and SIGTERM.

mod common;

use common::{cni, http, ping, pod_ips, Agent, CniPod, TWILL};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use twill_lab::{wait_for, Capture, Netns, Switch, TempDir, TwoRacks};

const VIEW: &str = r#"
asNumber: 64512
podNetwork: 10.244.0.0/16
encapsulation: {type: VXLAN, mode: CrossSubnet}
timers: {holdTime: 9, keepaliveTime: 3, connectRetryTime: 1}
nodes:
  - {name: a1, address: 10.1.0.11, podCIDR: 10.244.1.0/24, labels: {rack: a}}
  - {name: a2, address: 10.1.0.12, podCIDR: 10.244.2.0/24, labels: {rack: a}}
  - {name: b1, address: 10.2.0.11, podCIDR: 10.244.3.0/24, labels: {rack: b}}
"#;

/// An agent reading the cluster view from `config`.
fn start(ns: &Netns, dir: &Path, config: &Path, node: &str, ready_timeout: u64) -> Agent {
    let args = [
        "--config".into(),
        config.as_os_str().to_owned(),
        "--node".into(),
        node.into(),
    ];
    Agent::start(ns, dir, node, &args, ready_timeout)
}

struct Node {
    ns: Netns,
    underlay: String,
    agent: Option<Agent>,
    pod: Option<CniPod>,
}

#[test]
fn three_agents_two_racks_vxlan_cross_subnet() {
    let dir = TempDir::new("ag");
    let config = dir.join("view.yaml");
    std::fs::write(&config, VIEW).unwrap();
    std::fs::create_dir_all(dir.join("iproute2")).unwrap();
    let ipam = dir.join("ipam");
    let racks = TwoRacks::new();
    let (a, b) = (&racks.a, &racks.b);
    let (ga, gb) = (TwoRacks::GATEWAY_A, TwoRacks::GATEWAY_B);
    let spec = [
        ("a1", "10.1.0.11", a, ga),
        ("a2", "10.1.0.12", a, ga),
        ("b1", "10.2.0.11", b, gb),
    ];
    let mut nodes: Vec<Node> = spec
        .iter()
        .map(|(name, addr, sw, gw)| {
            let ns = Netns::new("n");
            let underlay = sw.attach(&ns, &[&format!("{addr}/24")], 1500);
            ns.exec(&["ip", "route", "add", "default", "via", gw]);
            ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            let agent = start(&ns, &dir.path, &config, name, 60);
            Node {
                ns,
                underlay,
                agent: Some(agent),
                pod: None,
            }
        })
        .collect();

    // Sessions up: every node sees both others Established, as mesh peers.
    for n in &nodes {
        let agent = n.agent.as_ref().unwrap();
        wait_for(
            "two Established mesh sessions",
            Duration::from_secs(30),
            || {
                let s = agent.status()?;
                let peers = s["peers"].as_array()?;
                (peers.len() == 2
                    && peers
                        .iter()
                        .all(|p| p["state"] == "Established" && p["kind"] == "mesh"))
                .then_some(())
            },
        );
    }
    let names = std::fs::read_to_string(dir.join("iproute2/rt_protos.d/twill.conf")).unwrap();
    assert_eq!(
        names.split_whitespace().collect::<Vec<_>>(),
        ["77", "twill"]
    );
    // Ready once the mesh has exchanged End-of-RIB; healthy throughout.
    for n in &nodes {
        wait_for("/readyz 200", Duration::from_secs(20), || {
            (http(&n.ns, "/readyz") == 200).then_some(())
        });
        assert_eq!(http(&n.ns, "/healthz"), 200);
    }
    let metrics = nodes[0]
        .ns
        .exec(&["curl", "-s", "http://127.0.0.1:9099/metrics"]);
    assert!(
        metrics.contains("twill_bgp_sessions{state=\"Established\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("twill_routes_programmed 2"), "{metrics}");
    // What a Prometheus server reads: the whole scrape parses, counters keep their names.
    let scrape =
        prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    let received = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "twill_bgp_updates_received_total")
        .count();
    assert_eq!(received, 2, "one per peer: {metrics}");
    let headers = nodes[0].ns.exec(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "http://127.0.0.1:9099/metrics",
    ]);
    assert!(
        headers.contains("application/openmetrics-text"),
        "{headers}"
    );
    assert_eq!(http(&nodes[0].ns, "/nowhere"), 404);

    // Routes: direct within rack A, VXLAN across.
    let s = nodes[0].agent.as_ref().unwrap().status().unwrap();
    let via = |p: &str| {
        s["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == p)
            .map(|r| r["via"].as_str().unwrap().to_string())
    };
    assert_eq!(via("10.244.2.0/24").as_deref(), Some("direct"));
    assert_eq!(via("10.244.3.0/24").as_deref(), Some("vxlan"));
    for k in [
        "address",
        "asNumber",
        "kind",
        "state",
        "since",
        "prefixesReceived",
        "prefixesAccepted",
        "prefixesAdvertised",
        "lastError",
    ] {
        assert!(
            s["peers"][0].get(k).is_some(),
            "status --json lacks peers[].{k}"
        );
    }
    let kernel = nodes[0].ns.exec(&["ip", "route", "show", "10.244.3.0/24"]);
    assert!(
        kernel.contains("dev twill.vxlan") && kernel.contains("onlink"),
        "{kernel}"
    );
    let kernel = nodes[0].ns.exec(&["ip", "route", "show", "10.244.2.0/24"]);
    assert!(
        kernel.contains(&format!("via 10.1.0.12 dev {}", nodes[0].underlay)),
        "{kernel}"
    );

    // Pods through the CNI plugin, then every pod pings every other.
    for n in nodes.iter_mut() {
        let pod = Netns::new("pod");
        let state = n.agent.as_ref().unwrap().state.clone();
        let (ok, v) = cni(&n.ns, &pod, "ADD", &state, &ipam, None);
        assert!(ok, "CNI ADD failed: {v}");
        let (ok, c) = cni(&n.ns, &pod, "CHECK", &state, &ipam, Some(&v));
        assert!(ok, "CNI CHECK failed: {c}");
        let ip = pod_ips(&v)[0].clone();
        let mtu = pod.exec(&["cat", "/sys/class/net/eth0/mtu"]);
        assert_eq!(mtu.trim(), "1450", "pod MTU from the agent's file");
        n.pod = Some(CniPod { ns: pod, ip });
    }
    for from in &nodes {
        for to in &nodes {
            let (f, t) = (from.pod.as_ref().unwrap(), to.pod.as_ref().unwrap());
            if f.ip != t.ip {
                assert!(ping(&f.ns, &t.ip), "pod {} cannot reach pod {}", f.ip, t.ip);
            }
        }
    }

    // SIGHUP with b1 gone: a1 drops the session and the route, keeps the rest.
    std::fs::write(
        &config,
        VIEW.lines()
            .filter(|l| !l.contains("b1"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let a1 = nodes[0].agent.as_ref().unwrap();
    a1.signal("-HUP");
    wait_for("b1 gone from a1", Duration::from_secs(10), || {
        let s = a1.status()?;
        let peers = s["peers"].as_array()?;
        let routes = s["routes"].as_array()?;
        (peers.len() == 1 && routes.len() == 1).then_some(())
    });
    wait_for(
        "b1's route gone from the kernel",
        Duration::from_secs(5),
        || {
            nodes[0]
                .ns
                .exec(&["ip", "route", "show", "10.244.3.0/24"])
                .is_empty()
                .then_some(())
        },
    );
    assert!(
        a1.status().unwrap()["peers"][0]["state"] == "Established",
        "a2's session flapped"
    );
    assert_eq!(
        http(&nodes[0].ns, "/readyz"),
        200,
        "readiness must not flip back"
    );
    assert!(a1.log().contains("cluster view reloaded"), "{}", a1.log());

    // CNI CHECK passes, DEL leaves nothing behind.
    let n = &nodes[1];
    let pod = n.pod.as_ref().unwrap();
    let state = n.agent.as_ref().unwrap().state.clone();
    let (ok, v) = cni(&n.ns, &pod.ns, "DEL", &state, &ipam, None);
    assert!(ok, "CNI DEL failed: {v}");
    let veths = n.ns.exec(&["ip", "-o", "link", "show", "type", "veth"]);
    assert!(
        !veths.contains("master cni0"),
        "a pod veth is left: {veths}"
    );
    let leases = std::fs::read_dir(ipam.join("twill"))
        .map(|d| d.count())
        .unwrap_or(0);
    // host-local keeps `last_reserved_ip` and a lock file; the pods' IP files must be gone for
    // this pod (the other two pods still hold theirs).
    let held: Vec<String> = std::fs::read_dir(ipam.join("twill"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("10.244."))
        .collect();
    assert!(
        !held.contains(&pod.ip),
        "{} still leased ({leases} files)",
        pod.ip
    );

    // SIGTERM stops cleanly and leaves the routes for a restart to adopt.
    let agent = nodes[0].agent.take().unwrap();
    let socket = agent.socket.clone();
    assert!(agent.stop().success());
    let kept = nodes[0].ns.exec(&["ip", "route", "show", "proto", "77"]);
    assert!(kept.contains("10.244.2.0/24"), "{kept}");
    let out = Command::new(TWILL)
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("no agent is running"), "{msg}");
}

#[test]
fn readyz_waits_for_the_mesh_then_stays_ready() {
    let dir = TempDir::new("rdy");
    let config = dir.join("view.yaml");
    std::fs::write(&config, VIEW).unwrap();
    let sw = Switch::new("swr");
    // One /8 on one switch: every node on-link, the simplest underlay that reaches them all.
    let nodes: Vec<Netns> = ["10.1.0.11/8", "10.1.0.12/8", "10.2.0.11/8"]
        .iter()
        .map(|a| {
            let ns = Netns::new("r");
            sw.attach(&ns, &[a], 1500);
            ns
        })
        .collect();
    // a1 alone: alive, not ready (its mesh peers a2 and b1 are not running).
    let a1 = start(&nodes[0], &dir.path, &config, "a1", 60);
    wait_for("a1's listener", Duration::from_secs(20), || {
        (http(&nodes[0], "/healthz") == 200).then_some(())
    });
    assert_eq!(http(&nodes[0], "/readyz"), 503, "ready without its mesh");
    // a2 and b1 come: a1 becomes ready once both sessions have exchanged End-of-RIB.
    let a2 = start(&nodes[1], &dir.path, &config, "a2", 60);
    assert_eq!(
        http(&nodes[0], "/readyz"),
        503,
        "ready with b1 still missing"
    );
    let _b1 = start(&nodes[2], &dir.path, &config, "b1", 60);
    wait_for("a1 ready", Duration::from_secs(30), || {
        (http(&nodes[0], "/readyz") == 200).then_some(())
    });
    // a2 dies: its session goes down, a1 stays ready.
    drop(a2);
    wait_for("a1 sees a2 down", Duration::from_secs(20), || {
        let s = a1.status()?;
        s["peers"]
            .as_array()?
            .iter()
            .any(|p| p["address"] == "10.1.0.12" && p["state"] != "Established")
            .then_some(())
    });
    // Killed (SIGKILL): the kernel closed its connection without a NOTIFICATION.
    let s = a1.status().unwrap();
    let gone = s["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["address"] == "10.1.0.12")
        .unwrap();
    assert_eq!(gone["lastDown"], "connection closed", "{gone}");
    assert_eq!(http(&nodes[0], "/readyz"), 200, "readiness flipped back");
    assert!(a1.log().contains("ready"), "{}", a1.log());
    // With no peer ever up, the timeout makes a node ready anyway (and says so).
    let alone = Switch::new("swl");
    let lonely = Netns::new("r");
    alone.attach(&lonely, &["10.1.0.12/8"], 1500);
    let dir2 = TempDir::new("rdy2");
    let solo = start(&lonely, &dir2.path, &config, "a2", 2);
    wait_for("ready by timeout", Duration::from_secs(20), || {
        (http(&lonely, "/readyz") == 200).then_some(())
    });
    assert!(solo.log().contains("ready by timeout"), "{}", solo.log());
}

#[test]
fn a_bad_view_or_node_stops_the_agent_with_the_field_named() {
    let dir = TempDir::new("bad");
    let config = dir.join("view.yaml");
    std::fs::write(&config, VIEW.replace("10.244.3.0/24", "10.244.3.0/33")).unwrap();
    let run = |node: &str| {
        Command::new(TWILL)
            .args(["agent", "--config"])
            .arg(&config)
            .args(["--node", node, "--socket"])
            .arg(dir.join("s"))
            .output()
            .unwrap()
    };
    let out = run("a1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nodes[2].podCIDR: 10.244.3.0/33 is not a CIDR"),
        "{err}"
    );
    std::fs::write(&config, VIEW).unwrap();
    let out = run("zz");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node zz is not in the cluster view"));
}

const DUAL: &str = r#"
podNetwork: 10.244.0.0/16,fd00:244::/48
encapsulation: {type: VXLAN, mode: CrossSubnet}
timers: {holdTime: 9, keepaliveTime: 3, connectRetryTime: 1}
nodes:
  - {name: a1, address: "10.1.0.11,fd00:a::11", podCIDR: "10.244.1.0/24,fd00:244:0:1::/64"}
  - {name: a2, address: "10.1.0.12,fd00:a::12", podCIDR: "10.244.2.0/24,fd00:244:0:2::/64"}
  - {name: b1, address: "10.2.0.11,fd00:b::11", podCIDR: "10.244.3.0/24,fd00:244:0:3::/64"}
"#;

/// Dual-stack nodes on an IPv4-only routed underlay: IPv6 pod CIDRs ride the same IPv4
/// session, go direct on the rack's segment and through the IPv4 VXLAN tunnel across racks.
#[test]
fn dual_stack_pods_cross_racks_over_an_ipv4_underlay() {
    let dir = TempDir::new("ds");
    let config = dir.join("view.yaml");
    std::fs::write(&config, DUAL).unwrap();
    let ipam = dir.join("ipam");
    let racks = TwoRacks::new();
    let spec = [
        (
            "a1",
            "10.1.0.11",
            "fd00:a::11",
            &racks.a,
            TwoRacks::GATEWAY_A,
        ),
        (
            "a2",
            "10.1.0.12",
            "fd00:a::12",
            &racks.a,
            TwoRacks::GATEWAY_A,
        ),
        (
            "b1",
            "10.2.0.11",
            "fd00:b::11",
            &racks.b,
            TwoRacks::GATEWAY_B,
        ),
    ];
    let nodes: Vec<(Netns, Agent)> = spec
        .iter()
        .map(|(name, v4, v6, sw, gw)| {
            let ns = Netns::new("d");
            sw.attach(&ns, &[&format!("{v4}/24"), &format!("{v6}/64")], 1500);
            ns.exec(&["ip", "route", "add", "default", "via", gw]);
            let agent = start(&ns, &dir.path, &config, name, 60);
            (ns, agent)
        })
        .collect();
    let (a1_ns, a1) = &nodes[0];
    wait_for("a1's IPv6 routes", Duration::from_secs(30), || {
        let r = a1_ns.exec(&["ip", "-6", "route", "show", "proto", "77"]);
        (r.contains("fd00:244:0:2::/64") && r.contains("fd00:244:0:3::/64")).then_some(r)
    });
    let same_rack = a1_ns.exec(&["ip", "-6", "route", "show", "fd00:244:0:2::/64"]);
    assert!(same_rack.contains("via fd00:a::12"), "{same_rack}");
    let across = a1_ns.exec(&["ip", "-6", "route", "show", "fd00:244:0:3::/64"]);
    assert!(
        across.contains("via fd00:244:0:3:: dev twill.vxlan") && across.contains("onlink"),
        "{across}"
    );
    // The IPv6 VTEP answers at b1's IPv4 tunnel endpoint: same MAC as its IPv4 VTEP.
    let neigh = a1_ns.exec(&["ip", "-6", "neigh", "show", "dev", "twill.vxlan"]);
    assert!(
        neigh.contains("fd00:244:0:3:: lladdr 0e:74:0a:02:00:0b"),
        "{neigh}"
    );
    let fdb = a1_ns.exec(&["bridge", "fdb", "show", "dev", "twill.vxlan"]);
    assert_eq!(
        fdb.matches("dst 10.2.0.11").count(),
        1,
        "one FDB entry serves both families: {fdb}"
    );
    let routes = a1.status().unwrap()["routes"].as_array().unwrap().len();
    assert_eq!(routes, 4, "two nodes × two families");

    let mut pods = Vec::new();
    for (ns, agent) in &nodes {
        let pod = Netns::new("dp");
        let (ok, v) = cni(ns, &pod, "ADD", &agent.state, &ipam, None);
        assert!(ok, "CNI ADD failed: {v}");
        let v6 = pod_ips(&v)
            .into_iter()
            .find(|a| a.contains(':'))
            .expect("an IPv6 pod address");
        pods.push((pod, v6));
    }
    for (from, _) in &pods {
        for (_, to) in &pods {
            wait_for(&format!("ping {to}"), Duration::from_secs(10), || {
                ping(from, to).then_some(())
            });
        }
    }

    // Outgoing NAT, IPv6: a host on rack a's segment, outside the cluster and with no route to
    // any pod CIDR, answers a1's pod because the pod's packets reach it from a1's address.
    let (_, a1) = &nodes[0];
    wait_for("IPv6 NAT in force on a1", Duration::from_secs(20), || {
        let nat = a1.status()?["nat"].clone();
        (nat["programmed"] == true && nat["families"].as_array()?.iter().any(|f| f == "IPv6"))
            .then_some(())
    });
    let outside = Netns::new("dout");
    let iface = racks.a.attach(&outside, &["fd00:a::99/64"], 1500);
    let cap = Capture::start(&outside, &iface, "icmp6");
    wait_for(
        "a1's pod pings the outside host over IPv6",
        Duration::from_secs(10),
        || ping(&pods[0].0, "fd00:a::99").then_some(()),
    );
    let seen: Vec<String> = cap
        .stop()
        .into_iter()
        .filter(|l| l.contains("echo request"))
        .collect();
    assert!(
        !seen.is_empty() && seen.iter().all(|l| l.contains("fd00:a::11 > fd00:a::99")),
        "{seen:#?}"
    );
}
