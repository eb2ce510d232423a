//! Benchmark (not a test): how fast a receiver takes routes in. A replay sender
//! (`twill_lab::replay`) opens eBGP sessions and writes pre-encoded UPDATEs as fast as the
//! receiver's TCP window takes them; the same bytes go to a Twill speaker and, in the same
//! run, to BIRD 2. Printed side by side per scenario: seconds from the first UPDATE byte
//! until every prefix is in the Loc-RIB, and the receiver's peak RSS (VmHWM).
//!
//! Scenarios: 100,000 and 1,000,000 /24s from one peer; 10 peers × 100,000 (each peer its
//! own prefixes: bgperf2's many-peers case).
//! Goal (issue 16): Twill's time no more than BIRD's, RSS no more than twice BIRD's.
//! Run: `cargo run --release -p twill-lab --bin bench-ingest [-- 100k,1m,10x100k]` as root
//! (`BENCH_RUNS`, default 1: the median is printed).

use speaker::{ExportFilter, PeerConfig, Speaker, SpeakerConfig};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use twill_lab::procfs::peak_rss_kib;
use twill_lab::replay::{establish, feed, replay, Feed};
use twill_lab::runtime::runtime_in;
use twill_lab::{daemons::Daemon, Link, Netns};

const RECEIVER: &str = "10.0.1.2";
const SENDER_AS: u32 = 65000;

fn sender_addr(p: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, 10 + p as u8)
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    peers: usize,
    per_peer: usize,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "100k",
        peers: 1,
        per_peer: 100_000,
    },
    Scenario {
        name: "1m",
        peers: 1,
        per_peer: 1_000_000,
    },
    Scenario {
        name: "10x100k",
        peers: 10,
        per_peer: 100_000,
    },
];

