//! Outgoing NAT in the lab: pods reach a host beyond the router that has no route to any pod
//! CIDR, which sees them with their node's address; traffic between pods keeps the pods'
//! addresses, directly and through VXLAN; `natOutgoing` turned off at run time (SIGHUP) stops
//! the translation (the outside host then sees pod sources and cannot answer) and turned on
//! again restores it, while TCP streams between pods run on untouched. With the ToR topology
//! and NAT off, a datacentre host behind the ToR and the pods reach each other by pod address.

mod common;

use common::lab::*;
use common::{serve_tcp, tcp_reach, Reach};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use twill_lab::topology::copy_with_view;
use twill_lab::{wait_for, Capture};

const OUTSIDE: &str = "192.0.2.10";
const DC_HOST: &str = "192.168.50.10";
const NODES: [&str; 4] = ["a1", "a2", "b1", "b2"];
const NODE_ADDRESSES: [&str; 4] = ["10.1.0.11", "10.1.0.12", "10.2.0.11", "10.2.0.12"];

/// The namespace of pod `pod` (`a1-pod2`).
fn pod_ns(lab: &Lab, pod: &str) -> String {
    let (node, k) = pod.split_once('-').expect("NODE-podK");
    format!("{}-{k}", lab.ns(node))
}

fn ns_path(ns: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(ns)
}

/// `count` pings from namespace `ns`: whether any was answered.
fn ping(ns: &str, to: &str, count: u32) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-q", "-i", "0.2", "-W", "1"])
        .args(["-c", &count.to_string(), to])
        .output()
        .expect("ping")
        .status
        .success()
}

/// A TCP connection from namespace `ns` (in a thread of its own: it enters the namespace).
fn tcp_from(ns: &str, to: SocketAddr) -> Reach {
    let path = ns_path(ns);
    std::thread::spawn(move || tcp_reach(&path, to, Duration::from_secs(3)))
        .join()
        .expect("tcp thread")
}

/// The source addresses of captured packets whose line contains `what`.
fn sources(lines: &[String], what: &str) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l.contains(what))
        .filter_map(|l| Some(l.split("IP ").nth(1)?.split(" > ").next()?.to_string()))
        .map(|s| match s.rsplit_once('.') {
            // TCP lines carry the port: `10.1.0.11.40000`.
            Some((a, port)) if a.matches('.').count() == 3 && port.parse::<u16>().is_ok() => {
                a.to_string()
            }
            _ => s,
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The families outgoing NAT is in force for on `node`, as `twill status --json` says; None
/// before its rules were first programmed.
fn nat_families(lab: &Lab, node: &str) -> Option<Vec<String>> {
    let nat = lab.json("status", node)["nat"].clone();
    if nat["programmed"] != true {
        return None;
    }
    Some(
        nat["families"]
            .as_array()?
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect(),
    )
}

fn masqueraded(lab: &Lab, node: &str) -> u64 {
    lab.json("status", node)["nat"]["masqueraded"]
        .as_u64()
        .unwrap_or_default()
}

fn wait_nat(lab: &Lab, want: &[&str]) {
    for node in NODES {
        wait_for(
            &format!("{node}: outgoing NAT in force for {want:?}"),
            Duration::from_secs(30),
            || (nat_families(lab, node)? == want).then_some(()),
        );
    }
}

/// A TCP stream between two pods: the client writes 1 KiB every 10 ms until told to stop, the
/// server counts what arrives. Both ends must see the same count and no error.
struct Stream {
    what: String,
    stop: Arc<AtomicBool>,
    client: JoinHandle<Result<u64, String>>,
    server: JoinHandle<Result<u64, String>>,
}

impl Stream {
    fn start(lab: &Lab, from: &str, to: &str, port: u16) -> Stream {
        let addr: SocketAddr = format!("{}:{port}", pod_address(lab, to)).parse().unwrap();
        let (listening, bound) = mpsc::channel();
        let server_ns = ns_path(&pod_ns(lab, to));
        let server = std::thread::spawn(move || -> Result<u64, String> {
            twill_lab::netns::enter(&server_ns).map_err(|e| e.to_string())?;
            let l = std::net::TcpListener::bind(("0.0.0.0", port)).map_err(|e| e.to_string())?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            let _ = listening.send(());
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => return Err(format!("no connection: {e}")),
                }
            };
            s.set_nonblocking(false).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .map_err(|e| e.to_string())?;
            let mut total = 0u64;
            let mut buf = [0u8; 8192];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Ok(total),
                    Ok(n) => total += n as u64,
                    Err(e) => return Err(format!("after {total} bytes: {e}")),
                }
            }
        });
        bound
            .recv_timeout(Duration::from_secs(10))
            .expect("the stream's server listens");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_c = stop.clone();
        let client_ns = ns_path(&pod_ns(lab, from));
        let client = std::thread::spawn(move || -> Result<u64, String> {
            twill_lab::netns::enter(&client_ns).map_err(|e| e.to_string())?;
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_write_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            let chunk = [7u8; 1024];
            let mut total = 0u64;
            // Bounded: the test stops it within minutes; 10 minutes at most regardless.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop_c.load(Ordering::Relaxed) && Instant::now() < deadline {
                s.write_all(&chunk)
                    .map_err(|e| format!("after {total} bytes: {e}"))?;
                total += chunk.len() as u64;
                std::thread::sleep(Duration::from_millis(10));
            }
            s.shutdown(std::net::Shutdown::Write)
                .map_err(|e| e.to_string())?;
            Ok(total)
        });
        Stream {
            what: format!("{from} -> {to} ({addr})"),
            stop,
            client,
            server,
        }
    }

    /// Stop it and check that every byte arrived on the one connection; returns the count.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.client.join().expect("client thread");
        let got = self.server.join().expect("server thread");
        let (sent, got) = match (sent, got) {
            (Ok(s), Ok(g)) => (s, g),
            other => panic!("{}: the stream broke: {other:?}", self.what),
        };
        assert_eq!(sent, got, "{}: bytes sent and received", self.what);
        eprintln!("{}: {sent} bytes on one connection", self.what);
        sent
    }
}

