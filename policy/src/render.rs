//! The pure render step: rules and sets as the text `iptables-restore` and `ipset restore`
//! read. Each rule carries a comment `twill:<hash> <label>`; the hash covers the chain and the
//! rule's text, so what the kernel holds is compared by hash (read back from `iptables-save`)
//! rather than by re-parsing iptables' own spelling of each match.

use crate::ruleset::{fnv, IpSet, Match, Rule, SetDir, Table, Target};
use std::fmt::Write;

/// The rule's text after `-A CHAIN`, without the comment.
pub fn rule_body(rule: &Rule) -> String {
    let mut s = String::new();
    for m in &rule.matches {
        match m {
            Match::Established => s.push_str(" -m conntrack --ctstate RELATED,ESTABLISHED"),
            Match::Set { name, dir, negate } => {
                let dir = match dir {
                    SetDir::Src => "src",
                    SetDir::Dst => "dst",
                    SetDir::DstPort => "dst,dst",
                };
                let not = if *negate { " !" } else { "" };
                let _ = write!(s, " -m set{not} --match-set {name} {dir}");
            }
            Match::Mark { bits, negate } => {
                let not = if *negate { " !" } else { "" };
                let _ = write!(s, " -m mark{not} --mark {bits:#x}/{bits:#x}");
            }
            Match::Protocol(p) => {
                let _ = write!(s, " -p {}", p.as_str());
            }
            Match::Ports { start, end } if start == end => {
                let _ = write!(s, " -m multiport --dports {start}");
            }
            Match::Ports { start, end } => {
                let _ = write!(s, " -m multiport --dports {start}:{end}");
            }
            Match::Source(net) => {
                let _ = write!(s, " -s {net}");
            }
            Match::LocalDestination => s.push_str(" -m addrtype --dst-type LOCAL"),
        }
    }
    s
}

fn target_text(t: &Target) -> String {
    match t {
        Target::Jump(c) => format!(" -j {c}"),
        Target::Return => " -j RETURN".into(),
        Target::Drop => " -j DROP".into(),
        Target::Mark(b) => format!(" -j MARK --set-xmark {b:#x}/{b:#x}"),
        Target::ClearMark(b) => format!(" -j MARK --set-xmark 0x0/{b:#x}"),
        Target::Count => String::new(),
        Target::Masquerade => " -j MASQUERADE".into(),
    }
}

/// The hash that names a rule in its comment: chain, position-independent text, target.
pub fn rule_hash(chain: &str, rule: &Rule) -> String {
    format!(
        "{:016x}",
        fnv(format!(
            "{chain}|{}|{}|{}",
            rule_body(rule),
            target_text(&rule.target),
            rule.label
        ))
    )
}

/// One `-A` line.
pub fn rule_line(chain: &str, rule: &Rule) -> String {
    let hash = rule_hash(chain, rule);
    let comment = if rule.label.is_empty() {
        format!("twill:{hash}")
    } else {
        format!("\"twill:{hash} {}\"", short(&rule.label))
    };
    format!(
        "-A {chain}{} -m comment --comment {comment}{}",
        rule_body(rule),
        target_text(&rule.target)
    )
}

/// The jump from the table's built-in chain (`FORWARD`, `POSTROUTING`) into Twill's: inserted
/// first, or deleted.
pub fn jump_rule(table: Table, insert: bool) -> String {
    let hook = table.hook();
    let op = if insert {
        format!("-I {hook} 1")
    } else {
        format!("-D {hook}")
    };
    format!(
        "{op} -m comment --comment {} -j {}",
        table.jump_comment(),
        table.entry()
    )
}

/// `create` for a set (or its temporary twin); `-exist` so a leftover temporary set from an
/// interrupted run is reused rather than failing the batch.
pub fn set_create(name: &str, set: &IpSet, family: crate::ruleset::Family) -> String {
    format!(
        "create {name} {} family {} hashsize 64 maxelem 1048576 -exist",
        set.kind.ipset_type(),
        family.ipset_family()
    )
}

/// `add` lines for every member.
pub fn set_adds(out: &mut String, name: &str, set: &IpSet) {
    for m in &set.members {
        let _ = writeln!(out, "add {name} {m}");
    }
}

/// iptables keeps at most 255 bytes of comment; `twill:` and the hash take 23. The label is for
/// people reading `iptables-save` (the hash is what Twill reads back), so a long one is cut.
fn short(label: &str) -> &str {
    const ROOM: usize = 255 - 24;
    if label.len() <= ROOM {
        return label;
    }
    let mut end = ROOM;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}
