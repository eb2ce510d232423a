//! `twill lab` driven from a test: a lab under a unique namespace prefix and state directory,
//! its agents asked through their sockets, everything removed on drop.

use super::TWILL;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use twill_lab::{unique, TempDir};

pub fn topology(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/containerlab")
        .join(format!("{name}.clab.yml"))
}

pub fn twill(args: &[&str]) -> Output {
    Command::new(TWILL).args(args).output().expect("twill")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn namespaces_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{prefix}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// A lab under a unique namespace prefix and state directory. Dropping it runs `lab down`,
/// then removes by hand whatever a failed `up` or `down` may have left.
pub struct Lab {
    pub dir: TempDir,
    pub prefix: String,
    pub name: &'static str,
    pub up_output: String,
    /// Started with `--image`: Docker containers to make sure of on drop.
    containers: bool,
}

impl Lab {
    pub fn up(name: &'static str) -> Lab {
        let lab = Lab::up_file(name, &topology(name));
        assert!(lab.up_output.contains("8 pods"), "{}", lab.up_output);
        lab
    }

    pub fn up_file(name: &'static str, file: &Path) -> Lab {
        Lab::up_with(name, file, &[])
    }

    /// `lab up` with more options (`--image TAG`).
    pub fn up_with(name: &'static str, file: &Path, options: &[&str]) -> Lab {
        let mut lab = Lab {
            dir: TempDir::new("lab"),
            prefix: unique("l"),
            name,
            up_output: String::new(),
            containers: options.contains(&"--image"),
        };
        let mut args = vec!["lab", "up"];
        args.extend_from_slice(options);
        let prefix = lab.prefix.clone();
        args.extend(["--prefix", &prefix]);
        let o = lab.twill(&args, Some(file));
        lab.up_output = text(&o);
        assert!(
            o.status.success(),
            "lab up {name} failed:\n{}",
            lab.up_output
        );
        lab
    }

    pub fn dir(&self) -> String {
        self.dir.path.display().to_string()
    }

    pub fn twill(&self, args: &[&str], extra: Option<&Path>) -> Output {
        let mut c = Command::new(TWILL);
        c.args(args).args(["--dir", &self.dir()]);
        if let Some(e) = extra {
            c.arg(e);
        }
        c.output().expect("twill")
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{}-{node}", self.prefix, self.name)
    }

    pub fn socket(&self, node: &str) -> String {
        self.dir
            .join(self.name)
            .join(node)
            .join("twill.sock")
            .display()
            .to_string()
    }

    pub fn json(&self, what: &str, node: &str) -> Value {
        let o = twill(&[what, "--json", "--socket", &self.socket(node)]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).expect("json")
    }

    /// The route to `prefix` on `node` as `twill routes --json` gives it.
    pub fn route_json(&self, node: &str, prefix: &str) -> Value {
        let v = self.json("routes", node);
        v["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == prefix)
            .cloned()
            .unwrap_or_else(|| panic!("{node} has no route to {prefix}: {v}"))
    }

    /// `node`'s peers as `twill status --json` gives them.
    pub fn peers(&self, node: &str) -> Vec<Value> {
        self.json("status", node)["peers"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Send `signal` (`-HUP`, …) to every process in these nodes' namespaces (their agents).
    pub fn signal(&self, nodes: &[String], signal: &str) {
        for n in nodes {
            kill_all(&self.ns(n), signal);
        }
    }

    /// `(next hops, via)` of the route to `prefix` on `node`.
    pub fn route(&self, node: &str, prefix: &str) -> (Vec<String>, String) {
        let r = self.route_json(node, prefix);
        let hops = r["nextHops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect();
        (hops, r["via"].as_str().unwrap().to_string())
    }

    pub fn kernel_route(&self, node: &str, prefix: &str) -> String {
        let o = Command::new("ip")
            .args(["-n", &self.ns(node), "route", "show", prefix])
            .output()
            .expect("ip");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn test(&self) -> Output {
        self.twill(&["lab", "test"], None)
    }

    pub fn down(&self) -> Output {
        self.twill(&["lab", "down"], None)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.down();
        // Containers of an `--image` lab that a failed `down` left (names start with the
        // prefix).
        if self.containers {
            if let Ok(o) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &format!("name=^{}-", self.prefix)])
                .output()
            {
                for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rm", "-f", id]).output();
                }
            }
        }
        let left = namespaces_with(&self.prefix);
        for ns in &left {
            kill_all(ns, "-9");
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Signal every process in namespace `ns` (one of the lab's own).
fn kill_all(ns: &str, signal: &str) {
    if let Ok(p) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&p.stdout).split_whitespace() {
            let _ = Command::new("kill").args([signal, pid]).status();
        }
    }
}

/// A pod's address as `lab up` printed it (`  a2-pod1    10.244.2.2      on a2`).
pub fn pod_address(lab: &Lab, pod: &str) -> String {
    lab.up_output
        .lines()
        .map(str::split_whitespace)
        .find_map(|mut w| (w.next() == Some(pod)).then(|| w.next().unwrap().to_string()))
        .unwrap_or_else(|| panic!("no {pod} in:\n{}", lab.up_output))
}

/// Packets per steady ping: 15 s at 100 per second, long enough to cover a stop and start or
/// a two-step reload.
pub const COUNT: u32 = 1500;

/// A steady ping (100 per second, [`COUNT`] packets unless told) from the first pod of `from` to the first
/// pod of `to`; `lost` waits for it to finish and reads the count ping itself reports.
pub struct Steady {
    what: String,
    child: Child,
    count: u32,
    /// ping's output, one line per reply (`-D`: with its time): a loss can be placed in time.
    out: PathBuf,
}

impl Steady {
    pub fn start(lab: &Lab, from: &str, to: &str) -> Steady {
        Steady::start_n(lab, from, to, COUNT)
    }

    /// As [`Steady::start`], `count` packets.
    pub fn start_n(lab: &Lab, from: &str, to: &str, count: u32) -> Steady {
        let dst = pod_address(lab, &format!("{to}-pod1"));
        // A file, not a pipe: nobody reads while it runs, and a pipe would fill and stop it.
        let out = lab.dir.join(format!("ping-{from}-{to}.out"));
        let file = std::fs::File::create(&out).expect("ping output file");
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-pod1", lab.ns(from))])
            .args([
                "ping",
                "-D",
                "-i",
                "0.01",
                "-W",
                "1",
                "-c",
                &count.to_string(),
                &dst,
            ])
            .stdout(file)
            .stderr(Stdio::piped())
            .spawn()
            .expect("ping");
        Steady {
            what: format!("{from} -> {to} ({dst})"),
            child,
            count,
            out,
        }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("ping").is_none()
    }

    /// One steady ping per `(from, to)` pair, each `COUNT` packets.
    pub fn start_all(lab: &Lab, pairs: &[(&str, &str)]) -> Vec<Steady> {
        Steady::start_all_n(lab, pairs, COUNT)
    }

    pub fn start_all_n(lab: &Lab, pairs: &[(&str, &str)], count: u32) -> Vec<Steady> {
        pairs
            .iter()
            .map(|(f, t)| Steady::start_n(lab, f, t, count))
            .collect()
    }

    /// Once `what` is over: every ping must still be running (so it covered all of it), then
    /// each sends all its packets and loses none. Prints the losses for the note.
    pub fn none_lost(pings: Vec<Steady>, what: &str) {
        let lost = Steady::losses(pings, what);
        assert!(lost.iter().all(|(_, l)| *l == 0), "{lost:?}");
    }

    /// Once `what` is over: every ping must still be running (so it covered all of it); wait
    /// for each to send all its packets and return what each lost (also printed, for the note).
    pub fn losses(mut pings: Vec<Steady>, what: &str) -> Vec<(String, u32)> {
        for p in &mut pings {
            assert!(
                p.running(),
                "{}: the pings ended before {what} was over; they did not cover it",
                p.what
            );
        }
        let mut lost = Vec::new();
        for p in pings {
            let name = p.what.clone();
            let count = p.count;
            let (sent, l) = p.lost();
            assert_eq!(sent, count, "{name}");
            lost.push((name, l));
        }
        eprintln!("packets lost while {what}: {lost:?}");
        lost
    }

    /// (sent, lost)
    fn lost(self) -> (u32, u32) {
        let mut child = self.child;
        child.wait().expect("ping");
        let text = std::fs::read_to_string(&self.out).expect("ping output");
        let line = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("{}: no summary in {text}", self.what));
        let n: Vec<u32> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        let (sent, lost) = (n[0], n[0] - n[1]);
        if lost > 0 {
            let m = missing(&text, sent);
            eprintln!("{}: {}", self.what, m[..m.len().min(20)].join(", "));
        }
        (sent, lost)
    }
}

/// Now, in seconds since the epoch (as ping `-D` prints its times).
pub fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The runs of sequence numbers with no reply in ping `-D` output, each with the time of the
/// last reply before it (seconds since the epoch): where in the run the loss was.
fn missing(text: &str, sent: u32) -> Vec<String> {
    let mut replies: Vec<(u32, String)> = text
        .lines()
        .filter_map(|l| {
            let time = l.strip_prefix('[')?.split(']').next()?.to_string();
            let seq = l
                .split("icmp_seq=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((seq, time))
        })
        .collect();
    replies.sort();
    replies.dedup_by_key(|r| r.0);
    let mut out = Vec::new();
    let mut before = "the start".to_string();
    let mut expected = 1;
    for (seq, time) in replies.into_iter().chain([(sent + 1, String::new())]) {
        if seq > expected {
            out.push(format!(
                "icmp_seq {expected}-{} lost (after the reply at {before})",
                seq - 1
            ));
        }
        expected = seq + 1;
        before = time;
    }
    out
}
