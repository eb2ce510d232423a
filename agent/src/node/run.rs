//! The main loop: the only owner of the speaker, fabric and programmer handles. It joins the
//! cluster view, the speaker, the fabric and the route programmer, and starts the control
//! socket and the HTTP endpoints, which read [`NodeState`] and never call back.

use super::dataplane::Dataplane;
use super::error::AgentError;
use super::nat::nat_for;
use super::peering::Peering;
use super::readiness::ready_now;
use super::reload::apply_view;
use crate::node_file::{NodeFile, PolicyWait};
use crate::peers::speaker_config;
use crate::state::NodeState;
use cluster::k8s::watch::{self as k8s, Views, WatchOptions};
use cluster::{ClusterView, Node};
use felix_lite::{install_protocol_name, Programmer};
use ipip::{Fabric, FabricConfig};
use speaker::{ShutdownMode, Speaker};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    /// File mode's workloads file (NetworkPolicy); in Kubernetes mode they come from the API.
    pub workloads: Option<PathBuf>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub metrics: SocketAddr,
    /// Ready anyway after this long, even if some cluster session never completed.
    pub ready_timeout: Duration,
    /// iproute2's protocol-name directory (`/etc/iproute2/rt_protos.d`).
    pub rt_protos_dir: PathBuf,
    /// iptables-legacy, iptables-nft, or read from the node.
    pub iptables_backend: policy::BackendChoice,
}

fn load(path: &Path) -> Result<ClusterView, AgentError> {
    ClusterView::load(path).map_err(|source| AgentError::View {
        path: path.display().to_string(),
        source,
    })
}

