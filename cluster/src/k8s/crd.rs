//! Twill's custom resources, group `twill.io`, version `v1`, cluster-scoped, shaped like
//! Calico's `BGPConfiguration` and `BGPPeer` so a Calico user reads them without docs. Every
//! field is optional where the file format has a default; the defaults are the file's.

use crate::selector::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One CIDR, or two separated by a comma (kubeadm's `podSubnet` form); the agent checks the
/// rest and names the field.
const POD_NETWORK_PATTERN: &str = r"^[0-9a-fA-F.:]+/[0-9]{1,3}(,[0-9a-fA-F.:]+/[0-9]{1,3})?$";

/// The cluster-wide settings; the agent reads the one named `default`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "twill.io",
    version = "v1",
    kind = "BGPConfiguration",
    plural = "bgpconfigurations",
    shortname = "bgpconfig"
)]
#[serde(rename_all = "camelCase")]
pub struct BGPConfigurationSpec {
    /// The cluster's AS number (default 64512); a node may override it with the annotation
    /// `twill.io/as-number`.
    #[schemars(range(min = 1, max = 4294967294u64), extend("default" = 64512))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u64>,
    /// Every pod CIDR lies inside this network: the cluster's --cluster-cidr, e.g.
    /// `10.244.0.0/16`, or for dual-stack one IPv4 and one IPv6 network separated by a comma,
    /// `10.244.0.0/16,fd00:10:244::/56`.
    #[schemars(extend("pattern" = POD_NETWORK_PATTERN))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_network: Option<String>,
    /// iBGP between every pair of nodes of the same AS (default true).
    #[schemars(extend("default" = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// Port the nodes' speakers listen on (default 179).
    #[schemars(range(min = 1, max = 65535), extend("default" = 179))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encapsulation: Option<EncapsulationSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<VxlanSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timers: Option<TimersSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<GracefulRestartSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySettingsSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_reflectors: Option<RouteReflectorsSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<NatOutgoingSpec>,
}

/// Outgoing NAT: a pod's packet to an address outside every pod CIDR of the cluster leaves its
/// node with the node's address (Calico's natOutgoing, flannel's ip-masq).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatOutgoingSpec {
    /// Masquerade IPv4 pods' traffic leaving the cluster (default true).
    #[schemars(extend("default" = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<bool>,
    /// Masquerade IPv6 pods' traffic leaving the cluster (default true).
    #[schemars(extend("default" = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// Destinations that keep the pod's address (e.g. a datacentre range whose routers learn
    /// the pod CIDRs).
    #[serde(rename = "nonMasqueradeCIDRs", skip_serializing_if = "Option::is_none")]
    pub non_masquerade_cidrs: Option<Vec<String>>,
}

/// Route reflectors chosen automatically, the same on every agent: in each zone the first
/// `perZone` nodes by a hash of their name. A node annotated with
/// `twill.io/route-reflector-cluster-id` wins (then none is chosen).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteReflectorsSpec {
    /// Auto or Off; absent: Auto above `autoAbove` nodes, the full mesh below.
    #[schemars(extend("enum" = ["Auto", "Off"]))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Reflectors per zone (default 2).
    #[schemars(range(min = 1, max = 16), extend("default" = 2))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_zone: Option<u64>,
    /// The Node label naming its zone (default topology.kubernetes.io/zone).
    #[schemars(extend("default" = "topology.kubernetes.io/zone"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_label: Option<String>,
    /// The chosen reflectors' cluster ID (default 10.255.255.1).
    #[serde(rename = "clusterID", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "ipv4"))]
    pub cluster_id: Option<String>,
    /// Node count above which reflectors are chosen when no mode is given (default 50).
    #[schemars(range(min = 1), extend("default" = 50))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_above: Option<u64>,
}

/// NetworkPolicy enforcement by the agents.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySettingsSpec {
    /// Enforce NetworkPolicy (default true; agents read it when they start).
    #[schemars(extend("default" = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A new pod's network setup (CNI ADD) waits until its rules are in force (default true).
    #[schemars(extend("default" = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for_pod_rules: Option<bool>,
    /// Seconds that wait may take before the pod's setup fails (default 10).
    #[schemars(range(min = 1, max = 300), extend("default" = 10))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_time: Option<u64>,
}

/// Graceful restart (RFC 4724 with RFC 8538): an agent restart keeps the node's routes on the
/// other nodes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GracefulRestartSpec {
    /// Offer and help graceful restart (default true).
    #[schemars(extend("default" = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Seconds the other nodes keep a restarting node's routes (default 120).
    #[schemars(range(min = 1, max = 4095), extend("default" = 120))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_time: Option<u64>,
    /// Seconds a restarted node's routes stay stale at most once it is back (default 360).
    #[schemars(range(min = 1, max = 86400), extend("default" = 360))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_routes_time: Option<u64>,
    /// Seconds a restarting node waits for the others' End-of-RIB after its first session is
    /// up (default 5).
    #[schemars(range(min = 1, max = 3600), extend("default" = 5))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferral_time: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct EncapsulationSpec {
    /// VXLAN (default) or IPIP.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["VXLAN", "IPIP"], "default" = "VXLAN"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Always, CrossSubnet (default) or Never.
    #[schemars(extend("enum" = ["Always", "CrossSubnet", "Never"], "default" = "CrossSubnet"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct VxlanSpec {
    /// VXLAN network identifier (default 4096).
    #[schemars(range(min = 1, max = 16777215), extend("default" = 4096))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u64>,
    /// UDP port (default 4789).
    #[schemars(range(min = 1, max = 65535), extend("default" = 4789))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimersSpec {
    /// Seconds (default 90; 0 = no keepalives, else 3–65535).
    #[schemars(range(max = 65535), extend("default" = 90))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<u64>,
    /// Seconds (default holdTime / 3).
    #[schemars(range(max = 65535))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<u64>,
    /// Seconds (default 5).
    #[schemars(range(min = 1, max = 65535), extend("default" = 5))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_retry_time: Option<u64>,
}

/// A BGP peer outside the cluster (a ToR, an external reflector), for the nodes its selector
/// matches.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "twill.io",
    version = "v1",
    kind = "BGPPeer",
    plural = "bgppeers",
    printcolumn = r#"{"name":"Peer IP","type":"string","jsonPath":".spec.peerIP"}"#,
    printcolumn = r#"{"name":"AS","type":"integer","jsonPath":".spec.asNumber"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// An IPv4 or IPv6 address. (`format: ip` is no format the API server knows: it drops it
    /// and accepts anything; `ipv4` / `ipv6` it checks, in v1.20 as now.)
    #[serde(rename = "peerIP")]
    #[schemars(extend("anyOf" = [{"format": "ipv4"}, {"format": "ipv6"}]))]
    pub peer_ip: String,
    #[schemars(range(min = 1, max = 4294967294u64))]
    pub as_number: u64,
    /// Which nodes peer with it; absent = every node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// TCP MD5 password, from a Secret in the agent's own namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSpec>,
    /// Prefixes taken from this peer: anything inside one of these (default: podNetwork).
    #[schemars(extend("items" = {"type": "string", "format": "cidr"}))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_prefixes: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSpec {
    pub secret_key_ref: SecretKeyRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// Both CRDs as a multi-document YAML stream.
pub fn manifests() -> String {
    use kube::CustomResourceExt;
    [BGPConfiguration::crd(), BGPPeer::crd()]
        .iter()
        .map(|c| format!("---\n{}", serde_yaml_ng::to_string(c).expect("crd yaml")))
        .collect()
}
