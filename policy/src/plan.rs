//! The pure plan: a desired [`Ruleset`] and what the kernel holds ([`Observed`]) → the two
//! texts one batch runs per family, in order: one `ipset restore` (sets no longer wanted and
//! no longer matched by any rule in the kernel destroyed; new sets created; changed sets built
//! whole under a temporary name and swapped in when much changed, edited entry by entry when
//! little did — never a flushed set in force), then one
//! `iptables-restore --noflush` with a section per table that changed (only the chains that
//! differ, rewritten; chains no longer wanted removed; the jump from `FORWARD` / `POSTROUTING`
//! put first while the table has Twill's entry chain, and removed when it has none). A set the old rules still match is
//! destroyed by the next batch, once the new rules are in (`Plan::unreferenced`). If
//! `iptables-restore` fails, the rules in force stay the previous ones (their sets may already
//! hold the new members). An empty plan means the kernel already holds the desired state.

use crate::observed::{Observed, ObservedTable};
use crate::render::{jump_rule, rule_hash, rule_line, set_adds, set_create};
use crate::ruleset::{temp_set_name, Rule, Ruleset, Table};
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub sets: String,
    pub rules: String,
    /// Sets no longer wanted that rules in the kernel still match now: destroyed by the next
    /// batch.
    pub unreferenced: Vec<String>,
    /// Chains written (for counters: theirs start again at zero).
    pub chains_written: Vec<String>,
    /// Chains removed (for counters: what they counted is carried where it still means
    /// something, as outgoing NAT's count does).
    pub chains_removed: Vec<String>,
    /// What changed, for the log: sets created, swapped, destroyed; chains written, removed.
    pub summary: Summary,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub sets_created: usize,
    pub sets_swapped: usize,
    pub sets_changed: usize,
    pub sets_destroyed: usize,
    pub chains_written: usize,
    pub chains_removed: usize,
    pub jump_fixed: bool,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.rules.is_empty()
    }
}

pub fn plan(desired: &Ruleset, observed: &Observed) -> Plan {
    plan_tables(desired, observed, &Table::ALL)
}

/// As [`plan`], for some tables only: the rest of the kernel's state, their chains and their
/// sets, is left as it is (outgoing NAT before NetworkPolicy has its first model).
pub fn plan_tables(desired: &Ruleset, observed: &Observed, tables: &[Table]) -> Plan {
    let mut p = Plan::default();
    let in_scope = |name: &str| tables.contains(&Table::of_set(name));
    for name in observed.sets.keys() {
        // Only this family's sets (the other family's plan owns the rest), temporary sets
        // left by an interrupted batch included. First, so a swap below may reuse a name.
        if !of_family(name, desired.family) || desired.sets.contains_key(name) || !in_scope(name) {
            continue;
        }
        if observed.referenced.contains(name) {
            p.unreferenced.push(name.clone());
        } else {
            let _ = writeln!(p.sets, "destroy {name}");
            p.summary.sets_destroyed += 1;
        }
    }
    for (name, set) in desired.sets.iter().filter(|(n, _)| in_scope(n)) {
        match observed.sets.get(name) {
            None => {
                let _ = writeln!(p.sets, "{}", set_create(name, set, desired.family));
                set_adds(&mut p.sets, name, set);
                p.summary.sets_created += 1;
            }
            Some(o) if o.members != set.members && small_change(&o.members, &set.members) => {
                // In place: each entry is added or removed atomically, and the entries that
                // stay are never missing (what a swap also guarantees, at the cost of
                // rewriting the whole set).
                for gone in o.members.difference(&set.members) {
                    let key = gone.strip_suffix(" nomatch").unwrap_or(gone);
                    let _ = writeln!(p.sets, "del {name} {key} -exist");
                }
                for new in set.members.difference(&o.members) {
                    let _ = writeln!(p.sets, "add {name} {new} -exist");
                }
                p.summary.sets_changed += 1;
            }
            Some(o) if o.members != set.members => {
                let tmp = temp_set_name(name);
                let _ = writeln!(p.sets, "{}", set_create(&tmp, set, desired.family));
                let _ = writeln!(p.sets, "flush {tmp}");
                set_adds(&mut p.sets, &tmp, set);
                let _ = writeln!(p.sets, "swap {tmp} {name}");
                let _ = writeln!(p.sets, "destroy {tmp}");
                p.summary.sets_swapped += 1;
            }
            Some(_) => {}
        }
    }

    for &table in tables {
        plan_table(&mut p, table, desired.table(table), observed.table(table));
    }
    p
}

