//! The MTU pods get: the underlay's minus the encapsulation overhead in use.

use crate::encap::{Encap, EncapMode, EncapType};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Bytes an encapsulation adds: VXLAN is outer IP (20 / 40) + UDP 8 + VXLAN 8 + inner Ethernet 14;
/// IPIP only an outer IPv4 header.
pub fn overhead(kind: EncapType, underlay: IpAddr) -> u32 {
    match (kind, underlay) {
        (EncapType::Vxlan, IpAddr::V4(_)) => 50,
        (EncapType::Vxlan, IpAddr::V6(_)) => 70,
        (EncapType::Ipip, _) => 20,
    }
}

/// The MTU for the tunnel device and for pods. With mode `Never` nothing is encapsulated and pods
/// get the underlay's MTU; otherwise every pod gets the tunnel's, since a pod cannot know which
/// path its traffic takes.
pub fn pod_mtu(underlay_mtu: u32, encap: Encap, underlay: IpAddr) -> u32 {
    match encap.mode {
        EncapMode::Never => underlay_mtu,
        _ => underlay_mtu.saturating_sub(overhead(encap.kind, underlay)),
    }
}

/// Where the CNI plugin reads the MTU: `<state dir>/mtu`, one decimal number.
pub fn mtu_file(state_dir: &Path) -> PathBuf {
    state_dir.join("mtu")
}

/// Write the MTU file atomically (a reader never sees a half-written number).
pub fn write_mtu_file(state_dir: &Path, mtu: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let tmp = state_dir.join(".mtu.tmp");
    std::fs::write(&tmp, format!("{mtu}\n"))?;
    std::fs::rename(tmp, mtu_file(state_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overheads() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let vx = |mode| Encap {
            kind: EncapType::Vxlan,
            mode,
        };
        assert_eq!(pod_mtu(1500, vx(EncapMode::CrossSubnet), v4), 1450);
        assert_eq!(pod_mtu(1500, vx(EncapMode::Always), v6), 1430);
        assert_eq!(pod_mtu(9000, vx(EncapMode::Never), v4), 9000);
        let ipip = Encap {
            kind: EncapType::Ipip,
            mode: EncapMode::Always,
        };
        assert_eq!(pod_mtu(1500, ipip, v4), 1480);
    }
}
