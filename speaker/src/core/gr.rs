//! Graceful restart, both sides (RFC 4724, with RFC 8538's N bit).
//!
//! **Helper.** When the session of a peer that offered the capability ends without a reason to
//! flush (a TCP close; with the N bit, any NOTIFICATION but a Hard Reset, a hold-timer expiry,
//! or our own reset for a configuration change), its routes stay in the Adj-RIB-In and the
//! Loc-RIB, marked stale: the kernel keeps forwarding along them. The peer's restart time
//! bounds the wait for the session; once it is back, the peer's End-of-RIB for a family sweeps
//! the stale routes of that family it did not send again, and the stale-routes time bounds
//! that wait. A family the new OPEN does not list, or lists without the F bit, is swept at once.
//!
//! **Restarting.** A speaker started with `restarting` (the agent found its routes in the
//! kernel) sets R and F in its OPENs and defers its first advertisement to every peer until
//! every configured peer has sent End-of-RIB, or says it is restarting too (R bit), or does not
//! do graceful restart — or until `deferral` after the first session came up. Only then does
//! each peer get the full table and End-of-RIB, so a helper never sweeps a route this speaker
//! had simply not re-learned yet (a reflector's clients' routes).
//!
//! The state lives per peer ([`PeerGr`]) and in the core (`restarting`, `deferring`); its
//! timers are [`PeerTimer`]s and [`TimerKey::Deferral`], so nothing here reads a clock.

use super::peer::Peer;
use super::{Core, Output, PeerTimer, TimerKey};
use crate::fsm::{DownCause, SessionInfo, State};
use crate::notification::Notification;
use crate::wire::{Family, GracefulRestart};
use ipnet::IpNet;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use tracing::info;

/// A peer's graceful-restart state; it outlives the peer's sessions.
#[derive(Clone, Debug)]
pub(super) struct PeerGr {
    /// The peer's capability on its last Established session (None: it offered none, or we
    /// do not do graceful restart).
    pub(super) remote: Option<GracefulRestart>,
    /// Both sides set the N bit on that session (RFC 8538).
    pub(super) notification: bool,
    /// The peer's BGP identifier on that session (its stale paths keep it for the decision).
    pub(super) remote_id: Ipv4Addr,
    /// The peer is restarting: its stale routes go at this time unless the session is back.
    pub(super) restart_deadline: Option<Instant>,
    /// The session is back: stale routes still waiting for End-of-RIB go at this time.
    pub(super) stale_deadline: Option<Instant>,
}

impl Default for PeerGr {
    fn default() -> Self {
        PeerGr {
            remote: None,
            notification: false,
            remote_id: Ipv4Addr::UNSPECIFIED,
            restart_deadline: None,
            stale_deadline: None,
        }
    }
}

/// Graceful restart as `twill status` shows it for one peer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrSnapshot {
    /// Both sides offered the capability on the current (or last) session.
    pub negotiated: bool,
    /// Both sides set the N bit (RFC 8538).
    pub notification: bool,
    /// The peer is restarting: seconds until its stale routes are dropped.
    pub restart_time_left: Option<u64>,
    /// The session is back: seconds until stale routes without End-of-RIB are dropped.
    pub stale_time_left: Option<u64>,
    /// Routes of this peer kept stale right now.
    pub stale_routes: usize,
}

/// Whether a session that ended this way keeps the peer's routes (as stale).
fn keeps_routes(gr: &PeerGr, cause: &DownCause) -> bool {
    if gr.remote.is_none() {
        return false;
    }
    let n = gr.notification;
    match cause {
        DownCause::TcpClosed | DownCause::GracefulStop => true,
        DownCause::HoldExpired => n,
        // RFC 8538 §3: only a Hard Reset flushes; we send one whenever we mean it.
        DownCause::NotificationReceived(x) => n && !x.is_hard_reset(),
        DownCause::NotificationSent(x) => n && !x.calls_for_hard_reset(),
        DownCause::Administrative(sub) => n && !Notification::cease(*sub).calls_for_hard_reset(),
        DownCause::Bfd => false,
    }
}

