//! Outgoing NAT as this node applies it: the cluster setting and view turned into what the
//! firewall's owner (`policy::Enforcer`) compiles into the nat table.

use cluster::{ClusterView, Node};
use policy::{Family, NatOutgoing};

/// This node's outgoing NAT: masquerade its own pods (its pod CIDRs) towards anything outside
/// every node's pod CIDR and the listed destinations, in the families the setting turns on.
pub fn nat_for(view: &ClusterView, me: &Node) -> NatOutgoing {
    let s = &view.nat_outgoing;
    NatOutgoing {
        families: [(s.ipv4, Family::V4), (s.ipv6, Family::V6)]
            .into_iter()
            .filter_map(|(on, f)| on.then_some(f))
            .collect(),
        local: me.pod_cidrs.clone(),
        pods: view
            .nodes
            .iter()
            .flat_map(|n| n.pod_cidrs.iter().copied())
            .collect(),
        except: s.non_masquerade.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nodes_pod_cidrs_stay_and_only_this_nodes_are_masqueraded() {
        let v = ClusterView::parse(
            "asNumber: 64512\npodNetwork: 10.244.0.0/16\nnatOutgoing: {ipv6: false, nonMasqueradeCIDRs: [192.168.0.0/16]}\nnodes:\n  - {name: a, address: 10.0.0.1, podCIDR: 10.244.1.0/24}\n  - {name: b, address: 10.0.0.2, podCIDR: 10.244.2.0/24}\n",
        )
        .unwrap();
        let n = nat_for(&v, v.node("a").unwrap());
        assert_eq!(n.families.iter().collect::<Vec<_>>(), [&Family::V4]);
        assert_eq!(n.local, ["10.244.1.0/24".parse().unwrap()]);
        assert_eq!(n.pods.len(), 2);
        assert_eq!(n.except, ["192.168.0.0/16".parse().unwrap()]);
        assert!(n.on(Family::V4) && !n.on(Family::V6));
    }
}
