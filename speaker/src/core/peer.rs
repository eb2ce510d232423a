//! A peer: its configuration, its sessions (a second one during a collision), its RIBs and
//! per-family state; adding, changing and removing it; a session coming up or going down.

use super::{canonical, Core, Output, TimerKey};
use crate::config::{PeerConfig, PeerRole};
use crate::fsm::{DownCause, Event, Fsm, FsmConfig, SessionInfo, Timer};
use crate::notification::cease;
use crate::rib::{AdjRibIn, AdjRibOut, Source};
use crate::wire::{self, Family};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;
use tracing::{info, warn};

pub(super) struct Session {
    pub(super) id: u64,
    pub(super) fsm: Fsm,
    pub(super) conn: Option<super::ConnId>,
    pub(super) outgoing: bool,
    pub(super) buf: Vec<u8>,
    pub(super) local: Option<IpAddr>,
    /// A second connection that came while the session was Established: the peer restarted if
    /// it comes up (RFC 4724 §4.2), else it is a connection the peer abandoned.
    pub(super) restart_probe: bool,
}

/// One address family of a peer, as BIRD keeps a channel: what outlives a single UPDATE. The
/// negotiated families have one each; a family the peer sends End-of-RIB for without having
/// negotiated it gets one too, so that marker is never lost.
/// (Stale routes are flagged on the routes themselves, swept by family at End-of-RIB.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FamilyState {
    /// End-of-RIB received: the peer has sent its initial table (RFC 4724 §2).
    pub eor_received: bool,
    /// End-of-RIB sent after our initial table.
    pub eor_sent: bool,
}

pub(super) struct Peer {
    pub(super) cfg: PeerConfig,
    pub(super) role: PeerRole,
    pub(super) main: Session,
    /// The second connection during a collision (RFC 4271 §6.8).
    pub(super) alt: Option<Session>,
    pub(super) adj_in: AdjRibIn,
    pub(super) adj_out: AdjRibOut,
    pub(super) since: Instant,
    pub(super) updates_in: u64,
    pub(super) updates_out: u64,
    /// The families negotiated on the current session; empty while it is down.
    pub(super) families: BTreeMap<Family, FamilyState>,
    /// Why the last Established session ended.
    pub(super) last_down: Option<DownCause>,
    /// Graceful restart: the peer's capability, and its stale routes' timers.
    pub(super) gr: super::gr::PeerGr,
    /// Why the last outgoing connection failed (logged once while it stays the same).
    pub(super) connect_error: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Main,
    Alt,
}

impl Peer {
    /// End-of-RIB received for some family on this session (false while down). Readiness
    /// has always waited for the first one; graceful restart reads the families one by one.
    pub(super) fn eor_received(&self) -> bool {
        self.families.values().any(|f| f.eor_received)
    }

    pub(super) fn eor_sent(&self) -> bool {
        self.families.values().any(|f| f.eor_sent)
    }
}

impl Core {
    pub(super) fn fsm_config(&self, p: &PeerConfig) -> FsmConfig {
        FsmConfig {
            local_as: self.cfg.asn,
            router_id: self.cfg.router_id,
            peer_as: p.asn,
            hold_time: p.hold_time,
            keepalive: p.keepalive,
            connect_retry: p.connect_retry,
            passive: p.passive,
            families: p.families.clone(),
            extended_message: self.cfg.extended_message,
            idle_hold: p.idle_hold,
        }
    }

    pub(super) fn new_session(&mut self, p: &PeerConfig) -> Session {
        Session {
            id: self.id(),
            fsm: Fsm::new(self.fsm_config(p)),
            conn: None,
            outgoing: false,
            buf: Vec::new(),
            local: None,
            restart_probe: false,
        }
    }

