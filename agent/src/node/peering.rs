//! The node's BGP peers as the cluster view derives them, changed make-before-break.
//!
//! A cluster peer the view no longer wants (a reflector replaced by another, mesh sessions
//! giving way to reflectors, a reflector node that stopped being one and its old clients) is not
//! removed at once: it stays configured, *retiring*, until no route in the speaker's Loc-RIB
//! comes from retiring peers alone. Only then do the retiring peers go. A client therefore
//! keeps its old reflector until the new one has passed it every route, and no route is
//! withdrawn on a client while a reflector is replaced or the mesh gives way to reflectors.
//! On the way back to the mesh the reflector sessions become mesh sessions, so nothing
//! retires: instead such a session keeps its reflection role (*narrowing*) until this node's
//! new mesh sessions have all exchanged their routes, so a client keeps the reflected routes
//! until their owners send them directly. A former reflector, which cannot see its clients'
//! new sessions, goes on reflecting for them for [`reflector_grace`] (three hold times, at
//! least [`NARROW_GRACE`]); a client already on the mesh refuses what it still reflects. A node that stops being a reflector keeps
//! reflecting, in a cluster of its own, for as long as it still serves retiring clients; a node
//! that starts reflecting uses a cluster of its own until its clients have connected.
//!
//! External peers (ToRs, reflectors outside the cluster) go at once: an operator removed them.
//! So does the peer of a Node that was deleted: it is no member of the cluster any more.

use super::readiness::first_exchange_done;
use crate::peers::{owners, peer_config, peers_for, retiring, router_id, DerivedPeer, PeerKind};
use crate::state::NodeState;
use cluster::{ClusterView, Node};
use speaker::{Password, Speaker};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// How long retiring peers may wait for their routes to be covered. Past it they go anyway:
/// a replacement that never comes up must not pin the old sessions for ever.
pub const RETIRE_LIMIT: Duration = Duration::from_secs(300);

/// The least time a former reflector goes on reflecting for its former clients once the view
/// says mesh ([`reflector_grace`]).
pub const NARROW_GRACE: Duration = Duration::from_secs(15);

/// How long a former reflector goes on reflecting for its former clients: three hold times,
/// at least [`NARROW_GRACE`]: 27 s with the lab's 9 s hold time, 270 s with the default 90 s.
/// It cannot see its clients' new mesh sessions come up; this is their time to get the view
/// and connect (each client holds on to the reflected routes until its own mesh has
/// exchanged, which it can see). Reflecting longer costs little: a client already on the mesh
/// refuses the reflected routes.
pub fn reflector_grace(view: &ClusterView) -> Duration {
    NARROW_GRACE.max(Duration::from_secs(3 * u64::from(view.timers.hold)))
}

/// How many consecutive checks (one per main-loop tick, 500 ms) must find nothing depending on
/// the retiring peers alone. More than one, so an UPDATE the new peer is still sending to
/// another node (the other end of the same handover) has time to land.
const CLEAR_CHECKS: u32 = 2;

#[derive(Default)]
pub struct Peering {
    /// The peers the view wants.
    pub current: BTreeMap<IpAddr, DerivedPeer>,
    /// Peers the view no longer wants, kept until nothing depends on them alone.
    pub retiring: BTreeMap<IpAddr, DerivedPeer>,
    /// When each retiring peer began retiring (each has its own limit).
    since: BTreeMap<IpAddr, Instant>,
    clear: u32,
    /// The cluster ID this node reflects with while its role changes: its router ID, while
    /// it serves retiring clients although the view says it is no longer a reflector, or
    /// while a new reflector's clients connect ([`cluster_ids`]).
    serving: Option<Ipv4Addr>,
    /// A new reflector: since when, and consecutive checks with every client connected.
    becoming: Option<Instant>,
    becoming_clear: u32,
    /// Sessions going from reflection (reflector or client) to mesh, as they were: the speaker
    /// runs them so until [`Peering::narrow`] lets them go.
    narrowing: BTreeMap<IpAddr, DerivedPeer>,
    /// Since when, and consecutive checks with every new mesh session exchanged.
    narrowing_since: Option<Instant>,
    narrowing_clear: u32,
}

