//! Benchmark (not a test): ExaBGP announces 100,000 IPv4 prefixes to a Twill speaker and, in
//! the same run, to BIRD 2. Prints, side by side, the seconds from ExaBGP's start until every
//! prefix is in the Loc-RIB, and the peak RSS (VmHWM) of each daemon.
//!
//! Goal (issue 2): Twill's time no more than BIRD's, RSS no more than twice BIRD's.
//! Run: `cargo run --release -p twill-lab --bin bench-ingest` as root.

use speaker::{PeerConfig, Speaker, SpeakerConfig};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use twill_lab::{daemons::Daemon, wait_for, Link, Netns};

const TOTAL: usize = 100_000;

/// 65536 + 32768 + 1024 + 512 + 128 + 32 = 100,000 /24s.
const BLOCKS: &[&str] = &[
    "20.0.0.0/8",
    "21.0.0.0/9",
    "22.0.0.0/14",
    "22.4.0.0/15",
    "22.6.0.0/17",
    "22.6.128.0/19",
];

fn exabgp_conf(target: &str, local: &str, peer_as: u32) -> String {
    let routes: String = BLOCKS
        .iter()
        .map(|b| format!("    route {b} next-hop {local} split /24;\n"))
        .collect();
    format!(
        "neighbor {target} {{\n  router-id {local};\n  local-address {local};\n  local-as 65000;\n  peer-as {peer_as};\n  hold-time 180;\n  family {{ ipv4 unicast; }}\n  static {{\n{routes}  }}\n}}\n"
    )
}

fn vm_hwm_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Child mode: run one passive speaker in the current namespace and print the Loc-RIB size
/// each time it changes.
fn worker() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cfg = SpeakerConfig::new(64512, "10.0.1.2".parse().unwrap());
        let s = Speaker::start(cfg).await.expect("speaker");
        let mut p = PeerConfig::new("10.0.1.1".parse().unwrap(), 65000);
        p.passive = true;
        p.hold_time = 180;
        p.keepalive = 60;
        s.add_peer(p).expect("peer");
        let mut last = usize::MAX;
        loop {
            let n = s.loc_rib_len().await.expect("running");
            if n != last {
                println!("rib {n}");
                last = n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

struct Row {
    name: &'static str,
    seconds: f64,
    rss_kb: u64,
}

fn bench_twill() -> Row {
    let exa_ns = Netns::new("bx");
    let tw_ns = Netns::new("bt");
    Link::connect(&exa_ns, &["10.0.1.1/24"], &tw_ns, &["10.0.1.2/24"]);
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &tw_ns.name])
        .arg(exe)
        .arg("worker")
        .stdout(Stdio::piped())
        .spawn()
        .expect("worker");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(|l| l.ok()).as_deref(), Some("rib 0"));
    let start = Instant::now();
    let exa = Daemon::exabgp(&exa_ns, &exabgp_conf("10.0.1.2", "10.0.1.1", 64512));
    let mut seconds = None;
    for line in lines.map_while(Result::ok) {
        let n: usize = line.trim_start_matches("rib ").parse().unwrap_or(0);
        if n >= TOTAL {
            seconds = Some(start.elapsed().as_secs_f64());
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    let rss_kb = vm_hwm_kb(pid);
    let _ = child.kill();
    let _ = child.wait();
    drop(exa);
    Row {
        name: "Twill",
        seconds: seconds.unwrap_or_else(|| panic!("Twill did not reach {TOTAL} prefixes in 120 s")),
        rss_kb,
    }
}

fn bench_bird() -> Row {
    let exa_ns = Netns::new("bx");
    let b_ns = Netns::new("bb");
    Link::connect(&exa_ns, &["10.0.1.1/24"], &b_ns, &["10.0.1.2/24"]);
    let bird = Daemon::bird(
        &b_ns,
        "router id 10.0.1.2;\nprotocol device { }\nprotocol bgp exa {\n  local 10.0.1.2 as 64512; neighbor 10.0.1.1 as 65000; passive on;\n  hold time 180;\n  ipv4 { import all; export none; };\n}\n",
    );
    let start = Instant::now();
    let _exa = Daemon::exabgp(&exa_ns, &exabgp_conf("10.0.1.2", "10.0.1.1", 64512));
    let seconds = wait_for("BIRD has every prefix", Duration::from_secs(120), || {
        let out = bird.birdc("show route count");
        let n: usize = out
            .lines()
            .find(|l| l.contains("routes for"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (n >= TOTAL).then(|| start.elapsed().as_secs_f64())
    });
    Row {
        name: "BIRD 2",
        seconds,
        rss_kb: vm_hwm_kb(bird.pids()[0]),
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        worker();
        return;
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut rows: Vec<(Row, Row)> = Vec::new();
    for _ in 0..runs {
        rows.push((bench_twill(), bench_bird()));
    }
    println!("ExaBGP -> {TOTAL} IPv4 prefixes, seconds from ExaBGP start until all are in the Loc-RIB; peak RSS (VmHWM)");
    println!(
        "{:<5} {:>12} {:>12} {:>14} {:>14}",
        "run", "Twill s", "BIRD s", "Twill RSS MB", "BIRD RSS MB"
    );
    for (i, (t, b)) in rows.iter().enumerate() {
        println!(
            "{:<5} {:>12.2} {:>12.2} {:>14.1} {:>14.1}",
            i + 1,
            t.seconds,
            b.seconds,
            t.rss_kb as f64 / 1024.0,
            b.rss_kb as f64 / 1024.0
        );
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let ts = med(rows.iter().map(|r| r.0.seconds).collect());
    let bs = med(rows.iter().map(|r| r.1.seconds).collect());
    let tr = med(rows.iter().map(|r| r.0.rss_kb as f64 / 1024.0).collect());
    let br = med(rows.iter().map(|r| r.1.rss_kb as f64 / 1024.0).collect());
    println!(
        "{:<5} {:>12.2} {:>12.2} {:>14.1} {:>14.1}",
        "median", ts, bs, tr, br
    );
    println!(
        "time ratio Twill/BIRD {:.2} (goal <= 1.0); RSS ratio {:.2} (goal <= 2.0); names: {} vs {}",
        ts / bs,
        tr / br,
        rows[0].0.name,
        rows[0].1.name
    );
}
