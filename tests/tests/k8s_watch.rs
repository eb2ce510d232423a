//! The view watcher against a real kube-apiserver with Node objects as kubelets keep them:
//! heartbeats (status updates that change nothing Twill reads) rebuild no view, while a label
//! or readiness change reaches the view at once.

use cluster::k8s::watch::{self, WatchOptions, WatchStats};
use cluster::ClusterView;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use twill_lab::kube::Kube;
use twill_lab::{kubelets, Netns, NsRuntime, TempDir};

const NODES: usize = 60;

async fn until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn counts(s: &WatchStats) -> (u64, u64, u64) {
    (
        s.views_built.load(Ordering::Relaxed),
        s.views_published.load(Ordering::Relaxed),
        s.node_updates_ignored.load(Ordering::Relaxed),
    )
}

#[test]
fn heartbeats_rebuild_nothing_and_real_changes_arrive() {
    let ns = Netns::new("kw");
    ns.exec(&["ip", "addr", "add", "10.77.0.1/32", "dev", "lo"]);
    let kube = Kube::start(&ns, "10.77.0.1");
    kube.install_twill();
    let rt = NsRuntime::new(&ns);
    let secrets = TempDir::new("kw-secrets");
    let (admin, agent, secrets_dir) = (kube.admin.clone(), kube.agent.clone(), secrets.join("s"));
    rt.run(async move {
        let admin = kubelets::client(&admin).await;
        kubelets::create_nodes(&admin, NODES, 8).await;
        let watching = watch::start(WatchOptions {
            kubeconfig: Some(agent),
            namespace: Some("twill-system".into()),
            secrets_dir,
            default_pod_network: Some("10.128.0.0/9".into()),
        })
        .await
        .expect("watch");
        let views = watching.views.clone();
        let view = || -> Option<Arc<ClusterView>> { views.borrow().clone() };
        until("a view of every node", Duration::from_secs(30), || {
            view().filter(|v| v.nodes.len() == NODES)
        })
        .await;
        let stats = watching.stats.clone();
        // Above 50 nodes, reflectors are chosen: two in each of the eight zones.
        assert_eq!(view().unwrap().reflectors.len(), 16);
        let (built, published, ignored) = counts(&stats);

        // Two heartbeats from every kubelet: nothing to rebuild.
        for beat in 0..2 {
            kubelets::heartbeat(&admin, NODES, beat, 8).await;
        }
        until(
            "every heartbeat seen and set aside",
            Duration::from_secs(30),
            || (counts(&stats).2 >= ignored + 2 * NODES as u64).then_some(()),
        )
        .await;
        assert_eq!(counts(&stats).2, ignored + 2 * NODES as u64);
        assert_eq!(counts(&stats).0, built, "a heartbeat rebuilt the view");
        assert_eq!(counts(&stats).1, published);

        // A label is read (node selectors, zones): it arrives, with one rebuild.
        kubelets::label(&admin, 3, "rack", "r7").await;
        until("node-3's label", Duration::from_secs(10), || {
            view().filter(|v| {
                v.node("node-3")
                    .is_some_and(|n| n.labels.get("rack").map(String::as_str) == Some("r7"))
            })
        })
        .await;
        assert_eq!(counts(&stats).1, published + 1);
        // So is readiness.
        kubelets::set_ready(&admin, 5, "False").await;
        until("node-5 not ready", Duration::from_secs(10), || {
            view().filter(|v| v.node("node-5").is_some_and(|n| !n.ready))
        })
        .await;
        assert_eq!(counts(&stats).1, published + 2);
        assert!(counts(&stats).0 <= built + 2, "{:?}", counts(&stats));
    });
    drop(rt);
    drop(kube);
}