/// The core-level timers have no peer; they are keyed under this address.
pub(super) const NO_PEER: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl Core {
    /// The capability our OPENs carry (None: graceful restart off).
    pub(super) fn our_gr(&self, families: &[Family]) -> Option<GracefulRestart> {
        let gr = self.cfg.graceful_restart.as_ref()?;
        Some(GracefulRestart {
            restart_state: self.restarting,
            notification: true,
            restart_time: gr.restart_time,
            families: families
                .iter()
                .map(|f| (*f, self.forwarding_kept))
                .collect(),
        })
    }

    /// A session went down: keep its routes as stale if graceful restart applies. Returns
    /// false if the caller must flush them.
    pub(super) fn gr_session_down(&mut self, peer: IpAddr, cause: &DownCause) -> bool {
        let p = &self.peers[&peer];
        if !keeps_routes(&p.gr, cause) {
            self.gr_forget(peer);
            return false;
        }
        let remote = p.gr.remote.clone().expect("checked by keeps_routes");
        let kept: Vec<Family> = remote.families.iter().map(|(f, _)| *f).collect();
        let p = self.peers.get_mut(&peer).expect("peer exists");
        // Refused routes go: they were never forwarded.
        p.adj_in.refused.clear();
        // Accepted ones stay as stale paths, unless their family keeps no forwarding state.
        let mut stale = 0;
        let changed = self.rib.edit_peer(Some(peer), |prefix, path| {
            let keep = kept.contains(&Family::of(prefix));
            path.stale |= keep;
            stale += keep as usize;
            keep
        });
        self.dirty.extend(changed);
        p.adj_in.accepted = stale;
        p.adj_in.stale_accepted = stale;
        let after = Duration::from_secs(remote.restart_time.into());
        info!(peer = %peer, cause = %cause, stale, restart_time = remote.restart_time,
            "session down, peer restarting gracefully: routes kept as stale");
        self.peers
            .get_mut(&peer)
            .expect("peer exists")
            .gr
            .restart_deadline = Some(self.now + after);
        self.set_peer_timer(peer, PeerTimer::Restart, Some(after));
        true
    }

    /// A session came up: note the peer's capability, stop waiting for it, and sweep the
    /// stale routes of every family it no longer keeps forwarding state for.
    pub(super) fn gr_session_up(&mut self, peer: IpAddr, info: &SessionInfo) {
        self.forwarding_kept = true;
        let ours = self.cfg.graceful_restart.is_some();
        let remote = info.remote_caps.graceful_restart.clone().filter(|_| ours);
        let families = info.negotiated.families.clone();
        let p = self.peers.get_mut(&peer).expect("peer exists");
        p.gr.notification = remote.as_ref().is_some_and(|r| r.notification);
        p.gr.remote = remote.clone();
        p.gr.remote_id = info.remote_id;
        if p.gr.restart_deadline.take().is_some() {
            self.set_peer_timer(peer, PeerTimer::Restart, None);
        }
        for f in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            // RFC 4724 §4.2: F bit clear, or the family gone from the capability or the session.
            let forwarding = remote
                .as_ref()
                .is_some_and(|r| r.families.contains(&(f, true)));
            if !forwarding || !families.contains(&f) {
                self.gr_sweep(peer, Some(f), "forwarding state not kept");
            }
        }
        let p = self.peers.get_mut(&peer).expect("peer exists");
        if p.adj_in.stale() > 0 && p.gr.stale_deadline.is_none() {
            let after = self.cfg.graceful_restart.as_ref().map(|g| g.stale_time);
            let after = after.unwrap_or_default();
            p.gr.stale_deadline = Some(self.now + after);
            self.set_peer_timer(peer, PeerTimer::Stale, Some(after));
        }
    }

    /// End-of-RIB for `f`: the peer has re-sent all it has; what is still stale goes.
    pub(super) fn gr_end_of_rib(&mut self, peer: IpAddr, f: Family) {
        self.gr_sweep(peer, Some(f), "not re-sent before End-of-RIB");
    }

    pub(super) fn gr_timer(&mut self, peer: IpAddr, t: PeerTimer) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        match t {
            PeerTimer::Restart => {
                // Fired for a session that came back meanwhile: nothing to do.
                if p.gr.restart_deadline.take().is_none() {
                    return;
                }
                self.gr_sweep(peer, None, "restart time ran out");
            }
            PeerTimer::Stale => {
                if p.gr.stale_deadline.take().is_none() {
                    return;
                }
                self.gr_sweep(peer, None, "stale-routes time ran out");
            }
        }
    }

    /// Drop the peer's stale routes (of one family, or all), and stop the timers once none
    /// is left.
    fn gr_sweep(&mut self, peer: IpAddr, family: Option<Family>, why: &'static str) {
        let p = self.peers.get_mut(&peer).expect("peer exists");
        let goes =
            |prefix: &IpNet, stale: bool| stale && family.is_none_or(|f| Family::of(prefix) == f);
        let before = p.adj_in.refused.len();
        p.adj_in.refused.retain(|prefix, r| !goes(prefix, r.stale));
        let mut swept = before - p.adj_in.refused.len();
        // The walk over the Loc-RIB only when there is something stale in it: this runs at
        // every End-of-RIB.
        if p.adj_in.stale_accepted > 0 {
            let mut gone = 0;
            let changed = self.rib.edit_peer(Some(peer), |prefix, path| {
                let go = goes(prefix, path.stale);
                gone += go as usize;
                !go
            });
            self.dirty.extend(changed);
            p.adj_in.accepted -= gone;
            p.adj_in.stale_accepted -= gone;
            swept += gone;
        }
        if swept > 0 {
            info!(peer = %peer, family = ?family, swept, reason = why, "stale routes removed");
        }
        if p.adj_in.stale() == 0 {
            self.gr_stop_timers(peer);
        }
    }

    /// The peer's routes are flushed (not graceful, or the peer removed): no timer left.
    pub(super) fn gr_forget(&mut self, peer: IpAddr) {
        self.gr_stop_timers(peer);
    }

    fn gr_stop_timers(&mut self, peer: IpAddr) {
        let p = self.peers.get_mut(&peer).expect("peer exists");
        if p.gr.restart_deadline.take().is_some() {
            self.set_peer_timer(peer, PeerTimer::Restart, None);
        }
        let p = self.peers.get_mut(&peer).expect("peer exists");
        if p.gr.stale_deadline.take().is_some() {
            self.set_peer_timer(peer, PeerTimer::Stale, None);
        }
    }

    fn set_peer_timer(&mut self, peer: IpAddr, t: PeerTimer, after: Option<Duration>) {
        self.out.push(Output::SetTimer {
            peer,
            key: TimerKey::Peer(t),
            after,
        });
    }

    pub(super) fn gr_snapshot(&self, p: &Peer, now: Instant) -> GrSnapshot {
        let left = |d: Option<Instant>| d.map(|d| d.saturating_duration_since(now).as_secs());
        GrSnapshot {
            negotiated: p.gr.remote.is_some(),
            notification: p.gr.notification,
            restart_time_left: left(p.gr.restart_deadline),
            stale_time_left: left(p.gr.stale_deadline),
            stale_routes: p.adj_in.stale(),
        }
    }

    // --- The restarting side ---

    /// Whether a peer's first advertisement waits for the deferral to end.
    pub(super) fn deferred(&self, p: &Peer) -> bool {
        self.deferring && !p.eor_sent()
    }

    /// Whether the restarting speaker still defers (for tests and `check_invariants`).
    pub fn deferring(&self) -> bool {
        self.deferring
    }

    /// A session came up while deferring: start the deferral timer with the first one.
    pub(super) fn deferral_session_up(&mut self) {
        if self.deferring && !self.deferral_armed {
            self.deferral_armed = true;
            let after = self.cfg.graceful_restart.as_ref().map(|g| g.deferral);
            self.out.push(Output::SetTimer {
                peer: NO_PEER,
                key: TimerKey::Deferral,
                after: Some(after.unwrap_or_default()),
            });
        }
    }

    /// After each input: end the deferral once no configured peer is worth waiting for.
    pub(super) fn check_deferral(&mut self) {
        // Not before a first session is up: with no peer configured yet (the agent adds them
        // right after start) every peer would look done.
        if !self.deferring || !self.deferral_armed {
            return;
        }
        let waiting = self.peers.values().any(|p| {
            if p.main.fsm.state() != State::Established {
                return true;
            }
            let Some(r) = &p.gr.remote else {
                // RFC 4724 §4.1: a peer without the capability is not waited for.
                return false;
            };
            // Restarting too: it waits for us, we do not wait for it (no deadlock).
            !r.restart_state && !p.families.values().all(|f| f.eor_received)
        });
        if !waiting {
            self.end_deferral("every peer sent End-of-RIB");
        }
    }

    /// Stop deferring: every Established peer gets the full table and End-of-RIB now.
    pub(super) fn end_deferral(&mut self, why: &'static str) {
        if !self.deferring {
            return;
        }
        self.deferring = false;
        self.restarting = false;
        if self.deferral_armed {
            self.out.push(Output::SetTimer {
                peer: NO_PEER,
                key: TimerKey::Deferral,
                after: None,
            });
        }
        info!(
            reason = why,
            routes = self.rib.len(),
            "restart: route selection deferral over, advertising"
        );
        let up: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.main.fsm.state() == State::Established)
            .map(|(a, _)| *a)
            .collect();
        for peer in up {
            self.send_initial_table(peer);
        }
    }
}
