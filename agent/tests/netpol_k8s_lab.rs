//! NetworkPolicy from a real kube-apiserver (v1.20.2, `scripts/kube.sh`): the manifest's RBAC
//! (the server's audit log shows no request of the agent refused, and the lists of
//! Namespaces, Pods and NetworkPolicies), pods added as a kubelet would (the Pod object, the
//! CNI ADD naming it — which returns only once its rules are in force —, then its status),
//! policies created, changed and deleted with kubectl, each followed by real connections; and
//! the 48 upstream e2e cases, every step put in force through the API.

mod common;

use common::netpol::{Servers, Tally};
use common::{cni_pod, serve_tcp, tcp_reach, Agent, Reach};
use policy::cases::{all_pods, model_pod, State};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twill_lab::kube::Kube;
use twill_lab::{wait_for, Netns, Switch, TempDir};

const NS: &str = "twill-system";
const AGENT_USER: &str = "system:serviceaccount:twill-system:twill";
const NODES: [(&str, &str, &str); 2] = [
    ("a1", "10.1.0.11", "fd00:1::11"),
    ("a2", "10.1.0.12", "fd00:1::12"),
];

fn node(name: &str, ip: &str, ip6: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"rack": "a"}},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "InternalIP", "address": ip6},
            {"type": "Hostname", "address": name}]}})
}

/// One TCP connection from inside `from` (1 s to answer).
fn reach(from: &Netns, to: &str, port: u16) -> Reach {
    let path = from.path();
    let to = std::net::SocketAddr::new(to.parse().unwrap(), port);
    std::thread::spawn(move || tcp_reach(&path, to, Duration::from_secs(1)))
        .join()
        .unwrap()
}

fn connects(from: &Netns, to: &str, port: u16) -> bool {
    reach(from, to, port) == Reach::Answered
}

/// Dropped (what a policy does), not refused (what a missing server does).
fn blocked(from: &Netns, to: &str, port: u16) -> bool {
    reach(from, to, port) == Reach::Silent
}

struct Pod {
    ns: Netns,
    ip: String,
    ip6: String,
    server: std::thread::JoinHandle<()>,
}

/// The lab: a switch with the control plane (10.1.0.100) and two dual-stack nodes whose agents
/// read the API with the manifest's ServiceAccount.
struct Cluster {
    _dir: TempDir,
    _sw: Switch,
    hosts: Vec<Netns>,
    kube: Kube,
    agents: Vec<Agent>,
    ipam: std::path::PathBuf,
    _api_ns: Netns,
}

fn cluster() -> Cluster {
    let dir = TempDir::new("npk");
    let sw = Switch::new("swn");
    let api_ns = Netns::new("api");
    sw.attach(&api_ns, &["10.1.0.100/24"], 1500);
    let hosts: Vec<Netns> = NODES
        .iter()
        .map(|(_, ip, ip6)| {
            let ns = Netns::new("n");
            sw.attach(&ns, &[&format!("{ip}/24"), &format!("{ip6}/64")], 1500);
            ns
        })
        .collect();
    let mut kube = Kube::start(&api_ns, "10.1.0.100");
    kube.install_twill();
    kube.apply(
        &json!({"apiVersion": "twill.io/v1", "kind": "BGPConfiguration",
        "metadata": {"name": "default"}, "spec": {"podNetwork": "10.244.0.0/16,fd00:244::/48",
        "timers": {"holdTime": 9, "keepaliveTime": 3, "connectRetryTime": 1}}}),
    );
    kube.start_controllers(&api_ns, "10.244.0.0/16,fd00:244::/48");
    let token = kube.service_account_kubeconfig(NS, "twill");
    for (name, ip, ip6) in NODES {
        kube.apply(&node(name, ip, ip6));
    }
    let agents: Vec<Agent> = hosts
        .iter()
        .zip(NODES)
        .map(|(h, (name, _, _))| {
            let args = [
                "--kubernetes".into(),
                "--kubeconfig".into(),
                token.as_os_str().to_owned(),
            ];
            Agent::start(h, &dir.path, name, &args, 60)
        })
        .collect();
    for a in &agents {
        wait_for("agent ready", Duration::from_secs(60), || {
            let s = a.status()?;
            (s["ready"] == true && s["policy"]["source"] == "kubernetes").then_some(())
        });
    }

    let ipam = dir.join("ipam");
    Cluster {
        _dir: dir,
        _sw: sw,
        hosts,
        kube,
        agents,
        ipam,
        _api_ns: api_ns,
    }
}

