//! A read model of every peer for `twill status`, the metrics and readiness: values copied out
//! of the core, never a reference into it.

use super::gr::GrSnapshot;
use super::peer::FamilyState;
use super::Core;
use crate::config::PeerRole;
use crate::fsm::State;
use crate::policy::Rejection;
use crate::wire::{self, Family, PathAttrs};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

/// One peer as `twill status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerSnapshot {
    pub address: IpAddr,
    pub asn: u32,
    pub role: PeerRole,
    pub state: State,
    /// Seconds since the state last changed.
    pub since_secs: u64,
    pub remote_id: Option<Ipv4Addr>,
    pub hold_time: Option<u16>,
    pub prefixes_received: usize,
    pub prefixes_accepted: usize,
    /// Routes held but not accepted now, by reason (a reflected route looping back, a pod
    /// CIDR with another node's next hop, …).
    pub prefixes_rejected: BTreeMap<Rejection, usize>,
    pub prefixes_advertised: usize,
    pub updates_received: u64,
    pub updates_sent: u64,
    pub last_error: Option<String>,
    /// Why the last Established session ended.
    pub last_down: Option<String>,
    /// End-of-RIB received on this session (for some family; see `families`).
    pub end_of_rib_received: bool,
    /// End-of-RIB sent on this session.
    pub end_of_rib_sent: bool,
    /// Per family: the negotiated ones (empty while the session is down).
    pub families: BTreeMap<Family, FamilyState>,
    /// The peer's Graceful Restart capability on this session.
    pub graceful_restart: Option<wire::GracefulRestart>,
    /// Graceful restart as a helper for this peer: negotiated, restarting, stale routes.
    pub gr: GrSnapshot,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub extended_message: bool,
}

impl Core {
    pub fn snapshot(&self, now: Instant) -> Vec<PeerSnapshot> {
        self.peers
            .values()
            .map(|p| {
                let info = p
                    .main
                    .fsm
                    .session()
                    .filter(|_| p.main.fsm.state() == State::Established);
                PeerSnapshot {
                    address: p.cfg.address,
                    asn: p.cfg.asn,
                    role: p.role,
                    state: p.main.fsm.state(),
                    since_secs: now.saturating_duration_since(p.since).as_secs(),
                    remote_id: info.map(|i| i.remote_id),
                    hold_time: info.map(|i| i.hold_time),
                    prefixes_received: p.adj_in.received(),
                    prefixes_accepted: p.adj_in.accepted,
                    prefixes_rejected: p.adj_in.refused.values().map(|r| r.reason).fold(
                        BTreeMap::new(),
                        |mut m, r| {
                            *m.entry(r).or_default() += 1;
                            m
                        },
                    ),
                    prefixes_advertised: p.adj_out.routes.len(),
                    updates_received: p.updates_in,
                    updates_sent: p.updates_out,
                    last_error: p.main.fsm.last_error.clone(),
                    last_down: p.last_down.as_ref().map(|c| c.to_string()),
                    end_of_rib_received: p.eor_received(),
                    end_of_rib_sent: p.eor_sent(),
                    families: p.families.clone(),
                    graceful_restart: info.and_then(|i| i.remote_caps.graceful_restart.clone()),
                    gr: self.gr_snapshot(p, now),
                    four_octet_as: info.is_some_and(|i| i.negotiated.asn4),
                    route_refresh: info.is_some_and(|i| i.remote_caps.route_refresh),
                    extended_message: info.is_some_and(|i| i.negotiated.extended_message),
                }
            })
            .collect()
    }
}

impl Core {
    /// One peer's session state, accepted prefixes and UPDATEs received, without building a
    /// snapshot (cheap enough to ask after every input, as the fuzz harness does).
    pub fn peer_brief(&self, peer: IpAddr) -> Option<(State, usize, u64)> {
        self.peers
            .get(&peer.to_canonical())
            .map(|p| (p.main.fsm.state(), p.adj_in.accepted, p.updates_in))
    }

    /// A peer's Adj-RIB-In: each prefix with its attributes and whether it was accepted,
    /// sorted (for tests, fuzzing and, later, `twill explain`).
    pub fn adj_rib_in(&self, peer: IpAddr) -> Vec<(IpNet, Arc<PathAttrs>, bool)> {
        let mut v: Vec<_> = self
            .peers
            .get(&peer.to_canonical())
            .map(|p| {
                let refused = p
                    .adj_in
                    .refused
                    .iter()
                    .map(|(k, r)| (*k, r.attrs.clone(), false));
                self.rib
                    .paths_of(p.cfg.address)
                    .map(|(k, x)| (*k, x.attrs.clone(), true))
                    .chain(refused)
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|r| r.0);
        v
    }

    /// What has been advertised to a peer, sorted.
    pub fn adj_rib_out(&self, peer: IpAddr) -> Vec<(IpNet, Arc<PathAttrs>)> {
        let mut v: Vec<_> = self
            .peers
            .get(&peer.to_canonical())
            .map(|p| {
                p.adj_out
                    .routes
                    .iter()
                    .map(|(k, a)| (*k, a.clone()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|r| r.0);
        v
    }
}
