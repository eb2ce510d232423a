//! Record what FRR, BIRD 2, GoBGP and ExaBGP send on a BGP session (their OPEN, UPDATEs with
//! a mix of attributes for IPv4 and IPv6, End-of-RIB, KEEPALIVEs) and write them as seed
//! inputs for the fuzz targets: `fuzz/seeds/established/` in the harness's input format (H is
//! the daemon: eBGP, AS 65002, 10.0.0.2; A is the recording side), `fuzz/seeds/decode/` as
//! the `decode` target reads them (a context byte, then messages).
//!
//! Not a test: the committed seeds are its output. Run as root (namespaces):
//! `cargo run -p twill-lab --bin record-seeds -- fuzz/seeds`

use fuzz_harness::input::{encode, Config, Families, Op, Role, Side};
use speaker::wire::{self, Family, Negotiated};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use twill_lab::{daemons::Daemon, netns::enter, Link, Netns};

const FRR: &str = r#"frr defaults traditional
hostname h
route-map ATTRS permit 10
 set community 65000:1 no-export
 set large-community 65002:1:1
 set metric 50
 set as-path prepend 65002 65002
 set origin incomplete
router bgp 65002
 bgp router-id 10.0.0.2
 coalesce-time 50
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 10.0.0.1 remote-as 64512
 neighbor 10.0.0.1 timers connect 1
 address-family ipv4 unicast
  network 10.244.1.0/24
  network 10.244.2.0/24 route-map ATTRS
  network 192.0.2.0/24
  neighbor 10.0.0.1 activate
  neighbor 10.0.0.1 advertisement-interval 0
 exit-address-family
 address-family ipv6 unicast
  network fd00:244:1::/64
  network 2001:db8::/32 route-map ATTRS
  neighbor 10.0.0.1 activate
  neighbor 10.0.0.1 advertisement-interval 0
 exit-address-family
"#;

const BIRD: &str = r#"
router id 10.0.0.2;
protocol device { scan time 5; }
protocol static s4 { ipv4; route 10.244.1.0/24 blackhole; route 10.244.2.0/24 blackhole; route 192.0.2.0/24 blackhole; }
protocol static s6 { ipv6; route fd00:244:1::/64 blackhole; route 2001:db8::/32 blackhole; }
filter attrs {
  if source != RTS_STATIC then reject;
  if net = 10.244.2.0/24 || net = 2001:db8::/32 then {
    bgp_med = 50;
    bgp_community.add((65000,1));
    bgp_large_community.add((65002,1,1));
    bgp_path.prepend(65002);
  }
  accept;
}
protocol bgp h {
  local 10.0.0.2 as 65002; neighbor 10.0.0.1 as 64512; direct;
  connect delay time 1; connect retry time 2;
  ipv4 { import none; export filter attrs; };
  ipv6 { import none; export filter attrs; next hop address fd00::2; };
}
"#;

const GOBGP: &str = r#"[global.config]
  as = 65002
  router-id = "10.0.0.2"
  local-address-list = ["10.0.0.2"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.1"
    peer-as = 64512
  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#;

const EXABGP: &str = r#"
neighbor 10.0.0.1 {
  router-id 10.0.0.2;
  local-address 10.0.0.2;
  local-as 65002;
  peer-as 64512;
  family { ipv4 unicast; ipv6 unicast; }
  static {
    route 10.244.1.0/24 next-hop 10.0.0.2;
    route 10.244.2.0/24 next-hop 10.0.0.2 med 50 origin incomplete community [65000:1 no-export] large-community [65002:1:1] as-path [65002 65100];
    route 192.0.2.0/24 next-hop 10.0.0.2 atomic-aggregate aggregator (65002:10.0.0.2);
    route fd00:244:1::/64 next-hop fd00::2;
    route fd00:244:2::/64 next-hop fd00::2 med 50 as-path [65002 65100];
  }
}
"#;

/// What the daemon sent: its OPEN and every message after it, each one framed.
struct Recording {
    open: Vec<u8>,
    after: Vec<Vec<u8>>,
}

fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Ok(Some(len)) = wire::frame_len(buf, wire::MAX_MESSAGE) {
            return Some(buf.drain(..len).collect());
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Accept the daemon's connection on 10.0.0.1:179 inside `ns`, answer its OPEN with ours
/// and a KEEPALIVE, and record until End-of-RIB for both families and routes of both
/// families have arrived (some daemons send End-of-RIB first), or 20 s.
fn record(ns: &Netns) -> Recording {
    let path = ns.path();
    std::thread::spawn(move || {
        enter(&path).expect("setns");
        let l = TcpListener::bind("10.0.0.1:179").expect("bind 179");
        l.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("no connection from the daemon: {e}"),
            }
        };
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = Vec::new();
        let open = read_message(&mut s, &mut buf).expect("the daemon's OPEN");
        let ours = wire::encode_open(&wire::OpenParams {
            asn: 64512,
            hold_time: 90,
            router_id: "10.0.0.1".parse().expect("id"),
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            extended_message: false,
            graceful_restart: None,
        });
        s.write_all(&ours).expect("send OPEN");
        s.write_all(&wire::encode_keepalive())
            .expect("send KEEPALIVE");
        let neg = Negotiated {
            asn4: true,
            extended_message: false,
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            ebgp: true,
        };
        let mut after = Vec::new();
        let mut eor = (false, false);
        let mut routes = (false, false);
        let end = Instant::now() + Duration::from_secs(20);
        while !(eor.0 && eor.1 && routes.0 && routes.1) && Instant::now() < end {
            let Some(m) = read_message(&mut s, &mut buf) else {
                eprintln!(
                    "  connection ended or went quiet: End-of-RIB {eor:?}, routes {routes:?}"
                );
                break;
            };
            if let Ok(wire::Message::Update(u)) = wire::decode(&m, &neg) {
                match u.end_of_rib {
                    Some(Family::Ipv4Unicast) => eor.0 = true,
                    Some(Family::Ipv6Unicast) => eor.1 = true,
                    None => {}
                }
                for (_, prefixes) in &u.announced {
                    routes.0 |= prefixes.iter().any(|p| p.addr().is_ipv4());
                    routes.1 |= prefixes.iter().any(|p| p.addr().is_ipv6());
                }
            }
            after.push(m);
            if routes.0 && routes.1 {
                // FRR sends End-of-RIB only to a graceful-restart peer: once routes of both
                // families are in, a quiet second ends the recording.
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            }
        }
        Recording { open, after }
    })
    .join()
    .expect("recorder")
}

