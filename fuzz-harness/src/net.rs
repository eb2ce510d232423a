//! The three parties and the wiring between them: H (played by the harness), A (the core under
//! test) and B (a second core), with every output of a core delivered, checked, or recorded.

use crate::input::{Config, Families, Op, Role, Side};
use ipnet::IpNet;
use speaker::core::{ConnId, Core, Input, Output, TimerKey};
use speaker::fsm::State;
use speaker::notification::{code, Notification};
use speaker::rib::decision::DEFAULT_LOCAL_PREF;
use speaker::wire::{self, AsPath, AsSegment, Family, Message, Negotiated, Origin, PathAttrs};
use speaker::{
    BestRoute, ExportFilter, ImportFilter, NextHopOwners, PeerConfig, PrefixRule, ShutdownMode,
    SpeakerConfig,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const H: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const A_AS: u32 = 64512;

fn v6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last)
}

fn net(s: &str) -> IpNet {
    s.parse().expect("pool prefix")
}

/// What H may announce or withdraw (by index, modulo its length).
const H_POOL: [&str; 12] = [
    "10.244.1.0/24",
    "10.244.2.0/24",
    "10.244.1.128/25",
    "10.244.103.0/24",
    "10.244.100.0/24",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "192.0.2.0/24",
    "fd00:244:1::/64",
    "fd00:244:103::/64",
    "fd00:244:100::/64",
    "2001:db8::/32",
];
/// What A and B may originate (a bit of the mask each).
const A_POOL: [&str; 7] = [
    "10.244.100.0/24",
    "fd00:244:100::/64",
    "10.244.1.0/24",
    "0.0.0.0/0",
    "10.0.0.0/8",
    "10.244.1.128/25",
    "fd00:244:1::/64",
];
const B_POOL: [&str; 7] = [
    "10.244.103.0/24",
    "fd00:244:103::/64",
    "10.244.1.0/24",
    "10.244.2.0/24",
    "192.0.2.0/24",
    "fd00:244:1::/64",
    "0.0.0.0/0",
];

fn pool(p: &[&str], mask: u8) -> Vec<IpNet> {
    p.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| net(s))
        .collect()
}

fn peer_as(r: Role, ebgp_as: u32) -> u32 {
    if r == Role::Ebgp {
        ebgp_as
    } else {
        A_AS
    }
}

/// What a run reached, for `fuzz-replay`'s report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// A's session with H was Established right after the OPEN exchange.
    pub established: bool,
    /// The furthest state A's session with H reached (Established is furthest).
    pub deepest: Option<State>,
    pub ops: usize,
    /// UPDATEs A received from H, and the most prefixes it held accepted from H at once.
    pub updates_from_h: u64,
    pub max_accepted_from_h: usize,
    pub max_loc_rib: usize,
    /// UPDATEs A sent to B and to H.
    pub updates_to_b: u64,
    pub updates_to_h: u64,
    /// Times A's session with H left Established.
    pub h_downs: u64,
    pub timers_fired: u64,
    /// The most routes A held from B as stale at once (B restarting), and from H.
    pub max_stale_from_b: usize,
    pub max_stale_from_h: usize,
}

pub struct Net {
    cfg: Config,
    a: Core,
    b: Core,
    now: Instant,
    /// A's open connections from H, newest last.
    h_conns: Vec<ConnId>,
    next_port: u16,
    /// A ⇄ B connections: (side, conn) → (other side, its conn).
    links: HashMap<(Side, ConnId), (Side, ConnId)>,
    queue: VecDeque<(Side, Input)>,
    timers_a: BTreeSet<(IpAddr, TimerKey)>,
    timers_b: BTreeSet<(IpAddr, TimerKey)>,
    /// What each of H's connections negotiated (from the OPEN H sent on it): how H encodes
    /// its UPDATEs there, and how A's messages on it must decode. Before H's OPEN: initial.
    h_neg: HashMap<ConnId, Negotiated>,
    /// H's AS relation, for the contexts above.
    h_ebgp: bool,
    /// The bytes H sent on each connection until its first message is complete: if that one
    /// is an OPEN, it is what A negotiated there (raw bytes may carry it, not only `Open`).
    h_first: HashMap<ConnId, Vec<u8>>,
    ab_neg: Negotiated,
    stats: Stats,
    was_established: bool,
    /// `FUZZ_TRACE` set: print every input and output (to read a crash).
    trace: bool,
    /// A's best routes as its route events told them: must equal its Loc-RIB.
    a_routes: BTreeMap<IpNet, BestRoute>,
}

