//! The input format: two bytes of [`Config`], then [`Op`]s, each a tag byte and its operands.
//! Missing bytes read as zero, so every byte string is an input; [`encode`] writes one back,
//! which is how the seed corpus is made from recorded UPDATEs.

/// How H relates to A (and A to H).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ibgp,
    Ebgp,
    /// iBGP, and A treats the peer as its route-reflector client.
    Client,
}

/// The families a peer's OPEN offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Families {
    Both,
    V4,
    V6,
    /// No Multiprotocol capability at all: IPv4 unicast implicitly (RFC 4760 §8).
    Implicit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub h_role: Role,
    /// H's OPEN carries the Graceful Restart capability (restart time 120 s, F bit per family).
    pub graceful_restart: bool,
    /// H's OPEN carries the 4-octet AS capability; without it H speaks 2-octet AS_PATHs.
    pub asn4: bool,
    pub families: Families,
    pub extended_message: bool,
    /// H's proposed hold time (0 = no keepalives).
    pub hold_time: u16,
    /// A exports everything to H (else only what A originates, as Twill nodes do).
    pub export_all_to_h: bool,
    pub b_role: Role,
    pub export_all_to_b: bool,
    /// A imports from H only prefixes inside the pod network (else anything).
    pub import_pods_only: bool,
    /// A closes H's session above 8 accepted prefixes.
    pub max_prefixes: bool,
    /// H's first OPEN is the first operation's bytes (an `Op::Raw`), not the harness's: the
    /// fuzzer mutates a valid OPEN and explores capability negotiation.
    pub own_open: bool,
}

fn role(bits: u8) -> Role {
    match bits & 3 {
        1 => Role::Ebgp,
        2 => Role::Client,
        _ => Role::Ibgp,
    }
}

fn role_bits(r: Role) -> u8 {
    match r {
        Role::Ibgp => 0,
        Role::Ebgp => 1,
        Role::Client => 2,
    }
}

impl Config {
    pub fn parse(b0: u8, b1: u8) -> Config {
        Config {
            h_role: role(b0),
            graceful_restart: b0 & 4 != 0,
            asn4: b0 & 8 != 0,
            families: match (b0 >> 4) & 3 {
                1 => Families::V4,
                2 => Families::V6,
                3 => Families::Implicit,
                _ => Families::Both,
            },
            extended_message: b0 & 0x40 != 0,
            export_all_to_h: b0 & 0x80 != 0,
            hold_time: [90, 3, 0, 240][(b1 & 3) as usize],
            b_role: role(b1 >> 2),
            import_pods_only: b1 & 0x10 != 0,
            max_prefixes: b1 & 0x20 != 0,
            export_all_to_b: b1 & 0x40 != 0,
            own_open: b1 & 0x80 != 0,
        }
    }

    pub fn bytes(&self) -> [u8; 2] {
        let fam = match self.families {
            Families::Both => 0,
            Families::V4 => 1,
            Families::V6 => 2,
            Families::Implicit => 3,
        };
        let b0 = role_bits(self.h_role)
            | u8::from(self.graceful_restart) << 2
            | u8::from(self.asn4) << 3
            | fam << 4
            | u8::from(self.extended_message) << 6
            | u8::from(self.export_all_to_h) << 7;
        let hold = [90, 3, 0, 240]
            .iter()
            .position(|h| *h == self.hold_time)
            .unwrap_or(0) as u8;
        let b1 = hold
            | role_bits(self.b_role) << 2
            | u8::from(self.import_pods_only) << 4
            | u8::from(self.max_prefixes) << 5
            | u8::from(self.export_all_to_b) << 6
            | u8::from(self.own_open) << 7;
        [b0, b1]
    }
}

/// Which core a timer or a configuration change is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Bytes from H on its connection to A, as they are (framing included).
    Raw(Vec<u8>),
    /// An UPDATE from H built from the prefix pool (indices) and an attribute recipe.
    Update {
        withdraw: Vec<u8>,
        announce: Vec<u8>,
        attrs: u16,
    },
    EndOfRib {
        v6: bool,
    },
    Keepalive,
    RouteRefresh {
        v6: bool,
    },
    Notification {
        code: u8,
        subcode: u8,
    },
    /// Fire the `index`-th armed timer of a core (in key order).
    FireTimer {
        side: Side,
        index: u8,
    },
    /// H's TCP connection closes.
    Close,
    /// H connects again and goes through OPEN / KEEPALIVE.
    Reconnect,
    /// H connects again and sends nothing yet (A answers with its OPEN): with a later
    /// `Open`, a collision between two connections; while A's session is Established, a
    /// possible restart that replaces the session only once it comes up, or, closed first, a
    /// connection H abandoned.
    HalfOpen,
    /// H's OPEN on its newest connection.
    Open,
    /// A core originates the prefixes of its pool selected by `mask`.
    Originate {
        side: Side,
        mask: u8,
    },
    /// A's configuration of H changes (import, export, reflector client, max-prefix).
    ReconfigureH {
        bits: u8,
    },
    /// A's configuration of B changes (export, reflector client); bit 4 sets A's cluster ID
    /// (bit 5: on or off). Bit 6 instead restarts B's process (graceful restart; bit 7: killed
    /// rather than stopped).
    ReconfigureB {
        bits: u8,
    },
}

