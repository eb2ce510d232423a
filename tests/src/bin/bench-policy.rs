//! Benchmark (not a test): NetworkPolicy at size. 1,000 policies over 5,000 pods in 100
//! namespaces, one node holding 100 of them (each namespace's `p-0`, so half the policies select a
//! pod there). Printed beside the goals, in one run:
//!
//! 1. The enforcer alone, in a namespace of its own (real iptables-restore and ipset): full
//!    compile + apply from nothing until in force, the rule / set / entry counts, one pod added
//!    until its rules are in force, one policy changed until in force (medians of `BENCH_RUNS`,
//!    default 5). Compile alone beside it.
//! 2. Pod-to-pod TCP throughput (iperf3, 5 s) in the `two-racks-vxlan` lab across the bridge
//!    (two pods on a1) and across VXLAN (b1 → a1), with no policy and then with the 1,000
//!    policies in force (the measured pods selected by ten policies each way, the allowing rule
//!    the last one).
//!
//! Run as root: `cargo build --release -p agent && cargo run --release -p twill-lab --bin
//! bench-policy` (needs iperf3).

use cluster::workloads::{build, file, Workloads};
use policy::enforcer::{Enforcer, EnforcerConfig};
use policy::{compile, Family, Tools};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use twill_lab::netns::enter;
use twill_lab::{unique, Netns, TempDir};

const NAMESPACES: usize = 100;
const PODS_PER_NS: usize = 50;
const POLICIES_PER_NS: usize = 10;

/// The synthetic cluster as Kubernetes YAML; `node0` holds each namespace's `p-0`.
fn synthetic(node0: &str) -> String {
    let mut out = String::new();
    for i in 0..NAMESPACES {
        let env = if i % 2 == 0 { "prod" } else { "dev" };
        out += &format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{i:03}, labels: {{team: t{}, env: {env}}}}}\n", i % 10);
        for j in 0..PODS_PER_NS {
            let k = i * PODS_PER_NS + j;
            let node = if j == 0 {
                node0.to_string()
            } else {
                format!("n{}", 1 + k % 49)
            };
            let tier = if j % 2 == 0 { "front" } else { "back" };
            out += &format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p-{j}, namespace: ns-{i:03}, labels: {{app: a{}, tier: {tier}}}}}\nspec: {{nodeName: {node}, containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}, {{name: metrics, containerPort: 9090}}]}}]}}\nstatus: {{phase: Running, podIPs: [{{ip: 10.{}.{}.{}}}]}}\n",
                (i + j) % 10,
                100 + k / 62500,
                (k / 250) % 250,
                k % 250 + 1
            );
        }
        for q in 0..POLICIES_PER_NS {
            let selector = if q < 5 {
                format!("{{matchLabels: {{app: a{q}}}}}")
            } else {
                format!("{{matchExpressions: [{{key: tier, operator: In, values: [front]}}, {{key: app, operator: NotIn, values: [a{q}]}}]}}")
            };
            let mut spec = format!(
                "  podSelector: {selector}\n  ingress:\n    - from: [{{namespaceSelector: {{matchLabels: {{team: t{}}}}}, podSelector: {{matchLabels: {{tier: front}}}}}}, {{podSelector: {{matchLabels: {{app: a{}}}}}}}]\n      ports: [{{port: http}}, {{port: {}, protocol: TCP}}]\n",
                (i + q) % 10,
                (q + 1) % 10,
                9000 + q
            );
            if q % 3 == 0 {
                spec += &format!("  egress:\n    - to: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [10.{q}.0.0/16]}}}}]\n      ports: [{{port: 53, protocol: UDP}}, {{port: 5000, endPort: 5100}}]\n");
            }
            out += &format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: q-{q}, namespace: ns-{i:03}}}\nspec:\n{spec}");
        }
    }
    out
}

fn model(text: &str) -> Workloads {
    let objects = file::parse(text).expect("synthetic objects parse");
    let built = build(&objects.objects(), None);
    assert!(built.problems.is_empty(), "{:?}", built.problems.first());
    built.workloads
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
}

/// Milliseconds from handing `w` over until it is in force.
fn timed(rt: &tokio::runtime::Runtime, e: &Enforcer, w: Workloads, generation: u64) -> f64 {
    let t = Instant::now();
    e.apply(Arc::new(w), generation);
    let s = rt
        .block_on(e.wait_for(generation, Duration::from_secs(60)))
        .expect("in force within 60 s");
    assert_eq!(s.error, None, "{:?}", s.error);
    t.elapsed().as_secs_f64() * 1e3
}

struct RuleFigures {
    compile_ms: f64,
    full_ms: f64,
    pod_add_ms: f64,
    policy_change_ms: f64,
    rules: usize,
    sets: usize,
    entries: usize,
    local_policies: usize,
}

