//! tcpdump on an interface inside a namespace, stopped and read back on demand.

use crate::netns::{wait_for, Netns, TempDir};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Capture {
    child: Option<Child>,
    dir: TempDir,
}

impl Capture {
    /// Start capturing on `iface` in `ns` with a pcap `filter`; returns once tcpdump listens.
    pub fn start(ns: &Netns, iface: &str, filter: &str) -> Capture {
        Capture::start_in(&ns.name, iface, filter)
    }

    /// As [`Capture::start`], in a namespace known by name (one a lab made).
    pub fn start_in(ns: &str, iface: &str, filter: &str) -> Capture {
        let dir = TempDir::new("cap");
        let pcap = dir.join("c.pcap");
        let err = std::fs::File::create(dir.join("err")).expect("stderr file");
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            ns.to_string(),
            "tcpdump".into(),
            "-U".into(),
            // Hand each packet over at once; otherwise packets wait in a ring-buffer block and a
            // stop right after the traffic finds them "received by filter" but never written.
            "--immediate-mode".into(),
            // Stay root: tcpdump would otherwise drop to its own user and fail to write here.
            "-Z".into(),
            "root".into(),
            "-n".into(),
            "-i".into(),
            iface.into(),
            "-w".into(),
            pcap.display().to_string(),
        ];
        args.extend(filter.split_whitespace().map(String::from));
        let child = Command::new("ip")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("tcpdump");
        let c = Capture {
            child: Some(child),
            dir,
        };
        let errf = c.dir.join("err");
        wait_for("tcpdump to listen", Duration::from_secs(10), || {
            std::fs::read_to_string(&errf)
                .ok()
                .filter(|s| s.contains("listening on"))
        });
        c
    }

    /// Stop and return one line per captured packet; an encapsulated packet's inner packet, which
    /// tcpdump prints on a line of its own, is appended to its outer line after ` | `.
    pub fn stop(mut self) -> Vec<String> {
        self.kill();
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(self.dir.join("c.pcap"))
            .output()
            .expect("tcpdump -r");
        let mut packets: Vec<String> = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let starts_packet = line.starts_with(|c: char| c.is_ascii_digit());
            match packets.last_mut() {
                Some(last) if !starts_packet => {
                    last.push_str(" | ");
                    last.push_str(line);
                }
                _ => packets.push(line.to_string()),
            }
        }
        packets
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGINT makes tcpdump flush; it writes per packet anyway (-U).
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `ip -o monitor route` (or other objects) inside a namespace, its output collected in a file.
pub struct RouteMonitor {
    child: Option<Child>,
    dir: TempDir,
    ns_name: String,
    sentinel: u32,
}

impl RouteMonitor {
    /// Start monitoring; returns once a sentinel route change made after the start was seen, so
    /// nothing that follows can be missed.
    pub fn start(ns: &Netns) -> RouteMonitor {
        Self::start_with(ns, &[])
    }

    /// Also monitor `objects` (`neigh`, `link`, …) beside the routes the barrier needs.
    pub fn start_with(ns: &Netns, objects: &[&str]) -> RouteMonitor {
        let dir = TempDir::new("mon");
        let out = std::fs::File::create(dir.join("out")).expect("monitor file");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "ip", "-o", "monitor", "route"])
            .args(objects)
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("ip monitor");
        let mut m = RouteMonitor {
            child: Some(child),
            dir,
            ns_name: ns.name.clone(),
            sentinel: 0,
        };
        m.barrier(ns);
        m
    }

    /// Make a throw-away change (a `proto static` blackhole in 198.18.0.0/15, the benchmark
    /// range) and wait until the monitor has printed it: everything before it is in the file.
    pub fn barrier(&mut self, ns: &Netns) {
        assert_eq!(ns.name, self.ns_name);
        self.sentinel += 1;
        let prefix = format!("198.18.{}.0/24", self.sentinel % 250);
        let out = self.dir.join("out");
        wait_for(
            "the route monitor to see a sentinel",
            Duration::from_secs(10),
            || {
                // Delete then add: replacing an identical route is a no-op the kernel does not
                // announce, so a sentinel set before the monitor subscribed would never show.
                let route = ["route", "blackhole", &prefix, "proto", "static"];
                ns.try_exec(&[
                    "ip", route[0], "del", route[1], route[2], route[3], route[4],
                ]);
                ns.exec(&[
                    "ip", route[0], "add", route[1], route[2], route[3], route[4],
                ]);
                std::fs::read_to_string(&out)
                    .ok()
                    .filter(|s| s.contains(&prefix))
            },
        );
        ns.exec(&[
            "ip",
            "route",
            "del",
            "blackhole",
            &prefix,
            "proto",
            "static",
        ]);
    }

    /// Everything printed so far that is not a sentinel.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("out"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("198.18."))
            .map(String::from)
            .collect()
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
