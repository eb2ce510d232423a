//! Pod-CIDR overlap checks in O(log n) each, so a view of thousands of nodes validates in well
//! under a second (`bench-view`).

use ipnet::IpNet;
use std::collections::BTreeMap;

/// The pod CIDRs seen so far, as disjoint intervals keyed by (family, first address): checking
/// one more for an overlap is two ordered lookups, so a view of n nodes validates in
/// O(n log n) rather than comparing every pair.
#[derive(Default)]
pub(crate) struct CidrIndex(BTreeMap<(bool, u128), (u128, usize, IpNet)>);

fn bounds(c: &IpNet) -> (bool, u128, u128) {
    match c {
        IpNet::V4(n) => (
            false,
            u32::from(n.network()).into(),
            u32::from(n.broadcast()).into(),
        ),
        IpNet::V6(n) => (true, n.network().into(), n.broadcast().into()),
    }
}

impl CidrIndex {
    /// The earliest-listed node whose CIDR overlaps `c`, with that CIDR. Blocks nest or are
    /// disjoint, and the stored ones are disjoint, so only the block starting at or before
    /// `c` can contain it, and any that `c` contains start inside it.
    pub(crate) fn overlap(&self, c: &IpNet) -> Option<(usize, IpNet)> {
        let (v6, first, last) = bounds(c);
        let before = self
            .0
            .range(..=(v6, first))
            .next_back()
            .filter(|((f, _), (end, _, _))| *f == v6 && *end >= first)
            .map(|(_, (_, i, o))| (*i, *o));
        let inside = self
            .0
            .range((v6, first)..=(v6, last))
            .map(|(_, (_, i, o))| (*i, *o));
        before.into_iter().chain(inside).min_by_key(|(i, _)| *i)
    }

    pub(crate) fn insert(&mut self, c: &IpNet, node: usize) {
        let (v6, first, last) = bounds(c);
        self.0.insert((v6, first), (last, node, *c));
    }
}
