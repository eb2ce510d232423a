//! What the agent's lab tests share: a `twill agent` process in a namespace, and the
//! agent's HTTP endpoints seen from inside it.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod lab;
pub mod netpol;

use serde_json::Value;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use twill_lab::Netns;

pub const TWILL: &str = env!("CARGO_BIN_EXE_twill");

/// A running `twill agent` inside a node's namespace; killed on drop, its log printed when the
/// test is failing.
pub struct Agent {
    child: Option<Child>,
    pub socket: PathBuf,
    pub state: PathBuf,
    log: PathBuf,
}

impl Agent {
    /// `args`: where the view comes from (`--config FILE --node N`, or `--kubernetes
    /// --kubeconfig F` with the node name from `NODE_NAME`, as a DaemonSet gives it).
    pub fn start(
        ns: &Netns,
        dir: &Path,
        node: &str,
        args: &[OsString],
        ready_timeout: u64,
    ) -> Agent {
        let socket = dir.join(format!("{node}.sock"));
        let state = dir.join(format!("{node}-state"));
        let log = dir.join(format!("{node}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, TWILL, "agent"])
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state)
            .args(["--ready-timeout", &ready_timeout.to_string()])
            // Keep the host's /etc untouched: the name file goes into the test's directory.
            .arg("--rt-protos-dir")
            .arg(dir.join("iproute2/rt_protos.d"))
            .env("NODE_NAME", node)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("twill agent");
        Agent {
            child: Some(child),
            socket,
            state,
            log,
        }
    }

    pub fn status(&self) -> Option<Value> {
        let out = Command::new(TWILL)
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn peer(&self, addr: &str) -> Option<Value> {
        self.status()?["peers"]
            .as_array()?
            .iter()
            .find(|p| p["address"] == addr)
            .cloned()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
    }

    /// SIGTERM and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let mut c = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "agent ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How often the session with `peer` reached, and left, Established (from the log, colour
    /// codes stripped).
    pub fn transitions(&self, peer: &str) -> (usize, usize) {
        let mut plain = String::new();
        let mut esc = false;
        for c in self.log().chars() {
            match (esc, c) {
                (false, '\x1b') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => plain.push(c),
            }
        }
        let lines: Vec<&str> = plain
            .lines()
            .filter(|l| l.contains("session state") && l.contains(&format!("peer={peer} ")))
            .collect();
        (
            lines
                .iter()
                .filter(|l| l.contains("to=Established"))
                .count(),
            lines
                .iter()
                .filter(|l| l.contains("from=Established"))
                .count(),
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The HTTP status of `path` on the agent's listener, asked from inside `ns` (0 if none).
pub fn http(ns: &Netns, path: &str) -> u16 {
    let out = ns.try_exec(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:9099{path}"),
    ]);
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// A pod attached by running `twill` as the CNI plugin (ADD), as a container runtime would.
pub struct CniPod {
    pub ns: Netns,
    pub ip: String,
}

pub fn cni(
    node: &Netns,
    pod: &Netns,
    cmd: &str,
    state: &Path,
    ipam: &Path,
    prev: Option<&Value>,
) -> (bool, Value) {
    let mut conf = cni_conf(state, ipam);
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    cni_with(
        Path::new(TWILL),
        "/usr/lib/cni",
        node,
        pod,
        cmd,
        &conf,
        None,
    )
}

/// The network configuration the runtime hands Twill's plugin.
fn cni_conf(state: &Path, ipam: &Path) -> Value {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "twill", "type": "twill",
        "stateDir": state, "dataDir": ipam,
    })
}

/// CNI ADD / DEL for a Kubernetes pod: the runtime names it in `CNI_ARGS`, so the plugin can
/// wait for its NetworkPolicy rules.
pub fn cni_pod(
    node: &Netns,
    pod: &Netns,
    cmd: &str,
    state: &Path,
    ipam: &Path,
    namespace: &str,
    name: &str,
) -> (bool, Value) {
    let conf = cni_conf(state, ipam);
    let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}");
    cni_with(
        Path::new(TWILL),
        "/usr/lib/cni",
        node,
        pod,
        cmd,
        &conf,
        Some(&args),
    )
}

/// Run `plugin` as a CNI plugin inside `node` for `pod`, as a container runtime would, with
/// `conf` on stdin and `CNI_PATH` for its delegates: (success, the result or error JSON).
pub fn cni_with(
    plugin: &Path,
    cni_path: &str,
    node: &Netns,
    pod: &Netns,
    cmd: &str,
    conf: &Value,
    cni_args: Option<&str>,
) -> (bool, Value) {
    let mut c = Command::new("ip");
    if let Some(a) = cni_args {
        c.env("CNI_ARGS", a);
    }
    let mut child = c
        .args(["netns", "exec", &node.name])
        .arg(plugin)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", &pod.name)
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a CNI plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v)
}

/// The addresses CNI ADD gave a pod.
pub fn pod_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| Some(ip["address"].as_str()?.split('/').next()?.to_string()))
        .collect()
}

/// One ping from inside `from`, waiting at most a second for the answer.
pub fn ping(from: &Netns, ip: &str) -> bool {
    from.try_exec(&["ping", "-c", "1", "-W", "1", ip])
        .status
        .success()
}

/// A TCP server on `port` (IPv4 and IPv6) inside the namespace at `ns_path`, answering "ok"
/// to every connection, until `stop` is set.
pub fn serve_tcp(
    ns_path: PathBuf,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        twill_lab::netns::enter(&ns_path).expect("setns");
        // "::" takes IPv4 too (v6only is off by default).
        let l = std::net::TcpListener::bind(("::", port)).expect("bind");
        l.set_nonblocking(true).unwrap();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.write_all(b"ok");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

/// What a connection attempt met: the server's answer, a refusal (RST, ICMP unreachable:
/// nobody listening, not a policy), or silence (a dropped packet: what a policy does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Answered,
    Refused,
    Silent,
}

fn reach_of(e: &std::io::Error) -> Reach {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Reach::Silent,
        _ => Reach::Refused,
    }
}

/// A TCP connection from inside the namespace at `ns_path` to `to`, waiting `timeout` for the
/// server's "ok". Call from a thread of its own: it enters the namespace.
pub fn tcp_reach(ns_path: &Path, to: std::net::SocketAddr, timeout: Duration) -> Reach {
    use std::io::Read;
    twill_lab::netns::enter(ns_path).expect("setns");
    let r = std::net::TcpStream::connect_timeout(&to, timeout).and_then(|mut s| {
        s.set_read_timeout(Some(timeout))?;
        let mut b = [0u8; 2];
        s.read_exact(&mut b)
    });
    match r {
        Ok(()) => Reach::Answered,
        Err(e) => reach_of(&e),
    }
}

/// A UDP datagram from inside the namespace at `ns_path` to an echo server at `to`.
pub fn udp_reach(ns_path: &Path, to: std::net::SocketAddr, timeout: Duration) -> Reach {
    twill_lab::netns::enter(ns_path).expect("setns");
    let any: std::net::SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let u = std::net::UdpSocket::bind(any).expect("bind");
    u.set_read_timeout(Some(timeout)).unwrap();
    // Connected, so an ICMP port unreachable comes back as a refusal.
    if let Err(e) = u.connect(to).and_then(|()| u.send(b"probe")) {
        return reach_of(&e);
    }
    let mut b = [0u8; 8];
    match u.recv(&mut b) {
        Ok(_) => Reach::Answered,
        Err(e) => reach_of(&e),
    }
}
