//! `twill lab stop <node>` / `twill lab start <node>`: take one node's daemons down and bring
//! them back, as `docker stop` / `docker start` would a containerlab node — the way to watch
//! what the rest of the fabric does while a node (a route reflector, say) is away. The node's
//! namespace, links, addresses and pods stay.

use super::host::stop_processes;
use super::state::{self, LabState, NodeState};
use super::topology::Topology;
use super::up::{io, start_node, wait_converged, CONVERGE_LIMIT};
use super::{must_be_root, LabError};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::Duration;

fn node<'a>(st: &'a LabState, name: &str) -> Result<&'a NodeState, LabError> {
    st.nodes
        .iter()
        .find(|n| n.name == name)
        .ok_or_else(|| LabError::Node {
            node: name.to_string(),
            reason: format!(
                "is not a node of lab {} (nodes: {})",
                st.name,
                st.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// Stop every process in the node's namespace: SIGTERM with a grace period (what a rolling
/// update does), or SIGKILL at once (`kill`: a crash).
pub fn stop(base: &Path, lab: Option<&str>, name: &str, sigkill: bool) -> Result<String, LabError> {
    must_be_root()?;
    let st = LabState::load(&state::find(base, lab)?)?;
    let n = node(&st, name)?;
    if n.image.is_some() {
        // The agent container only: the node container keeps the namespace, links and pods.
        super::container::stop_agent(n, sigkill)?;
        return Ok(format!(
            "lab {}: {name}'s agent container stopped ({})\n",
            st.name,
            if sigkill { "SIGKILL" } else { "SIGTERM" }
        ));
    }
    let pids = super::host::pids_in(&n.namespace);
    if sigkill {
        for p in &pids {
            // Pids inside the lab's own namespace.
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
    }
    stop_processes(std::slice::from_ref(&n.namespace), Duration::from_secs(10));
    Ok(format!(
        "lab {}: {name} stopped ({} process(es), {})\n",
        st.name,
        pids.len(),
        if sigkill { "SIGKILL" } else { "SIGTERM" }
    ))
}

/// Start the node's daemons again as `lab up` did, and wait until the fabric has converged.
pub fn start(base: &Path, lab: Option<&str>, name: &str) -> Result<String, LabError> {
    must_be_root()?;
    let st = LabState::load(&state::find(base, lab)?)?;
    let n = node(&st, name)?;
    if n.image.is_none() && !super::host::pids_in(&n.namespace).is_empty() {
        return Err(LabError::Node {
            node: name.to_string(),
            reason: "is running; `twill lab stop` it first".into(),
        });
    }
    let topo = Topology::load(&st.topology)?;
    let spec = topo
        .nodes
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| LabError::Node {
            node: name.to_string(),
            reason: format!("is no longer in {}", st.topology.display()),
        })?;
    let twill = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    let mut notes = Vec::new();
    start_node(spec, n, &twill, &mut notes)?;
    wait_converged(&st, CONVERGE_LIMIT).map_err(|waiting| LabError::NotConverged {
        secs: CONVERGE_LIMIT.as_secs(),
        waiting,
        dir: st.dir.display().to_string(),
    })?;
    Ok(format!(
        "lab {}: {name} started; the fabric has converged\n",
        st.name
    ))
}
