//! The cluster view file: what every node knows about the cluster, in Calico's words.
//!
//! Parsing happens in two steps: serde reads the YAML into `Raw*` structs of strings and
//! numbers, then [`ClusterView::from_raw`] validates each value and names the field and the bad
//! value when one is wrong (`nodes[2].podCIDR: 10.244.1.0/33 is not a CIDR`).

use crate::overlap::CidrIndex;
pub(crate) use crate::raw::*;
use crate::selector::Selector;
use ipip::{Encap, EncapMode, EncapType, VxlanConfig};
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// A bad value in the cluster view, with the path of the field that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.field, self.reason)
        } else {
            write!(f, "{}: {} {}", self.field, self.value, self.reason)
        }
    }
}

impl std::error::Error for ViewError {}

pub(crate) fn bad(
    field: impl Into<String>,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ViewError {
    ViewError {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// BGP timers in seconds, BIRD / Calico defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub hold: u16,
    pub keepalive: u16,
    pub connect_retry: u16,
}

/// Graceful restart (RFC 4724), seconds. `None` in the view: turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestart {
    /// How long the other nodes keep a restarting node's routes (default 120, as BIRD and
    /// Calico).
    pub restart_time: u16,
    /// How long a restarted node's routes stay stale at most once its session is back
    /// (default 360, as FRR).
    pub stale_routes_time: u32,
    /// How long a restarting node waits, after its first session is up, for the others'
    /// End-of-RIB before it advertises (default 5).
    pub deferral_time: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The address BGP sessions and tunnels use: the first of `addresses`.
    pub address: IpAddr,
    /// One address, or one per family on a dual-stack node; next hops of a pod CIDR are the
    /// address of its family.
    pub addresses: Vec<IpAddr>,
    /// One pod CIDR, or one per family.
    pub pod_cidrs: Vec<IpNet>,
    pub as_number: u32,
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    pub labels: BTreeMap<String, String>,
    /// The Node is Ready (or says nothing about it): only such nodes are chosen as reflectors.
    pub ready: bool,
}

impl Node {
    /// The node's address in the family of `like` (for a session, or a next hop).
    pub fn address_like(&self, like: IpAddr) -> Option<IpAddr> {
        self.addresses
            .iter()
            .copied()
            .find(|a| a.is_ipv6() == like.is_ipv6())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPeer {
    pub address: IpAddr,
    pub as_number: u32,
    pub node_selector: Option<Selector>,
    pub password_file: Option<PathBuf>,
    /// Prefixes taken from this peer: anything inside one of these. `None`: the pod network.
    pub accept_prefixes: Option<Vec<IpNet>>,
}

/// NetworkPolicy enforcement (`networkPolicy` in the file and in BGPConfiguration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkPolicySettings {
    /// Enforce NetworkPolicy (default true; read at the agent's start).
    pub enabled: bool,
    /// A pod's CNI ADD waits until its rules are in force, for at most this many seconds
    /// (`waitForPodRules`, default true; `waitTime`, default 10), so no pod runs unprotected.
    pub pod_wait: Option<u32>,
}

/// The validated cluster view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub as_number: u32,
    /// One network, or one per family (dual-stack).
    pub pod_networks: Vec<IpNet>,
    pub node_to_node_mesh: bool,
    pub encapsulation: Encap,
    pub vxlan: VxlanConfig,
    pub listen_port: u16,
    pub timers: Timers,
    pub graceful_restart: Option<GracefulRestart>,
    pub network_policy: NetworkPolicySettings,
    /// Outgoing NAT for pods (`natOutgoing`).
    pub nat_outgoing: crate::NatOutgoingSettings,
    /// The route reflectors by node name, and why each is one (`twill status` shows it).
    pub reflectors: BTreeMap<String, String>,
    pub nodes: Vec<Node>,
    pub peers: Vec<ExternalPeer>,
    /// Index of `nodes` by name and by each address, built once at validation: a view is
    /// only made by parsing, and `nodes` is read, never edited, afterwards.
    by_name: HashMap<String, usize>,
    by_address: HashMap<IpAddr, usize>,
}

pub(crate) fn cidr(field: &str, s: &str) -> Result<IpNet, ViewError> {
    let net: IpNet = s.parse().map_err(|_| bad(field, s, "is not a CIDR"))?;
    if net.trunc() != net {
        return Err(bad(
            field,
            s,
            format!("has host bits set (the network is {})", net.trunc()),
        ));
    }
    Ok(net)
}

/// One value, or an IPv4 and an IPv6 one separated by a comma: the form Kubernetes uses for
/// dual-stack (`--cluster-cidr`, kubelet's `--node-ip`), so the same string works here.
fn dual<T>(
    field: &str,
    s: &str,
    one: impl Fn(&str, &str) -> Result<T, ViewError>,
    is_v6: impl Fn(&T) -> bool,
) -> Result<Vec<T>, ViewError> {
    let items = s
        .split(',')
        .map(|p| one(field, p.trim()))
        .collect::<Result<Vec<T>, _>>()?;
    if items.len() > 2 || (items.len() == 2 && is_v6(&items[0]) == is_v6(&items[1])) {
        return Err(bad(
            field,
            s,
            "must be one value, or an IPv4 and an IPv6 one separated by a comma",
        ));
    }
    Ok(items)
}

fn family(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

fn ip(field: &str, s: &str) -> Result<IpAddr, ViewError> {
    s.parse()
        .map_err(|_| bad(field, s, "is not an IPv4 or IPv6 address"))
}

fn asn(field: &str, v: u64) -> Result<u32, ViewError> {
    // 0 and 65535 / 4294967295 are reserved (RFC 7300), 23456 is AS_TRANS (RFC 6793).
    match v {
        0 | 23456 | 65535 | 4294967295 => Err(bad(field, v, "is a reserved AS number")),
        1..=4294967294 => Ok(v as u32),
        _ => Err(bad(field, v, "is not a 4-byte AS number (1-4294967294)")),
    }
}

fn required<'a, T>(field: &str, v: &'a Option<T>) -> Result<&'a T, ViewError> {
    v.as_ref().ok_or_else(|| bad(field, "", "is required"))
}