impl Cluster {
    /// A pod as a kubelet adds it: the Pod object, the CNI ADD naming it (it returns once the
    /// pod's rules are in force), the status with its addresses. Returns them (IPv4 first).
    fn attach(&self, pod: &Netns, obj: &Value, on: usize) -> Vec<String> {
        self.kube.apply(obj);
        let ns = obj["metadata"]["namespace"].as_str().unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap();
        let (ok, v) = cni_pod(
            &self.hosts[on],
            pod,
            "ADD",
            &self.agents[on].state,
            &self.ipam,
            ns,
            name,
        );
        assert!(ok, "CNI ADD {ns}/{name}: {v}");
        let ips = common::pod_ips(&v);
        assert_eq!(ips.len(), 2, "dual-stack: {v}");
        let listed: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        self.kube.patch_pod_status(
            ns,
            name,
            &json!({"phase": "Running", "podIP": ips[0], "podIPs": listed}),
        );
        ips
    }

    /// Within the manifest's RBAC, as the server judged it; listing what policy needs.
    fn rbac_held(&self) {
        assert!(
            self.kube.denied(AGENT_USER).is_empty(),
            "denied: {:?}",
            self.kube.denied(AGENT_USER)
        );
        let uris = self.kube.uris(AGENT_USER, "list");
        for want in [
            "/api/v1/namespaces?",
            "/api/v1/pods?",
            "/apis/networking.k8s.io/v1/networkpolicies?",
        ] {
            assert!(
                uris.iter().any(|u| u.starts_with(want)),
                "no list of {want} in {uris:?}"
            );
        }
    }
}

