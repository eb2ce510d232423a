//! `twill agent --kubernetes`, unmodified, against a real kube-apiserver and
//! kube-controller-manager v1.20.2 with etcd (`twill_lab::kube`) inside a namespace lab:
//! `deploy/twill.yaml` applied with `kubectl` as the README says; Nodes get their pod CIDRs from
//! node IPAM; the agents authenticate with the token the token controller issued to the
//! manifest's ServiceAccount; RBAC, CRD validation and defaulting, watches and their bookmarks
//! are the server's own; the audit log shows every request was allowed. The fake API server (`twill_lab::fakeapi`) stays for what the real one
//! cannot be made to do on demand: cut every watch, and answer a resumed watch 410 Gone.

mod common;

use common::{cni, http, ping, pod_ips, Agent};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use twill_lab::daemons::Daemon;
use twill_lab::fakeapi::{self, FakeApi, BGP_CONFIGURATIONS, NODES};
use twill_lab::kube::Kube;
use twill_lab::netns::enter;
use twill_lab::{wait_for, Netns, Switch, TempDir};

const NS: &str = "twill-system";

fn manifest_rules() -> Vec<fakeapi::Rule> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/twill.yaml"))
            .unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let rules = fakeapi::rules_for(&docs, NS, "twill");
    assert!(
        !rules.is_empty(),
        "the manifest binds no rules to twill-system/twill"
    );
    rules
}

/// The fake API server listening inside `ns` (the socket stays in the namespace it was made in).
fn serve_in(ns: &Netns, addr: &str) -> FakeApi {
    let path = ns.path();
    let addr = addr.to_string();
    let listener = std::thread::spawn(move || {
        enter(&path).expect("setns");
        std::net::TcpListener::bind(addr).expect("bind")
    })
    .join()
    .unwrap();
    FakeApi::serve(listener, manifest_rules())
}

/// A dual-stack Node as the node controller leaves it: an InternalIP per family, and once
/// allocated `spec.podCIDRs` (IPv4 first) with `spec.podCIDR` the first of them.
fn node(name: &str, ips: [&str; 2], cidrs: Option<[&str; 2]>) -> Value {
    let mut n = json!({
        "metadata": {"name": name, "labels": {"rack": "a", "kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"addresses": [
            {"type": "InternalIP", "address": ips[0]},
            {"type": "InternalIP", "address": ips[1]},
            {"type": "Hostname", "address": name}]}
    });
    if let Some(c) = cidrs {
        n["spec"]["podCIDR"] = json!(c[0]);
        n["spec"]["podCIDRs"] = json!(c);
    }
    n
}

const A1: [&str; 2] = ["10.1.0.11", "fd00:1::11"];
const A2: [&str; 2] = ["10.1.0.12", "fd00:1::12"];
const A1_PODS: [&str; 2] = ["10.244.1.0/24", "fd00:244:0:1::/64"];
const A2_PODS: [&str; 2] = ["10.244.2.0/24", "fd00:244:0:2::/64"];

/// An agent reading the cluster view from the API behind `kubeconfig`.
fn start(ns: &Netns, dir: &Path, kubeconfig: &Path, node: &str) -> Agent {
    let args = [
        "--kubernetes".into(),
        "--kubeconfig".into(),
        kubeconfig.as_os_str().to_owned(),
    ];
    Agent::start(ns, dir, node, &args, 60)
}

fn established(a: &Agent, addr: &str) -> Option<String> {
    let p = a.peer(addr)?;
    (p["state"] == "Established").then(|| p["since"].as_str().unwrap_or("").to_string())
}

/// The lab: a switch with the control plane (10.1.0.100), an FRR ToR (10.1.0.1) and two
/// dual-stack nodes.
struct Cluster {
    dir: TempDir,
    _sw: Switch,
    api_ns: Netns,
    tor_ns: Netns,
    nodes: Vec<Netns>,
}

fn cluster() -> Cluster {
    let dir = TempDir::new("k8s");
    let sw = Switch::new("swk");
    let api_ns = Netns::new("api");
    sw.attach(&api_ns, &["10.1.0.100/24"], 1500);
    let tor_ns = Netns::new("tor");
    sw.attach(&tor_ns, &["10.1.0.1/24"], 1500);
    let nodes: Vec<Netns> = [A1, A2]
        .iter()
        .map(|[v4, v6]| {
            let ns = Netns::new("k");
            sw.attach(&ns, &[&format!("{v4}/24"), &format!("{v6}/64")], 1500);
            ns
        })
        .collect();
    Cluster {
        dir,
        _sw: sw,
        api_ns,
        tor_ns,
        nodes,
    }
}

const AGENT_USER: &str = "system:serviceaccount:twill-system:twill";

