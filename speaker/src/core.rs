//! The speaker core: peers, their sessions, the RIBs and the advertisement rules — no I/O.
//!
//! [`Core::handle`] takes one [`Input`] (bytes arrived, timer fired, config changed…) and
//! returns the [`Output`]s it causes (bytes to send, connections to open or close, timers to
//! set, best-route changes). The transport feeds it; tests can too, without sockets.

use crate::config::{ConfigError, Password, PeerConfig, SpeakerConfig};
use crate::fsm::{Action, Event, Fsm, FsmConfig, Send, SessionInfo, State, Timer};
use crate::notification::{cease, code, Notification};
use crate::policy::ExportFilter;
use crate::rib::{AdjRibIn, AdjRibOut, Best, LocRib, Path, Source};
use crate::wire::{self, Family, Message, Negotiated, PathAttrs};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

pub type ConnId = u64;

#[derive(Debug)]
pub enum Input {
    AddPeer(PeerConfig),
    /// Replace a peer's configuration; the session is reset only if it has to be.
    UpdatePeer(PeerConfig),
    RemovePeer(IpAddr),
    /// Stop every session with Cease / Administrative Shutdown.
    Shutdown,
    SetOriginated(Vec<IpNet>),
    /// An accepted TCP connection; the core adopts it or asks for it to be closed.
    Incoming {
        conn: ConnId,
        remote: SocketAddr,
        local: SocketAddr,
    },
    /// An outgoing connection (asked for by [`Output::Connect`]) is up.
    Connected {
        conn: ConnId,
        local: SocketAddr,
    },
    ConnectFailed {
        conn: ConnId,
    },
    Data {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Closed {
        conn: ConnId,
    },
    Timer {
        peer: IpAddr,
        session: u64,
        timer: Timer,
    },
}

#[derive(Debug, PartialEq)]
pub enum Output {
    Connect {
        conn: ConnId,
        remote: SocketAddr,
        local: Option<IpAddr>,
        password: Option<Password>,
    },
    /// Set (Some) or clear (None) the TCP MD5 key for connections from `peer` on the listener.
    ListenKey {
        peer: IpAddr,
        password: Option<Password>,
    },
    Send {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    /// Close after flushing what was sent before.
    Close {
        conn: ConnId,
    },
    /// Arm (Some) or cancel (None) a timer; a fired timer comes back as [`Input::Timer`].
    SetTimer {
        peer: IpAddr,
        session: u64,
        timer: Timer,
        after: Option<Duration>,
    },
    Route(RouteEvent),
}

/// A best-route change for subscribers such as the route programmer.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteEvent {
    pub prefix: IpNet,
    /// `None`: no route any more.
    pub best: Option<BestRoute>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NextHop {
    pub address: IpAddr,
    pub link_local: Option<Ipv6Addr>,
    /// The peer the path came from.
    pub peer: IpAddr,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BestRoute {
    /// The multipath (ECMP) set, best path first; empty for a route this speaker originates.
    pub next_hops: Vec<NextHop>,
    pub attrs: Arc<PathAttrs>,
    /// The peer of the best path, `None` if originated here.
    pub from: Option<IpAddr>,
    pub ebgp: bool,
}

impl BestRoute {
    pub fn is_local(&self) -> bool {
        self.from.is_none()
    }
}

/// One peer as `twill status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerSnapshot {
    pub address: IpAddr,
    pub asn: u32,
    pub kind: String,
    pub state: State,
    /// Seconds since the state last changed.
    pub since_secs: u64,
    pub remote_id: Option<Ipv4Addr>,
    pub hold_time: Option<u16>,
    pub prefixes_received: usize,
    pub prefixes_accepted: usize,
    pub prefixes_advertised: usize,
    pub updates_received: u64,
    pub updates_sent: u64,
    pub last_error: Option<String>,
    pub end_of_rib_received: bool,
    pub end_of_rib_sent: bool,
    pub graceful_restart: Option<wire::GracefulRestart>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub extended_message: bool,
}

struct Session {
    id: u64,
    fsm: Fsm,
    conn: Option<ConnId>,
    outgoing: bool,
    buf: Vec<u8>,
    local: Option<IpAddr>,
}

struct Peer {
    cfg: PeerConfig,
    main: Session,
    /// The second connection during a collision (RFC 4271 §6.8).
    alt: Option<Session>,
    adj_in: AdjRibIn,
    adj_out: AdjRibOut,
    since: Instant,
    updates_in: u64,
    updates_out: u64,
    eor_received: bool,
    eor_sent: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Main,
    Alt,
}

pub struct Core {
    cfg: SpeakerConfig,
    peers: BTreeMap<IpAddr, Peer>,
    conns: HashMap<ConnId, IpAddr>,
    rib: LocRib,
    originated: HashSet<IpNet>,
    dirty: Vec<IpNet>,
    next_id: u64,
    now: Instant,
    out: Vec<Output>,
    /// Whether to emit [`Output::Route`]: off while nobody subscribes, so a full table
    /// arriving costs no event allocations.
    route_events: bool,
}

fn canonical(a: IpAddr) -> IpAddr {
    a.to_canonical()
}

impl Core {
    pub fn new(cfg: SpeakerConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut core = Core {
            cfg: cfg.clone(),
            peers: BTreeMap::new(),
            conns: HashMap::new(),
            rib: LocRib::default(),
            originated: HashSet::new(),
            dirty: Vec::new(),
            next_id: 1,
            now: Instant::now(),
            out: Vec::new(),
            route_events: true,
        };
        core.set_originated(cfg.originate);
        Ok(core)
    }

