//! The commands the enforcer runs: `iptables-save` / `iptables-restore` (and the `ip6tables`
//! pair), `ipset save` / `ipset restore`. Text goes in on stdin, so a batch of any size is one
//! process. Blocking: the enforcer calls these from `spawn_blocking`.

use crate::ruleset::{Family, Table};
use std::io::Write;
use std::process::{Command, Stdio};

/// Which programs to run (names resolved on `PATH`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tools {
    pub iptables_save: String,
    pub iptables_restore: String,
    pub ip6tables_save: String,
    pub ip6tables_restore: String,
    pub ipset: String,
    /// Put before every program: `ip netns exec NAME` in tests, empty in the agent (which
    /// already runs in the node's namespace).
    pub prefix: Vec<String>,
}

impl Default for Tools {
    fn default() -> Tools {
        Tools {
            iptables_save: "iptables-save".into(),
            iptables_restore: "iptables-restore".into(),
            ip6tables_save: "ip6tables-save".into(),
            ip6tables_restore: "ip6tables-restore".into(),
            ipset: "ipset".into(),
            prefix: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{program}: cannot run: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
}

impl ExecError {
    /// The program is not installed (as opposed to failing when run).
    pub fn not_installed(&self) -> bool {
        matches!(self, ExecError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

impl Tools {
    /// `iptables-save -c` of the given tables, one after the other (never all tables: the
    /// others are of no interest, and kube-proxy's nat table is large).
    pub fn save(&self, family: Family, tables: &[Table]) -> Result<String, ExecError> {
        let p = self.save_program(family);
        let mut text = String::new();
        for t in tables {
            text.push_str(&self.run(p, &["-c", "-t", t.name()], None)?);
        }
        Ok(text)
    }

    pub fn restore(&self, family: Family, text: &str) -> Result<String, ExecError> {
        let p = match family {
            Family::V4 => &self.iptables_restore,
            Family::V6 => &self.ip6tables_restore,
        };
        // -w: wait for the xtables lock rather than fail when kube-proxy holds it.
        self.run(p, &["--noflush", "-w", "5"], Some(text))
    }

    /// This family's `iptables-save` with no arguments: every table that exists. Naming a
    /// table would create it (and, for legacy, load its kernel module).
    pub fn save_existing(&self, family: Family) -> Result<String, ExecError> {
        self.run(self.save_program(family), &[], None)
    }

    /// This family's `iptables-save` program.
    pub fn save_program(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.iptables_save,
            Family::V6 => &self.ip6tables_save,
        }
    }

    pub fn ipset_save(&self) -> Result<String, ExecError> {
        self.run(&self.ipset, &["save"], None)
    }

    pub fn ipset_restore(&self, text: &str) -> Result<String, ExecError> {
        self.run(&self.ipset, &["restore"], Some(text))
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, ExecError> {
        let (first, rest) = match self.prefix.split_first() {
            Some((f, r)) => (
                f.as_str(),
                r.iter().map(String::as_str).chain([program]).collect(),
            ),
            None => (program, Vec::new()),
        };
        run(first, &rest, program, args, stdin)
    }
}

fn run(
    first: &str,
    before: &[&str],
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, ExecError> {
    let mut child = Command::new(first)
        .args(before)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ExecError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error shows up as the program's own failure below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| ExecError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(ExecError::Failed {
            program: program.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
