//! Kubernetes objects → [`Workloads`], checked as the API server checks NetworkPolicies (so a
//! file-mode policy the server would refuse is refused here too, with the field and value
//! named). A policy that fails keeps its previous version, if there was one, so the rules
//! already in force stay until it is mended.

use super::{
    Labels, NamedPort, Peer, Pod, Policy, PortMatch, PortRef, Protocol, Rule, Sel, WorkloadError,
    Workloads,
};
use crate::selector::{LabelRequirement, LabelSelector, Selector};
use ipnet::IpNet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Set on every namespace by API servers from 1.21 on; added here when missing so policies
/// written for newer clusters select the same namespaces on older ones.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The objects one build reads.
#[derive(Clone, Copy, Default)]
pub struct Objects<'a> {
    pub namespaces: &'a [core::Namespace],
    pub pods: &'a [core::Pod],
    pub policies: &'a [net::NetworkPolicy],
}

/// The model and what was left out of it (or kept at its previous version), and why.
#[derive(Debug, Default)]
pub struct Built {
    pub workloads: Workloads,
    pub problems: Vec<WorkloadError>,
}

/// Build the model. `previous` is the last model built: a policy that fails validation now
/// keeps its version from there.
pub fn build(objects: &Objects, previous: Option<&Workloads>) -> Built {
    let mut problems = Vec::new();
    let mut namespaces = BTreeMap::new();
    for ns in objects.namespaces {
        let Some(name) = ns.metadata.name.clone() else {
            continue;
        };
        let mut labels: Labels = ns.metadata.labels.clone().unwrap_or_default();
        labels
            .entry(NAMESPACE_NAME_LABEL.to_string())
            .or_insert_with(|| name.clone());
        namespaces.insert(name, labels);
    }
    let mut w = Workloads {
        pods: objects
            .pods
            .iter()
            .filter_map(|p| pod(p, &mut problems))
            .collect(),
        ..Default::default()
    };
    w.sort_pods();
    let mut pods = w.pods;
    pods.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
    // A pod seen before its namespace (watches race; files may leave Namespaces out) is in a
    // namespace with only its name label until the Namespace arrives.
    for p in &pods {
        namespaces
            .entry(p.namespace.clone())
            .or_insert_with(|| [(NAMESPACE_NAME_LABEL.to_string(), p.namespace.clone())].into());
    }
    // By namespace and name: a file that holds one policy twice means its last version.
    let mut policies = BTreeMap::new();
    for p in objects.policies {
        let (Some(ns), Some(name)) = (p.metadata.namespace.as_ref(), p.metadata.name.as_ref())
        else {
            continue;
        };
        let key = (ns.clone(), name.clone());
        match policy(ns, name, p.spec.as_ref()) {
            Ok(ok) => {
                policies.insert(key, ok);
            }
            Err(e) => {
                match previous.and_then(|w| w.policy(ns, name)) {
                    Some(old) => {
                        policies.insert(key, old.clone());
                    }
                    None => {
                        policies.remove(&key);
                    }
                }
                problems.push(e);
            }
        }
    }
    let policies: Vec<Policy> = policies.into_values().collect();
    let version = objects
        .namespaces
        .iter()
        .map(|o| &o.metadata)
        .chain(objects.pods.iter().map(|o| &o.metadata))
        .chain(objects.policies.iter().map(|o| &o.metadata))
        .filter_map(|m| m.resource_version.as_deref()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    Built {
        workloads: Workloads {
            namespaces,
            pods,
            policies,
            version,
        },
        problems,
    }
}

fn pod(p: &core::Pod, problems: &mut Vec<WorkloadError>) -> Option<Pod> {
    let namespace = p.metadata.namespace.clone()?;
    let name = p.metadata.name.clone()?;
    let spec = p.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return None;
    }
    let status = p.status.as_ref();
    // A finished pod's address may already belong to a new pod.
    let finished = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let mut texts: Vec<(String, &str)> = Vec::new();
    if let Some(list) = status.and_then(|s| s.pod_ips.as_ref()) {
        for (i, a) in list.iter().enumerate() {
            texts.push((format!("status.podIPs[{i}].ip"), a.ip.as_str()));
        }
    } else if let Some(ip) = status.and_then(|s| s.pod_ip.as_deref()) {
        texts.push(("status.podIP".to_string(), ip));
    }
    let mut ips = Vec::new();
    for (field, text) in texts {
        if finished {
            break;
        }
        match text.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => problems.push(WorkloadError {
                kind: "Pod",
                object: format!("{namespace}/{name}"),
                field,
                value: text.to_string(),
                reason: "is not an IP address".into(),
            }),
        }
    }
    let mut ports = Vec::new();
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        for cp in c.ports.as_deref().unwrap_or_default() {
            let (Some(n), Some(protocol), Ok(port)) = (
                cp.name.as_ref(),
                Protocol::parse(cp.protocol.as_deref()),
                u16::try_from(cp.container_port),
            ) else {
                continue;
            };
            ports.push(NamedPort {
                name: n.clone(),
                protocol,
                port,
            });
        }
    }
    ports.sort();
    ports.dedup();
    Some(Pod {
        namespace,
        name,
        labels: p.metadata.labels.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        ips,
        ports,
    })
}

