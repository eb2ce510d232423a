//! Framing and decoding of arbitrary bytes under every negotiated context: must never panic.
//! `cargo +nightly fuzz run decode`
#![no_main]

use libfuzzer_sys::fuzz_target;
use speaker::wire::{decode, frame_len, Family, Negotiated};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let n = Negotiated {
        asn4: data[0] & 1 != 0,
        extended_message: data[0] & 2 != 0,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        ebgp: data[0] & 4 != 0,
    };
    let mut rest = &data[1..];
    while let Ok(Some(len)) = frame_len(rest, n.max_message()) {
        let _ = decode(&rest[..len], &n);
        rest = &rest[len..];
    }
});