impl Net {
    pub fn new(cfg: Config) -> Net {
        let h_as = peer_as(cfg.h_role, 65002);
        let b_as = peer_as(cfg.b_role, 65003);
        let mut ac = SpeakerConfig::new(A_AS, A);
        ac.originate = pool(&A_POOL, 1);
        // A reflects (cluster 10.255.0.1, which the UPDATE recipes also put in CLUSTER_LISTs)
        // when it has a client.
        if cfg.h_role == Role::Client || cfg.b_role == Role::Client {
            ac.cluster_id = Some(Ipv4Addr::new(10, 255, 0, 1));
        }
        let mut bc = SpeakerConfig::new(b_as, B);
        bc.originate = pool(&B_POOL, 3);
        let mut a = Core::new(ac).expect("A's config");
        let b = Core::new(bc).expect("B's config");
        a.set_route_events(true);
        let ab_neg = Negotiated {
            asn4: true,
            extended_message: true,
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            ebgp: b_as != A_AS,
        };
        let mut n = Net {
            cfg,
            a,
            b,
            now: Instant::now(),
            h_conns: Vec::new(),
            next_port: 40000,
            links: HashMap::new(),
            queue: VecDeque::new(),
            timers_a: BTreeSet::new(),
            timers_b: BTreeSet::new(),
            h_neg: HashMap::new(),
            h_ebgp: h_as != A_AS,
            h_first: HashMap::new(),
            ab_neg,
            stats: Stats::default(),
            was_established: false,
            trace: std::env::var_os("FUZZ_TRACE").is_some(),
            a_routes: BTreeMap::new(),
        };
        n.push(Side::A, Input::AddPeer(n.h_peer(0)));
        n.push(Side::A, Input::AddPeer(n.b_peer(0)));
        let to_a = n.to_a();
        n.push(Side::B, Input::AddPeer(to_a));
        n.settle();
        n
    }

    /// B's process restarts: stopped gracefully (or killed: its connections just close), then
    /// a new B that found its forwarding state (graceful restart's R and F bits, deferral)
    /// with A as its peer again. A helps (stale routes, End-of-RIB sweep) if both offered it.
    fn restart_b(&mut self, kill: bool) {
        if !kill {
            self.push(Side::B, Input::Shutdown(ShutdownMode::Graceful));
            self.settle();
        }
        let ends: Vec<_> = self
            .links
            .keys()
            .filter(|(side, _)| *side == Side::B)
            .copied()
            .collect();
        for end in ends {
            if let Some((other, their)) = self.links.remove(&end) {
                self.links.remove(&(other, their));
                self.push(other, Input::Closed { conn: their });
            }
        }
        self.queue.retain(|(side, _)| *side == Side::A);
        self.timers_b.clear();
        self.settle();
        let mut bc = SpeakerConfig::new(peer_as(self.cfg.b_role, 65003), B);
        bc.originate = pool(&B_POOL, 2);
        if let Some(gr) = bc.graceful_restart.as_mut() {
            gr.restarting = true;
        }
        self.b = Core::new(bc).expect("B's config");
        self.push(Side::B, Input::AddPeer(self.to_a()));
    }

    /// B's configuration of A (passive: A dials).
    fn to_a(&self) -> PeerConfig {
        let mut to_a = PeerConfig::new(IpAddr::V4(A), A_AS);
        to_a.passive = true;
        to_a.next_hop_v6 = Some(v6(3));
        to_a
    }

