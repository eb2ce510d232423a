//! Routing information bases: Adj-RIB-In per peer, the Loc-RIB with best-path selection, and
//! Adj-RIB-Out per peer. Pure data structures: the caller ([`crate::core`]) feeds them.

pub mod decision;

use crate::policy::Rejection;
use crate::wire::PathAttrs;
use ipnet::IpNet;
use std::collections::HashMap;

/// A map keyed by prefix. foldhash rather than std's SipHash: hashing prefixes was a tenth of
/// the time a million-prefix ingest took (`perf` on `bench-ingest`), and these maps are
/// looked up several times per received prefix. Seeded per process, so a peer cannot pick
/// colliding prefixes ahead of time.
pub type PrefixMap<V> = HashMap<IpNet, V, foldhash::fast::RandomState>;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Where a path came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Local,
    Peer {
        addr: IpAddr,
        router_id: Ipv4Addr,
        ebgp: bool,
        originator_id: Option<Ipv4Addr>,
    },
}

impl Source {
    pub fn is_ebgp(&self) -> bool {
        matches!(self, Source::Peer { ebgp: true, .. })
    }
    /// The same peer source for a path carrying `id` as its ORIGINATOR_ID.
    pub fn with_originator(&self, id: Option<Ipv4Addr>) -> Source {
        match self {
            Source::Peer {
                addr,
                router_id,
                ebgp,
                ..
            } => Source::Peer {
                addr: *addr,
                router_id: *router_id,
                ebgp: *ebgp,
                originator_id: id,
            },
            Source::Local => Source::Local,
        }
    }
    pub fn peer_addr(&self) -> Option<IpAddr> {
        match self {
            Source::Peer { addr, .. } => Some(*addr),
            Source::Local => None,
        }
    }
    fn tie_break_id(&self) -> u32 {
        match self {
            Source::Peer {
                router_id,
                originator_id,
                ..
            } => u32::from(originator_id.unwrap_or(*router_id)),
            Source::Local => 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Path {
    pub source: Source,
    pub attrs: Arc<PathAttrs>,
    /// Kept from a peer that is restarting (RFC 4724 §4.2): it loses to any fresh path.
    pub stale: bool,
}

/// The result of best-path selection for one prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct Best {
    pub source: Source,
    pub attrs: Arc<PathAttrs>,
    /// The multipath set (best first): next hops of all paths tied down to the IGP step.
    pub multipath: Vec<(Source, Arc<PathAttrs>)>,
}

/// One route a peer sent.
#[derive(Clone, Debug)]
pub struct Stored {
    pub attrs: Arc<PathAttrs>,
    /// Why it is not accepted (None: accepted).
    pub rejected: Option<Rejection>,
    /// Sent before the peer's session went down gracefully and not re-sent since.
    pub stale: bool,
}

/// What a peer sent us, before and after import policy.
#[derive(Default, Debug)]
pub struct AdjRibIn {
    pub routes: PrefixMap<Stored>,
    pub accepted: usize,
}

impl AdjRibIn {
    /// Store a route as just received (fresh); returns whether the route it replaced had been
    /// accepted.
    pub fn insert(&mut self, p: IpNet, attrs: Arc<PathAttrs>, rejected: Option<Rejection>) -> bool {
        self.insert_stored(
            p,
            Stored {
                attrs,
                rejected,
                stale: false,
            },
        )
    }
    /// Store a route with its stale flag as given; returns whether the route it replaced had
    /// been accepted.
    pub fn insert_stored(&mut self, p: IpNet, r: Stored) -> bool {
        let accepted = r.rejected.is_none();
        let was = self
            .routes
            .insert(p, r)
            .is_some_and(|o| o.rejected.is_none());
        self.accepted = self.accepted + accepted as usize - was as usize;
        was
    }
    /// Remove a route; returns whether it had been accepted.
    pub fn remove(&mut self, p: &IpNet) -> bool {
        let was = self.routes.remove(p).is_some_and(|o| o.rejected.is_none());
        self.accepted -= was as usize;
        was
    }
    /// How many routes are stale.
    pub fn stale(&self) -> usize {
        self.routes.values().filter(|r| r.stale).count()
    }
    /// How many accepted routes are stale.
    pub fn stale_accepted(&self) -> usize {
        self.routes
            .values()
            .filter(|r| r.stale && r.rejected.is_none())
            .count()
    }
}

/// One prefix in the Loc-RIB: its paths, which one is best and which tie for multipath.
/// Kept as indices into `paths` rather than copies: at 100k prefixes a separate map of best
/// routes with its own multipath vectors cost more than the paths themselves.
#[derive(Debug)]
struct Entry {
    paths: Vec<Path>,
    best: u16,
    /// Bit i set: paths[i] is in the multipath set (sets beyond 64 paths are truncated).
    multi: u64,
}

impl Entry {
    fn to_best(&self) -> Best {
        let b = &self.paths[self.best as usize];
        let mut multipath = vec![(b.source.clone(), b.attrs.clone())];
        for (i, p) in self.paths.iter().enumerate() {
            if i != self.best as usize && i < 64 && self.multi & (1 << i) != 0 {
                multipath.push((p.source.clone(), p.attrs.clone()));
            }
        }
        Best {
            source: b.source.clone(),
            attrs: b.attrs.clone(),
            multipath,
        }
    }

    /// What identifies the selection result: (peer, attributes) of best and multipath.
    fn fingerprint(&self) -> Vec<(Option<IpAddr>, *const PathAttrs)> {
        let mut v = Vec::with_capacity(1);
        let b = &self.paths[self.best as usize];
        v.push((b.source.peer_addr(), Arc::as_ptr(&b.attrs)));
        for (i, p) in self.paths.iter().enumerate() {
            if i != self.best as usize && i < 64 && self.multi & (1 << i) != 0 {
                v.push((p.source.peer_addr(), Arc::as_ptr(&p.attrs)));
            }
        }
        v
    }

    fn select(&mut self) {
        let (b, multi) = decision::select(&self.paths);
        self.best = b as u16;
        self.multi = multi
            .iter()
            .filter(|i| **i < 64)
            .fold(0u64, |m, i| m | (1 << i));
    }
}

/// Loc-RIB: every usable path per prefix, and the current best.
#[derive(Default, Debug)]
pub struct LocRib {
    entries: PrefixMap<Entry>,
}

impl LocRib {
    /// Add or replace the path from the same source (peer address, or local). Returns true if
    /// the best route changed.
    pub fn upsert(&mut self, prefix: IpNet, path: Path) -> bool {
        match self.entries.get_mut(&prefix) {
            None => {
                self.entries.insert(
                    prefix,
                    Entry {
                        paths: vec![path],
                        best: 0,
                        multi: 1,
                    },
                );
                true
            }
            Some(e) => {
                let before = e.fingerprint();
                let key = path.source.peer_addr();
                match e.paths.iter_mut().find(|p| p.source.peer_addr() == key) {
                    Some(p) => *p = path,
                    None => e.paths.push(path),
                }
                e.select();
                e.fingerprint() != before
            }
        }
    }

    /// Remove the path from `peer` (`None`: the local one). Returns true if the best route
    /// changed.
    pub fn remove(&mut self, prefix: IpNet, peer: Option<IpAddr>) -> bool {
        let Some(e) = self.entries.get_mut(&prefix) else {
            return false;
        };
        let before = e.fingerprint();
        let n = e.paths.len();
        e.paths.retain(|p| p.source.peer_addr() != peer);
        if e.paths.len() == n {
            return false;
        }
        if e.paths.is_empty() {
            self.entries.remove(&prefix);
            return true;
        }
        e.select();
        e.fingerprint() != before
    }

    pub fn best(&self, prefix: &IpNet) -> Option<Best> {
        self.entries.get(prefix).map(Entry::to_best)
    }

    /// Attributes of the best path only (no allocation).
    pub fn best_attrs(&self, prefix: &IpNet) -> Option<(&Source, &Arc<PathAttrs>)> {
        self.entries.get(prefix).map(|e| {
            let b = &e.paths[e.best as usize];
            (&b.source, &b.attrs)
        })
    }

    pub fn prefixes(&self) -> impl Iterator<Item = &IpNet> {
        self.entries.keys()
    }

    /// Mark the path from `peer` stale (or fresh). Returns true if the best route changed.
    pub fn set_stale(&mut self, prefix: IpNet, peer: IpAddr, stale: bool) -> bool {
        let Some(e) = self.entries.get_mut(&prefix) else {
            return false;
        };
        let before = e.fingerprint();
        match e
            .paths
            .iter_mut()
            .find(|p| p.source.peer_addr() == Some(peer))
        {
            Some(p) if p.stale != stale => p.stale = stale,
            _ => return false,
        }
        e.select();
        e.fingerprint() != before
    }

    /// All paths of one prefix (empty if none).
    pub fn paths(&self, prefix: &IpNet) -> &[Path] {
        self.entries.get(prefix).map_or(&[], |e| e.paths.as_slice())
    }

    /// Every prefix with all its paths and the index of the best (for invariant checks).
    pub fn iter_paths(&self) -> impl Iterator<Item = (&IpNet, &[Path], usize)> {
        self.entries
            .iter()
            .map(|(p, e)| (p, e.paths.as_slice(), e.best as usize))
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

/// What has been advertised to one peer.
#[derive(Default, Debug)]
pub struct AdjRibOut {
    pub routes: PrefixMap<Arc<PathAttrs>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AsPath, AsSegment};

    fn path(peer: u8) -> Path {
        let mut a = PathAttrs::local(IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer)));
        a.as_path = AsPath(vec![AsSegment::Sequence(vec![65000])]);
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

    #[test]
    fn changes_are_reported_only_when_selection_changes() {
        let mut rib = LocRib::default();
        let p: IpNet = "10.244.1.0/24".parse().unwrap();
        assert!(rib.upsert(p, path(2)), "first path");
        assert!(
            rib.upsert(p, path(1)),
            "a tie joins the multipath set and wins on router id"
        );
        let b = rib.best(&p).unwrap();
        assert_eq!(b.source.peer_addr(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(b.multipath.len(), 2);
        // Same peer, same attribute values but a new Arc: still a change (attrs replaced).
        assert!(rib.upsert(p, path(2)));
        assert!(
            !rib.remove(p, Some("10.0.0.9".parse().unwrap())),
            "unknown peer"
        );
        assert!(rib.remove(p, Some("10.0.0.2".parse().unwrap())));
        assert_eq!(rib.best(&p).unwrap().multipath.len(), 1);
        assert!(rib.remove(p, Some("10.0.0.1".parse().unwrap())));
        assert!(rib.is_empty());
    }
}
