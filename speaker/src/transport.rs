//! The only part of the speaker that owns sockets and timers.
//!
//! One driver task owns the [`Core`]; one task per TCP connection reads into the driver and
//! writes what the driver hands it; one task accepts. Inputs flow into the core, outputs flow
//! back out: the core never waits on I/O.

use crate::config::Password;
use crate::core::{ConnId, Core, Input, Output, PeerSnapshot, RouteEvent, ShutdownMode, TimerKey};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// Requests from the API handle to the driver.
pub(crate) enum Command {
    Input(Box<Input>),
    Snapshot(oneshot::Sender<Vec<PeerSnapshot>>),
    Routes(oneshot::Sender<Vec<RouteEvent>>),
    RibLen(oneshot::Sender<usize>),
    Refused(oneshot::Sender<u64>),
    OnlyFrom(Vec<IpAddr>, oneshot::Sender<usize>),
    Subscribe(mpsc::UnboundedSender<RouteEvent>),
    Shutdown(ShutdownMode),
}

enum NetEvent {
    Accepted(TcpStream, SocketAddr, SocketAddr),
    Connected(ConnId, SocketAddr),
    ConnectFailed(ConnId, String),
    Data(ConnId, Vec<u8>),
    Closed(ConnId),
}

enum ConnCmd {
    Send(Vec<u8>),
    Close,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_BUF: usize = 64 * 1024;
const READ_BUF_IDLE: usize = 4096;

pub(crate) struct Driver {
    core: Core,
    conns: HashMap<ConnId, mpsc::UnboundedSender<ConnCmd>>,
    timers: HashMap<(IpAddr, TimerKey), Instant>,
    subs: Vec<mpsc::UnboundedSender<RouteEvent>>,
    events: mpsc::UnboundedSender<NetEvent>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Shared with the accept task; the driver sets the peers' MD5 keys on it.
    listener: Option<Arc<TcpListener>>,
}

pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(128)
}

pub(crate) async fn run(
    core: Core,
    listener: Option<TcpListener>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let (events, mut event_rx) = mpsc::unbounded_channel();
    let mut core = core;
    core.set_route_events(false);
    let listener = listener.map(Arc::new);
    let mut d = Driver {
        core,
        conns: HashMap::new(),
        timers: HashMap::new(),
        subs: Vec::new(),
        events: events.clone(),
        tasks: Vec::new(),
        listener: listener.clone(),
    };
    let accept = listener.map(|l| {
        let events = events.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, remote)) => {
                        let local = s.local_addr().unwrap_or(remote);
                        if events.send(NetEvent::Accepted(s, remote, local)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    });
    let mut shutdown = ShutdownMode::Cease;
    loop {
        let next = d.timers.values().min().copied();
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
            next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        ));
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Input(i)) => d.input(*i),
                Some(Command::Snapshot(tx)) => { let _ = tx.send(d.core.snapshot(Instant::now())); }
                Some(Command::Routes(tx)) => { let _ = tx.send(d.core.routes()); }
                Some(Command::RibLen(tx)) => { let _ = tx.send(d.core.loc_rib_len()); }
                Some(Command::Refused(tx)) => { let _ = tx.send(d.core.refused_connections()); }
                Some(Command::OnlyFrom(peers, tx)) => { let _ = tx.send(d.core.only_from(&peers)); }
                Some(Command::Subscribe(tx)) => {
                    for r in d.core.routes() {
                        let _ = tx.send(r);
                    }
                    d.subs.push(tx);
                    d.core.set_route_events(true);
                }
                Some(Command::Shutdown(mode)) => { shutdown = mode; break; }
                None => break,
            },
            Some(ev) = event_rx.recv() => d.net(ev),
            _ = sleep, if next.is_some() => {
                let now = Instant::now();
                let due: Vec<_> = d.timers.iter().filter(|(_, t)| **t <= now).map(|(k, _)| *k).collect();
                for k in due {
                    d.timers.remove(&k);
                    d.input(Input::Timer { peer: k.0, key: k.1 });
                }
            }
        }
    }
    // Stop every session as asked (a dropped handle: Cease) and let the writers flush.
    d.input(Input::Shutdown(shutdown));
    d.conns.clear();
    if let Some(a) = accept {
        a.abort();
    }
    for t in d.tasks.drain(..) {
        let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
    }
}

impl Driver {
    fn input(&mut self, i: Input) {
        let out = self.core.handle(i, Instant::now());
        self.apply(out);
    }

    fn net(&mut self, ev: NetEvent) {
        let input = match ev {
            NetEvent::Accepted(stream, remote, local) => {
                let conn = self.core.alloc_conn();
                let _ = stream.set_nodelay(true);
                let (tx, rx) = mpsc::unbounded_channel();
                self.conns.insert(conn, tx);
                let events = self.events.clone();
                self.tasks
                    .push(tokio::spawn(connection(conn, stream, rx, events)));
                Input::Incoming {
                    conn,
                    remote,
                    local,
                }
            }
            NetEvent::Connected(conn, local) => Input::Connected { conn, local },
            NetEvent::ConnectFailed(conn, error) => {
                self.conns.remove(&conn);
                Input::ConnectFailed { conn, error }
            }
            NetEvent::Data(conn, bytes) => Input::Data { conn, bytes },
            NetEvent::Closed(conn) => {
                self.conns.remove(&conn);
                Input::Closed { conn }
            }
        };
        self.input(input);
    }

