//! The core's invariants, checked on demand by tests and fuzz targets (never on the hot path:
//! a check costs a walk over every RIB). Each broken one comes back as a sentence naming the
//! peer and prefix, so a fuzzer's crash report says what went wrong, not just where.

use super::inbound::rejection;
use super::peer::Peer;
use super::Core;
use crate::fsm::State;
use crate::policy::ExportFilter;
use crate::rib::{decision, Source};
use crate::wire::Family;
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

impl Core {
    /// Every invariant that does not hold now (empty when all do):
    /// - the Loc-RIB holds the originated prefixes and, from peers, only routes the receipt
    ///   checks accept now (AS loop, ORIGINATOR_ID, next-hop family, import filter), whatever
    ///   changed since they arrived; a refused route is refused for the reason they give now,
    ///   and not in the Loc-RIB; each peer's counts match what is held;
    /// - a peer whose session is down has only stale routes;
    /// - each prefix's best path is what the decision process picks;
    /// - each Established peer's Adj-RIB-Out is exactly what `export` gives for the current
    ///   best routes (so a withdrawn route is gone everywhere), and a peer that is not
    ///   Established has advertised nothing;
    /// - and, checked apart from `export` so that a wrong rule there shows: nothing goes back
    ///   to the peer it came from, nor in a family not negotiated, nor with a next hop of the
    ///   other family; an `Originated` filter lets only local routes out; iBGP-learned routes
    ///   do not go to iBGP peers; eBGP peers see our AS first and no LOCAL_PREF, ORIGINATOR_ID
    ///   or CLUSTER_LIST; iBGP peers always get a LOCAL_PREF.
    pub fn check_invariants(&self) -> Vec<String> {
        let mut bad = Vec::new();
        self.check_deferral_state(&mut bad);
        for (addr, p) in &self.peers {
            self.check_adj_in(*addr, p, &mut bad);
            self.check_adj_out(*addr, p, &mut bad);
            check_sessions(*addr, p, &mut bad);
        }
        for (prefix, paths, best) in self.rib.iter_paths() {
            if paths.is_empty() {
                bad.push(format!("{prefix}: Loc-RIB entry without paths"));
                continue;
            }
            let (want, _) = decision::select(paths);
            if want != best {
                bad.push(format!(
                    "{prefix}: best path is #{best}, the decision process picks #{want}"
                ));
            }
            for path in paths {
                match &path.source {
                    Source::Local if !self.originated.contains(prefix) => {
                        bad.push(format!("{prefix}: local path but not originated"))
                    }
                    Source::Local => {}
                    Source::Peer { addr, .. } => match self.peers.get(addr) {
                        None => bad.push(format!(
                            "{prefix}: Loc-RIB path from {addr}, which is not a peer"
                        )),
                        Some(p) => {
                            let want = rejection(&self.cfg, &p.cfg, p.role, prefix, &path.attrs);
                            if want.is_some() {
                                bad.push(format!(
                                    "{prefix}: Loc-RIB path from {addr} that the receipt checks refuse ({want:?})"
                                ));
                            }
                            if p.adj_in.refused.contains_key(prefix) {
                                bad.push(format!(
                                    "{prefix}: from {addr} both in the Loc-RIB and refused"
                                ));
                            }
                        }
                    },
                }
            }
        }
        for prefix in &self.originated {
            let local = self
                .rib
                .paths(prefix)
                .iter()
                .any(|x| matches!(x.source, Source::Local));
            if !local {
                bad.push(format!("{prefix}: originated but not in the Loc-RIB"));
            }
        }
        bad
    }

