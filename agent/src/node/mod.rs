//! `twill agent`: the program a node runs.
//!
//! Imports run one way: [`run`] (the main loop) starts `crate::control` and `crate::http`,
//! which read [`state::NodeState`]; neither imports the main loop, its reload or its errors.

mod dataplane;
mod error;
mod readiness;
mod reload;
mod run;
pub mod state;

pub use run::{run, Options, ViewSource};
