//! The Loc-RIB: every usable path per prefix and the current best. It is also where an
//! accepted route is stored: a peer's accepted route is its path here, not a second copy in
//! an Adj-RIB-In (see [`super::AdjRibIn`]).

use super::{decision, Best, Path};
use crate::wire::PathAttrs;
use indexmap::map::Entry as Slot;
use indexmap::IndexMap;
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

/// A dense vector of (hash, prefix, entry) and a table of 8-byte indices into it, rather than
/// a `HashMap`: a hash table's buckets are sized for its load factor (at 1M prefixes, 2M
/// buckets of prefix and entry, and the old table beside the new one while it grows), while
/// here only the index table is oversized and the vector holds one slot per prefix.
/// `bench-ingest` at 1M prefixes: 130 MB of buckets became 72 MB of slots and 18 MB of indices.
/// Removal swaps the last slot into the hole; nothing reads the RIB in a stable order.
type Entries = IndexMap<IpNet, Entry, foldhash::fast::RandomState>;

/// One prefix: its paths, which one is best and which tie for multipath.
#[derive(Debug)]
enum Entry {
    /// A single path, inline: it is the best and the whole multipath set. Nearly every prefix
    /// of a cluster has only its owner's path; a `Vec` cost a heap allocation per prefix.
    One(Path),
    Many(Box<Many>),
}

#[derive(Debug)]
struct Many {
    paths: Vec<Path>,
    best: u16,
    /// Bit i set: paths[i] is in the multipath set (sets beyond 64 paths are truncated).
    multi: u64,
}

/// The selection result as (peer, attributes) of the best path and the multipath set: what a
/// change must alter to be reported.
type Fingerprint = Vec<(Option<IpAddr>, *const PathAttrs)>;

impl Entry {
    fn paths(&self) -> &[Path] {
        match self {
            Entry::One(p) => std::slice::from_ref(p),
            Entry::Many(m) => &m.paths,
        }
    }

    fn paths_mut(&mut self) -> &mut [Path] {
        match self {
            Entry::One(p) => std::slice::from_mut(p),
            Entry::Many(m) => &mut m.paths,
        }
    }

    fn best(&self) -> usize {
        match self {
            Entry::One(_) => 0,
            Entry::Many(m) => m.best as usize,
        }
    }

    /// The multipath set, best first.
    fn multipath(&self) -> impl Iterator<Item = &Path> {
        let (best, multi) = match self {
            Entry::One(_) => (0, 1),
            Entry::Many(m) => (m.best as usize, m.multi),
        };
        let paths = self.paths();
        std::iter::once(&paths[best]).chain(
            paths
                .iter()
                .enumerate()
                .filter(move |(i, _)| *i != best && *i < 64 && multi & (1 << i) != 0)
                .map(|(_, p)| p),
        )
    }

    fn to_best(&self) -> Best {
        let b = &self.paths()[self.best()];
        Best {
            source: b.source.clone(),
            attrs: b.attrs.clone(),
            multipath: self
                .multipath()
                .map(|p| (p.source.clone(), p.attrs.clone()))
                .collect(),
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        self.multipath()
            .map(|p| (p.source.peer_addr(), Arc::as_ptr(&p.attrs)))
            .collect()
    }

    fn position(&self, peer: Option<IpAddr>) -> Option<usize> {
        self.paths()
            .iter()
            .position(|p| p.source.peer_addr() == peer)
    }

    fn push(&mut self, path: Path) {
        if let Entry::One(_) = self {
            let spare = Entry::Many(Box::new(Many {
                paths: Vec::with_capacity(2),
                best: 0,
                multi: 1,
            }));
            let Entry::One(first) = std::mem::replace(self, spare) else {
                unreachable!("matched One above")
            };
            self.push(first);
        }
        if let Entry::Many(m) = self {
            m.paths.push(path);
        }
    }

    /// Remove path `i` of a `Many` (a `One` loses its path with the whole entry).
    fn remove_at(&mut self, i: usize) -> Option<Path> {
        match self {
            Entry::One(_) => None,
            Entry::Many(m) => Some(m.paths.remove(i)),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Entry::Many(m) if m.paths.is_empty())
    }

    /// After the paths changed: select again, and put a single remaining path inline.
    fn settle(&mut self) {
        let Entry::Many(m) = self else { return };
        match m.paths.len() {
            0 => {}
            1 => {
                let p = m.paths.pop().expect("one path");
                *self = Entry::One(p);
            }
            _ => {
                let (b, multi) = decision::select(&m.paths);
                m.best = b as u16;
                m.multi = multi
                    .iter()
                    .filter(|i| **i < 64)
                    .fold(0u64, |m, i| m | (1 << i));
            }
        }
    }
}

/// Loc-RIB: every usable path per prefix, and the current best.
#[derive(Default, Debug)]
pub struct LocRib {
    entries: Entries,
}

impl LocRib {
    /// Add or replace the path from the same source (peer address, or local). Returns the
    /// path it replaced and whether the selection (best or multipath set) changed.
    pub fn upsert(&mut self, prefix: IpNet, path: Path) -> (Option<Path>, bool) {
        let e = match self.entries.entry(prefix) {
            Slot::Vacant(v) => {
                v.insert(Entry::One(path));
                return (None, true);
            }
            Slot::Occupied(o) => o.into_mut(),
        };
        let key = path.source.peer_addr();
        if let Entry::One(p) = e {
            if p.source.peer_addr() == key {
                // Same peer, still the only path: a change if the attributes are new.
                let changed = !Arc::ptr_eq(&p.attrs, &path.attrs);
                return (Some(std::mem::replace(p, path)), changed);
            }
        }
        let before = e.fingerprint();
        let old = match e.position(key) {
            Some(i) => Some(std::mem::replace(&mut e.paths_mut()[i], path)),
            None => {
                e.push(path);
                None
            }
        };
        e.settle();
        let changed = e.fingerprint() != before;
        (old, changed)
    }

