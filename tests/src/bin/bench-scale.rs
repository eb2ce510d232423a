//! Benchmark (not a test): N Twill nodes on this one machine, as a full mesh, with two Twill
//! route reflectors, and — the reference, in the same run — with two BIRD reflectors and the
//! same Twill clients.
//!
//! Each node is a real speaker (its own address, listener, sessions, Adj-RIBs, decision and
//! Loc-RIB) without a kernel side: the nodes run many to a process (this one), in one network
//! namespace, each on its own address of a bridge; each reflector is in a namespace of its
//! own, linked into that bridge. The reflectors, and one extra node started and
//! killed during the run, are processes of their own, so their RSS and CPU are their own.
//!
//! Printed per N and per layout:
//! - seconds from the clients' start until every node has every node's pod CIDR;
//! - seconds from a new node's process start until its CIDR is in every other Loc-RIB (goal
//!   < 1 s at 500);
//! - seconds from that node's process being killed (SIGKILL: its kernel closes the TCP
//!   connections) until no node has its route (graceful restart off; with it on, peers keep
//!   the route for the restart time on purpose; a host that vanishes without closing its
//!   connections is noticed when the hold timer expires);
//! - sessions per reflector; peak RSS and CPU seconds of a reflector and of the extra node
//!   (one client).
//!
//! Run as root: `cargo run --release -p twill-lab --bin bench-scale -- [--nodes 100,250,500]
//! [--mesh-up-to 100] [--layouts mesh,twill,bird]`.

use speaker::{ExportFilter, PeerConfig, Speaker, SpeakerConfig};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use twill_lab::procfs;
use twill_lab::runtime::runtime_in;
use twill_lab::{Netns, TempDir};

const ASN: u32 = 64512;
const CLUSTER_ID: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 1);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    Mesh,
    TwillReflectors,
    BirdReflectors,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Mesh => "full mesh",
            Layout::TwillReflectors => "2 Twill reflectors",
            Layout::BirdReflectors => "2 BIRD reflectors (reference)",
        }
    }
    /// As `--layouts` names it.
    fn arg_name(self) -> String {
        match self {
            Layout::Mesh => "mesh",
            Layout::TwillReflectors => "twill",
            Layout::BirdReflectors => "bird",
        }
        .to_string()
    }
    fn arg(self) -> &'static str {
        match self {
            Layout::Mesh => "mesh",
            Layout::TwillReflectors | Layout::BirdReflectors => "rr",
        }
    }
}

/// Node `i`'s address (10.200.0.1 …) and pod CIDR (10.(i / 256).(i % 256).0/24).
fn node_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn node_cidr(i: usize) -> ipnet::IpNet {
    format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()
}

fn reflector_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 255, k as u8 + 1)
}

fn peer(addr: Ipv4Addr, local: Ipv4Addr, passive: bool) -> PeerConfig {
    let mut p = PeerConfig::new(IpAddr::V4(addr), ASN);
    p.local_address = Some(IpAddr::V4(local));
    p.passive = passive;
    p.connect_retry = Duration::from_secs(1);
    p
}

/// Node `i` of `n` (the extra node is `n`): its speaker and its peers.
fn node(i: usize, n: usize, layout: &str) -> (SpeakerConfig, Vec<PeerConfig>) {
    let me = node_addr(i);
    let mut cfg = SpeakerConfig::new(ASN, me);
    cfg.listen_address = IpAddr::V4(me);
    cfg.originate = vec![node_cidr(i)];
    cfg.graceful_restart = None;
    let peers = if layout == "mesh" {
        // The lower address dials, the higher waits: no connection collisions. A node that
        // joins (`n`) dials everyone, as a node that boots would find the others listening.
        (0..=n)
            .filter(|j| *j != i)
            .map(|j| {
                let passive = if i == n { false } else { j == n || j < i };
                let mut p = peer(node_addr(j), me, passive);
                p.export = ExportFilter::Originated;
                p
            })
            .collect()
    } else {
        (0..2)
            .map(|k| {
                let mut p = peer(reflector_addr(k), me, false);
                p.export = ExportFilter::Originated;
                p
            })
            .collect()
    };
    (cfg, peers)
}

