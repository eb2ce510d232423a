//! Twill's BGP speaker.
//!
//! Layers, bottom up: [`wire`] (bytes ⇄ messages), [`fsm`] (one session's state machine),
//! [`rib`] (Adj-RIB-In, Loc-RIB and the decision process, Adj-RIB-Out), [`core`] (peers, RIB
//! and advertisement rules tied together, still without I/O), then [`transport`] (tokio:
//! sockets and timers) and [`api`] (the handle the rest of Twill uses).

pub mod api;
pub mod config;
pub mod core;
pub mod fsm;
mod md5;
pub mod notification;
pub mod policy;
pub mod rib;
pub mod transport;
pub mod wire;

pub use api::{Speaker, SpeakerError};
pub use config::{
    ConfigError, GracefulRestartConfig, Password, PeerConfig, PeerRole, SpeakerConfig,
};
pub use core::{
    BestRoute, FamilyState, GrSnapshot, NextHop, PeerSnapshot, RouteEvent, ShutdownMode,
};
pub use fsm::{DownCause, State};
pub use policy::{ExportFilter, ImportFilter, NextHopOwners, PrefixRule, Rejection};
pub use wire::Family;
