//! A small interpreter of a compiled [`Ruleset`]: one new packet walked through
//! `TWILL-FORWARD` as the kernel would (set lookups with `nomatch`, marks, jumps and returns),
//! or through the nat table's `TWILL-POSTROUTING` ([`masquerades`]).
//! Tests check compiled rules against [`crate::eval`] with it, without a kernel; never used on
//! the hot path.

use crate::ruleset::{Match, Ruleset, SetDir, SetKind, Target, FORWARD_CHAIN, NAT_CHAIN};
use cluster::workloads::Protocol;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
}

/// Whether the packet leaves Twill's chains without being dropped (a new connection: the
/// conntrack rule does not match).
pub fn passes(rs: &Ruleset, pkt: &Packet) -> bool {
    let mut mark = 0u32;
    walk(rs, FORWARD_CHAIN, pkt, &mut mark, 0).unwrap_or(true)
}

/// Whether a new connection's first packet from `src` to `dst` is masqueraded by outgoing NAT
/// (`dst_local`: `dst` is one of this node's addresses).
pub fn masquerades(rs: &Ruleset, src: IpAddr, dst: IpAddr, dst_local: bool) -> bool {
    let pkt = Packet {
        src,
        dst,
        protocol: Protocol::Tcp,
        port: 0,
    };
    for rule in rs.nat.get(NAT_CHAIN).map(Vec::as_slice).unwrap_or_default() {
        let hit = rule.matches.iter().all(|m| match m {
            Match::LocalDestination => dst_local,
            m => matches(rs, m, &pkt, 0),
        });
        if !hit {
            continue;
        }
        match &rule.target {
            Target::Masquerade => return true,
            Target::Return => return false,
            t => panic!("{t:?} is not a target the nat compiler makes"),
        }
    }
    false
}

/// `Some(false)`: dropped; `Some(true)` never happens (no ACCEPT); `None`: returned.
fn walk(rs: &Ruleset, chain: &str, pkt: &Packet, mark: &mut u32, depth: usize) -> Option<bool> {
    assert!(depth < 8, "jump loop at {chain}");
    for rule in rs.chains.get(chain).map(Vec::as_slice).unwrap_or_default() {
        if !rule.matches.iter().all(|m| matches(rs, m, pkt, *mark)) {
            continue;
        }
        match &rule.target {
            Target::Jump(c) => {
                if let Some(v) = walk(rs, c, pkt, mark, depth + 1) {
                    return Some(v);
                }
            }
            Target::Return => return None,
            Target::Drop => return Some(false),
            Target::Mark(b) => *mark |= b,
            Target::ClearMark(b) => *mark &= !b,
            Target::Count => {}
            Target::Masquerade => panic!("MASQUERADE in the filter table"),
        }
    }
    None
}

fn matches(rs: &Ruleset, m: &Match, pkt: &Packet, mark: u32) -> bool {
    match m {
        Match::Established => false,
        Match::Mark { bits, negate } => (mark & bits == *bits) != *negate,
        Match::Protocol(p) => *p == pkt.protocol,
        Match::Ports { start, end } => (*start..=*end).contains(&pkt.port),
        Match::Source(net) => net.contains(&pkt.src),
        Match::LocalDestination => panic!("addrtype is matched in the nat table only"),
        Match::Set { name, dir, negate } => {
            let Some(set) = rs.sets.get(name) else {
                return *negate;
            };
            let hit = match (set.kind, dir) {
                (SetKind::Ip, SetDir::Src) => set.members.contains(&pkt.src.to_string()),
                (SetKind::Ip, SetDir::Dst) => set.members.contains(&pkt.dst.to_string()),
                (SetKind::IpPort, SetDir::DstPort) => set.members.contains(&format!(
                    "{},{}:{}",
                    pkt.dst,
                    pkt.protocol.as_str(),
                    pkt.port
                )),
                (SetKind::Net, SetDir::Src) => net_hit(&set.members, pkt.src),
                (SetKind::Net, SetDir::Dst) => net_hit(&set.members, pkt.dst),
                other => panic!("set {name}: {other:?} is not a combination the compiler makes"),
            };
            hit != *negate
        }
    }
}

/// `hash:net`: the most specific entry containing the address decides; `nomatch` says no.
fn net_hit(members: &std::collections::BTreeSet<String>, ip: IpAddr) -> bool {
    let mut best: Option<(u8, bool)> = None;
    for m in members {
        let (net, nomatch) = match m.strip_suffix(" nomatch") {
            Some(n) => (n, true),
            None => (m.as_str(), false),
        };
        let net: IpNet = net
            .parse()
            .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
            .expect("set entries are addresses or networks");
        if net.contains(&ip) && best.is_none_or(|(len, _)| net.prefix_len() > len) {
            best = Some((net.prefix_len(), nomatch));
        }
    }
    matches!(best, Some((_, false)))
}