/// One table's section of the `iptables-restore` text, if anything in it differs.
fn plan_table(
    p: &mut Plan,
    table: Table,
    desired: &BTreeMap<String, Vec<Rule>>,
    observed: &ObservedTable,
) {
    let mut decl = String::new();
    let mut body = String::new();
    for (chain, rules) in desired {
        let hashes: Vec<String> = rules.iter().map(|r| rule_hash(chain, r)).collect();
        if observed.chains.get(chain) == Some(&hashes) {
            continue;
        }
        // With --noflush, declaring a chain creates it or empties it.
        let _ = writeln!(decl, ":{chain} - [0:0]");
        for r in rules {
            let _ = writeln!(body, "{}", rule_line(chain, r));
        }
        p.chains_written.push(chain.clone());
        p.summary.chains_written += 1;
    }
    let mut removed = Vec::new();
    for chain in observed.chains.keys() {
        if !desired.contains_key(chain) {
            let _ = writeln!(decl, ":{chain} - [0:0]");
            removed.push(chain.clone());
            p.chains_removed.push(chain.clone());
            p.summary.chains_removed += 1;
        }
    }
    // The jump: exactly one, first in the hook chain, while the entry chain is wanted; none
    // otherwise (deleted before the chain it enters).
    let wanted = desired.contains_key(table.entry());
    let mut jump = String::new();
    if wanted && (observed.jumps != 1 || !observed.jump_first) || !wanted && observed.jumps > 0 {
        for _ in 0..observed.jumps {
            let _ = writeln!(jump, "{}", jump_rule(table, false));
        }
        if wanted {
            let _ = writeln!(jump, "{}", jump_rule(table, true));
        }
        p.summary.jump_fixed = true;
    }
    if !decl.is_empty() || !jump.is_empty() {
        let _ = writeln!(p.rules, "*{}", table.name());
        p.rules.push_str(&decl);
        p.rules.push_str(&body);
        // Jumps deleted before the chains they enter are.
        p.rules.push_str(&jump);
        for c in &removed {
            let _ = writeln!(p.rules, "-X {c}");
        }
        p.rules.push_str("COMMIT\n");
    }
}

/// Few entries change (a pod came or went): edit the set in place. Many: build it anew under a
/// temporary name and swap it in, which is one kernel operation however large the change.
fn small_change(
    old: &std::collections::BTreeSet<String>,
    new: &std::collections::BTreeSet<String>,
) -> bool {
    let changed = old.symmetric_difference(new).count();
    changed <= 64.max(new.len() / 4)
}

/// What the kernel holds once `p` (planned for `desired`) is in force, as the read-back would
/// find it: the belief the next batch is planned against. Sets kept for later are in it,
/// matched by no rule any more, so the next batch destroys them.
pub fn believed(desired: &Ruleset, p: &Plan) -> Observed {
    let mut o = Observed::default();
    for table in Table::ALL {
        let chains = desired.table(table);
        let t = o.table_mut(table);
        let wanted = chains.contains_key(table.entry());
        t.jumps = usize::from(wanted);
        t.jump_first = wanted;
        for (chain, rules) in chains {
            t.chains.insert(
                chain.clone(),
                rules.iter().map(|r| rule_hash(chain, r)).collect(),
            );
        }
    }
    for rules in desired.chains.values().chain(desired.nat.values()) {
        for r in rules {
            for m in &r.matches {
                if let crate::ruleset::Match::Set { name, .. } = m {
                    o.referenced.insert(name.clone());
                }
            }
        }
    }
    for name in &p.unreferenced {
        o.sets.insert(name.clone(), Default::default());
    }
    for (name, set) in &desired.sets {
        o.sets.insert(
            name.clone(),
            crate::observed::ObservedSet {
                kind: set.kind.ipset_type().to_string(),
                members: set.members.clone(),
            },
        );
    }
    o
}

/// Everything Twill has in one family, removed: in each table the jumps, then every `TWILL-…`
/// chain (`rules`, run first), then every `twill-…` set (`sets`, once no rule matches them).
pub fn teardown(family: crate::ruleset::Family, observed: &Observed) -> Plan {
    let mut p = Plan::default();
    for table in Table::ALL {
        let t = observed.table(table);
        let mut rules = String::new();
        for _ in 0..t.jumps {
            let _ = writeln!(rules, "{}", jump_rule(table, false));
        }
        for chain in t.chains.keys() {
            let _ = writeln!(rules, ":{chain} - [0:0]");
        }
        for chain in t.chains.keys() {
            let _ = writeln!(rules, "-X {chain}");
        }
        if !rules.is_empty() {
            let _ = write!(p.rules, "*{}\n{rules}COMMIT\n", table.name());
        }
    }
    for name in observed.sets.keys() {
        if of_family(name, family) {
            let _ = writeln!(p.sets, "destroy {name}");
        }
    }
    p
}

/// Whether a set Twill named (`twill-4…`, or its temporary twin `twill-t4…`) belongs to
/// `family`: each family's plan owns only its own.
fn of_family(name: &str, family: crate::ruleset::Family) -> bool {
    crate::ruleset::set_tag(name).starts_with(family.digit())
}