/// Part 1, on a thread that has entered a namespace of its own (so do the runtime's threads
/// and the commands they run).
fn rules(w: &Workloads) -> RuleFigures {
    let mut compile_ms = Vec::new();
    let mut counts = (0, 0, 0);
    for _ in 0..runs() {
        let t = Instant::now();
        let rs = compile(w, "node0", Family::V4);
        compile_ms.push(t.elapsed().as_secs_f64() * 1e3);
        counts = (rs.rule_count(), rs.sets.len(), rs.set_entries());
    }
    let mut with_pod = w.clone();
    let mut pod = w.pod("ns-000", "p-0").expect("p-0").clone();
    pod.name = "p-new".into();
    pod.ips = vec!["10.99.0.1".parse().unwrap()];
    with_pod.pods.push(pod);
    with_pod
        .pods
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut changed = w.clone();
    let i = changed
        .policies
        .iter()
        .position(|p| p.namespace == "ns-000" && p.name == "q-5")
        .expect("q-5");
    changed.policies[i].ingress[0].ports.pop();

    let (mut full, mut add, mut change) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..runs() {
        let ns = Netns::new("bp");
        let ns_path = ns.path();
        let (w, with_pod, changed) = (w.clone(), with_pod.clone(), changed.clone());
        let r = std::thread::spawn(move || {
            enter(&ns_path).expect("setns");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let _g = rt.enter();
            let e = Enforcer::start(EnforcerConfig {
                node: "node0".into(),
                families: vec![Family::V4],
                resync: Duration::from_secs(3600),
                tools: Tools::default(),
                backend: None,
                bridge_sysctl_dir: None,
                // NetworkPolicy alone, as measured before outgoing NAT existed.
                nat: Default::default(),
            });
            let full = timed(&rt, &e, w.clone(), 1);
            let status = e.status();
            let add = timed(&rt, &e, with_pod, 2);
            timed(&rt, &e, w, 3);
            let change = timed(&rt, &e, changed, 4);
            (full, add, change, status)
        })
        .join()
        .expect("bench thread");
        full.push(r.0);
        add.push(r.1);
        change.push(r.2);
        last = Some(r.3);
        drop(ns);
    }
    let s = last.expect("runs");
    RuleFigures {
        compile_ms: median(compile_ms),
        full_ms: median(full),
        pod_add_ms: median(add),
        policy_change_ms: median(change),
        rules: counts.0,
        sets: counts.1,
        entries: counts.2,
        local_policies: s.policies,
    }
}

fn twill() -> PathBuf {
    let t = std::env::current_exe()
        .expect("exe")
        .with_file_name("twill");
    assert!(
        t.exists(),
        "{} is missing: cargo build --release -p agent first",
        t.display()
    );
    t
}

/// The iperf pods: bench/server and bench/near on a1, bench/far on b1.
const IPERF_PODS: &str = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: server, namespace: bench, labels: {app: server, tier: front}}\nspec: {nodeName: a1, containers: [{name: c, ports: [{name: iperf, containerPort: 5201}]}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: near, namespace: bench, labels: {app: client}}\nspec: {nodeName: a1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: far, namespace: bench, labels: {app: client}}\nspec: {nodeName: b1}\n";

/// Ten policies each way on the measured pods; only the last rule of the last one allows.
fn iperf_policies() -> String {
    let mut out = String::new();
    for q in 0..10 {
        let (from, to) = if q == 9 {
            (
                "{podSelector: {matchLabels: {app: client}}}",
                "{podSelector: {matchLabels: {app: server}}}",
            )
        } else {
            (
                "{podSelector: {matchLabels: {app: nobody}}}",
                "{podSelector: {matchLabels: {app: nobody}}}",
            )
        };
        out += &format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: in-{q}, namespace: bench}}\nspec: {{podSelector: {{matchLabels: {{app: server}}}}, ingress: [{{from: [{from}], ports: [{{port: iperf}}]}}]}}\n");
        out += &format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: out-{q}, namespace: bench}}\nspec: {{podSelector: {{matchLabels: {{app: client}}}}, policyTypes: [Egress], egress: [{{to: [{to}], ports: [{{port: 5201}}]}}]}}\n");
    }
    out
}