    pub fn config(&self) -> &SpeakerConfig {
        &self.cfg
    }

    /// Turn [`Output::Route`] events on or off (on by default).
    pub fn set_route_events(&mut self, on: bool) {
        self.route_events = on;
    }

    /// A fresh connection id for a connection the transport accepted.
    pub fn alloc_conn(&mut self) -> ConnId {
        self.id()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Process one input at time `now`; returns what it causes.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        self.now = now;
        match input {
            Input::AddPeer(p) | Input::UpdatePeer(p) => self.upsert_peer(p),
            Input::RemovePeer(a) => self.remove_peer(canonical(a)),
            Input::Shutdown => {
                let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
                for p in peers {
                    self.drop_alt(p);
                    self.event(p, Slot::Main, Event::ManualStop);
                }
            }
            Input::SetOriginated(v) => self.set_originated(v),
            Input::Incoming {
                conn,
                remote,
                local,
            } => self.incoming(conn, remote, local),
            Input::Connected { conn, local } => {
                if let Some((peer, slot)) = self.find_conn(conn) {
                    if let Some(s) = self.session_mut(peer, slot) {
                        s.local = Some(canonical(local.ip()));
                    }
                    self.event(peer, slot, Event::TcpConnected);
                } else {
                    self.out.push(Output::Close { conn });
                }
            }
            Input::ConnectFailed { conn } | Input::Closed { conn } => {
                if let Some((peer, slot)) = self.find_conn(conn) {
                    if let Some(s) = self.session_mut(peer, slot) {
                        s.conn = None;
                    }
                    self.conns.remove(&conn);
                    self.event(peer, slot, Event::TcpFails);
                }
            }
            Input::Data { conn, bytes } => self.data(conn, bytes),
            Input::Timer {
                peer,
                session,
                timer,
            } => {
                let slot = match self.peers.get(&peer) {
                    Some(p) if p.main.id == session => Slot::Main,
                    Some(p) if p.alt.as_ref().is_some_and(|s| s.id == session) => Slot::Alt,
                    _ => return std::mem::take(&mut self.out),
                };
                let ev = match timer {
                    Timer::ConnectRetry => Event::ConnectRetryExpired,
                    Timer::Hold => Event::HoldExpired,
                    Timer::Keepalive => Event::KeepaliveExpired,
                    Timer::IdleHold => Event::IdleHoldExpired,
                };
                self.event(peer, slot, ev);
            }
        }
        self.flush();
        std::mem::take(&mut self.out)
    }

    fn fsm_config(&self, p: &PeerConfig) -> FsmConfig {
        FsmConfig {
            local_as: self.cfg.asn,
            router_id: self.cfg.router_id,
            peer_as: p.asn,
            hold_time: p.hold_time,
            keepalive: p.keepalive,
            connect_retry: p.connect_retry,
            passive: p.passive,
            families: p.families.clone(),
            extended_message: self.cfg.extended_message,
            idle_hold: p.idle_hold,
        }
    }

    fn new_session(&mut self, p: &PeerConfig) -> Session {
        Session {
            id: self.id(),
            fsm: Fsm::new(self.fsm_config(p)),
            conn: None,
            outgoing: false,
            buf: Vec::new(),
            local: None,
        }
    }