    /// Graceful restart's restarting side: the R bit only while deferring; a deferral with a
    /// session up has its timer running (so it ends); once over, every Established peer has had
    /// its table and End-of-RIB for each family.
    fn check_deferral_state(&self, bad: &mut Vec<String>) {
        if self.restarting && !self.deferring {
            bad.push("R bit still set after the deferral ended".into());
        }
        for (addr, p) in &self.peers {
            if p.main.fsm.state() != State::Established {
                continue;
            }
            if self.deferring && !self.deferral_armed {
                bad.push(format!(
                    "deferring with {addr} Established and no deferral timer"
                ));
            }
            let negotiated = p
                .main
                .fsm
                .session()
                .map(|i| i.negotiated.families.clone())
                .unwrap_or_default();
            let sent = |f: &Family| p.families.get(f).is_some_and(|s| s.eor_sent);
            if !self.deferring && !negotiated.iter().all(sent) {
                bad.push(format!(
                    "peer {addr}: Established, not deferring, End-of-RIB not sent for every negotiated family: {:?}",
                    p.families
                ));
            }
        }
    }

    fn check_adj_in(&self, addr: IpAddr, p: &Peer, bad: &mut Vec<String>) {
        let (mut accepted, mut stale_accepted) = (0, 0);
        for (_, path) in self.rib.paths_of(addr) {
            accepted += 1;
            stale_accepted += path.stale as usize;
        }
        if (accepted, stale_accepted) != (p.adj_in.accepted, p.adj_in.stale_accepted) {
            bad.push(format!(
                "peer {addr}: {} accepted ({} stale) counted, {accepted} ({stale_accepted}) in the Loc-RIB",
                p.adj_in.accepted, p.adj_in.stale_accepted
            ));
        }
        let stale = p.adj_in.stale();
        let fresh = p.adj_in.received() - stale;
        if p.main.fsm.state() != State::Established && fresh > 0 {
            bad.push(format!(
                "peer {addr}: {fresh} routes kept while {}, not stale",
                p.main.fsm.state()
            ));
        }
        // Graceful restart: stale routes only from a peer that offered it, and always with a
        // timer that ends them (the restart time while down, the stale-routes time once up).
        if stale > 0 && p.gr.remote.is_none() {
            bad.push(format!(
                "peer {addr}: {stale} stale routes from a peer without graceful restart"
            ));
        }
        // While down, the restart time runs; once back, the stale-routes time (and no restart
        // time any more).
        let bound = match p.main.fsm.state() {
            State::Established => p.gr.restart_deadline.is_none() && p.gr.stale_deadline.is_some(),
            _ => p.gr.restart_deadline.is_some(),
        };
        if stale > 0 && !bound {
            bad.push(format!(
                "peer {addr}: {stale} stale routes while {} with restart deadline {:?}, stale deadline {:?}",
                p.main.fsm.state(),
                p.gr.restart_deadline,
                p.gr.stale_deadline
            ));
        }
        for (prefix, r) in &p.adj_in.refused {
            let want = rejection(&self.cfg, &p.cfg, p.role, prefix, &r.attrs);
            if want != Some(r.reason) {
                bad.push(format!(
                    "{prefix}: from {addr} refused as {:?}, the receipt checks say {want:?}",
                    r.reason
                ));
            }
        }
    }

    fn check_adj_out(&self, addr: IpAddr, p: &Peer, bad: &mut Vec<String>) {
        if p.main.fsm.state() != State::Established || self.deferred(p) {
            if !p.adj_out.routes.is_empty() {
                bad.push(format!(
                    "peer {addr}: {} routes advertised while {} (deferring: {})",
                    p.adj_out.routes.len(),
                    p.main.fsm.state(),
                    self.deferred(p)
                ));
            }
            return;
        }
        let prefixes: BTreeSet<IpNet> = self
            .rib
            .prefixes()
            .chain(p.adj_out.routes.keys())
            .copied()
            .collect();
        // `export` depends on the source's attributes, the family and the source peer only
        // (as in `advertise`): compute each combination once.
        type Key = (*const crate::wire::PathAttrs, Family, Option<IpAddr>);
        let mut memo: HashMap<Key, Option<crate::wire::PathAttrs>> = HashMap::new();
        for prefix in prefixes {
            let best = self.rib.best_attrs(&prefix);
            let want = best.and_then(|(source, attrs)| {
                let key = (Arc::as_ptr(attrs), Family::of(&prefix), source.peer_addr());
                memo.entry(key)
                    .or_insert_with(|| self.export(p, &prefix, source, attrs))
                    .clone()
            });
            let have = p.adj_out.routes.get(&prefix).map(|a| &**a);
            if want.as_ref() != have {
                bad.push(format!(
                    "{prefix}: advertised to {addr} as {have:?}, the export rules give {want:?}"
                ));
            }
            if let (Some(a), Some((source, _))) = (have, best) {
                for rule in self.broken_export_rules(p, &prefix, source, a) {
                    bad.push(format!("{prefix}: advertised to {addr}: {rule}"));
                }
            }
        }
    }