fn daemon(kind: &str, ns: &Netns) -> Daemon {
    match kind {
        "frr" => Daemon::frr(ns, FRR),
        "bird" => Daemon::bird(ns, BIRD),
        "gobgp" => {
            let d = Daemon::gobgp(ns, GOBGP);
            for args in [
                &["global", "rib", "add", "-a", "ipv4", "10.244.1.0/24"][..],
                &[
                    "global",
                    "rib",
                    "add",
                    "-a",
                    "ipv4",
                    "10.244.2.0/24",
                    "origin",
                    "incomplete",
                    "med",
                    "50",
                    "community",
                    "65000:1",
                    "large-community",
                    "65002:1:1",
                ],
                &["global", "rib", "add", "-a", "ipv4", "192.0.2.0/24"],
                &[
                    "global",
                    "rib",
                    "add",
                    "-a",
                    "ipv6",
                    "fd00:244:1::/64",
                    "nexthop",
                    "fd00::2",
                ],
                &[
                    "global",
                    "rib",
                    "add",
                    "-a",
                    "ipv6",
                    "2001:db8::/32",
                    "nexthop",
                    "fd00::2",
                    "med",
                    "50",
                ],
            ] {
                let o = d.gobgp_cli(args);
                assert!(o.status.success(), "gobgp {args:?}: {o:?}");
            }
            d
        }
        _ => Daemon::exabgp(ns, EXABGP),
    }
}

fn cfg(own_open: bool) -> Config {
    Config {
        h_role: Role::Ebgp,
        graceful_restart: false,
        asn4: true,
        families: Families::Both,
        extended_message: false,
        hold_time: 90,
        export_all_to_h: true,
        b_role: Role::Ibgp,
        export_all_to_b: true,
        import_pods_only: false,
        max_prefixes: false,
        own_open,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    println!("  {} ({} bytes)", p.display(), bytes.len());
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    let dir = root.join("established");
    let decode_dir = root.join("decode");
    std::fs::create_dir_all(&dir).expect("seed directory");
    std::fs::create_dir_all(&decode_dir).expect("seed directory");
    for kind in ["frr", "bird", "gobgp", "exabgp"] {
        let rec = Netns::new("rs");
        let peer = Netns::new("rp");
        Link::connect(
            &rec,
            &["10.0.0.1/24", "fd00::1/64"],
            &peer,
            &["10.0.0.2/24", "fd00::2/64"],
        );
        let d = daemon(kind, &peer);
        let r = record(&rec);
        drop(d);
        let updates: Vec<&Vec<u8>> = r.after.iter().filter(|m| m[18] == 2).collect();
        println!(
            "{kind}: OPEN {} bytes, {} messages, {} UPDATEs",
            r.open.len(),
            r.after.len(),
            updates.len()
        );
        assert!(updates.len() >= 2, "{kind} sent too little: {:?}", r.after);
        let all: Vec<u8> = r.after.concat();
        // decode: the first byte's bits say 4-octet AS (1) and eBGP (4), as negotiated with
        // the daemon; then its OPEN and everything after it.
        let mut d = vec![5u8];
        d.extend_from_slice(&r.open);
        d.extend_from_slice(&all);
        write(&decode_dir, &format!("{kind}-session"), &d);
        write(
            &dir,
            &format!("{kind}-table"),
            &encode(&cfg(false), &[Op::Raw(all.clone())]),
        );
        write(
            &dir,
            &format!("{kind}-own-open"),
            &encode(&cfg(true), &[Op::Raw(r.open.clone()), Op::Raw(all.clone())]),
        );
        for (i, u) in updates.iter().enumerate() {
            write(
                &dir,
                &format!("{kind}-update-{i}"),
                &encode(&cfg(false), &[Op::Raw((*u).clone())]),
            );
        }
        // The table, the session lost and back, the table again, B's routes changing.
        write(
            &dir,
            &format!("{kind}-churn"),
            &encode(
                &cfg(false),
                &[
                    Op::Raw(all.clone()),
                    Op::Originate {
                        side: Side::B,
                        mask: 0x7f,
                    },
                    Op::Close,
                    Op::Reconnect,
                    Op::Raw(all),
                    Op::RouteRefresh { v6: true },
                ],
            ),
        );
    }
}
