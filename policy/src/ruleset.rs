//! Rules as data: what [`crate::compile`] and [`crate::nat`] produce and [`crate::render`]
//! writes out. A [`Ruleset`] is one address family's chains (all named `TWILL-…`, in the
//! filter table for NetworkPolicy and the nat table for outgoing NAT) and ipsets (all named
//! `twill-…`); nothing in it refers to another component's chains except one jump per table
//! (from `FORWARD`, from `POSTROUTING`), which the plan adds.

use std::collections::{BTreeMap, BTreeSet};

/// The chain the jump from `FORWARD` enters.
pub const FORWARD_CHAIN: &str = "TWILL-FORWARD";
pub const INGRESS_CHAIN: &str = "TWILL-INGRESS";
pub const EGRESS_CHAIN: &str = "TWILL-EGRESS";
/// The comment on the jump from `FORWARD`: how it is recognised as ours.
pub const JUMP_COMMENT: &str = "twill:policy";
/// The nat table's chain the jump from `POSTROUTING` enters (outgoing NAT).
pub const NAT_CHAIN: &str = "TWILL-POSTROUTING";
pub const NAT_JUMP_COMMENT: &str = "twill:nat";

/// The iptables tables Twill writes to, each entered by one jump from a built-in chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    /// NetworkPolicy: `FORWARD` → `TWILL-FORWARD`.
    Filter,
    /// Outgoing NAT: `POSTROUTING` → `TWILL-POSTROUTING`.
    Nat,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Filter, Table::Nat];

    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }

    /// The built-in chain whose first rule is Twill's jump.
    pub fn hook(self) -> &'static str {
        match self {
            Table::Filter => "FORWARD",
            Table::Nat => "POSTROUTING",
        }
    }

    /// The chain the jump enters; the jump is there exactly when this chain is wanted.
    pub fn entry(self) -> &'static str {
        match self {
            Table::Filter => FORWARD_CHAIN,
            Table::Nat => NAT_CHAIN,
        }
    }

    /// The jump's comment: how it is recognised as ours.
    pub fn jump_comment(self) -> &'static str {
        match self {
            Table::Filter => JUMP_COMMENT,
            Table::Nat => NAT_JUMP_COMMENT,
        }
    }

    /// The table whose rules use the set named `name` (or its temporary twin): outgoing NAT's
    /// sets have the letters `c` (pod CIDRs) and `x` (listed destinations), all others are
    /// NetworkPolicy's.
    pub fn of_set(name: &str) -> Table {
        match set_tag(name).chars().nth(1) {
            Some('c' | 'x') => Table::Nat,
            _ => Table::Filter,
        }
    }
}
/// Every chain and set Twill writes starts with one of these; nothing else is touched.
pub const CHAIN_PREFIX: &str = "TWILL-";
pub const SET_PREFIX: &str = "twill-";

/// Mark bits: set when the source pod's egress policies allow the packet / the destination
/// pod's ingress policies allow it. kube-proxy uses 0x4000 and 0x8000; Calico's default
/// mask is 0xffff0000 (not meant to run beside Twill).
pub const EGRESS_ALLOWED: u32 = 0x40000;
pub const INGRESS_ALLOWED: u32 = 0x80000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &std::net::IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// The digit in set names.
    pub fn digit(self) -> char {
        match self {
            Family::V4 => '4',
            Family::V6 => '6',
        }
    }

    /// ipset's `family`.
    pub fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The chain a packet isolated in this direction goes through.
    pub fn chain(self) -> &'static str {
        match self {
            Direction::Ingress => INGRESS_CHAIN,
            Direction::Egress => EGRESS_CHAIN,
        }
    }

    pub fn is_ingress(self) -> bool {
        self == Direction::Ingress
    }

    /// The mark bit an allowing rule sets.
    pub fn bit(self) -> u32 {
        match self {
            Direction::Ingress => INGRESS_ALLOWED,
            Direction::Egress => EGRESS_ALLOWED,
        }
    }

    /// Which end of the packet is the selected (local) pod.
    pub fn local_end(self) -> SetDir {
        match self {
            Direction::Ingress => SetDir::Dst,
            Direction::Egress => SetDir::Src,
        }
    }

    /// Which end is the peer the rule names.
    pub fn peer_end(self) -> SetDir {
        match self {
            Direction::Ingress => SetDir::Src,
            Direction::Egress => SetDir::Dst,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SetKind {
    /// `hash:ip`: pod addresses.
    Ip,
    /// `hash:net`: an ipBlock, its `except` entries marked `nomatch`.
    Net,
    /// `hash:ip,port`: pod address and protocol:port, for named ports.
    IpPort,
}

impl SetKind {
    pub fn ipset_type(self) -> &'static str {
        match self {
            SetKind::Ip => "hash:ip",
            SetKind::Net => "hash:net",
            SetKind::IpPort => "hash:ip,port",
        }
    }
}

/// An ipset: its type and its entries, written as `ipset save` prints them (so desired and
/// observed compare as strings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpSet {
    pub kind: SetKind,
    pub members: BTreeSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SetDir {
    Src,
    Dst,
    /// `dst,dst`: destination address and destination port (`hash:ip,port`).
    DstPort,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// conntrack RELATED,ESTABLISHED: replies and related traffic of an allowed connection.
    Established,
    Set {
        name: String,
        dir: SetDir,
        negate: bool,
    },
    /// The mark has `bits` set (or, negated, not all set).
    Mark {
        bits: u32,
        negate: bool,
    },
    Protocol(cluster::workloads::Protocol),
    /// Destination port range (inclusive), with `multiport`: it knows SCTP without the `sctp`
    /// match module, which kernels without SCTP lack.
    Ports {
        start: u16,
        end: u16,
    },
    /// The source address is in this network (`-s`).
    Source(ipnet::IpNet),
    /// The destination is one of this host's own addresses (`addrtype LOCAL`).
    LocalDestination,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Jump(String),
    Return,
    Drop,
    /// Set these mark bits.
    Mark(u32),
    /// Clear these mark bits.
    ClearMark(u32),
    /// No target: the rule only counts.
    Count,
    /// Source NAT to the outgoing interface's address (nat table only).
    Masquerade,
}

/// One rule; `label` is the human part of its comment (the policy and rule it comes from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub target: Target,
    pub label: String,
}