impl Peering {
    /// Every configured peer, retiring ones included (for status).
    pub fn all(&self) -> BTreeMap<IpAddr, DerivedPeer> {
        let mut all = self.retiring.clone();
        all.extend(self.current.iter().map(|(a, p)| (*a, p.clone())));
        // What the speaker runs: a narrowing session still in its reflection role.
        all.extend(self.narrowing.iter().map(|(a, p)| (*a, p.clone())));
        all
    }

    /// Show the peers in `twill status`: what the view wants and what is retiring.
    pub fn publish(&self, state: &NodeState) {
        *state.peers.lock().expect("peers") = self.all();
        *state.retiring.lock().expect("retiring") = self.retiring.keys().copied().collect();
        *state.narrowing.lock().expect("narrowing") = self.narrowing.keys().copied().collect();
    }

    /// Make the speaker's peers those the view derives for `me`, retiring cluster peers that
    /// are no longer wanted. `was` is this node as the previous view had it (None at start).
    pub fn apply(&mut self, speaker: &Speaker, view: &ClusterView, me: &Node, was: Option<&Node>) {
        let want: BTreeMap<IpAddr, DerivedPeer> = peers_for(view, me)
            .into_iter()
            .filter_map(with_password)
            .map(|p| (p.address, p))
            .collect();
        // The cluster ID the speaker runs with (at start: this node's own).
        let running = self
            .serving
            .or(was.map_or(me.route_reflector_cluster_id, |w| {
                w.route_reflector_cluster_id
            }));
        let owners = owners(view);
        let mut configured = std::mem::take(&mut self.current);
        let already: Vec<IpAddr> = self.retiring.keys().copied().collect();
        configured.append(&mut self.retiring);
        for (addr, old) in configured.iter() {
            if want.contains_key(addr) {
                continue;
            }
            // An operator removed an external peer; a deleted Node is no member any more and
            // its routes are not to be kept for it. A narrowing session retires in the role
            // the speaker runs it with, its reflection role.
            let old = self.narrowing.get(addr).unwrap_or(old);
            let node = view.node_by_address(*addr);
            let Some(node) = node.filter(|_| old.kind != PeerKind::External) else {
                info!(peer = %addr, kind = old.kind.as_str(), "peer removed from the cluster view");
                let _ = speaker.remove_peer(*addr);
                continue;
            };
            if !already.contains(addr) {
                info!(peer = %addr, kind = old.kind.as_str(),
                    "peer no longer in the cluster view: retiring it once its routes come from another peer too");
            }
            self.retiring
                .insert(*addr, retiring(view, me, old, node, &owners));
        }
        // A session that was a reflection one and is wanted as a mesh one keeps its old role
        // for now; one wanted in a reflection role again stops narrowing.
        let reflection = |k: PeerKind| matches!(k, PeerKind::Reflector | PeerKind::ReflectorClient);
        for (addr, p) in &want {
            let old = self.narrowing.get(addr).or(configured.get(addr)).cloned();
            match (old, view.node_by_address(*addr)) {
                (Some(old), Some(node)) if reflection(old.kind) && p.kind == PeerKind::Mesh => {
                    if !self.narrowing.contains_key(addr) {
                        info!(peer = %addr, was = old.kind.as_str(),
                            "session becomes a mesh session: keeping its reflection role until the mesh has exchanged");
                    }
                    // Its role stays; what it may announce follows this view.
                    self.narrowing
                        .insert(*addr, retiring(view, me, &old, node, &owners));
                }
                _ => {
                    self.narrowing.remove(addr);
                }
            }
        }
        self.narrowing.retain(|a, _| want.contains_key(a));
        if self.narrowing.is_empty() {
            self.narrowing_since = None;
        } else {
            self.narrowing_since.get_or_insert_with(Instant::now);
        }
        self.narrowing_clear = 0;
        let serves_clients = self.hands_over_clients();
        let effective;
        (self.serving, effective) = cluster_ids(
            me.route_reflector_cluster_id,
            running,
            self.serving,
            serves_clients,
            router_id(me),
        );
        self.becoming = match (self.serving, me.route_reflector_cluster_id) {
            (Some(_), Some(_)) => self.becoming.or(Some(Instant::now())),
            _ => None,
        };
        self.becoming_clear = 0;
        if effective != running {
            // Before the peers' roles change, so a new reflector's clients get reflected
            // routes as soon as they are its clients.
            info!(cluster_id = ?effective, handing_over = self.serving.is_some(),
                "this node's route reflector cluster ID changed");
            let _ = speaker.set_cluster_id(effective);
        }
        let config_me = self.config_node(me);
        for (addr, p) in want.iter().chain(self.retiring.iter()) {
            let p = self.narrowing.get(addr).unwrap_or(p);
            let cfg = peer_config(view, &config_me, p);
            let r = match configured.get(addr) {
                None => {
                    info!(peer = %addr, kind = p.kind.as_str(), asn = p.as_number,
                        md5 = p.password.is_some(), "peer added");
                    speaker.add_peer(cfg)
                }
                // The speaker changes only what differs (and resets a session only when that
                // needs it); what a peer is sent also follows this node's own role.
                Some(_) => speaker.update_peer(cfg),
            };
            if let Err(e) = r {
                error!(peer = %addr, error = %e, "peer rejected");
            }
        }
        self.current = want;
        self.clear = 0;
        let now = Instant::now();
        self.since.retain(|a, _| self.retiring.contains_key(a));
        for a in self.retiring.keys() {
            self.since.entry(*a).or_insert(now);
        }
    }

