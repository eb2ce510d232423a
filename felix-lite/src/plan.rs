//! The reconcile decision, free of I/O: desired routes and what the kernel holds in, the
//! operations that make the kernel match out.

use crate::route::{KernelRoute, Route};
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// What felix-lite wants for a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Route(Route),
    /// Wanted, but a recursive next hop does not resolve yet: keep whatever of ours is there and
    /// do not add anything.
    Pending,
}

/// The kernel's main table as felix-lite sees it, split by owner.
#[derive(Default, Debug, Clone)]
pub struct Observed {
    /// Routes with Twill's protocol number, by prefix.
    pub ours: HashMap<IpNet, KernelRoute>,
    /// Routes of any other protocol, by prefix (the first one seen, for conflict reports).
    pub foreign: HashMap<IpNet, KernelRoute>,
}

impl Observed {
    pub fn insert(&mut self, r: KernelRoute) {
        if r.is_ours() {
            self.ours.insert(r.route.prefix, r);
        } else {
            self.foreign.entry(r.route.prefix).or_insert(r);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// No route of ours for the prefix: create it, failing if one appeared meanwhile.
    Add(Route),
    /// Ours is there but wrong: replace it.
    Replace(Route),
    /// Ours, no longer wanted.
    Delete(KernelRoute),
}

impl Op {
    pub fn prefix(&self) -> IpNet {
        match self {
            Op::Add(r) | Op::Replace(r) => r.prefix,
            Op::Delete(k) => k.route.prefix,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Add(r) => write!(f, "add {r}"),
            Op::Replace(r) => write!(f, "replace {r}"),
            Op::Delete(k) => write!(f, "delete {k}"),
        }
    }
}

/// A wanted prefix held by another protocol: felix-lite never touches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub wanted: Route,
    pub foreign: KernelRoute,
}

#[derive(Default, Debug, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub conflicts: Vec<Conflict>,
}

/// Which prefixes a reconcile looks at.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    /// Everything: desired and every route of ours in the kernel.
    All,
    /// Only these prefixes (a repair after netlink reported a change behind our back).
    Only(&'a HashSet<IpNet>),
}

