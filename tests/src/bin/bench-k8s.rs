//! Benchmark (not a test): the Kubernetes side at scale. A real kube-apiserver (v1.20, etcd)
//! holds `--nodes` Node objects as kubelets keep them (~5 KB each as stored); `--agents` view
//! watchers run in this process, each with its own client and watches, as that many agents
//! would. Printed:
//! - seconds from the watchers' start until every one has a view of every node;
//! - memory per agent (this process's RSS growth over the watchers' start, divided by their
//!   number), beside the size of one Node as served and as kept;
//! - seconds from a Node change (a label) until every watcher's view has it (five changes);
//! - Node status churn: a heartbeat from every node every 10 s for `--churn` seconds: views
//!   rebuilt (the goal is none), updates set aside, and the watchers' CPU, beside the
//!   reference in the same run: what rebuilding the view on every heartbeat would cost (the
//!   measured time of one build over the full Node objects, times the heartbeat rate).
//!
//! Run as root: `cargo run --release -p twill-lab --bin bench-k8s -- [--nodes 500]
//! [--agents 100] [--churn 30]` (the first run builds the API server: scripts/kube.sh).

use cluster::k8s::view::{build, Objects};
use cluster::k8s::watch::{self, Views, WatchOptions, WatchStats};
use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use twill_lab::kube::Kube;
use twill_lab::procfs;
use twill_lab::runtime::runtime_in;
use twill_lab::{kubelets, Netns, TempDir};

struct Args {
    nodes: usize,
    agents: usize,
    churn: u64,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 500,
        agents: 100,
        churn: 30,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for pair in v.chunks(2) {
        let n: u64 = pair
            .get(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--nodes" => a.nodes = n as usize,
            "--agents" => a.agents = n as usize,
            "--churn" => a.churn = n,
            o => panic!("unknown option {o}"),
        }
    }
    a
}

/// Run `f` on the runtime's worker (in its namespace), not on the calling thread.
fn on<F>(rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(f)).expect("task panicked")
}

/// CPU seconds of this process's threads named `name`.
fn cpu_of(name: &str) -> f64 {
    let mut seconds = 0.0;
    for t in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if stat[open + 1..close].starts_with(name) {
            seconds += procfs::cpu_seconds_of_stat(&stat);
        }
    }
    seconds
}

fn all_views(views: &[Views], ok: impl Fn(&cluster::ClusterView) -> bool) -> bool {
    views.iter().all(|v| v.borrow().as_deref().is_some_and(&ok))
}

fn totals(stats: &[Arc<WatchStats>]) -> (u64, u64) {
    stats.iter().fold((0, 0), |(b, i), s| {
        (
            b + s.views_built.load(Ordering::Relaxed),
            i + s.node_updates_ignored.load(Ordering::Relaxed),
        )
    })
}

