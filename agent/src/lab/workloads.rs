//! The lab's workloads, for NetworkPolicy: Namespaces, Pods and NetworkPolicies as Kubernetes
//! YAML. The lab keeps them in `<lab dir>/workloads.yaml` — the file every namespace-mode agent
//! reads with `--workloads` (file mode) — with each pod's node and address filled in as a
//! kubelet would. `lab up --workloads FILE` and `lab apply FILE` create what is new (a Pod
//! becomes a namespace attached to its node through the CNI plugin, named to the agent in
//! `CNI_ARGS`), change labels and policies, and `lab delete FILE` removes; after each change
//! every agent gets SIGHUP and the command returns once each has the new file's rules in force.

use super::host::{self, in_ns, poll};
use super::state::{LabState, NodeState, PodState};
use super::LabError;
use crate::status::Status;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub const FILE: &str = "workloads.yaml";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// How long agents get to put a new file's rules in force.
const APPLY_LIMIT: Duration = Duration::from_secs(30);

/// The objects, by kind and `namespace/name`.
#[derive(Default)]
struct Objects {
    namespaces: BTreeMap<String, Value>,
    pods: BTreeMap<String, Value>,
    policies: BTreeMap<String, Value>,
}

fn meta(v: &Value, field: &str) -> Option<String> {
    v["metadata"][field].as_str().map(str::to_string)
}

/// `(kind, key)` of an object; namespaced kinds default to `default` as kubectl does.
fn key(v: &Value) -> Result<(String, String), String> {
    let kind = v["kind"]
        .as_str()
        .ok_or("an object has no kind")?
        .to_string();
    let name = meta(v, "name").ok_or_else(|| format!("a {kind} has no metadata.name"))?;
    let key = match kind.as_str() {
        "Namespace" => name,
        "Pod" | "NetworkPolicy" => format!(
            "{}/{name}",
            meta(v, "namespace").unwrap_or_else(|| "default".into())
        ),
        other => {
            return Err(format!(
                "{other} {name}: the lab takes Namespace, Pod and NetworkPolicy"
            ))
        }
    };
    Ok((kind, key))
}

/// The objects of a YAML file (documents, `List`s flattened).
pub fn read(path: &Path) -> Result<Vec<Value>, LabError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let bad = |reason: String| LabError::State {
        path: path.display().to_string(),
        reason,
    };
    let mut out = Vec::new();
    for d in serde_yaml_ng::Deserializer::from_str(&text) {
        use serde::Deserialize;
        let v = Value::deserialize(d).map_err(|e| bad(e.to_string()))?;
        match v["kind"].as_str() {
            _ if v.is_null() => {}
            Some("List") => out.extend(v["items"].as_array().cloned().unwrap_or_default()),
            _ => out.push(v),
        }
    }
    for v in &mut out {
        if let Err(e) = key(v) {
            return Err(bad(e));
        }
        if v["kind"] != "Namespace" && meta(v, "namespace").is_none() {
            v["metadata"]["namespace"] = json!("default");
        }
    }
    Ok(out)
}

impl Objects {
    fn load(dir: &Path) -> Result<Objects, LabError> {
        let p = path(dir);
        let mut o = Objects::default();
        if p.exists() {
            o.put(read(&p)?);
        }
        Ok(o)
    }

    fn map(&mut self, kind: &str) -> &mut BTreeMap<String, Value> {
        match kind {
            "Namespace" => &mut self.namespaces,
            "Pod" => &mut self.pods,
            _ => &mut self.policies,
        }
    }

