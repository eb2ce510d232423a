use std::net::IpAddr;

/// What can go wrong between felix-lite and the kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("netlink request failed: {0}")]
    Netlink(String),
    /// The kernel refused an operation; `errno` is positive (EEXIST = 17, ENETUNREACH = 101, …).
    #[error("kernel refused {op}: {message} (errno {errno})")]
    Refused {
        op: String,
        errno: i32,
        message: String,
    },
    #[error("no route to next hop {0} in the kernel's table")]
    Unresolvable(IpAddr),
    #[error("the route programmer has stopped")]
    Stopped,
}

impl Error {
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}