fn main() {
    let a = args();
    let ns = Netns::new("bk");
    ns.exec(&["ip", "addr", "add", "10.77.0.1/32", "dev", "lo"]);
    let kube = Kube::start(&ns, "10.77.0.1");
    kube.install_twill();
    let secrets = TempDir::new("bk-secrets");
    let kubelets_rt = runtime_in(&ns, "kubelets", 1);
    let agents_rt = runtime_in(&ns, "agents", 1);
    let path = kube.admin.clone();
    let admin = on(&kubelets_rt, async move { kubelets::client(&path).await });

    let t = Instant::now();
    let (c, n) = (admin.clone(), a.nodes);
    on(&kubelets_rt, async move {
        kubelets::create_nodes(&c, n, 16).await
    });
    println!(
        "{} Nodes created in {:.1} s",
        a.nodes,
        t.elapsed().as_secs_f64()
    );

    // The size of one Node as the server sends it and as a watcher keeps it.
    let full: Node = serde_json::from_value(kubelets::node(0, "2026-12-05T00:00:00Z")).unwrap();
    let mut kept = full.clone();
    cluster::k8s::nodes::trim(&mut kept);
    let size = |n: &Node| serde_json::to_vec(n).unwrap().len();

    let rss0 = procfs::rss_kib(std::process::id());
    let t = Instant::now();
    let mut views = Vec::new();
    let mut stats = Vec::new();
    // The workload models are not read here; their watchers run as in an agent.
    let mut workloads = Vec::new();
    for k in 0..a.agents {
        let opts = WatchOptions {
            kubeconfig: Some(kube.agent.clone()),
            namespace: Some("twill-system".into()),
            secrets_dir: secrets.join(format!("a{k}")),
            default_pod_network: Some("10.128.0.0/9".into()),
        };
        let w = on(&agents_rt, watch::start(opts)).expect("watch");
        views.push(w.views);
        stats.push(w.stats);
        workloads.push(w.workloads);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while !all_views(&views, |v| v.nodes.len() == a.nodes) {
        assert!(Instant::now() < deadline, "views incomplete after 600 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cold = t.elapsed().as_secs_f64();
    // Let the allocator settle: the initial lists' buffers are freed by now.
    std::thread::sleep(Duration::from_secs(2));
    let per_agent =
        (procfs::rss_kib(std::process::id()).saturating_sub(rss0)) as f64 / a.agents as f64;

    let mut propagation = Vec::new();
    for k in 0..5 {
        let node = 7 + k * 13;
        let value = format!("r{k}");
        let t = Instant::now();
        let (c, v) = (admin.clone(), value.clone());
        on(&kubelets_rt, async move {
            kubelets::label(&c, node, "rack", &v).await
        });
        let name = format!("node-{node}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !all_views(&views, |v| {
            v.node(&name)
                .is_some_and(|n| n.labels.get("rack") == Some(&value))
        }) {
            assert!(Instant::now() < deadline, "label not propagated in 60 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        propagation.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    propagation.sort_by(f64::total_cmp);

    // Churn: every node's heartbeat every 10 s.
    let (built0, ignored0) = totals(&stats);
    let cpu0 = cpu_of("agents");
    let t = Instant::now();
    let rounds = (a.churn / 10).max(1) as u32;
    for beat in 0..rounds {
        let round = Instant::now();
        let (c, n) = (admin.clone(), a.nodes);
        on(&kubelets_rt, async move {
            kubelets::heartbeat(&c, n, beat, 16).await
        });
        if let Some(rest) = Duration::from_secs(10).checked_sub(round.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let expected = ignored0 + (a.agents * a.nodes) as u64 * rounds as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while totals(&stats).1 < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let churn_s = t.elapsed().as_secs_f64();
    let cpu = cpu_of("agents") - cpu0;
    let (built1, ignored1) = totals(&stats);

    // The reference: one view build over the Node objects as served (what each heartbeat
    // cost every agent before the filter), timed here.
    let nodes: Vec<Node> = (0..a.nodes)
        .map(|i| serde_json::from_value(kubelets::node(i, "2026-12-05T00:00:00Z")).unwrap())
        .collect();
    let passwords = BTreeMap::new();
    let builds = 20;
    let t = Instant::now();
    for _ in 0..builds {
        // The watcher cloned every Node out of the store before each build.
        let copy = nodes.clone();
        let b = build(&Objects {
            config: None,
            nodes: &copy,
            peers: &[],
            passwords: &passwords,
            default_pod_network: Some("10.128.0.0/9"),
        });
        assert!(b.view.is_some());
    }
    let build_ms = t.elapsed().as_secs_f64() * 1000.0 / builds as f64;
    let rate = a.nodes as f64 / 10.0;

    println!();
    println!(
        "Kubernetes side: {} Nodes, {} agents' watchers (real kube-apiserver v1.20.2)",
        a.nodes, a.agents
    );
    println!("  cold start, until every agent has every node     {cold:>8.2} s");
    println!(
        "  memory per agent (RSS growth / agents)           {:>8.0} KiB",
        per_agent
    );
    println!(
        "  one Node as served / as kept                     {:>8} B / {} B",
        size(&full),
        size(&kept)
    );
    println!(
        "  Node label change → every agent's view           {:>8.1} ms median, {:.1} ms max (5 changes)",
        propagation[2], propagation[4]
    );
    println!(
        "  heartbeats over {churn_s:.0} s: {} updates reached the agents",
        ignored1 - ignored0
    );
    println!(
        "                                        measured   reference (a rebuild per heartbeat)"
    );
    println!(
        "  views rebuilt                         {:>8}   {:>8}",
        built1 - built0,
        ignored1 - ignored0
    );
    println!(
        "  CPU per agent, % of a core            {:>7.2}%   {:>7.2}%  ({build_ms:.1} ms per build × {rate:.0} heartbeats/s)",
        cpu / churn_s / a.agents as f64 * 100.0,
        build_ms * rate / 10.0,
    );
    drop(workloads);
    drop(agents_rt);
    drop(kubelets_rt);
    drop(kube);
}
