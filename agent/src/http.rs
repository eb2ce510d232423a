//! `/metrics` (OpenMetrics text), `/healthz` and `/readyz`, served by axum.
//!
//! The listener is up before the node's state exists (the agent may wait minutes for its pod
//! CIDR), so the handlers read it through [`Endpoint`], which the main loop fills once.

use crate::metrics::{self, Scrape};
use crate::state::NodeState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::warn;

/// The main loop turns every 500 ms; three missed turns make the agent unhealthy.
const STALE: Duration = Duration::from_millis(1500);

/// The node's state once the agent runs; empty while it still waits for its node in the
/// cluster view (a liveness probe must not kill a waiting agent).
pub type Endpoint = Arc<OnceLock<Arc<NodeState>>>;

pub async fn serve(addr: SocketAddr, endpoint: Endpoint) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .with_state(endpoint);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "HTTP listener stopped");
        }
    }))
}

type Reply = (StatusCode, &'static str);

async fn healthz(State(ep): State<Endpoint>) -> Reply {
    let Some(s) = ep.get() else {
        return (
            StatusCode::OK,
            "ok (waiting for this node in the cluster view)\n",
        );
    };
    let alive = Duration::from_millis(s.alive_ms.load(Ordering::Relaxed));
    if s.started.elapsed().saturating_sub(alive) < STALE {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "agent loop stalled\n")
    }
}

async fn readyz(State(ep): State<Endpoint>) -> (StatusCode, String) {
    let (code, text): Reply = match ep.get() {
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for this node in the cluster view\n",
        ),
        Some(s) if s.ready.load(Ordering::Relaxed) => {
            // The previous rules stay in force, but not the ones asked for: say so.
            if let Some(e) = s.policy.as_ref().and_then(|p| p.status().error) {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("network policy not in force (the previous rules are): {e}\n"),
                );
            }
            (StatusCode::OK, "ready\n")
        }
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster sessions not yet established\n",
        ),
    };
    (code, text.to_string())
}

async fn scrape(State(ep): State<Endpoint>) -> impl IntoResponse {
    let scrape = match ep.get() {
        None => None,
        Some(s) => Some(Scrape {
            peers: s.speaker.snapshot().await.unwrap_or_default(),
            routes: s.programmer.counters(),
            ready: s.ready.load(Ordering::Relaxed),
            policy: s.policy.as_ref().map(|p| p.status()),
            nat: Some(s.nat_status()),
            refused: s.speaker.refused_connections().await.unwrap_or(0),
            watch: s.watch.as_ref().map(|w| metrics::WatchCounts {
                node_events: w.node_events.load(Ordering::Relaxed),
                node_updates_ignored: w.node_updates_ignored.load(Ordering::Relaxed),
                views_built: w.views_built.load(Ordering::Relaxed),
                views_published: w.views_published.load(Ordering::Relaxed),
            }),
        }),
    };
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(scrape),
    )
}
