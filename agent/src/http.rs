//! `/metrics` (Prometheus text format), `/healthz` and `/readyz`.
//!
//! Written by hand on purpose: three fixed GET endpoints on a loopback address, one request per
//! connection. An HTTP framework (hyper and its stack) would add dozens of crates and minutes of
//! build time to the agent for no behaviour we need.

use crate::node::state::NodeState as Shared;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The main loop turns every 500 ms; three missed turns make the agent unhealthy.
const STALE: Duration = Duration::from_millis(1500);

/// The agent's state once it runs; empty while it still waits for its node in the cluster view
/// (the listener is up from the start so that a liveness probe does not kill a waiting agent).
pub type Endpoint = Arc<OnceLock<Arc<Shared>>>;

pub async fn serve(addr: SocketAddr, agent: Endpoint) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let agent = agent.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let (code, body) = match agent.get() {
                    Some(shared) => respond(path, shared).await,
                    None => waiting(path),
                };
                let reply = format!(
                    "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    }))
}

fn waiting(path: &str) -> (&'static str, String) {
    match path {
        "/healthz" => (
            "200 OK",
            "ok (waiting for this node in the cluster view)\n".into(),
        ),
        "/readyz" => (
            "503 Service Unavailable",
            "waiting for this node in the cluster view\n".into(),
        ),
        "/metrics" => ("200 OK", String::new()),
        _ => ("404 Not Found", "not found\n".into()),
    }
}

async fn respond(path: &str, shared: &Shared) -> (&'static str, String) {
    match path {
        "/healthz" => {
            let alive = Duration::from_millis(shared.alive_ms.load(Ordering::Relaxed));
            if shared.started.elapsed().saturating_sub(alive) < STALE {
                ("200 OK", "ok\n".into())
            } else {
                ("503 Service Unavailable", "agent loop stalled\n".into())
            }
        }
        "/readyz" => {
            if shared.ready.load(Ordering::Relaxed) {
                ("200 OK", "ready\n".into())
            } else {
                (
                    "503 Service Unavailable",
                    "cluster sessions not yet established\n".into(),
                )
            }
        }
        "/metrics" => ("200 OK", metrics(shared).await),
        _ => ("404 Not Found", "not found\n".into()),
    }
}

/// Name, type, help, and how to read it from a peer's snapshot.
type PeerMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&speaker::PeerSnapshot) -> u64,
);

async fn metrics(shared: &Shared) -> String {
    let mut m = String::new();
    let snap = shared.speaker.snapshot().await.unwrap_or_default();
    let _ = writeln!(
        m,
        "# HELP twill_bgp_sessions BGP sessions by state.\n# TYPE twill_bgp_sessions gauge"
    );
    for state in [
        "Idle",
        "Connect",
        "Active",
        "OpenSent",
        "OpenConfirm",
        "Established",
    ] {
        let n = snap.iter().filter(|p| p.state.to_string() == state).count();
        let _ = writeln!(m, "twill_bgp_sessions{{state=\"{state}\"}} {n}");
    }
    let per_peer: [PeerMetric; 5] = [
        (
            "twill_bgp_updates_received_total",
            "counter",
            "UPDATE messages received.",
            |p| p.updates_received,
        ),
        (
            "twill_bgp_updates_sent_total",
            "counter",
            "UPDATE messages sent.",
            |p| p.updates_sent,
        ),
        (
            "twill_bgp_prefixes_received",
            "gauge",
            "Prefixes received from the peer.",
            |p| p.prefixes_received as u64,
        ),
        (
            "twill_bgp_prefixes_accepted",
            "gauge",
            "Prefixes accepted by the import filter.",
            |p| p.prefixes_accepted as u64,
        ),
        (
            "twill_bgp_prefixes_advertised",
            "gauge",
            "Prefixes advertised to the peer.",
            |p| p.prefixes_advertised as u64,
        ),
    ];
    for (name, kind, help, get) in per_peer {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in &snap {
            let _ = writeln!(m, "{name}{{peer=\"{}\"}} {}", p.address, get(p));
        }
    }
    let c = shared.programmer.counters();
    let routes: [(&str, &str, &str, u64); 6] = [
        (
            "twill_routes_programmed",
            "gauge",
            "Kernel routes of protocol twill.",
            c.programmed,
        ),
        (
            "twill_routes_added_total",
            "counter",
            "Routes added.",
            c.added,
        ),
        (
            "twill_routes_replaced_total",
            "counter",
            "Routes replaced.",
            c.replaced,
        ),
        (
            "twill_routes_deleted_total",
            "counter",
            "Routes deleted.",
            c.deleted,
        ),
        (
            "twill_routes_repaired_total",
            "counter",
            "Operations that undid a change made behind Twill's back.",
            c.repaired,
        ),
        (
            "twill_route_errors_total",
            "counter",
            "Route operations the kernel refused.",
            c.errors,
        ),
    ];
    for (name, kind, help, v) in routes {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    let _ = writeln!(
        m,
        "# HELP twill_route_reconcile_seconds Duration of the last reconcile.\n# TYPE twill_route_reconcile_seconds gauge\ntwill_route_reconcile_seconds {:.6}",
        c.last_reconcile.as_secs_f64()
    );
    let _ = writeln!(
        m,
        "# HELP twill_ready Whether the agent is ready.\n# TYPE twill_ready gauge\ntwill_ready {}",
        u8::from(shared.ready.load(Ordering::Relaxed))
    );
    m
}