/// What a rule's counters mean, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counted {
    Allowed {
        policy: String,
        dir: Direction,
    },
    Denied {
        policy: String,
        dir: Direction,
    },
    /// Connections outgoing NAT translated (the nat table sees each one's first packet).
    Masqueraded,
}

/// One family's desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub family: Family,
    /// Chains in the filter table (NetworkPolicy).
    pub chains: BTreeMap<String, Vec<Rule>>,
    /// Chains in the nat table (outgoing NAT).
    pub nat: BTreeMap<String, Vec<Rule>>,
    pub sets: BTreeMap<String, IpSet>,
    /// Rules whose packet counters are per-policy figures, by chain and label.
    pub counted: BTreeMap<(String, String), Counted>,
}

impl Ruleset {
    pub fn new(family: Family) -> Ruleset {
        Ruleset {
            family,
            chains: BTreeMap::new(),
            nat: BTreeMap::new(),
            sets: BTreeMap::new(),
            counted: BTreeMap::new(),
        }
    }

    /// How many rules, over all chains of both tables (the benchmark's figure).
    pub fn rule_count(&self) -> usize {
        self.chains
            .values()
            .chain(self.nat.values())
            .map(Vec::len)
            .sum()
    }

    /// One table's chains.
    pub fn table(&self, t: Table) -> &BTreeMap<String, Vec<Rule>> {
        match t {
            Table::Filter => &self.chains,
            Table::Nat => &self.nat,
        }
    }

    pub fn set_entries(&self) -> usize {
        self.sets.values().map(|s| s.members.len()).sum()
    }
}

/// Names chains and sets after what they mean (stable across restarts and versions).
pub use cluster::hash::fnv;

/// A set's name: `twill-<family digit><kind letter>-<16 hex>` (25 characters; ipset allows 31).
pub fn set_name(family: Family, letter: char, meaning: &str) -> String {
    format!(
        "{SET_PREFIX}{}{letter}-{:016x}",
        family.digit(),
        fnv(meaning)
    )
}

/// A set name ([`set_name`], or its temporary twin) from its family digit on: `4c-…` for
/// `twill-4c-…` and `twill-t4c-…`.
pub fn set_tag(name: &str) -> &str {
    name.strip_prefix(SET_PREFIX)
        .unwrap_or(name)
        .trim_start_matches('t')
}

/// The temporary name a changed set is built under before it is swapped in.
pub fn temp_set_name(name: &str) -> String {
    format!("{SET_PREFIX}t{}", &name[SET_PREFIX.len()..])
}

/// A policy chain's name: `TWILL-PI-` / `TWILL-PE-` and 16 hex (25; iptables allows 28).
pub fn policy_chain(dir: Direction, key: &str) -> String {
    let d = match dir {
        Direction::Ingress => 'I',
        Direction::Egress => 'E',
    };
    format!("{CHAIN_PREFIX}P{d}-{:016x}", fnv(key))
}