impl ClusterView {
    /// Read and validate a cluster view file.
    pub fn load(path: &Path) -> Result<ClusterView, ViewError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("file", path.display(), format!("cannot be read: {e}")))?;
        ClusterView::parse(&text)
    }

    pub fn parse(text: &str) -> Result<ClusterView, ViewError> {
        let raw: RawView = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "document".into());
            bad(at, "", format!("{e}"))
        })?;
        ClusterView::from_raw(raw)
    }

    pub(crate) fn from_raw(raw: RawView) -> Result<ClusterView, ViewError> {
        let as_number = asn("asNumber", raw.as_number.unwrap_or(64512))?;
        let pod_networks = dual(
            "podNetwork",
            required("podNetwork", &raw.pod_network)?,
            cidr,
            |n: &IpNet| n.addr().is_ipv6(),
        )?;
        let enc = raw.encapsulation.unwrap_or_default();
        let kind: EncapType = match &enc.kind {
            Some(s) => s.parse().map_err(|e: ipip::encap::BadName| {
                bad(
                    "encapsulation.type",
                    s,
                    format!("is not one of {}", e.expected),
                )
            })?,
            None => EncapType::default(),
        };
        let mode: EncapMode = match &enc.mode {
            Some(s) => s.parse().map_err(|e: ipip::encap::BadName| {
                bad(
                    "encapsulation.mode",
                    s,
                    format!("is not one of {}", e.expected),
                )
            })?,
            None => EncapMode::default(),
        };
        let vx = raw.vxlan.unwrap_or_default();
        let mut vxlan = VxlanConfig::default();
        if let Some(v) = vx.vni {
            if !(1..=16_777_215).contains(&v) {
                return Err(bad(
                    "vxlan.vni",
                    v,
                    "is not a VXLAN network identifier (1-16777215)",
                ));
            }
            vxlan.vni = v as u32;
        }
        if let Some(p) = vx.port {
            vxlan.port = port("vxlan.port", p)?;
        }
        let listen_port = port("listenPort", raw.listen_port.unwrap_or(179))?;
        let t = raw.timers.unwrap_or_default();
        let hold = t.hold_time.unwrap_or(90);
        if hold != 0 && !(3..=65535).contains(&hold) {
            return Err(bad(
                "timers.holdTime",
                hold,
                "must be 0 or 3-65535 seconds (RFC 4271)",
            ));
        }
        let keepalive = t.keepalive_time.unwrap_or(hold / 3);
        if keepalive > hold.max(1) || keepalive > 65535 {
            return Err(bad(
                "timers.keepaliveTime",
                keepalive,
                format!("must not exceed holdTime ({hold})"),
            ));
        }
        let retry = t.connect_retry_time.unwrap_or(5);
        if !(1..=65535).contains(&retry) {
            return Err(bad(
                "timers.connectRetryTime",
                retry,
                "must be 1-65535 seconds",
            ));
        }
        let timers = Timers {
            hold: hold as u16,
            keepalive: keepalive as u16,
            connect_retry: retry as u16,
        };
        let g = raw.graceful_restart.unwrap_or_default();
        // Seconds within `max` (at least 1), or the field named.
        let secs = |field: &str, v: Option<u64>, default: u64, max: u64, why: &str| {
            let v = v.unwrap_or(default);
            if (1..=max).contains(&v) {
                Ok(v)
            } else {
                Err(bad(field, v, format!("must be 1-{max} seconds{why}")))
            }
        };
        let restart = secs(
            "gracefulRestart.restartTime",
            g.restart_time,
            120,
            4095,
            " (12 bits, RFC 4724)",
        )?;
        let stale = secs(
            "gracefulRestart.staleRoutesTime",
            g.stale_routes_time,
            360,
            86400,
            "",
        )?;
        let deferral = secs("gracefulRestart.deferralTime", g.deferral_time, 5, 3600, "")?;
        let graceful_restart = g.enabled.unwrap_or(true).then_some(GracefulRestart {
            restart_time: restart as u16,
            stale_routes_time: stale as u32,
            deferral_time: deferral as u32,
        });
        let np = raw.network_policy.unwrap_or_default();
        let wait = secs("networkPolicy.waitTime", np.wait_time, 10, 300, "")?;
        let network_policy = NetworkPolicySettings {
            enabled: np.enabled.unwrap_or(true),
            pod_wait: np.wait_for_pod_rules.unwrap_or(true).then_some(wait as u32),
        };
        let nat_outgoing = crate::NatOutgoingSettings::parse(raw.nat_outgoing.as_ref())?;

        if kind == EncapType::Ipip
            && mode != EncapMode::Never
            && pod_networks.iter().any(|n| n.addr().is_ipv6())
        {
            return Err(bad(
                "encapsulation.type",
                "IPIP",
                "carries IPv4 only but podNetwork has an IPv6 network; use VXLAN",
            ));
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(raw.nodes.len());
        let mut by_name: HashMap<String, usize> = HashMap::with_capacity(raw.nodes.len());
        let mut by_address: HashMap<IpAddr, usize> = HashMap::with_capacity(raw.nodes.len());
        let mut cidrs = CidrIndex::default();
        for (i, n) in raw.nodes.into_iter().enumerate() {
            let f = |name: &str| format!("nodes[{i}].{name}");
            let name = required(&f("name"), &n.name)?.clone();
            if name.is_empty() {
                return Err(bad(f("name"), "\"\"", "must not be empty"));
            }
            let addresses = dual(
                &f("address"),
                required(&f("address"), &n.address)?,
                ip,
                IpAddr::is_ipv6,
            )?;
            let address = addresses[0];
            let pod_cidrs = dual(
                &f("podCIDR"),
                required(&f("podCIDR"), &n.pod_cidr)?,
                cidr,
                |n: &IpNet| n.addr().is_ipv6(),
            )?;
            for c in &pod_cidrs {
                let v6 = c.addr().is_ipv6();
                match pod_networks.iter().find(|p| p.addr().is_ipv6() == v6) {
                    Some(net) if !net.contains(c) => {
                        return Err(bad(f("podCIDR"), c, format!("is outside podNetwork {net}")))
                    }
                    Some(_) => {}
                    None => {
                        return Err(bad(
                            f("podCIDR"),
                            c,
                            format!(
                                "is {} but podNetwork has no {} network",
                                family(v6),
                                family(v6)
                            ),
                        ))
                    }
                }
                if !addresses.iter().any(|a| a.is_ipv6() == v6) {
                    return Err(bad(
                        f("podCIDR"),
                        c,
                        format!(
                            "is {} but the node has no {} address to route it via",
                            family(v6),
                            family(v6)
                        ),
                    ));
                }
            }
            let as_number = match n.as_number {
                Some(v) => asn(&f("asNumber"), v)?,
                None => as_number,
            };
            let route_reflector_cluster_id = match &n.route_reflector_cluster_id {
                Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                    bad(
                        f("routeReflectorClusterID"),
                        s,
                        "is not an IPv4-formatted cluster ID",
                    )
                })?),
                None => None,
            };
            // Sessions and tunnels run between first addresses: one family across the cluster.
            if let Some(first) = nodes.first() {
                if first.address.is_ipv6() != address.is_ipv6() {
                    return Err(bad(
                        f("address"),
                        address,
                        format!(
                            "is {} but nodes[0].address starts with {} {}; the first address of every node carries its sessions and tunnels and must be of one family",
                            family(address.is_ipv6()),
                            family(first.address.is_ipv6()),
                            first.address
                        ),
                    ));
                }
            }
            if let Some(&j) = by_name.get(&name) {
                return Err(bad(f("name"), &name, format!("is also nodes[{j}].name")));
            }
            if let Some((a, &j)) = addresses
                .iter()
                .find_map(|a| by_address.get(a).map(|j| (a, j)))
            {
                return Err(bad(
                    f("address"),
                    a,
                    format!("is also nodes[{j}].address ({})", nodes[j].name),
                ));
            }
            for c in &pod_cidrs {
                if let Some((j, o)) = cidrs.overlap(c) {
                    return Err(bad(
                        f("podCIDR"),
                        c,
                        format!("overlaps nodes[{j}].podCIDR {o} ({})", nodes[j].name),
                    ));
                }
            }
            by_name.insert(name.clone(), i);
            for a in &addresses {
                by_address.insert(*a, i);
            }
            for c in &pod_cidrs {
                cidrs.insert(c, i);
            }
            nodes.push(Node {
                name,
                address,
                addresses,
                pod_cidrs,
                as_number,
                route_reflector_cluster_id,
                labels: n.labels,
                ready: n.ready.unwrap_or(true),
            });
        }

        // Reflectors: explicit cluster IDs, or chosen (`crate::reflectors`); why, for status.
        let settings = crate::reflectors::Settings::parse(raw.route_reflectors.as_ref())?;
        let auto = settings.choose(&nodes);
        let mut reflectors = BTreeMap::new();
        for n in &mut nodes {
            if let Some(why) = auto.as_ref().and_then(|a| a.get(&n.name)) {
                n.route_reflector_cluster_id = Some(settings.cluster_id);
                reflectors.insert(n.name.clone(), why.clone());
            } else if let Some(id) = n.route_reflector_cluster_id {
                reflectors.insert(n.name.clone(), format!("routeReflectorClusterID {id}"));
            }
        }

        let mut peers = Vec::with_capacity(raw.peers.len());
        for (i, p) in raw.peers.into_iter().enumerate() {
            let f = |name: &str| format!("peers[{i}].{name}");
            let address = ip(&f("address"), required(&f("address"), &p.address)?)?;
            let as_number = asn(&f("asNumber"), *required(&f("asNumber"), &p.as_number)?)?;
            let node_selector = p
                .node_selector
                .as_ref()
                .map(|sel| Selector::new(sel, &f("nodeSelector")))
                .transpose()?;
            if let Some(n) = by_address.get(&address).map(|&j| &nodes[j]) {
                return Err(bad(
                    f("address"),
                    address,
                    format!(
                        "is node {}'s address; cluster nodes peer through the mesh or reflectors",
                        n.name
                    ),
                ));
            }
            let accept_prefixes = match &p.accept_prefixes {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .enumerate()
                        .map(|(k, c)| cidr(&f(&format!("acceptPrefixes[{k}]")), c))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            peers.push(ExternalPeer {
                address,
                as_number,
                node_selector,
                password_file: p.password.map(|p| PathBuf::from(p.file)),
                accept_prefixes,
            });
        }
        Ok(ClusterView {
            as_number,
            pod_networks,
            // Chosen reflectors replace the mesh unless it is asked for explicitly.
            node_to_node_mesh: raw.node_to_node_mesh.unwrap_or(auto.is_none()),
            reflectors,
            encapsulation: Encap { kind, mode },
            vxlan,
            listen_port,
            timers,
            graceful_restart,
            network_policy,
            nat_outgoing,
            nodes,
            peers,
            by_name,
            by_address,
        })
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }

    /// The node one of whose addresses this is.
    pub fn node_by_address(&self, address: IpAddr) -> Option<&Node> {
        self.by_address.get(&address).map(|&i| &self.nodes[i])
    }
}

