//! Connections and sessions: adopting or refusing a connection, framing and decoding the bytes
//! that arrive, connection collision (RFC 4271 §6.8), and carrying out what a session's FSM
//! asks for.

use super::peer::{promote_alt, Session, Slot};
use super::{canonical, ConnId, Core, Output, TimerKey};
use crate::fsm::{Action, Event, Send, State, Timer};
use crate::notification::{cease, code, Notification};
use crate::wire::{self, Family, Message, Negotiated};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tracing::{debug, info, warn};

/// How often refused connections from unknown addresses are logged.
const REFUSED_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Core {
    pub(super) fn find_conn(&self, conn: ConnId) -> Option<(IpAddr, Slot)> {
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

    pub(super) fn session_mut(&mut self, peer: IpAddr, slot: Slot) -> Option<&mut Session> {
        let p = self.peers.get_mut(&peer)?;
        match slot {
            Slot::Main => Some(&mut p.main),
            Slot::Alt => p.alt.as_mut(),
        }
    }

    pub(super) fn state(&self, peer: IpAddr) -> State {
        self.peers
            .get(&peer)
            .map_or(State::Idle, |p| p.main.fsm.state())
    }

    pub(super) fn connected(&mut self, conn: ConnId, local: SocketAddr) {
        if let Some((peer, slot)) = self.find_conn(conn) {
            if let Some(s) = self.session_mut(peer, slot) {
                s.local = Some(canonical(local.ip()));
            }
            if let Some(p) = self.peers.get_mut(&peer) {
                p.connect_error = None;
            }
            self.event(peer, slot, Event::TcpConnected);
        } else {
            self.out.push(Output::Close { conn });
        }
    }

    /// An outgoing connection failed: the FSM hears TcpFails as for a close, and the reason
    /// (no route, refused, timed out…) becomes the peer's last error, logged once while it
    /// stays the same.
    pub(super) fn connect_failed(&mut self, conn: ConnId, error: String) {
        let found = self.find_conn(conn);
        self.closed(conn);
        let Some((peer, slot)) = found else {
            return;
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let why = format!("connect: {error}");
        if p.connect_error.as_deref() != Some(why.as_str()) {
            info!(peer = %peer, error = %error, "cannot connect");
            p.connect_error = Some(why.clone());
        }
        if let Some(s) = self.session_mut(peer, slot) {
            s.fsm.last_error = Some(why);
        }
    }

    /// How many connections came from addresses that are no configured peer's.
    pub fn refused_connections(&self) -> u64 {
        self.refused
    }

    /// A connection failed or closed.
    pub(super) fn closed(&mut self, conn: ConnId) {
        if let Some((peer, slot)) = self.find_conn(conn) {
            if let Some(s) = self.session_mut(peer, slot) {
                s.conn = None;
            }
            self.conns.remove(&conn);
            self.event(peer, slot, Event::TcpFails);
        }
    }

    /// A session timer fired; one of a session that no longer exists is ignored.
    pub(super) fn session_timer(&mut self, peer: IpAddr, session: u64, timer: Timer) {
        let slot = match self.peers.get(&peer) {
            Some(p) if p.main.id == session => Slot::Main,
            Some(p) if p.alt.as_ref().is_some_and(|s| s.id == session) => Slot::Alt,
            _ => return,
        };
        let ev = match timer {
            Timer::ConnectRetry => Event::ConnectRetryExpired,
            Timer::Hold => Event::HoldExpired,
            Timer::Keepalive => Event::KeepaliveExpired,
            Timer::IdleHold => Event::IdleHoldExpired,
        };
        self.event(peer, slot, ev);
    }

    pub(super) fn incoming(&mut self, conn: ConnId, remote: SocketAddr, local: SocketAddr) {
        let addr = canonical(remote.ip());
        let Some(peer) = self.peers.get(&addr) else {
            self.refused += 1;
            // One line a minute at most, with the count since the last one.
            let due = self
                .refused_logged
                .is_none_or(|(at, _)| self.now.duration_since(at) >= REFUSED_LOG_EVERY);
            if due {
                let since = self.refused - self.refused_logged.map_or(0, |(_, n)| n);
                warn!(peer = %addr, refused = since, "connection from an address that is not a configured peer: refused (one line a minute; the count is twill_bgp_connections_refused_total)");
                self.refused_logged = Some((self.now, self.refused));
            }
            self.out.push(Output::Close { conn });
            return;
        };
        let state = peer.main.fsm.state();
        let local_ip = Some(canonical(local.ip()));
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
                s.local = local_ip;
                s.buf.clear();
                self.conns.insert(conn, addr);
                self.event(addr, Slot::Main, Event::TcpConnected);
            }
            State::OpenSent | State::OpenConfirm if peer.alt.is_none() => {
                self.take_alt(addr, conn, local_ip, false);
            }
            State::Established if peer.gr.remote.is_some() && peer.alt.is_none() => {
                // RFC 4724 §4.2: a peer that offered graceful restart connecting again while
                // its session still looks up may have restarted, and we missed the close (a
                // lost FIN: a host crash, a partition). But a connection it abandoned arrives
                // here too: both ends dialled at once, it kept ours and closed its own, which
                // our kernel had already accepted — with its OPEN already sent on it, then a
                // Cease (collision). So the connection runs in the second slot, and only once
                // it is Established (the peer answered our OPEN) does it replace the old
                // session (`restarted`); an abandoned one closes first.
                debug!(peer = %addr, "new connection while Established from a graceful-restart peer: a restart if it comes up");
                self.take_alt(addr, conn, local_ip, true);
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

    pub(super) fn data(&mut self, conn: ConnId, bytes: Vec<u8>) {
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

    /// A second connection from `addr`, answered in the alt slot (it never dials). `probe`: it
    /// came while the session was Established (see `incoming`).
    fn take_alt(&mut self, addr: IpAddr, conn: ConnId, local: Option<IpAddr>, probe: bool) {
        let cfg = self.peers[&addr].cfg.clone();
        let mut s = self.new_session(&cfg);
        s.fsm.cfg.passive = true;
        s.conn = Some(conn);
        s.local = local;
        s.restart_probe = probe;
        self.conns.insert(conn, addr);
        self.peers.get_mut(&addr).expect("peer exists").alt = Some(s);
        self.event(addr, Slot::Alt, Event::ManualStart);
        self.event(addr, Slot::Alt, Event::TcpConnected);
    }

    /// A new connection that came while the session looked up has come up itself: the peer
    /// restarted (RFC 4724 §4.2). The old session ends as if its connection had closed — its
    /// routes kept as stale, its connection closed by the FSM's Drop — and the new one takes
    /// the main slot.
    fn restarted(&mut self, peer: IpAddr) {
        info!(peer = %peer, "a new connection came up while Established from a graceful-restart peer: it restarted");
        self.event(peer, Slot::Main, Event::TcpFails);
        self.replace_main(peer);
    }

    /// The second session takes the main slot from one that went Idle (its timers stopped on
    /// the way); that one's automatic restart is moot, the new session is its successor.
    fn replace_main(&mut self, peer: IpAddr) {
        let p = self.peers.get_mut(&peer).expect("peer exists");
        let old = promote_alt(p).expect("alt exists");
        self.out.push(Output::SetTimer {
            peer,
            key: TimerKey::Session {
                session: old.id,
                timer: Timer::IdleHold,
            },
            after: None,
        });
    }

    /// RFC 4271 §6.8, on an OPEN received in `slot`. Returns the slot the OPEN's session
    /// holds after resolution (the survivor may have moved to Main), or None if its own
    /// connection was the one closed.
    fn collision(&mut self, peer: IpAddr, slot: Slot, remote_id: Ipv4Addr) -> Option<Slot> {
        let p = self.peers.get(&peer)?;
        let Some(alt) = &p.alt else {
            return Some(slot);
        };
        let (this, other) = match slot {
            Slot::Main => (&p.main, alt),
            Slot::Alt => (alt, &p.main),
        };
        // Only two sessions both opening collide: an OPEN on an Established session is the
        // FSM's error, not a collision.
        let opening = |s: &Session| matches!(s.fsm.state(), State::OpenSent | State::OpenConfirm);
        if !opening(this) || !opening(other) {
            return Some(slot);
        }
        // The lower identifier gives way: its own connection is closed.
        let drop_outgoing = u32::from(self.cfg.router_id) < u32::from(remote_id);
        let drop_main = p.main.outgoing == drop_outgoing;
        info!(peer = %peer, remote_id = %remote_id, "connection collision: keeping the {} connection",
            if drop_outgoing { "incoming" } else { "outgoing" });
        let dropped = if drop_main { Slot::Main } else { Slot::Alt };
        // Dumped, a session goes Idle: an alt is then removed by `event`.
        self.event(peer, dropped, Event::CollisionDump);
        if drop_main {
            self.replace_main(peer);
        }
        (dropped != slot).then_some(Slot::Main)
    }

    /// Feed one event to a session's FSM and carry out its actions.
    pub(super) fn event(&mut self, peer: IpAddr, slot: Slot, ev: Event) {
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
        // RFC 8538: on a session that negotiated the N bit, a NOTIFICATION that means "stop"
        // goes as a Hard Reset, or the peer would keep our routes as for a restart.
        let hard_reset = slot == Slot::Main && before == State::Established && p.gr.notification;
        for a in actions {
            self.action(peer, slot, a, hard_reset);
        }
        // A second session that went Idle (its connection closed or timed out) is never
        // restarted: it goes, and the slot is free for the next connection.
        if slot == Slot::Alt {
            if let Some(p) = self.peers.get_mut(&peer) {
                if p.alt.as_ref().is_some_and(|s| s.fsm.state() == State::Idle) {
                    p.alt = None;
                }
            }
        }
    }

    fn action(&mut self, peer: IpAddr, slot: Slot, a: Action, hard_reset: bool) {
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
                let families = self.peers[&peer].cfg.families.clone();
                let graceful_restart = self.our_gr(&families);
                let Some(s) = self.session_mut(peer, slot) else {
                    return;
                };
                let Some(conn) = s.conn else { return };
                let bytes = match m {
                    Send::Keepalive => wire::encode_keepalive(),
                    Send::Notification(n) => {
                        let n = if hard_reset && n.calls_for_hard_reset() {
                            n.hard_reset()
                        } else {
                            n
                        };
                        log_notification(peer, "sending", &n);
                        wire::encode_notification(&n)
                    }
                    Send::Open => wire::encode_open(&wire::OpenParams {
                        asn,
                        hold_time: s.fsm.cfg.hold_time,
                        router_id,
                        families: s.fsm.cfg.families.clone(),
                        extended_message: ext,
                        graceful_restart,
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
                    key: TimerKey::Session { session: id, timer },
                    after: Some(d),
                })
            }
            Action::StopTimer(timer) => self.out.push(Output::SetTimer {
                peer,
                key: TimerKey::Session { session: id, timer },
                after: None,
            }),
            Action::Established(info) => {
                if slot == Slot::Alt {
                    let p = &self.peers[&peer];
                    let probe = p.alt.as_ref().is_some_and(|s| s.restart_probe);
                    if probe && p.main.fsm.state() == State::Established {
                        self.restarted(peer);
                    } else {
                        // The main session went down meanwhile: promote.
                        promote_alt(self.peers.get_mut(&peer).expect("peer exists"));
                    }
                }
                self.established(peer, &info);
            }
            Action::Down(cause) => self.down(peer, cause),
        }
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