/// Twill reflector `k` for nodes `0..=n`.
fn reflector(k: usize, n: usize) -> (SpeakerConfig, Vec<PeerConfig>) {
    let me = reflector_addr(k);
    let mut cfg = SpeakerConfig::new(ASN, me);
    cfg.listen_address = IpAddr::V4(me);
    cfg.cluster_id = Some(CLUSTER_ID);
    cfg.graceful_restart = None;
    let mut peers: Vec<PeerConfig> = (0..=n)
        .map(|i| {
            let mut p = peer(node_addr(i), me, true);
            p.reflector_client = true;
            p.export = ExportFilter::OriginatedAndReflected;
            p
        })
        .collect();
    let mut other = peer(reflector_addr(1 - k), me, k == 1);
    other.export = ExportFilter::OriginatedAndReflected;
    peers.push(other);
    (cfg, peers)
}

fn bird_conf(k: usize, n: usize) -> String {
    let me = reflector_addr(k);
    let mut s = format!(
        "router id {me};\nprotocol device {{ scan time 60; }}\n\
         template bgp clients {{\n  local {me} as {ASN}; direct;\n  rr client; rr cluster id {CLUSTER_ID};\n  \
         hold time 90; keepalive time 30; connect delay time 1;\n  \
         ipv4 {{ gateway direct; import all; export all; }};\n}}\n"
    );
    for i in 0..=n {
        s += &format!(
            "protocol bgp n{i} from clients {{ neighbor {} as {ASN}; passive on; }}\n",
            node_addr(i)
        );
    }
    s += &format!(
        "protocol bgp other_reflector from clients {{ neighbor {} as {ASN}; rr client off; }}\n",
        reflector_addr(1 - k)
    );
    s
}

/// Child modes: `node I N LAYOUT` and `reflector K N` run one speaker until killed, printing
/// `ready` once it listens.
fn child(args: &[String]) {
    let n: usize = args[2].parse().unwrap();
    let (cfg, peers) = match args[0].as_str() {
        "node" => node(args[1].parse().unwrap(), n, &args[3]),
        _ => reflector(args[1].parse().unwrap(), n),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = Speaker::start(cfg).await.expect("speaker");
        for p in peers {
            s.add_peer(p).expect("peer");
        }
        println!("ready");
        std::io::stdout().flush().unwrap();
        std::future::pending::<()>().await;
    });
}

fn raise_nofile() {
    let lim = libc::rlimit {
        rlim_cur: 1 << 20,
        rlim_max: 1 << 20,
    };
    // SAFETY: setrlimit reads the struct passed by pointer and nothing else.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
}

/// Peak RSS (KiB) and CPU seconds of a process.
fn usage(pid: u32) -> (u64, f64) {
    (procfs::peak_rss_kib(pid), procfs::cpu_seconds(pid))
}

struct Proc {
    child: Child,
}