fn port(field: &str, v: u64) -> Result<u16, ViewError> {
    match v {
        1..=65535 => Ok(v as u16),
        _ => Err(bad(field, v, "is not a port (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
asNumber: 64512
podNetwork: 10.244.0.0/16,fd00:244::/48
encapsulation: {type: VXLAN, mode: CrossSubnet}
nodes:
  - {name: a1, address: 10.1.0.11, podCIDR: 10.244.11.0/24, labels: {rack: a}}
  - {name: a2, address: 10.1.0.12, podCIDR: 10.244.12.0/24, asNumber: 65001}
  - name: b1
    address: 10.2.0.11,fd00:2::11
    podCIDR: 10.244.21.0/24,fd00:244:0:21::/64
    routeReflectorClusterID: 10.255.0.1
peers:
  - address: 10.1.0.1
    asNumber: 65000
    nodeSelector: {matchLabels: {rack: a}}
    password: {file: /etc/twill/tor.secret}
"#;

    #[test]
    fn a_full_view_parses_with_defaults() {
        let v = ClusterView::parse(GOOD).unwrap();
        assert_eq!(v.as_number, 64512);
        assert!(v.node_to_node_mesh);
        assert_eq!(v.listen_port, 179);
        assert_eq!(v.vxlan, VxlanConfig::default());
        assert_eq!(
            (v.timers.hold, v.timers.keepalive, v.timers.connect_retry),
            (90, 30, 5)
        );
        assert_eq!(v.nodes[1].as_number, 65001);
        assert_eq!(v.nodes[0].as_number, 64512);
        assert_eq!(v.nodes[2].address.to_string(), "10.2.0.11", "the session's");
        assert_eq!(
            v.nodes[2].address_like("fd00::1".parse().unwrap()),
            Some("fd00:2::11".parse().unwrap())
        );
        assert_eq!(v.pod_networks.len(), 2);
        assert_eq!(v.nodes[2].pod_cidrs.len(), 2);
        assert_eq!(
            v.node_by_address("10.2.0.11".parse().unwrap())
                .map(|n| &*n.name),
            Some("b1")
        );
        assert!(v
            .nodes
            .iter()
            .any(|n| n.route_reflector_cluster_id.is_some()));
        assert_eq!(
            v.peers[0].password_file.as_deref(),
            Some(Path::new("/etc/twill/tor.secret"))
        );
    }

    fn err(yaml: &str) -> String {
        ClusterView::parse(yaml).unwrap_err().to_string()
    }

    #[test]
    fn every_error_names_the_field_and_the_value() {
        let base = "podNetwork: 10.244.0.0/16\nnodes:\n  - {name: a1, address: 10.1.0.11, podCIDR: 10.244.11.0/24}\n  - {name: a2, address: 10.1.0.12, podCIDR: 10.244.12.0/24}\n";
        let with = |extra: &str| format!("{base}{extra}");
        assert_eq!(
            err(&with(
                "  - {name: a3, address: 10.1.0.13, podCIDR: 10.244.1.0/33}\n"
            )),
            "nodes[2].podCIDR: 10.244.1.0/33 is not a CIDR"
        );
        assert_eq!(
            err(&with(
                "  - {name: a1, address: 10.1.0.13, podCIDR: 10.244.13.0/24}\n"
            )),
            "nodes[2].name: a1 is also nodes[0].name"
        );
        assert_eq!(
            err(&with(
                "  - {name: a3, address: 10.1.0.12, podCIDR: 10.244.13.0/24}\n"
            )),
            "nodes[2].address: 10.1.0.12 is also nodes[1].address (a2)"
        );
        assert_eq!(
            err(&with(
                "  - {name: a3, address: 10.1.0.13, podCIDR: 10.244.12.128/25}\n"
            )),
            "nodes[2].podCIDR: 10.244.12.128/25 overlaps nodes[1].podCIDR 10.244.12.0/24 (a2)"
        );
        assert_eq!(
            err(&with(
                "  - {name: a3, address: 10.1.0.13, podCIDR: 10.99.0.0/24}\n"
            )),
            "nodes[2].podCIDR: 10.99.0.0/24 is outside podNetwork 10.244.0.0/16"
        );
        assert_eq!(
            err(&with(
                "  - {name: a3, address: 10.1.0.300, podCIDR: 10.244.13.0/24}\n"
            )),
            "nodes[2].address: 10.1.0.300 is not an IPv4 or IPv6 address"
        );
        assert_eq!(
            err(&with("encapsulation: {mode: crossSubnet}\n")),
            "encapsulation.mode: crossSubnet is not one of Always, CrossSubnet, Never"
        );
        assert_eq!(
            err(&with("peers:\n  - {address: 10.1.0.1, asNumber: 0}\n")),
            "peers[0].asNumber: 0 is a reserved AS number"
        );
        assert_eq!(
            err(&with(
                "peers:\n  - {address: 10.1.0.1, asNumber: 65000, acceptPrefixes: [10.0.0.0/8, 0.0.0.0/33]}\n"
            )),
            "peers[0].acceptPrefixes[1]: 0.0.0.0/33 is not a CIDR"
        );
        assert_eq!(
            err(&with("timers: {holdTime: 2}\n")),
            "timers.holdTime: 2 must be 0 or 3-65535 seconds (RFC 4271)"
        );
        assert_eq!(
            err(&with("gracefulRestart: {restartTime: 4096}\n")),
            "gracefulRestart.restartTime: 4096 must be 1-4095 seconds (12 bits, RFC 4724)"
        );
        assert_eq!(
            err(&with("gracefulRestart: {deferralTime: 0}\n")),
            "gracefulRestart.deferralTime: 0 must be 1-3600 seconds"
        );
        // On by default with BIRD's / FRR's times; off when asked.
        let on = ClusterView::parse(base).unwrap().graceful_restart.unwrap();
        assert_eq!(
            (on.restart_time, on.stale_routes_time, on.deferral_time),
            (120, 360, 5)
        );
        let off = ClusterView::parse(&with("gracefulRestart: {enabled: false}\n")).unwrap();
        assert!(off.graceful_restart.is_none());
        assert_eq!(err("nodes: []\n"), "podNetwork: is required");
        // Dual-stack: one value per family, each pod CIDR inside its family's network and
        // routable through an address of its family.
        assert_eq!(
            err("podNetwork: 10.244.0.0/16,10.245.0.0/16\n"),
            "podNetwork: 10.244.0.0/16,10.245.0.0/16 must be one value, or an IPv4 and an IPv6 one separated by a comma"
        );
        let dual = "podNetwork: 10.244.0.0/16,fd00:244::/48\nnodes:\n";
        assert_eq!(
            err(&format!("{dual}  - {{name: a1, address: 10.1.0.11, podCIDR: \"10.244.1.0/24,fd00:244:0:1::/64\"}}\n")),
            "nodes[0].podCIDR: fd00:244:0:1::/64 is IPv6 but the node has no IPv6 address to route it via"
        );
        assert_eq!(
            err(&format!("{dual}  - {{name: a1, address: \"10.1.0.11,fd00:1::11\", podCIDR: \"10.244.1.0/24,fd00:245:1::/64\"}}\n")),
            "nodes[0].podCIDR: fd00:245:1::/64 is outside podNetwork fd00:244::/48"
        );
        assert_eq!(
            err("podNetwork: 10.244.0.0/16\nnodes:\n  - {name: a1, address: \"10.1.0.11,fd00:1::11\", podCIDR: \"10.244.1.0/24,fd00:244:0:1::/64\"}\n"),
            "nodes[0].podCIDR: fd00:244:0:1::/64 is IPv6 but podNetwork has no IPv6 network"
        );
        assert_eq!(
            err(&format!("{dual}  - {{name: a1, address: 10.1.0.11, podCIDR: 10.244.1.0/24}}\n  - {{name: a2, address: \"fd00:1::12,10.1.0.12\", podCIDR: 10.244.2.0/24}}\n")),
            "nodes[1].address: fd00:1::12 is IPv6 but nodes[0].address starts with IPv4 10.1.0.11; the first address of every node carries its sessions and tunnels and must be of one family"
        );
        assert_eq!(
            err(&format!("{dual}encapsulation: {{type: IPIP}}\n")),
            "encapsulation.type: IPIP carries IPv4 only but podNetwork has an IPv6 network; use VXLAN"
        );
        assert_eq!(
            err(&format!("{dual}  - {{name: a1, address: \"10.1.0.11,fd00:1::11\", podCIDR: 10.244.1.0/24}}\n  - {{name: a2, address: \"10.1.0.12,fd00:1::11\", podCIDR: 10.244.2.0/24}}\n")),
            "nodes[1].address: fd00:1::11 is also nodes[0].address (a1)"
        );
        assert_eq!(
            err(&format!("{dual}  - {{name: a1, address: \"10.1.0.11,fd00:1::11\", podCIDR: \"10.244.1.0/24,fd00:244:0:1::/64\"}}\n  - {{name: a2, address: \"10.1.0.12,fd00:1::12\", podCIDR: \"10.244.2.0/24,fd00:244:0:1::/80\"}}\n")),
            "nodes[1].podCIDR: fd00:244:0:1::/80 overlaps nodes[0].podCIDR fd00:244:0:1::/64 (a1)"
        );
        assert!(err(&with("podNetwrok: 1\n")).contains("unknown field `podNetwrok`"));
        assert_eq!(
            err("podNetwork: 10.244.0.1/16\n"),
            "podNetwork: 10.244.0.1/16 has host bits set (the network is 10.244.0.0/16)"
        );
    }

    #[test]
    fn overlaps_are_found_by_the_interval_index_among_many_nodes() {
        let mut y = String::from("podNetwork: 10.0.0.0/8,fd00::/48\nnodes:\n");
        for i in 0..300 {
            y.push_str(&format!(
                "  - {{name: n{i}, address: 10.200.{}.{}, podCIDR: 10.{}.{}.0/24}}\n",
                i / 256,
                i % 256,
                i / 256,
                i % 256
            ));
        }
        assert_eq!(ClusterView::parse(&y).unwrap().nodes.len(), 300);
        assert!(ClusterView::parse(&y).unwrap().node("n299").is_some());
        // Inside an earlier block; around several earlier blocks (the first is named); a
        // duplicate address; the same numbers in the other family do not overlap.
        let extra = |line: &str| {
            ClusterView::parse(&format!("{y}  - {line}\n"))
                .map(|v| v.nodes.len())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            extra("{name: x, address: 10.201.0.1, podCIDR: 10.0.200.128/25}"),
            Err("nodes[300].podCIDR: 10.0.200.128/25 overlaps nodes[200].podCIDR 10.0.200.0/24 (n200)".into())
        );
        assert_eq!(
            extra("{name: x, address: 10.201.0.1, podCIDR: 10.1.0.0/16}"),
            Err(
                "nodes[300].podCIDR: 10.1.0.0/16 overlaps nodes[256].podCIDR 10.1.0.0/24 (n256)"
                    .into()
            )
        );
        assert_eq!(
            extra("{name: x, address: 10.200.0.7, podCIDR: 10.9.0.0/24}"),
            Err("nodes[300].address: 10.200.0.7 is also nodes[7].address (n7)".into())
        );
        assert_eq!(
            extra(
                "{name: x, address: '10.201.0.1,fd00::1', podCIDR: '10.9.0.0/24,fd00:0:0:a::/64'}"
            ),
            Ok(301)
        );
    }
}
