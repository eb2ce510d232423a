//! The handle the rest of Twill uses: configure, subscribe to best routes, read snapshots.

use crate::config::{ConfigError, PeerConfig, SpeakerConfig};
use crate::core::{Core, Input, PeerSnapshot, RouteEvent, ShutdownMode};
use crate::transport::{self, Command};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use tokio::sync::{mpsc, oneshot, watch};

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the speaker has stopped")]
    Stopped,
}

/// A running speaker. Cheap to clone; every clone talks to the same driver task.
#[derive(Clone)]
pub struct Speaker {
    tx: mpsc::UnboundedSender<Command>,
    done: watch::Receiver<bool>,
}

impl Speaker {
    /// Bind the listener and start the driver on the current tokio runtime. Sockets are
    /// created on that runtime's threads, so a speaker started on a thread that entered a
    /// network namespace lives in that namespace.
    pub async fn start(cfg: SpeakerConfig) -> Result<Speaker, SpeakerError> {
        let core = Core::new(cfg.clone())?;
        let listener = if cfg.listen_port == 0 {
            None
        } else {
            let addr = SocketAddr::new(cfg.listen_address, cfg.listen_port);
            Some(
                transport::bind(addr)
                    .await
                    .map_err(|source| SpeakerError::Listen { addr, source })?,
            )
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(false);
        tokio::spawn(async move {
            transport::run(core, listener, rx).await;
            let _ = done_tx.send(true);
        });
        Ok(Speaker { tx, done })
    }

    fn send(&self, c: Command) -> Result<(), SpeakerError> {
        self.tx.send(c).map_err(|_| SpeakerError::Stopped)
    }

    pub fn add_peer(&self, p: PeerConfig) -> Result<(), SpeakerError> {
        p.validate()?;
        self.send(Command::Input(Box::new(Input::AddPeer(p))))
    }

    /// Change a peer; its session is only reset if the change requires it.
    pub fn update_peer(&self, p: PeerConfig) -> Result<(), SpeakerError> {
        p.validate()?;
        self.send(Command::Input(Box::new(Input::UpdatePeer(p))))
    }

    pub fn remove_peer(&self, addr: IpAddr) -> Result<(), SpeakerError> {
        self.send(Command::Input(Box::new(Input::RemovePeer(addr))))
    }

    /// Replace the set of prefixes this speaker originates.
    pub fn set_originated(&self, prefixes: Vec<IpNet>) -> Result<(), SpeakerError> {
        self.send(Command::Input(Box::new(Input::SetOriginated(prefixes))))
    }

    /// Start (Some) or stop (None) reflecting routes with this cluster ID; no session resets.
    pub fn set_cluster_id(&self, id: Option<std::net::Ipv4Addr>) -> Result<(), SpeakerError> {
        self.send(Command::Input(Box::new(Input::SetClusterId(id))))
    }

    pub async fn snapshot(&self) -> Result<Vec<PeerSnapshot>, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Snapshot(tx))?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Every current best route (the Loc-RIB).
    pub async fn routes(&self) -> Result<Vec<RouteEvent>, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Routes(tx))?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Number of prefixes in the Loc-RIB (cheap, unlike [`Speaker::routes`]).
    pub async fn loc_rib_len(&self) -> Result<usize, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::RibLen(tx))?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Connections refused because they came from no configured peer's address, since start.
    pub async fn refused_connections(&self) -> Result<u64, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Refused(tx))?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// How many Loc-RIB prefixes only these peers provide ([`Core::only_from`]).
    pub async fn only_from(&self, peers: Vec<IpAddr>) -> Result<usize, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::OnlyFrom(peers, tx))?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Best-route changes: first one event per current route, then every change.
    pub fn subscribe(&self) -> Result<mpsc::UnboundedReceiver<RouteEvent>, SpeakerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.send(Command::Subscribe(tx))?;
        Ok(rx)
    }

    /// Stop every session (Cease / Administrative Shutdown) and the driver.
    pub async fn shutdown(&self) {
        self.stop(ShutdownMode::Cease).await
    }

    /// Stop every session the way `mode` says, then the driver.
    pub async fn stop(&self, mode: ShutdownMode) {
        let _ = self.send(Command::Shutdown(mode));
        self.stopped().await;
    }

    /// Resolves when the driver has stopped.
    pub async fn stopped(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}
