//! Namespaces, links and a Twill speaker on a thread inside a namespace.

use speaker::{Speaker, SpeakerConfig};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short unique name: `tw<pid><n><tag>` (interface names are limited to 15 bytes).
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("tw{}{}{}", std::process::id() % 100000, n, tag)
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    out
}

pub(crate) fn must(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        must(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Name the network namespace of process `pid` (a container's) for `ip netns`. Dropping the
    /// handle stops what runs in the namespace, as for any lab namespace, and removes the name.
    pub fn attach(tag: &str, pid: u32) -> Netns {
        let name = unique(tag);
        must(&["ip", "netns", "attach", &name, &pid.to_string()]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Run a command inside the namespace; panics with its stderr if it fails.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        must(&v)
    }

    /// A `TcpExt` counter of this namespace's kernel (`nstat -az`, absolute), e.g.
    /// `TcpExtTCPMD5Failure`; 0 when absent.
    pub fn tcp_ext(&self, name: &str) -> u64 {
        self.exec(&["nstat", "-az", name])
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    /// Run a command inside the namespace and return its output whatever the status.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        run(&v)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside would keep the namespace's interfaces alive: kill them.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair between two namespaces with addresses on each end.
pub struct Link;

impl Link {
    /// `addrs_*` are CIDR strings such as `10.0.0.1/24`; IPv6 addresses are added with
    /// `nodad` so they are usable at once.
    pub fn connect(a: &Netns, addrs_a: &[&str], b: &Netns, addrs_b: &[&str]) -> (String, String) {
        let ia = unique("a");
        let ib = unique("b");
        must(&[
            "ip", "link", "add", "name", &ia, "netns", &a.name, "type", "veth", "peer", "name",
            &ib, "netns", &b.name,
        ]);
        for (ns, ifname, addrs) in [(a, &ia, addrs_a), (b, &ib, addrs_b)] {
            for addr in addrs {
                if addr.contains(':') {
                    ns.exec(&["ip", "addr", "add", addr, "dev", ifname, "nodad"]);
                } else {
                    ns.exec(&["ip", "addr", "add", addr, "dev", ifname]);
                }
            }
            ns.exec(&["ip", "link", "set", ifname, "up"]);
        }
        (ia, ib)
    }
}

/// A directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Poll `f` every 50 ms until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Enter a network namespace on the current thread only (setns is per thread).
pub fn enter(ns_path: &Path) -> std::io::Result<()> {
    let f = File::open(ns_path)?;
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A Twill speaker running on its own thread inside a namespace; shut down on drop.
pub struct SpeakerInNs {
    pub speaker: Speaker,
    thread: Option<std::thread::JoinHandle<()>>,
    /// A runtime on the test's side, for calling the async API.
    rt: tokio::runtime::Runtime,
}

impl SpeakerInNs {
    pub fn start(ns: &Netns, cfg: SpeakerConfig) -> SpeakerInNs {
        // Logs go to the test's captured output; RUST_LOG=debug shows them on failure.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let path = ns.path();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(&path).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                match Speaker::start(cfg).await {
                    Ok(s) => {
                        let _ = tx.send(Ok(s.clone()));
                        s.stopped().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        let speaker = rx
            .recv()
            .expect("speaker thread died")
            .unwrap_or_else(|e| panic!("speaker failed to start: {e}"));
        SpeakerInNs {
            speaker,
            thread: Some(thread),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    /// Stop the speaker the way `mode` says (a graceful restart's stop: no NOTIFICATION).
    pub fn stop(self, mode: speaker::ShutdownMode) {
        self.block_on(self.speaker.stop(mode));
        // Drop finds it stopped.
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn snapshot(&self) -> Vec<speaker::PeerSnapshot> {
        self.block_on(self.speaker.snapshot())
            .expect("speaker running")
    }

    pub fn routes(&self) -> Vec<speaker::RouteEvent> {
        self.block_on(self.speaker.routes())
            .expect("speaker running")
    }

    /// The best route for `prefix`, if any and not originated here.
    pub fn learned(&self, prefix: &str) -> Option<speaker::BestRoute> {
        let p: ipnet::IpNet = prefix.parse().expect("prefix");
        self.routes()
            .into_iter()
            .find(|r| r.prefix == p)
            .and_then(|r| r.best)
            .filter(|b| !b.is_local())
    }
}

impl Drop for SpeakerInNs {
    fn drop(&mut self) {
        self.rt.block_on(self.speaker.shutdown());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
