//! Routing information bases: Adj-RIB-In per peer, the Loc-RIB with best-path selection, and
//! Adj-RIB-Out per peer. Pure data structures: the caller ([`crate::core`]) feeds them.

pub mod decision;

use crate::wire::PathAttrs;
use ipnet::IpNet;
use std::collections::HashMap;
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
}

/// The result of best-path selection for one prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct Best {
    pub source: Source,
    pub attrs: Arc<PathAttrs>,
    /// The multipath set (best first): next hops of all paths tied down to the IGP step.
    pub multipath: Vec<(Source, Arc<PathAttrs>)>,
}

/// What a peer sent us, before and after import policy.
#[derive(Default, Debug)]
pub struct AdjRibIn {
    pub routes: HashMap<IpNet, (Arc<PathAttrs>, bool)>,
    pub accepted: usize,
}

impl AdjRibIn {
    /// Store a route; returns whether the accepted set changed for this prefix.
    pub fn insert(&mut self, p: IpNet, attrs: Arc<PathAttrs>, accepted: bool) -> bool {
        let old = self.routes.insert(p, (attrs, accepted));
        let was = old.as_ref().is_some_and(|o| o.1);
        self.accepted = self.accepted + accepted as usize - was as usize;
        was || accepted
    }
    /// Remove a route; returns whether it had been accepted.
    pub fn remove(&mut self, p: &IpNet) -> bool {
        let was = self.routes.remove(p).is_some_and(|o| o.1);
        self.accepted -= was as usize;
        was
    }
}

/// Loc-RIB: every usable path per prefix, and the current best.
#[derive(Default, Debug)]
pub struct LocRib {
    paths: HashMap<IpNet, Vec<Path>>,
    best: HashMap<IpNet, Best>,
}

impl LocRib {
    /// Add or replace the path from the same source (peer address, or local). Returns true if the best route changed.
    pub fn upsert(&mut self, prefix: IpNet, path: Path) -> bool {
        let v = self.paths.entry(prefix).or_default();
        let key = path.source.peer_addr();
        match v.iter_mut().find(|p| p.source.peer_addr() == key) {
            Some(p) => *p = path,
            None => v.push(path),
        }
        self.reselect(prefix)
    }

    /// Remove the path from `peer` (`None`: the local one). Returns true if the best route
    /// changed.
    pub fn remove(&mut self, prefix: IpNet, peer: Option<IpAddr>) -> bool {
        let Some(v) = self.paths.get_mut(&prefix) else {
            return false;
        };
        let before = v.len();
        v.retain(|p| p.source.peer_addr() != peer);
        if v.len() == before {
            return false;
        }
        self.reselect(prefix)
    }

    fn reselect(&mut self, prefix: IpNet) -> bool {
        let paths = match self.paths.get(&prefix) {
            Some(v) if !v.is_empty() => v,
            _ => {
                self.paths.remove(&prefix);
                return self.best.remove(&prefix).is_some();
            }
        };
        let (b, multi) = decision::select(paths);
        let best = Best {
            source: paths[b].source.clone(),
            attrs: paths[b].attrs.clone(),
            multipath: multi
                .iter()
                .map(|i| (paths[*i].source.clone(), paths[*i].attrs.clone()))
                .collect(),
        };
        if self.best.get(&prefix) == Some(&best) {
            return false;
        }
        self.best.insert(prefix, best);
        true
    }

    pub fn best(&self, prefix: &IpNet) -> Option<&Best> {
        self.best.get(prefix)
    }

    pub fn iter_best(&self) -> impl Iterator<Item = (&IpNet, &Best)> {
        self.best.iter()
    }

    pub fn len(&self) -> usize {
        self.best.len()
    }

    pub fn is_empty(&self) -> bool {
        self.best.is_empty()
    }
}

/// What has been advertised to one peer.
#[derive(Default, Debug)]
pub struct AdjRibOut {
    pub routes: HashMap<IpNet, Arc<PathAttrs>>,
}
