//! One BGP session's finite state machine (RFC 4271 §8), without I/O.
//!
//! The FSM takes an [`Event`] and returns [`Action`]s; it never touches a socket or a clock.
//! Connection collision (§6.8) is decided by the caller, which owns both connections, and
//! delivered here as [`Event::CollisionDump`]. DelayOpen is not implemented (an optional
//! attribute in RFC 4271 §8.1.1; none of FRR, BIRD or GoBGP need it).

use crate::notification::{cease, code, fsm as fsm_err, open as open_err, Notification};
use crate::wire::{Capabilities, Family, Negotiated, Open};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// Delay before an automatic restart after an error (peer oscillation damping).
    IdleHold,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    ManualStart,
    ManualStop,
    /// The peer was removed or changed: stop with Cease / the given subcode.
    AutomaticStop(u8),
    /// The speaker stops for a restart: close the connection without a NOTIFICATION, so a
    /// graceful-restart helper keeps our routes (RFC 4724 §4.1).
    GracefulStop,
    ConnectRetryExpired,
    HoldExpired,
    KeepaliveExpired,
    IdleHoldExpired,
    /// TCP established (TcpCRAcked for outgoing, TcpConnectionConfirmed for incoming).
    TcpConnected,
    TcpFails,
    OpenReceived(Open),
    /// A message that failed to decode, with the NOTIFICATION it calls for.
    MessageError(Notification),
    NotificationReceived(Notification),
    KeepaliveReceived,
    UpdateReceived,
    RouteRefreshReceived,
    CollisionDump,
}

/// What the FSM sends; the caller encodes it with the session's parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Send {
    Open,
    Keepalive,
    Notification(Notification),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open an outgoing TCP connection.
    Connect,
    /// Close the TCP connection (after anything queued before it is flushed).
    Drop,
    Send(Send),
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    Established(Box<SessionInfo>),
    /// Left Established, and why: the caller withdraws everything learned on this session.
    Down(DownCause),
}

/// Why a session went down. Graceful restart (RFC 4724 / RFC 8538) decides on it whether a
/// peer's routes are kept as stale or flushed, and `twill status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownCause {
    /// We sent this NOTIFICATION (an error we found, or a Cease such as max-prefix).
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// No message within the hold time (we sent Hold Timer Expired).
    HoldExpired,
    /// The TCP connection closed or failed without a NOTIFICATION.
    TcpClosed,
    /// Stopped here: peer removed or reconfigured, or the speaker shutting down (the Cease
    /// subcode that was sent).
    Administrative(u8),
    /// BFD declared the forwarding path down (RFC 5882). Nothing raises it yet.
    Bfd,
    /// Stopped here for a restart: the connection closed without a NOTIFICATION.
    GracefulStop,
}

impl std::fmt::Display for DownCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownCause::NotificationSent(n) => write!(f, "sent {n}"),
            DownCause::NotificationReceived(n) => write!(f, "received {n}"),
            DownCause::HoldExpired => f.write_str("hold timer expired"),
            DownCause::TcpClosed => f.write_str("connection closed"),
            DownCause::Administrative(sub) => {
                write!(f, "stopped here ({})", Notification::cease(*sub))
            }
            DownCause::Bfd => f.write_str("BFD down"),
            DownCause::GracefulStop => f.write_str("stopped here for a graceful restart"),
        }
    }
}

/// What the OPEN exchange agreed, reported when the session reaches Established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub remote_id: Ipv4Addr,
    pub remote_as: u32,
    pub hold_time: u16,
    pub keepalive: u16,
    pub negotiated: Negotiated,
    pub remote_caps: Capabilities,
}

#[derive(Clone, Debug)]
pub struct FsmConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub peer_as: u32,
    pub hold_time: u16,
    pub keepalive: u16,
    pub connect_retry: Duration,
    pub passive: bool,
    pub families: Vec<Family>,
    pub extended_message: bool,
    /// First automatic-restart delay; doubles on each failure up to 32×, reset on Established.
    pub idle_hold: Duration,
}

/// RFC 4271 §8: "a large value" for the hold timer before the OPEN arrives; 4 minutes.
pub const OPEN_HOLD: Duration = Duration::from_secs(240);

