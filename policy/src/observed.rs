//! What the kernel holds now, read back from `iptables-save -t filter` / `-t nat` and
//! `ipset save`: only Twill's chains (by name), the jump into them from `FORWARD` and from
//! `POSTROUTING` (by its comment) and Twill's sets (by name). Everything else in the output is
//! skipped unread.

use crate::ruleset::{Table, CHAIN_PREFIX, SET_PREFIX};
use std::collections::{BTreeMap, BTreeSet};

/// Twill's part of one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTable {
    /// Twill's chains: each rule's hash from its comment, in order (a rule without one —
    /// added by hand — reads as an empty hash, so the chain is rewritten).
    pub chains: BTreeMap<String, Vec<String>>,
    /// How many of our jumps (by comment) the table's hook chain holds, and whether its first
    /// rule is one.
    pub jumps: usize,
    pub jump_first: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub filter: ObservedTable,
    pub nat: ObservedTable,
    /// Twill's sets: type and entries.
    pub sets: BTreeMap<String, ObservedSet>,
    /// Packet counters per (chain, rule label), from `iptables-save -c` (labels name the
    /// policy and rule; one longer than the comment holds is cut, and its counts are lost).
    pub counters: BTreeMap<(String, String), u64>,
    /// Sets Twill's rules match on now: a set no longer wanted is destroyed only once no rule
    /// in the kernel refers to it (ipset refuses to destroy a set in use).
    pub referenced: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedSet {
    pub kind: String,
    pub members: BTreeSet<String>,
}

impl Observed {
    pub fn table(&self, t: Table) -> &ObservedTable {
        match t {
            Table::Filter => &self.filter,
            Table::Nat => &self.nat,
        }
    }

    pub fn table_mut(&mut self, t: Table) -> &mut ObservedTable {
        match t {
            Table::Filter => &mut self.filter,
            Table::Nat => &mut self.nat,
        }
    }
}

/// Read `iptables-save [-c]` output (the filter and nat tables; others are skipped) into
/// `into`.
pub fn parse_iptables(text: &str, into: &mut Observed) {
    let mut table: Option<Table> = None;
    let mut hook_seen = 0usize;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = Table::ALL.into_iter().find(|x| x.name() == t.trim());
            hook_seen = 0;
            continue;
        }
        let Some(table) = table else {
            continue;
        };
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if name.starts_with(CHAIN_PREFIX) {
                into.table_mut(table)
                    .chains
                    .entry(name.to_string())
                    .or_default();
            }
            continue;
        }
        // `[pkts:bytes] -A CHAIN ...` with -c, `-A CHAIN ...` without.
        let (packets, rest) = match line.strip_prefix('[') {
            Some(r) => {
                let (c, rest) = r.split_once("] ").unwrap_or((r, ""));
                let p = c
                    .split(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                (p, rest)
            }
            None => (0, line),
        };
        let Some(rule) = rest.strip_prefix("-A ") else {
            continue;
        };
        let chain = rule.split_whitespace().next().unwrap_or_default();
        if chain == table.hook() {
            let ours = comment(rule).as_deref() == Some(table.jump_comment())
                && rule.ends_with(&format!("-j {}", table.entry()));
            if ours {
                let t = into.table_mut(table);
                t.jumps += 1;
                if hook_seen == 0 {
                    t.jump_first = true;
                }
            }
            hook_seen += 1;
            continue;
        }
        if !chain.starts_with(CHAIN_PREFIX) {
            continue;
        }
        let c = comment(rule).unwrap_or_default();
        let (hash, label) = match c.strip_prefix("twill:") {
            Some(rest) => match rest.split_once(' ') {
                Some((h, l)) => (h.to_string(), l.to_string()),
                None => (rest.to_string(), String::new()),
            },
            None => (String::new(), String::new()),
        };
        let mut words = rule.split_whitespace();
        while let Some(w) = words.next() {
            if w == "--match-set" {
                if let Some(set) = words.next() {
                    into.referenced.insert(set.to_string());
                }
            }
        }
        into.table_mut(table)
            .chains
            .entry(chain.to_string())
            .or_default()
            .push(hash);
        if !label.is_empty() {
            *into.counters.entry((chain.to_string(), label)).or_default() += packets;
        }
    }
}

