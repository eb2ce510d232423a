//! The cluster view from the Kubernetes API: Node objects and Twill's CRDs.

pub mod crd;
pub mod view;
pub mod watch;
