//! `twill lab` driven from a test: a lab under a unique namespace prefix and state directory,
//! its agents asked through their sockets, everything removed on drop.

use super::TWILL;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
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
}

impl Lab {
    pub fn up(name: &'static str) -> Lab {
        let lab = Lab::up_file(name, &topology(name));
        assert!(lab.up_output.contains("8 pods"), "{}", lab.up_output);
        lab
    }

    pub fn up_file(name: &'static str, file: &Path) -> Lab {
        let mut lab = Lab {
            dir: TempDir::new("lab"),
            prefix: unique("l"),
            name,
            up_output: String::new(),
        };
        let o = lab.twill(&["lab", "up", "--prefix", &lab.prefix.clone()], Some(file));
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
