//! Kubernetes objects → the cluster view, through the same validation as the file: each object
//! becomes the file's raw form, and an object whose values are bad is reported by kind, name,
//! field and value and left out, so one bad object never takes the agent down.

use super::crd::{BGPConfiguration, BGPPeer};
use crate::nat_outgoing::RawNatOutgoing;
use crate::reflectors::RawReflectors;
use crate::view::{
    ClusterView, RawEncap, RawGracefulRestart, RawNetworkPolicy, RawNode, RawPassword, RawPeer,
    RawTimers, RawView, RawVxlan,
};
use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const ADDRESS_ANNOTATION: &str = "twill.io/address";
pub const AS_ANNOTATION: &str = "twill.io/as-number";
pub const REFLECTOR_ANNOTATION: &str = "twill.io/route-reflector-cluster-id";
/// The one BGPConfiguration the agent reads.
pub const CONFIG_NAME: &str = "default";

/// What the API holds right now.
pub struct Objects<'a> {
    pub config: Option<&'a BGPConfiguration>,
    pub nodes: &'a [Node],
    pub peers: &'a [BGPPeer],
    /// Password files already written for peers, by BGPPeer name.
    pub passwords: &'a BTreeMap<String, PathBuf>,
    /// podNetwork when the BGPConfiguration gives none (the DaemonSet's `TWILL_POD_NETWORK`,
    /// as Calico's `CALICO_IPV4POOL_CIDR`).
    pub default_pod_network: Option<&'a str>,
}

/// The view (None until a usable BGPConfiguration exists), objects left out because their
/// values are bad, and objects not usable yet (a node without a pod CIDR).
#[derive(Debug, Default)]
pub struct Built {
    pub view: Option<ClusterView>,
    pub problems: Vec<String>,
    pub waiting: Vec<String>,
}

/// Where a raw field of the file form came from in the object.
fn node_field(raw: &str, address_from_annotation: bool) -> String {
    match raw {
        "name" => "metadata.name".into(),
        "address" if address_from_annotation => {
            format!("metadata.annotations[{ADDRESS_ANNOTATION}]")
        }
        "address" => "status.addresses[InternalIP]".into(),
        "podCIDR" => "spec.podCIDRs".into(),
        "asNumber" => format!("metadata.annotations[{AS_ANNOTATION}]"),
        "routeReflectorClusterID" => format!("metadata.annotations[{REFLECTOR_ANNOTATION}]"),
        other => other.to_string(),
    }
}

fn peer_field(raw: &str) -> String {
    match raw {
        "address" => "spec.peerIP".into(),
        other => format!("spec.{other}"),
    }
}

fn config_field(raw: &str) -> String {
    match raw {
        "nodeToNodeMesh" => "spec.nodeToNodeMeshEnabled".into(),
        other => format!("spec.{other}"),
    }
}

