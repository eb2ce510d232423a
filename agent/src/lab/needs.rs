//! What a topology needs on this machine, and which Debian package gives it. The lab installs
//! nothing itself; it names what is missing and how to get it.

use super::topology::{Role, Topology};
use std::path::Path;

/// Where the reference CNI plugins may be: Debian's package, then the CNI default.
pub const CNI_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: &'static str,
    pub program: &'static str,
    pub package: &'static str,
    pub for_nodes: Vec<String>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "missing {} ({}), needed by {}: install it with `apt-get install -y {}`",
            self.what,
            self.program,
            self.for_nodes.join(", "),
            self.package
        )
    }
}

struct Need {
    what: &'static str,
    /// A program name (looked up in PATH) or an absolute path.
    program: &'static str,
    package: &'static str,
}

const IPROUTE: Need = Need {
    what: "iproute2",
    program: "ip",
    package: "iproute2",
};
const PING: Need = Need {
    what: "ping",
    program: "ping",
    package: "iputils-ping",
};
const CNI_BRIDGE: Need = Need {
    what: "the CNI bridge plugin",
    program: "bridge",
    package: "containernetworking-plugins",
};
const CNI_HOST_LOCAL: Need = Need {
    what: "the CNI host-local plugin",
    program: "host-local",
    package: "containernetworking-plugins",
};
const ZEBRA: Need = Need {
    what: "FRR zebra",
    program: "/usr/lib/frr/zebra",
    package: "frr",
};
const BGPD: Need = Need {
    what: "FRR bgpd",
    program: "/usr/lib/frr/bgpd",
    package: "frr",
};
/// NetworkPolicy: every lab agent enforces it (file mode), through nft (a lab node holds no
/// rules of kubelet's, so `--iptables-backend auto` takes nft).
const IPTABLES: Need = Need {
    what: "iptables-nft-restore",
    program: "iptables-nft-restore",
    package: "iptables",
};
const IPSET: Need = Need {
    what: "ipset",
    program: "ipset",
    package: "ipset",
};
const BIRD: Need = Need {
    what: "BIRD 2",
    program: "bird",
    package: "bird2",
};
const GOBGPD: Need = Need {
    what: "GoBGP",
    program: "gobgpd",
    package: "gobgpd",
};

fn needs_of(role: Role) -> &'static [Need] {
    match role {
        Role::Twill => &[CNI_BRIDGE, CNI_HOST_LOCAL, PING, IPTABLES, IPSET],
        Role::Frr => &[ZEBRA, BGPD],
        Role::Bird => &[BIRD],
        Role::Gobgp => &[GOBGPD],
        Role::Plain => &[],
    }
}

/// Everything the topology needs that `exists` says is absent, one entry per program.
pub fn missing(t: &Topology, exists: impl Fn(&str) -> bool) -> Vec<Missing> {
    let mut out: Vec<Missing> = Vec::new();
    let all = t.nodes.iter().flat_map(|n| {
        std::iter::once(&IPROUTE)
            .chain(needs_of(n.role))
            .map(move |need| (n, need))
    });
    for (node, need) in all {
        if exists(need.program) {
            continue;
        }
        match out.iter_mut().find(|m| m.program == need.program) {
            Some(m) => {
                if !m.for_nodes.contains(&node.name) {
                    m.for_nodes.push(node.name.clone())
                }
            }
            None => out.push(Missing {
                what: need.what,
                program: need.program,
                package: need.package,
                for_nodes: vec![node.name.clone()],
            }),
        }
    }
    out
}

/// This machine's view: absolute paths as they are, CNI plugins in [`CNI_DIRS`], anything else
/// in PATH.
pub fn on_this_machine(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).is_file();
    }
    if program == "bridge" || program == "host-local" {
        return CNI_DIRS
            .iter()
            .any(|d| Path::new(d).join(program).is_file());
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_package_and_the_nodes() {
        let t = Topology::parse(
            "name: t\ntopology:\n  nodes:\n    tor-a: {kind: linux, image: frrouting/frr, binds: ['/dev/null:/etc/frr/frr.conf']}\n    tor-b: {kind: linux, image: frrouting/frr, binds: ['/dev/null:/etc/frr/frr.conf']}\n    a1: {kind: linux, image: twill, cmd: twill agent}\n",
            Path::new("/"),
            Path::new("t.clab.yml"),
        )
        .unwrap();
        let m = missing(&t, |p| !p.starts_with("/usr/lib/frr/"));
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            m[0].to_string(),
            "missing FRR zebra (/usr/lib/frr/zebra), needed by tor-a, tor-b: install it with `apt-get install -y frr`"
        );
        let m = missing(&t, |p| p != "host-local");
        assert_eq!(
            m[0].to_string(),
            "missing the CNI host-local plugin (host-local), needed by a1: install it with `apt-get install -y containernetworking-plugins`"
        );
        assert!(missing(&t, |_| true).is_empty());
    }
}
