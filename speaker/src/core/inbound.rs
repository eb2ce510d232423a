//! What arrives in an UPDATE: the RFC 7606 outcome, loop checks, import policy, the
//! max-prefix limit, End-of-RIB, and where each route is stored (the Loc-RIB if accepted, the
//! Adj-RIB-In if refused).

use super::peer::Slot;
use super::Core;
use crate::config::{PeerConfig, PeerRole, SpeakerConfig};
use crate::fsm::Event;
use crate::notification::{cease, code, Notification};
use crate::policy::Rejection;
use crate::rib::{AdjRibIn, LocRib, Path, Refused};
use crate::wire::{self, Family, PathAttrs};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::{debug, warn};

impl Core {
    pub(super) fn update(&mut self, peer: IpAddr, u: wire::Update) {
        let base = self.source_of(peer);
        let p = self.peers.get_mut(&peer).expect("peer exists");
        p.updates_in += 1;
        if let Some(n) = &u.treat_as_withdraw {
            warn!(peer = %peer, error = %n, prefixes = u.withdrawn.len(), "RFC 7606 treat-as-withdraw");
        }
        if !u.discarded.is_empty() {
            debug!(peer = %peer, codes = ?u.discarded, "RFC 7606 attribute discard");
        }
        if let Some(f) = u.end_of_rib {
            if !p.families.contains_key(&f) {
                debug!(peer = %peer, family = ?f, "End-of-RIB for a family not negotiated");
            }
            p.families.entry(f).or_default().eor_received = true;
        }
        let eor = u.end_of_rib;
        for prefix in u.withdrawn {
            withdraw_route(&mut p.adj_in, &mut self.rib, &mut self.dirty, prefix, peer);
        }
        let ebgp = p.role.is_ebgp();
        for (attrs, prefixes) in u.announced {
            if ebgp && attrs.as_path.neighbour_as() != Some(p.cfg.asn) {
                // RFC 4271 §6.3 / RFC 7606 §7.2: treat-as-withdraw.
                warn!(peer = %peer, path = %attrs.as_path, "AS_PATH does not start with the peer's AS: treat-as-withdraw");
                for prefix in prefixes {
                    withdraw_route(&mut p.adj_in, &mut self.rib, &mut self.dirty, prefix, peer);
                }
                continue;
            }
            let source = base.with_originator(attrs.originator_id);
            let attrs = Arc::new(attrs);
            for prefix in prefixes {
                let reason = rejection(&self.cfg, &p.cfg, p.role, &prefix, &attrs);
                if let Some(reason) = reason {
                    debug!(peer = %peer, prefix = %prefix, %reason, next_hop = %attrs.next_hop, "prefix not accepted");
                }
                let path = Path {
                    source: source.clone(),
                    attrs: attrs.clone(),
                    stale: false,
                };
                import_route(
                    &mut p.adj_in,
                    &mut self.rib,
                    &mut self.dirty,
                    prefix,
                    path,
                    reason,
                );
            }
        }
        if let Some(f) = eor {
            self.gr_end_of_rib(peer, f);
        }
        let p = self.peers.get(&peer).expect("peer exists");
        if let Some(max) = p.cfg.max_prefixes {
            // Stale routes (a restart not yet confirmed by End-of-RIB) do not count: they may
            // be about to go, and a Hard Reset would throw away what graceful restart kept.
            if p.adj_in.accepted - p.adj_in.stale_accepted > max {
                warn!(peer = %peer, limit = max, accepted = p.adj_in.accepted, "maximum prefix count exceeded");
                let (afi, safi) = Family::Ipv4Unicast.afi_safi();
                let mut data = afi.to_be_bytes().to_vec();
                data.push(safi);
                data.extend_from_slice(&(max as u32).to_be_bytes());
                self.event(
                    peer,
                    Slot::Main,
                    Event::MessageError(Notification::new(code::CEASE, cease::MAX_PREFIXES, data)),
                );
            }
        }
    }