/// `nodes[3].podCIDR` → (3, "podCIDR").
fn indexed<'f>(field: &'f str, list: &str) -> Option<(usize, &'f str)> {
    let rest = field.strip_prefix(list)?.strip_prefix('[')?;
    let (i, rest) = rest.split_once(']')?;
    Some((i.parse().ok()?, rest.strip_prefix('.').unwrap_or(rest)))
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// A Node in the file's form, or why it is not usable (yet).
fn raw_node(n: &Node, pod_network: Option<&str>) -> Result<(RawNode, bool), (bool, String)> {
    let name = name_of(&n.metadata);
    let annotations = n.metadata.annotations.clone().unwrap_or_default();
    let by_annotation = annotations.get(ADDRESS_ANNOTATION).cloned();
    // Kubernetes lists the primary InternalIP first; a dual-stack node has one per family.
    let mut internal: Vec<String> = Vec::new();
    for a in n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
    {
        if !internal
            .iter()
            .any(|i| i.contains(':') == a.address.contains(':'))
        {
            internal.push(a.address.clone());
        }
    }
    let from_annotation = by_annotation.is_some();
    let address = match by_annotation {
        // The annotation decides the first address; a family it leaves out still comes from
        // the InternalIPs, so overriding the IPv4 address keeps a dual-stack node dual.
        Some(a) => {
            let mut list: Vec<String> = vec![a.clone()];
            list.extend(
                internal
                    .iter()
                    .filter(|i| !a.contains(',') && i.contains(':') != a.contains(':'))
                    .cloned(),
            );
            list.join(",")
        }
        None if !internal.is_empty() => internal.join(","),
        None => {
            return Err((
                false,
                format!(
                    "Node {name}: no InternalIP in status.addresses and no {ADDRESS_ANNOTATION} annotation"
                ),
            ))
        }
    };
    let spec = n.spec.clone().unwrap_or_default();
    let mut cidrs = spec.pod_cidrs.unwrap_or_default();
    if cidrs.is_empty() {
        cidrs.extend(spec.pod_cidr);
    }
    // The pod CIDRs of the families Twill routes: a dual-stack cluster may run Twill for one
    // family only.
    let families: Vec<bool> = pod_network
        .unwrap_or_default()
        .split(',')
        .map(|p| p.contains(':'))
        .collect();
    cidrs.retain(|c| families.contains(&c.contains(':')));
    if cidrs.is_empty() {
        return Err((
            true,
            format!("Node {name}: no pod CIDR yet (spec.podCIDRs)"),
        ));
    }
    let pod_cidr = cidrs.join(",");
    let as_number = match annotations.get(AS_ANNOTATION) {
        None => None,
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            (
                false,
                format!(
                    "Node {name}: metadata.annotations[{AS_ANNOTATION}]: {v} is not an AS number"
                ),
            )
        })?),
    };
    Ok((
        RawNode {
            name: Some(name),
            address: Some(address),
            pod_cidr: Some(pod_cidr),
            as_number,
            route_reflector_cluster_id: annotations.get(REFLECTOR_ANNOTATION).cloned(),
            labels: n.metadata.labels.clone().unwrap_or_default(),
            // Not Ready only when the kubelet says so: a Node without the condition yet is
            // taken as ready.
            ready: n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status == "True"),
        },
        from_annotation,
    ))
}

fn raw_peer(p: &BGPPeer, passwords: &BTreeMap<String, PathBuf>) -> RawPeer {
    let s = &p.spec;
    RawPeer {
        address: Some(s.peer_ip.clone()),
        as_number: Some(s.as_number),
        node_selector: s.node_selector.clone(),
        password: passwords.get(&name_of(&p.metadata)).map(|f| RawPassword {
            file: f.display().to_string(),
        }),
        accept_prefixes: s.accept_prefixes.clone(),
    }
}

fn raw_top(c: &BGPConfiguration) -> RawView {
    let s = &c.spec;
    RawView {
        as_number: s.as_number,
        pod_network: s.pod_network.clone(),
        node_to_node_mesh: s.node_to_node_mesh_enabled,
        encapsulation: s.encapsulation.as_ref().map(|e| RawEncap {
            kind: e.kind.clone(),
            mode: e.mode.clone(),
        }),
        vxlan: s.vxlan.as_ref().map(|v| RawVxlan {
            vni: v.vni,
            port: v.port,
        }),
        listen_port: s.listen_port,
        timers: s.timers.as_ref().map(|t| RawTimers {
            hold_time: t.hold_time,
            keepalive_time: t.keepalive_time,
            connect_retry_time: t.connect_retry_time,
        }),
        graceful_restart: s.graceful_restart.as_ref().map(|g| RawGracefulRestart {
            enabled: g.enabled,
            restart_time: g.restart_time,
            stale_routes_time: g.stale_routes_time,
            deferral_time: g.deferral_time,
        }),
        route_reflectors: s.route_reflectors.as_ref().map(|r| RawReflectors {
            mode: r.mode.clone(),
            per_zone: r.per_zone,
            zone_label: r.zone_label.clone(),
            cluster_id: r.cluster_id.clone(),
            auto_above: r.auto_above,
        }),
        network_policy: s.network_policy.as_ref().map(|n| RawNetworkPolicy {
            enabled: n.enabled,
            wait_for_pod_rules: n.wait_for_pod_rules,
            wait_time: n.wait_time,
        }),
        nat_outgoing: s.nat_outgoing.as_ref().map(|n| RawNatOutgoing {
            ipv4: n.ipv4,
            ipv6: n.ipv6,
            non_masquerade_cidrs: n.non_masquerade_cidrs.clone(),
        }),
        nodes: Vec::new(),
        peers: Vec::new(),
    }
}

