//! The agent's NetworkPolicy handle: what the control socket, HTTP and the CNI requests reach
//! the policy task (`node::policy`) through, and what they read of it.

use crate::status::{PolicyCounter, PolicyStatus};
use cluster::workloads::{Pod, Protocol, Workloads};
use policy::eval::{evaluate, End, Side};
use policy::{Enforcer, EnforcerStatus};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};

/// What the CNI plugin tells the agent.
pub enum Request {
    /// A pod got these addresses here; answered once its rules are in force (or not).
    PodAdded {
        namespace: String,
        name: String,
        ips: Vec<IpAddr>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    PodDeleted {
        namespace: String,
        name: String,
    },
}

/// The handle the control socket and HTTP read and the CNI requests go through.
#[derive(Clone)]
pub struct PolicyHandle {
    tx: mpsc::UnboundedSender<Request>,
    pub enforcer: Enforcer,
    /// The model handed to the enforcer last.
    pub model: watch::Receiver<Arc<Workloads>>,
    /// Where the model comes from, and the objects refused in it.
    pub source: Arc<Mutex<SourceStatus>>,
    node: String,
}

#[derive(Clone, Debug, Default)]
pub struct SourceStatus {
    pub what: String,
    /// The file's content hash (file mode) and the generation of the model built from it:
    /// the lab waits for the file it wrote, then for that generation to be in force.
    pub file_hash: Option<String>,
    pub generation: u64,
    /// The source's version (highest resourceVersion) last seen, and the generation whose
    /// rules include it: a client that wrote an object waits for both.
    pub version: u64,
    pub version_generation: u64,
    pub problems: Vec<String>,
}

impl PolicyHandle {
    pub fn new(
        tx: mpsc::UnboundedSender<Request>,
        enforcer: Enforcer,
        model: watch::Receiver<Arc<Workloads>>,
        source: Arc<Mutex<SourceStatus>>,
        node: String,
    ) -> PolicyHandle {
        PolicyHandle {
            tx,
            enforcer,
            model,
            source,
            node,
        }
    }

    pub fn request(&self, r: Request) {
        let _ = self.tx.send(r);
    }