    fn upsert_peer(&mut self, mut p: PeerConfig) {
        p.address = canonical(p.address);
        let addr = p.address;
        if let Err(e) = p.validate() {
            warn!(peer = %addr, error = %e, "peer configuration rejected");
            return;
        }
        let old_password = self.peers.get(&addr).and_then(|o| o.cfg.password.clone());
        if p.password != old_password {
            // Before any reconnect below, so the new session's connections carry the new key.
            self.out.push(Output::ListenKey {
                peer: addr,
                password: p.password.clone(),
            });
        }
        if let Some(old) = self.peers.get(&addr) {
            let reset = p.needs_reset(&old.cfg);
            let import_changed =
                p.import != old.cfg.import || p.max_prefixes != old.cfg.max_prefixes;
            let export_changed = p.export != old.cfg.export;
            if reset {
                info!(peer = %addr, "peer configuration changed: resetting the session");
                self.event(
                    addr,
                    Slot::Main,
                    Event::AutomaticStop(cease::OTHER_CONFIG_CHANGE),
                );
                self.drop_alt(addr);
                let cfg = self.fsm_config(&p);
                let peer = self.peers.get_mut(&addr).expect("peer exists");
                peer.cfg = p;
                peer.main.fsm.cfg = cfg;
                self.event(addr, Slot::Main, Event::ManualStart);
            } else {
                self.peers.get_mut(&addr).expect("peer exists").cfg = p;
                if import_changed {
                    self.reimport(addr);
                }
                if export_changed {
                    // What the peer holds plus everything it may now get.
                    let peer = &self.peers[&addr];
                    let mut prefixes: Vec<IpNet> = self.rib.prefixes().copied().collect();
                    prefixes.extend(peer.adj_out.routes.keys().copied());
                    prefixes.sort_unstable();
                    prefixes.dedup();
                    self.advertise(addr, &prefixes);
                }
            }
            return;
        }
        info!(peer = %addr, asn = p.asn, "peer added");
        let main = self.new_session(&p);
        self.peers.insert(
            addr,
            Peer {
                cfg: p,
                main,
                alt: None,
                adj_in: AdjRibIn::default(),
                adj_out: AdjRibOut::default(),
                since: self.now,
                updates_in: 0,
                updates_out: 0,
                eor_received: false,
                eor_sent: false,
            },
        );
        self.event(addr, Slot::Main, Event::ManualStart);
    }

    fn remove_peer(&mut self, addr: IpAddr) {
        if !self.peers.contains_key(&addr) {
            return;
        }
        info!(peer = %addr, "peer removed");
        self.drop_alt(addr);
        self.event(
            addr,
            Slot::Main,
            Event::AutomaticStop(cease::PEER_DECONFIGURED),
        );
        if let Some(p) = self.peers.remove(&addr) {
            if p.cfg.password.is_some() {
                self.out.push(Output::ListenKey {
                    peer: addr,
                    password: None,
                });
            }
            self.out.push(Output::SetTimer {
                peer: addr,
                session: p.main.id,
                timer: Timer::IdleHold,
                after: None,
            });
        }
    }

    fn drop_alt(&mut self, addr: IpAddr) {
        if self.peers.get(&addr).is_some_and(|p| p.alt.is_some()) {
            self.event(
                addr,
                Slot::Alt,
                Event::AutomaticStop(cease::OTHER_CONFIG_CHANGE),
            );
            if let Some(p) = self.peers.get_mut(&addr) {
                p.alt = None;
            }
        }
    }

