//! Route reflectors chosen automatically (Calico makes an operator label them by hand,
//! calico#1887). Every agent computes the same choice from the same node list, so nothing is
//! coordinated: in each zone (the value of `zoneLabel` on the Node, "" without it) the nodes
//! that are Ready are ranked by a stable hash of their name and the first `perZone` reflect, with one cluster
//! ID. A node given `routeReflectorClusterID` explicitly wins: then no node is chosen
//! automatically. Without a `mode`, clusters above `autoAbove` nodes (50) choose, smaller
//! ones keep the full mesh (its n·(n−1)/2 sessions are cheap there, and it has no reflector to
//! lose).

use crate::view::{bad, Node, ViewError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawReflectors {
    pub(crate) mode: Option<String>,
    pub(crate) per_zone: Option<u64>,
    pub(crate) zone_label: Option<String>,
    #[serde(rename = "clusterID")]
    pub(crate) cluster_id: Option<String>,
    pub(crate) auto_above: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Reflectors only where `routeReflectorClusterID` says so.
    Off,
    /// Chosen automatically (unless some node has an explicit cluster ID).
    Auto,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `None`: Auto above `auto_above` nodes, Off below.
    pub mode: Option<Mode>,
    pub per_zone: usize,
    pub zone_label: String,
    pub cluster_id: Ipv4Addr,
    pub auto_above: usize,
}

pub const DEFAULT_ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const DEFAULT_CLUSTER_ID: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 1);

impl Settings {
    pub(crate) fn parse(raw: Option<&RawReflectors>) -> Result<Settings, ViewError> {
        let empty = RawReflectors::default();
        let r = raw.unwrap_or(&empty);
        let mode = match r.mode.as_deref() {
            None => None,
            Some("Auto") => Some(Mode::Auto),
            Some("Off") => Some(Mode::Off),
            Some(m) => return Err(bad("routeReflectors.mode", m, "is not Auto or Off")),
        };
        let per_zone = r.per_zone.unwrap_or(2);
        if !(1..=16).contains(&per_zone) {
            return Err(bad("routeReflectors.perZone", per_zone, "must be 1-16"));
        }
        let cluster_id = match &r.cluster_id {
            None => DEFAULT_CLUSTER_ID,
            Some(s) => s.parse().map_err(|_| {
                bad(
                    "routeReflectors.clusterID",
                    s,
                    "is not an IPv4-formatted cluster ID",
                )
            })?,
        };
        Ok(Settings {
            mode,
            per_zone: per_zone as usize,
            zone_label: r
                .zone_label
                .clone()
                .unwrap_or_else(|| DEFAULT_ZONE_LABEL.into()),
            cluster_id,
            auto_above: r.auto_above.unwrap_or(50) as usize,
        })
    }

