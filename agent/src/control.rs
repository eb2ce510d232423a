//! The control socket: one JSON line answers each request line. A plain word (`status`) gets
//! [`Status`]; a JSON [`Request`] (from the CNI plugin and `twill policy`) gets its own answer.
//! Both ends live here: the agent's server ([`serve`]) and the clients ([`ask`], [`request`]).

use crate::state::NodeState;
use crate::status::Status;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tracing::debug;

pub async fn serve(path: &Path, shared: Arc<NodeState>) -> std::io::Result<JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket file left by a killed agent would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(r).read_line(&mut line).await.is_err() {
                    return;
                }
                debug!(request = line.trim(), "control request");
                let mut body = match serde_json::from_str::<Request>(line.trim()) {
                    Ok(r) => serde_json::to_string(&answer(&shared, r).await).unwrap_or_default(),
                    Err(_) => serde_json::to_string(&shared.status().await).unwrap_or_default(),
                };
                body.push('\n');
                let _ = w.write_all(body.as_bytes()).await;
            });
        }
    }))
}

/// What the CNI plugin and `twill policy` ask.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub enum Request {
    /// A pod got addresses on this node: answer once its rules are in force.
    PodAdded {
        namespace: String,
        name: String,
        ips: Vec<IpAddr>,
    },
    PodDeleted {
        namespace: String,
        name: String,
    },
    /// The policies that select a pod (`namespace/name`), or all of this node's.
    Policies {
        pod: Option<String>,
    },
    /// Would a new connection be allowed? Ends are `namespace/name` or an address.
    Explain {
        from: String,
        to: String,
        port: u16,
        protocol: String,
    },
}

/// The answer to a [`Request`]: `ok`, or `error`, with what was asked for.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

async fn answer(shared: &NodeState, r: Request) -> Answer {
    let Some(policy) = &shared.policy else {
        return Answer {
            ok: false,
            error: Some(
                "this agent does not enforce NetworkPolicy (no --workloads, not --kubernetes)"
                    .into(),
            ),
            lines: Vec::new(),
        };
    };
    let result = match r {
        Request::PodAdded {
            namespace,
            name,
            ips,
        } => policy
            .pod_added(namespace, name, ips)
            .await
            .map(|()| Vec::new()),
        Request::PodDeleted { namespace, name } => {
            policy.pod_deleted(namespace, name);
            Ok(Vec::new())
        }
        Request::Policies { pod } => policy.policies(pod.as_deref()),
        Request::Explain {
            from,
            to,
            port,
            protocol,
        } => policy.explain(&from, &to, port, &protocol),
    };
    match result {
        Ok(lines) => Answer {
            ok: true,
            error: None,
            lines,
        },
        Err(e) => Answer {
            ok: false,
            error: Some(e),
            lines: Vec::new(),
        },
    }
}

/// Send one [`Request`]; `None` when no agent answers within `timeout`.
pub async fn request(socket: &Path, r: &Request, timeout: std::time::Duration) -> Option<Answer> {
    let line = serde_json::to_string(r).ok()?;
    tokio::time::timeout(timeout, exchange(socket, &line))
        .await
        .ok()
        .flatten()
}

/// Ask a running agent over its control socket; `None` when none answers there.
pub async fn ask(socket: &Path, what: &str) -> Option<Status> {
    exchange(socket, what).await
}

/// One line out, one JSON line back.
async fn exchange<T: serde::de::DeserializeOwned>(socket: &Path, line: &str) -> Option<T> {
    let mut s = tokio::net::UnixStream::connect(socket).await.ok()?;
    s.write_all(format!("{line}\n").as_bytes()).await.ok()?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).await.ok()?;
    serde_json::from_str(&reply).ok()
}
