//! The workloads watcher: Namespaces, Pods and NetworkPolicies through kube-runtime reflectors
//! on the same client as the view's watchers. After each burst the model is rebuilt from the
//! stores ([`crate::workloads::build`], the previous model kept for policies that fail) and
//! published only when it differs, so a resumed or relisted watch changes nothing downstream.

use super::watch::{listed, reflect};
use crate::workloads::{build, Objects, Workloads};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector;
use kube::{Api, Client};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{info, warn};

/// Each new model (None until every kind has been listed once).
pub type WorkloadsRx = watch::Receiver<Option<Arc<Workloads>>>;

pub(super) fn start(client: Client) -> WorkloadsRx {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(run(client, tx));
    rx
}

async fn run(client: Client, tx: watch::Sender<Option<Arc<Workloads>>>) {
    let (namespaces, ns_w) = reflector::store::<Namespace>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let (policies, pol_w) = reflector::store::<NetworkPolicy>();
    let mut events = futures::stream::select_all([
        reflect(ns_w, Api::all(client.clone()), "namespaces"),
        reflect(pods_w, Api::all(client.clone()), "pods"),
        reflect(pol_w, Api::all(client), "networkpolicies"),
    ]);
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut last: Option<Arc<Workloads>> = None;
    let mut ready = false;
    while let Some(ev) = events.next().await {
        if let Err(e) = ev {
            warn!(error = %e, "workloads watch interrupted; resuming");
            continue;
        }
        while let Some(Some(_)) = events.next().now_or_never() {}
        if !ready {
            ready = listed(&namespaces) && listed(&pods) && listed(&policies);
            if !ready {
                continue;
            }
            info!("namespaces, pods and network policies listed");
        }
        let ns: Vec<Namespace> = namespaces.state().iter().map(|o| (**o).clone()).collect();
        let ps: Vec<Pod> = pods.state().iter().map(|o| (**o).clone()).collect();
        let pol: Vec<NetworkPolicy> = policies.state().iter().map(|o| (**o).clone()).collect();
        let built = build(
            &Objects {
                namespaces: &ns,
                pods: &ps,
                policies: &pol,
            },
            last.as_deref(),
        );
        let now: BTreeSet<String> = built.problems.iter().map(|p| p.to_string()).collect();
        for p in now.difference(&reported) {
            warn!(problem = %p, "object refused; its previous version, if any, stays in force");
        }
        reported = now;
        if last.as_deref() != Some(&built.workloads) {
            let w = Arc::new(built.workloads);
            last = Some(w.clone());
            let _ = tx.send(Some(w));
        }
    }
}