    pub(super) fn upsert_peer(&mut self, mut p: PeerConfig) {
        p.address = canonical(p.address);
        let addr = p.address;
        if let Err(e) = p.validate_for(&self.cfg) {
            warn!(peer = %addr, error = %e, "peer configuration rejected");
            return;
        }
        let role = p.role(self.cfg.asn);
        let old_password = self.peers.get(&addr).and_then(|o| o.cfg.password.clone());
        if p.password != old_password {
            // Before any reconnect below, so the new session's connections carry the new key.
            self.out.push(Output::ListenKey {
                peer: addr,
                password: p.password.clone(),
            });
        }
        if let Some(old) = self.peers.get(&addr) {
            let reset = p.needs_reset(&old.cfg);
            let import_changed = p.import != old.cfg.import
                || p.next_hop_owners != old.cfg.next_hop_owners
                || p.max_prefixes != old.cfg.max_prefixes;
            // A new role changes what the peer is sent (reflection), not the session.
            let role_changed = role != old.role;
            let export_changed = p.export != old.cfg.export || role_changed;
            if reset {
                info!(peer = %addr, "peer configuration changed: resetting the session");
                self.event(
                    addr,
                    Slot::Main,
                    Event::AutomaticStop(cease::OTHER_CONFIG_CHANGE),
                );
                self.drop_alt(addr);
                let cfg = self.fsm_config(&p);
                let peer = self.peers.get_mut(&addr).expect("peer exists");
                let asn_changed = peer.cfg.asn != p.asn;
                peer.cfg = p;
                peer.role = role;
                peer.main.fsm.cfg = cfg;
                // Routes kept as stale through the reset (graceful restart) must pass the new
                // import rules; another AS's routes are not this peer's any more.
                if asn_changed {
                    self.flush_routes(addr);
                } else {
                    self.reimport(addr);
                }
                self.event(addr, Slot::Main, Event::ManualStart);
            } else {
                let peer = self.peers.get_mut(&addr).expect("peer exists");
                peer.cfg = p;
                peer.role = role;
                if import_changed {
                    self.reimport(addr);
                }
                if export_changed {
                    self.readvertise_all(addr);
                }
                if role_changed {
                    // Where this peer's routes may go depends on its role too (a client's
                    // are reflected to everyone, a non-client's only to clients).
                    let from_it: Vec<IpNet> = self
                        .rib
                        .prefixes()
                        .filter(|x| {
                            self.rib
                                .best_attrs(x)
                                .is_some_and(|(src, _)| src.peer_addr() == Some(addr))
                        })
                        .copied()
                        .collect();
                    let others: Vec<IpAddr> =
                        self.peers.keys().copied().filter(|o| *o != addr).collect();
                    for other in others {
                        self.advertise(other, &from_it);
                    }
                }
            }
            return;
        }
        info!(peer = %addr, asn = p.asn, role = %role, "peer added");
        let main = self.new_session(&p);
        self.peers.insert(
            addr,
            Peer {
                cfg: p,
                role,
                main,
                alt: None,
                adj_in: AdjRibIn::default(),
                adj_out: AdjRibOut::default(),
                since: self.now,
                updates_in: 0,
                updates_out: 0,
                families: BTreeMap::new(),
                last_down: None,
                gr: Default::default(),
                connect_error: None,
            },
        );
        self.event(addr, Slot::Main, Event::ManualStart);
    }

    pub(super) fn remove_peer(&mut self, addr: IpAddr) {
        if !self.peers.contains_key(&addr) {
            return;
        }
        info!(peer = %addr, "peer removed");
        self.drop_alt(addr);
        self.event(
            addr,
            Slot::Main,
            Event::AutomaticStop(cease::PEER_DECONFIGURED),
        );
        // A peer that is down may still have stale routes (it went away gracefully, then was
        // removed): they go with it.
        let stale = self.flush_routes(addr);
        if stale > 0 {
            info!(peer = %addr, withdrawn = stale, "removed peer's stale routes withdrawn");
        }
        if let Some(p) = self.peers.remove(&addr) {
            if p.cfg.password.is_some() {
                self.out.push(Output::ListenKey {
                    peer: addr,
                    password: None,
                });
            }
            self.out.push(Output::SetTimer {
                peer: addr,
                key: TimerKey::Session {
                    session: p.main.id,
                    timer: Timer::IdleHold,
                },
                after: None,
            });
        }
    }

