//! `twill lab test`: every pod pings every other pod; the reachability matrix and each node's
//! `twill status` are printed; any unreachable pair fails the run.

use super::host::{in_ns, run};
use super::state::{self, LabState, PodState};
use super::up::{statuses, wait_converged};
use super::{must_be_root, LabError};
use std::path::Path;
use std::time::Duration;

/// How long `test` first waits for the fabric (a lab just brought up may still be settling).
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Attempts per pair: the first echo of a pair may be spent on ARP along the path.
const ATTEMPTS: usize = 3;

/// The report and whether every pair was reachable.
pub fn test(base: &Path, name: Option<&str>) -> Result<(String, bool), LabError> {
    must_be_root()?;
    let dir = state::find(base, name)?;
    let st = LabState::load(&dir)?;
    let mut out = String::new();
    if let Err(waiting) = wait_converged(&st, SETTLE_LIMIT) {
        out += &format!(
            "the fabric has not converged after {} s:\n  {}\n",
            SETTLE_LIMIT.as_secs(),
            waiting.join("\n  ")
        );
    }
    let results = ping_all(&st.pods);
    let (matrix, failed) = matrix(&st.pods, &results);
    out += &format!(
        "pod reachability in lab {} (row pings column):\n{matrix}",
        st.name
    );
    let pairs = st.pods.len() * st.pods.len().saturating_sub(1);
    if failed.is_empty() {
        out += &format!("all {pairs} pod pairs reachable\n");
    } else {
        const SHOWN: usize = 8;
        let more = failed.len().saturating_sub(SHOWN);
        out += &format!(
            "FAILED: {} of {pairs} pod pairs unreachable: {}{}\n",
            failed.len(),
            failed[..failed.len().min(SHOWN)].join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    for (node, status) in statuses(&st) {
        out += &format!("\n== {node} ==\n");
        match status {
            Some(s) => {
                out += &s.peers_table();
                out += &s.routes_table(true);
            }
            None => out += "no agent is running\n",
        }
    }
    Ok((out, failed.is_empty() && pairs > 0))
}

fn reachable(from: &PodState, to: &PodState) -> bool {
    (0..ATTEMPTS).any(|_| {
        run(in_ns(&from.namespace, "ping").args(["-c", "1", "-W", "1", "-q", &to.address])).is_ok()
    })
}

/// `results[i][j]`: pod i reached pod j. One thread per source pod.
fn ping_all(pods: &[PodState]) -> Vec<Vec<bool>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, from)| {
                s.spawn(move || {
                    pods.iter()
                        .enumerate()
                        .map(|(j, to)| i == j || reachable(from, to))
                        .collect::<Vec<bool>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ping thread"))
            .collect()
    })
}

/// The matrix as text, and the failed pairs as `from → to`.
fn matrix(pods: &[PodState], results: &[Vec<bool>]) -> (String, Vec<String>) {
    let w = pods.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
    let label_w = pods
        .iter()
        .map(|p| p.name.len() + p.address.len() + 3)
        .max()
        .unwrap_or(0);
    let mut s = format!("{:label_w$}", "");
    for p in pods {
        s += &format!(" {:>w$}", p.name);
    }
    s += "\n";
    let mut failed = Vec::new();
    for (i, from) in pods.iter().enumerate() {
        s += &format!("{:label_w$}", format!("{} ({})", from.name, from.address));
        for (j, to) in pods.iter().enumerate() {
            let cell = if i == j {
                "-"
            } else if results[i][j] {
                "ok"
            } else {
                failed.push(format!("{} → {}", from.name, to.name));
                "FAIL"
            };
            s += &format!(" {cell:>w$}");
        }
        s += "\n";
    }
    (s, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, address: &str) -> PodState {
        PodState {
            name: name.into(),
            node: String::new(),
            namespace: String::new(),
            address: address.into(),
        }
    }

    #[test]
    fn matrix_marks_and_lists_failures() {
        let pods = [pod("a1-pod1", "10.244.1.2"), pod("b1-pod1", "10.244.3.2")];
        let (text, failed) = matrix(&pods, &[vec![true, true], vec![false, true]]);
        assert_eq!(failed, ["b1-pod1 → a1-pod1"]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("a1-pod1 (10.244.1.2)"), "{text}");
        assert!(lines[1].ends_with("-      ok"), "{text}");
        assert!(lines[2].ends_with("FAIL       -"), "{text}");
    }
}
