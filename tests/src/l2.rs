//! A shared L2 segment: a bridge in a namespace of its own, with one veth per attached node.

use crate::netns::{unique, Netns};

pub struct Switch {
    pub ns: Netns,
    bridge: String,
}

impl Switch {
    pub fn new(tag: &str) -> Switch {
        let ns = Netns::new(tag);
        let bridge = "br0".to_string();
        ns.exec(&["ip", "link", "add", &bridge, "type", "bridge"]);
        ns.exec(&["ip", "link", "set", &bridge, "up"]);
        Switch { ns, bridge }
    }

    /// Plug `node` in with `addrs` (CIDR strings) and `mtu`; returns the node-side interface.
    pub fn attach(&self, node: &Netns, addrs: &[&str], mtu: u32) -> String {
        let inner = unique("u");
        let port = unique("p");
        crate::netns::must(&[
            "ip",
            "link",
            "add",
            "name",
            &inner,
            "netns",
            &node.name,
            "mtu",
            &mtu.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.ns.name,
            "mtu",
            &mtu.to_string(),
        ]);
        self.ns
            .exec(&["ip", "link", "set", &port, "master", &self.bridge, "up"]);
        for a in addrs {
            if a.contains(':') {
                node.exec(&["ip", "addr", "add", a, "dev", &inner, "nodad"]);
            } else {
                node.exec(&["ip", "addr", "add", a, "dev", &inner]);
            }
        }
        node.exec(&["ip", "link", "set", &inner, "up"]);
        inner
    }
}

/// Two racks' segments joined by a router namespace that forwards between them and knows no
/// routes but its two connected subnets: rack A 10.1.0.0/24 and rack B 10.2.0.0/24, the router
/// at .1 on each.
pub struct TwoRacks {
    pub a: Switch,
    pub b: Switch,
    pub router: Netns,
}

impl TwoRacks {
    pub const GATEWAY_A: &'static str = "10.1.0.1";
    pub const GATEWAY_B: &'static str = "10.2.0.1";

    pub fn new() -> TwoRacks {
        let a = Switch::new("swa");
        let b = Switch::new("swb");
        let router = Netns::new("rtr");
        a.attach(&router, &["10.1.0.1/24"], 1500);
        b.attach(&router, &["10.2.0.1/24"], 1500);
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        TwoRacks { a, b, router }
    }
}

impl Default for TwoRacks {
    fn default() -> TwoRacks {
        TwoRacks::new()
    }
}
