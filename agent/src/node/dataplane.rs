//! From best routes to the kernel: the speaker's route events go into `ipip`'s route table
//! (which plans only the prefixes that changed: direct / VXLAN / IPIP / via router), tunnel
//! peers to the fabric, route changes to felix-lite.

use crate::state::RouteView;
use cluster::ClusterView;
use felix_lite::{Change, Programmer};
use ipip::{Fabric, RouteTable};
use speaker::RouteEvent;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::{info, warn};

pub struct Dataplane {
    pub fabric: Fabric,
    pub programmer: Programmer,
    table: RouteTable,
    pub view: RouteView,
    complete: bool,
    /// The fabric may not hold exactly the table's tunnel peers: entries adopted at start
    /// (some perhaps of nodes gone meanwhile), or a write that failed. Written on the next
    /// change, as before the table existed.
    tunnels_stale: bool,
}

/// Every node address with the node's underlay address (its first, the tunnel endpoint).
fn node_addresses(view: &ClusterView) -> HashMap<IpAddr, IpAddr> {
    view.nodes
        .iter()
        .flat_map(|n| n.addresses.iter().map(move |a| (*a, n.address)))
        .collect()
}

impl Dataplane {
    pub fn new(fabric: Fabric, programmer: Programmer, view: &ClusterView) -> Dataplane {
        let mut table = RouteTable::default();
        table.set_nodes(node_addresses(view));
        Dataplane {
            fabric,
            programmer,
            table,
            view: Arc::default(),
            complete: false,
            tunnels_stale: true,
        }
    }

    /// Apply a batch of best-route changes.
    pub async fn apply(&mut self, events: Vec<RouteEvent>) {
        let updates = events.into_iter().map(|e| {
            let hops: Vec<IpAddr> = match &e.best {
                Some(b) if !b.is_local() => b.next_hops.iter().map(|h| h.address).collect(),
                _ => Vec::new(),
            };
            (e.prefix, hops)
        });
        let delta = self.table.update(self.fabric.planner(), updates);
        self.program(delta).await;
    }

    async fn program(&mut self, delta: ipip::Delta) {
        if delta.tunnels_changed || self.tunnels_stale {
            self.sync_tunnels().await;
        }
        {
            let planned = self.table.planned();
            let mut shown = self.view.lock().expect("route view");
            for c in &delta.changes {
                let prefix = match c {
                    Change::Set(r) => r.prefix,
                    Change::Remove(p) => *p,
                };
                match planned.get(&prefix) {
                    Some(p) => shown.insert(prefix, p.clone()),
                    None => shown.remove(&prefix),
                };
            }
        }
        // Until the first complete set, only add and replace: adopted routes stay.
        let changes: Vec<Change> = delta
            .changes
            .into_iter()
            .filter(|c| self.complete || matches!(c, Change::Set(_)))
            .collect();
        if changes.is_empty() {
            return;
        }
        if let Err(e) = self.programmer.update(changes).await {
            warn!(error = %e, "route programmer unavailable");
        }
    }

    async fn sync_tunnels(&mut self) {
        let mut want = self.table.tunnel_peers();
        if !self.complete {
            // Until the first complete set, only add, as for routes: an adopted entry whose
            // route BGP has not confirmed yet still carries traffic (a restart).
            want.extend(self.fabric.tunnel_peers().iter().copied());
        }
        let r = self.fabric.set_tunnel_peers(want).await;
        self.tunnels_stale = r.is_err();
        if let Err(e) = r {
            warn!(error = %e, "cannot update VXLAN neighbour/FDB entries");
        }
    }

    /// Hand felix-lite the complete set: from now on, routes of ours nobody wants are deleted
    /// (and so are adopted tunnel entries nobody wants, if no change has removed them yet).
    pub async fn complete(&mut self) {
        self.complete = true;
        // Adopted tunnel entries nobody wants go now, with the adopted routes.
        self.sync_tunnels().await;
        match self.programmer.replace_all(self.table.routes()).await {
            Ok(r) => info!(
                applied = r.applied,
                "complete route set handed to the programmer"
            ),
            Err(e) => warn!(error = %e, "route programmer unavailable"),
        }
    }

    /// A new cluster view: which next hops are nodes may have changed, and so may the local
    /// subnets.
    pub async fn set_view(&mut self, view: &ClusterView) {
        self.table.set_nodes(node_addresses(view));
        if let Err(e) = self.fabric.refresh().await {
            warn!(error = %e, "cannot re-read local addresses");
        }
        let delta = self.table.replan(self.fabric.planner());
        self.program(delta).await;
    }
}
