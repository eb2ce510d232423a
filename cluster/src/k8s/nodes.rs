//! Node objects cut down to what Twill reads, and the filter that keeps a Node update changing
//! none of it from rebuilding the view.
//!
//! A kubelet rewrites its Node's status on every heartbeat (conditions' `lastHeartbeatTime`,
//! images, resources), and other controllers touch annotations of their own. At 500 nodes with
//! a heartbeat every 10 s that is 50 updates a second, each of which used to rebuild and
//! re-validate the whole view on every agent. Each Node is trimmed as it arrives (kept in the
//! store only with the fields below, which also keeps the store small), and an update whose
//! trimmed form is the same as before is not passed on.

use super::view::{ADDRESS_ANNOTATION, AS_ANNOTATION, REFLECTOR_ANNOTATION};
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use std::collections::HashMap;

/// Keep what the view is built from: name, uid, resourceVersion, labels (node selectors,
/// zones), Twill's own annotations, the pod CIDRs, the addresses and whether the Ready
/// condition is True.
pub fn trim(n: &mut Node) {
    let m = std::mem::take(&mut n.metadata);
    let annotations: std::collections::BTreeMap<String, String> = m
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            [ADDRESS_ANNOTATION, AS_ANNOTATION, REFLECTOR_ANNOTATION].contains(&k.as_str())
        })
        .collect();
    n.metadata = ObjectMeta {
        name: m.name,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..ObjectMeta::default()
    };
    let spec = n.spec.take().unwrap_or_default();
    n.spec = Some(NodeSpec {
        pod_cidr: spec.pod_cidr,
        pod_cidrs: spec.pod_cidrs,
        ..NodeSpec::default()
    });
    let status = n.status.take().unwrap_or_default();
    n.status = Some(NodeStatus {
        addresses: status.addresses,
        conditions: status.conditions.map(|c| {
            c.into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| NodeCondition {
                    type_: c.type_,
                    status: c.status,
                    ..NodeCondition::default()
                })
                .collect()
        }),
        ..NodeStatus::default()
    });
}

/// Which Node updates change what Twill reads. Holds, per Node, a hash of its trimmed form
/// (resourceVersion left out).
#[derive(Default)]
pub struct Relevant {
    seen: HashMap<String, u64>,
}

impl Relevant {
    /// Whether this event (of a trimmed Node) may change the view. A relist (`Init`…`InitDone`)
    /// always may: objects deleted while the watch was down are only noticed there.
    pub fn changes(&mut self, ev: &watcher::Event<Node>) -> bool {
        match ev {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                let h = fingerprint(n);
                let same = self.seen.insert(name, h) == Some(h);
                !(same && matches!(ev, watcher::Event::Apply(_)))
            }
            watcher::Event::Delete(n) => {
                self.seen
                    .remove(n.metadata.name.as_deref().unwrap_or_default());
                true
            }
            // A relist sends every Node again: what was seen of Nodes deleted meanwhile goes.
            watcher::Event::Init => {
                self.seen.clear();
                true
            }
            watcher::Event::InitDone => true,
        }
    }
}

fn fingerprint(n: &Node) -> u64 {
    let mut n = n.clone();
    n.metadata.resource_version = None;
    crate::hash::fnv(serde_json::to_vec(&n).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(heartbeat: &str, labels: serde_json::Value, ready: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "a1", "uid": "u1", "resourceVersion": heartbeat,
                "labels": labels,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                    "twill.io/route-reflector-cluster-id": "10.255.0.1"},
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
                "providerID": "x"},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.1.0.11"}],
                "conditions": [
                    {"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat,
                        "reason": "KubeletReady", "message": "kubelet is posting ready status"},
                    {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat}
                ],
                "images": [{"names": ["debian:bookworm"], "sizeBytes": 123}],
                "capacity": {"cpu": "2"}
            }
        }))
        .unwrap()
    }

    fn apply(r: &mut Relevant, mut n: Node) -> bool {
        trim(&mut n);
        r.changes(&watcher::Event::Apply(n))
    }

    #[test]
    fn heartbeats_are_not_passed_on_and_what_twill_reads_is() {
        let mut r = Relevant::default();
        let labels = json!({"rack": "a"});
        assert!(apply(
            &mut r,
            node("2026-12-05T10:00:00Z", labels.clone(), "True")
        ));
        // A heartbeat: new resourceVersion, new timestamps, nothing Twill reads.
        assert!(!apply(
            &mut r,
            node("2026-12-05T10:00:10Z", labels.clone(), "True")
        ));
        assert!(!apply(&mut r, node("2026-12-05T10:00:20Z", labels, "True")));
        // A label, readiness: passed on.
        assert!(apply(
            &mut r,
            node("2026-12-05T10:00:30Z", json!({"rack": "b"}), "True")
        ));
        assert!(apply(
            &mut r,
            node("2026-12-05T10:00:40Z", json!({"rack": "b"}), "Unknown")
        ));
        // A relist passes everything on, and a deletion.
        let mut n = node("2026-12-05T10:00:50Z", json!({"rack": "b"}), "Unknown");
        trim(&mut n);
        assert!(r.changes(&watcher::Event::InitApply(n.clone())));
        assert!(r.changes(&watcher::Event::Delete(n.clone())));
        assert!(r.changes(&watcher::Event::Apply(n)));
    }

    #[test]
    fn a_trimmed_node_keeps_what_the_view_reads_and_nothing_else() {
        let mut n = node("2026-12-05T10:00:00Z", json!({"rack": "a"}), "True");
        trim(&mut n);
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "a1", "uid": "u1", "resourceVersion": "2026-12-05T10:00:00Z",
                    "labels": {"rack": "a"},
                    "annotations": {"twill.io/route-reflector-cluster-id": "10.255.0.1"}},
                "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "10.1.0.11"}],
                    "conditions": [{"type": "Ready", "status": "True"}]
                }
            })
        );
    }
}
