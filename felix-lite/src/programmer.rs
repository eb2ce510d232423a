//! The route programmer: one task owns the desired routes, the netlink sockets and the belief of
//! what the kernel holds; everything else talks to it through [`Programmer`].

use crate::counters::{CounterSnapshot, Counters, Which};
use crate::error::Error;
use crate::kernel::{notice, Kernel, Notice, Notifications};
use crate::plan::{plan, Conflict, Observed, Op, Plan, Scope, Target};
use crate::route::{Hop, KernelRoute, Route, PROTO_TWILL};
use futures::StreamExt;
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

#[derive(Clone, Debug)]
pub struct Config {
    /// Full dump-and-compare period: catches what notifications cannot report (IPv4 routes the
    /// kernel flushes with their device are removed without a notification).
    pub resync_interval: Duration,
    /// How long a reported change may settle before the repair reads the table back, so a burst
    /// of notifications costs one dump.
    pub repair_delay: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            resync_interval: Duration::from_secs(90),
            repair_delay: Duration::from_millis(20),
        }
    }
}

/// One change to the desired routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Set(Route),
    Remove(IpNet),
}

/// What one reconcile did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub applied: usize,
    /// Operations the kernel refused, with its reason.
    pub failed: Vec<(IpNet, String)>,
    pub conflicts: Vec<Conflict>,
}

/// A route felix-lite wants, as it will be (or is) in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Programmed {
    /// As the owner handed it over.
    pub wanted: Route,
    /// With recursive next hops resolved; `None` while they do not resolve.
    pub resolved: Option<Route>,
    /// True when the kernel holds exactly `resolved` with Twill's protocol number.
    pub installed: bool,
}

enum Command {
    Update(Vec<Change>, oneshot::Sender<Report>),
    ReplaceAll(Vec<Route>, oneshot::Sender<Report>),
    Resync(oneshot::Sender<Report>),
    Routes(oneshot::Sender<Vec<Programmed>>),
    Shutdown,
}

/// Handle to the programmer task. Cloning is cheap; the task stops on [`Programmer::shutdown`]
/// or when every handle is gone, leaving its routes in the kernel for the next run to adopt.
#[derive(Clone)]
pub struct Programmer {
    tx: mpsc::Sender<Command>,
    counters: Arc<Counters>,
}