/// Decide the operations that bring `observed` to `desired`.
///
/// `delete_strays` is false until the owner has handed over a complete desired set: routes of
/// ours left by a previous run are adopted and kept until then, so a restart never flushes the
/// table while BGP is still converging.
pub fn plan(
    desired: &HashMap<IpNet, Target>,
    observed: &Observed,
    scope: Scope<'_>,
    delete_strays: bool,
) -> Plan {
    let mut out = Plan::default();
    let mut consider = |prefix: &IpNet| {
        let ours = observed.ours.get(prefix);
        match (desired.get(prefix), ours) {
            (Some(Target::Route(want)), Some(have)) if have.route == *want => {}
            (Some(Target::Route(want)), Some(_)) => out.ops.push(Op::Replace(want.clone())),
            (Some(Target::Route(want)), None) => match observed.foreign.get(prefix) {
                Some(foreign) => out.conflicts.push(Conflict {
                    wanted: want.clone(),
                    foreign: foreign.clone(),
                }),
                None => out.ops.push(Op::Add(want.clone())),
            },
            (Some(Target::Pending), _) => {}
            (None, Some(have)) if delete_strays => out.ops.push(Op::Delete(have.clone())),
            (None, _) => {}
        }
    };
    match scope {
        Scope::All => {
            let mut prefixes: Vec<&IpNet> = desired.keys().chain(observed.ours.keys()).collect();
            prefixes.sort();
            prefixes.dedup();
            prefixes.into_iter().for_each(&mut consider);
        }
        Scope::Only(set) => {
            let mut prefixes: Vec<&IpNet> = set.iter().collect();
            prefixes.sort();
            prefixes.into_iter().for_each(&mut consider);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Hop, PROTO_TWILL};

    fn route(p: &str, gw: &str) -> Route {
        Route::new(p.parse().unwrap(), [Hop::direct(gw.parse().unwrap(), 2)])
    }

    fn kernel(r: Route, protocol: u8) -> KernelRoute {
        KernelRoute {
            route: r,
            protocol,
            priority: 0,
            kind: 1,
        }
    }

    fn desired(routes: &[Route]) -> HashMap<IpNet, Target> {
        routes
            .iter()
            .map(|r| (r.prefix, Target::Route(r.clone())))
            .collect()
    }

    #[test]
    fn adds_replaces_and_deletes_only_its_own() {
        let want = desired(&[
            route("10.0.1.0/24", "10.1.0.2"),
            route("10.0.2.0/24", "10.1.0.3"),
        ]);
        let mut seen = Observed::default();
        seen.insert(kernel(route("10.0.2.0/24", "10.1.0.9"), PROTO_TWILL));
        seen.insert(kernel(route("10.0.3.0/24", "10.1.0.4"), PROTO_TWILL));
        seen.insert(kernel(route("10.0.4.0/24", "10.1.0.4"), 4));
        let p = plan(&want, &seen, Scope::All, true);
        assert_eq!(
            p.ops,
            vec![
                Op::Add(route("10.0.1.0/24", "10.1.0.2")),
                Op::Replace(route("10.0.2.0/24", "10.1.0.3")),
                Op::Delete(kernel(route("10.0.3.0/24", "10.1.0.4"), PROTO_TWILL)),
            ]
        );
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn a_foreign_route_on_a_wanted_prefix_is_a_conflict_not_an_op() {
        let want = desired(&[route("10.0.1.0/24", "10.1.0.2")]);
        let mut seen = Observed::default();
        let foreign = kernel(route("10.0.1.0/24", "10.1.0.7"), 4);
        seen.insert(foreign.clone());
        let p = plan(&want, &seen, Scope::All, true);
        assert!(p.ops.is_empty());
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].foreign, foreign);
    }

    #[test]
    fn strays_are_adopted_until_the_desired_set_is_complete() {
        let mut seen = Observed::default();
        seen.insert(kernel(route("10.0.3.0/24", "10.1.0.4"), PROTO_TWILL));
        assert!(plan(&HashMap::new(), &seen, Scope::All, false)
            .ops
            .is_empty());
        assert_eq!(plan(&HashMap::new(), &seen, Scope::All, true).ops.len(), 1);
    }

    #[test]
    fn matching_routes_and_pending_targets_need_nothing() {
        let r = route("10.0.1.0/24", "10.1.0.2");
        let mut want = desired(std::slice::from_ref(&r));
        want.insert("10.0.9.0/24".parse().unwrap(), Target::Pending);
        let mut seen = Observed::default();
        seen.insert(kernel(r, PROTO_TWILL));
        seen.insert(kernel(route("10.0.9.0/24", "10.1.0.5"), PROTO_TWILL));
        assert_eq!(plan(&want, &seen, Scope::All, true), Plan::default());
    }

    #[test]
    fn a_scoped_plan_looks_only_at_its_prefixes() {
        let want = desired(&[
            route("10.0.1.0/24", "10.1.0.2"),
            route("10.0.2.0/24", "10.1.0.3"),
        ]);
        let only: HashSet<IpNet> = ["10.0.2.0/24".parse().unwrap()].into();
        let p = plan(&want, &Observed::default(), Scope::Only(&only), true);
        assert_eq!(p.ops, vec![Op::Add(route("10.0.2.0/24", "10.1.0.3"))]);
    }

    #[test]
    fn ecmp_hops_compare_as_a_set() {
        let a = Hop::direct("10.1.0.2".parse().unwrap(), 2);
        let b = Hop::direct("10.1.0.3".parse().unwrap(), 2);
        let p: IpNet = "10.0.1.0/24".parse().unwrap();
        assert_eq!(Route::new(p, [a, b]), Route::new(p, [b, a, b]));
        assert_ne!(Route::new(p, [a, b]), Route::new(p, [a]));
    }
}