/// What the CNI plugin reads: `<state dir>/node.json`.
fn write_node_file(
    dir: &Path,
    me: &Node,
    mtu: u32,
    policy_wait: Option<PolicyWait>,
) -> Result<(), AgentError> {
    NodeFile {
        name: me.name.clone(),
        pod_cidrs: me.pod_cidrs.iter().map(|c| c.to_string()).collect(),
        mtu,
        policy_wait,
    }
    .write(dir)
    .map_err(AgentError::NodeFile)
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
    let endpoint: crate::http::Endpoint = Arc::default();
    let metrics = crate::http::serve(opts.metrics, endpoint.clone())
        .await
        .map_err(|source| AgentError::Io {
            what: "metrics listener",
            path: opts.metrics.to_string(),
            source,
        })?;
    let mut workloads = opts.workloads.clone().map(super::policy::Source::File);
    let mut watch_stats = None;
    let (view, mut updates) = match &opts.source {
        ViewSource::File(path) => (Arc::new(load(path)?), None),
        ViewSource::Kubernetes {
            kubeconfig,
            namespace,
            pod_network,
        } => {
            let watching = k8s::start(WatchOptions {
                kubeconfig: kubeconfig.clone(),
                namespace: namespace.clone(),
                secrets_dir: opts.state_dir.join("secrets"),
                default_pod_network: pod_network.clone(),
            })
            .await?;
            let (ns, mut rx) = (watching.namespace, watching.views);
            watch_stats = Some(watching.stats);
            workloads = Some(super::policy::Source::Api(watching.workloads));
            info!(namespace = %ns, node = %opts.node, "watching the Kubernetes API for the cluster view");
            let v = k8s::first_view(&mut rx, &opts.node)
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
    // NetworkPolicy: its own task and enforcer, fed from the API or the workloads file.
    let families: Vec<policy::Family> = [policy::Family::V4, policy::Family::V6]
        .into_iter()
        .filter(|f| {
            me.pod_cidrs
                .iter()
                .any(|c| policy::Family::of(&c.addr()) == *f)
        })
        .collect();
    let pod_wait = Duration::from_secs(u64::from(view.network_policy.pod_wait.unwrap_or(10)));
    // One owner of Twill's chains and sets: NetworkPolicy (filter table) and outgoing NAT
    // (nat table).
    let firewall = super::policy::start_enforcer(
        me.name.clone(),
        families,
        nat_for(&view, &me),
        opts.iptables_backend,
    );
    let policy = match workloads {
        Some(source) if view.network_policy.enabled => Some(super::policy::start(
            source,
            me.name.clone(),
            firewall.clone(),
            pod_wait,
        )),
        _ => {
            // Off: nothing of Twill's may be left dropping traffic with nothing to update it;
            // the enforcer removes its filter chains and keeps outgoing NAT.
            info!("network policy is off on this node");
            firewall.policy_off();
            None
        }
    };
    let policy_wait = view
        .network_policy
        .pod_wait
        .filter(|_| policy.is_some())
        .map(|seconds| PolicyWait {
            socket: opts.socket.clone(),
            seconds,
        });
    let fabric = start_fabric(&view, &me, &opts.state_dir).await?;
    write_node_file(&opts.state_dir, &me, fabric.mtu(), policy_wait)?;
    let programmer = Programmer::start(felix_lite::Config::default()).await?;
    // Routes or tunnel entries of ours already in the kernel: this is a restart (an upgrade, a
    // crash), not a boot, and the node kept forwarding meanwhile. The speaker says so to its
    // peers (graceful restart's R and F bits) and defers its first advertisements.
    let adopted_routes = programmer.counters().programmed;
    let adopted_tunnels = fabric.tunnel_peers().len();
    let restarting = adopted_routes > 0 || adopted_tunnels > 0;
    if restarting && view.graceful_restart.is_some() {
        info!(
            adopted_routes,
            adopted_tunnels, "forwarding state found: restarting gracefully"
        );
    }
    // The speaker's graceful-restart settings are those of the view at start; so is the way
    // it stops.
    let graceful = view.graceful_restart.is_some();
    let speaker = Speaker::start(speaker_config(&view, &me, restarting)).await?;
    let mut events = speaker.subscribe()?;
    let mut peering = Peering::default();
    peering.apply(&speaker, &view, &me, None);
    let mut dp = Dataplane::new(fabric, programmer.clone(), &view);
    let state = Arc::new(NodeState {
        node: me.name.clone(),
        speaker: speaker.clone(),
        programmer,
        table: dp.view.clone(),
        peers: Mutex::new(peering.all()),
        retiring: Mutex::new(peering.retiring.keys().copied().collect()),
        narrowing: Mutex::new(Default::default()),
        reflectors: Mutex::new(view.reflectors.clone()),
        ready: AtomicBool::new(false),
        policy,
        firewall,
        nat: Mutex::new(view.nat_outgoing.clone()),
        watch: watch_stats,
        alive_ms: AtomicU64::new(0),
        started: Instant::now(),
    });
    let control = crate::control::serve(&opts.socket, state.clone())
        .await
        .map_err(|source| AgentError::Io {
            what: "control socket",
            path: opts.socket.display().to_string(),
            source,
        })?;
    let _ = endpoint.set(state.clone());
    info!(node = %me.name, address = %me.address, pod_cidrs = ?me.pod_cidrs,
        peers = peering.current.len(), socket = %opts.socket.display(), metrics = %opts.metrics, "agent running");

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
    // Ticks missed while the loop was busy are not made up back to back: a handover's checks
    // must be 500 ms apart to mean anything.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                        if let Some((v, m)) = apply_view(&speaker, &state, &mut dp, &mut peering, &view, &me, Arc::new(new)).await {
                            (view, me) = (v, m);
                            info!(peers = peering.current.len(), retiring = peering.retiring.len(), nodes = view.nodes.len(), "SIGHUP: cluster view reloaded");
                        }
                    }
                }
            }
            Some(new) = next_view(&mut updates) => {
                if let Some((v, m)) = apply_view(&speaker, &state, &mut dp, &mut peering, &view, &me, new).await {
                    (view, me) = (v, m);
                    info!(peers = peering.current.len(), retiring = peering.retiring.len(), nodes = view.nodes.len(), "cluster view updated from the API");
                }
            }
            _ = tick.tick() => {
                state.alive_ms.store(state.started.elapsed().as_millis() as u64, Ordering::Relaxed);
                if peering.check(&speaker, &view, &me).await {
                    peering.publish(&state);
                }
                if !state.ready.load(Ordering::Relaxed) && ready_now(&state, &peering.current, opts.ready_timeout).await {
                    state.ready.store(true, Ordering::Relaxed);
                    dp.complete().await;
                    info!("ready");
                }
            }
        }
    }
    control.abort();
    metrics.abort();
    let _ = std::fs::remove_file(&opts.socket);
    // Routes, the tunnel device and its entries stay: a restarted agent adopts them, so pods keep
    // their connectivity across an upgrade. With graceful restart the sessions close without a
    // NOTIFICATION, so the other nodes keep this node's routes too until it is back.
    let mode = if graceful {
        ShutdownMode::Graceful
    } else {
        ShutdownMode::Cease
    };
    speaker.stop(mode).await;
    state.programmer.shutdown().await;
    Ok(())
}

/// The next view from the API watchers; never resolves for a file source.
async fn next_view(updates: &mut Option<Views>) -> Option<Arc<ClusterView>> {
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
