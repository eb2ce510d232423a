//! The core's invariants, checked on demand by tests and fuzz targets (never on the hot path:
//! a check costs a walk over every RIB). Each broken one comes back as a sentence naming the
//! peer and prefix, so a fuzzer's crash report says what went wrong, not just where.

use super::peer::Peer;
use super::Core;
use crate::fsm::State;
use crate::rib::{decision, Source};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;

impl Core {
    /// Every invariant that does not hold now (empty when all do):
    /// - the Loc-RIB holds exactly the accepted Adj-RIB-In routes and the originated prefixes,
    ///   with the same attributes, and nothing from a peer whose session is down;
    /// - each prefix's best path is what the decision process picks;
    /// - each Established peer's Adj-RIB-Out is exactly what the export rules give for the
    ///   current best routes (so a withdrawn route is gone everywhere), and a peer that is not
    ///   Established has advertised nothing.
    pub fn check_invariants(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for (addr, p) in &self.peers {
            self.check_adj_in(*addr, p, &mut bad);
            self.check_adj_out(*addr, p, &mut bad);
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
                    Source::Peer { addr, .. } => {
                        let held = self
                            .peers
                            .get(addr)
                            .and_then(|p| p.adj_in.routes.get(prefix));
                        match held {
                            Some((a, true)) if **a == *path.attrs => {}
                            Some((_, true)) => bad.push(format!(
                                "{prefix}: Loc-RIB path from {addr} differs from its Adj-RIB-In"
                            )),
                            _ => bad.push(format!(
                                "{prefix}: Loc-RIB path from {addr} that its Adj-RIB-In does not accept"
                            )),
                        }
                    }
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

    fn check_adj_in(&self, addr: IpAddr, p: &Peer, bad: &mut Vec<String>) {
        let accepted = p.adj_in.routes.values().filter(|(_, a)| *a).count();
        if accepted != p.adj_in.accepted {
            bad.push(format!(
                "peer {addr}: {} accepted counted, {accepted} held",
                p.adj_in.accepted
            ));
        }
        if p.main.fsm.state() != State::Established && !p.adj_in.routes.is_empty() {
            bad.push(format!(
                "peer {addr}: {} routes kept while {}",
                p.adj_in.routes.len(),
                p.main.fsm.state()
            ));
        }
        for (prefix, (attrs, ok)) in &p.adj_in.routes {
            let from_peer = self
                .rib
                .paths(prefix)
                .iter()
                .find(|x| x.source.peer_addr() == Some(addr));
            match (ok, from_peer) {
                (true, None) => bad.push(format!(
                    "{prefix}: accepted from {addr} but not in the Loc-RIB"
                )),
                (false, Some(_)) => bad.push(format!(
                    "{prefix}: not accepted from {addr} but in the Loc-RIB"
                )),
                (true, Some(x)) if *x.attrs != **attrs => bad.push(format!(
                    "{prefix}: Loc-RIB attributes from {addr} differ from its Adj-RIB-In"
                )),
                _ => {}
            }
        }
    }

    fn check_adj_out(&self, addr: IpAddr, p: &Peer, bad: &mut Vec<String>) {
        if p.main.fsm.state() != State::Established {
            if !p.adj_out.routes.is_empty() {
                bad.push(format!(
                    "peer {addr}: {} routes advertised while {}",
                    p.adj_out.routes.len(),
                    p.main.fsm.state()
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
        for prefix in prefixes {
            let want = self
                .rib
                .best_attrs(&prefix)
                .and_then(|(source, attrs)| self.export(p, &prefix, source, attrs));
            let have = p.adj_out.routes.get(&prefix).map(|a| &**a);
            if want.as_ref() != have {
                bad.push(format!(
                    "{prefix}: advertised to {addr} as {have:?}, the export rules give {want:?}"
                ));
            }
        }
    }
}
