//! The fabric: owner of the tunnel device and its neighbour / FDB entries, and of the MTU file.

use crate::encap::{Encap, EncapMode, EncapType, VxlanConfig};
use crate::error::Error;
use crate::links::{self, VxlanSpec};
use crate::mtu::{pod_mtu, write_mtu_file};
use crate::reach::{Planner, TunnelPeer};
use crate::vtep::{mac_string, vtep_address, vtep_mac};
use ipnet::IpNet;
use rtnetlink::Handle;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// The IPIP fallback device the kernel creates with the module.
pub const IPIP_DEVICE: &str = "tunl0";

#[derive(Clone, Debug)]
pub struct FabricConfig {
    pub encap: Encap,
    pub vxlan: VxlanConfig,
    /// This node's underlay address: BGP source and tunnel endpoint.
    pub node_address: IpAddr,
    /// This node's pod CIDRs (its VTEP addresses derive from them).
    pub pod_cidrs: Vec<IpNet>,
    /// Where the MTU file goes; `None` writes none.
    pub state_dir: Option<PathBuf>,
}

/// Whether the kernel can do IPIP: the module creates `tunl0` in every namespace, and shows in
/// `/sys/module` when loaded or built in.
pub async fn ipip_available(h: &Handle) -> bool {
    Path::new("/sys/module/ipip").exists()
        || matches!(links::link_by_name(h, IPIP_DEVICE).await, Ok(Some(_)))
}

pub struct Fabric {
    handle: Handle,
    config: FabricConfig,
    planner: Planner,
    underlay: u32,
    mtu: u32,
    /// Entries on the tunnel device, as last written (or adopted at start).
    peers: BTreeSet<TunnelPeer>,
}

impl Fabric {
    /// Find the underlay, create or adopt the tunnel device the mode needs (removing a stale
    /// VXLAN device when the mode is `Never`), and write the MTU file.
    pub async fn start(config: FabricConfig) -> Result<Fabric, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        tokio::spawn(conn);
        let nets = links::local_nets(&handle, &[]).await?;
        let underlay = nets
            .iter()
            .find(|l| l.net.addr() == config.node_address)
            .map(|l| l.ifindex)
            .ok_or(Error::NoUnderlay(config.node_address))?;
        let underlay_mtu = links::link_by_index(&handle, underlay).await?.mtu;
        let mtu = pod_mtu(underlay_mtu, config.encap, config.node_address);
        let tunnel = match (config.encap.mode, config.encap.kind) {
            (EncapMode::Never, _) => {
                if let Some(l) = links::link_by_name(&handle, &config.vxlan.device).await? {
                    info!(device = %config.vxlan.device, "encapsulation off; removing the tunnel device");
                    links::delete_link(&handle, l.ifindex).await?;
                }
                None
            }
            (_, EncapType::Vxlan) => {
                let spec = VxlanSpec {
                    name: &config.vxlan.device,
                    vni: config.vxlan.vni,
                    port: config.vxlan.port,
                    local: config.node_address,
                    underlay,
                    mtu,
                    mac: vtep_mac(config.node_address),
                };
                let idx = links::ensure_vxlan(&handle, &spec).await?;
                info!(device = %config.vxlan.device, vni = spec.vni, port = spec.port,
                    mac = %mac_string(&spec.mac), mtu, "vxlan device ready");
                Some(idx)
            }
            (_, EncapType::Ipip) => {
                if !config.node_address.is_ipv4() {
                    return Err(Error::IpipNeedsIpv4(config.node_address));
                }
                if !ipip_available(&handle).await {
                    return Err(Error::IpipUnavailable);
                }
                let l = links::link_by_name(&handle, IPIP_DEVICE)
                    .await?
                    .ok_or(Error::IpipUnavailable)?;
                links::set_mtu_up(&handle, l.ifindex, mtu).await?;
                Some(l.ifindex)
            }
        };
        if let Some(idx) = tunnel {
            for c in &config.pod_cidrs {
                links::ensure_host_address(&handle, idx, vtep_address(c)).await?;
            }
        }
        if let Some(dir) = &config.state_dir {
            write_mtu_file(dir, mtu).map_err(|source| Error::MtuFile {
                path: crate::mtu::mtu_file(dir).display().to_string(),
                source,
            })?;
        }
        let peers = match (tunnel, config.encap.kind) {
            (Some(idx), EncapType::Vxlan) => {
                links::peers_on(&handle, idx).await?.into_iter().collect()
            }
            _ => BTreeSet::new(),
        };
        // The start-up dump serves the planner too: only the tunnel's own addresses (the VTEPs
        // just added) are not subnets a next hop can be on.
        let local = nets
            .into_iter()
            .filter(|l| Some(l.ifindex) != tunnel)
            .collect();
        let planner = Planner {
            encap: config.encap,
            local,
            tunnel,
        };
        Ok(Fabric {
            handle,
            config,
            planner,
            underlay,
            mtu,
            peers,
        })
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The MTU pods get (also in the MTU file).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    pub fn underlay(&self) -> u32 {
        self.underlay
    }

    pub fn tunnel_peers(&self) -> &BTreeSet<TunnelPeer> {
        &self.peers
    }

    /// Re-read the node's subnets (addresses may change under a running agent).
    pub async fn refresh(&mut self) -> Result<(), Error> {
        self.planner.local =
            links::local_nets(&self.handle, self.planner.tunnel.as_slice()).await?;
        Ok(())
    }

    /// Make the VXLAN neighbour and FDB entries exactly `want`: entries of nodes that went away
    /// are removed, new and changed ones written.
    pub async fn set_tunnel_peers(&mut self, want: BTreeSet<TunnelPeer>) -> Result<(), Error> {
        let Some(idx) = self.planner.tunnel else {
            return Ok(());
        };
        if self.config.encap.kind != EncapType::Vxlan {
            return Ok(());
        }
        let gone: Vec<TunnelPeer> = self.peers.difference(&want).copied().collect();
        for p in &gone {
            let keep = links::Keep {
                // The VTEP address is wanted with another MAC (its pod CIDR moved to another
                // node): the neighbour entry is, or is about to be, the new one's.
                neighbour: want.iter().any(|w| w.vtep == p.vtep),
                // Another pod CIDR of the same node still uses the MAC: keep its FDB entry.
                fdb: want.iter().any(|w| w.mac == p.mac && w.node == p.node),
            };
            links::delete_peer(&self.handle, idx, p, keep).await?;
            info!(node = %p.node, vtep = %p.vtep, "vxlan peer removed");
            self.peers.remove(p);
        }
        for p in want.difference(&self.peers.clone()) {
            links::set_peer(&self.handle, idx, p).await?;
            info!(node = %p.node, vtep = %p.vtep, mac = %mac_string(&p.mac), "vxlan peer added");
            self.peers.insert(*p);
        }
        Ok(())
    }

    /// Remove the tunnel device (its neighbour and FDB entries and routes go with it). For an
    /// agent leaving the node for good, not for a restart.
    pub async fn teardown(&mut self) -> Result<(), Error> {
        if let (Some(idx), EncapType::Vxlan) = (self.planner.tunnel, self.config.encap.kind) {
            links::delete_link(&self.handle, idx).await?;
        } else if self.planner.tunnel.is_some() {
            warn!("leaving tunl0 in place: the ipip module owns it");
        }
        self.planner.tunnel = None;
        self.peers.clear();
        Ok(())
    }
}
