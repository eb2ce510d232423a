//! The view watcher against a real kube-apiserver with Node objects as kubelets keep them:
//! heartbeats (status updates that change nothing Twill reads) rebuild no view, while a label
//! or readiness change reaches the view at once.

use cluster::k8s::watch::{self, WatchOptions, WatchStats};
use cluster::ClusterView;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use twill_lab::kube::Kube;
use twill_lab::{kubelets, wait_for, Netns, NsRuntime, TempDir};

const NODES: usize = 60;

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
    let admin_file = kube.admin.clone();
    let admin = rt.run(async move { kubelets::client(&admin_file).await });
    let c = admin.clone();
    rt.run(async move { kubelets::create_nodes(&c, NODES, 8).await });
    let opts = WatchOptions {
        kubeconfig: Some(kube.agent.clone()),
        namespace: Some("twill-system".into()),
        secrets_dir: secrets.join("s"),
        default_pod_network: Some("10.128.0.0/9".into()),
    };
    let watching = rt.run(watch::start(opts)).expect("watch");
    let views = watching.views.clone();
    let view = || -> Option<Arc<ClusterView>> { views.borrow().clone() };
    let stats = watching.stats.clone();
    wait_for("a view of every node", Duration::from_secs(30), || {
        view().filter(|v| v.nodes.len() == NODES)
    });
    // Above 50 nodes, reflectors are chosen: two in each of the eight zones.
    assert_eq!(view().unwrap().reflectors.len(), 16);
    // The first view waits for nodes, configurations and peers, not for the Secrets list: a
    // late Secrets list rebuilds once more. The baseline is taken once that build is done.
    wait_for(
        "a view with the Secrets listed",
        Duration::from_secs(10),
        || stats.secrets_listed.load(Ordering::Acquire).then_some(()),
    );
    let (built, published, ignored) = counts(&stats);

    // Two heartbeats from every kubelet: nothing to rebuild.
    for beat in 0..2 {
        let c = admin.clone();
        rt.run(async move { kubelets::heartbeat(&c, NODES, beat, 8).await });
    }
    wait_for(
        "every heartbeat seen and set aside",
        Duration::from_secs(30),
        || (counts(&stats).2 >= ignored + 2 * NODES as u64).then_some(()),
    );
    assert_eq!(counts(&stats).2, ignored + 2 * NODES as u64);
    assert_eq!(counts(&stats).0, built, "a heartbeat rebuilt the view");
    assert_eq!(counts(&stats).1, published);

    // A label is read (node selectors, zones): it arrives, with one rebuild.
    let c = admin.clone();
    rt.run(async move { kubelets::label(&c, 3, "rack", "r7").await });
    wait_for("node-3's label", Duration::from_secs(10), || {
        view().filter(|v| {
            v.node("node-3")
                .is_some_and(|n| n.labels.get("rack").map(String::as_str) == Some("r7"))
        })
    });
    assert_eq!(counts(&stats).1, published + 1);
    // So is readiness.
    rt.run(async move { kubelets::set_ready(&admin, 5, "False").await });
    wait_for("node-5 not ready", Duration::from_secs(10), || {
        view().filter(|v| v.node("node-5").is_some_and(|n| !n.ready))
    });
    assert_eq!(counts(&stats).1, published + 2);
    assert!(counts(&stats).0 <= built + 2, "{:?}", counts(&stats));
    drop(watching);
    drop(rt);
    drop(kube);
}
