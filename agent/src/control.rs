//! The control socket: one JSON line of [`crate::status::Status`] per request line.

use crate::agent::{AgentError, Shared};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tracing::debug;

pub async fn serve(path: &Path, shared: Arc<Shared>) -> Result<JoinHandle<()>, AgentError> {
    let io = |source| AgentError::Io {
        what: "control socket",
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // A socket file left by a killed agent would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(io)?;
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
