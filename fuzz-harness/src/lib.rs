//! A fuzzing harness that starts from an Established session.
//!
//! Three parties, all in memory: the harness plays a peer `H` (10.0.0.2) whose OPEN it writes
//! itself, so the fuzzer chooses H's role (iBGP, eBGP, reflector client), capabilities
//! (graceful restart, 2- or 4-octet AS, families, Extended Message) and hold time; `A`
//! (10.0.0.1) is the speaker core under test; `B` (10.0.0.3) is a second core peered with A,
//! back to back. After the OPEN / KEEPALIVE exchange with H, the rest of the input is a
//! sequence of operations ([`input`]): raw bytes or crafted UPDATEs from H, End-of-RIB, route
//! refresh, NOTIFICATIONs, timers firing, the connection closing and coming back, and
//! configuration changes on A and B.
//!
//! After every operation: both cores' invariants hold (`Core::check_invariants`: the Loc-RIB
//! is what the Adj-RIBs-In imply, every Adj-RIB-Out is what the export rules give, so a
//! withdrawn route is gone everywhere), and every message A sent to H or B decodes cleanly
//! under what the session negotiated (no error, no RFC 7606 treat-as-withdraw, no attribute
//! discarded): what one core sends the other must accept. A broken check panics, which is
//! what a fuzzer records as a crash.

pub mod input;
mod net;

pub use input::{Config, Op};
pub use net::{h_open, Net, Stats};

/// Run one fuzz input; panics on a broken invariant. Returns what it reached.
pub fn run(data: &[u8]) -> Stats {
    let (cfg, mut ops) = input::parse(data);
    let open = match ops.first() {
        Some(Op::Raw(bytes)) if cfg.own_open => {
            let b = bytes.clone();
            ops.remove(0);
            b
        }
        _ => h_open(&cfg),
    };
    let mut net = Net::new(cfg);
    net.check();
    net.establish_h(open);
    net.check();
    for op in ops {
        net.apply(&op);
        net.check();
    }
    net.stats()
}
