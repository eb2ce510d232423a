//! Replay a corpus through the harness and report how deep it reaches: how many inputs got
//! A's session with H to each state, how many UPDATEs A processed and sent, how many prefixes
//! it held, and how often a session went down and came back. A broken invariant panics with
//! the input's file name.
//!
//! Run: `cargo run --release -p fuzz-harness --bin fuzz-replay -- DIR...`

use fuzz_harness::Stats;
use speaker::fsm::State;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn main() {
    let dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        eprintln!("usage: fuzz-replay DIR...");
        std::process::exit(2);
    }
    let mut files = Vec::new();
    for d in &dirs {
        let rd = std::fs::read_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        files.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    files.sort();
    let mut deepest: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = Stats::default();
    let mut with_updates = 0;
    let mut with_routes_to_b = 0;
    for f in &files {
        let data = std::fs::read(f).expect("read");
        let s = std::panic::catch_unwind(|| fuzz_harness::run(&data)).unwrap_or_else(|_| {
            eprintln!("FAILED on {}", f.display());
            std::process::exit(1);
        });
        *deepest
            .entry(s.deepest.map_or("none".into(), |d: State| d.to_string()))
            .or_default() += 1;
        with_updates += usize::from(s.updates_from_h > 0);
        with_routes_to_b += usize::from(s.updates_to_b > 0);
        total.ops += s.ops;
        total.updates_from_h += s.updates_from_h;
        total.updates_to_b += s.updates_to_b;
        total.updates_to_h += s.updates_to_h;
        total.h_downs += s.h_downs;
        total.timers_fired += s.timers_fired;
        total.max_accepted_from_h = total.max_accepted_from_h.max(s.max_accepted_from_h);
        total.max_loc_rib = total.max_loc_rib.max(s.max_loc_rib);
    }
    let n = files.len().max(1);
    println!("inputs: {}", files.len());
    for (state, count) in &deepest {
        println!(
            "  deepest state {state:<12} {count:>7} ({:.1}%)",
            100.0 * *count as f64 / n as f64
        );
    }
    println!(
        "  with an UPDATE processed from H: {with_updates} ({:.1}%)",
        100.0 * with_updates as f64 / n as f64
    );
    println!(
        "  with an UPDATE sent on to B:     {with_routes_to_b} ({:.1}%)",
        100.0 * with_routes_to_b as f64 / n as f64
    );
    println!(
        "operations {}, UPDATEs from H {}, to B {}, to H {}, sessions with H down {}, timers fired {}",
        total.ops,
        total.updates_from_h,
        total.updates_to_b,
        total.updates_to_h,
        total.h_downs,
        total.timers_fired
    );
    println!(
        "most prefixes accepted from H at once {}, largest Loc-RIB {}",
        total.max_accepted_from_h, total.max_loc_rib
    );
}
