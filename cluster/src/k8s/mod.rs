//! The cluster view from the Kubernetes API: Node objects and Twill's CRDs.

pub mod crd;
#[cfg(test)]
mod deploy_tests;
pub mod view;
pub mod watch;