#[test]
fn pods_reach_the_outside_as_their_node_and_each_other_as_themselves() {
    let topo = copy_with_view("two-racks-vxlan", str::to_string);
    let view = topo.join("two-racks-vxlan/cluster.yaml");
    let shipped = std::fs::read_to_string(&view).unwrap();
    let lab = Lab::up_file("two-racks-vxlan", &topo.join("two-racks-vxlan.clab.yml"));
    // On by default; the view says nothing about it.
    assert!(!shipped.contains("natOutgoing"));
    wait_nat(&lab, &["IPv4"]);
    // The lab's nodes hold no rules of kubelet's in either backend: nft, read from the node.
    let ipt = &lab.json("status", "a1")["iptables"];
    assert_eq!(ipt["backend"], "nft", "{ipt}");
    assert!(
        ipt["why"]
            .as_str()
            .unwrap_or_default()
            .contains("no kubelet chain"),
        "{ipt}"
    );
    let outside = lab.ns("outside");
    assert!(
        !lab.kernel_route("router", "10.244.1.0/24")
            .contains("10.244"),
        "the router must not know the pods"
    );

    // Every pod reaches the outside host by ping and TCP; the host sees node addresses only.
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_tcp(ns_path(&outside), 8080, stop.clone());
    let to_outside: SocketAddr = format!("{OUTSIDE}:8080").parse().unwrap();
    let cap = Capture::start_in(&outside, "eth1", "icmp or tcp port 8080");
    for node in NODES {
        for k in 1..=2 {
            let pod = format!("{node}-pod{k}");
            let ns = pod_ns(&lab, &pod);
            assert!(ping(&ns, OUTSIDE, 3), "{pod} cannot ping the outside host");
            assert_eq!(tcp_from(&ns, to_outside), Reach::Answered, "{pod}: TCP");
        }
    }
    let seen = cap.stop();
    assert_eq!(
        sources(&seen, "echo request"),
        set(&NODE_ADDRESSES),
        "{seen:#?}"
    );
    assert_eq!(
        sources(&seen, "Flags [S]"),
        set(&NODE_ADDRESSES),
        "{seen:#?}"
    );
    // Counted: a1's two pods made two pings and two TCP connections (read at the resync).
    let counted = wait_for(
        "a1's translated connections counted",
        Duration::from_secs(20),
        || {
            let n = masqueraded(&lab, "a1");
            (n >= 4).then_some(n)
        },
    );

    // Between pods, no NAT: b1's pod sees a1's pod (through VXLAN) and b2's (direct, same
    // rack) by their own addresses.
    assert_eq!(lab.route("a1", "10.244.3.0/24").1, "vxlan");
    assert_eq!(lab.route("b2", "10.244.3.0/24").1, "direct");
    let b1_pod = pod_address(&lab, "b1-pod1");
    let cap = Capture::start_in(&pod_ns(&lab, "b1-pod1"), "eth0", "icmp");
    assert!(ping(&pod_ns(&lab, "a1-pod1"), &b1_pod, 2));
    assert!(ping(&pod_ns(&lab, "b2-pod1"), &b1_pod, 2));
    let seen = cap.stop();
    assert_eq!(
        sources(&seen, "echo request"),
        set(&[&pod_address(&lab, "a1-pod1"), &pod_address(&lab, "b2-pod1")]),
        "{seen:#?}"
    );

    // Off at run time, then on again, while TCP streams between pods (through VXLAN, within a
    // rack) run throughout.
    let streams = [
        Stream::start(&lab, "a1-pod1", "b1-pod1", 9000),
        Stream::start(&lab, "a2-pod1", "a1-pod2", 9001),
    ];
    let nodes: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
    std::fs::write(&view, format!("{shipped}natOutgoing: {{ipv4: false}}\n")).unwrap();
    lab.signal(&nodes, "-HUP");
    wait_nat(&lab, &[]);
    let nat = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("a1"),
            "iptables-nft-save",
            "-t",
            "nat",
        ])
        .output()
        .unwrap();
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(!nat.contains("TWILL"), "NAT off, its chain is gone:\n{nat}");
    // The count outlives the chain: over two resyncs (5 s each) it never goes down.
    let since = Instant::now();
    wait_for("two resyncs with NAT off", Duration::from_secs(15), || {
        let n = masqueraded(&lab, "a1");
        assert!(n >= counted, "the count went down: {counted} -> {n}");
        (since.elapsed() > Duration::from_secs(11)).then_some(())
    });
    let cap = Capture::start_in(&outside, "eth1", "icmp");
    assert!(
        !ping(&pod_ns(&lab, "a1-pod1"), OUTSIDE, 3),
        "without NAT the outside host cannot answer a pod"
    );
    let seen = cap.stop();
    assert_eq!(
        sources(&seen, "echo request"),
        set(&[&pod_address(&lab, "a1-pod1")]),
        "{seen:#?}"
    );
    std::fs::write(&view, &shipped).unwrap();
    lab.signal(&nodes, "-HUP");
    wait_nat(&lab, &["IPv4"]);
    assert!(ping(&pod_ns(&lab, "a1-pod1"), OUTSIDE, 3), "NAT on again");
    for s in streams {
        // At least the two reloads' worth: 100 KiB/s for a few seconds.
        assert!(s.finish() > 100 * 1024);
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn with_nat_off_a_host_behind_the_tor_and_the_pods_reach_each_other_by_pod_address() {
    let topo = copy_with_view("two-racks-tor", |v| {
        format!("{v}natOutgoing: {{ipv4: false, ipv6: false}}\n")
    });
    let lab = Lab::up_file("two-racks-tor", &topo.join("two-racks-tor.clab.yml"));
    wait_nat(&lab, &[]);
    wait_for(
        "tor-b to learn the datacentre subnet",
        Duration::from_secs(30),
        || {
            lab.kernel_route("tor-b", "192.168.50.0/24")
                .contains("proto bgp")
                .then_some(())
        },
    );
    let dc = lab.ns("dc-host");
    for pod in ["a1-pod1", "b1-pod1"] {
        let addr = pod_address(&lab, pod);
        let ns = pod_ns(&lab, pod);
        let at_pod = Capture::start_in(&ns, "eth0", "icmp");
        assert!(ping(&dc, &addr, 3), "dc-host cannot reach {pod} ({addr})");
        let seen = at_pod.stop();
        assert_eq!(sources(&seen, "echo request"), set(&[DC_HOST]), "{seen:#?}");
        let at_dc = Capture::start_in(&dc, "eth1", "icmp");
        assert!(ping(&ns, DC_HOST, 3), "{pod} cannot reach dc-host");
        let seen = at_dc.stop();
        assert_eq!(sources(&seen, "echo request"), set(&[&addr]), "{seen:#?}");
    }
}
