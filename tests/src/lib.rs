//! Lab harness: network namespaces, veth links, real BGP daemons, and Twill speakers running
//! inside namespaces — each behind a guard that removes it on drop, failure included.
//!
//! Every name carries the prefix `tw` + this process id, so parallel runs do not collide and a
//! leftover is easy to attribute.

pub mod capture;
pub mod container;
pub mod daemons;
pub mod dataplane;
pub mod fakeapi;
pub mod kube;
pub mod kubelets;
pub mod l2;
pub mod netns;
pub mod pod;
pub mod procfs;
pub mod replay;
pub mod runtime;
pub mod topology;

pub use capture::{Capture, RouteMonitor};
pub use dataplane::{Dataplane, Remote};
pub use l2::{Switch, TwoRacks};
pub use netns::{unique, wait_for, Link, Netns, SpeakerInNs, TempDir};
pub use pod::Pod;
pub use runtime::NsRuntime;
