//! Node objects as real kubelets keep them, for the scale tests against the real API server:
//! created with a kubelet-sized status (conditions, images, capacity, node info; ~5 KB each as
//! the server stores them), then heartbeats (`PATCH …/nodes/NAME/status` with new
//! `lastHeartbeatTime`s, what a kubelet sends every 10 s by default) and a label change.

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::path::Path;

/// An API client from a kubeconfig file.
pub async fn client(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    Client::try_from(cfg).expect("client")
}

/// Node `i` of a cluster: `node-i`, address 10.(64 + i/250).(i%250).1, pod CIDR
/// 10.(128 + i/256).(i%256).0/24, in one of eight zones.
pub fn node(i: usize, heartbeat: &str) -> Value {
    let name = format!("node-{i}");
    let cidr = format!("10.{}.{}.0/24", 128 + i / 256, i % 256);
    let images: Vec<Value> = (0..25)
        .map(|k| {
            json!({"names": [format!("registry.example/team-{k}/service-{k}@sha256:{:064x}", k * 7919 + i),
                format!("registry.example/team-{k}/service-{k}:v1.{k}.{i}")],
                "sizeBytes": 10_000_000 + k * 1000})
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "topology.kubernetes.io/zone": format!("zone-{}", i % 8)},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": status(i, heartbeat, "True", Some(images)),
    })
}

fn status(i: usize, heartbeat: &str, ready: &str, images: Option<Vec<Value>>) -> Value {
    let cond = |t: &str, s: &str, reason: &str| {
        json!({"type": t, "status": s, "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": "2026-12-01T00:00:00Z", "reason": reason,
            "message": format!("kubelet reports {reason}")})
    };
    let mut s = json!({
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            cond("Ready", ready, "KubeletReady"),
        ],
    });
    if let Some(images) = images {
        s["addresses"] = json!([
            {"type": "InternalIP", "address": format!("10.{}.{}.1", 64 + i / 250, i % 250)},
            {"type": "Hostname", "address": format!("node-{i}")}]);
        s["capacity"] = json!({"cpu": "32", "memory": "131900000Ki", "pods": "110",
            "ephemeral-storage": "960000000Ki"});
        s["allocatable"] = s["capacity"].clone();
        s["nodeInfo"] = json!({"machineID": format!("{:032x}", i), "systemUUID": format!("{:032x}", i + 1),
            "bootID": format!("{:032x}", i + 2), "kernelVersion": "6.1.0-28-amd64",
            "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "containerd://1.7.24",
            "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux",
            "architecture": "amd64"});
        s["images"] = Value::Array(images);
        s["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": 10250}});
    }
    s
}

/// Create nodes `0..n`, `parallel` requests at a time.
pub async fn create_nodes(client: &Client, n: usize, parallel: usize) {
    let api: Api<Node> = Api::all(client.clone());
    stream::iter(0..n)
        .for_each_concurrent(parallel, |i| {
            let api = api.clone();
            async move {
                let obj: Node = serde_json::from_value(node(i, "2026-12-05T00:00:00Z")).unwrap();
                api.create(&PostParams::default(), &obj)
                    .await
                    .unwrap_or_else(|e| panic!("create node-{i}: {e}"));
            }
        })
        .await;
}

/// One heartbeat from each of nodes `0..n` (their kubelets' status update), `parallel` at a
/// time; `beat` makes the timestamps new.
pub async fn heartbeat(client: &Client, n: usize, beat: u32, parallel: usize) {
    let api: Api<Node> = Api::all(client.clone());
    let t = format!("2026-12-05T01:{:02}:{:02}Z", beat / 60 % 60, beat % 60);
    stream::iter(0..n)
        .for_each_concurrent(parallel, |i| {
            let api = api.clone();
            let t = t.clone();
            async move { kubelet_status(&api, i, &t, "True").await }
        })
        .await;
}

/// Set label `key=value` on node `i`.
pub async fn label(client: &Client, i: usize, key: &str, value: &str) {
    let api: Api<Node> = Api::all(client.clone());
    api.patch(
        &format!("node-{i}"),
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
    )
    .await
    .unwrap_or_else(|e| panic!("label node-{i}: {e}"));
}

/// Node `i`'s Ready condition set to `ready` ("True", "False", "Unknown").
pub async fn set_ready(client: &Client, i: usize, ready: &str) {
    kubelet_status(&Api::all(client.clone()), i, "2026-12-05T02:00:00Z", ready).await
}

/// Node `i`'s status as its kubelet posts it: its conditions, heartbeat time `t`, Ready `ready`.
async fn kubelet_status(api: &Api<Node>, i: usize, t: &str, ready: &str) {
    let patch = json!({"status": status(i, t, ready, None)});
    api.patch_status(
        &format!("node-{i}"),
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await
    .unwrap_or_else(|e| panic!("status of node-{i}: {e}"));
}