#[test]
fn policies_from_a_real_api_server_are_enforced_and_new_pods_start_protected() {
    let c = cluster();
    let (kube, agents) = (&c.kube, &c.agents);
    // Namespaces and pods as a cluster has them: x/web (app=web, port http 8080) on a1, x/db on
    // a2, y/client on a2.
    for (ns, team) in [("x", "a"), ("y", "b")] {
        kube.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": team}}}));
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Each pod serves 8080 from before its network exists, so a connection that is not
    // answered was dropped, not refused for want of a server.
    let add_pod = |ns: &str, name: &str, app: &str, on: usize| -> Pod {
        let pod = Netns::new("p");
        let server = serve_tcp(pod.path(), 8080, stop.clone());
        let ips = c.attach(
            &pod,
            &json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"nodeName": NODES[on].0, "containers": [{"name": "c", "image": "none",
                "ports": [{"name": "http", "containerPort": 8080}]}]}}),
            on,
        );
        Pod {
            ns: pod,
            ip: ips[0].clone(),
            ip6: ips[1].clone(),
            server,
        }
    };
    let web = add_pod("x", "web", "web", 0);
    let db = add_pod("x", "db", "db", 1);
    let client = add_pod("y", "client", "client", 1);
    wait_for(
        "y/client reaches x/web (no policy)",
        Duration::from_secs(20),
        || connects(&client.ns, &web.ip, 8080).then_some(()),
    );
    wait_for(
        "y/client reaches x/web over IPv6 (no policy)",
        Duration::from_secs(20),
        || connects(&client.ns, &web.ip6, 8080).then_some(()),
    );

    // Only team b may reach x's web pods, on the named port.
    let allow = |team: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "web", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}],
                         "ports": [{"port": "http"}]}]}})
    };
    kube.apply(&allow("b"));
    wait_for("x/db cut off from x/web", Duration::from_secs(20), || {
        blocked(&db.ns, &web.ip, 8080).then_some(())
    });
    assert!(connects(&client.ns, &web.ip, 8080), "team b is allowed");
    // IPv6 alike (ip6tables and inet6 sets).
    assert!(
        connects(&client.ns, &web.ip6, 8080),
        "team b is allowed over IPv6"
    );
    assert!(
        blocked(&db.ns, &web.ip6, 8080),
        "x/db is not, over IPv6 either"
    );
    // Changed in place: now team a only.
    kube.apply(&allow("a"));
    wait_for("the change in force", Duration::from_secs(20), || {
        (blocked(&client.ns, &web.ip, 8080) && connects(&db.ns, &web.ip, 8080)).then_some(())
    });
    // The API server itself refuses what it cannot hold, naming the field.
    let (ok, out) = kube.apply_result(&json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "bad", "namespace": "x"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}}]}]}}));
    assert!(!ok && out.contains("except"), "{out}");

    // x's web pods deny all ingress (selected by label); a new web pod is protected from its
    // very first packet: its CNI ADD returned only once the agent had the pod with its labels
    // and its rules were in force.
    kube.apply(
        &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}}}),
    );
    let (ok, _) = kube.kubectl(&["delete", "networkpolicy", "-n", "x", "web"]);
    assert!(ok);
    wait_for("x/web closed", Duration::from_secs(20), || {
        blocked(&db.ns, &web.ip, 8080).then_some(())
    });
    let fresh = add_pod("x", "fresh", "web", 0);
    assert!(
        blocked(&client.ns, &fresh.ip, 8080),
        "the new pod was reachable before its rules"
    );
    let status = agents[0].status().unwrap();
    assert_eq!(status["policy"]["error"], Value::Null, "{status}");
    assert!(
        status["policy"]["policies"].as_u64().unwrap() >= 1,
        "{status}"
    );
    // The policy deleted: open again.
    let (ok, _) = kube.kubectl(&["delete", "networkpolicy", "-n", "x", "deny"]);
    assert!(ok);
    wait_for("x open again", Duration::from_secs(20), || {
        connects(&client.ns, &fresh.ip, 8080).then_some(())
    });

    stop.store(true, Ordering::Relaxed);
    for p in [web, db, client, fresh] {
        p.server.join().unwrap();
    }
    c.rbac_held();
}