    /// One check of a handover in progress: the retiring peers go once the speaker has had no
    /// route from them alone at [`CLEAR_CHECKS`] checks in a row; one that has retired for
    /// [`RETIRE_LIMIT`] goes anyway. True when any went (the caller refreshes what status
    /// shows).
    pub async fn check(&mut self, speaker: &Speaker, view: &ClusterView, me: &Node) -> bool {
        self.settle(speaker, view, me).await;
        let narrowed = self.narrow(speaker, view, me).await;
        if self.retiring.is_empty() {
            return narrowed;
        }
        let addrs: Vec<IpAddr> = self.retiring.keys().copied().collect();
        let Ok(alone) = speaker.only_from(addrs.clone()).await else {
            return narrowed;
        };
        self.clear = if alone == 0 { self.clear + 1 } else { 0 };
        let covered = self.clear >= CLEAR_CHECKS;
        let going: Vec<IpAddr> = addrs
            .into_iter()
            .filter(|a| {
                covered
                    || self
                        .since
                        .get(a)
                        .is_some_and(|t| t.elapsed() >= RETIRE_LIMIT)
            })
            .collect();
        if going.is_empty() {
            return narrowed;
        }
        if !covered {
            warn!(peers = ?going, routes = alone, limit = ?RETIRE_LIMIT,
                "retiring peers still provide routes no other peer does; removing them anyway");
        }
        for addr in &going {
            let waited = self.since.remove(addr).map(|t| t.elapsed());
            info!(peer = %addr, ?waited, "retired peer removed");
            let _ = speaker.remove_peer(*addr);
            self.retiring.remove(addr);
        }
        self.end_serving(speaker, view, me);
        true
    }

    /// A node that stopped reflecting and has no client left to hand over (retiring or
    /// narrowing) takes the view's role: no cluster ID.
    fn end_serving(&mut self, speaker: &Speaker, view: &ClusterView, me: &Node) {
        if !self.hands_over_clients()
            && me.route_reflector_cluster_id.is_none()
            && self.serving.take().is_some()
        {
            self.role_changed(speaker, view, me, "clients handed over");
        }
    }

