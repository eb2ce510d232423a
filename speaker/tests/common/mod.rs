//! The in-memory wire shared by the core tests: cores back to back, no sockets, no clock, no
//! tokio. Timers the cores arm are recorded so a test can fire one; a core can be paused (its
//! inputs held), cut off (its connections closed, as when a process dies) or replaced (a
//! restarted process).
#![allow(dead_code)]

use speaker::core::{ConnId, Core, Input, Output, RouteEvent, TimerKey};
use speaker::{ExportFilter, Family, PeerConfig, SpeakerConfig};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub struct Wire {
    pub cores: Vec<Core>,
    pub addrs: Vec<IpAddr>,
    /// (core, conn) -> (other core, its conn)
    pub links: HashMap<(usize, ConnId), (usize, ConnId)>,
    pub queue: VecDeque<(usize, Input)>,
    pub routes: Vec<Vec<RouteEvent>>,
    /// (core, code, subcode) of every NOTIFICATION sent.
    pub sent_notifications: Vec<(usize, u8, u8)>,
    pub opened_by: HashMap<(usize, ConnId), usize>,
    /// Armed timers: (core, peer, key) -> delay asked for.
    pub timers: BTreeMap<(usize, IpAddr, TimerKey), Duration>,
    /// Cores whose inputs are held (a process not answering yet).
    pub paused: HashSet<usize>,
    held: VecDeque<(usize, Input)>,
    /// UPDATE / OPEN / NOTIFICATION bytes each core sent, per message type (for "sent nothing").
    pub sent_types: Vec<Vec<u8>>,
}

impl Wire {
    pub fn new(specs: &[(u32, &str)]) -> Wire {
        let cores = specs
            .iter()
            .map(|(asn, id)| {
                let mut c = SpeakerConfig::new(*asn, id.parse().unwrap());
                c.originate = vec![format!("10.244.{}.0/24", &id[id.len() - 1..])
                    .parse()
                    .unwrap()];
                Core::new(c).unwrap()
            })
            .collect();
        Wire {
            cores,
            addrs: specs.iter().map(|(_, id)| id.parse().unwrap()).collect(),
            links: HashMap::new(),
            queue: VecDeque::new(),
            routes: vec![Vec::new(); specs.len()],
            sent_notifications: Vec::new(),
            opened_by: HashMap::new(),
            timers: BTreeMap::new(),
            paused: HashSet::new(),
            held: VecDeque::new(),
            sent_types: vec![Vec::new(); specs.len()],
        }
    }

    pub fn index_of(&self, a: IpAddr) -> usize {
        self.addrs
            .iter()
            .position(|x| *x == a)
            .expect("known address")
    }

    pub fn push(&mut self, core: usize, i: Input) {
        self.queue.push_back((core, i));
    }

    /// Deliver until nothing moves (bounded). Inputs of paused cores are held.
    pub fn run(&mut self) {
        for _ in 0..10_000 {
            let Some((c, input)) = self.queue.pop_front() else {
                return;
            };
            if self.paused.contains(&c) {
                self.held.push_back((c, input));
                continue;
            }
            let out = self.cores[c].handle(input, Instant::now());
            let bad = self.cores[c].check_invariants();
            assert!(bad.is_empty(), "core {c}: {bad:#?}");
            for o in out {
                self.output(c, o);
            }
        }
        panic!("did not settle");
    }

    /// Let a paused core take its held inputs.
    pub fn resume(&mut self, c: usize) {
        self.paused.remove(&c);
        let (mine, others): (VecDeque<_>, VecDeque<_>) =
            self.held.drain(..).partition(|(x, _)| *x == c);
        self.held = others;
        self.queue.extend(mine);
        self.run();
    }

    /// Fire an armed timer of core `c` (panics if it is not armed).
    pub fn fire(&mut self, c: usize, peer: IpAddr, key: TimerKey) {
        assert!(
            self.timers.remove(&(c, peer, key)).is_some(),
            "core {c}: timer {key:?} for {peer} is not armed: {:?}",
            self.timers
        );
        self.push(c, Input::Timer { peer, key });
        self.run();
    }

