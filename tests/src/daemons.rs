//! Real BGP daemons (BIRD 2, FRR, GoBGP, ExaBGP) inside a namespace, each behind a guard
//! that kills exactly the processes it spawned and removes its run directory.

use crate::netns::{wait_for, Netns, TempDir};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Daemon {
    pub kind: &'static str,
    children: Vec<Child>,
    pub dir: TempDir,
    ns: String,
}

fn spawn(ns: &Netns, args: &[&str], log: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let logf = std::fs::File::create(log).expect("log file");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null())
        .stdout(logf.try_clone().expect("log"))
        .stderr(logf)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"))
}

/// FRR's bgpd in `dir` (its `bgpd.conf`, zebra's socket there), logging to `bgpd.log`.
fn spawn_bgpd(ns: &Netns, dir: &TempDir) -> Child {
    let run = dir.path.to_str().unwrap().to_string();
    let bconf = dir.join("bgpd.conf");
    spawn(
        ns,
        &[
            "/usr/lib/frr/bgpd",
            "-u",
            "root",
            "-g",
            "frrvty",
            "-f",
            bconf.to_str().unwrap(),
            "--vty_socket",
            &run,
            "-z",
            &format!("{run}/zserv.api"),
            "-i",
            &format!("{run}/bgpd.pid"),
            "-P",
            "0",
            "--log",
            &format!("file:{run}/bgpd.log"),
        ],
        &dir.join("bgpd.out.log"),
        &[],
    )
}

impl Daemon {
    /// FRR only: kill bgpd (SIGKILL: no NOTIFICATION, zebra and the kernel's routes stay) and
    /// wait until it is gone; [`Daemon::start_bgpd`] brings it back.
    pub fn kill_bgpd(&mut self) {
        assert_eq!(self.kind, "frr");
        let mut bgpd = self.children.remove(1);
        let _ = bgpd.kill();
        let _ = bgpd.wait();
    }

    /// FRR only: start bgpd again with `conf`, as after a crash or an upgrade.
    pub fn start_bgpd(&mut self, ns: &Netns, conf: &str) {
        assert_eq!(self.kind, "frr");
        assert_eq!(self.children.len(), 1, "bgpd is running");
        std::fs::write(self.dir.join("bgpd.conf"), conf).expect("bgpd.conf");
        let _ = std::fs::remove_file(self.dir.join("bgpd.vty"));
        self.children.push(spawn_bgpd(ns, &self.dir));
        let vty = self.dir.join("bgpd.vty");
        wait_for("bgpd vty socket", Duration::from_secs(10), || {
            vty.exists().then_some(())
        });
    }

