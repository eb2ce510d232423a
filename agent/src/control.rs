//! The control socket: one JSON line of [`Status`] per request line. Both ends live here: the
//! agent's server ([`serve`]) and the client the CLI and the lab use ([`ask`]).

use crate::state::NodeState;
use crate::status::Status;
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
                let status = shared.status().await;
                let mut body = serde_json::to_string(&status).unwrap_or_default();
                body.push('\n');
                let _ = w.write_all(body.as_bytes()).await;
            });
        }
    }))
}

/// Ask a running agent over its control socket; `None` when none answers there.
pub async fn ask(socket: &Path, what: &str) -> Option<Status> {
    let mut s = tokio::net::UnixStream::connect(socket).await.ok()?;
    s.write_all(format!("{what}\n").as_bytes()).await.ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).await.ok()?;
    serde_json::from_str(&line).ok()
}