pub fn build(o: &Objects) -> Built {
    let mut built = Built::default();
    let mut raw = o.config.map(raw_top).unwrap_or_default();
    if raw.pod_network.is_none() {
        raw.pod_network = o.default_pod_network.map(String::from);
    }
    if raw.pod_network.is_none() {
        built.waiting.push(format!(
            "BGPConfiguration {CONFIG_NAME}: no spec.podNetwork (and no --pod-network / TWILL_POD_NETWORK)"
        ));
        return built;
    }
    // Per raw entry: its object's name, and for nodes whether the address is annotated.
    let mut node_src: Vec<(String, bool)> = Vec::new();
    for n in o.nodes {
        match raw_node(n, raw.pod_network.as_deref()) {
            Ok((r, annotated)) => {
                node_src.push((r.name.clone().unwrap_or_default(), annotated));
                raw.nodes.push(r);
            }
            Err((true, why)) => built.waiting.push(why),
            Err((false, why)) => built.problems.push(why),
        }
    }
    let mut peer_src: Vec<String> = Vec::new();
    for p in o.peers {
        let name = name_of(&p.metadata);
        // A peer that names a password is never tried without it.
        if p.spec.password.is_some() && !o.passwords.contains_key(&name) {
            built.waiting.push(format!(
                "BGPPeer {name}: its password Secret is not read yet"
            ));
            continue;
        }
        peer_src.push(name);
        raw.peers.push(raw_peer(p, o.passwords));
    }
    // Each round either succeeds or leaves one object out: bounded by the object count.
    for _ in 0..=raw.nodes.len() + raw.peers.len() {
        let e = match ClusterView::from_raw(raw.clone()) {
            Ok(v) => {
                built.view = Some(v);
                return built;
            }
            Err(e) => e,
        };
        let tail = |f: String| {
            if e.value.is_empty() {
                format!("{f}: {}", e.reason)
            } else {
                format!("{f}: {} {}", e.value, e.reason)
            }
        };
        if let Some((i, rest)) = indexed(&e.field, "nodes").filter(|(i, _)| *i < raw.nodes.len()) {
            let (name, annotated) = node_src.remove(i);
            raw.nodes.remove(i);
            built.problems.push(tail(format!(
                "Node {name}: {}",
                node_field(rest, annotated)
            )));
        } else if let Some((i, rest)) =
            indexed(&e.field, "peers").filter(|(i, _)| *i < raw.peers.len())
        {
            let name = peer_src.remove(i);
            raw.peers.remove(i);
            built
                .problems
                .push(tail(format!("BGPPeer {name}: {}", peer_field(rest))));
        } else {
            built.problems.push(tail(format!(
                "BGPConfiguration {CONFIG_NAME}: {}",
                config_field(&e.field)
            )));
            return built;
        }
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn n(name: &str, ip: &str, cidr: Option<&str>) -> Node {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"rack": "a"}},
            "spec": {},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}
        });
        if let Some(c) = cidr {
            v["spec"]["podCIDRs"] = json!([c]);
        }
        node(v)
    }

    fn config(spec: serde_json::Value) -> BGPConfiguration {
        serde_json::from_value(json!({"apiVersion": "twill.io/v1", "kind": "BGPConfiguration", "metadata": {"name": "default"}, "spec": spec})).unwrap()
    }

    fn peer(name: &str, spec: serde_json::Value) -> BGPPeer {
        serde_json::from_value(json!({"apiVersion": "twill.io/v1", "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec})).unwrap()
    }

    fn build_with(c: Option<&BGPConfiguration>, nodes: &[Node], peers: &[BGPPeer]) -> Built {
        build(&Objects {
            config: c,
            nodes,
            peers,
            passwords: &BTreeMap::new(),
            default_pod_network: None,
        })
    }

    #[test]
    fn nodes_and_peers_become_the_view() {
        let c = config(json!({"podNetwork": "10.244.0.0/16", "asNumber": 65000,
            "gracefulRestart": {"restartTime": 30, "deferralTime": 2}}));
        let mut a2 = n("a2", "10.1.0.12", Some("10.244.2.0/24"));
        a2.metadata.annotations = Some(BTreeMap::from([
            (ADDRESS_ANNOTATION.to_string(), "10.9.9.12".to_string()),
            (AS_ANNOTATION.to_string(), "65001".to_string()),
            (REFLECTOR_ANNOTATION.to_string(), "10.255.0.1".to_string()),
        ]));
        let nodes = [n("a1", "10.1.0.11", Some("10.244.1.0/24")), a2];
        let peers = [peer(
            "tor-a",
            json!({"peerIP": "10.1.0.1", "asNumber": 65100, "nodeSelector": {"matchLabels": {"rack": "a"}}}),
        )];
        let b = build_with(Some(&c), &nodes, &peers);
        assert!(b.problems.is_empty() && b.waiting.is_empty(), "{b:?}");
        let v = b.view.unwrap();
        assert_eq!(v.as_number, 65000);
        let gr = v.graceful_restart.unwrap();
        assert_eq!(
            (gr.restart_time, gr.stale_routes_time, gr.deferral_time),
            (30, 360, 2)
        );
        let a1 = v.node("a1").unwrap();
        assert_eq!(a1.address.to_string(), "10.1.0.11");
        assert_eq!(a1.labels["rack"], "a");
        let a2 = v.node("a2").unwrap();
        assert_eq!(
            a2.address.to_string(),
            "10.9.9.12",
            "the annotation wins over InternalIP"
        );
        assert_eq!(a2.as_number, 65001);
        assert!(a2.route_reflector_cluster_id.is_some());
        assert_eq!(v.peers[0].address.to_string(), "10.1.0.1");
    }

    #[test]
    fn dual_stack_nodes_bring_both_families() {
        let dual = node(json!({
            "metadata": {"name": "a1"},
            "spec": {"podCIDRs": ["10.244.1.0/24", "fd00:244:0:1::/64"]},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "10.1.0.11"},
                {"type": "InternalIP", "address": "10.1.0.99"},
                {"type": "InternalIP", "address": "fd00:1::11"},
                {"type": "Hostname", "address": "a1"}]}
        }));
        let c = config(json!({"podNetwork": "10.244.0.0/16,fd00:244::/48"}));
        let b = build_with(Some(&c), std::slice::from_ref(&dual), &[]);
        assert!(b.problems.is_empty(), "{b:?}");
        let v = b.view.unwrap();
        let a1 = v.node("a1").unwrap();
        assert_eq!(
            a1.addresses,
            [
                "10.1.0.11".parse::<std::net::IpAddr>().unwrap(),
                "fd00:1::11".parse().unwrap()
            ],
            "the first InternalIP of each family, the primary first"
        );
        assert_eq!(a1.pod_cidrs.len(), 2);
        // An annotation naming only the IPv4 address keeps the IPv6 InternalIP.
        let mut annotated = dual.clone();
        annotated.metadata.annotations = Some(BTreeMap::from([(
            ADDRESS_ANNOTATION.to_string(),
            "10.9.9.11".to_string(),
        )]));
        let v = build_with(Some(&c), &[annotated], &[]).view.unwrap();
        assert_eq!(
            v.node("a1").unwrap().addresses,
            [
                "10.9.9.11".parse::<std::net::IpAddr>().unwrap(),
                "fd00:1::11".parse().unwrap()
            ]
        );
        // Twill run for IPv4 only in a dual-stack cluster takes the IPv4 pod CIDR alone.
        let c = config(json!({"podNetwork": "10.244.0.0/16"}));
        let v = build_with(Some(&c), &[dual], &[]).view.unwrap();
        assert_eq!(
            v.node("a1").unwrap().pod_cidrs,
            ["10.244.1.0/24".parse::<ipnet::IpNet>().unwrap()]
        );
    }

    #[test]
    fn a_peer_whose_password_is_not_read_waits() {
        let c = config(json!({"podNetwork": "10.244.0.0/16"}));
        let nodes = [n("a1", "10.1.0.11", Some("10.244.1.0/24"))];
        let peers = [peer(
            "tor",
            json!({"peerIP": "10.1.0.1", "asNumber": 65100,
                   "password": {"secretKeyRef": {"name": "tor-bgp", "key": "password"}}}),
        )];
        let b = build_with(Some(&c), &nodes, &peers);
        assert!(b.view.unwrap().peers.is_empty(), "not tried unsigned");
        assert_eq!(
            b.waiting,
            ["BGPPeer tor: its password Secret is not read yet"]
        );
        let passwords =
            BTreeMap::from([("tor".to_string(), PathBuf::from("/run/twill/secrets/tor"))]);
        let b = build(&Objects {
            config: Some(&c),
            nodes: &nodes,
            peers: &peers,
            passwords: &passwords,
            default_pod_network: None,
        });
        let v = b.view.unwrap();
        assert_eq!(
            v.peers[0].password_file.as_deref(),
            Some(std::path::Path::new("/run/twill/secrets/tor"))
        );
    }

    #[test]
    fn a_node_without_a_pod_cidr_is_waited_for() {
        let c = config(json!({"podNetwork": "10.244.0.0/16"}));
        let nodes = [
            n("a1", "10.1.0.11", Some("10.244.1.0/24")),
            n("a2", "10.1.0.12", None),
        ];
        let b = build_with(Some(&c), &nodes, &[]);
        assert_eq!(b.waiting, ["Node a2: no pod CIDR yet (spec.podCIDRs)"]);
        assert!(b.problems.is_empty());
        assert_eq!(b.view.unwrap().nodes.len(), 1);
    }

    #[test]
    fn bad_objects_are_named_and_left_out() {
        let c = config(json!({"podNetwork": "10.244.0.0/16"}));
        let mut bad_as = n("a3", "10.1.0.13", Some("10.244.3.0/24"));
        bad_as.metadata.annotations = Some(BTreeMap::from([(
            AS_ANNOTATION.to_string(),
            "lots".to_string(),
        )]));
        let nodes = [
            n("a1", "10.1.0.11", Some("10.244.1.0/24")),
            n("a2", "10.1.0.12", Some("10.245.2.0/24")),
            bad_as,
            n("a4", "10.1.0.11", Some("10.244.4.0/24")),
        ];
        let peers = [
            peer("ok", json!({"peerIP": "10.1.0.1", "asNumber": 65100})),
            peer("typo", json!({"peerIP": "10.1.0.300", "asNumber": 65100})),
        ];
        let b = build_with(Some(&c), &nodes, &peers);
        assert_eq!(
            b.problems,
            [
                "Node a3: metadata.annotations[twill.io/as-number]: lots is not an AS number",
                "Node a2: spec.podCIDRs: 10.245.2.0/24 is outside podNetwork 10.244.0.0/16",
                "Node a4: status.addresses[InternalIP]: 10.1.0.11 is also nodes[0].address (a1)",
                "BGPPeer typo: spec.peerIP: 10.1.0.300 is not an IPv4 or IPv6 address",
            ]
        );
        let v = b.view.unwrap();
        assert_eq!(v.nodes.len(), 1);
        assert_eq!(v.peers.len(), 1);
    }

    #[test]
    fn the_configuration_is_needed_and_checked() {
        let nodes = [n("a1", "10.1.0.11", Some("10.244.1.0/24"))];
        let b = build_with(None, &nodes, &[]);
        assert!(b.view.is_none());
        assert_eq!(b.waiting.len(), 1);
        // Without a BGPConfiguration the defaults apply, with the DaemonSet's pod network.
        let b = build(&Objects {
            config: None,
            nodes: &nodes,
            peers: &[],
            passwords: &BTreeMap::new(),
            default_pod_network: Some("10.244.0.0/16"),
        });
        let v = b.view.expect("a view from defaults");
        assert_eq!((v.as_number, v.node_to_node_mesh), (64512, true));
        let c = config(
            json!({"podNetwork": "10.244.0.0/16", "nodeToNodeMeshEnabled": false, "encapsulation": {"mode": "Sometimes"}}),
        );
        let b = build_with(Some(&c), &nodes, &[]);
        assert!(b.view.is_none());
        assert_eq!(
            b.problems,
            ["BGPConfiguration default: spec.encapsulation.mode: Sometimes is not one of Always, CrossSubnet, Never"]
        );
    }

    #[test]
    fn a_node_whose_ready_condition_is_not_true_is_not_ready_one_without_it_is() {
        let with_ready = |name: &str, ip: &str, cidr: &str, ready: &str| {
            let mut node = n(name, ip, Some(cidr));
            let status = node.status.as_mut().expect("status");
            status.conditions = Some(vec![serde_json::from_value(
                json!({"type": "Ready", "status": ready}),
            )
            .unwrap()]);
            node
        };
        let nodes = [
            with_ready("a", "10.1.0.1", "10.244.1.0/24", "True"),
            with_ready("b", "10.1.0.2", "10.244.2.0/24", "Unknown"),
            n("c", "10.1.0.3", Some("10.244.3.0/24")),
        ];
        let c = config(json!({"podNetwork": "10.244.0.0/16"}));
        let v = build_with(Some(&c), &nodes, &[]).view.expect("a view");
        let ready: Vec<bool> = ["a", "b", "c"]
            .iter()
            .map(|n| v.node(n).unwrap().ready)
            .collect();
        assert_eq!(ready, [true, false, true]);
    }
}
