//! What `twill lab up` built, written as it goes so that `lab test` can find the pods and
//! sockets and `lab down` can remove everything, even after a half-finished `up`.

use super::topology::Role;
use super::LabError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "lab.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub role: Role,
    pub namespace: String,
    /// The node's private directory: logs, agent socket, state, IPAM data.
    pub dir: PathBuf,
    /// The image a Twill node runs from (`lab up --image`): the node and its agent are then
    /// containers (see `lab::container`); None: a namespace and a local `twill` process.
    #[serde(default)]
    pub image: Option<String>,
}

impl NodeState {
    /// The agent's control socket (Twill nodes).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("twill.sock")
    }
    /// The agent's `--state-dir`, read by the CNI plugin.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    pub node: String,
    pub namespace: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub topology: PathBuf,
    pub dir: PathBuf,
    /// Every namespace created, in order (nodes, then pods).
    pub namespaces: Vec<String>,
    pub nodes: Vec<NodeState>,
    pub pods: Vec<PodState>,
    /// The host's neighbour-table limits this lab raised, to put back on `down`.
    #[serde(default)]
    pub neigh: Vec<super::neigh::Sizing>,
}

impl LabState {
    pub fn save(&self) -> Result<(), LabError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(".lab.json.tmp");
        let io = |source| LabError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("json")).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    pub fn load(dir: &Path) -> Result<LabState, LabError> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| LabError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| LabError::State {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    pub fn twill_nodes(&self) -> impl Iterator<Item = &NodeState> {
        self.nodes.iter().filter(|n| n.role == Role::Twill)
    }
}

/// The lab to act on in `base`: the one named, or the only one there.
pub fn find(base: &Path, name: Option<&str>) -> Result<PathBuf, LabError> {
    if let Some(n) = name {
        let d = base.join(n);
        return if d.join(STATE_FILE).exists() {
            Ok(d)
        } else {
            Err(LabError::NotUp {
                name: n.to_string(),
                dir: base.display().to_string(),
            })
        };
    }
    let labs: Vec<PathBuf> = std::fs::read_dir(base)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join(STATE_FILE).exists())
                .collect()
        })
        .unwrap_or_default();
    match labs.len() {
        0 => Err(LabError::NoneUp(base.display().to_string())),
        1 => Ok(labs.into_iter().next().expect("one")),
        _ => Err(LabError::Several(
            labs.iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}