    /// What `twill status` shows.
    pub fn status(&self) -> PolicyStatus {
        let e: EnforcerStatus = self.enforcer.status();
        let src = self.source.lock().expect("policy status").clone();
        PolicyStatus {
            source: src.what,
            file_hash: src.file_hash,
            file_generation: src.generation,
            source_version: src.version,
            source_generation: src.version_generation,
            problems: src.problems,
            wanted: e.wanted,
            in_force: e.in_force,
            error: e.error,
            policies: e.policies,
            rules: e.rules,
            sets: e.sets,
            set_entries: e.set_entries,
            last_apply_us: (e.last_apply_ms * 1e3) as u64,
            bridge_netfilter: e.bridge_netfilter,
            counters: e
                .counters
                .into_iter()
                .map(|c| PolicyCounter {
                    policy: c.policy,
                    direction: c.direction.to_string(),
                    allowed: c.allowed,
                    denied: c.denied,
                })
                .collect(),
        }
    }
}

/// The hash `twill status` reports for the workloads file (FNV-1a over its bytes, as hex).
pub fn file_hash(bytes: &[u8]) -> String {
    cluster::hash::fnv_hex(bytes)
}

impl PolicyHandle {
    /// The CNI plugin's ADD: the pod's addresses go into the model; answered when its rules
    /// are in force, or with why not.
    pub async fn pod_added(
        &self,
        namespace: String,
        name: String,
        ips: Vec<IpAddr>,
    ) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::PodAdded {
            namespace,
            name,
            ips,
            reply,
        });
        rx.await
            .unwrap_or_else(|_| Err("the policy task stopped".into()))
    }

    pub fn pod_deleted(&self, namespace: String, name: String) {
        self.request(Request::PodDeleted { namespace, name });
    }

    /// `twill policy [POD]`: the policies selecting the pod, or each local pod's.
    pub fn policies(&self, pod: Option<&str>) -> Result<Vec<String>, String> {
        let w = self.model.borrow().clone();
        let pods: Vec<&Pod> = match pod {
            Some(p) => vec![find_pod(&w, p)?],
            None => w
                .pods
                .iter()
                .filter(|p| p.node.as_deref() == Some(self.node()))
                .collect(),
        };
        let mut lines = Vec::new();
        for p in pods {
            let selecting: Vec<String> = w
                .policies
                .iter()
                .filter(|pol| pol.selects(p))
                .map(|pol| {
                    let mut types = Vec::new();
                    if pol.isolates_ingress {
                        types.push("ingress");
                    }
                    if pol.isolates_egress {
                        types.push("egress");
                    }
                    format!("{} ({})", pol.key(), types.join(", "))
                })
                .collect();
            let list = if selecting.is_empty() {
                "none (not isolated)".to_string()
            } else {
                selecting.join("; ")
            };
            lines.push(format!("{}/{}: {list}", p.namespace, p.name));
        }
        Ok(lines)
    }

    /// `twill policy explain FROM TO PORT/PROTO`.
    pub fn explain(
        &self,
        from: &str,
        to: &str,
        port: u16,
        protocol: &str,
    ) -> Result<Vec<String>, String> {
        let proto = Protocol::parse(Some(&protocol.to_uppercase()))
            .ok_or_else(|| format!("protocol {protocol} is not one of TCP, UDP, SCTP"))?;
        let w = self.model.borrow().clone();
        let (src, dst) = ends(&w, from, to)?;
        let v = evaluate(&w, src, dst, proto, port);
        let name = |e: &End| match e {
            End::Pod(p, ip) => format!("{}/{} ({ip})", p.namespace, p.name),
            End::Addr(ip) => ip.to_string(),
        };
        let side = |what: &str, e: &End, s: &Side| match s {
            Side::NotIsolated => format!("  {what} of {}: not isolated", name(e)),
            Side::AllowedBy { policy, rule } => {
                format!(
                    "  {what} of {}: allowed by {policy} {what}[{rule}]",
                    name(e)
                )
            }
            Side::Denied { policies } => format!(
                "  {what} of {}: denied: isolated by {}, no rule of theirs allows it",
                name(e),
                policies.join(", ")
            ),
        };
        Ok(vec![
            format!(
                "{} → {} {port}/{proto}: {}",
                name(&src),
                name(&dst),
                if v.allowed() { "allowed" } else { "denied" }
            ),
            side("egress", &src, &v.egress),
            side("ingress", &dst, &v.ingress),
        ])
    }

    fn node(&self) -> &str {
        &self.node
    }
}

fn find_pod<'a>(w: &'a Workloads, key: &str) -> Result<&'a Pod, String> {
    let (ns, name) = key
        .split_once('/')
        .ok_or_else(|| format!("{key}: a pod is namespace/name"))?;
    w.pod(ns, name)
        .ok_or_else(|| format!("pod {key} is not known here"))
}

/// Resolve both ends; a pod's address is the one of the other end's family when it has two.
fn ends<'a>(w: &'a Workloads, from: &str, to: &str) -> Result<(End<'a>, End<'a>), String> {
    let addr = |s: &str| s.parse::<IpAddr>().ok();
    let family = addr(from).or(addr(to)).map(|a| a.is_ipv4()).unwrap_or(true);
    let one = |s: &str| -> Result<End<'a>, String> {
        if let Some(ip) = addr(s) {
            return Ok(match w.pod_by_ip(ip) {
                Some(p) => End::Pod(p, ip),
                None => End::Addr(ip),
            });
        }
        let p = find_pod(w, s)?;
        let ip = p
            .ips
            .iter()
            .find(|ip| ip.is_ipv4() == family)
            .or(p.ips.first())
            .ok_or_else(|| format!("pod {s} has no address yet"))?;
        Ok(End::Pod(p, *ip))
    };
    Ok((one(from)?, one(to)?))
}
