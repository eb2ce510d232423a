//! The cluster view: what every node knows about the cluster (nodes, their addresses and pod
//! CIDRs, BGP settings, external peers), from a file ([`view`]) or from the Kubernetes API
//! ([`k8s`]). This crate is the only owner of the Kubernetes client; it publishes each new
//! view on a watch channel, and the workloads NetworkPolicy needs (namespaces, pods,
//! NetworkPolicies: [`workloads`]) on another.

pub mod hash;
pub mod k8s;
pub mod nat_outgoing;
mod overlap;
mod raw;
pub mod reflectors;
pub mod selector;
pub mod view;
pub mod workloads;

pub use nat_outgoing::NatOutgoingSettings;
pub use selector::LabelSelector;
pub use view::{
    ClusterView, ExternalPeer, GracefulRestart, NetworkPolicySettings, Node, Timers, ViewError,
};
