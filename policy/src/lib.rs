//! Kubernetes NetworkPolicy enforced with iptables and ipset (`docs/adr/0003-network-policy.md`).
//!
//! Pure steps, then one owner: [`compile`] (workloads + node → per-family [`Ruleset`]),
//! [`render`] (→ `iptables-restore` / `ipset restore` text), [`plan`] (desired vs. what the
//! kernel holds, read back by [`observed`]) and [`enforcer`], the one task that runs the
//! commands and so owns every `TWILL-…` chain and `twill-…` set. [`nat`] compiles outgoing NAT
//! into the same rulesets (the nat table), so one owner writes both. [`eval`] answers the same
//! questions from the model alone (`twill policy explain`); [`simulate`] walks compiled rules
//! for tests. [`backend`] picks iptables-legacy or iptables-nft as the node's kubelet uses.

pub mod backend;
pub mod cases;
pub mod compile;
pub mod enforcer;
pub mod eval;
pub mod exec;
pub mod nat;
pub mod observed;
pub mod plan;
pub mod render;
pub mod ruleset;
pub mod simulate;

pub use backend::{Backend, BackendChoice};
pub use compile::compile;
pub use enforcer::{Enforcer, EnforcerConfig, EnforcerStatus};
pub use exec::Tools;
pub use nat::NatOutgoing;
pub use ruleset::{Direction, Family, Ruleset};
