//! Who gets which route and with which attributes: the export decision, the attribute rewrite
//! (next-hop-self, AS prepend, LOCAL_PREF), the diff against each peer's Adj-RIB-Out, packing
//! into UPDATEs, and route-refresh resends. The single place where advertisement rules live.

use super::peer::Peer;
use super::{Core, Output};
use crate::config::PeerRole;
use crate::fsm::State;
use crate::policy::ExportFilter;
use crate::rib::Source;
use crate::wire::{self, Family, PathAttrs};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// Whether a path from `source` (a peer of role `from`, if a peer) may go to a peer of role
/// `to` at all, before its export filter. RFC 4271 §9.2: iBGP-learned routes are not
/// re-advertised to iBGP peers — unless this speaker reflects (RFC 4456 §6): a client's routes
/// go to every other iBGP peer, a non-client's to clients only.
pub(super) fn may_advertise(
    source: &Source,
    from: Option<PeerRole>,
    to: PeerRole,
    reflecting: bool,
) -> bool {
    let from_ibgp = matches!(source, Source::Peer { ebgp: false, .. });
    if !from_ibgp || to.is_ebgp() {
        return true;
    }
    reflecting && (from == Some(PeerRole::ReflectorClient) || to == PeerRole::ReflectorClient)
}

impl Core {
    /// The role of the peer a path came from (`None` for a local path).
    pub(super) fn source_role(&self, source: &Source) -> Option<PeerRole> {
        source
            .peer_addr()
            .and_then(|s| self.peers.get(&s))
            .map(|s| s.role)
    }

    /// The attributes to advertise to `peer` for `best`, or None to not advertise.
    pub(super) fn export(
        &self,
        peer: &Peer,
        prefix: &IpNet,
        source: &Source,
        attrs: &Arc<PathAttrs>,
    ) -> Option<PathAttrs> {
        let info = peer.main.fsm.session()?;
        if !info.negotiated.families.contains(&Family::of(prefix)) {
            return None;
        }
        if source.peer_addr() == Some(peer.cfg.address) {
            return None;
        }
        let filtered_out = match peer.cfg.export {
            ExportFilter::All => false,
            ExportFilter::Originated => !matches!(source, Source::Local),
            ExportFilter::OriginatedAndReflected => {
                matches!(source, Source::Peer { ebgp: true, .. })
            }
        };
        if filtered_out {
            return None;
        }
        let from = self.source_role(source);
        let reflecting = self.cfg.cluster_id.is_some();
        if !may_advertise(source, from, peer.role, reflecting) {
            return None;
        }
        let to_ebgp = peer.role.is_ebgp();
        let mut a = (**attrs).clone();
        if let (
            Source::Peer {
                ebgp: false,
                router_id,
                ..
            },
            Some(cluster),
            false,
        ) = (source, self.cfg.cluster_id, to_ebgp)
        {
            // Reflected (RFC 4456 §8): the originator is remembered once, our cluster is
            // prepended; everything else, the next hop included, goes on unchanged.
            a.originator_id.get_or_insert(*router_id);
            a.cluster_list.insert(0, cluster);
        }
        let self_hop = || -> Option<(IpAddr, Option<Ipv6Addr>)> {
            let local = peer.main.local;
            let v = match (prefix, local) {
                (IpNet::V4(_), Some(IpAddr::V4(l))) => IpAddr::V4(l),
                (IpNet::V6(_), Some(IpAddr::V6(l))) if !is_link_local(&l) => IpAddr::V6(l),
                (IpNet::V4(_), _) => IpAddr::V4(peer.cfg.next_hop_v4?),
                (IpNet::V6(_), _) => IpAddr::V6(peer.cfg.next_hop_v6?),
            };
            Some((v, peer.cfg.next_hop_v6_local.filter(|_| v.is_ipv6())))
        };
        if to_ebgp || matches!(source, Source::Local) {
            let (nh, ll) = self_hop()?;
            a.next_hop = nh;
            a.next_hop_local = ll;
        }
        if to_ebgp {
            a.as_path = a.as_path.prepend(self.cfg.asn);
            a.local_pref = None;
            // MED is not passed on to another AS (RFC 4271 §5.1.4).
            if !matches!(source, Source::Local) {
                a.med = None;
            }
            // ORIGINATOR_ID and CLUSTER_LIST never leave the AS (RFC 4456 §8).
            a.originator_id = None;
            a.cluster_list.clear();
        } else {
            a.local_pref = Some(
                a.local_pref
                    .unwrap_or(crate::rib::decision::DEFAULT_LOCAL_PREF),
            );
        }
        Some(a)
    }

    /// After a change to what `peer` may be sent (its export filter or role, our cluster ID):
    /// what it holds plus everything it may now get.
    pub(super) fn readvertise_all(&mut self, peer: IpAddr) {
        let mut prefixes: Vec<IpNet> = self.rib.prefixes().copied().collect();
        prefixes.extend(self.peers[&peer].adj_out.routes.keys().copied());
        prefixes.sort_unstable();
        prefixes.dedup();
        self.advertise(peer, &prefixes);
    }