/// Gbit/s of one 5-second iperf3 TCP run from `client` (a pod namespace) to `server`.
fn iperf(client: &str, server: &str) -> f64 {
    let o = Command::new("ip")
        .args([
            "netns", "exec", client, "iperf3", "-c", server, "-t", "5", "-J",
        ])
        .output()
        .expect("iperf3");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| {
            panic!(
                "iperf3 {client} → {server}: {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
        / 1e9
}

struct Throughput {
    bridge: [f64; 2],
    vxlan: [f64; 2],
}

/// Part 2: the lab, the iperf pods, the 1,000 policies added through the lab's workloads file.
fn throughput(synthetic_on_a1: &str) -> Throughput {
    let state = TempDir::new("bpl");
    let dir = state.path.display().to_string();
    let prefix = unique("bp");
    let pods = state.join("iperf.yaml");
    std::fs::write(&pods, IPERF_PODS).unwrap();
    let down = || {
        let _ = Command::new(twill())
            .args(["lab", "down", "--dir", &dir])
            .output();
    };
    let up = Command::new(twill())
        .args([
            "lab",
            "up",
            "two-racks-vxlan",
            "--dir",
            &dir,
            "--prefix",
            &prefix,
            "--workloads",
        ])
        .arg(&pods)
        .output()
        .expect("twill lab up");
    let text = String::from_utf8_lossy(&up.stdout).into_owned();
    let result = std::panic::catch_unwind(|| {
        assert!(
            up.status.success(),
            "lab up: {text}{}",
            String::from_utf8_lossy(&up.stderr)
        );
        let ip = |pod: &str| {
            text.lines()
                .find_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    (w.len() == 5 && w[0] == "pod" && w[1] == pod).then(|| w[2].to_string())
                })
                .unwrap_or_else(|| panic!("no {pod} in {text}"))
        };
        let ns = |node: &str, pod: &str| format!("{prefix}-two-racks-vxlan-{node}-bench-{pod}");
        let server = ns("a1", "server");
        let mut daemon = Command::new("ip")
            .args(["netns", "exec", &server, "iperf3", "-s"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("iperf3 -s");
        let sip = ip("bench/server");
        std::thread::sleep(Duration::from_millis(300)); // iperf3 -s binding; no readiness signal
        let none = [
            iperf(&ns("a1", "near"), &sip),
            iperf(&ns("b1", "far"), &sip),
        ];
        // The 1,000 policies and 5,000 pods (100 of them on a1) join the lab's own objects,
        // written where the agents read them (`lab apply` would try to create the pods).
        let file = state.path.join("two-racks-vxlan").join("workloads.yaml");
        let mut all = std::fs::read_to_string(&file).unwrap();
        all += synthetic_on_a1;
        all += &iperf_policies();
        std::fs::write(&file, &all).unwrap();
        // The hash the agents report for their workloads file (`policy.fileHash`).
        let hash = cluster::hash::fnv_hex(all.as_bytes());
        for node in ["a1", "a2", "b1", "b2"] {
            let ns = format!("{prefix}-two-racks-vxlan-{node}");
            // Only the processes of the lab's own node namespace (the agent).
            let pids = Command::new("ip")
                .args(["netns", "pids", &ns])
                .output()
                .expect("ip netns pids");
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-HUP", pid]).status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for node in ["a1", "a2", "b1", "b2"] {
            let sock = format!("{dir}/two-racks-vxlan/{node}/twill.sock");
            loop {
                let o = Command::new(twill())
                    .args(["status", "--json", "--socket", &sock])
                    .output()
                    .expect("status");
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                let p = &v["policy"];
                if p["fileHash"] == hash.as_str()
                    && p["error"].is_null()
                    && p["inForce"].as_u64() >= p["wanted"].as_u64()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{node}: the policies not in force: {p}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let with = [
            iperf(&ns("a1", "near"), &sip),
            iperf(&ns("b1", "far"), &sip),
        ];
        let _ = daemon.kill();
        let _ = daemon.wait();
        Throughput {
            bridge: [none[0], with[0]],
            vxlan: [none[1], with[1]],
        }
    });
    down();
    result.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn main() {
    let text = synthetic("node0");
    let w = model(&text);
    println!(
        "NetworkPolicy at size: {} policies, {} pods, {} namespaces; node0 holds {} pods",
        w.policies.len(),
        w.pods.len(),
        w.namespaces.len(),
        w.pods
            .iter()
            .filter(|p| p.node.as_deref() == Some("node0"))
            .count()
    );
    let r = rules(&w);
    println!(
        "\n{:<44} {:>12} {:>12}",
        "enforcer (real iptables + ipset)", "measured", "goal"
    );
    println!(
        "{:<44} {:>9.1} ms {:>12}",
        "compile only (node0, IPv4)", r.compile_ms, ""
    );
    println!(
        "{:<44} {:>9.1} ms {:>9} ms",
        "full compile + apply, until in force", r.full_ms, "< 1000"
    );
    println!(
        "{:<44} {:>9.1} ms {:>9} ms",
        "one pod added, until its rules are in force", r.pod_add_ms, "< 50"
    );
    println!(
        "{:<44} {:>9.1} ms {:>12}",
        "one policy changed, until in force", r.policy_change_ms, ""
    );
    println!(
        "policies selecting a pod here {}, rules {}, sets {}, set entries {}",
        r.local_policies, r.rules, r.sets, r.entries
    );
    let t = throughput(&synthetic("a1"));
    println!(
        "\n{:<30} {:>12} {:>14} {:>8} {:>8}",
        "iperf3 TCP, 5 s", "no policy", "1,000 policies", "ratio", "goal"
    );
    for (what, [none, with]) in [
        ("across the bridge (a1 → a1)", t.bridge),
        ("across VXLAN (b1 → a1)", t.vxlan),
    ] {
        println!(
            "{what:<30} {none:>7.2} Gb/s {with:>9.2} Gb/s {:>7.1}% {:>8}",
            100.0 * with / none,
            ">= 95%"
        );
    }
}
