//! What can stop the agent from starting: each names the file, address or object involved.

use cluster::ViewError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cluster view {path}: {source}")]
    View { path: String, source: ViewError },
    #[error("--node {0} is not in the cluster view's nodes")]
    UnknownNode(String),
    #[error("fabric: {0}")]
    Fabric(#[from] ipip::Error),
    #[error("{0}")]
    Kubernetes(#[from] cluster::k8s::watch::K8sError),
    #[error("the cluster view source ended before this node appeared in it")]
    NoView,
    #[error("route programmer: {0}")]
    Programmer(#[from] felix_lite::Error),
    #[error("speaker: {0}")]
    Speaker(#[from] speaker::SpeakerError),
    #[error("cannot write the node file: {0}")]
    NodeFile(crate::node_file::NodeFileError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}
