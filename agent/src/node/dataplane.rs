//! From best routes to the kernel: each prefix's next hops go through `ipip`'s planner (direct /
//! VXLAN / IPIP / via router), tunnel peers to the fabric, routes to felix-lite.

use cluster::ClusterView;
use felix_lite::{Change, Programmer, Route};
use ipip::{tunnel_peers, Fabric, NextHop, Reach};
use ipnet::IpNet;
use speaker::RouteEvent;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// One programmed prefix, as `twill routes` shows it.
#[derive(Clone, Debug)]
pub struct RouteView {
    pub route: Route,
    pub reach: Vec<Reach>,
}

pub type RouteTable = Arc<Mutex<BTreeMap<IpNet, RouteView>>>;

pub struct Dataplane {
    pub fabric: Fabric,
    pub programmer: Programmer,
    view: Arc<ClusterView>,
    /// Best next hops per prefix as the speaker last reported them.
    learned: BTreeMap<IpNet, Vec<IpAddr>>,
    pub table: RouteTable,
    complete: bool,
}

impl Dataplane {
    pub fn new(fabric: Fabric, programmer: Programmer, view: Arc<ClusterView>) -> Dataplane {
        Dataplane {
            fabric,
            programmer,
            view,
            learned: BTreeMap::new(),
            table: Arc::default(),
            complete: false,
        }
    }

    fn plan(&self, prefix: IpNet, hops: &[IpAddr]) -> Option<RouteView> {
        let nhs: Vec<NextHop> = hops
            .iter()
            .map(|a| match self.view.node_by_address(*a) {
                Some(n) => NextHop::node(*a, n.address),
                None => NextHop::router(*a),
            })
            .collect();
        self.fabric
            .planner()
            .route(prefix, &nhs)
            .map(|(route, reach)| RouteView { route, reach })
    }

    /// Apply a batch of best-route changes.
    pub async fn apply(&mut self, events: Vec<RouteEvent>) {
        let mut touched = BTreeSet::new();
        for e in events {
            touched.insert(e.prefix);
            let hops: Vec<IpAddr> = match &e.best {
                Some(b) if !b.is_local() => b.next_hops.iter().map(|h| h.address).collect(),
                _ => Vec::new(),
            };
            if hops.is_empty() {
                self.learned.remove(&e.prefix);
            } else {
                self.learned.insert(e.prefix, hops);
            }
        }
        self.reprogram(touched).await;
    }

    /// Re-plan every learned prefix and program the `touched` ones.
    async fn reprogram(&mut self, touched: BTreeSet<IpNet>) {
        let table: BTreeMap<IpNet, RouteView> = self
            .learned
            .iter()
            .filter_map(|(p, hops)| self.plan(*p, hops).map(|v| (*p, v)))
            .collect();
        let changes: Vec<Change> = touched
            .into_iter()
            .filter_map(|p| match table.get(&p) {
                Some(v) => Some(Change::Set(v.route.clone())),
                // Until the first complete set, only add and replace: adopted routes stay.
                None if self.complete => Some(Change::Remove(p)),
                None => None,
            })
            .collect();
        self.sync_tunnels(&table).await;
        *self.table.lock().expect("route table") = table;
        if changes.is_empty() {
            return;
        }
        if let Err(e) = self.programmer.update(changes).await {
            warn!(error = %e, "route programmer unavailable");
        }
    }

    /// Hand felix-lite the complete set: from now on, routes of ours nobody wants are deleted.
    pub async fn complete(&mut self) {
        let routes: Vec<Route> = self
            .table
            .lock()
            .expect("route table")
            .values()
            .map(|v| v.route.clone())
            .collect();
        match self.programmer.replace_all(routes).await {
            Ok(r) => info!(
                applied = r.applied,
                "complete route set handed to the programmer"
            ),
            Err(e) => warn!(error = %e, "route programmer unavailable"),
        }
        self.complete = true;
    }

    /// A new cluster view: which next hops are nodes may have changed.
    pub async fn set_view(&mut self, view: Arc<ClusterView>) {
        self.view = view;
        if let Err(e) = self.fabric.refresh().await {
            warn!(error = %e, "cannot re-read local addresses");
        }
        let all = self.learned.keys().copied().collect();
        self.reprogram(all).await;
    }

    async fn sync_tunnels(&mut self, table: &BTreeMap<IpNet, RouteView>) {
        let peers = tunnel_peers(table.values().flat_map(|v| v.reach.iter()));
        if let Err(e) = self.fabric.set_tunnel_peers(peers).await {
            warn!(error = %e, "cannot update VXLAN neighbour/FDB entries");
        }
    }
}