    fn apply(&mut self, out: Vec<Output>) {
        // Coalesce consecutive sends to one connection into one write.
        let mut pending: Option<(ConnId, Vec<u8>)> = None;
        for o in out {
            if let Output::Send { conn, bytes } = o {
                match &mut pending {
                    Some((c, buf)) if *c == conn => buf.extend_from_slice(&bytes),
                    _ => {
                        self.flush(pending.take());
                        pending = Some((conn, bytes));
                    }
                }
                continue;
            }
            self.flush(pending.take());
            match o {
                Output::Send { .. } => unreachable!("handled above"),
                Output::Connect {
                    conn,
                    remote,
                    local,
                    password,
                } => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    self.conns.insert(conn, tx);
                    let events = self.events.clone();
                    self.tasks.push(tokio::spawn(dial(
                        conn, remote, local, password, rx, events,
                    )));
                }
                Output::ListenKey { peer, password } => {
                    if let Some(l) = &self.listener {
                        match crate::md5::set_key(l.as_ref(), peer, password.as_ref()) {
                            Ok(()) => {
                                debug!(peer = %peer, set = password.is_some(), "TCP MD5 key on the listener")
                            }
                            Err(e) => {
                                warn!(peer = %peer, error = %e, "cannot set the TCP MD5 key on the listener")
                            }
                        }
                    }
                }
                Output::Close { conn } => {
                    if let Some(tx) = self.conns.remove(&conn) {
                        let _ = tx.send(ConnCmd::Close);
                    }
                }
                Output::SetTimer { peer, key, after } => match after {
                    Some(d) => {
                        self.timers.insert((peer, key), Instant::now() + d);
                    }
                    None => {
                        self.timers.remove(&(peer, key));
                    }
                },
                Output::Route(r) => {
                    self.subs.retain(|s| s.send(r.clone()).is_ok());
                    if self.subs.is_empty() {
                        self.core.set_route_events(false);
                    }
                }
            }
        }
        self.flush(pending);
        self.tasks.retain(|t| !t.is_finished());
    }

    fn flush(&mut self, pending: Option<(ConnId, Vec<u8>)>) {
        if let Some((conn, bytes)) = pending {
            if let Some(tx) = self.conns.get(&conn) {
                let _ = tx.send(ConnCmd::Send(bytes));
            }
        }
    }
}

async fn dial(
    conn: ConnId,
    remote: SocketAddr,
    local: Option<IpAddr>,
    password: Option<Password>,
    mut cmds: mpsc::UnboundedReceiver<ConnCmd>,
    events: mpsc::UnboundedSender<NetEvent>,
) {
    let attempt = async {
        let sock = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(l) = local {
            sock.bind(SocketAddr::new(l, 0))?;
        }
        if let Some(k) = &password {
            crate::md5::set_key(&sock, remote.ip(), Some(k))?;
        }
        tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(remote))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    };
    let stream = tokio::select! {
        r = attempt => r,
        // Closed before the connection came up: abandon it.
        _ = cmds.recv() => return,
    };
    match stream {
        Ok(s) => {
            let _ = s.set_nodelay(true);
            let local = s.local_addr().unwrap_or(remote);
            debug!(peer = %remote, "connected");
            if events.send(NetEvent::Connected(conn, local)).is_ok() {
                connection(conn, s, cmds, events).await;
            }
        }
        Err(e) => {
            debug!(peer = %remote, error = %e, "connect failed");
            let _ = events.send(NetEvent::ConnectFailed(conn, e.to_string()));
        }
    }
}

async fn connection(
    conn: ConnId,
    stream: TcpStream,
    mut cmds: mpsc::UnboundedReceiver<ConnCmd>,
    events: mpsc::UnboundedSender<NetEvent>,
) {
    let (mut r, mut w) = stream.into_split();
    // Small until a read fills it (a peer sending a table), then READ_BUF: a reflector has a
    // connection per client, and 500 idle 64 KiB buffers were 32 MB of its memory.
    let mut buf = vec![0u8; READ_BUF_IDLE];
    loop {
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = events.send(NetEvent::Closed(conn));
                    return;
                }
                Ok(n) => {
                    if events.send(NetEvent::Data(conn, buf[..n].to_vec())).is_err() {
                        return;
                    }
                    if n == buf.len() && buf.len() < READ_BUF {
                        buf.resize(READ_BUF, 0);
                    }
                }
            },
            cmd = cmds.recv() => match cmd {
                Some(ConnCmd::Send(b)) => {
                    if w.write_all(&b).await.is_err() {
                        let _ = events.send(NetEvent::Closed(conn));
                        return;
                    }
                }
                Some(ConnCmd::Close) | None => {
                    let _ = w.shutdown().await;
                    return;
                }
            },
        }
    }
}
