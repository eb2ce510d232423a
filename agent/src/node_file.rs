//! `<state dir>/node.json`: what the agent tells the CNI plugin (and the lab) about its node.
//! One type for the writer and every reader, so the file's shape lives in one place.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const NAME: &str = "node.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFile {
    pub name: String,
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<String>,
    pub mtu: u32,
    /// Set when this node enforces NetworkPolicy and pods wait for their rules: the CNI
    /// plugin's ADD tells the agent on this socket and waits at most `seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_wait: Option<PolicyWait>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyWait {
    pub socket: PathBuf,
    pub seconds: u32,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(NAME)
}

#[derive(Debug, thiserror::Error)]
pub enum NodeFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {reason}")]
    Json { path: String, reason: String },
}

impl NodeFile {
    /// Written whole and renamed into place: a reader never sees half a file.
    pub fn write(&self, dir: &Path) -> Result<(), NodeFileError> {
        let io = |source| NodeFileError::Io {
            path: path(dir).display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join(".node.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).expect("json")).map_err(io)?;
        std::fs::rename(tmp, path(dir)).map_err(io)
    }

    pub fn read(dir: &Path) -> Result<NodeFile, NodeFileError> {
        let p = path(dir);
        let text = std::fs::read_to_string(&p).map_err(|source| NodeFileError::Io {
            path: p.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| NodeFileError::Json {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
    }
}
