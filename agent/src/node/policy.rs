//! NetworkPolicy in the agent: one task that owns the workloads model this node enforces. It
//! takes the model from its source (the API watch, or in file mode the `--workloads` file,
//! re-read on SIGHUP), adds what the CNI plugin reported for pods starting here (their
//! addresses are known here before the API has them), and hands every new model to the
//! enforcer, which owns the kernel side. Data flows one way: workloads → this task →
//! `policy::Enforcer` → iptables / ipset.

use crate::netpol::{file_hash, PolicyHandle, Request, SourceStatus};
use cluster::k8s::workloads::WorkloadsRx;
use cluster::workloads::{build, file, Pod, Workloads};
use policy::{BackendChoice, Enforcer, EnforcerConfig, Family, NatOutgoing, Tools};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

/// Where the workloads come from.
pub enum Source {
    File(PathBuf),
    Api(WorkloadsRx),
}

/// Start the firewall's owner (NetworkPolicy and outgoing NAT), whether or not this node
/// enforces NetworkPolicy.
pub fn start_enforcer(
    node: String,
    families: Vec<Family>,
    nat: NatOutgoing,
    backend: BackendChoice,
) -> Enforcer {
    Enforcer::start(EnforcerConfig {
        node,
        families,
        resync: Duration::from_secs(5),
        tools: Tools::default(),
        backend: Some(backend),
        bridge_sysctl_dir: Some("/proc/sys/net/bridge".into()),
        nat,
    })
}

/// Start the task that feeds `enforcer` workloads; a pod's CNI ADD waits at most `pod_wait`
/// for its rules.
pub fn start(source: Source, node: String, enforcer: Enforcer, pod_wait: Duration) -> PolicyHandle {
    let node_name = node.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let (mtx, mrx) = watch::channel(Arc::new(Workloads::default()));
    let what = match &source {
        Source::File(p) => format!("file {}", p.display()),
        Source::Api(_) => "kubernetes".to_string(),
    };
    let status = Arc::new(Mutex::new(SourceStatus {
        what,
        ..Default::default()
    }));
    tokio::spawn(run(
        source,
        node,
        enforcer.clone(),
        rx,
        mtx,
        status.clone(),
        pod_wait,
    ));
    PolicyHandle::new(tx, enforcer, mrx, status, node_name)
}

/// A pod whose CNI ADD waits for the source (API watch or file) to hold it, so its rules
/// are those of its labels.
struct Pending {
    namespace: String,
    name: String,
    reply: oneshot::Sender<Result<(), String>>,
    deadline: Instant,
}

struct Task {
    node: String,
    enforcer: Enforcer,
    /// The model from the source; nothing is handed to the enforcer before the first one (a
    /// model without policies would remove every rule in force).
    base: Option<Arc<Workloads>>,
    pending: Vec<Pending>,
    pod_wait: Duration,
    /// Addresses the CNI plugin reported, by (namespace, name).
    cni: BTreeMap<(String, String), Vec<IpAddr>>,
    generation: u64,
    model: watch::Sender<Arc<Workloads>>,
    status: Arc<Mutex<SourceStatus>>,
}

async fn run(
    mut source: Source,
    node: String,
    enforcer: Enforcer,
    mut rx: mpsc::UnboundedReceiver<Request>,
    model: watch::Sender<Arc<Workloads>>,
    status: Arc<Mutex<SourceStatus>>,
    pod_wait: Duration,
) {
    let mut t = Task {
        node,
        enforcer,
        base: None,
        pending: Vec::new(),
        pod_wait,
        cni: BTreeMap::new(),
        generation: 0,
        model,
        status,
    };
    let mut hup = signal(SignalKind::hangup()).ok();
    if let Source::File(path) = &source {
        t.read_file(path);
    }
    loop {
        tokio::select! {
            r = rx.recv() => {
                let Some(r) = r else { return };
                t.request(r);
            }
            Some(()) = next_hup(&mut hup) => {
                if let Source::File(path) = &source {
                    t.read_file(path);
                }
            }
            Some(w) = next_model(&mut source) => {
                t.base = Some(w);
                t.publish();
                t.settle();
            }
            _ = tokio::time::sleep_until(t.next_deadline()), if !t.pending.is_empty() => t.expire(),
        }
    }
}