impl Programmer {
    /// Open the netlink sockets in the caller's network namespace, adopt the routes of ours
    /// already in the kernel, and start the task. Nothing is deleted until
    /// [`Programmer::replace_all`] hands over a complete desired set.
    pub async fn start(config: Config) -> Result<Programmer, Error> {
        let kernel = Kernel::open()?;
        let notifications = Kernel::subscribe()?;
        let observed = kernel.dump().await?;
        let counters = Arc::new(Counters::default());
        counters.set_programmed(observed.ours.len());
        info!(adopted = observed.ours.len(), "route programmer started");
        let (tx, rx) = mpsc::channel(64);
        let task = Task {
            kernel,
            config,
            wanted: HashMap::new(),
            targets: HashMap::new(),
            observed,
            complete: false,
            dirty: HashSet::new(),
            repair_at: None,
            counters: counters.clone(),
        };
        tokio::spawn(task.run(rx, notifications));
        Ok(Programmer { tx, counters })
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Apply changes to the desired routes; returns once the kernel has answered for each.
    pub async fn update(&self, changes: Vec<Change>) -> Result<Report, Error> {
        self.ask(|tx| Command::Update(changes, tx)).await
    }

    /// Make `routes` the complete desired set: anything else of ours is deleted, adopted routes
    /// included.
    pub async fn replace_all(&self, routes: Vec<Route>) -> Result<Report, Error> {
        self.ask(|tx| Command::ReplaceAll(routes, tx)).await
    }

    /// Read the kernel's table back now and repair any difference (what the periodic resync does).
    pub async fn resync(&self) -> Result<Report, Error> {
        self.ask(Command::Resync).await
    }

    pub async fn routes(&self) -> Result<Vec<Programmed>, Error> {
        self.ask(Command::Routes).await
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// Stop the task; the routes stay in the kernel.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
        self.tx.closed().await;
    }
}

struct Task {
    kernel: Kernel,
    config: Config,
    /// Desired routes as handed over.
    wanted: HashMap<IpNet, Route>,
    /// The same with next hops resolved: what the kernel should hold.
    targets: HashMap<IpNet, Target>,
    /// What we believe the kernel holds: a dump, then our own acknowledged operations and
    /// notifications on top.
    observed: Observed,
    /// Whether the owner has handed over a complete desired set (until then adopted strays stay).
    complete: bool,
    /// Prefixes a notification reported changed behind our back.
    dirty: HashSet<IpNet>,
    repair_at: Option<Instant>,
    counters: Arc<Counters>,
}

/// Why a reconcile runs: decides whether its operations count as repairs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    Owner,
    Repair,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, mut notifications: Notifications) {
        let mut resync = tokio::time::interval_at(
            Instant::now() + self.config.resync_interval,
            self.config.resync_interval,
        );
        loop {
            let repair_at = self.repair_at;
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(Command::Update(changes, done)) => {
                        let r = self.update(changes).await;
                        let _ = done.send(r);
                    }
                    Some(Command::ReplaceAll(routes, done)) => {
                        let r = self.replace_all(routes).await;
                        let _ = done.send(r);
                    }
                    Some(Command::Resync(done)) => {
                        let r = self.resync().await;
                        let _ = done.send(r);
                    }
                    Some(Command::Routes(reply)) => {
                        let _ = reply.send(self.programmed());
                    }
                },
                n = notifications.next() => match n {
                    Some((m, _)) => {
                        if let Some(n) = notice(&m) {
                            self.noticed(n);
                        }
                    }
                    None => {
                        warn!("route notification socket closed; relying on periodic resync");
                        notifications = futures::channel::mpsc::unbounded().1;
                    }
                },
                _ = sleep_until(repair_at) => {
                    self.repair_at = None;
                    self.repair().await;
                }
                _ = resync.tick() => {
                    self.resync().await;
                }
            }
        }
        debug!("route programmer stopped");
    }

    fn programmed(&self) -> Vec<Programmed> {
        let mut out: Vec<Programmed> = self
            .wanted
            .values()
            .map(|w| {
                let resolved = match self.targets.get(&w.prefix) {
                    Some(Target::Route(r)) => Some(r.clone()),
                    _ => None,
                };
                let installed = resolved.as_ref().is_some_and(|r| {
                    self.observed
                        .ours
                        .get(&w.prefix)
                        .is_some_and(|k| k.route == *r)
                });
                Programmed {
                    wanted: w.clone(),
                    resolved,
                    installed,
                }
            })
            .collect();
        out.sort_by_key(|p| p.wanted.prefix);
        out
    }

    async fn resolve(&self, route: &Route) -> Target {
        if !route.needs_resolution() {
            return Target::Route(route.clone());
        }
        let mut hops = Vec::with_capacity(route.next_hops().len());
        for h in route.next_hops() {
            if h.ifindex.is_some() {
                hops.push(*h);
                continue;
            }
            match self.kernel.lookup(h.gateway).await {
                Ok((gateway, ifindex)) => hops.push(Hop::direct(gateway, ifindex)),
                Err(e) => {
                    warn!(prefix = %route.prefix, next_hop = %h.gateway, error = %e,
                        "next hop does not resolve; route waits");
                    return Target::Pending;
                }
            }
        }
        Target::Route(Route::new(route.prefix, hops))
    }

    async fn update(&mut self, changes: Vec<Change>) -> Report {
        let mut scope = HashSet::with_capacity(changes.len());
        for c in changes {
            match c {
                Change::Set(r) => {
                    let t = self.resolve(&r).await;
                    scope.insert(r.prefix);
                    self.targets.insert(r.prefix, t);
                    self.wanted.insert(r.prefix, r);
                }
                Change::Remove(p) => {
                    let p = p.trunc();
                    scope.insert(p);
                    self.wanted.remove(&p);
                    self.targets.remove(&p);
                }
            }
        }
        // An explicit removal deletes even an adopted route: the owner knows it is gone.
        let p = plan(&self.targets, &self.observed, Scope::Only(&scope), true);
        self.execute(p, Cause::Owner).await
    }

    async fn replace_all(&mut self, routes: Vec<Route>) -> Report {
        self.wanted = routes.into_iter().map(|r| (r.prefix, r)).collect();
        self.targets.clear();
        for r in self.wanted.values() {
            let t = self.resolve(r).await;
            self.targets.insert(r.prefix, t);
        }
        self.complete = true;
        let p = plan(&self.targets, &self.observed, Scope::All, true);
        self.execute(p, Cause::Owner).await
    }

    /// Full read-back: re-resolve recursive next hops, dump, compare everything.
    async fn resync(&mut self) -> Report {
        for r in self.wanted.values() {
            if r.needs_resolution() {
                let t = self.resolve(r).await;
                self.targets.insert(r.prefix, t);
            }
        }
        match self.kernel.dump().await {
            Ok(o) => self.observed = o,
            Err(e) => {
                warn!(error = %e, "route dump failed; resync skipped");
                return Report::default();
            }
        }
        let p = plan(&self.targets, &self.observed, Scope::All, self.complete);
        self.execute(p, Cause::Repair).await
    }

    /// Read back and fix only the prefixes notifications flagged.
    async fn repair(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        match self.kernel.dump().await {
            Ok(o) => self.observed = o,
            Err(e) => {
                warn!(error = %e, "route dump failed; repair left to the periodic resync");
                return;
            }
        }
        let p = plan(
            &self.targets,
            &self.observed,
            Scope::Only(&dirty),
            self.complete,
        );
        self.execute(p, Cause::Repair).await;
    }

    /// A notification: anything that does not match what we want on a prefix we care about is
    /// flagged for repair. Our own operations come back here too and match.
    fn noticed(&mut self, n: Notice) {
        let (k, gone) = match n {
            Notice::New(k) => (k, false),
            Notice::Deleted(k) => (k, true),
        };
        let prefix = k.route.prefix;
        let want = match self.targets.get(&prefix) {
            Some(Target::Route(r)) => Some(r),
            _ => None,
        };
        let suspicious = match (k.is_ours(), gone, want) {
            (true, false, Some(r)) => k.route != *r,
            (true, false, None) => self.complete,
            (true, true, Some(_)) => true,
            (true, true, None) => false,
            // Another protocol touched a prefix we want: it may have replaced ours, or freed it.
            (false, _, Some(_)) => true,
            (false, _, None) => false,
        };
        if k.is_ours() && !suspicious {
            if gone {
                self.observed.ours.remove(&prefix);
            } else {
                self.observed.ours.insert(prefix, k);
            }
            return;
        }
        if suspicious {
            debug!(%prefix, route = %k, gone, "route changed behind our back");
            self.dirty.insert(prefix);
            if self.repair_at.is_none() {
                self.repair_at = Some(Instant::now() + self.config.repair_delay);
            }
        }
    }

    async fn execute(&mut self, p: Plan, cause: Cause) -> Report {
        let started = std::time::Instant::now();
        let mut report = Report {
            conflicts: p.conflicts,
            ..Default::default()
        };
        for c in &report.conflicts {
            warn!(prefix = %c.wanted.prefix, ours = %c.wanted, theirs = %c.foreign,
                "prefix held by another protocol's route; leaving it alone");
        }
        self.counters
            .add(Which::Conflicts, report.conflicts.len() as u64);
        if !p.ops.is_empty() {
            for (op, result) in self.kernel.apply(p.ops).await {
                let prefix = op.prefix();
                match result {
                    Ok(()) => {
                        report.applied += 1;
                        self.record(op, cause);
                    }
                    Err(e) => {
                        if e.errno() == Some(EEXIST) {
                            warn!(%prefix, op = %op, "prefix taken by another protocol meanwhile; leaving it alone");
                        } else {
                            warn!(%prefix, op = %op, error = %e, "kernel refused route operation");
                        }
                        self.counters.add(Which::Errors, 1);
                        report.failed.push((prefix, e.to_string()));
                    }
                }
            }
        }
        self.counters.set_programmed(self.observed.ours.len());
        self.counters.set_last_reconcile(started.elapsed());
        report
    }

    fn record(&mut self, op: Op, cause: Cause) {
        if cause == Cause::Repair {
            info!(prefix = %op.prefix(), op = %op, "repaired");
            self.counters.add(Which::Repaired, 1);
        }
        match op {
            Op::Add(r) | Op::Replace(r) => {
                let which = if self.observed.ours.contains_key(&r.prefix) {
                    Which::Replaced
                } else {
                    Which::Added
                };
                self.counters.add(which, 1);
                let priority = if r.prefix.addr().is_ipv6() { 1024 } else { 0 };
                self.observed.ours.insert(
                    r.prefix,
                    KernelRoute {
                        route: r,
                        protocol: PROTO_TWILL,
                        priority,
                        kind: 1,
                    },
                );
            }
            Op::Delete(k) => {
                self.counters.add(Which::Deleted, 1);
                self.observed.ours.remove(&k.route.prefix);
            }
        }
    }
}

/// EEXIST, without pulling libc in for one constant.
const EEXIST: i32 = 17;

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
