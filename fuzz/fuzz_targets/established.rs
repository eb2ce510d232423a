//! A speaker core with an Established session to a peer the harness plays, and a second core
//! back to back: fuzzed messages, timers, reconnects and configuration changes, with both
//! cores' invariants checked after every step (see `fuzz-harness`).
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run established fuzz/seeds/established`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_harness::run(data);
});
