//! Outgoing NAT's cluster setting (`natOutgoing` in the file and in BGPConfiguration): Calico's
//! `natOutgoing` (on by default in its default pool) and flannel's ip-masq, per address
//! family. A pod's packet to an address outside every pod CIDR of the cluster leaves its node
//! with the node's address, so pods reach what does not route the pod CIDRs back. Listed
//! destinations (`nonMasqueradeCIDRs`, ip-masq-agent's name: e.g. a datacentre range whose
//! routers learn the pod CIDRs from the ToRs) keep the pod's address.

use crate::view::{cidr, ViewError};
use ipnet::IpNet;
use serde::Deserialize;

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNatOutgoing {
    pub(crate) ipv4: Option<bool>,
    pub(crate) ipv6: Option<bool>,
    #[serde(rename = "nonMasqueradeCIDRs")]
    pub(crate) non_masquerade_cidrs: Option<Vec<String>>,
}

/// The validated setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatOutgoingSettings {
    /// Masquerade IPv4 pods' outgoing traffic (default true).
    pub ipv4: bool,
    /// Masquerade IPv6 pods' outgoing traffic (default true).
    pub ipv6: bool,
    /// Destinations never masqueraded.
    pub non_masquerade: Vec<IpNet>,
}

impl Default for NatOutgoingSettings {
    fn default() -> Self {
        NatOutgoingSettings {
            ipv4: true,
            ipv6: true,
            non_masquerade: Vec::new(),
        }
    }
}

impl NatOutgoingSettings {
    pub(crate) fn parse(raw: Option<&RawNatOutgoing>) -> Result<Self, ViewError> {
        let empty = RawNatOutgoing::default();
        let r = raw.unwrap_or(&empty);
        let non_masquerade = r
            .non_masquerade_cidrs
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| cidr(&format!("natOutgoing.nonMasqueradeCIDRs[{i}]"), s))
            .collect::<Result<Vec<IpNet>, _>>()?;
        Ok(NatOutgoingSettings {
            ipv4: r.ipv4.unwrap_or(true),
            ipv6: r.ipv6.unwrap_or(true),
            non_masquerade,
        })
    }

    /// "IPv4, IPv6", "IPv4", … or "off", for status lines.
    pub fn describe(&self) -> String {
        let on: Vec<&str> = [(self.ipv4, "IPv4"), (self.ipv6, "IPv6")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        if on.is_empty() {
            "off".into()
        } else {
            on.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ClusterView;

    const BASE: &str = "asNumber: 64512\npodNetwork: 10.244.0.0/16\nnodes:\n  - {name: a, address: 10.0.0.1, podCIDR: 10.244.1.0/24}\n";

    #[test]
    fn on_by_default_per_family_and_bad_cidrs_named() {
        let v = ClusterView::parse(BASE).unwrap();
        assert!(v.nat_outgoing.ipv4 && v.nat_outgoing.ipv6);
        assert!(v.nat_outgoing.non_masquerade.is_empty());
        let v = ClusterView::parse(&format!(
            "{BASE}natOutgoing: {{ipv6: false, nonMasqueradeCIDRs: [192.168.0.0/16, \"fd00:dc::/48\"]}}\n"
        ))
        .unwrap();
        assert!(v.nat_outgoing.ipv4 && !v.nat_outgoing.ipv6);
        assert_eq!(v.nat_outgoing.non_masquerade.len(), 2);
        assert_eq!(v.nat_outgoing.describe(), "IPv4");
        let e = ClusterView::parse(&format!(
            "{BASE}natOutgoing: {{nonMasqueradeCIDRs: [192.168.0.0/16, 10.0.0.1/8]}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("natOutgoing.nonMasqueradeCIDRs[1]") && e.contains("10.0.0.1/8"),
            "{e}"
        );
        let e = ClusterView::parse(&format!("{BASE}natOutgoing: {{ipv4: maybe}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ipv4") || e.contains("natOutgoing"), "{e}");
    }
}