    fn signal(&self, sig: &str) {
        for c in &self.children {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }
    /// Freeze the daemon (SIGSTOP): its sessions go silent without closing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir.path) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    s += &std::fs::read_to_string(e.path()).unwrap_or_default();
                }
            }
        }
        s
    }

    /// BIRD 2 with `conf` as its configuration.
    pub fn bird(ns: &Netns, conf: &str) -> Daemon {
        let dir = TempDir::new("bird");
        let cf = dir.join("bird.conf");
        std::fs::write(&cf, conf).expect("write bird.conf");
        let ctl = dir.join("bird.ctl");
        let child = spawn(
            ns,
            &[
                "bird",
                "-f",
                "-c",
                cf.to_str().unwrap(),
                "-s",
                ctl.to_str().unwrap(),
                "-P",
                dir.join("bird.pid").to_str().unwrap(),
            ],
            &dir.join("bird.log"),
            &[],
        );
        let d = Daemon {
            kind: "bird",
            children: vec![child],
            dir,
            ns: ns.name.clone(),
        };
        wait_for("bird control socket", Duration::from_secs(10), || {
            ctl.exists().then_some(())
        });
        d
    }

    pub fn birdc(&self, cmd: &str) -> String {
        let ctl = self.dir.join("bird.ctl");
        let mut args = vec!["-s", ctl.to_str().unwrap()];
        args.extend(cmd.split_whitespace());
        let out = Command::new("birdc").args(&args).output().expect("birdc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// FRR: zebra, then bgpd with `bgp_conf`.
    pub fn frr(ns: &Netns, bgp_conf: &str) -> Daemon {
        let dir = TempDir::new("frr");
        // FRR drops its capabilities after start, root included: the run directory must be
        // writable without CAP_DAC_OVERRIDE.
        let _ = Command::new("chmod")
            .args(["0777", dir.path.to_str().unwrap()])
            .status();
        let zconf = dir.join("zebra.conf");
        let bconf = dir.join("bgpd.conf");
        std::fs::write(&zconf, "hostname zebra\n").expect("zebra.conf");
        std::fs::write(&bconf, bgp_conf).expect("bgpd.conf");
        let run = dir.path.to_str().unwrap().to_string();
        let zserv = format!("{run}/zserv.api");
        let zebra = spawn(
            ns,
            &[
                "/usr/lib/frr/zebra",
                "-u",
                "root",
                "-g",
                "frrvty",
                "-f",
                zconf.to_str().unwrap(),
                "--vty_socket",
                &run,
                "-z",
                &zserv,
                "-i",
                &format!("{run}/zebra.pid"),
                "-P",
                "0",
                "--log",
                &format!("file:{run}/zebra.log"),
            ],
            &dir.join("zebra.out.log"),
            &[],
        );
        let mut d = Daemon {
            kind: "frr",
            children: vec![zebra],
            dir,
            ns: ns.name.clone(),
        };
        wait_for("zebra socket", Duration::from_secs(10), || {
            std::path::Path::new(&zserv).exists().then_some(())
        });
        let bgpd = spawn_bgpd(ns, &d.dir);
        d.children.push(bgpd);
        let vty = d.dir.join("bgpd.vty");
        wait_for("bgpd vty socket", Duration::from_secs(10), || {
            vty.exists().then_some(())
        });
        d
    }

    pub fn vtysh(&self, cmd: &str) -> String {
        let out = Command::new("vtysh")
            .args(["--vty_socket", self.dir.path.to_str().unwrap(), "-c", cmd])
            .output()
            .expect("vtysh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Apply configuration lines (as under `configure terminal`).
    pub fn vtysh_config(&self, lines: &[&str]) -> String {
        let mut args = vec![
            "--vty_socket".to_string(),
            self.dir.path.to_str().unwrap().to_string(),
            "-c".into(),
            "configure terminal".into(),
        ];
        for l in lines {
            args.push("-c".into());
            args.push(l.to_string());
        }
        let out = Command::new("vtysh").args(&args).output().expect("vtysh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// GoBGP with `toml` as its configuration; its gRPC API listens on the namespace's
    /// loopback.
    pub fn gobgp(ns: &Netns, toml: &str) -> Daemon {
        let dir = TempDir::new("gobgp");
        let cf = dir.join("gobgpd.toml");
        std::fs::write(&cf, toml).expect("gobgpd.toml");
        let child = spawn(
            ns,
            &[
                "gobgpd",
                "-f",
                cf.to_str().unwrap(),
                "--api-hosts",
                "127.0.0.1:50051",
                "--pprof-disable",
                "-p",
            ],
            &dir.join("gobgpd.log"),
            &[],
        );
        let d = Daemon {
            kind: "gobgp",
            children: vec![child],
            dir,
            ns: ns.name.clone(),
        };
        wait_for("gobgp API", Duration::from_secs(10), || {
            let o = d.gobgp_cli(&["global"]);
            o.status.success().then_some(())
        });
        d
    }

    pub fn gobgp_cli(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp", "--port", "50051"])
            .args(args)
            .output()
            .expect("gobgp")
    }

    /// ExaBGP with `conf`.
    pub fn exabgp(ns: &Netns, conf: &str) -> Daemon {
        let dir = TempDir::new("exa");
        let cf = dir.join("exabgp.conf");
        std::fs::write(&cf, conf).expect("exabgp.conf");
        let child = spawn(
            ns,
            &["exabgp", cf.to_str().unwrap()],
            &dir.join("exabgp.log"),
            &[
                ("exabgp.daemon.user", "root"),
                ("exabgp.daemon.daemonize", "false"),
                ("exabgp.api.cli", "false"),
                ("exabgp.log.destination", "stdout"),
                ("exabgp.daemon.drop", "false"),
                ("exabgp.reactor.speed", "0.01"),
            ],
        );
        Daemon {
            kind: "exabgp",
            children: vec![child],
            dir,
            ns: ns.name.clone(),
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.id()).collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.thaw();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