    fn set_originated(&mut self, v: Vec<IpNet>) {
        let new: HashSet<IpNet> = v.into_iter().map(|p| p.trunc()).collect();
        for p in self
            .originated
            .difference(&new)
            .copied()
            .collect::<Vec<_>>()
        {
            if self.rib.remove(p, None) {
                self.dirty.push(p);
            }
        }
        for p in new
            .difference(&self.originated)
            .copied()
            .collect::<Vec<_>>()
        {
            let nh = match p {
                IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            let path = Path {
                source: Source::Local,
                attrs: Arc::new(PathAttrs::local(nh)),
            };
            if self.rib.upsert(p, path) {
                self.dirty.push(p);
            }
        }
        self.originated = new;
    }

    fn find_conn(&self, conn: ConnId) -> Option<(IpAddr, Slot)> {
        let peer = *self.conns.get(&conn)?;
        let p = self.peers.get(&peer)?;
        if p.main.conn == Some(conn) {
            Some((peer, Slot::Main))
        } else if p.alt.as_ref().is_some_and(|s| s.conn == Some(conn)) {
            Some((peer, Slot::Alt))
        } else {
            None
        }
    }

    fn session_mut(&mut self, peer: IpAddr, slot: Slot) -> Option<&mut Session> {
        let p = self.peers.get_mut(&peer)?;
        match slot {
            Slot::Main => Some(&mut p.main),
            Slot::Alt => p.alt.as_mut(),
        }
    }

    fn incoming(&mut self, conn: ConnId, remote: SocketAddr, local: SocketAddr) {
        let addr = canonical(remote.ip());
        let Some(peer) = self.peers.get(&addr) else {
            warn!(peer = %addr, "connection from an address that is not a configured peer: refused");
            self.out.push(Output::Close { conn });
            return;
        };
        let state = peer.main.fsm.state();
        let local = Some(canonical(local.ip()));
        let restart = peer.main.fsm.accepts_in_idle();
        match state {
            State::Idle if !restart => {
                debug!(peer = %addr, "connection refused: session is Idle");
                self.out.push(Output::Close { conn });
            }
            State::Idle | State::Connect | State::Active => {
                // Take the peer's connection; abandon our own attempt if one is under way.
                let s = self.session_mut(addr, Slot::Main).expect("peer exists");
                if let Some(old) = s.conn.replace(conn) {
                    self.conns.remove(&old);
                    self.out.push(Output::Close { conn: old });
                }
                let s = self.session_mut(addr, Slot::Main).expect("peer exists");
                s.outgoing = false;
                s.local = local;
                s.buf.clear();
                self.conns.insert(conn, addr);
                self.event(addr, Slot::Main, Event::TcpConnected);
            }
            State::OpenSent | State::OpenConfirm if peer.alt.is_none() => {
                let cfg = peer.cfg.clone();
                let mut s = self.new_session(&cfg);
                // The second connection never dials: it only answers.
                s.fsm.cfg.passive = true;
                s.conn = Some(conn);
                s.local = local;
                self.conns.insert(conn, addr);
                self.peers.get_mut(&addr).expect("peer exists").alt = Some(s);
                self.event(addr, Slot::Alt, Event::ManualStart);
                self.event(addr, Slot::Alt, Event::TcpConnected);
            }
            _ => {
                // §6.8: a collision with an Established session closes the new connection.
                info!(peer = %addr, "second connection while {state}: closed");
                self.out.push(Output::Send {
                    conn,
                    bytes: wire::encode_notification(&Notification::cease(
                        cease::CONNECTION_COLLISION,
                    )),
                });
                self.out.push(Output::Close { conn });
            }
        }
    }

    fn data(&mut self, conn: ConnId, bytes: Vec<u8>) {
        let Some((peer, slot)) = self.find_conn(conn) else {
            return;
        };
        let Some(s) = self.session_mut(peer, slot) else {
            return;
        };
        if s.buf.is_empty() {
            s.buf = bytes;
        } else {
            s.buf.extend_from_slice(&bytes);
        }
        let mut offset = 0;
        loop {
            // Look the connection up again each time: the previous message may have closed
            // it, or moved it from the collision slot to the main one.
            let Some((peer, slot)) = self.find_conn(conn) else {
                return;
            };
            let Some(s) = self.session_mut(peer, slot) else {
                return;
            };
            let neg = s
                .fsm
                .session()
                .map(|i| i.negotiated.clone())
                .unwrap_or_else(Negotiated::initial);
            let rest = &s.buf[offset..];
            let len = match wire::frame_len(rest, neg.max_message()) {
                Ok(Some(len)) => len,
                Ok(None) => {
                    s.buf.drain(..offset);
                    return;
                }
                Err(n) => {
                    warn!(peer = %peer, error = %n, "bad message header");
                    self.event(peer, slot, Event::MessageError(n));
                    return;
                }
            };
            let decoded = wire::decode(&rest[..len], &neg);
            offset += len;
            match decoded {
                Ok(msg) => self.message(peer, slot, msg),
                Err(n) => {
                    warn!(peer = %peer, error = %n, "malformed message");
                    self.event(peer, slot, Event::MessageError(n));
                    return;
                }
            }
        }
    }

    fn message(&mut self, peer: IpAddr, slot: Slot, msg: Message) {
        debug!(peer = %peer, kind = msg.kind(), "received");
        match msg {
            Message::Open(open) => {
                if let Some(slot) = self.collision(peer, slot, open.router_id) {
                    self.event(peer, slot, Event::OpenReceived(open));
                }
            }
            Message::Keepalive => self.event(peer, slot, Event::KeepaliveReceived),
            Message::Notification(n) => {
                log_notification(peer, "received", &n);
                self.event(peer, slot, Event::NotificationReceived(n));
            }
            Message::Update(u) => {
                self.event(peer, slot, Event::UpdateReceived);
                if slot == Slot::Main && self.state(peer) == State::Established {
                    self.update(peer, u);
                }
            }
            Message::RouteRefresh { afi, safi, .. } => {
                self.event(peer, slot, Event::RouteRefreshReceived);
                if let Some(f) = Family::from_afi_safi(afi, safi) {
                    if slot == Slot::Main && self.state(peer) == State::Established {
                        info!(peer = %peer, family = ?f, "route refresh: re-sending Adj-RIB-Out");
                        self.resend(peer, f);
                    }
                }
            }
        }
    }

    fn state(&self, peer: IpAddr) -> State {
        self.peers
            .get(&peer)
            .map_or(State::Idle, |p| p.main.fsm.state())
    }

    /// RFC 4271 §6.8, on an OPEN received in `slot`. Returns the slot the OPEN's session
    /// holds after resolution (the survivor may have moved to Main), or None if its own
    /// connection was the one closed.
    fn collision(&mut self, peer: IpAddr, slot: Slot, remote_id: Ipv4Addr) -> Option<Slot> {
        let p = self.peers.get(&peer)?;
        let Some(alt) = &p.alt else {
            return Some(slot);
        };
        let other = match slot {
            Slot::Main => alt,
            Slot::Alt => &p.main,
        };
        if !matches!(other.fsm.state(), State::OpenSent | State::OpenConfirm) {
            return Some(slot);
        }
        // The lower identifier gives way: its own connection is closed.
        let drop_outgoing = u32::from(self.cfg.router_id) < u32::from(remote_id);
        let drop_main = p.main.outgoing == drop_outgoing;
        info!(peer = %peer, remote_id = %remote_id, "connection collision: keeping the {} connection",
            if drop_outgoing { "incoming" } else { "outgoing" });
        let dropped = if drop_main { Slot::Main } else { Slot::Alt };
        self.event(peer, dropped, Event::CollisionDump);
        let p = self.peers.get_mut(&peer).expect("peer exists");
        if drop_main {
            // The dumped session's timers were stopped on the way to Idle; its automatic
            // restart is moot.
            let dumped = promote_alt(p).expect("alt exists");
            self.out.push(Output::SetTimer {
                peer,
                session: dumped.id,
                timer: Timer::IdleHold,
                after: None,
            });
        } else {
            p.alt = None;
        }
        (dropped != slot).then_some(Slot::Main)
    }

    fn event(&mut self, peer: IpAddr, slot: Slot, ev: Event) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let s = match slot {
            Slot::Main => &mut p.main,
            Slot::Alt => match p.alt.as_mut() {
                Some(s) => s,
                None => return,
            },
        };
        let before = s.fsm.state();
        let actions = s.fsm.handle(ev);
        let after = s.fsm.state();
        if before != after && slot == Slot::Main {
            p.since = self.now;
            info!(peer = %peer, from = %before, to = %after, "session state");
        }
        for a in actions {
            self.action(peer, slot, a);
        }
    }

