//! Graceful restart in `twill lab`, counted with steady pings (100 per second) to and from the
//! restarting node's pods, across racks and within a rack:
//! - one agent stopped (SIGTERM) or killed (SIGKILL) and started again 5 s later: none lost;
//! - the same with graceful restart turned off, to show what it saves (the "before");
//! - a rolling restart of every agent of `rr-fabric`, both reflectors included: none lost;
//! - an agent stopped and not started again: the others drop its routes when its restart time
//!   runs out, not before.

mod common;

use common::lab::*;
use std::time::{Duration, Instant};
use twill_lab::topology::copy_with_view;
use twill_lab::wait_for;

/// Across racks to a1's pods (b1 → a1), within rack a (a2 → a1), from a1's pods across racks
/// (a1 → b2), and a pair a1 takes no part in (b2 → a2).
const PAIRS: [(&str, &str); 4] = [("b1", "a1"), ("a2", "a1"), ("a1", "b2"), ("b2", "a2")];

/// How long the node stays down: a DaemonSet pod replaced in a few seconds.
const GAP: Duration = Duration::from_secs(5);

/// `node`'s session as `of` sees it in `twill status --json`.
fn session(lab: &Lab, of: &str, node_address: &str) -> serde_json::Value {
    lab.peers(of)
        .into_iter()
        .find(|p| p["address"] == node_address)
        .unwrap_or_else(|| panic!("{of} has no peer {node_address}"))
}

/// Stop a1 (SIGTERM, or SIGKILL with `kill`), wait until b1 has seen its session close, keep it
/// down until `GAP` has passed since the stop, start it again (which waits for convergence,
/// stale routes swept included). Returns what b1's status said about a1 while it was down.
fn restart_a1(lab: &Lab, kill: bool) -> serde_json::Value {
    let stopped = Instant::now();
    let mut stop = vec!["lab", "stop", "a1"];
    if kill {
        stop.push("--kill");
    }
    let o = lab.twill(&stop, None);
    assert!(o.status.success(), "{}", text(&o));
    let seen = wait_for(
        "b1 to see a1's session close",
        Duration::from_secs(20),
        || {
            let s = session(lab, "b1", "10.1.0.11");
            (s["state"] != "Established").then_some(s)
        },
    );
    // The gap is the scenario under test (the node is away this long), not a wait for a
    // condition.
    std::thread::sleep(GAP.saturating_sub(stopped.elapsed()));
    let o = lab.twill(&["lab", "start", "a1"], None);
    assert!(o.status.success(), "{}", text(&o));
    seen
}

#[test]
fn an_agent_stopped_or_killed_and_started_5_s_later_loses_no_packet() {
    let lab = Lab::up("two-racks-vxlan");
    for kill in [false, true] {
        let what = if kill { "SIGKILL" } else { "SIGTERM" };
        let pings = Steady::start_all(&lab, &PAIRS);
        let seen = restart_a1(&lab, kill);
        // b1 helped: a1 restarting, its pod CIDR kept as stale meanwhile.
        let gr = &seen["gracefulRestart"];
        assert!(gr["restartTimeLeft"].as_u64().is_some(), "{what}: {seen}");
        assert_eq!(gr["staleRoutes"], 1, "{what}: {seen}");
        // SIGTERM closes without a NOTIFICATION too: to the peer it looks like a crash.
        assert_eq!(seen["lastDown"], "connection closed", "{what}: {seen}");
        Steady::none_lost(
            pings,
            &format!("a1 was stopped ({what}) and started 5 s later"),
        );
        // Back to normal: nothing stale anywhere, every route fresh.
        let s = session(&lab, "b1", "10.1.0.11");
        assert_eq!(s["gracefulRestart"]["staleRoutes"], 0, "{s}");
    }
    let o = lab.test();
    assert!(o.status.success(), "{}", text(&o));
}

/// The same restarts with graceful restart off: what the pings lose without it. This also
/// shows the test above can fail.
#[test]
fn without_graceful_restart_the_same_restarts_lose_packets() {
    let topo = copy_with_view("two-racks-vxlan", |v| {
        format!("{v}gracefulRestart: {{enabled: false}}\n")
    });
    let lab = Lab::up_file("two-racks-vxlan", &topo.join("two-racks-vxlan.clab.yml"));
    for kill in [false, true] {
        let what = if kill { "SIGKILL" } else { "SIGTERM" };
        let pings = Steady::start_all(&lab, &PAIRS);
        let seen = restart_a1(&lab, kill);
        assert_eq!(seen["gracefulRestart"]["negotiated"], false, "{seen}");
        let lost = Steady::losses(
            pings,
            &format!("a1 was stopped ({what}) and started 5 s later, graceful restart off"),
        );
        let to_a1: u32 = lost
            .iter()
            .filter(|(w, _)| w.contains("-> a1"))
            .map(|(_, l)| *l)
            .sum();
        assert!(to_a1 > 100, "{what}: {lost:?}");
    }
}

