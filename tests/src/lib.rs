//! Lab harness: network namespaces, veth links, real BGP daemons, and Twill speakers running
//! inside namespaces — each behind a guard that removes it on drop, failure included.
//!
//! Every name carries the prefix `tw` + this process id, so parallel runs do not collide and a
//! leftover is easy to attribute.

pub mod daemons;
pub mod netns;

pub use netns::{unique, wait_for, Link, Netns, SpeakerInNs, TempDir};