/// What goes wrong inside a policy: the field and value; the object is added by the caller.
struct Bad {
    field: String,
    value: String,
    reason: String,
}

fn bad(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Bad {
    Bad {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn policy(
    ns: &str,
    name: &str,
    spec: Option<&net::NetworkPolicySpec>,
) -> Result<Policy, WorkloadError> {
    policy_spec(ns, name, spec).map_err(|b| WorkloadError {
        kind: "NetworkPolicy",
        object: format!("{ns}/{name}"),
        field: b.field,
        value: b.value,
        reason: b.reason,
    })
}

fn policy_spec(ns: &str, name: &str, spec: Option<&net::NetworkPolicySpec>) -> Result<Policy, Bad> {
    let empty = net::NetworkPolicySpec::default();
    let spec = spec.unwrap_or(&empty);
    let pod_selector = selector(spec.pod_selector.as_ref(), "spec.podSelector")?;
    let ingress = rules(
        spec.ingress.as_deref(),
        "spec.ingress",
        |r: &net::NetworkPolicyIngressRule| (r.from.as_deref(), r.ports.as_deref()),
        "from",
    )?;
    let egress = rules(
        spec.egress.as_deref(),
        "spec.egress",
        |r: &net::NetworkPolicyEgressRule| (r.to.as_deref(), r.ports.as_deref()),
        "to",
    )?;
    // The API's defaulting: Ingress always, Egress when there is an egress rule.
    let (isolates_ingress, isolates_egress) = match spec.policy_types.as_deref() {
        None | Some([]) => (true, !egress.is_empty()),
        Some(types) => {
            let mut i = false;
            let mut e = false;
            for (k, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => i = true,
                    "Egress" => e = true,
                    _ => {
                        return Err(bad(
                            format!("spec.policyTypes[{k}]"),
                            t,
                            "is not Ingress or Egress",
                        ))
                    }
                }
            }
            (i, e)
        }
    };
    Ok(Policy {
        namespace: ns.to_string(),
        name: name.to_string(),
        pod_selector,
        isolates_ingress,
        isolates_egress,
        ingress,
        egress,
    })
}

fn rules<R>(
    list: Option<&[R]>,
    field: &str,
    parts: impl Fn(
        &R,
    ) -> (
        Option<&[net::NetworkPolicyPeer]>,
        Option<&[net::NetworkPolicyPort]>,
    ),
    peers_field: &str,
) -> Result<Vec<Rule>, Bad> {
    let mut out = Vec::new();
    for (i, r) in list.unwrap_or_default().iter().enumerate() {
        let (peers, ports) = parts(r);
        let mut rule = Rule {
            peers: Vec::new(),
            ports: Vec::new(),
        };
        for (j, p) in peers.unwrap_or_default().iter().enumerate() {
            rule.peers
                .push(peer(p, &format!("{field}[{i}].{peers_field}[{j}]"))?);
        }
        for (j, p) in ports.unwrap_or_default().iter().enumerate() {
            rule.ports
                .push(port(p, &format!("{field}[{i}].ports[{j}]"))?);
        }
        out.push(rule);
    }
    Ok(out)
}

fn peer(p: &net::NetworkPolicyPeer, field: &str) -> Result<Peer, Bad> {
    match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
        (Some(b), None, None) => ip_block(b, &format!("{field}.ipBlock")),
        (Some(_), _, _) => Err(bad(
            format!("{field}.ipBlock"),
            "ipBlock",
            "cannot be combined with podSelector or namespaceSelector",
        )),
        (None, None, None) => Err(bad(
            field,
            "{}",
            "must have a podSelector, a namespaceSelector or an ipBlock",
        )),
        (None, ns, pods) => Ok(Peer::Pods {
            namespaces: match ns {
                Some(s) => Some(selector(Some(s), &format!("{field}.namespaceSelector"))?),
                None => None,
            },
            pods: selector(pods.as_ref(), &format!("{field}.podSelector"))?,
        }),
    }
}

fn ip_block(b: &net::IPBlock, field: &str) -> Result<Peer, Bad> {
    let cidr: IpNet = b
        .cidr
        .parse()
        .map_err(|_| bad(format!("{field}.cidr"), &b.cidr, "is not a CIDR"))?;
    let cidr = cidr.trunc();
    let mut except = Vec::new();
    for (k, e) in b.except.as_deref().unwrap_or_default().iter().enumerate() {
        let f = format!("{field}.except[{k}]");
        let n: IpNet = e.parse().map_err(|_| bad(&f, e, "is not a CIDR"))?;
        let n = n.trunc();
        // The API's rule: a strict subset of cidr.
        if !cidr.contains(&n) || n.prefix_len() <= cidr.prefix_len() {
            return Err(bad(f, e, format!("is not a strict subset of cidr {cidr}")));
        }
        except.push(n);
    }
    Ok(Peer::Block { cidr, except })
}

fn port(p: &net::NetworkPolicyPort, field: &str) -> Result<PortMatch, Bad> {
    let protocol = Protocol::parse(p.protocol.as_deref()).ok_or_else(|| {
        bad(
            format!("{field}.protocol"),
            p.protocol.as_deref().unwrap_or_default(),
            "is not one of TCP, UDP, SCTP",
        )
    })?;
    let number = |v: i32, f: &str| {
        u16::try_from(v)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad(format!("{field}.{f}"), v, "is not a port (1–65535)"))
    };
    let port = match (&p.port, p.end_port) {
        (None, None) => None,
        (None, Some(e)) => {
            return Err(bad(format!("{field}.endPort"), e, "needs a numeric port"));
        }
        (Some(IntOrString::Int(n)), end) => {
            let start = number(*n, "port")?;
            let end = match end {
                Some(e) => {
                    let e = number(e, "endPort")?;
                    if e < start {
                        return Err(bad(
                            format!("{field}.endPort"),
                            e,
                            format!("is below port {start}"),
                        ));
                    }
                    e
                }
                None => start,
            };
            Some(PortRef::Range { start, end })
        }
        (Some(IntOrString::String(s)), end) => {
            if let Some(e) = end {
                return Err(bad(format!("{field}.endPort"), e, "needs a numeric port"));
            }
            // A string is a name, as the API server has it: "80" is refused (no letter).
            if is_port_name(s) {
                Some(PortRef::Named(s.clone()))
            } else {
                return Err(bad(
                    format!("{field}.port"),
                    s,
                    "is not a port number or a port name (IANA_SVC_NAME)",
                ));
            }
        }
    };
    Ok(PortMatch { protocol, port })
}