    /// Re-run the acceptance checks over everything a peer sent (after a filter change):
    /// its refused routes and its paths in the Loc-RIB.
    pub(super) fn reimport(&mut self, peer: IpAddr) {
        let base = self.source_of(peer);
        let p = &self.peers[&peer];
        let mut routes: Vec<(IpNet, Arc<PathAttrs>, bool, Option<Rejection>)> = p
            .adj_in
            .refused
            .iter()
            .map(|(k, r)| (*k, r.attrs.clone(), r.stale, Some(r.reason)))
            .collect();
        if p.adj_in.accepted > 0 {
            routes.extend(
                self.rib
                    .paths_of(peer)
                    .map(|(k, x)| (*k, x.attrs.clone(), x.stale, None)),
            );
        }
        let p = self.peers.get_mut(&peer).expect("peer exists");
        for (prefix, attrs, stale, was) in routes {
            // All of them, not just the filter: a looped route must stay out whatever the
            // filter now lets through.
            let reason = rejection(&self.cfg, &p.cfg, p.role, &prefix, &attrs);
            if reason == was {
                continue;
            }
            let source = base.with_originator(attrs.originator_id);
            // A stale route stays stale: only the peer re-sending it makes it fresh.
            let path = Path {
                source,
                attrs,
                stale,
            };
            import_route(
                &mut p.adj_in,
                &mut self.rib,
                &mut self.dirty,
                prefix,
                path,
                reason,
            );
        }
    }
}

/// Why a route from a peer is kept out of the Loc-RIB (None: accepted). One place for the
/// receipt checks, so an UPDATE, a re-import after a filter change and the invariant check
/// agree: AS loop (eBGP), our own ORIGINATOR_ID or cluster ID, a next hop of the other family, a prefix
/// that unicast NLRI cannot carry (multicast, broadcast), the import filter, the prefix's owner.
pub(super) fn rejection(
    speaker: &SpeakerConfig,
    cfg: &PeerConfig,
    role: PeerRole,
    prefix: &IpNet,
    attrs: &PathAttrs,
) -> Option<Rejection> {
    if role.is_ebgp() && attrs.as_path.contains(speaker.asn) {
        Some(Rejection::AsLoop)
    } else if attrs.originator_id == Some(speaker.router_id) {
        Some(Rejection::OriginatorIsUs)
    } else if speaker
        .cluster_id
        .is_some_and(|c| attrs.cluster_list.contains(&c))
    {
        // RFC 4456 §8: reflected back into our own cluster.
        Some(Rejection::ClusterLoop)
    } else if prefix.addr().is_ipv4() != attrs.next_hop.is_ipv4() {
        Some(Rejection::NextHopFamily)
    } else if !wire::unicast_prefix(prefix) {
        Some(Rejection::NotUnicast)
    } else if !cfg.import.allows(prefix) {
        Some(Rejection::ImportFilter)
    } else if !cfg.next_hop_owners.allows(prefix, &attrs.next_hop) {
        Some(Rejection::NextHopNotOwner)
    } else {
        None
    }
}

/// Take one route from a peer: an accepted one becomes (or replaces) the peer's path in the
/// Loc-RIB, a refused one goes to its Adj-RIB-In and takes the peer's path out of the Loc-RIB
/// if there was one.
fn import_route(
    adj_in: &mut AdjRibIn,
    rib: &mut LocRib,
    dirty: &mut Vec<IpNet>,
    prefix: IpNet,
    path: Path,
    rejected: Option<Rejection>,
) {
    let changed = match rejected {
        None => {
            // Checked first: the refused map is nearly always empty, and this is per prefix.
            if !adj_in.refused.is_empty() {
                adj_in.refused.remove(&prefix);
            }
            let stale = path.stale;
            let (old, changed) = rib.upsert(prefix, path);
            adj_in.count_accepted(old.as_ref(), stale);
            changed
        }
        Some(reason) => {
            let (old, changed) = rib.remove(prefix, path.source.peer_addr());
            if let Some(old) = &old {
                adj_in.count_gone(old);
            }
            let refused = Refused {
                attrs: path.attrs,
                reason,
                stale: path.stale,
            };
            adj_in.refused.insert(prefix, refused);
            changed
        }
    };
    if changed {
        dirty.push(prefix);
    }
}

/// Forget one route from `peer`, refused or in the Loc-RIB (a withdrawal, or a stale route
/// swept by graceful restart).
pub(super) fn withdraw_route(
    adj_in: &mut AdjRibIn,
    rib: &mut LocRib,
    dirty: &mut Vec<IpNet>,
    prefix: IpNet,
    peer: IpAddr,
) {
    if !adj_in.refused.is_empty() && adj_in.refused.remove(&prefix).is_some() {
        return;
    }
    let (old, changed) = rib.remove(prefix, Some(peer));
    if let Some(old) = &old {
        adj_in.count_gone(old);
    }
    if changed {
        dirty.push(prefix);
    }
}