    /// Compare what `peer` should have for `prefixes` with its Adj-RIB-Out and send the
    /// difference, packed.
    pub(super) fn advertise(&mut self, peer: IpAddr, prefixes: &[IpNet]) {
        let p = &self.peers[&peer];
        if p.main.fsm.state() != State::Established || self.deferred(p) {
            return;
        }
        let mut withdraw = Vec::new();
        // Group by attribute value so prefixes sharing attributes travel together.
        let mut groups: HashMap<PathAttrs, Vec<IpNet>> = HashMap::new();
        // Export depends on the source attributes and the prefix family (next-hop-self).
        let mut memo: HashMap<(*const PathAttrs, Family, Option<IpAddr>), Option<PathAttrs>> =
            HashMap::new();
        // A node's peers take only what it originates: a learned prefix it never sent is
        // skipped without a Loc-RIB lookup (that lookup was most of a node's export cost when
        // it takes in a full table).
        let only_originated = p.cfg.export == ExportFilter::Originated;
        for prefix in prefixes {
            if only_originated
                && !self.originated.contains(prefix)
                && !p.adj_out.routes.contains_key(prefix)
            {
                continue;
            }
            let want = self.rib.best_attrs(prefix).and_then(|(source, attrs)| {
                let key = (Arc::as_ptr(attrs), Family::of(prefix), source.peer_addr());
                memo.entry(key)
                    .or_insert_with(|| self.export(p, prefix, source, attrs))
                    .clone()
            });
            let have = p.adj_out.routes.get(prefix);
            match (want, have) {
                (None, Some(_)) => withdraw.push(*prefix),
                (Some(a), Some(h)) if **h == a => {}
                (Some(a), _) => groups.entry(a).or_default().push(*prefix),
                (None, None) => {}
            }
        }
        if withdraw.is_empty() && groups.is_empty() {
            return;
        }
        let neg = p
            .main
            .fsm
            .session()
            .expect("established")
            .negotiated
            .clone();
        let Some(conn) = p.main.conn else { return };
        let announce: Vec<(Arc<PathAttrs>, Vec<IpNet>)> = groups
            .into_iter()
            .map(|(a, v)| (self.interned.get(a), v))
            .collect();
        let msgs = wire::pack_updates(&neg, &withdraw, &announce);
        let p = self.peers.get_mut(&peer).expect("peer exists");
        for w in &withdraw {
            p.adj_out.routes.remove(w);
        }
        for (a, v) in &announce {
            for prefix in v {
                p.adj_out.routes.insert(*prefix, a.clone());
            }
        }
        p.updates_out += msgs.len() as u64;
        for bytes in msgs {
            self.out.push(Output::Send { conn, bytes });
        }
    }

    /// Route refresh: send the Adj-RIB-Out of one family again.
    pub(super) fn resend(&mut self, peer: IpAddr, f: Family) {
        let p = &self.peers[&peer];
        let Some(conn) = p.main.conn else { return };
        let Some(info) = p.main.fsm.session() else {
            return;
        };
        let mut groups: HashMap<*const PathAttrs, (Arc<PathAttrs>, Vec<IpNet>)> = HashMap::new();
        for (prefix, a) in &p.adj_out.routes {
            if Family::of(prefix) == f {
                groups
                    .entry(Arc::as_ptr(a))
                    .or_insert_with(|| (a.clone(), Vec::new()))
                    .1
                    .push(*prefix);
            }
        }
        let announce: Vec<_> = groups.into_values().collect();
        let msgs = wire::pack_updates(&info.negotiated, &[], &announce);
        for bytes in msgs {
            self.out.push(Output::Send { conn, bytes });
        }
    }
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// Exported attribute sets, one allocation each, shared by every peer's Adj-RIB-Out. A
/// reflector sends each client's route to every other client with the same attributes; with
/// one copy per peer, 500 clients made 250,000 copies (bench-scale: a 117 MB reflector).
#[derive(Default)]
pub(super) struct Interned {
    set: std::collections::HashSet<Arc<PathAttrs>>,
    /// The size at which sets no Adj-RIB-Out holds any more are dropped.
    sweep_at: usize,
}

impl Interned {
    pub(super) fn get(&mut self, a: PathAttrs) -> Arc<PathAttrs> {
        if let Some(x) = self.set.get(&a) {
            return x.clone();
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(|x| Arc::strong_count(x) > 1);
            self.sweep_at = (self.set.len() * 2).max(1024);
        }
        let x = Arc::new(a);
        self.set.insert(x.clone());
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_attributes_share_one_allocation_and_unused_ones_are_dropped() {
        let mut i = Interned::default();
        let attrs = |n: u8| PathAttrs::local(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n)));
        let a = i.get(attrs(1));
        let b = i.get(attrs(1));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &i.get(attrs(2))));
        // Past the sweep size, sets no one holds go.
        for n in 3..=255 {
            i.get(attrs(n));
        }
        for n in 0..1000u32 {
            let mut x = attrs(1);
            x.med = Some(n);
            i.get(x);
        }
        assert!(i.set.len() < 1000, "{}", i.set.len());
        assert!(Arc::ptr_eq(&a, &i.get(attrs(1))), "a held set stays");
    }
}