    fn action(&mut self, peer: IpAddr, slot: Slot, a: Action) {
        let remote_port = self.peers[&peer].cfg.port;
        let local_cfg = self.peers[&peer].cfg.local_address;
        let password = self.peers[&peer].cfg.password.clone();
        let id = match slot {
            Slot::Main => self.peers[&peer].main.id,
            Slot::Alt => self.peers[&peer].alt.as_ref().map_or(0, |s| s.id),
        };
        match a {
            Action::Connect => {
                let conn = self.id();
                let Some(s) = self.session_mut(peer, slot) else {
                    return;
                };
                s.conn = Some(conn);
                s.outgoing = true;
                s.buf.clear();
                self.conns.insert(conn, peer);
                self.out.push(Output::Connect {
                    conn,
                    remote: SocketAddr::new(peer, remote_port),
                    local: local_cfg,
                    password,
                });
            }
            Action::Drop => {
                let Some(s) = self.session_mut(peer, slot) else {
                    return;
                };
                s.buf.clear();
                if let Some(conn) = s.conn.take() {
                    self.conns.remove(&conn);
                    self.out.push(Output::Close { conn });
                }
            }
            Action::Send(m) => {
                let (asn, router_id, ext) =
                    (self.cfg.asn, self.cfg.router_id, self.cfg.extended_message);
                let Some(s) = self.session_mut(peer, slot) else {
                    return;
                };
                let Some(conn) = s.conn else { return };
                let bytes = match m {
                    Send::Keepalive => wire::encode_keepalive(),
                    Send::Notification(n) => {
                        log_notification(peer, "sending", &n);
                        wire::encode_notification(&n)
                    }
                    Send::Open => wire::encode_open(&wire::OpenParams {
                        asn,
                        hold_time: s.fsm.cfg.hold_time,
                        router_id,
                        families: s.fsm.cfg.families.clone(),
                        extended_message: ext,
                    }),
                };
                self.out.push(Output::Send { conn, bytes });
            }
            Action::StartTimer(timer, d) => {
                // A session that lost a collision is discarded, not restarted.
                if timer == Timer::IdleHold && slot == Slot::Alt {
                    return;
                }
                self.out.push(Output::SetTimer {
                    peer,
                    session: id,
                    timer,
                    after: Some(d),
                })
            }
            Action::StopTimer(timer) => self.out.push(Output::SetTimer {
                peer,
                session: id,
                timer,
                after: None,
            }),
            Action::Established(info) => {
                if slot == Slot::Alt {
                    // Can only happen if the main session vanished meanwhile: promote.
                    promote_alt(self.peers.get_mut(&peer).expect("peer exists"));
                }
                self.established(peer, &info);
            }
            Action::Down => self.down(peer),
        }
    }