    /// Remove the path from `peer` (`None`: the local one). Returns it, and whether the
    /// selection changed.
    pub fn remove(&mut self, prefix: IpNet, peer: Option<IpAddr>) -> (Option<Path>, bool) {
        let Some((idx, _, e)) = self.entries.get_full_mut(&prefix) else {
            return (None, false);
        };
        let Some(i) = e.position(peer) else {
            return (None, false);
        };
        if let Entry::One(_) = e {
            let Some((_, Entry::One(p))) = self.entries.swap_remove_index(idx) else {
                unreachable!("the entry at idx is One")
            };
            return (Some(p), true);
        }
        let before = e.fingerprint();
        let old = e.remove_at(i);
        e.settle();
        let changed = e.fingerprint() != before;
        (old, changed)
    }

    /// Walk every path from `peer`: `edit` may change it (it is told the prefix) and returns
    /// whether to keep it. Returns the prefixes whose selection changed. A walk over the whole
    /// table, as BIRD flushes a channel: the price of storing accepted routes once.
    pub fn edit_peer(
        &mut self,
        peer: Option<IpAddr>,
        mut edit: impl FnMut(&IpNet, &mut Path) -> bool,
    ) -> Vec<IpNet> {
        let mut changed = Vec::new();
        self.entries.retain(|prefix, e| {
            let Some(i) = e.position(peer) else {
                return true;
            };
            let before = e.fingerprint();
            let keep = edit(prefix, &mut e.paths_mut()[i]);
            if !keep {
                if let Entry::One(_) = e {
                    changed.push(*prefix);
                    return false;
                }
                e.remove_at(i);
            }
            e.settle();
            if e.is_empty() || e.fingerprint() != before {
                changed.push(*prefix);
            }
            !e.is_empty()
        });
        changed
    }

    pub fn best(&self, prefix: &IpNet) -> Option<Best> {
        self.entries.get(prefix).map(Entry::to_best)
    }

    /// Attributes of the best path only (no allocation).
    pub fn best_attrs(&self, prefix: &IpNet) -> Option<(&super::Source, &Arc<PathAttrs>)> {
        self.entries.get(prefix).map(|e| {
            let b = &e.paths()[e.best()];
            (&b.source, &b.attrs)
        })
    }

    pub fn prefixes(&self) -> impl Iterator<Item = &IpNet> {
        self.entries.keys()
    }

    /// All paths of one prefix (empty if none).
    pub fn paths(&self, prefix: &IpNet) -> &[Path] {
        self.entries.get(prefix).map_or(&[], Entry::paths)
    }

    /// The path from `peer` for one prefix.
    pub fn path_from(&self, prefix: &IpNet, peer: IpAddr) -> Option<&Path> {
        self.paths(prefix)
            .iter()
            .find(|p| p.source.peer_addr() == Some(peer))
    }

