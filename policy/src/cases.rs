//! The upstream NetworkPolicy e2e cases as data (`policy/tests/e2e/cases.yaml`, taken from
//! kubernetes `test/e2e/network/netpol/network_policy.go`): their model (namespaces x, y, z,
//! pods a, b, c, each serving TCP, UDP and SCTP on 80 and 81 under upstream's port names),
//! each case's steps and each probe's expected 9×9 matrix. The policy crate's tests check
//! compiled rules against it without a kernel; the lab checks real connections against it.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];
pub const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

/// The cases file, compiled into the crate so every test reads the same one.
pub const CASES: &str = include_str!("../tests/e2e/cases.yaml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub context: String,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Step {
    #[serde(default)]
    pub apply: Vec<serde_json::Value>,
    #[serde(default)]
    pub delete: Vec<String>,
    #[serde(default)]
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub pod_labels: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub probes: Vec<Probe>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub port: u16,
    pub protocol: String,
    pub default: bool,
    #[serde(default)]
    pub expect: Vec<Expect>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub from: String,
    pub to: String,
    pub allowed: bool,
}

pub fn load() -> Vec<Case> {
    serde_yaml_ng::from_str(CASES).expect("policy/tests/e2e/cases.yaml parses")
}

/// Every pod of the model, as `ns/name`.
pub fn all_pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

/// Does `sel` ("*", "x" or "x/a") name pod `pod` ("x/a")?
fn names(sel: &str, pod: &str) -> bool {
    sel == "*" || sel == pod || pod.split('/').next() == Some(sel)
}

impl Probe {
    /// The expected matrix: (from, to) → allowed, pod-to-itself left out.
    pub fn expected(&self) -> BTreeMap<(String, String), bool> {
        let mut m = BTreeMap::new();
        for from in all_pods() {
            for to in all_pods() {
                if from == to {
                    continue;
                }
                let mut v = self.default;
                for e in &self.expect {
                    if names(&e.from, &from) && names(&e.to, &to) {
                        v = e.allowed;
                    }
                }
                m.insert((from.clone(), to), v);
            }
        }
        m
    }
}

/// The model's objects at one point of a case: labels as changed so far, policies in force.
#[derive(Clone, Debug)]
pub struct State {
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub pod_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub policies: BTreeMap<String, net::NetworkPolicy>,
}

impl Default for State {
    fn default() -> State {
        State {
            namespace_labels: NAMESPACES
                .iter()
                .map(|ns| {
                    let labels = [
                        ("ns".to_string(), ns.to_string()),
                        ("kubernetes.io/metadata.name".to_string(), ns.to_string()),
                    ];
                    (ns.to_string(), labels.into())
                })
                .collect(),
            pod_labels: all_pods()
                .into_iter()
                .map(|p| {
                    let name = p.split('/').nth(1).unwrap_or_default().to_string();
                    (p, [("pod".to_string(), name)].into())
                })
                .collect(),
            policies: BTreeMap::new(),
        }
    }
}

impl State {
    /// Apply a step's changes; `ip` gives each pod's address for `{{ip ns/pod}}`.
    pub fn step(&mut self, step: &Step, ip: &dyn Fn(&str) -> IpAddr) {
        for d in &step.delete {
            self.policies.remove(d);
        }
        for (ns, labels) in &step.namespace_labels {
            self.namespace_labels.insert(ns.clone(), labels.clone());
        }
        for (pod, labels) in &step.pod_labels {
            self.pod_labels.insert(pod.clone(), labels.clone());
        }
        for obj in &step.apply {
            let text = substitute(&obj.to_string(), ip);
            let p: net::NetworkPolicy =
                serde_json::from_str(&text).expect("case policies are NetworkPolicies");
            let key = format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or("default"),
                p.metadata.name.as_deref().unwrap_or_default()
            );
            self.policies.insert(key, p);
        }
    }

    pub fn namespaces(&self) -> Vec<core::Namespace> {
        self.namespace_labels
            .iter()
            .map(|(name, labels)| core::Namespace {
                metadata: meta(name, None, labels),
                ..Default::default()
            })
            .collect()
    }

    /// The pods as Pod objects: `ip` and `node` say where each is.
    pub fn pods(
        &self,
        ip: &dyn Fn(&str) -> IpAddr,
        node: &dyn Fn(&str) -> String,
    ) -> Vec<core::Pod> {
        self.pod_labels
            .iter()
            .map(|(pod, labels)| {
                let (ns, name) = pod.split_once('/').unwrap_or_default();
                model_pod(ns, name, labels, node(pod), ip(pod))
            })
            .collect()
    }

    pub fn policies(&self) -> Vec<net::NetworkPolicy> {
        self.policies.values().cloned().collect()
    }
}

fn meta(
    name: &str,
    namespace: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels.clone()),
        ..Default::default()
    }
}

/// One model pod: a container per port and protocol, named as upstream names them.
pub fn model_pod(
    ns: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    node: String,
    ip: IpAddr,
) -> core::Pod {
    let mut containers = Vec::new();
    for port in PORTS {
        for proto in PROTOCOLS {
            let lower = proto.to_lowercase();
            containers.push(core::Container {
                name: format!("cont-{port}-{lower}"),
                ports: Some(vec![core::ContainerPort {
                    name: Some(format!("serve-{port}-{lower}")),
                    container_port: i32::from(port),
                    protocol: Some(proto.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        }
    }
    core::Pod {
        metadata: meta(name, Some(ns), labels),
        spec: Some(core::PodSpec {
            node_name: Some(node),
            containers,
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.to_string()),
            pod_ips: Some(vec![core::PodIP { ip: ip.to_string() }]),
            ..Default::default()
        }),
    }
}

/// `{{ip ns/pod}}` → that pod's address.
pub fn substitute(text: &str, ip: &dyn Fn(&str) -> IpAddr) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{ip ") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 5..];
        let end = after.find("}}").expect("{{ip …}} is closed");
        out.push_str(&ip(after[..end].trim()).to_string());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}
