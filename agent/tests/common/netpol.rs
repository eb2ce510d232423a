//! What the NetworkPolicy lab tests share: the upstream e2e model's servers (TCP and UDP on
//! 80 and 81 in every pod), connection probes that tell a drop from a refusal, and the run of
//! every case's probes against a lab that puts each step in force its own way (file mode, or
//! a real API server).

use super::{serve_tcp, tcp_reach, udp_reach, Reach};
use policy::cases::{load, Case, State};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use twill_lab::netns::enter;

/// How long a connection may take before it counts as blocked. Allowed ones answer in
/// milliseconds; a dropped SYN or datagram never does.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Servers in every pod: TCP (answers "ok") and UDP (echoes) on 80 and 81, each a thread
/// whose sockets were opened inside the pod's namespace. Stopped on drop.
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    pub fn start(netns: &[String]) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for ns in netns {
            for port in [80u16, 81] {
                let (stop_t, stop_u) = (stop.clone(), stop.clone());
                let path = format!("/run/netns/{ns}");
                let p2 = path.clone();
                threads.push(serve_tcp(path.clone().into(), port, stop_t));
                threads.push(std::thread::spawn(move || {
                    enter(Path::new(&p2)).expect("setns");
                    let u = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
                    u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let mut buf = [0u8; 64];
                    while !stop_u.load(Ordering::Relaxed) {
                        if let Ok((n, from)) = u.recv_from(&mut buf) {
                            let _ = u.send_to(&buf[..n], from);
                        }
                    }
                }));
            }
        }
        Servers { stop, threads }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One connection attempt from inside `netns`.
pub fn connect(netns: &str, to: IpAddr, port: u16, protocol: &str) -> Reach {
    let path = format!("/run/netns/{netns}");
    let addr = SocketAddr::new(to, port);
    match protocol {
        "TCP" => tcp_reach(Path::new(&path), addr, PROBE_TIMEOUT),
        "UDP" => udp_reach(Path::new(&path), addr, PROBE_TIMEOUT),
        other => panic!("no probe for {other}"),
    }
}

/// Whether this kernel can open SCTP sockets (`Err` says why not).
pub fn sctp() -> Result<(), String> {
    // SAFETY: a plain socket(2) call; the descriptor is closed right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    Ok(())
}

/// What running the cases found.
#[derive(Default)]
pub struct Tally {
    pub cases: usize,
    pub probes: usize,
    pub pairs: usize,
    pub retried: usize,
    pub skipped: Vec<String>,
    pub wrong: Vec<String>,
}

impl Tally {
    /// Every upstream case: for each step, `apply` puts the step's state in force (returning
    /// once it is), then each probe's 72 pairs are tried. `netns` names each pod's namespace,
    /// `ip` gives its address.
    pub fn run(
        netns: &BTreeMap<String, String>,
        ip: &dyn Fn(&str) -> IpAddr,
        mut apply: impl FnMut(&Case, usize, &State),
    ) -> Tally {
        let mut t = Tally::default();
        let sctp = sctp();
        let cases = load();
        t.cases = cases.len();
        for case in &cases {
            let mut st = State::default();
            for (si, step) in case.steps.iter().enumerate() {
                st.step(step, ip);
                apply(case, si, &st);
                for probe in &step.probes {
                    if probe.protocol == "SCTP" {
                        if let Err(why) = &sctp {
                            t.skipped.push(format!(
                                "{} [{}] {}/SCTP: {why}",
                                case.name, case.context, probe.port
                            ));
                            continue;
                        }
                    }
                    t.probes += 1;
                    let expected: BTreeMap<(String, String), Reach> = probe
                        .expected()
                        .into_iter()
                        .map(|(k, allowed)| {
                            (
                                k,
                                if allowed {
                                    Reach::Answered
                                } else {
                                    Reach::Silent
                                },
                            )
                        })
                        .collect();
                    let run = |pairs: Vec<(String, String)>| -> Vec<((String, String), Reach)> {
                        let handles: Vec<_> = pairs
                            .into_iter()
                            .map(|(from, to)| {
                                let (ns, dst) = (netns[&from].clone(), ip(&to));
                                let (port, proto) = (probe.port, probe.protocol.clone());
                                std::thread::spawn(move || {
                                    ((from, to), connect(&ns, dst, port, &proto))
                                })
                            })
                            .collect();
                        handles.into_iter().map(|h| h.join().unwrap()).collect()
                    };
                    let got = run(expected.keys().cloned().collect());
                    t.pairs += got.len();
                    // An allowed pair that met silence is tried once more before it counts: on
                    // a loaded machine a connection may miss one timeout. Anything else is
                    // final: a blocked pair that answered, or a refusal (no server: not what a
                    // policy does).
                    let (again, first): (Vec<_>, Vec<_>) = got
                        .into_iter()
                        .partition(|(k, v)| expected[k] == Reach::Answered && *v == Reach::Silent);
                    t.retried += again.len();
                    let again = run(again.into_iter().map(|(k, _)| k).collect());
                    for ((from, to), v) in first.into_iter().chain(again) {
                        let want = expected[&(from.clone(), to.clone())];
                        if v != want {
                            t.wrong.push(format!(
                                "{} [{}] step {si} {}/{}: {from} → {to} expected {want:?}, got {v:?}",
                                case.name, case.context, probe.port, probe.protocol,
                            ));
                        }
                    }
                }
            }
        }
        t
    }

    /// Print the figures and the skipped probes; fail on any wrong pair or too few checks.
    pub fn report(&self, what: &str, secs: f64) {
        eprintln!(
            "{what}: {} cases, {} probes, {} connections in {secs:.0} s; {} retried; {} SCTP probes skipped",
            self.cases,
            self.probes,
            self.pairs,
            self.retried,
            self.skipped.len()
        );
        for s in &self.skipped {
            eprintln!("skipped: {s}");
        }
        assert!(
            self.wrong.is_empty(),
            "{} wrong:\n{}",
            self.wrong.len(),
            self.wrong.join("\n")
        );
        assert!(
            self.probes >= 45 && self.pairs >= 45 * 72,
            "{} probes, {} pairs",
            self.probes,
            self.pairs
        );
    }
}