const TAGS: u8 = 14;

/// At most this many operations per input: each runs both cores' invariant checks.
pub const MAX_OPS: usize = 256;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b.to_vec()
    }
}

fn side(b: u8) -> Side {
    if b & 0x80 == 0 {
        Side::A
    } else {
        Side::B
    }
}

pub fn parse(data: &[u8]) -> (Config, Vec<Op>) {
    let mut r = Reader(data);
    let cfg = Config::parse(r.u8(), r.u8());
    let mut ops = Vec::new();
    while !r.0.is_empty() && ops.len() < MAX_OPS {
        let op = match r.u8() % TAGS {
            0 => {
                let n = r.u16() as usize;
                Op::Raw(r.bytes(n))
            }
            1 => {
                let counts = r.u8();
                let withdraw = (0..(counts >> 4) % 5).map(|_| r.u8()).collect();
                let announce = (0..(counts & 15) % 5).map(|_| r.u8()).collect();
                Op::Update {
                    withdraw,
                    announce,
                    attrs: r.u16(),
                }
            }
            2 => Op::EndOfRib {
                v6: r.u8() & 1 != 0,
            },
            3 => Op::Keepalive,
            4 => Op::RouteRefresh {
                v6: r.u8() & 1 != 0,
            },
            5 => Op::Notification {
                code: r.u8(),
                subcode: r.u8(),
            },
            6 => {
                let b = r.u8();
                Op::FireTimer {
                    side: side(b),
                    index: b & 0x7f,
                }
            }
            7 => Op::Close,
            8 => Op::Reconnect,
            9 => {
                let b = r.u8();
                Op::Originate {
                    side: side(b),
                    mask: b & 0x7f,
                }
            }
            10 => Op::ReconfigureH { bits: r.u8() },
            11 => Op::ReconfigureB { bits: r.u8() },
            12 => Op::HalfOpen,
            _ => Op::Open,
        };
        ops.push(op);
    }
    (cfg, ops)
}

/// The input that [`parse`] reads back as `cfg` and `ops`.
pub fn encode(cfg: &Config, ops: &[Op]) -> Vec<u8> {
    let mut out = cfg.bytes().to_vec();
    let side_bit = |s: Side| if s == Side::B { 0x80 } else { 0 };
    for op in ops {
        match op {
            Op::Raw(b) => {
                out.push(0);
                out.extend_from_slice(&(b.len() as u16).to_be_bytes());
                out.extend_from_slice(b);
            }
            Op::Update {
                withdraw,
                announce,
                attrs,
            } => {
                out.push(1);
                out.push((withdraw.len() as u8) << 4 | announce.len() as u8);
                out.extend_from_slice(withdraw);
                out.extend_from_slice(announce);
                out.extend_from_slice(&attrs.to_be_bytes());
            }
            Op::EndOfRib { v6 } => out.extend_from_slice(&[2, u8::from(*v6)]),
            Op::Keepalive => out.push(3),
            Op::RouteRefresh { v6 } => out.extend_from_slice(&[4, u8::from(*v6)]),
            Op::Notification { code, subcode } => out.extend_from_slice(&[5, *code, *subcode]),
            Op::FireTimer { side, index } => out.extend_from_slice(&[6, side_bit(*side) | index]),
            Op::Close => out.push(7),
            Op::Reconnect => out.push(8),
            Op::Originate { side, mask } => out.extend_from_slice(&[9, side_bit(*side) | mask]),
            Op::ReconfigureH { bits } => out.extend_from_slice(&[10, *bits]),
            Op::ReconfigureB { bits } => out.extend_from_slice(&[11, *bits]),
            Op::HalfOpen => out.push(12),
            Op::Open => out.push(13),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_and_op_round_trips() {
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                let c = Config::parse(b0, b1);
                assert_eq!(Config::parse(c.bytes()[0], c.bytes()[1]), c);
            }
        }
        let cfg = Config::parse(0x9d, 0x45);
        let ops = vec![
            Op::Raw(vec![1, 2, 3]),
            Op::Update {
                withdraw: vec![4],
                announce: vec![1, 2],
                attrs: 0x1234,
            },
            Op::EndOfRib { v6: true },
            Op::Keepalive,
            Op::RouteRefresh { v6: false },
            Op::Notification {
                code: 6,
                subcode: 2,
            },
            Op::FireTimer {
                side: Side::B,
                index: 3,
            },
            Op::Close,
            Op::Reconnect,
            Op::Originate {
                side: Side::A,
                mask: 5,
            },
            Op::ReconfigureH { bits: 7 },
            Op::ReconfigureB { bits: 1 },
            Op::HalfOpen,
            Op::Open,
        ];
        assert_eq!(parse(&encode(&cfg, &ops)), (cfg, ops));
    }
}