#[test]
fn the_agent_follows_a_real_api_server() {
    let c = cluster();
    let nodes = &c.nodes;
    let mut kube = Kube::start(&c.api_ns, "10.1.0.100");
    // The manifest exactly as the README tells users to apply it; the CRDs must be
    // established before objects of their kinds are.
    kube.install_twill();
    // What the schema promises, the server enforces: a bad address is refused with the field
    // named, before any agent sees it.
    let (ok, out) = kube.apply_result(&json!({"apiVersion": "twill.io/v1", "kind": "BGPPeer",
        "metadata": {"name": "typo"}, "spec": {"peerIP": "10.1.0.300", "asNumber": 65100}}));
    assert!(!ok && out.contains("spec.peerIP"), "{out}");
    let (ok, out) = kube.apply_result(&json!({"apiVersion": "twill.io/v1", "kind": "BGPPeer",
        "metadata": {"name": "v6"}, "spec": {"peerIP": "fd00:1::1", "asNumber": 65100,
        "acceptPrefixes": ["10.0.0.0/33"]}}));
    assert!(!ok && out.contains("spec.acceptPrefixes"), "{out}");

    kube.apply(
        &json!({"apiVersion": "twill.io/v1", "kind": "BGPConfiguration",
        "metadata": {"name": "default"}, "spec": {
            "podNetwork": "10.244.0.0/16,fd00:244::/48",
            "timers": {"holdTime": 9, "keepaliveTime": 3, "connectRetryTime": 1}}}),
    );
    // The server's defaults are in the stored object.
    let (_, cfg) = kube.kubectl(&["get", "bgpconfiguration", "default", "-o", "json"]);
    let cfg: Value = serde_json::from_str(&cfg).expect("json");
    assert_eq!(cfg["spec"]["asNumber"], 64512, "{cfg}");
    assert_eq!(cfg["spec"]["listenPort"], 179, "{cfg}");
    assert_eq!(cfg["spec"]["nodeToNodeMeshEnabled"], true, "{cfg}");
    let k8s_node = |name: &str, ips: [&str; 2], cidrs: Option<[&str; 2]>| {
        let mut n = node(name, ips, cidrs);
        n["apiVersion"] = json!("v1");
        n["kind"] = json!("Node");
        n
    };
    // As in a cluster: the controller-manager gives each Node its pod CIDRs (node IPAM, one
    // per family) and the ServiceAccount its token, which the agents authenticate with.
    kube.start_controllers(&c.api_ns, "10.244.0.0/16,fd00:244::/48");
    let token = kube.service_account_kubeconfig(NS, "twill");
    kube.apply(&k8s_node("a1", A1, None));
    let pod_cidrs = |name: &str| -> Vec<String> {
        wait_for(
            &format!("{name}'s pod CIDRs from node IPAM"),
            Duration::from_secs(30),
            || {
                let (ok, out) =
                    kube.kubectl(&["get", "node", name, "-o", "jsonpath={.spec.podCIDRs}"]);
                let v: Vec<String> = serde_json::from_str(out.trim()).ok()?;
                (ok && v.len() == 2).then_some(v)
            },
        )
    };
    let a1_pods = pod_cidrs("a1");

    let a1 = start(&nodes[0], &c.dir.path, &token, "a1");
    // a2's kubelet has not registered its Node yet.
    let a2 = start(&nodes[1], &c.dir.path, &token, "a2");
    wait_for("a1 running", Duration::from_secs(30), || a1.status());
    assert!(a1.peer("10.1.0.12").is_none(), "no Node a2: not a peer yet");
    assert!(
        a2.status().is_none(),
        "a2 waits for its own Node and pod CIDR"
    );
    wait_for(
        "a2's /healthz while waiting",
        Duration::from_secs(10),
        || (http(&nodes[1], "/healthz") == 200).then_some(()),
    );
    assert_eq!(http(&nodes[1], "/readyz"), 503);

    // Node a2 registers; node IPAM gives it its pod CIDRs: a2 starts, a1 meshes with it,
    // routes go in both ways, both families over the one IPv4 session.
    kube.apply(&k8s_node("a2", A2, None));
    let a2_pods = pod_cidrs("a2");
    wait_for("a1-a2 Established", Duration::from_secs(30), || {
        established(&a1, "10.1.0.12")
    });
    for (n, prefix, via) in [
        (0, &a2_pods[0], "via 10.1.0.12"),
        (1, &a1_pods[0], "via 10.1.0.11"),
        (0, &a2_pods[1], "via fd00:1::12"),
        (1, &a1_pods[1], "via fd00:1::11"),
    ] {
        let family = if prefix.contains(':') { "-6" } else { "-4" };
        wait_for(
            &format!("route to {prefix}"),
            Duration::from_secs(10),
            || {
                nodes[n]
                    .exec(&["ip", family, "route", "show", prefix])
                    .contains(via)
                    .then_some(())
            },
        );
    }
    // A pod on each node through the CNI plugin, as the kubelet would add it: they reach
    // each other over IPv4 and IPv6.
    let ipam = c.dir.join("ipam");
    let mut pods = Vec::new();
    for (n, a) in nodes.iter().zip([&a1, &a2]) {
        let pod = Netns::new("kp");
        let (ok, v) = cni(n, &pod, "ADD", &a.state, &ipam, None);
        assert!(ok, "CNI ADD failed: {v}");
        let ips = pod_ips(&v);
        assert_eq!(ips.len(), 2, "one address per family: {v}");
        pods.push((pod, ips));
    }
    for (i, (from, _)) in pods.iter().enumerate() {
        let (_, to) = &pods[1 - i];
        for ip in to {
            wait_for(
                &format!("pod {i} pings {ip}"),
                Duration::from_secs(10),
                || ping(from, ip).then_some(()),
            );
        }
    }

    // A BGPPeer for an FRR ToR, with its password in a Secret of the agent's namespace.
    let frr = Daemon::frr(
        &c.tor_ns,
        "frr defaults traditional\nrouter bgp 65100\n bgp router-id 10.1.0.1\n no bgp ebgp-requires-policy\n neighbor RACK peer-group\n neighbor RACK remote-as 64512\n neighbor RACK password s3cr3t\n bgp listen range 10.1.0.0/24 peer-group RACK\n address-family ipv4 unicast\n  neighbor RACK activate\n exit-address-family\n",
    );
    // First with a Secret that does not match the ToR's password: the ToR's kernel drops the
    // agent's signed segments, so no session.
    let secret = |b64: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "tor-bgp", "namespace": NS}, "type": "Opaque",
               "data": {"password": b64}})
    };
    kube.apply(&secret("d3Iwbmc=")); // wr0ng
    kube.apply(&json!({"apiVersion": "twill.io/v1", "kind": "BGPPeer",
        "metadata": {"name": "tor-a"}, "spec": {
            "peerIP": "10.1.0.1", "asNumber": 65100,
            "nodeSelector": {"matchLabels": {"rack": "a"}},
            "password": {"secretKeyRef": {"name": "tor-bgp", "key": "password"}}}}));
    wait_for(
        "the ToR drops segments signed with the wrong key",
        Duration::from_secs(30),
        || (c.tor_ns.tcp_ext("TcpExtTCPMD5Failure") > 0).then_some(()),
    );
    assert!(established(&a1, "10.1.0.1").is_none());
    kube.apply(&secret("czNjcjN0")); // s3cr3t
    wait_for("a1-ToR Established", Duration::from_secs(30), || {
        established(&a1, "10.1.0.1")
    });
    wait_for("the password Secret read", Duration::from_secs(10), || {
        let pw = std::fs::read_to_string(a1.state.join("secrets/tor-a")).ok()?;
        (pw == "s3cr3t").then_some(())
    });
    // Rotated in the API and on the ToR: the file follows without a restart (Secrets are
    // watched), and the session comes back signed with the new key.
    let (up, _) = a1.transitions("10.1.0.1");
    frr.vtysh_config(&["router bgp 65100", "neighbor RACK password n3w"]);
    kube.apply(&secret("bjN3")); // n3w
    wait_for("the rotated password", Duration::from_secs(10), || {
        let pw = std::fs::read_to_string(a1.state.join("secrets/tor-a")).ok()?;
        (pw == "n3w").then_some(())
    });
    wait_for(
        "a1-ToR Established again with the new key",
        Duration::from_secs(30),
        || (a1.transitions("10.1.0.1").0 > up).then_some(()),
    );
    wait_for("a1-ToR Established", Duration::from_secs(30), || {
        established(&a1, "10.1.0.1")
    });
    // The ToR learns a1's pod CIDR again on the new session (its UPDATE follows the OPEN).
    wait_for(
        "the ToR learns a1's pods again",
        Duration::from_secs(10),
        || {
            let bgp = frr.vtysh("show bgp ipv4 unicast");
            bgp.contains(a1_pods[0].as_str()).then_some(())
        },
    );
    let (ok, out) = kube.kubectl(&["delete", "bgppeer", "tor-a"]);
    assert!(ok, "{out}");
    wait_for("the ToR peer removed", Duration::from_secs(10), || {
        a1.peer("10.1.0.1").is_none().then_some(())
    });

    // Through all of it the mesh session never flapped.
    assert!(established(&a1, "10.1.0.12").is_some());
    assert_eq!(
        a1.transitions("10.1.0.12"),
        (1, 0),
        "a1-a2 session flapped:\n{}",
        a1.log()
    );

    // Outgoing NAT follows the BGPConfiguration: on for both families by default, then IPv6
    // turned off with kubectl; the rules follow without a restart.
    let nat = |a: &Agent| -> Option<Vec<String>> {
        let s = a.status()?;
        Some(
            s["nat"]["families"]
                .as_array()?
                .iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect(),
        )
    };
    wait_for("NAT on for both families", Duration::from_secs(20), || {
        (nat(&a1)? == ["IPv4", "IPv6"]).then_some(())
    });
    let (ok, out) = kube.kubectl(&[
        "patch",
        "bgpconfiguration",
        "default",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"natOutgoing":{"ipv6":false}}}"#,
    ]);
    assert!(ok, "{out}");
    wait_for("NAT off for IPv6", Duration::from_secs(20), || {
        (nat(&a1)? == ["IPv4"]).then_some(())
    });
    let v6 = nodes[0].exec(&["ip6tables-nft-save", "-t", "nat"]);
    assert!(!v6.contains("TWILL"), "{v6}");
    assert!(nodes[0]
        .exec(&["iptables-nft-save", "-t", "nat"])
        .contains("-j TWILL-POSTROUTING"));

    // a2 is deleted: its session and its route go from a1 at once (a Node deleted is a peer
    // removed: its routes are flushed, not kept for a restart).
    let (ok, out) = kube.kubectl(&["delete", "node", "a2"]);
    assert!(ok, "{out}");
    wait_for("a2's route gone", Duration::from_secs(10), || {
        nodes[0]
            .exec(&["ip", "route", "show", &a2_pods[0]])
            .is_empty()
            .then_some(())
    });
    assert!(a1.peer("10.1.0.12").is_none());

    // Everything the agents did was within the manifest's RBAC, as the server judged it, and
    // they watched what they should, where they should.
    assert!(
        kube.denied(AGENT_USER).is_empty(),
        "denied: {:?}",
        kube.denied(AGENT_USER)
    );
    let uris = kube.uris(AGENT_USER, "watch");
    for want in [
        "/api/v1/nodes?",
        "/apis/twill.io/v1/bgppeers?",
        "/apis/twill.io/v1/bgpconfigurations?",
        &format!("/api/v1/namespaces/{NS}/secrets?"),
    ] {
        assert!(
            uris.iter().any(|u| u.starts_with(want)),
            "no watch of {want} in {uris:?}"
        );
    }
    assert!(
        !uris.iter().any(|u| u.starts_with("/api/v1/secrets")),
        "Secrets are read in the agent's namespace only"
    );
}

