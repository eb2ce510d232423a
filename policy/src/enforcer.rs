//! The one task that owns Twill's firewall state: every `TWILL-…` chain in the filter table
//! (NetworkPolicy) and the nat table (outgoing NAT), the jumps to them from `FORWARD` and
//! `POSTROUTING`, and every `twill-…` ipset, for each address family. It takes whole workload
//! models (the newest wins; a burst is one batch) or word that policy is off, and outgoing
//! NAT's settings; compiles both, plans against what it last wrote (its belief) and runs one
//! `ipset restore` and one `iptables-restore` per family. The resync timer reads the kernel
//! back (`iptables-save`, `ipset save`) and replans against that, so a chain, rule or set
//! deleted by hand returns within one period and the counters are brought up to date. Handles
//! are cheap clones over a channel; the state is read through a `watch` of [`EnforcerStatus`].

use crate::backend::{resolve, BackendChoice, Resolved};
use crate::exec::{ExecError, Tools};
use crate::nat::{compile_nat, NatOutgoing};
use crate::observed::{parse_ipset, parse_iptables, Observed};
use crate::plan::{believed, plan_tables, teardown};
use crate::ruleset::{Counted, Direction, Family, Ruleset, Table};
use cluster::workloads::Workloads;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

#[derive(Clone, Debug)]
pub struct EnforcerConfig {
    /// This node's name: its pods are the ones policed here.
    pub node: String,
    pub families: Vec<Family>,
    pub resync: Duration,
    pub tools: Tools,
    /// Which iptables to use, resolved once at start (`auto` reads the node); `None` uses
    /// `tools` as given.
    pub backend: Option<BackendChoice>,
    /// Where `bridge-nf-call-iptables` lives (`/proc/sys/net/bridge`); `None` leaves it.
    pub bridge_sysctl_dir: Option<std::path::PathBuf>,
    /// Outgoing NAT as it starts (changed later with [`Enforcer::set_nat`]).
    pub nat: NatOutgoing,
}

/// One policy's packet counts in one direction (since the agent started).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCounters {
    pub policy: String,
    pub direction: &'static str,
    pub allowed: u64,
    pub denied: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnforcerStatus {
    /// The generation of the last workloads handed over, and of the last one in force.
    pub wanted: u64,
    pub in_force: u64,
    /// Why the last batch failed (the rules in force are then the previous ones), and the
    /// generation it was for.
    pub error: Option<String>,
    pub failed: u64,
    pub rules: usize,
    pub sets: usize,
    pub set_entries: usize,
    /// Policies that select a pod of this node.
    pub policies: usize,
    /// Milliseconds the last batch that changed something took (read, plan, run).
    pub last_apply_ms: f64,
    pub batches: u64,
    /// Read-plan-run rounds, whether or not they changed anything.
    pub syncs: u64,
    /// The iptables backend in use and why; `None` while it is being resolved, or when the
    /// tools were given as they are.
    pub iptables: Option<Resolved>,
    /// Whether bridged (same-node) pod traffic passes through iptables.
    pub bridge_netfilter: bool,
    pub counters: Vec<PolicyCounters>,
    /// Whether NetworkPolicy is enforced (false: Twill's filter chains are removed).
    pub policy_on: bool,
    /// Outgoing NAT: the families it is in force for ("IPv4", "IPv6").
    pub nat_families: Vec<&'static str>,
    /// Connections outgoing NAT translated since the agent started (the nat table sees the
    /// first packet of each).
    pub nat_masqueraded: u64,
}

enum Cmd {
    Apply(Arc<Workloads>, u64),
    PolicyOff,
    Nat(NatOutgoing),
}

/// What the filter table is to hold.
#[derive(Clone)]
enum PolicyInput {
    /// Nothing handed over yet: the filter table and its sets are left as they are (a model
    /// without policies would remove every rule in force); only outgoing NAT is written.
    Unknown,
    /// NetworkPolicy off: no filter chain of Twill's, so none is left dropping traffic with
    /// nothing to update it.
    Off,
    On(Arc<Workloads>, u64),
}