/// IANA_SVC_NAME: 1–15 characters of a–z, 0–9 and '-', at least one letter, no '-' at either
/// end and no "--".
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A LabelSelector (absent = `{}` = everything), checked as the API checks it, with its
/// canonical text.
fn selector(s: Option<&meta::LabelSelector>, field: &str) -> Result<Sel, Bad> {
    let empty = meta::LabelSelector::default();
    let s = s.unwrap_or(&empty);
    let labels = s.match_labels.clone().unwrap_or_default();
    let mut exprs = Vec::new();
    for (k, r) in s
        .match_expressions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let f = format!("{field}.matchExpressions[{k}]");
        let values = r.values.clone().unwrap_or_default();
        match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(bad(
                    format!("{f}.values"),
                    "[]",
                    format!("must not be empty for {}", r.operator),
                ))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(bad(
                    format!("{f}.values"),
                    values.join(","),
                    format!("must be empty for {}", r.operator),
                ))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(bad(
                    format!("{f}.operator"),
                    other,
                    "is not one of In, NotIn, Exists, DoesNotExist",
                ))
            }
        }
        let mut values = values;
        values.sort();
        values.dedup();
        exprs.push(LabelRequirement {
            key: r.key.clone(),
            operator: r.operator.clone(),
            values,
        });
    }
    let raw = LabelSelector {
        match_labels: labels,
        match_expressions: exprs,
    };
    let selector = Selector::new(&raw, field).map_err(|e| bad(e.field, e.value, e.reason))?;
    let mut parts: Vec<String> = raw
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut e: Vec<String> = raw
        .match_expressions
        .iter()
        .map(|r| format!("{} {} ({})", r.key, r.operator, r.values.join(",")))
        .collect();
    e.sort();
    parts.extend(e);
    Ok(Sel {
        selector,
        canonical: parts.join(";"),
    })
}
