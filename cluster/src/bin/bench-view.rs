//! Benchmark (not a test): validate cluster views of 1,000 to 5,000 nodes (the file's own
//! validation, `ClusterView::parse`) and, in the same run, the pairwise duplicate and overlap
//! check the view used before (every node against every earlier one) on the same nodes; print
//! both times and the ratio.
//!
//! Goal (issue 11): 5,000 nodes validate in well under a second, growing as n log n.
//! Run: `cargo run --release -p cluster --bin bench-view` (`BENCH_RUNS`, default 3).

use cluster::ClusterView;
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn yaml(n: usize) -> String {
    let mut y = String::from("podNetwork: 10.0.0.0/8\nnodes:\n");
    for i in 0..n {
        // Nodes in 10.128.0.0/9, pod CIDRs /24 in 10.0.0.0/9.
        y.push_str(&format!(
            "  - {{name: node-{i}, address: 10.{}.{}.{}, podCIDR: 10.{}.{}.0/24, labels: {{rack: r{}}}}}\n",
            128 + i / 65536,
            i / 256 % 256,
            i % 256,
            i / 256,
            i % 256,
            i % 40
        ));
    }
    y
}

/// The check as it was: each node against every earlier one (names, addresses, CIDRs).
fn pairwise(nodes: &[(String, IpAddr, IpNet)]) -> usize {
    let mut conflicts = 0;
    for (i, (name, addr, cidr)) in nodes.iter().enumerate() {
        for (other, oaddr, ocidr) in &nodes[..i] {
            if other == name
                || oaddr == addr
                || ocidr.contains(&cidr.network())
                || cidr.contains(&ocidr.network())
            {
                conflicts += 1;
            }
        }
    }
    conflicts
}

fn best(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().expect("runs")
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!("nodes   ClusterView::parse   pairwise check (before)   ratio");
    for n in [1_000, 2_000, 5_000] {
        let text = yaml(n);
        let mut view = None;
        let parse = best(runs, || {
            let t = Instant::now();
            view = Some(ClusterView::parse(&text).expect("valid view"));
            t.elapsed()
        });
        let view = view.expect("parsed");
        assert_eq!(view.nodes.len(), n);
        let nodes: Vec<(String, IpAddr, IpNet)> = view
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.address, n.pod_cidrs[0]))
            .collect();
        let pair = best(runs, || {
            let t = Instant::now();
            assert_eq!(std::hint::black_box(pairwise(&nodes)), 0);
            t.elapsed()
        });
        println!(
            "{n:>5}   {:>15.1} ms   {:>20.1} ms   {:>5.2}",
            parse.as_secs_f64() * 1e3,
            pair.as_secs_f64() * 1e3,
            pair.as_secs_f64() / parse.as_secs_f64()
        );
    }
    println!("(parse includes YAML reading and every other check; the pairwise column is only the part it replaced)");
}
