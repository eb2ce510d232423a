//! The pure compile step for outgoing NAT (Calico's `natOutgoing`, flannel's ip-masq): a
//! local pod's packet to an address outside every pod CIDR of the cluster leaves with the
//! node's address. One chain in the nat table, entered from `POSTROUTING`:
//!
//! ```text
//! TWILL-POSTROUTING
//!   -m set --match-set twill-4c-… dst        -j RETURN      to a pod: keeps its source
//!   -m set --match-set twill-4x-… dst        -j RETURN      a listed destination (if any)
//!   -m addrtype --dst-type LOCAL             -j RETURN      this node's own addresses
//!   -s <this node's pod CIDR>                -j MASQUERADE  counted
//! ```
//!
//! RETURN, never ACCEPT: a packet Twill leaves alone goes on through `POSTROUTING` to the
//! rules of other components (kube-proxy's, Docker's), in their order. The set of pod CIDRs
//! follows the cluster view, so a node joining changes one set entry, not the rules.

use crate::compile::{net_entry, split_default};
use crate::ruleset::{
    set_name, Counted, Family, IpSet, Match, Rule, Ruleset, SetDir, SetKind, Target, NAT_CHAIN,
};
use ipnet::IpNet;
use std::collections::BTreeSet;

/// What outgoing NAT on one node needs to know (from the cluster view).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatOutgoing {
    /// The families whose pods' outgoing traffic is masqueraded.
    pub families: BTreeSet<Family>,
    /// This node's pod CIDRs: the sources masqueraded.
    pub local: Vec<IpNet>,
    /// Every pod CIDR of the cluster: destinations that keep the pod's address.
    pub pods: Vec<IpNet>,
    /// Destinations never masqueraded (a datacentre range that routes the pod CIDRs).
    pub except: Vec<IpNet>,
}

impl NatOutgoing {
    /// Whether `family` is masqueraded on this node (on, and the node has pods of it).
    pub fn on(&self, family: Family) -> bool {
        self.families.contains(&family) && self.local.iter().any(|n| in_family(n, family))
    }
}

fn in_family(n: &IpNet, family: Family) -> bool {
    Family::of(&n.addr()) == family
}

pub const OUTGOING_LABEL: &str = "nat: outgoing";

/// What a counted rule of the nat chain means, read back from the kernel even when the chain
/// is no longer wanted (NAT turned off): its count is carried, so the total never goes down.
pub fn counted(chain: &str, label: &str) -> Option<Counted> {
    (chain == NAT_CHAIN && label.starts_with(OUTGOING_LABEL)).then_some(Counted::Masqueraded)
}