    fn established(&mut self, peer: IpAddr, info: &SessionInfo) {
        info!(peer = %peer, remote_id = %info.remote_id, hold = info.hold_time,
            families = ?info.negotiated.families, "session established");
        let p = self.peers.get_mut(&peer).expect("peer exists");
        p.eor_received = false;
        p.eor_sent = false;
        p.adj_out.routes.clear();
        let prefixes: Vec<IpNet> = self.rib.prefixes().copied().collect();
        self.advertise(peer, &prefixes);
        let p = self.peers.get_mut(&peer).expect("peer exists");
        let Some(conn) = p.main.conn else { return };
        for f in info.negotiated.families.clone() {
            self.out.push(Output::Send {
                conn,
                bytes: wire::encode_end_of_rib(f),
            });
        }
        p.eor_sent = true;
    }

    fn down(&mut self, peer: IpAddr) {
        let p = self.peers.get_mut(&peer).expect("peer exists");
        let routes = std::mem::take(&mut p.adj_in.routes);
        p.adj_in.accepted = 0;
        p.adj_out.routes.clear();
        p.eor_received = false;
        p.eor_sent = false;
        let n = routes.len();
        for (prefix, (_, accepted)) in routes {
            if accepted && self.rib.remove(prefix, Some(peer)) {
                self.dirty.push(prefix);
            }
        }
        info!(peer = %peer, withdrawn = n, "session down: routes withdrawn");
    }

    /// The RIB source for a peer's paths. Only the address takes part in equality lookups
    /// (removal), the rest feeds the decision process.
    fn source_of(&self, peer: IpAddr) -> Source {
        let p = &self.peers[&peer];
        let info = p.main.fsm.session();
        Source::Peer {
            addr: peer,
            router_id: info.map_or(Ipv4Addr::UNSPECIFIED, |i| i.remote_id),
            ebgp: p.cfg.asn != self.cfg.asn,
            originator_id: None,
        }
    }

