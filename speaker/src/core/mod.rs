//! The speaker core: peers, their sessions, the RIBs and the advertisement rules — no I/O.
//!
//! [`Core::handle`] takes one [`Input`] (bytes arrived, timer fired, config changed…) and
//! returns the [`Output`]s it causes (bytes to send, connections to open or close, timers to
//! set, best-route changes). The transport feeds it; tests can too, without sockets.
//!
//! One file per concern: [`peer`] (a peer's state, configuration changes, session up and
//! down), `session` (connections, framing, collision, the FSM's actions), `inbound` (UPDATE
//! checks and import), `export` (who gets what, attribute rewrite, packing, resend) and
//! [`snapshot`] (what `twill status` reads).

mod check;
mod export;
mod gr;
mod inbound;
pub mod peer;
mod session;
pub mod snapshot;

pub use gr::GrSnapshot;
pub use peer::FamilyState;
pub use snapshot::PeerSnapshot;

use crate::config::{ConfigError, Password, PeerConfig, SpeakerConfig};
use crate::fsm::{Event, Timer};
use crate::rib::{Best, LocRib, Path, Source};
use crate::wire::PathAttrs;
use ipnet::IpNet;
use peer::{Peer, Slot};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type ConnId = u64;

#[derive(Debug)]
pub enum Input {
    AddPeer(PeerConfig),
    /// Replace a peer's configuration; the session is reset only if it has to be.
    UpdatePeer(PeerConfig),
    RemovePeer(IpAddr),
    /// Stop every session.
    Shutdown(ShutdownMode),
    SetOriginated(Vec<IpNet>),
    /// Start or stop reflecting routes (RFC 4456) with this cluster ID; sessions stay up.
    SetClusterId(Option<Ipv4Addr>),
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
    /// An outgoing connection could not be made; `error` says why (no route, refused,
    /// timed out), for the peer's status and the log.
    ConnectFailed {
        conn: ConnId,
        error: String,
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
        key: TimerKey,
    },
}

/// How the speaker ends its sessions when it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Cease / Administrative Shutdown (RFC 4486; as a Hard Reset where RFC 8538 was
    /// negotiated) to every peer: they withdraw our routes at once.
    Cease,
    /// Close every connection without a NOTIFICATION: graceful-restart helpers keep our routes
    /// for our restart time (RFC 4724 §4.1). For a restart, with the kernel's routes left.
    Graceful,
}

/// Which timer fired or is to be armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKey {
    /// One session's FSM timer; it dies with the session (a stale one is ignored).
    Session { session: u64, timer: Timer },
    /// A timer of the peer that outlives its sessions.
    Peer(PeerTimer),
    /// The restarting speaker's route selection deferral (RFC 4724 §4.1); not a peer's (its
    /// `peer` is 0.0.0.0).
    Deferral,
}

