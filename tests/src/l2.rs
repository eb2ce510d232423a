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
