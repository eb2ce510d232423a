//! What a route is to felix-lite: a prefix and its next hops, as the kernel will hold them.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;

/// Twill's route protocol number (`rtm_protocol`).
///
/// 77 is unused by every routing daemon we know of: BIRD uses 12, Calico's Felix 80, FRR the
/// 186–196 range, keepalived 18, Babel 42, Open/R 99. A node migrating from Calico therefore never
/// has its Felix routes mistaken for Twill's. `ip route` shows it as `proto twill` once
/// `twill.conf` in [`RT_PROTOS_DIR`] names it ([`install_protocol_name`]).
pub const PROTO_TWILL: u8 = 77;

/// Where iproute2 learns the protocol's name (one line, `77 twill`).
pub const RT_PROTOS_DIR: &str = "/etc/iproute2/rt_protos.d";

/// The main routing table, the only one felix-lite programs.
pub const TABLE_MAIN: u32 = 254;

/// One way out for a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hop {
    pub gateway: IpAddr,
    /// The output interface. `None` asks felix-lite to resolve the gateway recursively through
    /// the kernel's table (a BGP next hop behind a router): the route is then installed via the
    /// gateway and interface of the kernel's route towards it.
    pub ifindex: Option<u32>,
    /// `onlink`: the gateway is reachable on the interface even though no connected route says so
    /// (how tunnel routes point at a remote VTEP address).
    pub onlink: bool,
}

impl Hop {
    /// A gateway on a directly connected subnet of `ifindex` (flannel host-gw's route).
    pub fn direct(gateway: IpAddr, ifindex: u32) -> Hop {
        Hop {
            gateway,
            ifindex: Some(ifindex),
            onlink: false,
        }
    }

    /// A gateway reached over `ifindex` without a connected route (tunnel devices).
    pub fn onlink(gateway: IpAddr, ifindex: u32) -> Hop {
        Hop {
            gateway,
            ifindex: Some(ifindex),
            onlink: true,
        }
    }

    /// A gateway to be resolved through the kernel's own routes.
    pub fn recursive(gateway: IpAddr) -> Hop {
        Hop {
            gateway,
            ifindex: None,
            onlink: false,
        }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "via {}", self.gateway)?;
        match self.ifindex {
            Some(i) => write!(f, " ifindex {i}")?,
            None => write!(f, " (recursive)")?,
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

/// A route felix-lite should hold: one prefix, one or more equal next hops (several make an ECMP
/// route). Hops are kept sorted and unique so two routes compare equal when the kernel would hold
/// the same thing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub prefix: IpNet,
    next_hops: Vec<Hop>,
}

impl Route {
    /// A route to `prefix` over `next_hops` (sorted and de-duplicated here). The prefix is
    /// truncated to its network address, as the kernel stores it.
    pub fn new(prefix: IpNet, next_hops: impl IntoIterator<Item = Hop>) -> Route {
        let mut next_hops: Vec<Hop> = next_hops.into_iter().collect();
        next_hops.sort();
        next_hops.dedup();
        Route {
            prefix: prefix.trunc(),
            next_hops,
        }
    }

    pub fn next_hops(&self) -> &[Hop] {
        &self.next_hops
    }

    /// True when some hop still needs recursive resolution.
    pub fn needs_resolution(&self) -> bool {
        self.next_hops.iter().any(|h| h.ifindex.is_none())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.prefix)?;
        for h in &self.next_hops {
            write!(f, " {h}")?;
        }
        Ok(())
    }
}

/// A route as found in the kernel's main table, of any protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    pub route: Route,
    pub protocol: u8,
    pub priority: u32,
    /// `rtm_type` (1 unicast, 6 blackhole, …): a foreign blackhole is a conflict like any other.
    pub kind: u8,
}

impl KernelRoute {
    pub fn is_ours(&self) -> bool {
        self.protocol == PROTO_TWILL
    }
}

impl fmt::Display for KernelRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} proto {} metric {}",
            self.route, self.protocol, self.priority
        )?;
        if self.kind != 1 {
            write!(f, " type {}", self.kind)?;
        }
        Ok(())
    }
}

/// The line iproute2 reads to print `proto twill`.
pub const RT_PROTOS_LINE: &str = "77\ttwill\n";

/// Name Twill's protocol number for iproute2: write `twill.conf` into `dir` (normally
/// `/etc/iproute2/rt_protos.d`). Returns false, writing nothing, when `dir`'s parent does not
/// exist (no iproute2 configuration on this host) or the file already says the same.
pub fn install_protocol_name(dir: &std::path::Path) -> std::io::Result<bool> {
    let file = dir.join("twill.conf");
    if std::fs::read_to_string(&file).is_ok_and(|s| s == RT_PROTOS_LINE) {
        return Ok(false);
    }
    if !dir.parent().is_some_and(|p| p.is_dir()) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(file, RT_PROTOS_LINE)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_name_file_is_written_once() {
        let base = std::env::temp_dir().join(format!("twill-rtp-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let dir = base.join("rt_protos.d");
        assert!(install_protocol_name(&dir).unwrap());
        assert!(!install_protocol_name(&dir).unwrap());
        let text = std::fs::read_to_string(dir.join("twill.conf")).unwrap();
        assert_eq!(text.split_whitespace().collect::<Vec<_>>(), ["77", "twill"]);
        assert!(!install_protocol_name(&base.join("absent/rt_protos.d")).unwrap());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