    /// Create or replace. A Pod that exists keeps its node, ports and address: only its labels
    /// change, as `kubectl label` would.
    fn put(&mut self, objects: Vec<Value>) {
        for v in objects {
            let Ok((kind, k)) = key(&v) else { continue };
            let map = self.map(&kind);
            match map.get_mut(&k) {
                Some(old) if kind == "Pod" => {
                    old["metadata"]["labels"] = v["metadata"]["labels"].clone();
                }
                _ => {
                    map.insert(k, v);
                }
            }
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for v in self
            .namespaces
            .values()
            .chain(self.pods.values())
            .chain(self.policies.values())
        {
            out.push_str("---\n");
            out.push_str(&serde_yaml_ng::to_string(v).unwrap_or_default());
        }
        out
    }

    /// The model the agents will build, checked here first so a bad object is refused by the
    /// lab with its field and value rather than left for each agent to refuse.
    fn check(&self) -> Result<(), LabError> {
        let text = self.text();
        let objects =
            cluster::workloads::file::parse(&text).map_err(|(doc, reason)| LabError::State {
                path: FILE.into(),
                reason: format!("document {doc}: {reason}"),
            })?;
        let built = cluster::workloads::build(&objects.objects(), None);
        match built.problems.first() {
            Some(p) => Err(LabError::State {
                path: "refused".into(),
                reason: p.to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// `lab up --workloads` and `lab apply`: create or change these objects in a running lab.
pub fn apply(
    st: &mut LabState,
    twill: &Path,
    objects: Vec<Value>,
    prune: bool,
) -> Result<String, LabError> {
    let mut o = Objects::load(&st.dir)?;
    if prune {
        // The file is the whole set of policies: the others go.
        o.policies.clear();
    }
    let new_pods: Vec<Value> = objects
        .iter()
        .filter(|v| v["kind"] == "Pod")
        .filter(|v| key(v).is_ok_and(|(_, k)| !o.pods.contains_key(&k)))
        .cloned()
        .collect();
    o.put(objects);
    o.check()?;
    for p in &new_pods {
        let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
        if !st.twill_nodes().any(|n| n.name == node) {
            let (_, k) = key(p).map_err(|reason| LabError::State {
                path: FILE.into(),
                reason,
            })?;
            return Err(LabError::State {
                path: format!("Pod {k}"),
                reason: format!("spec.nodeName: {node:?} is not a Twill node of this lab"),
            });
        }
    }
    // The agents learn the new pods' labels first, so the CNI ADD below (which waits for the
    // pod's rules) finds them.
    publish(st, &o)?;
    let mut out = String::new();
    for p in new_pods {
        let (_, k) = key(&p).expect("checked");
        let node = st
            .twill_nodes()
            .find(|n| Some(n.name.as_str()) == p["spec"]["nodeName"].as_str())
            .cloned()
            .expect("checked");
        let (ns, name) = k.split_once('/').expect("namespaced");
        let netns = format!("{}-{ns}-{name}", node.namespace);
        host::add_namespace(&netns)?;
        st.namespaces.push(netns.clone());
        st.save()?;
        let address = cni_add(twill, &node, &netns, Some((ns, name)))?;
        let pod = &mut o.pods.get_mut(&k).expect("put above");
        pod["status"] = json!({"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]});
        st.pods.push(PodState {
            name: k.clone(),
            node: node.name.clone(),
            namespace: netns,
            address: address.clone(),
        });
        st.save()?;
        out += &format!("  pod {k:<12} {address:<15} on {}\n", node.name);
    }
    out += &publish(st, &o)?;
    Ok(out)
}

/// `lab delete`: remove these objects (pods: their namespace and address go too).
pub fn delete(st: &mut LabState, twill: &Path, objects: Vec<Value>) -> Result<String, LabError> {
    let mut o = Objects::load(&st.dir)?;
    let mut out = String::new();
    for v in objects {
        let Ok((kind, k)) = key(&v) else { continue };
        if o.map(&kind).remove(&k).is_none() {
            out += &format!("  {kind} {k}: not in the lab\n");
            continue;
        }
        if kind == "Pod" {
            if let Some(i) = st.pods.iter().position(|p| p.name == k) {
                let pod = st.pods.remove(i);
                if let Some(node) = st.nodes.iter().find(|n| n.name == pod.node).cloned() {
                    // Best effort: the namespace goes whatever IPAM says.
                    let _ = cni(twill, &node, &pod.namespace, None, "DEL");
                }
                let _ = host::ip(&["netns", "del", &pod.namespace]);
                st.namespaces.retain(|n| n != &pod.namespace);
                st.save()?;
            }
        }
        out += &format!("  {kind} {k} deleted\n");
    }
    out += &publish(st, &o)?;
    Ok(out)
}

/// Write the file, SIGHUP every namespace-mode agent, and wait until each has read this file
/// and has its rules in force.
fn publish(st: &LabState, o: &Objects) -> Result<String, LabError> {
    let text = o.text();
    let p = path(&st.dir);
    let tmp = st.dir.join(".workloads.yaml.tmp");
    let io = |source| LabError::Io {
        path: p.display().to_string(),
        source,
    };
    std::fs::write(&tmp, &text).map_err(io)?;
    std::fs::rename(&tmp, &p).map_err(io)?;
    let hash = crate::netpol::file_hash(text.as_bytes());
    let agents: Vec<&NodeState> = st.twill_nodes().filter(|n| n.image.is_none()).collect();
    for n in &agents {
        for pid in host::pids_in(&n.namespace) {
            // The agents of the lab's own node namespaces.
            let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut waiting = Vec::new();
    let done = poll(APPLY_LIMIT, Duration::from_millis(50), || {
        waiting.clear();
        for n in &agents {
            let s: Option<Status> = rt.block_on(crate::control::ask(&n.socket(), "status"));
            let p = s.and_then(|s| s.policy);
            match p {
                None => waiting.push(format!(
                    "{}: no policy status (is it running with --workloads?)",
                    n.name
                )),
                Some(p) if p.file_hash.as_deref() != Some(hash.as_str()) => {
                    waiting.push(format!("{}: has not read the new file", n.name))
                }
                Some(p) if p.error.is_some() => {
                    waiting.push(format!("{}: {}", n.name, p.error.unwrap_or_default()))
                }
                Some(p) if p.in_force < p.file_generation => {
                    waiting.push(format!("{}: programming", n.name))
                }
                Some(_) => {}
            }
        }
        waiting.is_empty().then_some(())
    });
    match done {
        Some(()) => Ok(format!(
            "workloads: {} namespaces, {} pods, {} policies in force on {} agents\n",
            o.namespaces.len(),
            o.pods.len(),
            o.policies.len(),
            agents.len()
        )),
        None => Err(LabError::State {
            path: p.display().to_string(),
            reason: format!(
                "not in force within {} s:\n  {}",
                APPLY_LIMIT.as_secs(),
                waiting.join("\n  ")
            ),
        }),
    }
}

/// Attach a pod namespace to its node as a container runtime would: `twill` as the CNI
/// plugin, run in the node's namespace, the pod named in `CNI_ARGS` when it has a name. Returns
/// the pod's address.
pub fn cni_add(
    twill: &Path,
    node: &NodeState,
    pod_ns: &str,
    pod: Option<(&str, &str)>,
) -> Result<String, LabError> {
    let v = cni(twill, node, pod_ns, pod, "ADD")?;
    v["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .map(String::from)
        .ok_or_else(|| LabError::Node {
            node: node.name.clone(),
            reason: format!("CNI ADD for {pod_ns}: no address in the result: {v}"),
        })
}

fn cni(
    twill: &Path,
    node: &NodeState,
    pod_ns: &str,
    pod: Option<(&str, &str)>,
    command: &str,
) -> Result<Value, LabError> {
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "twill",
        "type": "twill",
        "stateDir": node.run_dir(),
        "dataDir": node.dir.join("ipam"),
    });
    let mut c = in_ns(&node.namespace, twill);
    c.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", pod_ns)
        .env("CNI_NETNS", format!("/run/netns/{pod_ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", super::up::cni_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((ns, name)) = pod {
        c.env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}"),
        );
    }
    let fail = |reason: String| LabError::Node {
        node: node.name.clone(),
        reason: format!("CNI {command} for {pod_ns}: {reason}"),
    };
    let mut child = c.spawn().map_err(|e| fail(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(conf.to_string().as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if !out.status.success() {
        return Err(fail(format!(
            "{} {}",
            v["msg"].as_str().unwrap_or("failed"),
            v["details"].as_str().unwrap_or_default()
        )));
    }
    Ok(v)
}

/// The entry point of `lab apply` / `lab delete`.
pub fn run(base: &Path, lab: Option<&str>, file: &Path, what: Change) -> Result<String, LabError> {
    super::must_be_root()?;
    let mut st = LabState::load(&super::state::find(base, lab)?)?;
    let twill = std::env::current_exe().map_err(|source| LabError::Io {
        path: "/proc/self/exe".into(),
        source,
    })?;
    let objects = read(file)?;
    match what {
        Change::Apply { prune } => apply(&mut st, &twill, objects, prune),
        Change::Delete => delete(&mut st, &twill, objects),
    }
}

pub enum Change {
    Apply { prune: bool },
    Delete,
}