    /// Whether core `c` has timer `key` for `peer` armed.
    pub fn armed(&self, c: usize, peer: IpAddr, key: TimerKey) -> bool {
        self.timers.contains_key(&(c, peer, key))
    }

    /// Core `c`'s process dies: every connection of it closes (the kernel's FIN), its timers
    /// and pending inputs vanish. The peers see the connections close.
    pub fn kill(&mut self, c: usize) {
        let ends: Vec<_> = self
            .links
            .keys()
            .filter(|(x, _)| *x == c)
            .copied()
            .collect();
        for end in ends {
            if let Some((o, their)) = self.links.remove(&end) {
                self.links.remove(&(o, their));
                self.push(o, Input::Closed { conn: their });
            }
        }
        self.timers.retain(|(x, _, _), _| *x != c);
        self.queue.retain(|(x, _)| *x != c);
        self.held.retain(|(x, _)| *x != c);
        self.run();
    }

    /// Core `c` starts again as a new process with `cfg` (its peers to be added again).
    pub fn replace(&mut self, c: usize, cfg: SpeakerConfig) {
        self.kill(c);
        self.cores[c] = Core::new(cfg).unwrap();
    }

    fn output(&mut self, c: usize, o: Output) {
        match o {
            Output::Connect { conn, remote, .. } => {
                let other = self.index_of(remote.ip());
                let their = self.cores[other].alloc_conn();
                self.links.insert((c, conn), (other, their));
                self.links.insert((other, their), (c, conn));
                let local = SocketAddr::new(self.addrs[c], 40000 + conn as u16);
                self.opened_by.insert((c, conn), c);
                self.opened_by.insert((other, their), c);
                self.push(
                    other,
                    Input::Incoming {
                        conn: their,
                        remote: local,
                        local: SocketAddr::new(remote.ip(), 179),
                    },
                );
                // The dialling side learns of its connection first, as with a real SYN-ACK:
                // both dialling sides reach OpenSent before either accepts, a true collision.
                self.queue.push_front((c, Input::Connected { conn, local }));
            }
            Output::Send { conn, bytes } => {
                if bytes.len() >= 19 {
                    self.sent_types[c].push(bytes[18]);
                }
                if bytes.len() >= 21 && bytes[18] == 3 {
                    self.sent_notifications.push((c, bytes[19], bytes[20]));
                }
                if let Some((o, their)) = self.links.get(&(c, conn)).copied() {
                    self.push(o, Input::Data { conn: their, bytes });
                }
            }
            Output::Close { conn } => {
                if let Some((o, their)) = self.links.remove(&(c, conn)) {
                    self.links.remove(&(o, their));
                    self.push(o, Input::Closed { conn: their });
                }
            }
            Output::SetTimer { peer, key, after } => {
                match after {
                    Some(d) => self.timers.insert((c, peer, key), d),
                    None => self.timers.remove(&(c, peer, key)),
                };
            }
            Output::ListenKey { .. } => {}
            Output::Route(r) => self.routes[c].push(r),
        }
    }

    pub fn peer(&mut self, c: usize, other: usize, asn: u32) {
        self.peer_with(c, other, asn, ExportFilter::All);
    }

    pub fn peer_with(&mut self, c: usize, other: usize, asn: u32, export: ExportFilter) {
        let mut p = PeerConfig::new(self.addrs[other], asn);
        p.families = vec![Family::Ipv4Unicast];
        p.export = export;
        self.push(c, Input::AddPeer(p));
    }

    pub fn best_of(&self, c: usize, prefix: &str) -> bool {
        self.last_event(c, prefix).is_some_and(|r| r.best.is_some())
    }

    /// The latest route event core `c` emitted for `prefix`.
    pub fn last_event(&self, c: usize, prefix: &str) -> Option<&RouteEvent> {
        self.routes[c]
            .iter()
            .rev()
            .find(|r| r.prefix.to_string() == prefix)
    }

    pub fn established(&self, c: usize) -> usize {
        self.cores[c]
            .snapshot(Instant::now())
            .iter()
            .filter(|p| p.state == speaker::State::Established)
            .count()
    }
}