    /// A's configuration of H; `bits` as [`Op::ReconfigureH`] changes it.
    fn h_peer(&self, bits: u8) -> PeerConfig {
        let c = &self.cfg;
        let mut p = PeerConfig::new(IpAddr::V4(H), peer_as(c.h_role, 65002));
        p.passive = true;
        p.next_hop_v6 = Some(v6(1));
        // Bit 2 toggles reflection where it is allowed (iBGP); bit 6 asks for it even on an
        // eBGP peer, which A must refuse and leave the session alone.
        let ibgp = c.h_role != Role::Ebgp;
        p.reflector_client =
            ((c.h_role == Role::Client) ^ (bits & 4 != 0 && ibgp)) || bits & 0x40 != 0;
        p.import = if bits & 0x20 != 0 {
            ImportFilter::exact([net("10.244.1.0/24"), net("fd00:244:1::/64")])
        } else if c.import_pods_only ^ (bits & 1 != 0) {
            ImportFilter::Prefixes(vec![
                PrefixRule {
                    prefix: net("10.244.0.0/16"),
                    max_len: 32,
                },
                PrefixRule {
                    prefix: net("fd00:244::/48"),
                    max_len: 128,
                },
            ])
        } else {
            ImportFilter::Any
        };
        p.export = if c.export_all_to_h ^ (bits & 2 != 0) {
            ExportFilter::All
        } else {
            ExportFilter::Originated
        };
        p.max_prefixes = (c.max_prefixes ^ (bits & 8 != 0)).then_some(8);
        if bits & 0x80 != 0 {
            // The agent's hijack filter: these pod CIDRs only with their owner's next hop.
            p.next_hop_owners = NextHopOwners::new([
                (net("10.244.1.0/24"), vec![IpAddr::V4(H)]),
                (net("10.244.2.0/24"), vec![IpAddr::V4(B)]),
            ]);
        }
        if bits & 0x10 != 0 {
            p.hold_time = 30;
            p.keepalive = 10;
        }
        p
    }

    /// A's configuration of B.
    fn b_peer(&self, bits: u8) -> PeerConfig {
        let c = &self.cfg;
        let mut p = PeerConfig::new(IpAddr::V4(B), peer_as(c.b_role, 65003));
        p.next_hop_v6 = Some(v6(1));
        p.reflector_client = (c.b_role == Role::Client) ^ (bits & 2 != 0 && c.b_role != Role::Ebgp);
        p.export = if bits & 8 != 0 {
            ExportFilter::OriginatedAndReflected
        } else if c.export_all_to_b ^ (bits & 1 != 0) {
            ExportFilter::All
        } else {
            ExportFilter::Originated
        };
        if bits & 4 != 0 {
            p.keepalive = 20;
        }
        p
    }

    fn push(&mut self, side: Side, i: Input) {
        self.queue.push_back((side, i));
    }

