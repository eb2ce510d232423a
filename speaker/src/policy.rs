//! Peer policy: which prefixes a peer may announce to us, and which we pass on to it.

use ipnet::IpNet;

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