/// Child mode `worker PEERS`: one passive Twill speaker for the senders, printing the Loc-RIB
/// size each time it changes.
fn worker(peers: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cfg = SpeakerConfig::new(64512, RECEIVER.parse().unwrap());
        let s = Speaker::start(cfg).await.expect("speaker");
        for p in 0..peers {
            let mut c = PeerConfig::new(sender_addr(p).into(), SENDER_AS);
            c.passive = true;
            c.hold_time = 180;
            c.keepalive = 60;
            // As BIRD's `export none`: the receiver only takes routes in.
            c.export = ExportFilter::Originated;
            s.add_peer(c).expect("peer");
        }
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

/// The senders' namespace and runtime, the feeds encoded before the clock starts.
struct Senders {
    ns: Netns,
    rt: tokio::runtime::Runtime,
    feeds: Vec<Feed>,
}

impl Senders {
    fn new(s: Scenario, receiver: &Netns) -> Senders {
        let ns = Netns::new("bx");
        let addrs: Vec<String> = (0..s.peers)
            .map(|p| format!("{}/24", sender_addr(p)))
            .collect();
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        Link::connect(&ns, &addrs, receiver, &[&format!("{RECEIVER}/24")]);
        let rt = runtime_in(&ns, "senders", 1);
        // Peer p announces 16.0.0.0/4's /24s from p × per_peer on.
        let feeds = (0..s.peers)
            .map(|p| {
                let first = Ipv4Addr::from(
                    u32::from(Ipv4Addr::new(16, 0, 0, 0)) + ((p * s.per_peer) as u32) * 256,
                );
                feed(first, s.per_peer, sender_addr(p), SENDER_AS)
            })
            .collect();
        Senders { ns, rt, feeds }
    }

    /// Establish every session, then start every replay at once; the instant the first byte
    /// of UPDATEs goes.
    fn start(&mut self) -> Instant {
        let feeds: Vec<Vec<u8>> = self.feeds.iter().map(|f| f.bytes.clone()).collect();
        let (tx, rx) = mpsc::channel();
        self.rt.spawn(async move {
            let remote = SocketAddr::new(RECEIVER.parse().unwrap(), 179);
            let mut streams = Vec::new();
            for p in 0..feeds.len() {
                streams.push(
                    establish(sender_addr(p), remote, SENDER_AS)
                        .await
                        .unwrap_or_else(|e| panic!("session {p}: {e}")),
                );
            }
            let _ = tx.send(Instant::now());
            for (s, f) in streams.into_iter().zip(feeds) {
                tokio::spawn(async move { replay(s, &f).await });
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("sessions established")
    }
}

struct Row {
    seconds: f64,
    rss_kb: u64,
}

fn bench_twill(s: Scenario) -> Row {
    let rx_ns = Netns::new("bt");
    let mut senders = Senders::new(s, &rx_ns);
    let exe = std::env::current_exe().expect("exe");
    let mut child: Child = Command::new("ip")
        .args(["netns", "exec", &rx_ns.name])
        .arg(exe)
        .args(["worker", &s.peers.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("worker");
    let pid = child.id();
    let (tx, lines) = mpsc::channel::<usize>();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx
                .send(l.trim_start_matches("rib ").parse().unwrap_or(0))
                .is_err()
            {
                return;
            }
        }
    });
    assert_eq!(lines.recv_timeout(Duration::from_secs(10)).ok(), Some(0));
    let start = senders.start();
    let total = s.peers * s.per_peer;
    let deadline = start + Duration::from_secs(300);
    let seconds = loop {
        match lines.recv_timeout(Duration::from_secs(1)) {
            Ok(n) if n >= total => break start.elapsed().as_secs_f64(),
            _ => assert!(
                Instant::now() < deadline,
                "Twill did not reach {total} prefixes"
            ),
        }
    };
    let rss_kb = peak_rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    drop(senders.rt);
    drop(senders.ns);
    Row { seconds, rss_kb }
}

fn bench_bird(s: Scenario) -> Row {
    let rx_ns = Netns::new("bb");
    let mut senders = Senders::new(s, &rx_ns);
    let mut conf = format!("router id {RECEIVER};\nprotocol device {{ }}\n");
    for p in 0..s.peers {
        conf += &format!(
            "protocol bgp s{p} {{\n  local {RECEIVER} as 64512; neighbor {} as {SENDER_AS}; passive on;\n  hold time 180;\n  ipv4 {{ import all; export none; }};\n}}\n",
            sender_addr(p)
        );
    }
    let bird = Daemon::bird(&rx_ns, &conf);
    let start = senders.start();
    let total = s.peers * s.per_peer;
    let deadline = start + Duration::from_secs(300);
    let seconds = loop {
        let out = bird.birdc("show route count");
        let n: usize = out
            .lines()
            .find(|l| l.contains("routes for"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if n >= total {
            break start.elapsed().as_secs_f64();
        }
        assert!(
            Instant::now() < deadline,
            "BIRD did not reach {total} prefixes"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let rss_kb = peak_rss_kib(bird.pids()[0]);
    drop(bird);
    drop(senders.rt);
    drop(senders.ns);
    Row { seconds, rss_kb }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        worker(args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1));
        return;
    }
    let chosen: Vec<Scenario> = match args.first() {
        Some(list) => list
            .split(',')
            .map(|n| {
                *SCENARIOS
                    .iter()
                    .find(|s| s.name == n)
                    .unwrap_or_else(|| panic!("unknown scenario {n} (100k, 1m, 10x100k)"))
            })
            .collect(),
        None => SCENARIOS.to_vec(),
    };
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut lines = Vec::new();
    for s in chosen {
        let mut rows = Vec::new();
        for _ in 0..runs {
            rows.push((bench_twill(s), bench_bird(s)));
        }
        let ts = med(rows.iter().map(|r| r.0.seconds).collect());
        let bs = med(rows.iter().map(|r| r.1.seconds).collect());
        let tr = med(rows.iter().map(|r| r.0.rss_kb as f64 / 1024.0).collect());
        let br = med(rows.iter().map(|r| r.1.rss_kb as f64 / 1024.0).collect());
        let line = format!(
            "{:<9} {:>9.2} {:>9.2} {:>7.2} {:>12.1} {:>12.1} {:>7.2}",
            s.name,
            ts,
            bs,
            ts / bs,
            tr,
            br,
            tr / br
        );
        eprintln!("{line}");
        lines.push(line);
    }
    println!("Replayed UPDATEs → all prefixes in the Loc-RIB (seconds from the first UPDATE byte); peak RSS (VmHWM), median of {runs} run(s)");
    println!(
        "{:<9} {:>9} {:>9} {:>7} {:>12} {:>12} {:>7}",
        "scenario", "Twill s", "BIRD s", "ratio", "Twill RSS MB", "BIRD RSS MB", "ratio"
    );
    for l in lines {
        println!("{l}");
    }
    println!("goal: time ratio <= 1.0, RSS ratio <= 2.0");
}