#[derive(Clone)]
pub struct Enforcer {
    tx: mpsc::UnboundedSender<Cmd>,
    status: watch::Receiver<EnforcerStatus>,
}

impl Enforcer {
    /// Start the task (on the current tokio runtime).
    pub fn start(cfg: EnforcerConfig) -> Enforcer {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stx, srx) = watch::channel(EnforcerStatus::default());
        tokio::spawn(run(cfg, rx, stx));
        Enforcer { tx, status: srx }
    }

    /// Hand over a new model; `generation` grows with each.
    pub fn apply(&self, w: Arc<Workloads>, generation: u64) {
        let _ = self.tx.send(Cmd::Apply(w, generation));
    }

    /// NetworkPolicy is off on this node: remove Twill's filter chains and sets, keep NAT.
    pub fn policy_off(&self) {
        let _ = self.tx.send(Cmd::PolicyOff);
    }

    /// New outgoing NAT settings (the cluster view changed).
    pub fn set_nat(&self, nat: NatOutgoing) {
        let _ = self.tx.send(Cmd::Nat(nat));
    }

    pub fn status(&self) -> EnforcerStatus {
        self.status.borrow().clone()
    }

    /// Wait until `generation` (or a later one) is in force or has failed; `None` on timeout.
    pub async fn wait_for(&self, generation: u64, timeout: Duration) -> Option<EnforcerStatus> {
        let mut rx = self.status.clone();
        let wait = async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if s.in_force >= generation || s.failed >= generation {
                        return Some(s.clone());
                    }
                }
                rx.changed().await.ok()?;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

/// Counts carried over from chains that were rewritten (iptables starts them at zero).
type Carried = BTreeMap<Counted, u64>;

/// What the task remembers between batches: the carried counts, and per family what the
/// kernel holds as of our last successful batch. A change is planned against that belief (no
/// read-back on the hot path: a pod's rules go in with one restore per table); the resync
/// reads the kernel and replans, which repairs whatever changed behind our back.
#[derive(Default)]
struct Memory {
    carried: Carried,
    beliefs: BTreeMap<Family, Observed>,
    /// Whether the nat table holds anything of Twill's, per family, as last read or written
    /// (absent: not known yet, so it is read).
    nat_seen: BTreeMap<Family, bool>,
}

