//! The watchers: Node objects, Twill's CRDs and the Secrets of the agent's own namespace through
//! kube-runtime reflectors (list, then watch with bookmarks; a watch that ends or expires — 410
//! Gone — is resumed or relisted by kube-runtime). After each burst of changes the view is
//! rebuilt from the stores and published only if it differs, so a resumed watch changes nothing
//! downstream; a rotated password Secret rewrites its file at once. Nodes are trimmed to what
//! the view reads and an update that changes none of it (a heartbeat) causes no rebuild
//! ([`super::nodes`]).

use super::crd::{BGPConfiguration, BGPPeer};
use super::nodes::{trim, Relevant};
use super::view::{build, Objects, CONFIG_NAME};
use crate::view::ClusterView;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (in-cluster or kubeconfig): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Where the view comes from and where password files go.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// `None`: the in-cluster service account, falling back to `$KUBECONFIG` /
    /// `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// The namespace of the BGPPeer password Secrets; `None`: the agent's own
    /// (`POD_NAMESPACE`, else the client's default).
    pub namespace: Option<String>,
    pub secrets_dir: PathBuf,
    /// podNetwork when the BGPConfiguration `default` gives none.
    pub default_pod_network: Option<String>,
}

/// The published views: each new one (None until the first usable one).
pub type Views = watch::Receiver<Option<Arc<ClusterView>>>;