    /// The nodes chosen to reflect and why, or `None` when the choice is not automatic (mode
    /// Off, a small cluster without a mode, or an explicit cluster ID on some node).
    pub fn choose(&self, nodes: &[Node]) -> Option<BTreeMap<String, String>> {
        let auto = match self.mode {
            Some(Mode::Auto) => true,
            Some(Mode::Off) => false,
            None => nodes.len() > self.auto_above,
        };
        if !auto || nodes.iter().any(|n| n.route_reflector_cluster_id.is_some()) {
            return None;
        }
        let mut zones: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
        // A node that is not Ready is not chosen: its zone's next one reflects instead.
        for n in nodes.iter().filter(|n| n.ready) {
            let zone = n.labels.get(&self.zone_label).map_or("", String::as_str);
            zones.entry(zone).or_default().push(n);
        }
        let mut chosen = BTreeMap::new();
        for (zone, mut members) in zones {
            // Ranked by a hash of the name, not the name: nodes named in order (node-1,
            // node-2…) are not all picked from the first rack added.
            members.sort_by_key(|n| (crate::hash::fnv(&n.name), n.name.clone()));
            let of = members.len();
            for (i, n) in members.into_iter().take(self.per_zone).enumerate() {
                let place = if zone.is_empty() {
                    "no zone".to_string()
                } else {
                    format!("zone {zone}")
                };
                chosen.insert(
                    n.name.clone(),
                    format!("auto: {place}, rank {} of {of}", i + 1),
                );
            }
        }
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use crate::ClusterView;

    /// `n` nodes in `zones` zones (labelled `topology.kubernetes.io/zone: zK`), in `order`.
    fn view(n: usize, zones: usize, extra: &str, reverse: bool) -> ClusterView {
        let mut nodes: Vec<String> = (1..=n)
            .map(|i| {
                format!(
                    "  - {{name: node-{i}, address: 10.1.{}.{}, podCIDR: 10.244.{i}.0/24, labels: {{topology.kubernetes.io/zone: z{}}}}}\n",
                    i / 200,
                    i % 200 + 1,
                    i % zones
                )
            })
            .collect();
        if reverse {
            nodes.reverse();
        }
        ClusterView::parse(&format!(
            "podNetwork: 10.244.0.0/16\n{extra}nodes:\n{}",
            nodes.concat()
        ))
        .unwrap()
    }

    #[test]
    fn above_fifty_nodes_two_reflectors_per_zone_are_chosen_the_same_everywhere() {
        let v = view(60, 1, "", false);
        assert_eq!(v.reflectors.len(), 2, "{:?}", v.reflectors);
        assert!(!v.node_to_node_mesh, "chosen reflectors replace the mesh");
        let ids: Vec<_> = v
            .nodes
            .iter()
            .filter_map(|n| n.route_reflector_cluster_id)
            .collect();
        assert_eq!(ids, vec![super::DEFAULT_CLUSTER_ID; 2]);
        // Any agent, whatever order its node list comes in, chooses the same.
        assert_eq!(view(60, 1, "", true).reflectors, v.reflectors);
        assert!(v
            .reflectors
            .values()
            .all(|w| w.starts_with("auto: zone z0, rank")));
        // A chosen node gone: another takes its place, the other stays.
        let gone = v.reflectors.keys().next().unwrap().clone();
        let text: String = (1..=60)
            .filter(|i| format!("node-{i}") != gone)
            .map(|i| format!("  - {{name: node-{i}, address: 10.1.0.{}, podCIDR: 10.244.{i}.0/24, labels: {{topology.kubernetes.io/zone: z0}}}}\n", i % 200 + 1))
            .collect();
        let w = ClusterView::parse(&format!("podNetwork: 10.244.0.0/16\nnodes:\n{text}")).unwrap();
        assert_eq!(w.reflectors.len(), 2);
        assert!(!w.reflectors.contains_key(&gone));
        let kept: Vec<_> = v.reflectors.keys().filter(|k| **k != gone).collect();
        assert!(w.reflectors.contains_key(kept[0]), "the other stays");
        // A chosen node not Ready: replaced the same way, by the same node.
        let text: String = (1..=60)
            .map(|i| {
                let ready = if format!("node-{i}") == gone { ", ready: false" } else { "" };
                format!("  - {{name: node-{i}, address: 10.1.0.{}, podCIDR: 10.244.{i}.0/24, labels: {{topology.kubernetes.io/zone: z0}}{ready}}}\n", i % 200 + 1)
            })
            .collect();
        let r = ClusterView::parse(&format!("podNetwork: 10.244.0.0/16\nnodes:\n{text}")).unwrap();
        assert_eq!(r.reflectors, w.reflectors, "not Ready counts as gone");
    }

    #[test]
    fn per_zone_explicit_ids_small_clusters_and_bad_values() {
        let v = view(30, 3, "routeReflectors: {mode: Auto, perZone: 2}\n", false);
        assert_eq!(v.reflectors.len(), 6);
        for z in ["z0", "z1", "z2"] {
            let n = v
                .reflectors
                .values()
                .filter(|w| w.contains(&format!("zone {z},")))
                .count();
            assert_eq!(n, 2, "{z}: {:?}", v.reflectors);
        }
        // Small and no mode: the mesh, no reflector.
        let v = view(10, 1, "", false);
        assert!(v.reflectors.is_empty() && v.node_to_node_mesh);
        // An explicit cluster ID wins over the automatic choice; the mesh stays as configured.
        let v = ClusterView::parse("podNetwork: 10.244.0.0/16\nrouteReflectors: {mode: Auto}\nnodes:\n  - {name: a, address: 10.1.0.1, podCIDR: 10.244.1.0/24, routeReflectorClusterID: 10.0.0.9}\n  - {name: b, address: 10.1.0.2, podCIDR: 10.244.2.0/24}\n").unwrap();
        assert_eq!(v.reflectors.len(), 1);
        assert_eq!(v.reflectors["a"], "routeReflectorClusterID 10.0.0.9");
        assert!(v.node_to_node_mesh);
        let e = ClusterView::parse(
            "podNetwork: 10.244.0.0/16\nrouteReflectors: {mode: Sometimes}\nnodes: []\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "routeReflectors.mode: Sometimes is not Auto or Off"
        );
        let e = ClusterView::parse(
            "podNetwork: 10.244.0.0/16\nrouteReflectors: {perZone: 0}\nnodes: []\n",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "routeReflectors.perZone: 0 must be 1-16");
    }
}