    fn core(&mut self, side: Side) -> &mut Core {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Deliver until nothing moves. A loop that never settles is a finding in itself.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            let Some((side, input)) = self.queue.pop_front() else {
                self.observe();
                return;
            };
            // Time moves a little with each input; timers fire only when an op says so.
            self.now += Duration::from_millis(1);
            let now = self.now;
            if self.trace {
                eprintln!("{side:?} <- {}", brief(&input));
            }
            let out = self.core(side).handle(input, now);
            for o in out {
                if self.trace {
                    eprintln!("{side:?} -> {}", brief_out(&o));
                }
                self.output(side, o);
            }
        }
        panic!("the cores did not settle after 100,000 inputs");
    }

    fn output(&mut self, side: Side, o: Output) {
        match o {
            Output::Connect { conn, remote, .. } => {
                let (other, local_ip) = match (side, remote.ip()) {
                    (Side::A, ip) if ip == IpAddr::V4(B) => (Side::B, A),
                    (Side::B, ip) if ip == IpAddr::V4(A) => (Side::A, B),
                    _ => {
                        // H never listens: A's peer config for it is passive, so this is a
                        // connection to nowhere.
                        self.push(
                            side,
                            Input::ConnectFailed {
                                conn,
                                error: "connection refused".into(),
                            },
                        );
                        return;
                    }
                };
                let their = self.core(other).alloc_conn();
                self.links.insert((side, conn), (other, their));
                self.links.insert((other, their), (side, conn));
                self.next_port += 1;
                let local = SocketAddr::new(IpAddr::V4(local_ip), self.next_port);
                self.push(
                    other,
                    Input::Incoming {
                        conn: their,
                        remote: local,
                        local: SocketAddr::new(remote.ip(), 179),
                    },
                );
                self.queue
                    .push_front((side, Input::Connected { conn, local }));
            }
            Output::Send { conn, bytes } => {
                if side == Side::A && self.h_conns.contains(&conn) {
                    let neg = self.h_context(conn);
                    self.stats.updates_to_h += check_sent("A to H", &bytes, &neg, false);
                } else if let Some((other, their)) = self.links.get(&(side, conn)).copied() {
                    let neg = self.ab_neg.clone();
                    let what = if side == Side::A { "A to B" } else { "B to A" };
                    let n = check_sent(what, &bytes, &neg, true);
                    if side == Side::A {
                        self.stats.updates_to_b += n;
                    }
                    self.push(other, Input::Data { conn: their, bytes });
                }
            }
            Output::Close { conn } => {
                if side == Side::A {
                    self.h_conns.retain(|c| *c != conn);
                }
                if let Some((other, their)) = self.links.remove(&(side, conn)) {
                    self.links.remove(&(other, their));
                    self.push(other, Input::Closed { conn: their });
                }
            }
            Output::SetTimer { peer, key, after } => {
                let set = match side {
                    Side::A => &mut self.timers_a,
                    Side::B => &mut self.timers_b,
                };
                if after.is_some() {
                    set.insert((peer, key));
                } else {
                    set.remove(&(peer, key));
                }
            }
            Output::Route(r) if side == Side::A => match r.best {
                Some(b) => {
                    self.a_routes.insert(r.prefix, b);
                }
                None => {
                    self.a_routes.remove(&r.prefix);
                }
            },
            Output::ListenKey { .. } | Output::Route(_) => {}
        }
    }

    /// H connects (again) and goes through OPEN / KEEPALIVE.
    pub fn establish_h(&mut self, open: Vec<u8>) {
        self.connect_h();
        self.send_from_h(open);
        self.send_from_h(wire::encode_keepalive());
        self.settle();
        if self.stats.ops == 0 {
            self.stats.established = self.h_state() == State::Established;
        }
    }

    /// A new TCP connection from H, nothing sent on it yet.
    fn connect_h(&mut self) {
        let conn = self.a.alloc_conn();
        self.h_conns.push(conn);
        self.next_port += 1;
        self.push(
            Side::A,
            Input::Incoming {
                conn,
                remote: SocketAddr::new(IpAddr::V4(H), self.next_port),
                local: SocketAddr::new(IpAddr::V4(A), 179),
            },
        );
    }

    /// Watch the start of what H sends on `conn`: when its first message is an OPEN, what A
    /// negotiates there follows from it (A itself offers both families, 4-octet AS and
    /// Extended Message), whoever wrote it. Any other first message ends the session.
    fn note_first_message(&mut self, conn: ConnId, bytes: &[u8]) {
        if self.h_neg.contains_key(&conn) {
            return;
        }
        let buf = self.h_first.entry(conn).or_default();
        if buf.len() > wire::MAX_MESSAGE {
            return;
        }
        buf.extend_from_slice(bytes);
        let Ok(Some(len)) = wire::frame_len(buf, wire::MAX_MESSAGE) else {
            return;
        };
        let first = self.h_first.remove(&conn).unwrap_or_default();
        let neg = match wire::decode(&first[..len], &Negotiated::initial()) {
            Ok(Message::Open(o)) => Negotiated {
                asn4: o.caps.asn4.is_some(),
                extended_message: o.caps.extended_message,
                families: o.caps.families.clone(),
                ebgp: self.h_ebgp,
            },
            _ => Negotiated::initial(),
        };
        self.h_neg.insert(conn, neg);
    }

    /// The context of one of H's connections.
    fn h_context(&self, conn: ConnId) -> Negotiated {
        self.h_neg
            .get(&conn)
            .cloned()
            .unwrap_or_else(Negotiated::initial)
    }

    fn h_state(&self) -> State {
        self.a
            .peer_brief(IpAddr::V4(H))
            .map_or(State::Idle, |(s, _, _)| s)
    }

    /// Bytes from H on its newest connection (none: nothing to send them on).
    fn send_from_h(&mut self, bytes: Vec<u8>) {
        if let Some(conn) = self.h_conns.last().copied() {
            self.note_first_message(conn, &bytes);
            self.push(Side::A, Input::Data { conn, bytes });
        }
    }

    pub fn apply(&mut self, op: &Op) {
        self.stats.ops += 1;
        match op {
            Op::Raw(bytes) => self.send_from_h(bytes.clone()),
            Op::Update {
                withdraw,
                announce,
                attrs,
            } => {
                let pick = |i: &u8| net(H_POOL[*i as usize % H_POOL.len()]);
                let withdraw: Vec<IpNet> = withdraw.iter().map(pick).collect();
                let (a4, a6): (Vec<IpNet>, Vec<IpNet>) =
                    announce.iter().map(pick).partition(|p| p.addr().is_ipv4());
                let mut groups = Vec::new();
                for (prefixes, is_v6) in [(a4, false), (a6, true)] {
                    if !prefixes.is_empty() {
                        groups.push((Arc::new(self.recipe(*attrs, is_v6)), prefixes));
                    }
                }
                let neg = self.h_conns.last().map(|c| self.h_context(*c));
                for bytes in
                    wire::pack_updates(&neg.unwrap_or_else(Negotiated::initial), &withdraw, &groups)
                {
                    self.send_from_h(bytes);
                }
            }
            Op::EndOfRib { v6 } => self.send_from_h(wire::encode_end_of_rib(family(*v6))),
            Op::Keepalive => self.send_from_h(wire::encode_keepalive()),
            Op::RouteRefresh { v6 } => self.send_from_h(wire::encode_route_refresh(family(*v6))),
            Op::Notification { code, subcode } => self.send_from_h(wire::encode_notification(
                &Notification::new(*code, *subcode, Vec::new()),
            )),
            Op::FireTimer { side, index } => {
                let set = match side {
                    Side::A => &mut self.timers_a,
                    Side::B => &mut self.timers_b,
                };
                if !set.is_empty() {
                    let k = *set
                        .iter()
                        .nth(*index as usize % set.len())
                        .expect("in range");
                    set.remove(&k);
                    self.stats.timers_fired += 1;
                    self.push(
                        *side,
                        Input::Timer {
                            peer: k.0,
                            key: k.1,
                        },
                    );
                }
            }
            Op::Close => {
                if let Some(conn) = self.h_conns.pop() {
                    self.push(Side::A, Input::Closed { conn });
                }
            }
            Op::Reconnect => {
                self.establish_h(h_open(&self.cfg));
                return;
            }
            Op::HalfOpen => self.connect_h(),
            Op::Open => self.send_from_h(h_open(&self.cfg)),
            Op::Originate { side, mask } => {
                let p = match side {
                    Side::A => pool(&A_POOL, *mask),
                    Side::B => pool(&B_POOL, *mask),
                };
                self.push(*side, Input::SetOriginated(p));
            }
            Op::ReconfigureH { bits } => {
                let p = self.h_peer(*bits);
                self.push(Side::A, Input::UpdatePeer(p));
            }
            Op::ReconfigureB { bits } if bits & 0x40 != 0 => self.restart_b(bits & 0x80 != 0),
            Op::ReconfigureB { bits } => {
                if bits & 0x10 != 0 {
                    // A starts or stops reflecting at run time (a node labelled a reflector).
                    let id = (bits & 0x20 != 0).then_some(Ipv4Addr::new(10, 255, 0, 1));
                    self.push(Side::A, Input::SetClusterId(id));
                }
                let p = self.b_peer(*bits);
                self.push(Side::A, Input::UpdatePeer(p));
            }
        }
        self.settle();
    }

    /// Attributes from a 16-bit recipe (see the bit layout in the code).
    fn recipe(&self, r: u16, is_v6: bool) -> PathAttrs {
        let h_as = peer_as(self.cfg.h_role, 65002);
        let bits = |shift: u16, n: u16| (r >> shift) & ((1 << n) - 1);
        let hop = |v4: Ipv4Addr, last: u16| {
            if is_v6 {
                IpAddr::V6(v6(last))
            } else {
                IpAddr::V4(v4)
            }
        };
        let mut a = PathAttrs::local(match bits(5, 2) {
            0 => hop(H, 2),
            1 => hop(B, 3),
            2 => hop(A, 1),
            _ => hop(Ipv4Addr::new(10, 9, 9, 9), 9),
        });
        a.origin = match bits(0, 2) {
            1 => Origin::Egp,
            2 => Origin::Incomplete,
            _ => Origin::Igp,
        };
        let seq = |v: Vec<u32>| AsPath(vec![AsSegment::Sequence(v)]);
        a.as_path = match bits(2, 3) {
            0 => AsPath::default(),
            1 => seq(vec![h_as]),
            2 => seq(vec![h_as, 65100]),
            3 => seq(vec![h_as, A_AS]),
            4 => seq(vec![65100]),
            5 => AsPath(vec![
                AsSegment::Sequence(vec![h_as]),
                AsSegment::Set(vec![65101, 65102]),
            ]),
            6 => seq(vec![h_as, 4_200_000_000]),
            _ => seq(vec![h_as; 20]),
        };
        a.med = (bits(7, 1) == 1).then_some(50);
        a.local_pref = (bits(8, 1) == 1).then_some(DEFAULT_LOCAL_PREF + 100);
        if bits(9, 1) == 1 {
            a.communities = vec![65000 << 16 | 1, 0xFFFF_FF01];
        }
        a.originator_id = match bits(10, 2) {
            1 => Some(A),
            2 => Some(H),
            3 => Some(B),
            _ => None,
        };
        a.cluster_list = match bits(12, 2) {
            1 => vec![A],
            2 => vec![Ipv4Addr::new(10, 255, 0, 1)],
            3 => vec![Ipv4Addr::new(10, 255, 0, 1), A],
            _ => Vec::new(),
        };
        if bits(14, 1) == 1 {
            a.atomic_aggregate = true;
            a.aggregator = Some((h_as, H));
        }
        if is_v6 && bits(15, 1) == 1 {
            a.next_hop_local = Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2));
        }
        a
    }

    /// Record how far the session with H got.
    fn observe(&mut self) {
        let Some((state, accepted, updates)) = self.a.peer_brief(IpAddr::V4(H)) else {
            return;
        };
        let rank = |s: State| s as u8;
        if self.stats.deepest.is_none_or(|d| rank(state) > rank(d)) {
            self.stats.deepest = Some(state);
        }
        let established = state == State::Established;
        if self.was_established && !established {
            self.stats.h_downs += 1;
        }
        self.was_established = established;
        self.stats.updates_from_h = updates;
        self.stats.max_accepted_from_h = self.stats.max_accepted_from_h.max(accepted);
        self.stats.max_loc_rib = self.stats.max_loc_rib.max(self.a.loc_rib_len());
        // Cheap enough here: two peers.
        for p in self.a.snapshot(self.now) {
            let max = if p.address == IpAddr::V4(B) {
                &mut self.stats.max_stale_from_b
            } else {
                &mut self.stats.max_stale_from_h
            };
            *max = (*max).max(p.gr.stale_routes);
        }
    }

    /// Both cores' invariants, A's route events against its Loc-RIB, and, while A and B are
    /// Established both ways, each side's Adj-RIB-In from the other equal to what the other
    /// advertised: what went over the wire arrived as sent. Panics naming what broke.
    pub fn check(&self) {
        for (name, core) in [("A", &self.a), ("B", &self.b)] {
            let bad = core.check_invariants();
            assert!(bad.is_empty(), "core {name}: {bad:#?}");
        }
        let rib: BTreeMap<IpNet, BestRoute> = self
            .a
            .routes()
            .into_iter()
            .filter_map(|e| e.best.map(|b| (e.prefix, b)))
            .collect();
        assert!(
            rib == self.a_routes,
            "A's route events {:#?} differ from its Loc-RIB {rib:#?}",
            self.a_routes
        );
        let up = |c: &Core, peer: Ipv4Addr| {
            c.peer_brief(IpAddr::V4(peer))
                .is_some_and(|(s, _, _)| s == State::Established)
        };
        if up(&self.a, B) && up(&self.b, A) {
            for (from, to, from_addr, to_addr, what) in [
                (&self.a, &self.b, A, B, "A to B"),
                (&self.b, &self.a, B, A, "B to A"),
            ] {
                let sent: Vec<(IpNet, PathAttrs)> = from
                    .adj_rib_out(IpAddr::V4(to_addr))
                    .into_iter()
                    .map(|(p, a)| (p, (*a).clone()))
                    .collect();
                let got: Vec<(IpNet, PathAttrs)> = to
                    .adj_rib_in(IpAddr::V4(from_addr))
                    .into_iter()
                    .map(|(p, a, _)| (p, (*a).clone()))
                    .collect();
                assert!(
                    sent == got,
                    "{what}: advertised {sent:#?}, received {got:#?}"
                );
            }
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

fn brief(i: &Input) -> String {
    match i {
        Input::Data { conn, bytes } => format!(
            "Data conn {conn} type {:?} ({} bytes)",
            bytes.get(18),
            bytes.len()
        ),
        other => format!("{other:?}"),
    }
}

fn brief_out(o: &Output) -> String {
    match o {
        Output::Send { conn, bytes } => format!(
            "Send conn {conn} type {:?} ({} bytes)",
            bytes.get(18),
            bytes.len()
        ),
        other => format!("{other:?}"),
    }
}

fn family(v6: bool) -> Family {
    if v6 {
        Family::Ipv6Unicast
    } else {
        Family::Ipv4Unicast
    }
}

/// H's OPEN, written by hand so that every capability choice is the fuzzer's (our own
/// encoder always offers 4-octet AS and no graceful restart).
pub fn h_open(c: &Config) -> Vec<u8> {
    let asn = peer_as(c.h_role, 65002);
    let mut caps: Vec<u8> = Vec::new();
    let mut cap = |code: u8, value: &[u8]| {
        caps.extend_from_slice(&[code, value.len() as u8]);
        caps.extend_from_slice(value);
    };
    let fams: &[(u16, u8)] = match c.families {
        Families::Both => &[(1, 1), (2, 1)],
        Families::V4 => &[(1, 1)],
        Families::V6 => &[(2, 1)],
        Families::Implicit => &[],
    };
    for (afi, safi) in fams {
        let mut v = afi.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, *safi]);
        cap(1, &v);
    }
    cap(2, &[]);
    if c.asn4 {
        cap(65, &asn.to_be_bytes());
    }
    if c.graceful_restart {
        // Restart time 120 s; per family: AFI, SAFI, Forwarding State preserved.
        let mut v = 120u16.to_be_bytes().to_vec();
        for (afi, safi) in fams.iter().chain(fams.is_empty().then_some(&(1, 1))) {
            v.extend_from_slice(&afi.to_be_bytes());
            v.extend_from_slice(&[*safi, 0x80]);
        }
        cap(64, &v);
    }
    if c.extended_message {
        cap(6, &[]);
    }
    let mut body = vec![4];
    body.extend_from_slice(&(asn as u16).to_be_bytes());
    body.extend_from_slice(&c.hold_time.to_be_bytes());
    body.extend_from_slice(&H.octets());
    body.push(caps.len() as u8 + 2);
    body.extend_from_slice(&[2, caps.len() as u8]);
    body.extend_from_slice(&caps);
    let mut msg = vec![0xff; 16];
    msg.extend_from_slice(&(19 + body.len() as u16).to_be_bytes());
    msg.push(1);
    msg.extend_from_slice(&body);
    msg
}

