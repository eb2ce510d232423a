//! The cluster view from the Kubernetes API (Node objects and Twill's CRDs) and the workloads
//! NetworkPolicy needs (Namespaces, Pods, NetworkPolicies).

pub mod crd;
#[cfg(test)]
mod deploy_tests;
pub mod nodes;
pub mod view;
pub mod watch;
pub mod workloads;
