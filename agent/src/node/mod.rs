//! `twill agent`: the program a node runs.
//!
//! Imports run one way: [`run`] (the main loop) starts `crate::control` and `crate::http`,
//! which read `crate::state::NodeState`; neither imports anything of `node`.

mod dataplane;
mod error;
mod nat;
mod peering;
mod policy;
mod readiness;
mod reload;
mod run;

pub use run::{run, Options, ViewSource};