    /// Sessions going from reflection to mesh take their mesh role once every other cluster
    /// session the view wants has exchanged its routes ([`CLEAR_CHECKS`] checks in a row)
    /// and, on a former reflector, [`reflector_grace`] has passed; [`RETIRE_LIMIT`] at most.
    /// True when they did.
    async fn narrow(&mut self, speaker: &Speaker, view: &ClusterView, me: &Node) -> bool {
        let Some(since) = self.narrowing_since else {
            return false;
        };
        let Ok(snap) = speaker.snapshot().await else {
            return false;
        };
        // The cluster's sessions only: a ToR that is down must not hold the mesh back.
        let exchanged = self
            .current
            .values()
            .filter(|p| p.kind != PeerKind::External && !self.narrowing.contains_key(&p.address))
            .all(|p| first_exchange_done(&snap, p.address));
        self.narrowing_clear = if exchanged {
            self.narrowing_clear + 1
        } else {
            0
        };
        let serves_clients = self
            .narrowing
            .values()
            .any(|p| p.kind == PeerKind::ReflectorClient);
        let grace = if serves_clients {
            reflector_grace(view)
        } else {
            Duration::ZERO
        };
        let done = self.narrowing_clear >= CLEAR_CHECKS && since.elapsed() >= grace;
        if !done && since.elapsed() < RETIRE_LIMIT {
            return false;
        }
        if !done {
            warn!(limit = ?RETIRE_LIMIT, "the new mesh sessions have not all exchanged; ending the reflection roles anyway");
        }
        let narrowing = std::mem::take(&mut self.narrowing);
        self.narrowing_since = None;
        info!(peers = narrowing.len(), waited = ?since.elapsed(), "sessions now mesh sessions");
        let config_me = self.config_node(me);
        for addr in narrowing.keys() {
            if let Some(p) = self.current.get(addr) {
                let _ = speaker.update_peer(peer_config(view, &config_me, p));
            }
        }
        self.end_serving(speaker, view, me);
        true
    }

    /// A new reflector runs with its router ID as cluster ID until every client of it is
    /// Established with End-of-RIB ([`CLEAR_CHECKS`] checks in a row; [`RETIRE_LIMIT`] at
    /// most), then takes the shared ID. Under the shared ID at once it would refuse, as a
    /// loop, what the old reflector passes it, before its clients have connected to it.
    async fn settle(&mut self, speaker: &Speaker, view: &ClusterView, me: &Node) {
        let (Some(since), Some(_)) = (self.becoming, me.route_reflector_cluster_id) else {
            return;
        };
        let Ok(snap) = speaker.snapshot().await else {
            return;
        };
        let connected = self
            .current
            .values()
            .filter(|p| p.kind == PeerKind::ReflectorClient)
            .all(|p| first_exchange_done(&snap, p.address));
        self.becoming_clear = if connected {
            self.becoming_clear + 1
        } else {
            0
        };
        if self.becoming_clear < CLEAR_CHECKS && since.elapsed() < RETIRE_LIMIT {
            return;
        }
        self.becoming = None;
        self.serving = None;
        self.role_changed(speaker, view, me, "clients connected");
    }

    /// The role change is over: the view's cluster ID, and what every peer is sent follows it.
    fn role_changed(&self, speaker: &Speaker, view: &ClusterView, me: &Node, why: &str) {
        info!(cluster_id = ?me.route_reflector_cluster_id, why,
            "this node's route reflector cluster ID changed");
        let _ = speaker.set_cluster_id(me.route_reflector_cluster_id);
        for (addr, p) in &self.current {
            let p = self.narrowing.get(addr).unwrap_or(p);
            let _ = speaker.update_peer(peer_config(view, me, p));
        }
    }

    /// Whether reflector clients are still being handed over (retiring, or narrowing to mesh):
    /// a node that stopped reflecting goes on reflecting for them meanwhile.
    fn hands_over_clients(&self) -> bool {
        self.retiring
            .values()
            .chain(self.narrowing.values())
            .any(|p| p.kind == PeerKind::ReflectorClient)
    }

    /// `me` with the cluster ID the speaker actually runs with.
    fn config_node(&self, me: &Node) -> Node {
        let mut n = me.clone();
        if self.serving.is_some() {
            n.route_reflector_cluster_id = self.serving;
        }
        n
    }
}

