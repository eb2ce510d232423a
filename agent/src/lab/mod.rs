//! `twill lab up | test | stop | start | down`: a whole fabric on one machine, in network namespaces, from a
//! containerlab topology file. A node whose image is Twill's runs the local `twill` binary,
//! FRR / BIRD / GoBGP images run the local daemon with the bound configuration, every other
//! image is a bare namespace; `exec` lines run inside the node's namespace and `links` become
//! veth pairs. Twill nodes get pods through the CNI plugin.

mod check;
mod container;
mod host;
mod lifecycle;
mod needs;
mod neigh;
mod state;
mod topology;
mod up;
mod workloads;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use check::test;
pub use lifecycle::{start, stop};
pub use up::{up, UpOptions};
pub use workloads::{run as change_workloads, Change};

/// Where labs keep their state when `--dir` is not given.
pub const DEFAULT_DIR: &str = "/run/twill-lab";
/// The topology `twill lab up` builds with no argument.
pub const DEFAULT_TOPOLOGY: &str = "two-racks-vxlan";
/// Where shipped topologies live, relative to the repository root.
const TOPOLOGY_DIR: &str = "deploy/containerlab";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("twill lab needs root (it creates network namespaces); run it with sudo")]
    NotRoot,
    #[error("topology {0}")]
    Topology(#[from] topology::TopologyError),
    #[error("no topology {name}: looked for {looked}")]
    NoTopology { name: String, looked: String },
    #[error("this machine lacks what the topology needs:\n  {}", .0.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n  "))]
    Missing(Vec<needs::Missing>),
    #[error("lab {name} is already up (state in {dir}); run `twill lab down` first")]
    AlreadyUp { name: String, dir: String },
    #[error("network namespace {0} already exists; another lab or a leftover? (ip netns del {0})")]
    NamespaceTaken(String),
    #[error("a container named {0} already exists; another lab or a leftover? (docker rm -f {0})")]
    ContainerTaken(String),
    #[error("no lab named {name} is up in {dir}")]
    NotUp { name: String, dir: String },
    #[error("no lab is up in {0}")]
    NoneUp(String),
    #[error("several labs are up ({0}); name one")]
    Several(String),
    #[error("{line}: {output}")]
    Command { line: String, output: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    State { path: String, reason: String },
    #[error("node {node}: {reason}")]
    Node { node: String, reason: String },
    #[error("the fabric did not converge within {secs} s:\n  {}\nlogs are in {dir}", .waiting.join("\n  "))]
    NotConverged {
        secs: u64,
        waiting: Vec<String>,
        dir: String,
    },
}

/// Where a topology argument points: a file path, or a name under `deploy/containerlab/` of
/// the current directory or of the repository this binary was built in.
pub fn resolve_topology(arg: Option<&str>) -> Result<PathBuf, LabError> {
    let arg = arg.unwrap_or(DEFAULT_TOPOLOGY);
    let as_path = Path::new(arg);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let file = format!("{arg}.clab.yml");
    let mut roots = vec![PathBuf::from(".")];
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/twill → the repository root.
        roots.extend(exe.ancestors().skip(3).take(1).map(Path::to_path_buf));
    }
    let candidates: Vec<PathBuf> = roots
        .iter()
        .map(|r| r.join(TOPOLOGY_DIR).join(&file))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| LabError::NoTopology {
            name: arg.to_string(),
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Stop every process in the lab's namespaces, delete them, and remove its directory.
pub fn down(base: &Path, name: Option<&str>) -> Result<String, LabError> {
    let dir = state::find(base, name)?;
    let st = state::LabState::load(&dir)?;
    // Containers first; if one cannot be removed, stop here with the state kept, so a
    // second `down` finds it again.
    for n in st.nodes.iter().filter(|n| n.image.is_some()) {
        container::remove(n)?;
    }
    let mut namespaces = st.namespaces.clone();
    namespaces.retain(|n| host::namespace_exists(n));
    host::stop_processes(&namespaces, Duration::from_secs(5));
    for ns in namespaces.iter().rev() {
        host::ip(&["netns", "del", ns])?;
    }
    neigh::restore(&st.neigh);
    std::fs::remove_dir_all(&dir).map_err(|source| LabError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(format!(
        "lab {} is down: {} namespaces and their processes removed\n",
        st.name,
        namespaces.len()
    ))
}

pub(super) fn must_be_root() -> Result<(), LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    Ok(())
}