async fn client(kubeconfig: Option<&Path>) -> Result<Client, K8sError> {
    let config = match kubeconfig {
        Some(p) => {
            let bad = |source| K8sError::Kubeconfig {
                path: p.display().to_string(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(p).map_err(bad)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(bad)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// What [`start`] started: the namespace watched for Secrets and the channels the views and
/// the workload models arrive on.
pub struct Watching {
    pub namespace: String,
    pub views: Views,
    pub workloads: super::workloads::WorkloadsRx,
    pub stats: Arc<WatchStats>,
}

/// What the view watcher did, for `/metrics` and the scale tests.
#[derive(Default, Debug)]
pub struct WatchStats {
    /// Node events passed on (a change to what the view reads, a deletion, a relist).
    pub node_events: AtomicU64,
    /// Node updates that changed nothing the view reads (heartbeats): no rebuild.
    pub node_updates_ignored: AtomicU64,
    /// Views built from the stores (each validates every object).
    pub views_built: AtomicU64,
    /// Views published (built and different from the last).
    pub views_published: AtomicU64,
    /// A view has been built with the Secrets listed (the first view does not wait for them,
    /// so their list may cost one more build).
    pub secrets_listed: AtomicBool,
}

/// Connect and start the watchers, which own the client from then on.
pub async fn start(opts: WatchOptions) -> Result<Watching, K8sError> {
    let client = client(opts.kubeconfig.as_deref()).await?;
    let namespace = opts.namespace.clone().unwrap_or_else(|| {
        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| client.default_namespace().to_string())
    });
    let (tx, rx) = watch::channel(None);
    let workloads = super::workloads::start(client.clone());
    let stats = Arc::new(WatchStats::default());
    tokio::spawn(run(
        client,
        namespace.clone(),
        opts.secrets_dir,
        opts.default_pod_network,
        tx,
        stats.clone(),
    ));
    Ok(Watching {
        namespace,
        views: rx,
        workloads,
        stats,
    })
}

async fn run(
    client: Client,
    namespace: String,
    secrets_dir: PathBuf,
    default_pod_network: Option<String>,
    tx: watch::Sender<Option<Arc<ClusterView>>>,
    stats: Arc<WatchStats>,
) {
    let (nodes, nodes_w) = reflector::store::<Node>();
    let mut relevant = Relevant::default();
    let node_stats = stats.clone();
    let node_events = reflector(
        nodes_w,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).modify(trim),
    )
    .filter(move |ev| {
        // Errors pass (they are logged and the watch resumes) and are not counted.
        let pass = match ev {
            Ok(ev) => {
                let pass = relevant.changes(ev);
                let counter = if pass {
                    &node_stats.node_events
                } else {
                    &node_stats.node_updates_ignored
                };
                counter.fetch_add(1, Ordering::Relaxed);
                pass
            }
            Err(_) => true,
        };
        std::future::ready(pass)
    });
    let (configs, configs_w) = reflector::store::<BGPConfiguration>();
    let (peers, peers_w) = reflector::store::<BGPPeer>();
    let (secrets, secrets_w) = reflector::store::<Secret>();
    let mut events = futures::stream::select_all([
        ended(node_events, "nodes"),
        reflect(configs_w, Api::all(client.clone()), "bgpconfigurations"),
        reflect(peers_w, Api::all(client.clone()), "bgppeers"),
        // Only the agent's own namespace: the Role grants nothing wider.
        reflect(secrets_w, Api::namespaced(client, &namespace), "secrets"),
    ]);
    // What was already logged, so each problem is said once rather than on every rebuild.
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut secret_errors: BTreeSet<String> = BTreeSet::new();
    let mut last: Option<Arc<ClusterView>> = None;
    // A password file rewritten since the last published view: the agent must re-read it.
    let mut rotation_pending = false;
    let mut ready = false;
    while let Some(ev) = events.next().await {
        if let Err(e) = ev {
            warn!(error = %e, "watch interrupted; resuming");
            continue;
        }
        // Take the rest of a burst before rebuilding once.
        while let Some(Some(_)) = events.next().now_or_never() {}
        // Until every kind has been listed once, a view would be missing objects.
        if !ready {
            // Secrets are not waited for: without them (or without the Role to read them)
            // only the peers with passwords wait.
            ready = listed(&nodes) && listed(&configs) && listed(&peers);
            if !ready {
                continue;
            }
        }
        let peer_list: Vec<BGPPeer> = peers.state().iter().map(|p| (**p).clone()).collect();
        let (passwords, rotated) = write_passwords(
            &secrets,
            listed(&secrets),
            &namespace,
            &peer_list,
            &secrets_dir,
            &mut secret_errors,
        );
        let node_list: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
        let config = configs.get(&ObjectRef::new(CONFIG_NAME));
        stats.views_built.fetch_add(1, Ordering::Relaxed);
        let secrets_listed = listed(&secrets);
        let built = build(&Objects {
            config: config.as_deref(),
            nodes: &node_list,
            peers: &peer_list,
            passwords: &passwords,
            default_pod_network: default_pod_network.as_deref(),
        });
        rotation_pending |= rotated;
        // Say each problem once, not on every rebuild.
        let now: BTreeSet<String> = built
            .problems
            .iter()
            .chain(&built.waiting)
            .cloned()
            .collect();
        for p in built.problems.iter().filter(|p| !reported.contains(*p)) {
            warn!(problem = %p, "object left out of the cluster view");
        }
        for w in built.waiting.iter().filter(|w| !reported.contains(*w)) {
            info!(waiting = %w, "not in the cluster view yet");
        }
        reported = now;
        if let Some(v) = built.view {
            // A rotated password leaves the view equal (same file); publish it anyway so the
            // agent re-reads the keys.
            if last.as_deref() != Some(&v) || rotation_pending {
                rotation_pending = false;
                stats.views_published.fetch_add(1, Ordering::Relaxed);
                let v = Arc::new(v);
                last = Some(v.clone());
                let _ = tx.send(Some(v));
            }
        }
        // Said after the build's counts, so whoever reads them after this sees that build.
        if secrets_listed {
            stats.secrets_listed.store(true, Ordering::Release);
        }
    }
}

/// One kind listed and watched into `store`: a stream of "something changed" (or why the watch
/// broke, named by `what`), backing off between retries.
pub(super) fn reflect<K>(
    store: reflector::store::Writer<K>,
    api: Api<K>,
    what: &'static str,
) -> futures::stream::BoxStream<'static, Result<(), String>>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    ended(
        reflector(store, watcher(api, watcher::Config::default())),
        what,
    )
}

/// A reflected watch as a stream of "something changed" (or why it broke, named by `what`),
/// backing off between retries.
fn ended<S, K>(s: S, what: &'static str) -> futures::stream::BoxStream<'static, Result<(), String>>
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    s.default_backoff()
        .map(move |r| r.map(|_| ()).map_err(|e| format!("{what}: {e}")))
        .boxed()
}

/// Whether the store has seen its first complete list.
pub(super) fn listed<K>(s: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(s.wait_until_ready().now_or_never(), Some(Ok(())))
}

/// Each BGPPeer's password Secret (in the agent's namespace) written to a 0600 file, by peer,
/// and whether any file changed. Only peers whose file holds the Secret's current value are in
/// the map (the others wait); a file is rewritten only when the value changed, and removed when
/// the Secret or its key is gone so a stale key is never used. Until the Secrets are listed
/// (`listed`), nothing is judged: those peers just wait.
fn write_passwords(
    secrets: &Store<Secret>,
    listed: bool,
    namespace: &str,
    peers: &[BGPPeer],
    dir: &Path,
    reported: &mut BTreeSet<String>,
) -> (BTreeMap<String, PathBuf>, bool) {
    let mut out = BTreeMap::new();
    if !listed {
        return (out, false);
    }
    let mut changed = false;
    let mut now = BTreeSet::new();
    for p in peers {
        let (Some(name), Some(pw)) = (p.metadata.name.as_ref(), p.spec.password.as_ref()) else {
            continue;
        };
        let r = &pw.secret_key_ref;
        let value = match secrets.get(&ObjectRef::new(&r.name).within(namespace)) {
            Some(s) => s
                .data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|b| b.0.clone())
                .ok_or_else(|| format!("has no key {}", r.key)),
            None => Err(format!("is not in namespace {namespace}")),
        };
        let path = dir.join(name);
        match value {
            Ok(bytes) => {
                if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                    changed = true;
                    if let Err(e) = write_private(&path, &bytes) {
                        warn!(peer = %name, error = %e, "cannot write the password file");
                        continue;
                    }
                    info!(peer = %name, secret = %r.name, "password file written");
                }
                out.insert(name.clone(), path);
            }
            Err(e) => {
                changed |= std::fs::remove_file(&path).is_ok();
                let msg = format!(
                    "BGPPeer {name}: spec.password.secretKeyRef: Secret {} {e}",
                    r.name
                );
                if !reported.contains(&msg) {
                    warn!(problem = %msg, "password not read");
                }
                now.insert(msg);
            }
        }
    }
    // Said once while it lasts; said again if it comes back after being mended.
    *reported = now;
    (out, changed)
}

/// Written beside the target and renamed over it, so the agent, reading keys from another
/// task, never sees a half-written one.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    // Object names may hold dots, so a suffix rather than `with_extension`.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Wait for the first view that holds `node`.
pub async fn first_view(rx: &mut Views, node: &str) -> Option<Arc<ClusterView>> {
    loop {
        if let Some(v) = rx.borrow_and_update().clone() {
            if v.node(node).is_some() {
                return Some(v);
            }
        }
        rx.changed().await.ok()?;
    }
}