/// The cluster ID to keep while this node's role changes (`serving`) and the one to run
/// with, from this node's own (`me`, as the view says), the one the speaker runs with, the one
/// kept so far, and whether retiring reflector clients remain.
///
/// - A node that stops reflecting goes on reflecting while it still has clients to hand over
///   (its peers are configured as from a reflector meanwhile), in a cluster of its own, its
///   router ID: under the shared cluster ID it would refuse, as a loop, every route the new
///   reflector passes it, and be left with none once its clients go.
/// - A node that starts reflecting does so under its router ID too, until its clients have
///   connected ([`Peering::check`]), for the same reason seen from the other side.
fn cluster_ids(
    me: Option<Ipv4Addr>,
    running: Option<Ipv4Addr>,
    serving: Option<Ipv4Addr>,
    serves_clients: bool,
    router_id: Ipv4Addr,
) -> (Option<Ipv4Addr>, Option<Ipv4Addr>) {
    let serving = match (me, running) {
        (None, Some(_)) if serves_clients => Some(serving.unwrap_or(router_id)),
        (Some(_), None) => Some(router_id),
        // Already changing role (under the router ID): until `check` says it is over.
        (Some(_), Some(r)) if serving == Some(r) => serving,
        _ => None,
    };
    (serving, serving.or(me))
}

/// The peer with its TCP MD5 key read from its password file, read afresh on every reload so a
/// rotated key reaches the speaker (which reconnects with it). A peer whose file cannot be read
/// is left out rather than tried without the key it is configured with.
fn with_password(mut p: DerivedPeer) -> Option<DerivedPeer> {
    let Some(path) = &p.password_file else {
        return Some(p);
    };
    match std::fs::read(path) {
        Ok(mut key) => {
            // `echo secret > file` and `kubectl create secret --from-file` leave a newline that
            // is not part of the key.
            if key.ends_with(b"\n") {
                key.pop();
                if key.ends_with(b"\r") {
                    key.pop();
                }
            }
            let key = Password::new(key);
            if !key.len_ok() {
                error!(peer = %p.address, file = %path.display(), bytes = key.as_bytes().len(),
                    "the password must be 1-80 bytes (TCP MD5); not peering");
                return None;
            }
            p.password = Some(key);
            Some(p)
        }
        Err(e) => {
            error!(peer = %p.address, file = %path.display(), error = %e,
                "cannot read the password file; not peering");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_ids;
    use std::net::Ipv4Addr;

    #[test]
    fn a_changing_role_runs_under_the_router_id_and_a_steady_one_under_the_view_s() {
        let shared = Some(Ipv4Addr::new(10, 255, 255, 1));
        let rid = Ipv4Addr::new(10, 1, 0, 11);
        // Stops reflecting with clients to hand over: its router ID, kept for the handover.
        assert_eq!(
            cluster_ids(None, shared, None, true, rid),
            (Some(rid), Some(rid))
        );
        // Still handing over at the next view: the same.
        assert_eq!(
            cluster_ids(None, Some(rid), Some(rid), true, rid),
            (Some(rid), Some(rid))
        );
        // No clients to hand over: it stops at once.
        assert_eq!(cluster_ids(None, shared, None, false, rid), (None, None));
        // Chosen again halfway: still its router ID, until its clients are connected.
        assert_eq!(
            cluster_ids(shared, Some(rid), Some(rid), true, rid),
            (Some(rid), Some(rid))
        );
        // Becoming a reflector: its router ID first.
        assert_eq!(
            cluster_ids(shared, None, None, false, rid),
            (Some(rid), Some(rid))
        );
        // Staying one, or the ID changed by hand: the view's ID.
        assert_eq!(
            cluster_ids(shared, shared, None, false, rid),
            (None, shared)
        );
        let other = Some(Ipv4Addr::new(10, 255, 0, 9));
        assert_eq!(cluster_ids(other, shared, None, false, rid), (None, other));
        // Never one.
        assert_eq!(cluster_ids(None, None, None, true, rid), (None, None));
    }
}
