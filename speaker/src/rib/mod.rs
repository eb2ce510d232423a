//! Routing information bases: Adj-RIB-In per peer, the Loc-RIB with best-path selection, and
//! Adj-RIB-Out per peer. Pure data structures: the caller ([`crate::core`]) feeds them.

pub mod decision;
mod loc;

pub use loc::LocRib;

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

/// A route a peer sent that the receipt checks refused.
#[derive(Clone, Debug)]
pub struct Refused {
    pub attrs: Arc<PathAttrs>,
    pub reason: Rejection,
    /// Sent before the peer's session went down gracefully and not re-sent since.
    pub stale: bool,
}

/// What one peer sent, as far as the Loc-RIB does not hold it. An accepted route is stored
/// once, as the peer's path in the Loc-RIB (BIRD keeps no import table either unless told
/// to): a second copy here was a quarter of the memory at 1M prefixes and a hash insert per
/// prefix. Refused routes are kept, so a filter change lets them in without a route refresh.
#[derive(Default, Debug)]
pub struct AdjRibIn {
    pub refused: PrefixMap<Refused>,
    /// Accepted routes: the peer's paths in the Loc-RIB.
    pub accepted: usize,
    /// Of those, the ones kept stale for a restarting peer.
    pub stale_accepted: usize,
}

impl AdjRibIn {
    /// Every route the peer sent and has not withdrawn, accepted or refused.
    pub fn received(&self) -> usize {
        self.accepted + self.refused.len()
    }
    /// How many routes are stale, accepted or refused.
    pub fn stale(&self) -> usize {
        self.stale_accepted + self.refused.values().filter(|r| r.stale).count()
    }
    /// Count an accepted path that replaced `old` (None: a new prefix from this peer).
    pub fn count_accepted(&mut self, old: Option<&Path>, stale: bool) {
        if let Some(old) = old {
            self.count_gone(old);
        }
        self.accepted += 1;
        self.stale_accepted += stale as usize;
    }
    /// Count an accepted path gone from the Loc-RIB.
    pub fn count_gone(&mut self, old: &Path) {
        self.accepted -= 1;
        self.stale_accepted -= old.stale as usize;
    }
}

/// What has been advertised to one peer.
#[derive(Default, Debug)]
pub struct AdjRibOut {
    pub routes: PrefixMap<Arc<PathAttrs>>,
}
