//! VXLAN endpoint identities, derived from what every node already knows about every other
//! (its underlay address and pod CIDR), so no annotation or extra BGP attribute carries them.
//!
//! - VTEP MAC: `0e:74` followed by the node's IPv4 address (`0e:74:0a:01:00:0b` for 10.1.0.11).
//!   `0e` is a locally administered unicast octet. For an IPv6 underlay the last four octets of
//!   the address are used after `0e:76`; nodes whose IPv6 addresses share their last 32 bits
//!   would collide, which addressing plans practically never do.
//! - VTEP address: the network address of the node's pod CIDR (10.244.2.0 for 10.244.2.0/24), as
//!   flannel's VXLAN backend does. The CNI plugin's bridge takes `.1`, so `.0` is free on every
//!   node, and a route `10.244.2.0/24 via 10.244.2.0 dev twill.vxlan onlink` reads naturally.

use ipnet::IpNet;
use std::net::IpAddr;

pub type Mac = [u8; 6];

pub fn vtep_mac(node: IpAddr) -> Mac {
    match node {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [0x0e, 0x74, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [0x0e, 0x76, o[12], o[13], o[14], o[15]]
        }
    }
}

pub fn vtep_address(pod_cidr: &IpNet) -> IpAddr {
    pod_cidr.network()
}

pub fn mac_string(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations() {
        let mac = vtep_mac("10.1.0.11".parse().unwrap());
        assert_eq!(mac_string(&mac), "0e:74:0a:01:00:0b");
        assert_eq!(mac[0] & 1, 0, "unicast");
        assert_eq!(mac[0] & 2, 2, "locally administered");
        assert_eq!(
            mac_string(&vtep_mac("fd00::1:2:a0b:c0d".parse().unwrap())),
            "0e:76:0a:0b:0c:0d"
        );
        assert_eq!(
            vtep_address(&"10.244.2.0/24".parse().unwrap()),
            "10.244.2.0".parse::<IpAddr>().unwrap()
        );
    }
}