    fn update(&mut self, peer: IpAddr, u: wire::Update) {
        let local_as = self.cfg.asn;
        let router_id = self.cfg.router_id;
        let base = self.source_of(peer);
        let p = self.peers.get_mut(&peer).expect("peer exists");
        p.updates_in += 1;
        if let Some(n) = &u.treat_as_withdraw {
            warn!(peer = %peer, error = %n, prefixes = u.withdrawn.len(), "RFC 7606 treat-as-withdraw");
        }
        if !u.discarded.is_empty() {
            debug!(peer = %peer, codes = ?u.discarded, "RFC 7606 attribute discard");
        }
        if u.end_of_rib.is_some() {
            p.eor_received = true;
        }
        for prefix in u.withdrawn {
            withdraw_route(&mut p.adj_in, &mut self.rib, &mut self.dirty, prefix, peer);
        }
        let ebgp = p.cfg.asn != local_as;
        for (attrs, prefixes) in u.announced {
            let mut reason = None;
            if ebgp && attrs.as_path.neighbour_as() != Some(p.cfg.asn) {
                // RFC 4271 §6.3 / RFC 7606 §7.2: treat-as-withdraw.
                warn!(peer = %peer, path = %attrs.as_path, "AS_PATH does not start with the peer's AS: treat-as-withdraw");
                for prefix in prefixes {
                    withdraw_route(&mut p.adj_in, &mut self.rib, &mut self.dirty, prefix, peer);
                }
                continue;
            }
            if attrs.as_path.contains(local_as) && ebgp {
                reason = Some("AS loop");
            } else if attrs.originator_id == Some(router_id) {
                reason = Some("ORIGINATOR_ID is ours");
            }
            let source = base.with_originator(attrs.originator_id);
            let attrs = Arc::new(attrs);
            for prefix in prefixes {
                let family_ok = matches!(
                    (prefix, attrs.next_hop),
                    (IpNet::V4(_), IpAddr::V4(_)) | (IpNet::V6(_), IpAddr::V6(_))
                );
                let accepted = reason.is_none() && family_ok && p.cfg.import.allows(&prefix);
                if !accepted {
                    debug!(peer = %peer, prefix = %prefix, reason = reason.unwrap_or("import filter"), "prefix not accepted");
                }
                let path = Path {
                    source: source.clone(),
                    attrs: attrs.clone(),
                };
                import_route(
                    &mut p.adj_in,
                    &mut self.rib,
                    &mut self.dirty,
                    prefix,
                    path,
                    accepted,
                );
            }
        }
        let p = self.peers.get(&peer).expect("peer exists");
        if let Some(max) = p.cfg.max_prefixes {
            if p.adj_in.accepted > max {
                warn!(peer = %peer, limit = max, accepted = p.adj_in.accepted, "maximum prefix count exceeded");
                let (afi, safi) = Family::Ipv4Unicast.afi_safi();
                let mut data = afi.to_be_bytes().to_vec();
                data.push(safi);
                data.extend_from_slice(&(max as u32).to_be_bytes());
                self.event(
                    peer,
                    Slot::Main,
                    Event::MessageError(Notification::new(code::CEASE, cease::MAX_PREFIXES, data)),
                );
            }
        }
    }

    /// Re-run import policy over everything a peer sent (after a filter change).
    fn reimport(&mut self, peer: IpAddr) {
        let base = self.source_of(peer);
        let p = self.peers.get_mut(&peer).expect("peer exists");
        let routes: Vec<(IpNet, Arc<PathAttrs>)> = p
            .adj_in
            .routes
            .iter()
            .map(|(k, v)| (*k, v.0.clone()))
            .collect();
        for (prefix, attrs) in routes {
            let accepted = p.cfg.import.allows(&prefix);
            if accepted == p.adj_in.routes.get(&prefix).is_some_and(|r| r.1) {
                continue;
            }
            let source = base.with_originator(attrs.originator_id);
            let path = Path { source, attrs };
            import_route(
                &mut p.adj_in,
                &mut self.rib,
                &mut self.dirty,
                prefix,
                path,
                accepted,
            );
        }
    }