async fn next_hup(hup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_model(source: &mut Source) -> Option<Arc<Workloads>> {
    match source {
        Source::File(_) => std::future::pending().await,
        Source::Api(rx) => {
            if rx.changed().await.is_err() {
                warn!("the workloads watch stopped; keeping the last model");
                return std::future::pending().await;
            }
            rx.borrow_and_update().clone()
        }
    }
}

impl Task {
    fn read_file(&mut self, path: &std::path::Path) {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "workloads file not read; the rules in force stay");
                return;
            }
        };
        let objects = match file::parse(&String::from_utf8_lossy(&text)) {
            Ok(o) => o,
            Err((doc, reason)) => {
                warn!(path = %path.display(), doc, reason = %reason, "workloads file refused; the rules in force stay");
                let mut s = self.status.lock().expect("policy status");
                s.problems = vec![format!("{}: document {doc}: {reason}", path.display())];
                return;
            }
        };
        let built = build(&objects.objects(), self.base.as_deref());
        for p in &built.problems {
            warn!(problem = %p, "object refused; its previous version, if any, stays in force");
        }
        info!(path = %path.display(), pods = built.workloads.pods.len(), policies = built.workloads.policies.len(), "workloads read");
        self.base = Some(Arc::new(built.workloads));
        self.publish();
        self.settle();
        // Said once the model is handed over: whoever waits for this file then waits for
        // this generation to be in force.
        let mut s = self.status.lock().expect("policy status");
        s.problems = built.problems.iter().map(|p| p.to_string()).collect();
        s.file_hash = Some(file_hash(&text));
        s.generation = self.generation;
    }

    fn request(&mut self, r: Request) {
        match r {
            Request::PodAdded {
                namespace,
                name,
                ips,
                reply,
            } => {
                if ips.is_empty() {
                    let _ = reply.send(Err(format!(
                        "pod {namespace}/{name}: the CNI result has no address"
                    )));
                    return;
                }
                self.cni.insert((namespace.clone(), name.clone()), ips);
                self.pending.push(Pending {
                    namespace,
                    name,
                    reply,
                    deadline: Instant::now() + self.pod_wait,
                });
                self.publish();
                self.settle();
            }
            Request::PodDeleted { namespace, name } => {
                if self.cni.remove(&(namespace, name)).is_some() {
                    self.publish();
                }
            }
        }
    }

    /// Pending pods the source now holds: their rules are in the last model handed over, so
    /// each answer waits for that generation to be in force (or fail), within its deadline.
    fn settle(&mut self) {
        let Some(base) = self.base.clone() else {
            return;
        };
        let (ready, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| base.pod(&p.namespace, &p.name).is_some());
        self.pending = waiting;
        for p in ready {
            let enforcer = self.enforcer.clone();
            let generation = self.generation;
            let left = p.deadline.saturating_duration_since(Instant::now());
            let wait = self.pod_wait.as_secs();
            tokio::spawn(async move {
                let pod = format!("{}/{}", p.namespace, p.name);
                let r = match enforcer.wait_for(generation, left).await {
                    None => Err(format!(
                        "the rules for {pod} were not in force within {wait}s"
                    )),
                    Some(s) if s.in_force >= generation => Ok(()),
                    Some(s) => Err(format!(
                        "the rules for {pod} could not be programmed: {}",
                        s.error.unwrap_or_default()
                    )),
                };
                let _ = p.reply.send(r);
            });
        }
    }

    fn next_deadline(&self) -> tokio::time::Instant {
        let d = self.pending.iter().map(|p| p.deadline).min();
        d.map(tokio::time::Instant::from_std)
            .unwrap_or_else(tokio::time::Instant::now)
    }

    /// Pending pods the source never showed within their deadline.
    fn expire(&mut self) {
        let now = Instant::now();
        let (late, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.pending = waiting;
        for p in late {
            let _ = p.reply.send(Err(format!(
                "pod {}/{} is not among the cluster's pods (API watch or workloads file) after {}s",
                p.namespace,
                p.name,
                self.pod_wait.as_secs()
            )));
        }
    }

    /// The source's model with the CNI plugin's addresses merged in, handed to the enforcer.
    fn publish(&mut self) {
        let Some(base) = self.base.clone() else {
            return;
        };
        // Once the source has a pod's addresses, the CNI plugin's report is not needed: it
        // would only outlive the pod if a DEL were missed.
        self.cni
            .retain(|(ns, name), _| base.pod(ns, name).is_none_or(|p| p.ips.is_empty()));
        let mut w = (*base).clone();
        for ((ns, name), ips) in &self.cni {
            match w
                .pods
                .iter_mut()
                .find(|p| &p.namespace == ns && &p.name == name)
            {
                Some(p) => {
                    p.ips = ips.clone();
                    p.node = Some(self.node.clone());
                }
                // Not (yet) in the source: a pod with no labels, selected only by policies
                // that select every pod of its namespace.
                None => w.pods.push(Pod {
                    namespace: ns.clone(),
                    name: name.clone(),
                    labels: Default::default(),
                    node: Some(self.node.clone()),
                    ips: ips.clone(),
                    ports: Vec::new(),
                }),
            }
        }
        w.sort_pods();
        let version = w.version;
        // A new version with the same rules (an object written without effect on policy)
        // needs no batch: the generation in force already holds it.
        if !(self.model.borrow().same_rules(&w) && self.generation > 0) {
            self.generation += 1;
            let w = Arc::new(w);
            self.model.send_replace(w.clone());
            self.enforcer.apply(w, self.generation);
        }
        let mut s = self.status.lock().expect("policy status");
        s.version = version;
        s.version_generation = self.generation;
    }
}