#[derive(Debug)]
pub struct Fsm {
    pub cfg: FsmConfig,
    state: State,
    /// Set by ManualStop / AutomaticStop: no automatic restart from Idle.
    stopped: bool,
    /// Set after we closed for exceeding the prefix limit: stay down until IdleHold expires,
    /// even if the peer reconnects.
    hold_down: bool,
    pub connect_retry_counter: u32,
    idle_hold_shift: u32,
    /// Negotiated while in OpenConfirm, kept through Established.
    session: Option<SessionInfo>,
    pub last_error: Option<String>,
}

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        Fsm {
            cfg,
            state: State::Idle,
            stopped: true,
            hold_down: false,
            connect_retry_counter: 0,
            idle_hold_shift: 0,
            session: None,
            last_error: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether an incoming connection in Idle restarts the session (automatic restart
    /// pending, no hold-down). Accepting it instead of refusing avoids two speakers that
    /// back off in step refusing each other forever.
    pub fn accepts_in_idle(&self) -> bool {
        self.state == State::Idle && !self.stopped && !self.hold_down
    }

    pub fn session(&self) -> Option<&SessionInfo> {
        self.session.as_ref()
    }

    pub fn handle(&mut self, ev: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Idle => self.idle(ev, &mut out),
            State::Connect | State::Active => self.connecting(ev, &mut out),
            State::OpenSent => self.open_sent(ev, &mut out),
            State::OpenConfirm => self.open_confirm(ev, &mut out),
            State::Established => self.established(ev, &mut out),
        }
        out
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        self.stopped = false;
        self.connect_retry_counter = 0;
        out.push(Action::StartTimer(
            Timer::ConnectRetry,
            self.cfg.connect_retry,
        ));
        if self.cfg.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            out.push(Action::Connect);
        }
    }

    fn idle(&mut self, ev: Event, out: &mut Vec<Action>) {
        match ev {
            Event::ManualStart => {
                // An automatic restart may be pending; this start replaces it. Left armed, it
                // would fire into the new session (found by the `established` fuzz target:
                // a reconfiguration within a second of a hold-timer expiry reset the session
                // again with an FSM error once Established).
                out.push(Action::StopTimer(Timer::IdleHold));
                // An operator's start also ends a max-prefix hold-down.
                self.hold_down = false;
                self.idle_hold_shift = 0;
                self.start(out);
            }
            Event::IdleHoldExpired if !self.stopped => {
                self.hold_down = false;
                self.start(out)
            }
            Event::TcpConnected if self.accepts_in_idle() => {
                out.push(Action::StopTimer(Timer::IdleHold));
                self.connect_retry_counter = 0;
                out.push(Action::Send(Send::Open));
                out.push(Action::StartTimer(Timer::Hold, OPEN_HOLD));
                self.state = State::OpenSent;
            }
            // RFC 4271: every other event in Idle is ignored (connections are refused).
            _ => {}
        }
    }

    /// Go to Idle: stop timers, drop the connection, and (unless stopped) schedule the
    /// automatic restart with exponential backoff.
    /// `cause` is reported (as [`Action::Down`]) only when the session was Established.
    fn enter_idle(&mut self, out: &mut Vec<Action>, cause: DownCause) {
        let was_established = self.state == State::Established;
        out.push(Action::StopTimer(Timer::ConnectRetry));
        out.push(Action::StopTimer(Timer::Hold));
        out.push(Action::StopTimer(Timer::Keepalive));
        out.push(Action::Drop);
        if was_established {
            out.push(Action::Down(cause));
        }
        self.state = State::Idle;
        self.session = None;
        self.connect_retry_counter += 1;
        if !self.stopped {
            let delay = self.cfg.idle_hold * (1 << self.idle_hold_shift.min(5));
            self.idle_hold_shift += 1;
            out.push(Action::StartTimer(Timer::IdleHold, delay));
        }
    }

    fn notify_and_idle(&mut self, n: Notification, out: &mut Vec<Action>) {
        self.last_error = Some(format!("sent {n}"));
        self.hold_down = n.code == code::CEASE && n.subcode == cease::MAX_PREFIXES;
        let cause = if n.code == code::HOLD_TIMER_EXPIRED {
            DownCause::HoldExpired
        } else {
            DownCause::NotificationSent(n.clone())
        };
        out.push(Action::Send(Send::Notification(n)));
        self.enter_idle(out, cause);
    }

    fn stop(&mut self, subcode: u8, out: &mut Vec<Action>) {
        self.stopped = true;
        if matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            out.push(Action::Send(Send::Notification(Notification::cease(
                subcode,
            ))));
        }
        self.enter_idle(out, DownCause::Administrative(subcode));
        self.last_error = None;
    }

    /// Stop for a restart: no NOTIFICATION, only the connection closes.
    fn graceful_stop(&mut self, out: &mut Vec<Action>) {
        self.stopped = true;
        self.enter_idle(out, DownCause::GracefulStop);
        self.last_error = None;
    }

    fn connecting(&mut self, ev: Event, out: &mut Vec<Action>) {
        match ev {
            Event::ManualStart => {}
            Event::ManualStop => self.stop(cease::ADMIN_SHUTDOWN, out),
            Event::AutomaticStop(sub) => self.stop(sub, out),
            Event::GracefulStop => self.graceful_stop(out),
            Event::ConnectRetryExpired => {
                out.push(Action::StartTimer(
                    Timer::ConnectRetry,
                    self.cfg.connect_retry,
                ));
                if !self.cfg.passive {
                    out.push(Action::Drop);
                    out.push(Action::Connect);
                    self.state = State::Connect;
                }
            }
            Event::TcpConnected => {
                out.push(Action::StopTimer(Timer::ConnectRetry));
                out.push(Action::Send(Send::Open));
                out.push(Action::StartTimer(Timer::Hold, OPEN_HOLD));
                self.state = State::OpenSent;
            }
            Event::TcpFails => {
                if self.state == State::Connect {
                    // §8.2.2 Connect: restart the timer and listen for the peer.
                    out.push(Action::StartTimer(
                        Timer::ConnectRetry,
                        self.cfg.connect_retry,
                    ));
                    self.state = State::Active;
                } else {
                    self.last_error = Some("connection failed".into());
                    self.enter_idle(out, DownCause::TcpClosed);
                }
            }
            // Never Established here, so no cause is reported.
            _ => self.enter_idle(out, DownCause::TcpClosed),
        }
    }

    fn fsm_error(&mut self, out: &mut Vec<Action>) {
        let sub = match self.state {
            State::OpenSent => fsm_err::UNEXPECTED_IN_OPENSENT,
            State::OpenConfirm => fsm_err::UNEXPECTED_IN_OPENCONFIRM,
            _ => fsm_err::UNEXPECTED_IN_ESTABLISHED,
        };
        self.notify_and_idle(Notification::new(code::FSM, sub, Vec::new()), out);
    }

    /// Events every state from OpenSent on treats alike.
    fn common(&mut self, ev: &Event, out: &mut Vec<Action>) -> bool {
        match ev {
            Event::ManualStart => {}
            Event::ManualStop => self.stop(cease::ADMIN_SHUTDOWN, out),
            Event::AutomaticStop(sub) => self.stop(*sub, out),
            Event::GracefulStop => self.graceful_stop(out),
            Event::HoldExpired => self.notify_and_idle(Notification::hold_timer_expired(), out),
            Event::TcpFails => {
                self.last_error = Some("connection closed by peer".into());
                self.enter_idle(out, DownCause::TcpClosed);
            }
            Event::MessageError(n) => self.notify_and_idle(n.clone(), out),
            Event::NotificationReceived(n) => {
                self.last_error = Some(format!("received {n}"));
                self.enter_idle(out, DownCause::NotificationReceived(n.clone()));
            }
            Event::CollisionDump => {
                // Only ever before Established (the core resolves collisions in OpenSent /
                // OpenConfirm), so this cause is never reported.
                let n = Notification::cease(cease::CONNECTION_COLLISION);
                out.push(Action::Send(Send::Notification(n.clone())));
                self.enter_idle(out, DownCause::NotificationSent(n));
                // The surviving connection carries the session: no error, no restart.
                self.last_error = None;
            }
            _ => return false,
        }
        true
    }

    fn open_sent(&mut self, ev: Event, out: &mut Vec<Action>) {
        if self.common(&ev, out) {
            return;
        }
        match ev {
            Event::OpenReceived(open) => match self.negotiate(&open) {
                Ok(info) => {
                    out.push(Action::StopTimer(Timer::ConnectRetry));
                    out.push(Action::Send(Send::Keepalive));
                    if info.hold_time == 0 {
                        out.push(Action::StopTimer(Timer::Hold));
                    } else {
                        out.push(Action::StartTimer(
                            Timer::Hold,
                            Duration::from_secs(info.hold_time.into()),
                        ));
                        out.push(Action::StartTimer(
                            Timer::Keepalive,
                            Duration::from_secs(info.keepalive.into()),
                        ));
                    }
                    self.session = Some(info);
                    self.state = State::OpenConfirm;
                }
                Err(n) => self.notify_and_idle(n, out),
            },
            _ => self.fsm_error(out),
        }
    }

    fn open_confirm(&mut self, ev: Event, out: &mut Vec<Action>) {
        if self.common(&ev, out) {
            return;
        }
        match ev {
            Event::KeepaliveExpired => self.send_keepalive(out),
            Event::KeepaliveReceived => {
                self.restart_hold(out);
                self.state = State::Established;
                self.idle_hold_shift = 0;
                self.last_error = None;
                let info = self.session.clone().expect("negotiated in OpenSent");
                out.push(Action::Established(Box::new(info)));
            }
            _ => self.fsm_error(out),
        }
    }

    fn established(&mut self, ev: Event, out: &mut Vec<Action>) {
        if self.common(&ev, out) {
            return;
        }
        match ev {
            Event::KeepaliveExpired => self.send_keepalive(out),
            Event::KeepaliveReceived | Event::UpdateReceived | Event::RouteRefreshReceived => {
                self.restart_hold(out)
            }
            _ => self.fsm_error(out),
        }
    }

    fn send_keepalive(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Send(Send::Keepalive));
        if let Some(s) = &self.session {
            if s.keepalive > 0 {
                out.push(Action::StartTimer(
                    Timer::Keepalive,
                    Duration::from_secs(s.keepalive.into()),
                ));
            }
        }
    }

    fn restart_hold(&mut self, out: &mut Vec<Action>) {
        if let Some(s) = &self.session {
            if s.hold_time > 0 {
                out.push(Action::StartTimer(
                    Timer::Hold,
                    Duration::from_secs(s.hold_time.into()),
                ));
            }
        }
    }

    /// Validate a received OPEN (RFC 4271 §6.2, RFC 6793) and settle the session parameters.
    pub fn negotiate(&self, open: &Open) -> Result<SessionInfo, Notification> {
        let err = |sub: u8, data: Vec<u8>| Notification::new(code::OPEN, sub, data);
        let remote_as = open.asn();
        if remote_as != self.cfg.peer_as {
            return Err(err(
                open_err::BAD_PEER_AS,
                open.my_as.to_be_bytes().to_vec(),
            ));
        }
        let id = open.router_id;
        let ibgp = remote_as == self.cfg.local_as;
        if id.is_unspecified() || id.is_multicast() || (ibgp && id == self.cfg.router_id) {
            return Err(err(open_err::BAD_BGP_IDENTIFIER, id.octets().to_vec()));
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(err(
                open_err::UNACCEPTABLE_HOLD_TIME,
                open.hold_time.to_be_bytes().to_vec(),
            ));
        }
        let hold_time = self.cfg.hold_time.min(open.hold_time);
        let keepalive = if hold_time == 0 {
            0
        } else {
            self.cfg.keepalive.min(hold_time / 3).max(1)
        };
        let families = self
            .cfg
            .families
            .iter()
            .copied()
            .filter(|f| open.caps.families.contains(f))
            .collect();
        Ok(SessionInfo {
            remote_id: id,
            remote_as,
            hold_time,
            keepalive,
            negotiated: Negotiated {
                asn4: open.caps.asn4.is_some(),
                extended_message: self.cfg.extended_message && open.caps.extended_message,
                families,
                ebgp: !ibgp,
            },
            remote_caps: open.caps.clone(),
        })
    }
}
