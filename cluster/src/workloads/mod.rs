//! Workloads: what NetworkPolicy enforcement needs to know about the cluster — namespaces and
//! their labels, pods (namespace, labels, node, addresses, named container ports) and the
//! policies themselves — as one validated model ([`Workloads`]), built from Kubernetes objects
//! whichever way they arrived (the API watch, or a file of the same objects in file mode:
//! [`file`]). The policy crate compiles it; nothing here knows about iptables.

pub mod file;
mod parse;
#[cfg(test)]
mod tests;

pub use parse::{build, Built, Objects};

use crate::selector::Selector;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Labels, sorted (`BTreeMap`) so that equal label sets compare and hash equal.
pub type Labels = BTreeMap<String, String>;

/// The whole input of policy enforcement. Pods and policies are sorted by namespace and name,
/// so two builds of the same objects are equal and a relist changes nothing downstream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workloads {
    /// Namespace name → its labels.
    pub namespaces: BTreeMap<String, Labels>,
    pub pods: Vec<Pod>,
    pub policies: Vec<Policy>,
    /// The highest `metadata.resourceVersion` among the objects (etcd's revision, so a later
    /// write has a higher one; 0 in file mode): how a client that just wrote an object tells
    /// that a model includes its write.
    pub version: u64,
}

impl Workloads {
    /// Equal but for `version`: the same rules.
    pub fn same_rules(&self, other: &Workloads) -> bool {
        self.namespaces == other.namespaces
            && self.pods == other.pods
            && self.policies == other.policies
    }
}

impl Workloads {
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods
            .binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.pods[i])
    }

    pub fn policy(&self, namespace: &str, name: &str) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    /// Keep pods in the order lookups rely on (namespace, then name).
    pub fn sort_pods(&mut self) {
        self.pods
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    }

    /// The pod holding `ip`, if any.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Pod> {
        self.pods.iter().find(|p| p.ips.contains(&ip))
    }
}

/// A pod as policy sees it. Host-network pods are not here (their address is their node's,
/// and policies neither select nor match them); a pod without an address yet, or one that
/// has finished (its address may be reused), is here with no `ips`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// `spec.nodeName`: each agent programs the pods of its own node.
    pub node: Option<String>,
    pub ips: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
}

impl Pod {
    /// The number of the container port named `name` for `protocol`, if the pod has one.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

/// A container port with a name (unnamed ports cannot be referred to by a policy).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The name iptables and ipset use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Kubernetes' spelling (`TCP`, `UDP`, `SCTP`), TCP when absent.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some("SCTP") => Some(Protocol::Sctp),
            Some(_) => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// A validated NetworkPolicy (networking.k8s.io/v1) with its defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    /// `spec.podSelector`, within the policy's namespace; `{}` selects every pod there.
    pub pod_selector: Sel,
    /// Whether the policy isolates its pods for ingress / egress: `policyTypes`, or its
    /// default (Ingress always, Egress when `spec.egress` has at least one rule).
    pub isolates_ingress: bool,
    pub isolates_egress: bool,
    /// Allowing rules; none with the direction isolated = deny all in that direction.
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

impl Policy {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the policy selects `pod`: its namespace, and its labels by `podSelector`.
    pub fn selects(&self, pod: &Pod) -> bool {
        self.namespace == pod.namespace && self.pod_selector.matches(&pod.labels)
    }

    /// The allowing rules of one direction (`ingress`, else egress), or `None` when the
    /// policy does not isolate its pods in that direction.
    pub fn rules(&self, ingress: bool) -> Option<&[Rule]> {
        match ingress {
            true => self.isolates_ingress.then_some(self.ingress.as_slice()),
            false => self.isolates_egress.then_some(self.egress.as_slice()),
        }
    }
}

/// A label selector with its canonical text (sorted, so equal selectors have equal text):
/// the text names the ipset that holds the selected pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sel {
    pub selector: Selector,
    pub canonical: String,
}

impl Sel {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.selector.matches(labels)
    }
}

/// One ingress or egress rule: traffic that matches any peer and any port is allowed. An empty
/// `peers` (the field absent or `[]`) matches every source / destination, an empty `ports`
/// every port, as the API defines them.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PortMatch>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Peer {
    /// Pods: `namespaces` picks the namespaces (`None`: the policy's own), `pods` the pods in
    /// them (`{}` when the peer gives only a namespaceSelector).
    Pods { namespaces: Option<Sel>, pods: Sel },
    /// `ipBlock`: addresses in `cidr` but in none of `except` (pod addresses included).
    Block { cidr: IpNet, except: Vec<IpNet> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMatch {
    pub protocol: Protocol,
    /// `None`: every port of the protocol.
    pub port: Option<PortRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    /// `port`, or `port`..=`endPort`.
    Range { start: u16, end: u16 },
    /// A container port name, resolved on each destination pod (name and protocol).
    Named(String),
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            None => write!(f, "{}", self.protocol),
            Some(PortRef::Range { start, end }) if start == end => {
                write!(f, "{start}/{}", self.protocol)
            }
            Some(PortRef::Range { start, end }) => write!(f, "{start}-{end}/{}", self.protocol),
            Some(PortRef::Named(n)) => write!(f, "{n}/{}", self.protocol),
        }
    }
}

/// An object left out of the model, named with the field and value at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {field}: {value} {reason}")]
pub struct WorkloadError {
    pub kind: &'static str,
    /// `namespace/name`.
    pub object: String,
    pub field: String,
    pub value: String,
    pub reason: String,
}
