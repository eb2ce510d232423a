//! A node's data plane in a lab: the fabric (tunnel device, MTU) and the route programmer running
//! inside the node's namespace, fed a static view of the other nodes instead of BGP.

use crate::netns::{Netns, TempDir};
use crate::runtime::NsRuntime;
use felix_lite::{Config, Programmer, Report};
use ipip::{Encap, Fabric, FabricConfig, Reach, RouteTable, VxlanConfig};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Another node as the data plane sees it.
#[derive(Clone, Debug)]
pub struct Remote {
    pub address: IpAddr,
    pub pod_cidr: IpNet,
}

pub struct Dataplane {
    pub rt: NsRuntime,
    pub fabric: Arc<Mutex<Fabric>>,
    pub programmer: Programmer,
    pub state: TempDir,
}

impl Dataplane {
    pub fn start(
        ns: &Netns,
        encap: Encap,
        address: &str,
        pod_cidr: &str,
    ) -> Result<Dataplane, ipip::Error> {
        let rt = NsRuntime::new(ns);
        let state = TempDir::new("st");
        let cfg = FabricConfig {
            encap,
            vxlan: VxlanConfig::default(),
            node_address: address.parse().expect("address"),
            pod_cidrs: vec![pod_cidr.parse().expect("pod CIDR")],
            state_dir: Some(state.path.clone()),
        };
        let fabric = rt.run(Fabric::start(cfg))?;
        let programmer = rt
            .run(Programmer::start(Config::default()))
            .expect("programmer");
        Ok(Dataplane {
            rt,
            fabric: Arc::new(Mutex::new(fabric)),
            programmer,
            state,
        })
    }

    /// Route every remote node's pod CIDR through its address, as BGP would hand it over, and
    /// make the tunnel peers match. Returns the reach chosen per pod CIDR.
    pub fn apply(&self, remotes: &[Remote]) -> (Report, Vec<(IpNet, Reach)>) {
        let remotes = remotes.to_vec();
        let fabric = self.fabric.clone();
        let programmer = self.programmer.clone();
        self.rt.run(async move {
            let mut f = fabric.lock().await;
            // The agent's own composition (`ipip::RouteTable`), fed a static view: every
            // remote's address is a node whose underlay address is itself.
            let mut table = RouteTable::default();
            table.set_nodes(remotes.iter().map(|r| (r.address, r.address)).collect());
            table.update(
                f.planner(),
                remotes.iter().map(|r| (r.pod_cidr, vec![r.address])),
            );
            let reaches = remotes
                .iter()
                .flat_map(|r| {
                    let planned = &table.planned()[&r.pod_cidr];
                    planned.reach.iter().map(|x| (r.pod_cidr, x.clone()))
                })
                .collect();
            f.set_tunnel_peers(table.tunnel_peers())
                .await
                .expect("tunnel peers");
            let report = programmer
                .replace_all(table.routes())
                .await
                .expect("programmer");
            (report, reaches)
        })
    }

    /// Remove the tunnel device, as an agent leaving the node for good does.
    pub fn teardown(&self) {
        let f = self.fabric.clone();
        self.rt
            .run(async move { f.lock().await.teardown().await })
            .expect("teardown");
    }

    pub fn mtu(&self) -> u32 {
        let f = self.fabric.clone();
        self.rt.run(async move { f.lock().await.mtu() })
    }
}