    /// Every path from `peer`, with its prefix (a walk over the whole table).
    pub fn paths_of(&self, peer: IpAddr) -> impl Iterator<Item = (&IpNet, &Path)> {
        self.entries.iter().filter_map(move |(prefix, e)| {
            e.paths()
                .iter()
                .find(|p| p.source.peer_addr() == Some(peer))
                .map(|p| (prefix, p))
        })
    }

    /// Every prefix with all its paths and the index of the best (for invariant checks).
    pub fn iter_paths(&self) -> impl Iterator<Item = (&IpNet, &[Path], usize)> {
        self.entries.iter().map(|(p, e)| (p, e.paths(), e.best()))
    }

    pub fn iter_best(&self) -> impl Iterator<Item = (&IpNet, Best)> {
        self.entries.iter().map(|(p, e)| (p, e.to_best()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rib::Source;
    use crate::wire::{AsPath, AsSegment};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn path(peer: u8, as_len: usize) -> Path {
        let mut a = PathAttrs::local(IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer)));
        a.as_path = AsPath(vec![AsSegment::Sequence(vec![65000; as_len])]);
        Path {
            source: Source::Peer {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer)),
                router_id: Ipv4Addr::new(1, 1, 1, peer),
                ebgp: true,
                originator_id: None,
            },
            attrs: Arc::new(a),
            stale: false,
        }
    }

    fn peer(n: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
    }

    #[test]
    fn changes_are_reported_only_when_selection_changes() {
        let mut rib = LocRib::default();
        let p: IpNet = "10.244.1.0/24".parse().unwrap();
        assert!(rib.upsert(p, path(2, 1)).1, "first path");
        let (old, changed) = rib.upsert(p, path(1, 1));
        assert!(old.is_none());
        assert!(
            changed,
            "a tie joins the multipath set and wins on router id"
        );
        let b = rib.best(&p).unwrap();
        assert_eq!(b.source.peer_addr(), peer(1));
        assert_eq!(b.multipath.len(), 2);
        // Same peer, same attribute values but a new Arc: still a change (attrs replaced).
        let (old, changed) = rib.upsert(p, path(2, 1));
        assert!(changed);
        assert_eq!(
            old.unwrap().source.peer_addr(),
            peer(2),
            "the replaced path"
        );
        // The same Arc again: nothing changed.
        let same = rib.path_from(&p, peer(2).unwrap()).unwrap().clone();
        assert!(!rib.upsert(p, same).1);
        // A worse path from the peer: it leaves the multipath set.
        assert!(rib.upsert(p, path(2, 3)).1);
        assert_eq!(rib.best(&p).unwrap().multipath.len(), 1);
        assert_eq!(rib.remove(p, peer(9)).0.map(|_| ()), None, "unknown peer");
        let (gone, changed) = rib.remove(p, peer(2));
        assert!(gone.is_some());
        assert!(!changed, "a path outside the multipath set went");
        let (gone, changed) = rib.remove(p, peer(1));
        assert!(gone.is_some() && changed);
        assert!(rib.is_empty());
    }

