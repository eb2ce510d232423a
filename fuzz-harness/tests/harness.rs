//! The harness itself: every configuration it can be given reaches Established with H, and
//! scripted inputs drive routes through A to B and back out; the committed seed corpus replays
//! without a broken invariant.

use fuzz_harness::input::{encode, Config, Families, Op, Role, Side};
use speaker::fsm::State;

#[test]
fn every_configuration_reaches_established() {
    for b0 in 0..=255u8 {
        for b1 in [0x00u8, 0x15, 0x2a, 0x3f, 0x40, 0x55, 0x6a, 0x7f] {
            let s = fuzz_harness::run(&[b0, b1]);
            assert!(
                s.established,
                "{:?}: {:?}",
                Config::parse(b0, b1),
                s.deepest
            );
        }
    }
}

fn ebgp() -> Config {
    Config {
        h_role: Role::Ebgp,
        graceful_restart: true,
        asn4: true,
        families: Families::Both,
        extended_message: true,
        hold_time: 90,
        export_all_to_h: true,
        b_role: Role::Ibgp,
        export_all_to_b: true,
        import_pods_only: false,
        max_prefixes: false,
        own_open: false,
    }
}

#[test]
fn routes_flow_from_h_through_a_to_b_and_are_withdrawn() {
    // Announce two prefixes (AS path [65002], next hop H), withdraw one, announce IPv6.
    let ops = vec![
        Op::Update {
            withdraw: vec![],
            announce: vec![0, 1],
            attrs: 1 << 2,
        },
        Op::EndOfRib { v6: false },
        Op::Update {
            withdraw: vec![1],
            announce: vec![8],
            attrs: 1 << 2,
        },
        Op::Originate {
            side: Side::B,
            mask: 0x7f,
        },
        Op::ReconfigureB { bits: 1 },
        Op::Close,
        Op::Reconnect,
    ];
    let s = fuzz_harness::run(&encode(&ebgp(), &ops));
    assert!(s.established);
    assert_eq!(s.deepest, Some(State::Established));
    assert_eq!(s.max_accepted_from_h, 2, "{s:?}");
    assert!(s.updates_to_b >= 2, "eBGP routes go on to iBGP B: {s:?}");
    assert!(s.updates_to_h >= 1, "B's routes go to H: {s:?}");
    assert_eq!(s.h_downs, 1, "{s:?}");
}

#[test]
fn a_loop_a_bad_first_as_and_the_prefix_limit() {
    let mut cfg = ebgp();
    cfg.max_prefixes = true;
    let ops = vec![
        // AS path through A's own AS: a loop, not accepted.
        Op::Update {
            withdraw: vec![],
            announce: vec![0],
            attrs: 3 << 2,
        },
        // Not starting with H's AS: treat-as-withdraw.
        Op::Update {
            withdraw: vec![],
            announce: vec![1],
            attrs: 4 << 2,
        },
        // Nine accepted prefixes: over the limit of 8, the session goes down.
        Op::Update {
            withdraw: vec![],
            announce: vec![0, 1, 2, 3],
            attrs: 1 << 2,
        },
        Op::Update {
            withdraw: vec![],
            announce: vec![4, 5, 6, 7],
            attrs: 1 << 2,
        },
        Op::Update {
            withdraw: vec![],
            announce: vec![11],
            attrs: 1 << 2,
        },
        Op::FireTimer {
            side: Side::A,
            index: 0,
        },
        Op::Reconnect,
    ];
    let s = fuzz_harness::run(&encode(&cfg, &ops));
    assert_eq!(s.max_accepted_from_h, 8, "{s:?}");
    assert_eq!(s.h_downs, 1, "{s:?}");
}

#[test]
fn a_looped_route_stays_out_after_a_filter_change() {
    // The AS path holds A's own AS: rejected on receipt. A filter change re-runs the receipt
    // checks; it once ran only the filter and let the looped route in (the acceptance
    // invariant in `check_invariants` catches that).
    let ops = vec![
        Op::Update {
            withdraw: vec![],
            announce: vec![0],
            attrs: 3 << 2,
        },
        Op::ReconfigureH { bits: 1 },
        Op::ReconfigureH { bits: 0 },
    ];
    let s = fuzz_harness::run(&encode(&ebgp(), &ops));
    assert_eq!(s.max_accepted_from_h, 0, "{s:?}");
}

#[test]
fn the_seed_corpus_replays_and_mostly_reaches_established() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/established");
    let mut n = 0;
    let mut established = 0;
    for e in std::fs::read_dir(&dir).expect("fuzz/seeds/established") {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let s = fuzz_harness::run(&data);
        n += 1;
        established += usize::from(s.deepest == Some(State::Established));
    }
    assert!(n >= 10, "{n} seeds");
    assert!(
        established * 10 >= n * 9,
        "{established} of {n} reached Established"
    );
}

/// Inputs that once broke an invariant, each named for what it found; every one must pass now.
#[test]
fn regressions_found_by_fuzzing_pass() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/established");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("fuzz/regressions/established") {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| fuzz_harness::run(&data)).is_err() {
            panic!("{} fails again", path.display());
        }
        n += 1;
    }
    assert!(n >= 1);
}

/// B's process restarts (stopped gracefully, then killed): A keeps B's routes as stale through
/// each restart, and B's End-of-RIB sweeps the one the new B no longer originates, every
/// invariant holding after every step (the harness checks them).
#[test]
fn a_restarting_b_is_helped_by_a() {
    let ops = vec![
        Op::Originate {
            side: Side::B,
            mask: 0x7,
        },
        Op::ReconfigureB { bits: 0x40 },
        Op::ReconfigureB { bits: 0xc0 },
    ];
    let input = encode(&ebgp(), &ops);
    // The same bytes are the seed `fuzz/seeds/established/b-restarts`.
    assert_eq!(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/seeds/established/b-restarts"
        ))
        .unwrap(),
        input
    );
    let s = fuzz_harness::run(&input);
    assert_eq!(s.ops, ops.len());
    assert_eq!(s.max_stale_from_b, 3, "{s:?}");
}