/// Add outgoing NAT's chain and sets for `rs.family` to `rs` (nothing when it is off).
pub fn compile_nat(nat: &NatOutgoing, rs: &mut Ruleset) {
    let family = rs.family;
    if !nat.on(family) {
        return;
    }
    // As `ipset save` prints them (a host without /32), and a /0 as its halves (hash:net
    // cannot hold one): otherwise every resync would see a difference.
    let members = |nets: &[IpNet]| -> BTreeSet<String> {
        nets.iter()
            .filter(|n| in_family(n, family))
            .flat_map(|n| split_default(n.trunc()))
            .map(net_entry)
            .collect()
    };
    let set = |rs: &mut Ruleset, letter: char, meaning: &str, m: BTreeSet<String>| {
        let name = set_name(family, letter, meaning);
        rs.sets.insert(
            name.clone(),
            IpSet {
                kind: SetKind::Net,
                members: m,
            },
        );
        name
    };
    let ret = |name: String, label: &str| Rule {
        matches: vec![Match::Set {
            name,
            dir: SetDir::Dst,
            negate: false,
        }],
        target: Target::Return,
        label: label.into(),
    };
    let mut chain = Vec::new();
    // The pod set is there even before the view names any other node: a set that
    // appears later would rewrite the chain.
    let pods = set(rs, 'c', "nat:pods", members(&nat.pods));
    chain.push(ret(pods, "nat: to a pod"));
    let except = members(&nat.except);
    if !except.is_empty() {
        let name = set(rs, 'x', "nat:except", except);
        chain.push(ret(name, "nat: listed destination"));
    }
    chain.push(Rule {
        matches: vec![Match::LocalDestination],
        target: Target::Return,
        label: "nat: to this node".into(),
    });
    for local in nat.local.iter().filter(|n| in_family(n, family)) {
        let label = format!("{OUTGOING_LABEL} {}", local.trunc());
        rs.counted
            .insert((NAT_CHAIN.to_string(), label.clone()), Counted::Masqueraded);
        chain.push(Rule {
            matches: vec![Match::Source(local.trunc())],
            target: Target::Masquerade,
            label,
        });
    }
    rs.nat.insert(NAT_CHAIN.to_string(), chain);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::masquerades;
    use std::net::IpAddr;

    fn nat(families: &[Family]) -> NatOutgoing {
        NatOutgoing {
            families: families.iter().copied().collect(),
            local: vec![
                "10.244.1.0/24".parse().unwrap(),
                "fd00:1::/64".parse().unwrap(),
            ],
            pods: [
                "10.244.1.0/24",
                "10.244.2.0/24",
                "fd00:1::/64",
                "fd00:2::/64",
            ]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect(),
            except: vec!["192.168.0.0/16".parse().unwrap()],
        }
    }

    fn compiled(n: &NatOutgoing, family: Family) -> Ruleset {
        let mut rs = Ruleset::new(family);
        compile_nat(n, &mut rs);
        rs
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_local_pods_to_outside_addresses_are_masqueraded() {
        let rs = compiled(&nat(&[Family::V4, Family::V6]), Family::V4);
        let local_pod = ip("10.244.1.5");
        // (source, destination, destination is this node's, masqueraded?)
        let cases = [
            (local_pod, ip("203.0.113.9"), false, true),
            (local_pod, ip("10.244.2.7"), false, false),
            (local_pod, ip("10.244.1.6"), false, false),
            (local_pod, ip("192.168.3.4"), false, false),
            (local_pod, ip("10.1.0.11"), true, false),
            (local_pod, ip("10.1.0.12"), false, true),
            // Not a pod of this node: the host itself, another node's pod routed through.
            (ip("10.1.0.11"), ip("203.0.113.9"), false, false),
            (ip("10.244.2.7"), ip("203.0.113.9"), false, false),
        ];
        for (src, dst, local, want) in cases {
            assert_eq!(masquerades(&rs, src, dst, local), want, "{src} -> {dst}");
        }
        let v6 = compiled(&nat(&[Family::V4, Family::V6]), Family::V6);
        assert!(masquerades(&v6, ip("fd00:1::5"), ip("2001:db8::1"), false));
        assert!(!masquerades(&v6, ip("fd00:1::5"), ip("fd00:2::9"), false));
    }

    #[test]
    fn off_per_family_and_without_local_pods() {
        let only_v4 = nat(&[Family::V4]);
        assert!(!compiled(&only_v4, Family::V4).nat.is_empty());
        let v6 = compiled(&only_v4, Family::V6);
        assert!(v6.nat.is_empty() && v6.sets.is_empty(), "{v6:?}");
        let mut no_pods = nat(&[Family::V4]);
        no_pods.local.clear();
        assert!(compiled(&no_pods, Family::V4).nat.is_empty());
    }

    #[test]
    fn set_entries_are_written_as_ipset_prints_them() {
        let mut n = nat(&[Family::V4]);
        n.except = vec![
            "203.0.113.7/32".parse().unwrap(),
            "0.0.0.0/0".parse().unwrap(),
        ];
        let rs = compiled(&n, Family::V4);
        let except = rs
            .sets
            .iter()
            .find(|(name, _)| name.starts_with("twill-4x-"))
            .map(|(_, s)| s.members.iter().cloned().collect::<Vec<_>>())
            .unwrap();
        assert_eq!(except, ["0.0.0.0/1", "128.0.0.0/1", "203.0.113.7"]);
    }

    #[test]
    fn a_node_joining_changes_a_set_entry_not_the_rules() {
        let before = compiled(&nat(&[Family::V4]), Family::V4);
        let mut more = nat(&[Family::V4]);
        more.pods.push("10.244.3.0/24".parse().unwrap());
        let after = compiled(&more, Family::V4);
        assert_eq!(before.nat, after.nat);
        assert_ne!(before.sets, after.sets);
        assert_eq!(
            after.counted.values().collect::<Vec<_>>(),
            [&Counted::Masqueraded]
        );
    }
}
