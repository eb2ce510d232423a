//! The lab's hands on the machine: namespaces, veth pairs and processes, through `ip` and
//! `sh`. Everything it creates lives inside namespaces the lab made, so deleting those
//! namespaces (after stopping their processes) removes all of it.

use super::LabError;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run to completion; the error carries the command line and what it printed.
pub fn run(c: &mut Command) -> Result<String, LabError> {
    let line = format!(
        "{} {}",
        c.get_program().to_string_lossy(),
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            line: line.clone(),
            output: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut output = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if output.is_empty() {
            output = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Err(LabError::Command { line, output })
    }
}

pub fn ip(args: &[&str]) -> Result<String, LabError> {
    run(Command::new("ip").args(args))
}

/// A command to run inside namespace `ns`.
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

pub fn add_namespace(ns: &str) -> Result<(), LabError> {
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    Ok(())
}

pub fn namespace_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

/// A veth pair created straight into both namespaces, so no name is ever taken in the host's.
pub fn add_veth(ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) -> Result<(), LabError> {
    ip(&[
        "link", "add", "name", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns",
        ns_b,
    ])?;
    ip(&["-n", ns_a, "link", "set", if_a, "up"])?;
    ip(&["-n", ns_b, "link", "set", if_b, "up"])?;
    Ok(())
}

/// Start a long-running process in `ns`, detached from the caller's session so it outlives
/// `twill lab up`; output goes to `log`. Returns its pid (`ip netns exec` execs in place).
pub fn spawn_daemon(mut c: Command, log: &Path) -> Result<u32, LabError> {
    let f = std::fs::File::create(log).map_err(|e| LabError::Io {
        path: log.display().to_string(),
        source: e,
    })?;
    let line = format!("{c:?}");
    // SAFETY: `pre_exec` runs the closure between fork and exec; setsid(2) is
    // async-signal-safe and touches nothing of the parent.
    unsafe {
        c.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let child = c
        .stdin(Stdio::null())
        .stdout(f.try_clone().map_err(|e| LabError::Io {
            path: log.display().to_string(),
            source: e,
        })?)
        .stderr(f)
        .spawn()
        .map_err(|e| LabError::Command {
            line,
            output: e.to_string(),
        })?;
    Ok(child.id())
}

/// Pids of every process whose network namespace is `ns`.
pub fn pids_in(ns: &str) -> Vec<i32> {
    ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    // Reaped or zombie both count as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Stop every process inside the namespaces: SIGTERM, up to `grace` to exit, then SIGKILL.
pub fn stop_processes(namespaces: &[String], grace: Duration) {
    let pids: Vec<i32> = namespaces.iter().flat_map(|n| pids_in(n)).collect();
    for p in &pids {
        // Pids that live in the lab's own namespaces; one already gone is no error.
        let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in pids.iter().filter(|p| alive(**p)) {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    for _ in 0..40 {
        if !pids.iter().any(|p| alive(*p)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll `check` until it gives a value or `limit` passes.
pub fn poll<T>(
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}
