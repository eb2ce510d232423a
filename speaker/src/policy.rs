//! Peer policy: which prefixes a peer may announce to us, and which we pass on to it.

use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// One allowed range: any prefix inside `prefix` no longer than `max_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRule {
    pub prefix: IpNet,
    pub max_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ImportFilter {
    /// Accept everything (loop checks still apply).
    #[default]
    Any,
    /// Accept nothing: a peer we only advertise to.
    Nothing,
    /// Accept prefixes matching one of the rules. A cluster node's mesh peer gets exactly its
    /// own pod CIDR here, so a node can only announce what it owns.
    Prefixes(Vec<PrefixRule>),
}

impl ImportFilter {
    /// Exactly these prefixes (max length = their own length).
    pub fn exact(prefixes: impl IntoIterator<Item = IpNet>) -> Self {
        ImportFilter::Prefixes(
            prefixes
                .into_iter()
                .map(|p| PrefixRule {
                    prefix: p,
                    max_len: p.prefix_len(),
                })
                .collect(),
        )
    }

    pub fn allows(&self, p: &IpNet) -> bool {
        match self {
            ImportFilter::Any => true,
            ImportFilter::Nothing => false,
            ImportFilter::Prefixes(rules) => rules
                .iter()
                .any(|r| r.prefix.contains(p) && p.prefix_len() <= r.max_len),
        }
    }
}

/// Which routes go out to a peer, on top of the RFC 4271 rules (no iBGP to iBGP, nothing back
/// to its source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFilter {
    /// Every best route the BGP rules allow: a router's behaviour.
    #[default]
    All,
    /// Only the prefixes this speaker originates. A cluster node is a leaf, not a transit: it
    /// announces the pod CIDR it owns and never passes on what it learned (a node re-announcing
    /// its rack neighbours' routes to the ToR would make itself a path to them).
    Originated,
    /// The prefixes this speaker originates and the routes it learned over iBGP, which the
    /// reflection rules then pass on (RFC 4456 §6): a reflector node towards its clients and
    /// the other reflectors. What it learned over eBGP (a ToR's routes) stays with it, as with
    /// `Originated`.
    OriginatedAndReflected,
}

/// Which next hops a prefix may arrive with: a pod CIDR only with an address of the node that
/// owns it. The prefix filter says *what* a peer may announce; this says *through whom*, which
/// is what keeps a route reflector from carrying one node's claim on another node's traffic
/// (a client's reflector may pass on every pod CIDR, but each only towards its owner). Prefixes
/// not listed are not checked; a prefix inside a listed one (a /25 of a node's /24) gets the
/// listed one's owners, or a more-specific route could pull part of a node's pods away.
/// Shared (`Arc`): a reflector holds one copy for all its peers.
#[derive(Debug, Clone, Eq, Default)]
pub struct NextHopOwners(Arc<BTreeMap<IpNet, Vec<IpAddr>>>);

impl PartialEq for NextHopOwners {
    fn eq(&self, other: &Self) -> bool {
        // One map is shared by every peer of a view: comparing a reflector's hundreds of peers
        // on reload should not walk it each time.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl NextHopOwners {
    pub fn new(owners: impl IntoIterator<Item = (IpNet, Vec<IpAddr>)>) -> Self {
        NextHopOwners(Arc::new(owners.into_iter().collect()))
    }

    pub fn allows(&self, prefix: &IpNet, next_hop: &IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        // The most specific listed prefix covering this one (pod CIDRs do not overlap).
        (0..=prefix.prefix_len())
            .rev()
            .filter_map(|len| IpNet::new(prefix.addr(), len).ok().map(|n| n.trunc()))
            .find_map(|n| self.0.get(&n))
            .is_none_or(|owners| owners.contains(next_hop))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a route a peer sent is kept out of the Loc-RIB. Kept with the route in the Adj-RIB-In,
/// so the peer snapshot can count the routes refused for each reason right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    /// eBGP: our AS is in the AS_PATH.
    AsLoop,
    /// The ORIGINATOR_ID is our router ID: our own route reflected back (RFC 4456 §8).
    OriginatorIsUs,
    /// The CLUSTER_LIST holds our cluster ID: reflected back into our cluster (RFC 4456 §8).
    ClusterLoop,
    NextHopFamily,
    NotUnicast,
    /// The peer may not announce this prefix.
    ImportFilter,
    /// A pod CIDR with a next hop that is not its owner's.
    NextHopNotOwner,
}

impl Rejection {
    /// The name in JSON and metric labels.
    pub fn key(self) -> &'static str {
        match self {
            Rejection::AsLoop => "as-loop",
            Rejection::OriginatorIsUs => "originator-is-us",
            Rejection::ClusterLoop => "cluster-loop",
            Rejection::NextHopFamily => "next-hop-family",
            Rejection::NotUnicast => "not-unicast",
            Rejection::ImportFilter => "import-filter",
            Rejection::NextHopNotOwner => "next-hop-not-owner",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::AsLoop => "AS loop",
            Rejection::OriginatorIsUs => "ORIGINATOR_ID is ours",
            Rejection::ClusterLoop => "CLUSTER_LIST holds our cluster ID",
            Rejection::NextHopFamily => "next hop of another family",
            Rejection::NotUnicast => "not a unicast prefix",
            Rejection::ImportFilter => "import filter",
            Rejection::NextHopNotOwner => "next hop is not the prefix owner's",
        }
    }
}

impl Serialize for Rejection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn exact_accepts_only_the_owned_prefix() {
        let f = ImportFilter::exact([n("10.244.2.0/24")]);
        assert!(f.allows(&n("10.244.2.0/24")));
        assert!(!f.allows(&n("10.244.2.0/25")), "more specific");
        assert!(!f.allows(&n("10.244.0.0/16")), "covering");
        assert!(!f.allows(&n("10.244.3.0/24")), "someone else's");
    }

    #[test]
    fn next_hop_owners_check_only_listed_prefixes() {
        let o = NextHopOwners::new([(n("10.244.2.0/24"), vec!["10.1.0.12".parse().unwrap()])]);
        assert!(o.allows(&n("10.244.2.0/24"), &"10.1.0.12".parse().unwrap()));
        assert!(!o.allows(&n("10.244.2.0/24"), &"10.1.0.13".parse().unwrap()));
        assert!(o.allows(&n("10.244.3.0/24"), &"10.1.0.13".parse().unwrap()));
        // A more specific part of a listed CIDR belongs to the same owner.
        assert!(!o.allows(&n("10.244.2.128/25"), &"10.1.0.13".parse().unwrap()));
        assert!(o.allows(&n("10.244.2.7/32"), &"10.1.0.12".parse().unwrap()));
        // A covering prefix is not the owner's to claim, nor checked here (the import filter's).
        assert!(o.allows(&n("10.244.0.0/16"), &"10.1.0.13".parse().unwrap()));
        assert!(NextHopOwners::default().is_empty());
    }

    #[test]
    fn range_with_max_len() {
        let f = ImportFilter::Prefixes(vec![PrefixRule {
            prefix: n("10.244.0.0/16"),
            max_len: 26,
        }]);
        assert!(f.allows(&n("10.244.9.0/24")));
        assert!(f.allows(&n("10.244.9.64/26")));
        assert!(!f.allows(&n("10.244.9.64/27")));
        assert!(!f.allows(&n("10.245.0.0/24")));
        assert!(!f.allows(&n("fd00::/64")));
        assert!(!ImportFilter::Nothing.allows(&n("10.244.9.0/24")));
    }
}