/// The `--comment` argument of a saved rule, unquoted.
fn comment(rule: &str) -> Option<String> {
    let (_, after) = rule.split_once("--comment ")?;
    if let Some(q) = after.strip_prefix('"') {
        let end = q.find('"')?;
        Some(q[..end].to_string())
    } else {
        Some(after.split_whitespace().next()?.to_string())
    }
}

/// Read `ipset save` output (all sets; only Twill's are kept) into `into`.
pub fn parse_ipset(text: &str, into: &mut Observed) {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("create"), Some(name)) if name.starts_with(SET_PREFIX) => {
                let kind = words.next().unwrap_or_default().to_string();
                into.sets.entry(name.to_string()).or_default().kind = kind;
            }
            (Some("add"), Some(name)) if name.starts_with(SET_PREFIX) => {
                let member: Vec<&str> = words.collect();
                into.sets
                    .entry(name.to_string())
                    .or_default()
                    .members
                    .insert(member.join(" "));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_twill_chains_the_jump_and_twill_sets() {
        let save = "# Generated\n*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:TWILL-POSTROUTING - [0:0]\n-A PREROUTING -m comment --comment twill:policy -j TWILL-FORWARD\n[3:180] -A POSTROUTING -j DOCKER-MASQ\n[2:120] -A POSTROUTING -m comment --comment twill:nat -j TWILL-POSTROUTING\n[2:120] -A TWILL-POSTROUTING -s 10.244.1.0/24 -m comment --comment \"twill:00bb nat: outgoing\" -j MASQUERADE\nCOMMIT\n*mangle\n:TWILL-X - [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:KUBE-FORWARD - [0:0]\n:TWILL-FORWARD - [0:0]\n:TWILL-EMPTY - [0:0]\n[5:300] -A FORWARD -m comment --comment twill:policy -j TWILL-FORWARD\n[0:0] -A FORWARD -j KUBE-FORWARD\n[7:420] -A TWILL-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"twill:00aa replies\" -j RETURN\n[1:60] -A TWILL-FORWARD -j MARK --set-xmark 0x0/0xc0000\n[0:0] -A KUBE-FORWARD -m comment --comment \"twill:ffff fake\" -j ACCEPT\nCOMMIT\n";
        let mut o = Observed::default();
        parse_iptables(save, &mut o);
        assert_eq!(o.filter.jumps, 1);
        assert!(o.filter.jump_first);
        assert_eq!(
            o.filter.chains.keys().collect::<Vec<_>>(),
            ["TWILL-EMPTY", "TWILL-FORWARD"]
        );
        assert_eq!(o.filter.chains["TWILL-FORWARD"], ["00aa", ""]);
        // The nat table: a jump that is not first (another component's rule came before it),
        // not the one in PREROUTING (wrong chain), and no other table's chains.
        assert_eq!((o.nat.jumps, o.nat.jump_first), (1, false));
        assert_eq!(o.nat.chains["TWILL-POSTROUTING"], ["00bb"]);
        assert_eq!(o.nat.chains.len(), 1);
        assert_eq!(
            o.counters[&("TWILL-POSTROUTING".to_string(), "nat: outgoing".to_string())],
            2
        );
        assert_eq!(
            o.counters[&("TWILL-FORWARD".to_string(), "replies".to_string())],
            7
        );
        let sets = "create twill-4p-1 hash:ip family inet hashsize 64 maxelem 1048576 bucketsize 12 initval 0x1\nadd twill-4p-1 10.0.0.1\ncreate KUBE-X hash:ip family inet\nadd KUBE-X 10.0.0.9\ncreate twill-4b-2 hash:net family inet\nadd twill-4b-2 10.0.0.0/24 nomatch\n";
        parse_ipset(sets, &mut o);
        assert_eq!(o.sets.len(), 2);
        assert_eq!(o.sets["twill-4p-1"].kind, "hash:ip");
        assert!(o.sets["twill-4b-2"].members.contains("10.0.0.0/24 nomatch"));
    }
}