/// Every message in `bytes` must decode under `neg` with nothing treated as withdrawn or
/// discarded; between the two cores, a NOTIFICATION may only be a Cease or a hold timer
/// expiry (an error would mean one refused what the other sent). Returns the UPDATEs seen.
fn check_sent(what: &str, bytes: &[u8], neg: &Negotiated, between_cores: bool) -> u64 {
    let mut rest = bytes;
    let mut updates = 0;
    while !rest.is_empty() {
        let len = match wire::frame_len(rest, neg.max_message()) {
            Ok(Some(len)) => len,
            other => panic!("{what}: a message that does not frame: {other:?} in {rest:02x?}"),
        };
        match wire::decode(&rest[..len], neg) {
            Ok(Message::Update(u)) => {
                assert!(
                    u.treat_as_withdraw.is_none() && u.discarded.is_empty(),
                    "{what}: an UPDATE the receiver must repair: {u:?}"
                );
                updates += 1;
            }
            Ok(Message::Notification(n)) if between_cores => assert!(
                n.code == code::CEASE || n.code == code::HOLD_TIMER_EXPIRED,
                "{what}: {n}"
            ),
            Ok(_) => {}
            // The OPEN is sent before anything is negotiated, and decodes with the initial
            // context; everything else must decode with the session's.
            Err(n) => match wire::decode(&rest[..len], &Negotiated::initial()) {
                Ok(Message::Open(_)) => {}
                _ => panic!("{what}: {n} for {:02x?}", &rest[..len]),
            },
        }
        rest = &rest[len..];
    }
    updates
}
