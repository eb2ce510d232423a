//! Benchmark (not a test): the `rr-fabric` lab (twelve Twill nodes in three racks) as shipped,
//! with two route reflectors, and the same fabric as a full iBGP mesh, side by side: BGP
//! sessions per node, seconds from `twill lab up` start until every node routes every pod
//! CIDR, and paths received (prefixes in every Adj-RIB-In) summed over all nodes.
//!
//! Reference: the full mesh (Calico's default below ~100 nodes) on the same machine in the
//! same run. Run as root, after building the agent:
//! `cargo build --release -p agent && cargo run --release -p twill-lab --bin bench-reflection`
//! (`BENCH_RUNS`, default 3: the median is printed).

use std::path::{Path, PathBuf};
use std::process::Command;
use twill_lab::topology::{copy_with_view, rr_fabric_full_mesh};
use twill_lab::{unique, TempDir};

fn twill() -> PathBuf {
    // target/<profile>/bench-reflection → target/<profile>/twill
    let exe = std::env::current_exe().expect("current exe");
    let t = exe.with_file_name("twill");
    assert!(
        t.exists(),
        "{} is missing: cargo build --release -p agent first",
        t.display()
    );
    t
}

struct Run {
    converge_s: f64,
    sessions: Vec<usize>,
    paths_in: u64,
}

fn one(topology: &Path) -> Run {
    let state = TempDir::new("rrstate");
    let dir = state.path.display().to_string();
    let prefix = unique("rb");
    let up = Command::new(twill())
        .args(["lab", "up", "--dir", &dir, "--prefix", &prefix])
        .arg(topology)
        .output()
        .expect("twill lab up");
    let text = String::from_utf8_lossy(&up.stdout).into_owned();
    let down = || {
        let _ = Command::new(twill())
            .args(["lab", "down", "--dir", &dir])
            .output();
    };
    if !up.status.success() {
        down();
        panic!(
            "lab up failed:\n{text}{}",
            String::from_utf8_lossy(&up.stderr)
        );
    }
    let Some(converge_s) = text.lines().find_map(|l| {
        l.strip_prefix("converged:")
            .and_then(|r| r.split(" s after").next())
            .and_then(|r| r.split_whitespace().last())
            .and_then(|n| n.parse().ok())
    }) else {
        down();
        panic!("no `converged:` line in:\n{text}");
    };
    let mut sessions = Vec::new();
    let mut paths_in = 0;
    for rack in ["a", "b", "c"] {
        for k in 1..=4 {
            let sock = format!("{dir}/rr-fabric/{rack}{k}/twill.sock");
            let o = Command::new(twill())
                .args(["status", "--json", "--socket", &sock])
                .output()
                .expect("twill status");
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
            let peers = v["peers"].as_array().expect("peers");
            sessions.push(peers.len());
            paths_in += peers
                .iter()
                .map(|p| p["prefixesReceived"].as_u64().unwrap_or(0))
                .sum::<u64>();
        }
    }
    down();
    Run {
        converge_s,
        sessions,
        paths_in,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let reflectors = copy_with_view("rr-fabric", |v| v.to_string());
    let mesh = copy_with_view("rr-fabric", rr_fabric_full_mesh);
    println!("rr-fabric, 12 Twill nodes in 3 racks, {runs} runs each (median)");
    println!(
        "{:<22} {:>10} {:>10} {:>14} {:>16} {:>12}",
        "", "sessions", "per node", "per reflector", "paths received", "converge s"
    );
    for (name, dir) in [
        ("full mesh (reference)", &mesh),
        ("two reflectors", &reflectors),
    ] {
        let all: Vec<Run> = (0..runs)
            .map(|_| one(&dir.join("rr-fabric.clab.yml")))
            .collect();
        let r = &all[0];
        let total: usize = r.sessions.iter().sum::<usize>() / 2;
        let min = *r.sessions.iter().min().unwrap();
        let max = *r.sessions.iter().max().unwrap();
        println!(
            "{:<22} {:>10} {:>10} {:>14} {:>16} {:>12.2}",
            name,
            total,
            min,
            if max == min {
                "-".to_string()
            } else {
                max.to_string()
            },
            r.paths_in,
            median(all.iter().map(|r| r.converge_s).collect()),
        );
    }
}
