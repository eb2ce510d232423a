//! The cluster view as serde reads it: strings and numbers, nothing validated yet. Both sources
//! (the file and the Kubernetes objects, see `k8s::view`) produce this form, and
//! `ClusterView::from_raw` validates it once.

use crate::selector::LabelSelector;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawView {
    pub(crate) as_number: Option<u64>,
    pub(crate) pod_network: Option<String>,
    pub(crate) node_to_node_mesh: Option<bool>,
    pub(crate) encapsulation: Option<RawEncap>,
    pub(crate) vxlan: Option<RawVxlan>,
    pub(crate) listen_port: Option<u64>,
    pub(crate) timers: Option<RawTimers>,
    pub(crate) graceful_restart: Option<RawGracefulRestart>,
    pub(crate) network_policy: Option<RawNetworkPolicy>,
    pub(crate) nat_outgoing: Option<crate::nat_outgoing::RawNatOutgoing>,
    pub(crate) route_reflectors: Option<crate::reflectors::RawReflectors>,
    #[serde(default)]
    pub(crate) nodes: Vec<RawNode>,
    #[serde(default)]
    pub(crate) peers: Vec<RawPeer>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEncap {
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    pub(crate) mode: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVxlan {
    pub(crate) vni: Option<u64>,
    pub(crate) port: Option<u64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawTimers {
    pub(crate) hold_time: Option<u64>,
    pub(crate) keepalive_time: Option<u64>,
    pub(crate) connect_retry_time: Option<u64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawGracefulRestart {
    pub(crate) enabled: Option<bool>,
    pub(crate) restart_time: Option<u64>,
    pub(crate) stale_routes_time: Option<u64>,
    pub(crate) deferral_time: Option<u64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNetworkPolicy {
    pub(crate) enabled: Option<bool>,
    pub(crate) wait_for_pod_rules: Option<bool>,
    pub(crate) wait_time: Option<u64>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNode {
    pub(crate) name: Option<String>,
    pub(crate) address: Option<String>,
    #[serde(rename = "podCIDR")]
    pub(crate) pod_cidr: Option<String>,
    pub(crate) as_number: Option<u64>,
    #[serde(rename = "routeReflectorClusterID")]
    pub(crate) route_reflector_cluster_id: Option<String>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// False when the Node's Ready condition is not True (Kubernetes); a file may say so too.
    pub(crate) ready: Option<bool>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawPeer {
    pub(crate) address: Option<String>,
    pub(crate) as_number: Option<u64>,
    pub(crate) node_selector: Option<LabelSelector>,
    pub(crate) password: Option<RawPassword>,
    pub(crate) accept_prefixes: Option<Vec<String>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPassword {
    pub(crate) file: String,
}
