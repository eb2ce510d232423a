//! Docker containers as lab nodes: a container per node with no network of its own
//! (`--network none`), its network namespace named for `ip netns` so the lab can wire links
//! into it, as containerlab does. Removed on drop (`docker rm -f`). Docker's own iptables
//! rules live in the host namespace; nothing here uses them.

use crate::netns::{unique, Netns};
use std::process::{Command, Output};

/// Whether a Docker engine answers here (the reason if not).
pub fn docker_available() -> Result<(), String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(format!("no docker command: {e}")),
    }
}

/// `docker ARGS`, panicking with its output if it fails; stdout.
pub fn docker(args: &[&str]) -> String {
    let o = docker_output(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

pub struct Container {
    pub name: String,
    /// The container's network namespace, named for `ip netns`.
    pub ns: Netns,
}

impl Container {
    /// `docker run -d --network none --name <unique> OPTIONS IMAGE COMMAND…`.
    pub fn run(tag: &str, options: &[&str], image: &str, command: &[&str]) -> Container {
        let name = unique(tag);
        let mut args = vec!["run", "-d", "--network", "none", "--name", &name];
        args.extend_from_slice(options);
        args.push(image);
        args.extend_from_slice(command);
        docker(&args);
        // Until the handle exists, a guard removes the container if a step below fails.
        struct Rm<'a>(&'a str);
        impl Drop for Rm<'_> {
            fn drop(&mut self) {
                let _ = docker_output(&["rm", "-f", self.0]);
            }
        }
        let guard = Rm(&name);
        let pid: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", &name])
            .parse()
            .expect("pid");
        assert!(pid != 0, "container {name} is not running:\n{}", {
            let o = docker_output(&["logs", &name]);
            String::from_utf8_lossy(&o.stderr).into_owned()
        });
        let ns = Netns::attach(tag, pid);
        std::mem::forget(guard);
        Container { name, ns }
    }

    pub fn logs(&self) -> String {
        let o = docker_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- container {} ---\n{}", self.name, self.logs());
        }
        let _ = docker_output(&["rm", "-f", &self.name]);
    }
}
