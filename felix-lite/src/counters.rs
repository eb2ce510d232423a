//! Counters the metrics endpoint reads; written only by the programmer task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default, Debug)]
pub struct Counters {
    added: AtomicU64,
    replaced: AtomicU64,
    deleted: AtomicU64,
    repaired: AtomicU64,
    conflicts: AtomicU64,
    errors: AtomicU64,
    programmed: AtomicU64,
    last_reconcile_micros: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub added: u64,
    pub replaced: u64,
    pub deleted: u64,
    /// Operations that undid a change made behind felix-lite's back.
    pub repaired: u64,
    /// Wanted prefixes found held by another protocol (counted per reconcile that saw them).
    pub conflicts: u64,
    /// Operations the kernel refused.
    pub errors: u64,
    /// Routes of ours in the kernel after the last operation.
    pub programmed: u64,
    pub last_reconcile: Duration,
}

impl Counters {
    pub(crate) fn add(&self, which: Which, n: u64) {
        let c = match which {
            Which::Added => &self.added,
            Which::Replaced => &self.replaced,
            Which::Deleted => &self.deleted,
            Which::Repaired => &self.repaired,
            Which::Conflicts => &self.conflicts,
            Which::Errors => &self.errors,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_programmed(&self, n: usize) {
        self.programmed.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_last_reconcile(&self, d: Duration) {
        self.last_reconcile_micros
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            added: g(&self.added),
            replaced: g(&self.replaced),
            deleted: g(&self.deleted),
            repaired: g(&self.repaired),
            conflicts: g(&self.conflicts),
            errors: g(&self.errors),
            programmed: g(&self.programmed),
            last_reconcile: Duration::from_micros(g(&self.last_reconcile_micros)),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Which {
    Added,
    Replaced,
    Deleted,
    Repaired,
    Conflicts,
    Errors,
}