    pub(super) fn drop_alt(&mut self, addr: IpAddr) {
        if self.peers.get(&addr).is_some_and(|p| p.alt.is_some()) {
            // Stopped, it goes Idle, and `event` frees the slot.
            self.event(
                addr,
                Slot::Alt,
                Event::AutomaticStop(cease::OTHER_CONFIG_CHANGE),
            );
        }
    }

    pub(super) fn established(&mut self, peer: IpAddr, info: &SessionInfo) {
        info!(peer = %peer, remote_id = %info.remote_id, hold = info.hold_time,
            families = ?info.negotiated.families, "session established");
        let p = self.peers.get_mut(&peer).expect("peer exists");
        p.families = info
            .negotiated
            .families
            .iter()
            .map(|f| (*f, FamilyState::default()))
            .collect();
        p.adj_out.routes.clear();
        self.gr_session_up(peer, info);
        self.deferral_session_up();
        if self.deferring {
            // Restarting: the table and End-of-RIB wait until the deferral ends.
            return;
        }
        self.send_initial_table(peer);
    }

    /// The whole Adj-RIB-Out, then End-of-RIB for every family.
    pub(super) fn send_initial_table(&mut self, peer: IpAddr) {
        let prefixes: Vec<IpNet> = self.rib.prefixes().copied().collect();
        self.advertise(peer, &prefixes);
        let p = self.peers.get_mut(&peer).expect("peer exists");
        let Some(conn) = p.main.conn else { return };
        for (f, state) in p.families.iter_mut() {
            self.out.push(Output::Send {
                conn,
                bytes: wire::encode_end_of_rib(*f),
            });
            state.eor_sent = true;
        }
    }

    pub(super) fn down(&mut self, peer: IpAddr, cause: DownCause) {
        let p = self.peers.get_mut(&peer).expect("peer exists");
        p.adj_out.routes.clear();
        p.families.clear();
        p.last_down = Some(cause.clone());
        if self.gr_session_down(peer, &cause) {
            return;
        }
        let n = self.flush_routes(peer);
        info!(peer = %peer, cause = %cause, withdrawn = n, "session down: routes withdrawn");
    }

    /// Every route of the peer out of its Adj-RIB-In and the Loc-RIB, stale ones included, and
    /// graceful restart's timers stopped. Returns how many there were.
    pub(super) fn flush_routes(&mut self, peer: IpAddr) -> usize {
        self.gr_forget(peer);
        let p = self.peers.get_mut(&peer).expect("peer exists");
        let adj_in = std::mem::take(&mut p.adj_in);
        if adj_in.accepted > 0 {
            let changed = self.rib.edit_peer(Some(peer), |_, _| false);
            self.dirty.extend(changed);
        }
        adj_in.received()
    }

    /// The RIB source for a peer's paths. Only the address takes part in equality lookups
    /// (removal), the rest feeds the decision process.
    pub(super) fn source_of(&self, peer: IpAddr) -> Source {
        let p = &self.peers[&peer];
        let info = p.main.fsm.session();
        Source::Peer {
            addr: peer,
            // While down (stale routes re-checked), the identifier of the last session.
            router_id: info.map_or(p.gr.remote_id, |i| i.remote_id),
            ebgp: p.role.is_ebgp(),
            originator_id: None,
        }
    }
}

/// Put the collision session in the main slot, with the peer's own passive setting (it
/// answered only, as every second connection does). Returns the session it replaced.
pub(super) fn promote_alt(p: &mut Peer) -> Option<Session> {
    let mut alt = p.alt.take()?;
    alt.fsm.cfg.passive = p.cfg.passive;
    alt.restart_probe = false;
    Some(std::mem::replace(&mut p.main, alt))
}
