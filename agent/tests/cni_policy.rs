//! The CNI plugin's wait for a pod's NetworkPolicy rules, against agents that do not answer:
//! a bounded wait and a CNI error naming the pod and why — never a pod running unprotected
//! without anyone being told. (The agent answering in time is `netpol_lab.rs` and
//! `netpol_k8s_lab.rs`: every pod there is added through this wait.)

mod common;

use common::{cni, cni_pod};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};
use twill_lab::{Netns, TempDir};

fn node_file(state: &Path, socket: &Path) {
    std::fs::create_dir_all(state).unwrap();
    let v = serde_json::json!({"name": "n1", "podCIDRs": ["10.250.0.0/24"], "mtu": 1450,
        "policyWait": {"socket": socket, "seconds": 1}});
    std::fs::write(state.join("node.json"), v.to_string()).unwrap();
}

#[test]
fn a_pod_whose_rules_are_not_confirmed_fails_with_a_clear_error() {
    let dir = TempDir::new("cnip");
    let node = Netns::new("cn");
    let (state, ipam) = (dir.join("state"), dir.join("ipam"));

    // An agent that accepts and never answers.
    let silent = dir.join("silent.sock");
    let listener = UnixListener::bind(&silent).unwrap();
    let (done, gave_up) = std::sync::mpsc::channel::<()>();
    let held = std::thread::spawn(move || {
        // Held open until the plugin has given up, so it sees silence, not a close.
        let (s, _) = listener.accept().unwrap();
        let _ = gave_up.recv_timeout(Duration::from_secs(30));
        drop(s);
    });
    node_file(&state, &silent);
    let pod = Netns::new("cp");
    let t = Instant::now();
    let (ok, v) = cni_pod(&node, &pod, "ADD", &state, &ipam, "x", "web");
    let took = t.elapsed();
    assert!(!ok, "{v}");
    assert_eq!(
        v["msg"], "NetworkPolicy rules for pod x/web are not in force",
        "{v}"
    );
    assert!(
        v["details"].as_str().unwrap().contains("did not answer"),
        "{v}"
    );
    assert!(
        took < Duration::from_secs(4),
        "bounded by waitTime + 1 s: {took:?}"
    );
    done.send(()).unwrap();
    held.join().unwrap();

    // No agent at all.
    node_file(&state, &dir.join("nobody.sock"));
    let pod2 = Netns::new("cp");
    let (ok, v) = cni_pod(&node, &pod2, "ADD", &state, &ipam, "x", "db");
    assert!(
        !ok && v["msg"] == "NetworkPolicy rules for pod x/db are not in force",
        "{v}"
    );

    // Not a Kubernetes pod (no K8S_POD_* in CNI_ARGS): nothing to wait for.
    let pod3 = Netns::new("cp");
    let (ok, v) = cni(&node, &pod3, "ADD", &state, &ipam, None);
    assert!(ok, "{v}");
}
