//! The RFC 4271 §9.1.2 decision process, and the multipath set for ECMP.

use super::{Path, Source};
use std::cmp::Ordering;

/// LOCAL_PREF assumed for routes without one (eBGP-learned routes, RFC 4271 §5.1.5).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

fn local_pref(p: &Path) -> u32 {
    p.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

/// Steps that decide whether two paths are equally good for multipath: everything up to the
/// IGP-cost step. `Less` means `a` is preferred.
fn multipath_steps(a: &Path, b: &Path) -> Ordering {
    // Routes this speaker originates win outright, as a locally configured route would.
    let local = |p: &Path| matches!(p.source, Source::Local);
    if local(a) != local(b) {
        return if local(a) {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // A path kept from a restarting peer loses to any fresh one (as rustbgpd and FRR do): it
    // may be gone when the peer is back, while a fresh path is confirmed now.
    a.stale
        .cmp(&b.stale)
        .then_with(|| local_pref(b).cmp(&local_pref(a)))
        .then_with(|| {
            a.attrs
                .as_path
                .decision_len()
                .cmp(&b.attrs.as_path.decision_len())
        })
        .then_with(|| a.attrs.origin.cmp(&b.attrs.origin))
        .then_with(|| {
            // MED only between routes from the same neighbouring AS; a missing MED is 0.
            let (na, nb) = (
                a.attrs.as_path.neighbour_as(),
                b.attrs.as_path.neighbour_as(),
            );
            if na.is_some() && na == nb {
                a.attrs.med.unwrap_or(0).cmp(&b.attrs.med.unwrap_or(0))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| b.source.is_ebgp().cmp(&a.source.is_ebgp()))
}

/// Full comparison: the multipath steps, then lowest BGP identifier (ORIGINATOR_ID when
/// present), then shorter CLUSTER_LIST (both RFC 4456 §9), then lowest peer address.
pub fn compare(a: &Path, b: &Path) -> Ordering {
    multipath_steps(a, b)
        .then_with(|| a.source.tie_break_id().cmp(&b.source.tie_break_id()))
        .then_with(|| a.attrs.cluster_list.len().cmp(&b.attrs.cluster_list.len()))
        .then_with(|| a.source.peer_addr().cmp(&b.source.peer_addr()))
}

/// Index of the best path and the indices of all paths that tie with it down to the IGP-cost
/// step (the best first). `paths` must not be empty.
pub fn select(paths: &[Path]) -> (usize, Vec<usize>) {
    let mut best = 0;
    for i in 1..paths.len() {
        if compare(&paths[i], &paths[best]) == Ordering::Less {
            best = i;
        }
    }
    let mut multi = vec![best];
    for (i, p) in paths.iter().enumerate() {
        if i != best
            && multipath_steps(p, &paths[best]) == Ordering::Equal
            && !matches!(p.source, Source::Local)
        {
            multi.push(i);
        }
    }
    (best, multi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AsPath, AsSegment, Origin, PathAttrs};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    fn peer(addr: u8, id: u8, ebgp: bool) -> Source {
        Source::Peer {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, addr)),
            router_id: Ipv4Addr::new(1, 1, 1, id),
            ebgp,
            originator_id: None,
        }
    }

    fn path(src: Source, f: impl FnOnce(&mut PathAttrs)) -> Path {
        let mut a = PathAttrs::local(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)));
        a.as_path = AsPath(vec![AsSegment::Sequence(vec![65001])]);
        f(&mut a);
        Path {
            source: src,
            attrs: Arc::new(a),
            stale: false,
        }
    }

    fn winner(a: Path, b: Path) -> usize {
        // Check both orders so the result does not depend on position.
        let (w1, _) = select(&[a.clone(), b.clone()]);
        let (w2, _) = select(&[b, a]);
        assert_eq!(w1, 1 - w2, "decision depends on order");
        w1
    }

    #[test]
    fn a_stale_path_loses_to_a_fresh_one_even_with_a_higher_local_pref_and_leaves_multipath() {
        let mut a = path(peer(1, 1, false), |a| a.local_pref = Some(200));
        a.stale = true;
        let b = path(peer(2, 2, false), |_| {});
        assert_eq!(winner(a.clone(), b.clone()), 1);
        // Otherwise equal: the fresh one wins and the stale one is not an ECMP next hop.
        let mut c = path(peer(3, 3, false), |_| {});
        c.stale = true;
        let (best, multi) = select(&[c, b]);
        assert_eq!((best, multi), (1, vec![1]));
    }

    #[test]
    fn higher_local_pref_wins() {
        let a = path(peer(1, 1, false), |a| a.local_pref = Some(200));
        let b = path(peer(2, 2, false), |a| {
            a.local_pref = Some(100);
            a.as_path = AsPath::default();
        });
        assert_eq!(winner(a, b), 0);
    }

    #[test]
    fn shorter_as_path_wins_and_set_counts_one() {
        let a = path(peer(1, 1, true), |a| {
            a.as_path = AsPath(vec![
                AsSegment::Sequence(vec![1]),
                AsSegment::Set(vec![2, 3, 4]),
            ])
        });
        let b = path(peer(2, 2, true), |a| {
            a.as_path = AsPath(vec![AsSegment::Sequence(vec![1, 2, 3])])
        });
        assert_eq!(winner(a, b), 0);
    }

    #[test]
    fn lower_origin_wins() {
        let a = path(peer(1, 9, true), |a| a.origin = Origin::Incomplete);
        let b = path(peer(2, 9, true), |a| a.origin = Origin::Egp);
        assert_eq!(winner(a, b), 1);
    }

    #[test]
    fn med_compared_only_within_the_same_neighbour_as() {
        let a = path(peer(1, 9, true), |a| a.med = Some(50));
        let b = path(peer(2, 8, true), |a| a.med = Some(10));
        assert_eq!(winner(a.clone(), b), 1, "same neighbour AS: lower MED");
        let c = path(peer(2, 8, true), |a| {
            a.med = Some(10);
            a.as_path = AsPath(vec![AsSegment::Sequence(vec![65002])]);
        });
        // Different neighbour AS: MED ignored, falls through to router ID (8 < 9).
        assert_eq!(winner(a, c), 1);
    }

    #[test]
    fn ebgp_beats_ibgp() {
        let a = path(peer(1, 1, false), |_| {});
        let b = path(peer(2, 2, true), |_| {});
        assert_eq!(winner(a, b), 1);
    }

    #[test]
    fn lowest_router_id_then_lowest_address() {
        let a = path(peer(1, 7, true), |_| {});
        let b = path(peer(2, 3, true), |_| {});
        assert_eq!(winner(a, b), 1);
        let c = path(peer(5, 3, true), |_| {});
        let d = path(peer(4, 3, true), |_| {});
        assert_eq!(winner(c, d), 1);
    }

    #[test]
    fn originator_id_replaces_router_id() {
        let mut s = peer(1, 1, false);
        if let Source::Peer { originator_id, .. } = &mut s {
            *originator_id = Some(Ipv4Addr::new(9, 9, 9, 9));
        }
        let a = path(s, |_| {});
        let b = path(peer(2, 5, false), |_| {});
        assert_eq!(winner(a, b), 1);
    }

    #[test]
    fn shorter_cluster_list_after_the_originator() {
        // Same originator (9.9.9.9) through two reflectors: one cluster beats two, even from
        // the higher peer address; a lower originator still wins over a shorter list.
        let via = |addr: u8, rid: u8, originator: u8, clusters: u8| {
            let mut s = peer(addr, rid, false);
            if let Source::Peer { originator_id, .. } = &mut s {
                *originator_id = Some(Ipv4Addr::new(originator, 9, 9, 9));
            }
            path(s, |a| {
                a.cluster_list = (0..clusters)
                    .map(|i| Ipv4Addr::new(10, 255, 0, i))
                    .collect()
            })
        };
        assert_eq!(winner(via(1, 1, 9, 2), via(2, 2, 9, 1)), 1);
        assert_eq!(winner(via(1, 1, 8, 2), via(2, 2, 9, 1)), 0);
    }

    #[test]
    fn local_routes_win_and_are_not_multipath() {
        let a = path(Source::Local, |a| a.local_pref = Some(0));
        let b = path(peer(2, 5, false), |a| a.local_pref = Some(500));
        assert_eq!(winner(a.clone(), b.clone()), 0);
        assert_eq!(select(&[a, b]).1, vec![0]);
    }

    #[test]
    fn ties_to_the_igp_step_form_the_multipath_set() {
        let a = path(peer(1, 1, true), |_| {});
        let b = path(peer(2, 2, true), |_| {});
        let c = path(peer(3, 3, true), |a| a.origin = Origin::Incomplete);
        let (best, multi) = select(&[c, b, a]);
        assert_eq!(best, 2);
        assert_eq!(multi, vec![2, 1]);
    }
}