/// The upstream e2e cases (`policy/tests/e2e/cases.yaml`), every step put in force through the
/// real API server with kubectl — namespace and pod labels, policies created, replaced and
/// deleted — and each probe's 72 pairs tried with real connections between the nine model
/// pods on the two nodes.
#[test]
fn upstream_cases_through_a_real_api_server() {
    let c = cluster();
    let pods = all_pods();
    // The pods' namespaces exist first, each serving TCP and UDP on 80 and 81 before its
    // network does (so a silent probe was dropped, not unanswered).
    let netns: Vec<Netns> = pods.iter().map(|_| Netns::new("e")).collect();
    let names: BTreeMap<String, String> = pods
        .iter()
        .zip(&netns)
        .map(|(p, n)| (p.clone(), n.name.clone()))
        .collect();
    let _servers = Servers::start(&names.values().cloned().collect::<Vec<_>>());
    let first = State::default();
    let (ok, out) = c.kube.apply_text(&kube_objects(&first, &BTreeMap::new()).0);
    assert!(ok, "namespaces: {out}");
    let mut ips: BTreeMap<String, IpAddr> = BTreeMap::new();
    for (i, (p, ns)) in pods.iter().zip(&netns).enumerate() {
        let (namespace, name) = p.split_once('/').unwrap();
        let on = i % NODES.len();
        let mut obj = serde_json::to_value(model_pod(
            namespace,
            name,
            &first.pod_labels[p],
            NODES[on].0.to_string(),
            "0.0.0.0".parse().unwrap(),
        ))
        .unwrap();
        strip_for_apply(&mut obj);
        let got = c.attach(ns, &obj, on);
        ips.insert(p.clone(), got[0].parse().unwrap());
    }
    let ip = |p: &str| ips[p];
    let started = Instant::now();
    let mut in_force: BTreeMap<String, String> = BTreeMap::new();
    let mut step_no = 0;
    let tally = Tally::run(&names, &ip, |case, si, st| {
        step_no += 1;
        let (text, keep) = kube_objects(st, &ips);
        let (ok, out) = c.kube.apply_text(&text);
        assert!(ok, "{} step {si}: kubectl apply: {out}", case.name);
        for (key, ns) in std::mem::replace(&mut in_force, keep) {
            if !in_force.contains_key(&key) {
                let name = key.split_once('/').unwrap().1;
                let (ok, out) = c
                    .kube
                    .kubectl(&["delete", "networkpolicy", "-n", &ns, name]);
                assert!(ok, "delete {key}: {out}");
            }
        }
        // A write after every change of this step: once an agent's model holds it, it holds
        // them all (resourceVersions grow with every write).
        let (ok, rv) = c.kube.kubectl(&[
            "annotate",
            "namespace",
            "x",
            &format!("twill.io/test-step={step_no}"),
            "--overwrite",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ]);
        assert!(ok, "{rv}");
        let rv: u64 = rv.trim().parse().expect("a resourceVersion");
        for a in &c.agents {
            wait_for("the step in force", Duration::from_secs(30), || {
                let p = a.status()?["policy"].clone();
                (p["sourceVersion"].as_u64()? >= rv
                    && p["inForce"].as_u64()? >= p["sourceGeneration"].as_u64()?
                    && p["error"].is_null())
                .then_some(())
            });
        }
    });
    tally.report(
        "netpol e2e through kube-apiserver v1.20.2, 9 pods on 2 nodes",
        started.elapsed().as_secs_f64(),
    );
    c.rbac_held();
}

/// The objects of one step, for kubectl apply: the namespaces and pods with their labels now, every policy
/// in force (with `{{ip …}}` already filled in), and the policies it holds by `ns/name`.
fn kube_objects(st: &State, ips: &BTreeMap<String, IpAddr>) -> (String, BTreeMap<String, String>) {
    let mut docs: Vec<Value> = Vec::new();
    for (ns, labels) in &st.namespace_labels {
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}));
    }
    if !ips.is_empty() {
        for (i, (pod, labels)) in st.pod_labels.iter().enumerate() {
            let (ns, name) = pod.split_once('/').unwrap();
            let on = i % NODES.len();
            let mut obj = serde_json::to_value(model_pod(
                ns,
                name,
                labels,
                NODES[on].0.to_string(),
                ips[pod],
            ))
            .unwrap();
            strip_for_apply(&mut obj);
            docs.push(obj);
        }
    }
    let mut keep = BTreeMap::new();
    for (key, p) in &st.policies {
        let mut v = serde_json::to_value(p).unwrap();
        v["apiVersion"] = json!("networking.k8s.io/v1");
        v["kind"] = json!("NetworkPolicy");
        keep.insert(
            key.clone(),
            p.metadata.namespace.clone().unwrap_or_default(),
        );
        docs.push(v);
    }
    // JSON, as a List: kubectl reads YAML 1.1, where a namespace named `y` is `true`.
    let text = json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string();
    (text, keep)
}

/// What kubectl apply takes of a model pod: no status (the kubelet's), an image per container
/// (required by the API).
fn strip_for_apply(obj: &mut Value) {
    obj["apiVersion"] = json!("v1");
    obj["kind"] = json!("Pod");
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    for c in obj["spec"]["containers"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        c["image"] = json!("none");
    }
}
