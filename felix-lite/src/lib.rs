//! felix-lite: the route programmer. It holds the routes a node should have (prefix → next hops)
//! and keeps the kernel's main table equal to them over netlink, touching only routes that carry
//! Twill's protocol number ([`PROTO_TWILL`]).
//!
//! Layers: [`route`] (the model), [`plan`] (the reconcile decision, no I/O), [`message`]
//! (model ↔ rtnetlink messages), [`kernel`] (the netlink sockets), [`programmer`] (the task that
//! owns all of it).

pub mod counters;
pub mod error;
pub mod kernel;
pub mod message;
pub mod plan;
pub mod programmer;
pub mod route;

pub use counters::CounterSnapshot;
pub use error::Error;
pub use plan::Conflict;
pub use programmer::{Change, Config, Programmed, Programmer, Report};
pub use route::{
    install_protocol_name, Hop, KernelRoute, Route, PROTO_TWILL, RT_PROTOS_DIR, TABLE_MAIN,
};