/// Every agent of `rr-fabric` restarted one after another, as a DaemonSet rollout with
/// `maxUnavailable: 1` does: stopped (SIGTERM), started, the fabric converged, the next one.
/// Both reflectors (a1, b1) included; steady pings across and within racks throughout.
#[test]
fn a_rolling_restart_of_rr_fabric_with_both_reflectors_loses_no_packet() {
    let lab = Lab::up_file("rr-fabric", &topology("rr-fabric"));
    assert!(lab.up_output.contains("12 pods"), "{}", lab.up_output);
    let pairs = [
        ("c2", "a1"),
        ("a2", "c1"),
        ("b3", "a4"),
        ("a3", "a4"),
        ("c4", "b1"),
        ("b2", "c3"),
    ];
    // 30 s at 100 per second: longer than the rollout (a few seconds here), which is checked.
    let pings = Steady::start_all_n(&lab, &pairs, 3000);
    let started = Instant::now();
    for rack in ['a', 'b', 'c'] {
        for i in 1..=4 {
            let node = format!("{rack}{i}");
            // When, beside the pings' reply times, should a packet ever be lost.
            eprintln!("{node}: stopping at {:.3}", epoch());
            let o = lab.twill(&["lab", "stop", &node], None);
            assert!(o.status.success(), "{}", text(&o));
            let o = lab.twill(&["lab", "start", &node], None);
            assert!(o.status.success(), "{node}: {}", text(&o));
            eprintln!("{node}: started again at {:.3}", epoch());
        }
    }
    eprintln!("rolling restart of 12 agents took {:?}", started.elapsed());
    Steady::none_lost(pings, "every agent of rr-fabric was restarted in turn");
}

/// With a 6 s restart time, a stopped agent's pod CIDR stays on the others for 6 s and goes
/// then; not before, not much after.
#[test]
fn an_agent_not_restarted_loses_its_routes_when_the_restart_time_runs_out() {
    let topo = copy_with_view("two-racks-vxlan", |v| {
        format!("{v}gracefulRestart: {{restartTime: 6}}\n")
    });
    let lab = Lab::up_file("two-racks-vxlan", &topo.join("two-racks-vxlan.clab.yml"));
    let o = lab.twill(&["lab", "stop", "a1"], None);
    assert!(o.status.success(), "{}", text(&o));
    // `lab stop` returns once a1's agent has exited, after b1 saw the session close and
    // started a1's restart time.
    let stopped = Instant::now();
    // b1's own count of the time left, first seen: (when, whole seconds left, rounded down).
    let mut first_left: Option<(Instant, u64)> = None;
    let gone = wait_for(
        "a1's pod CIDR to leave b1 and a2",
        Duration::from_secs(20),
        || {
            // Taken before asking: b1 counted what is left after this instant.
            let asked = Instant::now();
            let s = session(&lab, "b1", "10.1.0.11");
            if let (None, Some(left)) =
                (first_left, s["gracefulRestart"]["restartTimeLeft"].as_u64())
            {
                first_left = Some((asked, left));
            }
            let b1 = lab.kernel_route("b1", "10.244.1.0/24");
            let a2 = lab.kernel_route("a2", "10.244.1.0/24");
            if !b1.is_empty() || !a2.is_empty() {
                // Still there: only allowed while the restart time runs.
                assert!(
                    stopped.elapsed() < Duration::from_secs(10),
                    "kept beyond the restart time: {b1} / {a2}"
                );
                return None;
            }
            Some(Instant::now())
        },
    );
    eprintln!(
        "a1's routes went {:?} after its agent stopped (restart time 6 s)",
        gone - stopped
    );
    let (seen, left) = first_left.expect("b1 never showed a1 as restarting");
    // The 6 s reached b1 (a route dropped at once, without graceful restart, shows none), and
    // the routes outlived what b1 said was left: neither depends on how fast `lab stop` was.
    assert!(
        left >= 5,
        "b1's restart time left when first seen: {left} s"
    );
    assert!(
        gone >= seen + Duration::from_secs(left),
        "dropped {:?} after b1 said {left} s were left",
        gone - seen
    );
}