    #[test]
    fn a_peer_walk_edits_and_removes_only_that_peers_paths() {
        let mut rib = LocRib::default();
        let a: IpNet = "10.244.1.0/24".parse().unwrap();
        let b: IpNet = "10.244.2.0/24".parse().unwrap();
        rib.upsert(a, path(1, 1));
        rib.upsert(a, path(2, 1));
        rib.upsert(b, path(1, 1));
        let mut seen = Vec::new();
        let changed = rib.edit_peer(peer(1), |prefix, p| {
            seen.push(*prefix);
            p.stale = true;
            true
        });
        seen.sort();
        assert_eq!(seen, vec![a, b]);
        // On `a` the stale path loses to peer 2's; `b` has no other path.
        assert_eq!(changed, vec![a]);
        assert_eq!(rib.best(&a).unwrap().source.peer_addr(), peer(2));
        assert!(rib.path_from(&b, peer(1).unwrap()).unwrap().stale);
        let changed = rib.edit_peer(peer(1), |_, _| false);
        assert_eq!(
            changed,
            vec![b],
            "a stale loser leaving `a` changes nothing there"
        );
        assert_eq!(rib.len(), 1);
        assert_eq!(rib.paths(&a).len(), 1);
        assert_eq!(rib.paths_of(peer(2).unwrap()).count(), 1);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Upsert(u8, u8, usize),
        Remove(u8, u8),
        Stale(u8, u8),
        Flush(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 1u8..5, 1usize..3).prop_map(|(x, p, l)| Op::Upsert(x, p, l)),
            (0u8..6, 1u8..5).prop_map(|(x, p)| Op::Remove(x, p)),
            (0u8..6, 1u8..5).prop_map(|(x, p)| Op::Stale(x, p)),
            (1u8..5).prop_map(Op::Flush),
        ]
    }

    /// The selection as a model computes it from a plain list of paths.
    fn model_fingerprint(paths: &[Path]) -> Fingerprint {
        if paths.is_empty() {
            return Vec::new();
        }
        // `select` lists the best first, then the other tied paths in order.
        let (_, multi) = decision::select(paths);
        multi
            .iter()
            .map(|i| (paths[*i].source.peer_addr(), Arc::as_ptr(&paths[*i].attrs)))
            .collect()
    }

    proptest! {
        /// Against a model (a list of paths per prefix, selected from scratch): the same paths,
        /// the same best, and a change reported exactly when the selection changed.
        #[test]
        fn matches_a_plain_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut rib = LocRib::default();
            let mut model: BTreeMap<IpNet, Vec<Path>> = BTreeMap::new();
            let net = |x: u8| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::new(10, 244, x, 0), 24).unwrap());
            for op in ops {
                let touched: Vec<IpNet> = match &op {
                    Op::Flush(_) => model.keys().copied().collect(),
                    Op::Upsert(x, ..) | Op::Remove(x, _) | Op::Stale(x, _) => vec![net(*x)],
                };
                let before: BTreeMap<IpNet, Fingerprint> = touched
                    .iter()
                    .map(|n| (*n, model_fingerprint(model.get(n).map_or(&[][..], |v| v))))
                    .collect();
                let mut reported: Vec<IpNet> = match op {
                    Op::Upsert(x, p, l) => {
                        let new = path(p, l);
                        let v = model.entry(net(x)).or_default();
                        match v.iter_mut().find(|q| q.source.peer_addr() == peer(p)) {
                            Some(q) => *q = new.clone(),
                            None => v.push(new.clone()),
                        }
                        let (_, changed) = rib.upsert(net(x), new);
                        if changed { vec![net(x)] } else { vec![] }
                    }
                    Op::Remove(x, p) => {
                        if let Some(v) = model.get_mut(&net(x)) {
                            v.retain(|q| q.source.peer_addr() != peer(p));
                        }
                        let (_, changed) = rib.remove(net(x), peer(p));
                        if changed { vec![net(x)] } else { vec![] }
                    }
                    Op::Stale(x, p) => {
                        if let Some(v) = model.get_mut(&net(x)) {
                            for q in v.iter_mut().filter(|q| q.source.peer_addr() == peer(p)) {
                                q.stale = true;
                            }
                        }
                        rib.edit_peer(peer(p), |n, q| {
                            if *n == net(x) { q.stale = true; }
                            true
                        })
                    }
                    Op::Flush(p) => {
                        for v in model.values_mut() {
                            v.retain(|q| q.source.peer_addr() != peer(p));
                        }
                        rib.edit_peer(peer(p), |_, _| false)
                    }
                };
                model.retain(|_, v| !v.is_empty());
                reported.sort();
                let want: Vec<IpNet> = before
                    .iter()
                    .filter(|(n, fp)| model_fingerprint(model.get(n).map_or(&[][..], |v| v)) != **fp)
                    .map(|(n, _)| *n)
                    .collect();
                prop_assert_eq!(&reported, &want, "after {:?}", op);
                prop_assert_eq!(rib.len(), model.len());
                for (n, v) in &model {
                    let got: Vec<_> = rib.paths(n).iter().map(|q| (q.source.peer_addr(), Arc::as_ptr(&q.attrs), q.stale)).collect();
                    for q in v {
                        prop_assert!(got.contains(&(q.source.peer_addr(), Arc::as_ptr(&q.attrs), q.stale)));
                    }
                    prop_assert_eq!(got.len(), v.len());
                    let best = rib.best(n).unwrap();
                    let fp: Fingerprint = best.multipath.iter().map(|(s, a)| (s.peer_addr(), Arc::as_ptr(a))).collect();
                    let mut want = model_fingerprint(v);
                    let mut fp_sorted = fp.clone();
                    want.sort();
                    fp_sorted.sort();
                    prop_assert_eq!(fp_sorted, want);
                    prop_assert_eq!(fp[0].0, best.source.peer_addr());
                }
            }
        }
    }
}