impl Proc {
    /// This binary in a child mode inside `ns`, waited for until it prints `ready`.
    fn start(ns: &Netns, args: &[String]) -> Proc {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(exe)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("child");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("child output");
        assert_eq!(line.trim(), "ready", "child {args:?}");
        Proc { child }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bird(ns: &Netns, dir: &TempDir, k: usize, n: usize) -> Proc {
    let conf = dir.join(format!("bird{k}.conf"));
    std::fs::write(&conf, bird_conf(k, n)).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "bird", "-f", "-c"])
        .arg(&conf)
        .arg("-s")
        .arg(dir.join(format!("bird{k}.ctl")))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("bird{k}.log"))).unwrap())
        .spawn()
        .expect("bird");
    let mut p = Proc { child };
    let ctl = dir.join(format!("bird{k}.ctl"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let up = Command::new("birdc")
            .arg("-s")
            .arg(&ctl)
            .arg("show status")
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
        // Every client's protocol past its start-up, waiting for the client to connect (a
        // connection BIRD refused would make the client back off).
        let waiting = up
            && Command::new("birdc")
                .arg("-s")
                .arg(&ctl)
                .arg("show protocols")
                .output()
                .is_ok_and(|o| {
                    let t = String::from_utf8_lossy(&o.stdout);
                    t.lines()
                        .filter(|l| l.contains(" BGP "))
                        .all(|l| !l.contains("Idle"))
                });
        if waiting {
            return p;
        }
        let log = std::fs::read_to_string(dir.join(format!("bird{k}.log"))).unwrap_or_default()
            + &Command::new("birdc")
                .arg("-s")
                .arg(&ctl)
                .arg("show protocols")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
        assert!(
            p.child.try_wait().unwrap().is_none() && Instant::now() < deadline,
            "BIRD {k} did not start: {log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Row {
    n: usize,
    layout: Layout,
    converge: f64,
    join: f64,
    leave: f64,
    sessions_per_reflector: usize,
    reflector: (u64, f64),
    client: (u64, f64),
}

/// Every node's Loc-RIB size.
async fn rib_sizes(speakers: &[Speaker]) -> Vec<usize> {
    let mut out = Vec::with_capacity(speakers.len());
    for s in speakers {
        out.push(s.loc_rib_len().await.unwrap_or(0));
    }
    out
}

fn wait_all(
    rt: &tokio::runtime::Runtime,
    speakers: &[Speaker],
    what: &str,
    timeout: Duration,
    ok: impl Fn(usize) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let sizes = rt.block_on(rib_sizes(speakers));
        if sizes.iter().all(|s| ok(*s)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached in {timeout:?}; sizes {:?}",
            &sizes[..sizes.len().min(20)]
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run(n: usize, layout: Layout) -> Row {
    // The nodes in one namespace on a bridge, each reflector in a namespace of its own
    // behind a veth pair into that bridge: BIRD takes no neighbour whose address is its own
    // host's, and the two reflectors peer with each other.
    let ns = Netns::new("bs");
    let dir = TempDir::new("bs");
    let mut batch = String::from("link add name bsbr type bridge\nlink set bsbr up\n");
    for i in 0..=n {
        batch += &format!("addr add {}/16 dev bsbr\n", node_addr(i));
    }
    std::fs::write(dir.join("nodes.batch"), batch).unwrap();
    ns.exec(&[
        "ip",
        "-batch",
        &dir.join("nodes.batch").display().to_string(),
    ]);
    let rns: Vec<Netns> = (0..2)
        .map(|k| {
            let r = Netns::new("bsr");
            let (a, b) = (format!("bsr{k}a"), format!("bsr{k}b"));
            ns.exec(&[
                "ip", "link", "add", "name", &a, "type", "veth", "peer", "name", &b,
            ]);
            ns.exec(&["ip", "link", "set", &a, "master", "bsbr", "up"]);
            ns.exec(&["ip", "link", "set", &b, "netns", &r.name]);
            r.exec(&["ip", "link", "set", &b, "up"]);
            r.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{}/16", reflector_addr(k)),
                "dev",
                &b,
            ]);
            r
        })
        .collect();

    let reflectors: Vec<Proc> = match layout {
        Layout::Mesh => Vec::new(),
        Layout::TwillReflectors => (0..2)
            .map(|k| Proc::start(&rns[k], &["reflector".into(), k.to_string(), n.to_string()]))
            .collect(),
        Layout::BirdReflectors => (0..2).map(|k| bird(&rns[k], &dir, k, n)).collect(),
    };

    let rt = runtime_in(&ns, "nodes", 2);
    let t = Instant::now();
    // Every listener first, then every peer: a node dialling one whose listener is not bound
    // yet is refused and backs off (1, 2, 4 … 32 s), which would measure the start order.
    let speakers: Vec<Speaker> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..n {
            let (cfg, _) = node(i, n, layout.arg());
            v.push(
                tokio::spawn(Speaker::start(cfg))
                    .await
                    .unwrap()
                    .expect("speaker"),
            );
        }
        for (i, s) in v.iter().enumerate() {
            for p in node(i, n, layout.arg()).1 {
                s.add_peer(p).expect("peer");
            }
        }
        v
    });
    wait_all(
        &rt,
        &speakers,
        "every node has every CIDR",
        Duration::from_secs(600),
        |s| s == n,
    );
    let converge = t.elapsed().as_secs_f64();

    // A new node, a process of its own.
    let t = Instant::now();
    let extra = Proc::start(
        &ns,
        &[
            "node".into(),
            n.to_string(),
            n.to_string(),
            layout.arg().into(),
        ],
    );
    wait_all(
        &rt,
        &speakers,
        "the new node's CIDR everywhere",
        Duration::from_secs(120),
        |s| s == n + 1,
    );
    let join = t.elapsed().as_secs_f64();
    // Settle, then read the one client's figures before it dies.
    std::thread::sleep(Duration::from_secs(1));
    let client = usage(extra.pid());
    let t = Instant::now();
    drop(extra);
    wait_all(
        &rt,
        &speakers,
        "the dead node's CIDR gone",
        Duration::from_secs(300),
        |s| s == n,
    );
    let leave = t.elapsed().as_secs_f64();
    let reflector = reflectors
        .first()
        .map(|r| usage(r.pid()))
        .unwrap_or((0, 0.0));
    if let Some(r) = reflectors.first() {
        eprintln!(
            "reflector at the end: {} KiB resident",
            procfs::rss_kib(r.pid())
        );
    }
    let row = Row {
        n,
        layout,
        converge,
        join,
        leave,
        sessions_per_reflector: if layout == Layout::Mesh { 0 } else { n + 1 },
        reflector,
        client,
    };
    rt.block_on(async {
        for s in &speakers {
            s.shutdown().await;
        }
    });
    drop(rt);
    drop(reflectors);
    row
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("node" | "reflector")) {
        return child(&args);
    }
    raise_nofile();
    let mut sizes = vec![100, 250, 500];
    // Both ends of every mesh session are in this process: N·(N−1) descriptors. The hard limit
    // here is 20,000 per process (not raisable in this sandbox), so the mesh fits up to ~140.
    let mut mesh_up_to = 100;
    let mut layouts: Vec<String> = ["mesh", "twill", "bird"].map(String::from).to_vec();
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--nodes", Some(v)) => sizes = v.split(',').map(|s| s.parse().unwrap()).collect(),
            ("--mesh-up-to", Some(v)) => mesh_up_to = v.parse().unwrap(),
            ("--layouts", Some(v)) => layouts = v.split(',').map(String::from).collect(),
            (o, _) => panic!("unknown option {o}"),
        }
    }
    let mut rows = Vec::new();
    for &n in &sizes {
        for layout in [
            Layout::Mesh,
            Layout::TwillReflectors,
            Layout::BirdReflectors,
        ] {
            if layout == Layout::Mesh && n > mesh_up_to || !layouts.contains(&layout.arg_name()) {
                continue;
            }
            let r = run(n, layout);
            eprintln!(
                "{n} nodes, {}: converged {:.2} s, join {:.3} s, leave {:.3} s",
                layout.name(),
                r.converge,
                r.join,
                r.leave
            );
            rows.push(r);
        }
    }
    println!();
    println!(
        "{:>5}  {:<30} {:>9} {:>8} {:>8} {:>9} {:>19} {:>17}",
        "nodes",
        "layout",
        "converge",
        "join",
        "leave",
        "sess/RR",
        "reflector RSS/CPU",
        "client RSS/CPU"
    );
    for r in &rows {
        let rr = if r.layout == Layout::Mesh {
            "—".to_string()
        } else {
            format!(
                "{:.1} MB/{:.2} s",
                r.reflector.0 as f64 / 1024.0,
                r.reflector.1
            )
        };
        println!(
            "{:>5}  {:<30} {:>8.2}s {:>7.3}s {:>7.3}s {:>9} {:>19} {:>17}",
            r.n,
            r.layout.name(),
            r.converge,
            r.join,
            r.leave,
            if r.sessions_per_reflector == 0 {
                "—".to_string()
            } else {
                r.sessions_per_reflector.to_string()
            },
            rr,
            format!("{:.1} MB/{:.2} s", r.client.0 as f64 / 1024.0, r.client.1),
        );
    }
    println!("converge: clients' start → every node has every pod CIDR; join: a new node's process start → its CIDR in every Loc-RIB; leave: that process SIGKILLed → its CIDR in none; RSS is peak (VmHWM), CPU user+system seconds, of one reflector and of the new node (a client) over the run.");
}