async fn run(
    mut cfg: EnforcerConfig,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    status: watch::Sender<EnforcerStatus>,
) {
    let bridge = match &cfg.bridge_sysctl_dir {
        Some(dir) => bridge_netfilter(dir),
        None => true,
    };
    status.send_modify(|s| s.bridge_netfilter = bridge);
    if let Some(choice) = cfg.backend {
        let tools = cfg.tools.clone();
        let families = cfg.families.clone();
        let r = tokio::task::spawn_blocking(move || {
            let r = resolve(choice, &tools);
            leave_other_backend(&tools, r.backend, &families);
            r
        })
        .await
        .unwrap_or_else(|_| Resolved {
            backend: None,
            why: "backend detection panicked: plain iptables".into(),
        });
        info!(backend = r.backend.map_or("plain iptables", |b| b.name()), asked = %choice, why = %r.why, "iptables backend");
        cfg.tools = cfg.tools.with_backend(r.backend);
        status.send_modify(|s| s.iptables = Some(r));
    }
    let mut policy = PolicyInput::Unknown;
    let mut nat = cfg.nat.clone();
    let mut memory = Memory::default();
    let mut last_error: Option<String> = None;
    let mut tick = tokio::time::interval(cfg.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let read_back;
        tokio::select! {
            cmd = rx.recv() => {
                read_back = false;
                let Some(cmd) = cmd else { return };
                // A burst is one batch: only the newest model and settings matter.
                let mut next = Some(cmd);
                while let Some(cmd) = next {
                    match cmd {
                        Cmd::Apply(w, g) => policy = PolicyInput::On(w, g),
                        Cmd::PolicyOff => policy = PolicyInput::Off,
                        Cmd::Nat(n) => nat = n,
                    }
                    next = rx.try_recv().ok();
                }
                if let PolicyInput::On(_, g) = &policy {
                    status.send_modify(|s| s.wanted = *g);
                }
            }
            _ = tick.tick() => read_back = true,
        }
        let generation = match &policy {
            PolicyInput::On(_, g) => *g,
            PolicyInput::Unknown | PolicyInput::Off => 0,
        };
        let cfg2 = cfg.clone();
        let nat2 = nat.clone();
        let policy2 = policy.clone();
        let memory_in = std::mem::take(&mut memory);
        let started = Instant::now();
        let outcome =
            tokio::task::spawn_blocking(move || sync(&cfg2, &policy2, &nat2, memory_in, read_back))
                .await;
        let Ok((result, memory_out)) = outcome else {
            warn!("policy batch panicked");
            continue;
        };
        memory = memory_out;
        status.send_modify(|s| s.syncs += 1);
        match result {
            Ok(done) => {
                if done.changed {
                    info!(
                        generation,
                        rules = done.rules,
                        sets = done.sets,
                        nat = ?done.nat_families,
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "firewall rules in force"
                    );
                } else {
                    debug!(generation, "firewall rules already in force");
                }
                if last_error.take().is_some() {
                    info!("policy rules programmed again after an error");
                }
                status.send_modify(|s| {
                    s.in_force = generation;
                    s.policy_on = generation > 0;
                    s.nat_families = done.nat_families.clone();
                    if let Some(n) = done.nat_masqueraded {
                        s.nat_masqueraded = n;
                    }
                    s.error = None;
                    s.rules = done.rules;
                    s.sets = done.sets;
                    s.set_entries = done.set_entries;
                    s.policies = done.policies;
                    if let Some(c) = done.counters {
                        s.counters = c;
                    }
                    if done.changed {
                        s.last_apply_ms = started.elapsed().as_secs_f64() * 1e3;
                        s.batches += 1;
                    }
                });
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) {
                    warn!(generation, error = %text, "firewall rules not programmed; the previous ones stay in force");
                }
                last_error = Some(text.clone());
                status.send_modify(|s| {
                    s.error = Some(text);
                    s.failed = generation;
                });
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{family}: {source}")]
    Exec {
        family: &'static str,
        source: ExecError,
    },
}

struct Done {
    changed: bool,
    rules: usize,
    sets: usize,
    set_entries: usize,
    policies: usize,
    /// Read from the kernel this time (a resync), else the last figures stand.
    counters: Option<Vec<PolicyCounters>>,
    nat_families: Vec<&'static str>,
    nat_masqueraded: Option<u64>,
}

/// One plan-run for every family, against the kernel read back (`read_back`, or no belief yet)
/// or against the belief. Returns the memory whatever happens; a family that failed forgets
/// its belief, so the next batch reads the kernel.
fn sync(
    cfg: &EnforcerConfig,
    policy: &PolicyInput,
    nat: &NatOutgoing,
    mut mem: Memory,
    read_back: bool,
) -> (Result<Done, SyncError>, Memory) {
    let mut done = Done {
        changed: false,
        rules: 0,
        sets: 0,
        set_entries: 0,
        policies: 0,
        counters: None,
        nat_families: Vec::new(),
        nat_masqueraded: None,
    };
    let mut totals: BTreeMap<Counted, u64> = mem.carried.clone();
    let mut read_all = true;
    for &family in &cfg.families {
        let fam = family.name();
        let wrap = |source| SyncError::Exec {
            family: fam,
            source,
        };
        // Policy off: an empty filter table of ours (the plan removes what is there).
        let mut desired = match policy {
            PolicyInput::On(w, _) => crate::compile(w, &cfg.node, family),
            PolicyInput::Off | PolicyInput::Unknown => Ruleset::new(family),
        };
        compile_nat(nat, &mut desired);
        if nat.on(family) {
            done.nat_families.push(family.name());
        }
        // Before NetworkPolicy's first model only the nat table is planned, against the
        // kernel (a belief would leave the filter table out), and no belief is kept.
        let untouched = matches!(policy, PolicyInput::Unknown);
        let tables: &[Table] = if untouched {
            &[Table::Nat]
        } else {
            &Table::ALL
        };
        // The nat table is read only where Twill has or wants something in it: beside
        // kube-proxy it is the largest table, and this runs every resync.
        let read_nat = nat.on(family) || mem.nat_seen.get(&family) != Some(&false);
        let reading: Vec<Table> = tables
            .iter()
            .copied()
            .filter(|t| *t != Table::Nat || read_nat)
            .collect();
        let mut from_belief = false;
        let observed = match mem.beliefs.remove(&family) {
            Some(b) if !read_back && !untouched => {
                read_all = false;
                from_belief = true;
                b
            }
            _ => match read_kernel(&cfg.tools, family, &reading) {
                Ok(o) => o,
                Err(e) => return (Err(wrap(e)), mem),
            },
        };
        let p = plan_tables(&desired, &observed, tables);
        // iptables starts a rewritten chain's counters at zero and forgets a removed one's:
        // what they held is carried, read now if this batch was planned from belief.
        let touched: Vec<Table> = tables
            .iter()
            .copied()
            .filter(|t| {
                p.chains_written.iter().chain(&p.chains_removed).any(|c| {
                    desired.table(*t).contains_key(c) || observed.table(*t).chains.contains_key(c)
                })
            })
            .collect();
        let fresh;
        let counts = if from_belief && !touched.is_empty() {
            let mut o = Observed::default();
            match cfg.tools.save(family, &touched) {
                Ok(t) => parse_iptables(&t, &mut o),
                Err(e) => return (Err(wrap(e)), mem),
            }
            fresh = o.counters;
            &fresh
        } else {
            &observed.counters
        };
        let mut carry = Carried::new();
        for ((chain, label), packets) in counts {
            let key = (chain.clone(), label.clone());
            let Some(what) = desired
                .counted
                .get(&key)
                .cloned()
                .or_else(|| crate::nat::counted(chain, label))
            else {
                continue;
            };
            *totals.entry(what.clone()).or_default() += packets;
            if p.chains_written.contains(chain) || p.chains_removed.contains(chain) {
                *carry.entry(what).or_default() += packets;
            }
        }
        if !p.is_empty() {
            debug!(family = fam, summary = ?p.summary, "policy batch");
            if !p.sets.is_empty() {
                if let Err(e) = cfg.tools.ipset_restore(&p.sets) {
                    return (Err(wrap(e)), mem);
                }
            }
            if !p.rules.is_empty() {
                if let Err(e) = cfg.tools.restore(family, &p.rules) {
                    return (Err(wrap(e)), mem);
                }
            }
            done.changed = true;
        }
        for (what, n) in carry {
            *mem.carried.entry(what).or_default() += n;
        }
        if untouched {
            mem.nat_seen.insert(family, !desired.nat.is_empty());
        } else {
            let belief = believed(&desired, &p);
            mem.nat_seen.insert(family, !belief.nat.chains.is_empty());
            mem.beliefs.insert(family, belief);
        }
        done.rules += desired.rule_count();
        done.sets += desired.sets.len();
        done.set_entries += desired.set_entries();
        let here: std::collections::BTreeSet<&str> = desired
            .counted
            .values()
            .filter_map(|c| match c {
                Counted::Allowed { policy, .. } | Counted::Denied { policy, .. } => {
                    Some(policy.as_str())
                }
                Counted::Masqueraded => None,
            })
            .collect();
        done.policies = done.policies.max(here.len());
    }
    if read_all {
        let mut by_policy: BTreeMap<(String, Direction), PolicyCounters> = BTreeMap::new();
        let mut masqueraded = 0;
        for (what, n) in totals {
            let (policy, dir, allowed) = match what {
                Counted::Allowed { policy, dir } => (policy, dir, true),
                Counted::Denied { policy, dir } => (policy, dir, false),
                Counted::Masqueraded => {
                    masqueraded += n;
                    continue;
                }
            };
            let c = by_policy
                .entry((policy.clone(), dir))
                .or_insert_with(|| PolicyCounters {
                    policy,
                    direction: dir.as_str(),
                    ..Default::default()
                });
            if allowed {
                c.allowed += n;
            } else {
                c.denied += n;
            }
        }
        done.counters = Some(by_policy.into_values().collect());
        done.nat_masqueraded = Some(masqueraded);
    }
    (Ok(done), mem)
}

/// Make bridged traffic (pods on one node, one `cni0`) pass through iptables: load
/// `br_netfilter` if its sysctls are missing, then set both to 1. False if it cannot be done
/// (same-node traffic is then not policed, which `twill status` says).
fn bridge_netfilter(dir: &std::path::Path) -> bool {
    let files = ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"];
    if !dir.join(files[0]).exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("br_netfilter")
            .status();
    }
    let mut ok = true;
    for f in files {
        if let Err(e) = std::fs::write(dir.join(f), "1") {
            warn!(file = %dir.join(f).display(), error = %e, "cannot make bridged pod traffic pass through iptables; same-node traffic is not policed");
            ok = false;
        }
    }
    ok
}

/// Remove everything Twill has in the given families, both tables (rules first, then sets):
/// `twill cleanup`-style removal by hand and tests. Blocking. Returns how many chains and
/// sets went.
pub fn remove_all(tools: &Tools, families: &[Family]) -> Result<(usize, usize), SyncError> {
    remove(tools, families, true)
}

/// Remove Twill's chains and jumps, not its sets (which both backends share): what an
/// earlier choice of backend left in the one not chosen now.
pub fn remove_rules(tools: &Tools, families: &[Family]) -> Result<usize, SyncError> {
    remove(tools, families, false).map(|(chains, _)| chains)
}

fn remove(tools: &Tools, families: &[Family], sets: bool) -> Result<(usize, usize), SyncError> {
    let mut removed = (0, 0);
    for &family in families {
        let wrap = |source| SyncError::Exec {
            family: family.name(),
            source,
        };
        let mut o = Observed::default();
        // Every table that exists, creating none (the backend not in use may have none).
        parse_iptables(&tools.save_existing(family).map_err(wrap)?, &mut o);
        if sets {
            parse_ipset(&tools.ipset_save().map_err(wrap)?, &mut o);
        }
        let p = teardown(family, &o);
        if !p.rules.is_empty() {
            tools.restore(family, &p.rules).map_err(wrap)?;
        }
        if !p.sets.is_empty() {
            tools.ipset_restore(&p.sets).map_err(wrap)?;
        }
        removed.0 += o.filter.chains.len() + o.nat.chains.len();
        removed.1 += p.sets.lines().count();
    }
    Ok(removed)
}

/// Twill's rules in the backend not chosen go before the first batch: left there, nothing
/// would update them, and the sets they match (shared by both backends) could never be
/// destroyed. A backend that is not installed has nothing to remove.
fn leave_other_backend(
    tools: &Tools,
    chosen: Option<crate::backend::Backend>,
    families: &[Family],
) {
    let Some(other) = tools.of_other_backend(chosen) else {
        return;
    };
    match remove_rules(&other, families) {
        Ok(0) => {}
        Ok(n) => {
            info!(chains = n, from = %other.iptables_save, "removed Twill's chains from the iptables backend not in use")
        }
        Err(SyncError::Exec { source, .. }) if source.not_installed() => {}
        Err(e) => {
            warn!(error = %e, "Twill's chains in the iptables backend not in use could not be removed")
        }
    }
}

/// What the kernel holds of Twill's in one family: its chains and jumps in `tables`
/// (`iptables-save`) and its sets (`ipset save`).
fn read_kernel(tools: &Tools, family: Family, tables: &[Table]) -> Result<Observed, ExecError> {
    let mut o = Observed::default();
    parse_iptables(&tools.save(family, tables)?, &mut o);
    parse_ipset(&tools.ipset_save()?, &mut o);
    Ok(o)
}
