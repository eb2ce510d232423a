//! FNV-1a, 64 bits: names and ranks that must come out the same on every agent, after every
//! restart and across versions (std's hasher promises none of that). Used for ipset and chain
//! names, file hashes and the ranking of automatic route reflectors.

/// As 16 hex digits: how `twill status` reports a file's hash, and how a client checks it.
pub fn fnv_hex(bytes: impl AsRef<[u8]>) -> String {
    format!("{:016x}", fnv(bytes))
}

pub fn fnv(bytes: impl AsRef<[u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes.as_ref() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
