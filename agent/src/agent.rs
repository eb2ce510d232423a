//! `twill agent`: the program a node runs. It joins the cluster view, the speaker, the fabric
//! and the route programmer, and serves the control socket and the metrics endpoint.

use crate::dataplane::{Dataplane, RouteTable};
use crate::node_file::NodeFile;
use crate::peers::{peer_config, peers_for, speaker_config, DerivedPeer, PeerKind};
use crate::status::{rfc3339_ago, PeerStatus, RouteStatus, Status};
use crate::view::{ClusterView, Node, ViewError};
use felix_lite::{install_protocol_name, Programmer};
use ipip::{Fabric, FabricConfig};
use speaker::{Password, Speaker, State};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// Where the cluster view comes from.
#[derive(Clone, Debug)]
pub enum ViewSource {
    /// A YAML file, reloaded on SIGHUP.
    File(PathBuf),
    /// The Kubernetes API (watched); `None` = in-cluster or the usual kubeconfig.
    Kubernetes {
        kubeconfig: Option<PathBuf>,
        namespace: Option<String>,
        pod_network: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Options {
    pub source: ViewSource,
    pub node: String,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub metrics: SocketAddr,
    /// Ready anyway after this long, even if some cluster session never completed.
    pub ready_timeout: Duration,
    /// iproute2's protocol-name directory (`/etc/iproute2/rt_protos.d`).
    pub rt_protos_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cluster view {path}: {source}")]
    View { path: String, source: ViewError },
    #[error("--node {0} is not in the cluster view's nodes")]
    UnknownNode(String),
    #[error("fabric: {0}")]
    Fabric(#[from] ipip::Error),
    #[error("{0}")]
    Kubernetes(#[from] crate::k8s::watch::K8sError),
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

/// What the control socket and the metrics endpoint read.
pub struct Shared {
    pub node: String,
    pub speaker: Speaker,
    pub programmer: Programmer,
    pub table: RouteTable,
    pub peers: Mutex<BTreeMap<IpAddr, DerivedPeer>>,
    pub ready: AtomicBool,
    /// Milliseconds since start at the main loop's last turn (`/healthz`).
    pub alive_ms: AtomicU64,
    pub started: Instant,
}

impl Shared {
    pub async fn status(&self) -> Status {
        let kinds = self.peers.lock().expect("peers").clone();
        let peers = self
            .speaker
            .snapshot()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|p| PeerStatus {
                address: p.address.to_string(),
                as_number: p.asn,
                kind: kinds
                    .get(&p.address)
                    .map(|d| d.kind.as_str().to_string())
                    .unwrap_or_else(|| p.role.to_string()),
                state: p.state.to_string(),
                since: rfc3339_ago(Duration::from_secs(p.since_secs)),
                prefixes_received: p.prefixes_received,
                prefixes_accepted: p.prefixes_accepted,
                prefixes_advertised: p.prefixes_advertised,
                last_error: p.last_error,
            })
            .collect();
        let routes = self
            .table
            .lock()
            .expect("route table")
            .values()
            .map(|v| RouteStatus {
                prefix: v.route.prefix.to_string(),
                next_hops: v
                    .route
                    .next_hops()
                    .iter()
                    .map(|h| h.gateway.to_string())
                    .collect(),
                via: {
                    let mut names: Vec<&str> = v.reach.iter().map(|r| r.name()).collect();
                    names.dedup();
                    names.join(",")
                },
            })
            .collect();
        Status {
            node: self.node.clone(),
            peers,
            routes,
        }
    }
}

fn load(path: &Path) -> Result<ClusterView, AgentError> {
    ClusterView::load(path).map_err(|source| AgentError::View {
        path: path.display().to_string(),
        source,
    })
}

/// What the CNI plugin reads: `<state dir>/node.json`.
fn write_node_file(dir: &Path, me: &Node, mtu: u32) -> Result<(), AgentError> {
    NodeFile {
        name: me.name.clone(),
        pod_cidrs: me.pod_cidrs.iter().map(|c| c.to_string()).collect(),
        mtu,
    }
    .write(dir)
    .map_err(AgentError::NodeFile)
}

fn apply_peers(
    speaker: &Speaker,
    view: &ClusterView,
    me: &Node,
    current: &mut BTreeMap<IpAddr, DerivedPeer>,
) {
    let want: BTreeMap<IpAddr, DerivedPeer> = peers_for(view, me)
        .into_iter()
        .filter_map(with_password)
        .map(|p| (p.address, p))
        .collect();
    for (addr, old) in current.iter() {
        if !want.contains_key(addr) {
            info!(peer = %addr, kind = old.kind.as_str(), "peer removed from the cluster view");
            let _ = speaker.remove_peer(*addr);
        }
    }
    for (addr, p) in &want {
        let cfg = peer_config(view, me, p);
        let r = match current.get(addr) {
            None => {
                info!(peer = %addr, kind = p.kind.as_str(), asn = p.as_number,
                    md5 = p.password.is_some(), "peer added");
                speaker.add_peer(cfg)
            }
            Some(old) if old != p => speaker.update_peer(cfg),
            Some(_) => Ok(()),
        };
        if let Err(e) = r {
            error!(peer = %addr, error = %e, "peer rejected");
        }
    }
    *current = want;
}

/// The peer with its TCP MD5 key read from its password file, read afresh on every reload so a
/// rotated key reaches the speaker (which reconnects with it). A peer whose file cannot be read
/// is left out rather than tried without the key it is configured with.
fn with_password(mut p: DerivedPeer) -> Option<DerivedPeer> {
    let Some(path) = &p.password_file else {
        return Some(p);
    };
    match std::fs::read(path) {
        Ok(mut key) => {
            // `echo secret > file` and `kubectl create secret --from-file` leave a newline that
            // is not part of the key.
            if key.ends_with(b"\n") {
                key.pop();
                if key.ends_with(b"\r") {
                    key.pop();
                }
            }
            let key = Password::new(key);
            if !key.len_ok() {
                error!(peer = %p.address, file = %path.display(), bytes = key.as_bytes().len(),
                    "the password must be 1-80 bytes (TCP MD5); not peering");
                return None;
            }
            p.password = Some(key);
            Some(p)
        }
        Err(e) => {
            error!(peer = %p.address, file = %path.display(), error = %e,
                "cannot read the password file; not peering");
            None
        }
    }
}

/// How long the node's address may take to appear. Under containerlab (and at boot) the agent
/// starts before its interfaces are wired and addressed.
const ADDRESS_WAIT: Duration = Duration::from_secs(60);

async fn start_fabric(
    view: &ClusterView,
    me: &Node,
    state_dir: &Path,
) -> Result<Fabric, AgentError> {
    let deadline = Instant::now() + ADDRESS_WAIT;
    let mut logged = false;
    loop {
        let r = Fabric::start(FabricConfig {
            encap: view.encapsulation,
            vxlan: view.vxlan.clone(),
            node_address: me.address,
            pod_cidrs: me.pod_cidrs.clone(),
            state_dir: Some(state_dir.to_path_buf()),
        })
        .await;
        match r {
            Err(ipip::Error::NoUnderlay(a)) if Instant::now() < deadline => {
                if !logged {
                    info!(address = %a, "waiting for the node address to appear on an interface");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            r => return Ok(r?),
        }
    }
}

/// Run until SIGTERM / SIGINT.
pub async fn run(opts: Options) -> Result<(), AgentError> {
    let endpoint: crate::http::Agent = Arc::default();
    let metrics = crate::http::serve(opts.metrics, endpoint.clone()).await?;
    let (view, mut updates) = match &opts.source {
        ViewSource::File(path) => (Arc::new(load(path)?), None),
        ViewSource::Kubernetes {
            kubeconfig,
            namespace,
            pod_network,
        } => {
            let client = crate::k8s::watch::client(kubeconfig.as_deref()).await?;
            let ns = namespace
                .clone()
                .unwrap_or_else(|| crate::k8s::watch::default_namespace(&client));
            info!(namespace = %ns, node = %opts.node, "watching the Kubernetes API for the cluster view");
            let mut rx = crate::k8s::watch::start(
                client,
                ns,
                opts.state_dir.join("secrets"),
                pod_network.clone(),
            );
            let v = crate::k8s::watch::first_view(&mut rx, &opts.node)
                .await
                .ok_or(AgentError::NoView)?;
            (v, Some(rx))
        }
    };
    let me = view
        .node(&opts.node)
        .cloned()
        .ok_or_else(|| AgentError::UnknownNode(opts.node.clone()))?;
    let names = opts.rt_protos_dir.display();
    match install_protocol_name(&opts.rt_protos_dir) {
        Ok(true) => info!(dir = %names, "named route protocol 77 `twill` for iproute2"),
        Ok(false) => {}
        Err(e) => warn!(dir = %names, error = %e, "cannot name route protocol 77 for iproute2"),
    }
    let fabric = start_fabric(&view, &me, &opts.state_dir).await?;
    write_node_file(&opts.state_dir, &me, fabric.mtu())?;
    let programmer = Programmer::start(felix_lite::Config::default()).await?;
    let speaker = Speaker::start(speaker_config(&view, &me)).await?;
    let mut events = speaker.subscribe()?;
    let mut peers = BTreeMap::new();
    apply_peers(&speaker, &view, &me, &mut peers);
    let mut dp = Dataplane::new(fabric, programmer.clone(), view.clone());
    let shared = Arc::new(Shared {
        node: me.name.clone(),
        speaker: speaker.clone(),
        programmer,
        table: dp.table.clone(),
        peers: Mutex::new(peers.clone()),
        ready: AtomicBool::new(false),
        alive_ms: AtomicU64::new(0),
        started: Instant::now(),
    });
    let control = crate::control::serve(&opts.socket, shared.clone()).await?;
    let _ = endpoint.set(shared.clone());
    info!(node = %me.name, address = %me.address, pod_cidrs = ?me.pod_cidrs,
        peers = peers.len(), socket = %opts.socket.display(), metrics = %opts.metrics, "agent running");

    let sig = |k| {
        signal(k).map_err(|source| AgentError::Io {
            what: "signal",
            path: String::new(),
            source,
        })
    };
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut hup = sig(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut view = view;
    let mut me = me;
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                let mut batch = vec![e];
                while let Ok(e) = events.try_recv() {
                    batch.push(e);
                }
                dp.apply(batch).await;
            }
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                let ViewSource::File(path) = &opts.source else {
                    info!("SIGHUP: the cluster view comes from the Kubernetes API; nothing to reload");
                    continue;
                };
                match load(path) {
                    Err(e) => error!(error = %e, "SIGHUP: cluster view rejected; keeping the running one"),
                    Ok(new) => {
                        if let Some((v, m)) = apply_view(&speaker, &shared, &mut dp, &mut peers, &view, &me, Arc::new(new)).await {
                            (view, me) = (v, m);
                            info!(peers = peers.len(), nodes = view.nodes.len(), "SIGHUP: cluster view reloaded");
                        }
                    }
                }
            }
            Some(new) = next_view(&mut updates) => {
                if let Some((v, m)) = apply_view(&speaker, &shared, &mut dp, &mut peers, &view, &me, new).await {
                    (view, me) = (v, m);
                    info!(peers = peers.len(), nodes = view.nodes.len(), "cluster view updated from the API");
                }
            }
            _ = tick.tick() => {
                shared.alive_ms.store(shared.started.elapsed().as_millis() as u64, Ordering::Relaxed);
                if !shared.ready.load(Ordering::Relaxed) && ready_now(&shared, &peers, opts.ready_timeout).await {
                    shared.ready.store(true, Ordering::Relaxed);
                    dp.complete().await;
                    info!("ready");
                }
            }
        }
    }
    control.abort();
    metrics.abort();
    let _ = std::fs::remove_file(&opts.socket);
    speaker.shutdown().await;
    // Routes, the tunnel device and its entries stay: a restarted agent adopts them, so pods keep
    // their connectivity across an upgrade.
    shared.programmer.shutdown().await;
    Ok(())
}

/// The next view from the API watchers; never resolves for a file source.
async fn next_view(
    updates: &mut Option<tokio::sync::watch::Receiver<Option<Arc<ClusterView>>>>,
) -> Option<Arc<ClusterView>> {
    match updates {
        None => std::future::pending().await,
        Some(rx) => match rx.changed().await {
            Ok(()) => rx.borrow_and_update().clone(),
            Err(_) => {
                error!("the Kubernetes watchers stopped; keeping the last cluster view");
                *updates = None;
                None
            }
        },
    }
}

/// Apply a new cluster view: only the peers that changed, the originated CIDR if it changed,
/// and the data plane's idea of who is a node. None (and nothing changed) when this node is
/// not in it.
async fn apply_view(
    speaker: &Speaker,
    shared: &Shared,
    dp: &mut Dataplane,
    peers: &mut BTreeMap<IpAddr, DerivedPeer>,
    view: &ClusterView,
    me: &Node,
    new: Arc<ClusterView>,
) -> Option<(Arc<ClusterView>, Node)> {
    let Some(new_me) = new.node(&me.name).cloned() else {
        error!(node = %me.name, "this node is no longer in the cluster view; keeping the running one");
        return None;
    };
    if new.encapsulation != view.encapsulation
        || new.vxlan != view.vxlan
        || new_me.addresses != me.addresses
    {
        warn!("encapsulation or node address changed; restart the agent to apply that part");
    }
    if new_me.pod_cidrs != me.pod_cidrs {
        // Kubernetes never changes a node's podCIDRs once set; from a file it is an edit, and
        // pods already attached keep their addresses until the agent restarts.
        warn!(old = ?me.pod_cidrs, new = ?new_me.pod_cidrs,
            "pod CIDRs changed: announcing the new ones; restart the agent to move the tunnel address and CNI file");
        let _ = speaker.set_originated(new_me.pod_cidrs.clone());
    }
    apply_peers(speaker, &new, &new_me, peers);
    *shared.peers.lock().expect("peers") = peers.clone();
    dp.set_view(new.clone()).await;
    Some((new, new_me))
}

/// Ready once every mesh / reflector session has completed an initial exchange (Established and
/// End-of-RIB received), or the timeout has passed. Latched by the caller.
async fn ready_now(
    shared: &Shared,
    peers: &BTreeMap<IpAddr, DerivedPeer>,
    timeout: Duration,
) -> bool {
    if shared.started.elapsed() >= timeout {
        warn!(
            ?timeout,
            "ready by timeout: some cluster sessions never completed"
        );
        return true;
    }
    let Ok(snap) = shared.speaker.snapshot().await else {
        return false;
    };
    peers
        .values()
        .filter(|p| p.kind != PeerKind::External)
        .all(|p| {
            snap.iter().any(|s| {
                s.address == p.address && s.state == State::Established && s.end_of_rib_received
            })
        })
}

/// Ask a running agent over its control socket; `None` when none answers there.
pub async fn ask(socket: &Path, what: &str) -> Option<Status> {
    let mut s = tokio::net::UnixStream::connect(socket).await.ok()?;
    s.write_all(format!("{what}\n").as_bytes()).await.ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).await.ok()?;
    serde_json::from_str(&line).ok()
}