/// What the real server cannot be made to do on demand: every watch cut, then a resumed watch
/// answered 410 Gone (its event log compacted). The agents resume or relist, and the session
/// between them stays up throughout.
#[test]
fn cut_watches_and_410_gone_leave_the_session_up() {
    let c = cluster();
    let nodes = &c.nodes;
    let api = serve_in(&c.api_ns, "10.1.0.100:6443");
    let kubeconfig = c.dir.join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig(NS)).unwrap();
    api.apply(
        BGP_CONFIGURATIONS,
        json!({"metadata": {"name": "default"}, "spec": {
            "podNetwork": "10.244.0.0/16,fd00:244::/48",
            "timers": {"holdTime": 9, "keepaliveTime": 3, "connectRetryTime": 1}}}),
    );
    api.apply(NODES, node("a1", A1, Some(A1_PODS)));
    api.apply(NODES, node("a2", A2, Some(A2_PODS)));
    let a1 = start(&nodes[0], &c.dir.path, &kubeconfig, "a1");
    let _a2 = start(&nodes[1], &c.dir.path, &kubeconfig, "a2");
    wait_for("a1-a2 Established", Duration::from_secs(30), || {
        established(&a1, "10.1.0.12")
    });
    let lists_before = api
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/nodes?") && !r.contains("watch=true"))
        .count();
    api.cut_watches();
    api.apply(NODES, node("a1", A1, Some(A1_PODS)));
    api.compact();
    api.cut_watches();
    wait_for("a relist after 410 Gone", Duration::from_secs(30), || {
        (api.requests()
            .iter()
            .filter(|r| r.starts_with("GET /api/v1/nodes?") && !r.contains("watch=true"))
            .count()
            > lists_before)
            .then_some(())
    });
    assert!(api.expired() > 0, "no watch was answered 410 Gone");
    assert_eq!(a1.transitions("10.1.0.12"), (1, 0), "{}", a1.log());
    assert!(api.denied().is_empty(), "denied: {:?}", api.denied());
}