/// Timers that belong to a peer rather than to one of its sessions: graceful restart's
/// (RFC 4724 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerTimer {
    /// The peer's restart time: its stale routes go if the session is not back by then.
    Restart,
    /// The stale-routes time: stale routes still without End-of-RIB go.
    Stale,
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
        key: TimerKey,
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
    /// Graceful restart, restarting side: the R bit of our OPENs.
    restarting: bool,
    /// The F bits of our OPENs: the kernel has our forwarding state. True for a restart that
    /// found it, and once any session has been up in this process (a session reset keeps
    /// the routes); false only on a start from nothing (a rebooted node), so helpers drop what
    /// our previous run had sent at once.
    forwarding_kept: bool,
    /// Our first advertisement to each peer waits (RFC 4724 §4.1 selection deferral).
    deferring: bool,
    /// The deferral timer runs (from the first session up).
    deferral_armed: bool,
    /// Connections from addresses that are no configured peer's: how many, and when the
    /// last log line about them went out (one a minute at most; a scan of 200 addresses is
    /// one line, not 200).
    refused: u64,
    refused_logged: Option<(Instant, u64)>,
    /// What this speaker sends, one allocation per distinct attribute set.
    interned: export::Interned,
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
            // Replaced by the first input's time; no clock is read after this.
            now: Instant::now(),
            out: Vec::new(),
            route_events: true,
            restarting: false,
            forwarding_kept: false,
            deferring: false,
            deferral_armed: false,
            refused: 0,
            refused_logged: None,
            interned: export::Interned::default(),
        };
        let restarting = cfg.graceful_restart.as_ref().is_some_and(|g| g.restarting);
        core.restarting = restarting;
        core.forwarding_kept = restarting;
        core.deferring = restarting;
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
            Input::Shutdown(mode) => {
                let ev = match mode {
                    ShutdownMode::Cease => Event::ManualStop,
                    ShutdownMode::Graceful => Event::GracefulStop,
                };
                let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
                for p in peers {
                    self.drop_alt(p);
                    self.event(p, Slot::Main, ev.clone());
                }
            }
            Input::SetOriginated(v) => self.set_originated(v),
            Input::SetClusterId(id) => self.set_cluster_id(id),
            Input::Incoming {
                conn,
                remote,
                local,
            } => self.incoming(conn, remote, local),
            Input::Connected { conn, local } => self.connected(conn, local),
            Input::ConnectFailed { conn, error } => self.connect_failed(conn, error),
            Input::Closed { conn } => self.closed(conn),
            Input::Data { conn, bytes } => self.data(conn, bytes),
            Input::Timer { peer, key } => match key {
                TimerKey::Session { session, timer } => self.session_timer(peer, session, timer),
                TimerKey::Peer(t) => self.gr_timer(peer, t),
                TimerKey::Deferral => self.end_deferral("deferral time ran out"),
            },
        }
        self.check_deferral();
        self.flush();
        std::mem::take(&mut self.out)
    }

    /// A node labelled as a reflector (or no longer one) at run time. The loop check on
    /// receipt depends on the cluster ID, and what every peer may be sent on whether we
    /// reflect: re-check what each peer sent, then re-advertise everything to everyone.
    fn set_cluster_id(&mut self, id: Option<Ipv4Addr>) {
        if self.cfg.cluster_id == id {
            return;
        }
        tracing::info!(cluster_id = ?id, "route reflection cluster ID changed");
        self.cfg.cluster_id = id;
        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
        for p in &peers {
            self.reimport(*p);
        }
        for p in peers {
            self.readvertise_all(p);
        }
    }

    fn set_originated(&mut self, v: Vec<IpNet>) {
        let new: HashSet<IpNet> = v
            .into_iter()
            .map(|p| p.trunc())
            .filter(|p| {
                let ok = crate::wire::unicast_prefix(p);
                if !ok {
                    tracing::warn!(prefix = %p, "not a unicast prefix: not originated");
                }
                ok
            })
            .collect();
        for p in self
            .originated
            .difference(&new)
            .copied()
            .collect::<Vec<_>>()
        {
            if self.rib.remove(p, None).1 {
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
                stale: false,
            };
            if self.rib.upsert(p, path).1 {
                self.dirty.push(p);
            }
        }
        self.originated = new;
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

    pub fn loc_rib_len(&self) -> usize {
        self.rib.len()
    }

    /// How many Loc-RIB prefixes have paths only from these peers (none from another peer or
    /// from this speaker). Zero means the peers can be removed without withdrawing a route:
    /// what a make-before-break handover waits for.
    pub fn only_from(&self, peers: &[IpAddr]) -> usize {
        let peers: Vec<IpAddr> = peers.iter().map(|a| canonical(*a)).collect();
        self.rib
            .iter_paths()
            .filter(|(_, paths, _)| {
                !paths.is_empty()
                    && paths
                        .iter()
                        .all(|p| p.source.peer_addr().is_some_and(|a| peers.contains(&a)))
            })
            .count()
    }
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