    /// The advertisement rules, each stated on its own (not by calling `export`).
    fn broken_export_rules(
        &self,
        p: &Peer,
        prefix: &IpNet,
        source: &Source,
        sent: &crate::wire::PathAttrs,
    ) -> Vec<&'static str> {
        let mut broken = Vec::new();
        let negotiated = p
            .main
            .fsm
            .session()
            .is_some_and(|i| i.negotiated.families.contains(&Family::of(prefix)));
        if !negotiated {
            broken.push("a family the session did not negotiate");
        }
        if source.peer_addr() == Some(p.cfg.address) {
            broken.push("sent back to the peer it came from");
        }
        if prefix.addr().is_ipv4() != sent.next_hop.is_ipv4() {
            broken.push("a next hop of the other family");
        }
        if !crate::wire::unicast_prefix(prefix) {
            broken.push("a prefix unicast NLRI cannot carry");
        }
        if p.cfg.export == ExportFilter::Originated && !matches!(source, Source::Local) {
            broken.push("a learned route through an Originated filter");
        }
        if p.cfg.export == ExportFilter::OriginatedAndReflected
            && matches!(source, Source::Peer { ebgp: true, .. })
        {
            broken.push("an eBGP-learned route through an OriginatedAndReflected filter");
        }
        let from = self.source_role(source);
        let reflecting = self.cfg.cluster_id.is_some();
        if p.role.is_ebgp() {
            if sent.as_path.neighbour_as() != Some(self.cfg.asn) {
                broken.push("to eBGP without our AS first");
            }
            if sent.local_pref.is_some() || sent.originator_id.is_some() {
                broken.push("to eBGP with LOCAL_PREF or ORIGINATOR_ID");
            }
            if !sent.cluster_list.is_empty() {
                broken.push("to eBGP with a CLUSTER_LIST");
            }
        } else {
            let from_ibgp = matches!(source, Source::Peer { ebgp: false, .. });
            let from_client = from == Some(crate::config::PeerRole::ReflectorClient);
            let to_client = p.role == crate::config::PeerRole::ReflectorClient;
            if from_ibgp && !(reflecting && (from_client || to_client)) {
                broken.push("iBGP-learned to an iBGP peer, not reflected (RFC 4456 §6)");
            }
            if from_ibgp && reflecting {
                let cluster = self.cfg.cluster_id;
                if sent.cluster_list.first() != cluster.as_ref() || sent.originator_id.is_none() {
                    broken.push("reflected without our cluster ID first and an ORIGINATOR_ID");
                }
            }
            if sent.local_pref.is_none() {
                broken.push("to iBGP without LOCAL_PREF");
            }
        }
        broken
    }
}

/// The second session slot: a session in it is always under way (one that goes Idle is
/// removed), and only there is a connection a possible restart (`restart_probe`), taken only
/// from a graceful-restart peer.
fn check_sessions(addr: std::net::IpAddr, p: &super::peer::Peer, bad: &mut Vec<String>) {
    if p.main.restart_probe {
        bad.push(format!(
            "{addr}: the main session is marked as a restart probe"
        ));
    }
    if let Some(alt) = &p.alt {
        if alt.fsm.state() == crate::fsm::State::Idle {
            bad.push(format!("{addr}: an Idle session left in the second slot"));
        }
        if alt.restart_probe && p.gr.remote.is_none() {
            bad.push(format!(
                "{addr}: a restart probe from a peer without graceful restart"
            ));
        }
    }
}