    /// The attributes to advertise to `peer` for `best`, or None to not advertise.
    fn export(
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
        if peer.cfg.export == ExportFilter::Originated && !matches!(source, Source::Local) {
            return None;
        }
        let to_ebgp = info.negotiated.ebgp;
        let from_ibgp = matches!(source, Source::Peer { ebgp: false, .. });
        if from_ibgp && !to_ebgp {
            // RFC 4271 §9.2: iBGP-learned routes are not re-advertised to iBGP peers.
            return None;
        }
        let mut a = (**attrs).clone();
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

    /// Compare what `peer` should have for `prefixes` with its Adj-RIB-Out and send the
    /// difference, packed.
    fn advertise(&mut self, peer: IpAddr, prefixes: &[IpNet]) {
        let p = &self.peers[&peer];
        if p.main.fsm.state() != State::Established {
            return;
        }
        let mut withdraw = Vec::new();
        // Group by attribute value so prefixes sharing attributes travel together.
        let mut groups: HashMap<PathAttrs, Vec<IpNet>> = HashMap::new();
        // Export depends on the source attributes and the prefix family (next-hop-self).
        let mut memo: HashMap<(*const PathAttrs, Family, Option<IpAddr>), Option<PathAttrs>> =
            HashMap::new();
        for prefix in prefixes {
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
        let announce: Vec<(Arc<PathAttrs>, Vec<IpNet>)> =
            groups.into_iter().map(|(a, v)| (Arc::new(a), v)).collect();
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
    fn resend(&mut self, peer: IpAddr, f: Family) {
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

    /// After each input: report best-route changes and advertise them.
    fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        if self.route_events {
            for prefix in &dirty {
                let best = self.rib.best(prefix).as_ref().map(best_route);
                self.out.push(Output::Route(RouteEvent {
                    prefix: *prefix,
                    best,
                }));
            }
        }
        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
        for peer in peers {
            self.advertise(peer, &dirty);
        }
    }

    /// Every current best route, as events (for a new subscriber).
    pub fn routes(&self) -> Vec<RouteEvent> {
        self.rib
            .iter_best()
            .map(|(prefix, b)| RouteEvent {
                prefix: *prefix,
                best: Some(best_route(&b)),
            })
            .collect()
    }

    pub fn snapshot(&self, now: Instant) -> Vec<PeerSnapshot> {
        self.peers
            .values()
            .map(|p| {
                let info = p
                    .main
                    .fsm
                    .session()
                    .filter(|_| p.main.fsm.state() == State::Established);
                PeerSnapshot {
                    address: p.cfg.address,
                    asn: p.cfg.asn,
                    kind: p.cfg.kind.clone(),
                    state: p.main.fsm.state(),
                    since_secs: now.saturating_duration_since(p.since).as_secs(),
                    remote_id: info.map(|i| i.remote_id),
                    hold_time: info.map(|i| i.hold_time),
                    prefixes_received: p.adj_in.routes.len(),
                    prefixes_accepted: p.adj_in.accepted,
                    prefixes_advertised: p.adj_out.routes.len(),
                    updates_received: p.updates_in,
                    updates_sent: p.updates_out,
                    last_error: p.main.fsm.last_error.clone(),
                    end_of_rib_received: p.eor_received,
                    end_of_rib_sent: p.eor_sent,
                    graceful_restart: info.and_then(|i| i.remote_caps.graceful_restart.clone()),
                    four_octet_as: info.is_some_and(|i| i.negotiated.asn4),
                    route_refresh: info.is_some_and(|i| i.remote_caps.route_refresh),
                    extended_message: info.is_some_and(|i| i.negotiated.extended_message),
                }
            })
            .collect()
    }

    pub fn loc_rib_len(&self) -> usize {
        self.rib.len()
    }
}

/// A Cease is a normal way to end a session; anything else is worth a warning.
fn log_notification(peer: IpAddr, direction: &str, n: &Notification) {
    if n.code == code::CEASE {
        info!(peer = %peer, notification = %n, "{direction} NOTIFICATION");
    } else {
        warn!(peer = %peer, notification = %n, "{direction} NOTIFICATION");
    }
}

/// Store one route from a peer in its Adj-RIB-In and bring the Loc-RIB in line: add the path
/// if accepted, remove it if it had been accepted and no longer is.
fn import_route(
    adj_in: &mut AdjRibIn,
    rib: &mut LocRib,
    dirty: &mut Vec<IpNet>,
    prefix: IpNet,
    path: Path,
    accepted: bool,
) {
    let peer = path.source.peer_addr();
    let was_accepted = adj_in.insert(prefix, path.attrs.clone(), accepted);
    let changed = if accepted {
        rib.upsert(prefix, path)
    } else {
        was_accepted && rib.remove(prefix, peer)
    };
    if changed {
        dirty.push(prefix);
    }
}

/// Forget one route from `peer`, in its Adj-RIB-In and the Loc-RIB.
fn withdraw_route(
    adj_in: &mut AdjRibIn,
    rib: &mut LocRib,
    dirty: &mut Vec<IpNet>,
    prefix: IpNet,
    peer: IpAddr,
) {
    if adj_in.remove(&prefix) && rib.remove(prefix, Some(peer)) {
        dirty.push(prefix);
    }
}

/// Put the collision session in the main slot, with the peer's own passive setting (it
/// answered only, as every second connection does). Returns the session it replaced.
fn promote_alt(p: &mut Peer) -> Option<Session> {
    let mut alt = p.alt.take()?;
    alt.fsm.cfg.passive = p.cfg.passive;
    Some(std::mem::replace(&mut p.main, alt))
}

/// A Loc-RIB best entry as subscribers see it: the multipath set as next hops.
fn best_route(b: &Best) -> BestRoute {
    BestRoute {
        next_hops: b
            .multipath
            .iter()
            .filter_map(|(s, a)| {
                s.peer_addr().map(|peer| NextHop {
                    address: a.next_hop,
                    link_local: a.next_hop_local,
                    peer,
                })
            })
            .collect(),
        attrs: b.attrs.clone(),
        from: b.source.peer_addr(),
        ebgp: b.source.is_ebgp(),
    }
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}
