//! The whole sans-IO core fed arbitrary bytes on an accepted connection, in arbitrary chunks:
//! must never panic. `cargo +nightly fuzz run core`
#![no_main]

use libfuzzer_sys::fuzz_target;
use speaker::core::{Core, Input};
use speaker::{PeerConfig, SpeakerConfig};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let mut core = Core::new(SpeakerConfig::new(64512, "10.0.0.1".parse().unwrap())).unwrap();
    let now = Instant::now();
    let mut p = PeerConfig::new("10.0.0.2".parse().unwrap(), 64512);
    p.passive = true;
    core.handle(Input::AddPeer(p), now);
    let conn = core.alloc_conn();
    core.handle(
        Input::Incoming {
            conn,
            remote: "10.0.0.2:40000".parse().unwrap(),
            local: "10.0.0.1:179".parse().unwrap(),
        },
        now,
    );
    for chunk in data.chunks(97) {
        core.handle(Input::Data { conn, bytes: chunk.to_vec() }, now);
    }
});
