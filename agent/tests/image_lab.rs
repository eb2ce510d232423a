//! Twill's image (built by `scripts/image.sh` from the Dockerfile, on a locally made Debian 12
//! base) run the way the DaemonSet runs it, on two lab nodes on two subnets: each node is a
//! container whose network namespace the lab wires into its rack (as containerlab does), the
//! DaemonSet's init step (its own command, read from `deploy/twill.yaml`) installs the binary and
//! the CNI conflist into the node's host directories, the agent runs with NET_ADMIN and NET_RAW
//! only and the host's `/run/twill`; sessions come up, the containerised agents program the
//! routes, and pods attached through the installed CNI plugin ping across the racks.

mod common;

use common::lab::{text, topology, Lab};
use common::{cni_with, ping, pod_ips};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use twill_lab::container::{docker, docker_available, Container};
use twill_lab::{wait_for, Netns, TempDir, TwoRacks};

/// The image: `$TWILL_IMAGE` (the test command builds it first and says which), else built now
/// by `scripts/image.sh` (a release build of `twill`, which inside `cargo test` cannot reuse the
/// suite's build and takes minutes).
fn image() -> String {
    // Once per test process: the tests run in parallel and a rebuild replaces the tag.
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(build_image).clone()
}

fn build_image() -> String {
    if let Ok(tag) = std::env::var("TWILL_IMAGE") {
        return tag;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/image.sh");
    // A tag of the tests' own, never a user's.
    let o = Command::new(&script)
        .arg(TEST_TAG)
        .output()
        .expect("scripts/image.sh");
    assert!(
        o.status.success(),
        "scripts/image.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .expect("tag")
        .to_string()
}

const TEST_TAG: &str = "twill-test/twill:latest";

/// The manifest users apply, one value per document.
fn manifest() -> Vec<Value> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/twill.yaml"))
            .unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// The conflist of the manifest's ConfigMap, which the init container copies.
fn manifest_conflist() -> String {
    manifest()
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "twill-cni")
        .and_then(|d| d["data"]["10-twill.conflist"].as_str().map(String::from))
        .expect("ConfigMap twill-cni with 10-twill.conflist in deploy/twill.yaml")
}

/// The DaemonSet's init container command, from the manifest users apply.
fn install_cni_command() -> String {
    let ds: Value = manifest()
        .into_iter()
        .find(|d: &Value| d["kind"] == "DaemonSet")
        .expect("a DaemonSet in deploy/twill.yaml");
    let init = &ds["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "install-cni");
    let cmd = init["command"].as_array().expect("command");
    assert_eq!(cmd[..2], [json!("sh"), json!("-c")]);
    cmd[2].as_str().unwrap().to_string()
}

const VIEW: &str = "asNumber: 64512
podNetwork: 10.244.0.0/16
encapsulation: {type: VXLAN, mode: CrossSubnet}
timers: {holdTime: 9, keepaliveTime: 3, connectRetryTime: 1}
nodes:
  - {name: a1, address: 10.1.0.11, podCIDR: 10.244.1.0/24}
  - {name: b1, address: 10.2.0.11, podCIDR: 10.244.2.0/24}
";

/// One node: its host directories (what the DaemonSet mounts), and the agent's container.
struct Node {
    host: TempDir,
    agent: Container,
}

impl Node {
    fn start(image: &str, name: &str, view: &Path) -> Node {
        let host = TempDir::new(name);
        for d in [
            "opt/cni/bin",
            "etc/cni/net.d",
            "run/twill",
            "etc/iproute2/rt_protos.d",
            "configmap",
        ] {
            std::fs::create_dir_all(host.join(d)).unwrap();
        }
        // The ConfigMap as the kubelet mounts it: one file per key.
        std::fs::write(
            host.join("configmap/10-twill.conflist"),
            manifest_conflist(),
        )
        .unwrap();
        let v =
            |host_dir: &str, inside: &str| format!("{}:{inside}", host.join(host_dir).display());
        // The init step: the same command, the same mounts (the ConfigMap's conflist too).
        docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &v("opt/cni/bin", "/host/opt/cni/bin"),
            "-v",
            &v("etc/cni/net.d", "/host/etc/cni/net.d"),
            "-v",
            &v("configmap", "/etc/twill-cni"),
            image,
            "sh",
            "-c",
            &install_cni_command(),
        ]);
        // The agent: NET_ADMIN and NET_RAW, not privileged; the host's /run/twill. Its network
        // is the node's (the container's namespace, wired by the lab after it starts: the agent
        // waits for its address as it does at boot).
        let agent = Container::run(
            "img",
            &[
                "--cap-add",
                "NET_ADMIN",
                "--cap-add",
                "NET_RAW",
                "-v",
                &v("run/twill", "/run/twill"),
                "-v",
                &v("etc/iproute2/rt_protos.d", "/host/etc/iproute2/rt_protos.d"),
                "-v",
                &format!("{}:/etc/twill/cluster.yaml:ro", view.display()),
            ],
            image,
            &[
                "twill",
                "agent",
                "--config",
                "/etc/twill/cluster.yaml",
                "--node",
                name,
                "--rt-protos-dir",
                "/host/etc/iproute2/rt_protos.d",
            ],
        );
        Node { host, agent }
    }

    fn status(&self) -> Option<Value> {
        let o = Command::new(common::TWILL)
            .args(["status", "--json", "--socket"])
            .arg(self.host.join("run/twill/twill.sock"))
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).ok())
            .flatten()
    }

    /// CNI ADD with the plugin and conflist the init step installed (the conflist's stateDir
    /// pointed at this node's host directory: two nodes share this one machine's /run).
    fn add_pod(&self, pod: &Netns) -> Value {
        let list: Value = serde_json::from_str(
            &std::fs::read_to_string(self.host.join("etc/cni/net.d/10-twill.conflist")).unwrap(),
        )
        .expect("installed conflist");
        let mut conf = list["plugins"][0].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        conf["stateDir"] = json!(self.host.join("run/twill"));
        conf["dataDir"] = json!(self.host.join("ipam"));
        let (ok, v) = cni_with(
            &self.host.join("opt/cni/bin/twill"),
            &format!("{}:/usr/lib/cni", self.host.join("opt/cni/bin").display()),
            &self.agent.ns,
            pod,
            "ADD",
            &conf,
            None,
        );
        assert!(ok, "CNI ADD: {v}");
        v
    }
}

#[test]
fn the_image_runs_the_agent_as_the_daemonset_does() {
    if let Err(why) = docker_available() {
        eprintln!("skipped: no Docker engine here ({why})");
        return;
    }
    let image = image();
    // What the agent and the CNI path call at run time is in the image.
    let tools = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "sh",
        "-c",
        "for t in twill iptables-nft-restore iptables-legacy-restore ip6tables-nft-restore ip6tables-legacy-restore ipset ip; do command -v $t; done; ls /usr/lib/cni/bridge /usr/lib/cni/host-local",
    ]);
    // Both iptables backends: the agent writes through the one kubelet uses.
    for t in [
        "twill",
        "iptables-nft-restore",
        "iptables-legacy-restore",
        "ip6tables-nft-restore",
        "ip6tables-legacy-restore",
        "ipset",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
    ] {
        assert!(tools.contains(t), "{t} missing from the image: {tools}");
    }
    let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", &image])
        .parse()
        .unwrap();
    eprintln!("image {image}: {} MB", size / 1_000_000);

    let dir = TempDir::new("img");
    let view = dir.join("cluster.yaml");
    std::fs::write(&view, VIEW).unwrap();
    let racks = TwoRacks::new();
    let a1 = Node::start(&image, "a1", &view);
    let b1 = Node::start(&image, "b1", &view);
    for (n, sw, addr, gw) in [
        (&a1, &racks.a, "10.1.0.11/24", TwoRacks::GATEWAY_A),
        (&b1, &racks.b, "10.2.0.11/24", TwoRacks::GATEWAY_B),
    ] {
        let ns = &n.agent.ns;
        sw.attach(ns, &[addr], 1500);
        ns.exec(&["ip", "route", "add", "default", "via", gw]);
        // A node forwards for its pods (kubelet hosts have this on).
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
    for (n, peer) in [(&a1, "10.2.0.11"), (&b1, "10.1.0.11")] {
        wait_for(
            &format!("{} Established with {peer}", n.agent.name),
            Duration::from_secs(60),
            || {
                let s = n.status()?;
                s["peers"]
                    .as_array()?
                    .iter()
                    .any(|p| p["address"] == peer && p["state"] == "Established")
                    .then_some(())
            },
        );
    }
    // Programmed by the containerised agents: across racks through the tunnel.
    for (n, prefix) in [(&a1, "10.244.2.0/24"), (&b1, "10.244.1.0/24")] {
        wait_for(
            &format!("route to {prefix}"),
            Duration::from_secs(10),
            || {
                let r = n.agent.ns.exec(&["ip", "route", "show", prefix]);
                (r.contains("dev twill.vxlan") && r.contains("proto 77")).then_some(())
            },
        );
    }
    // Pods through the installed plugin, pinging across.
    let pods: Vec<(Netns, String)> = [&a1, &b1]
        .iter()
        .map(|n| {
            let pod = Netns::new("ip");
            let v = n.add_pod(&pod);
            let ip = pod_ips(&v).into_iter().next().expect("a pod address");
            (pod, ip)
        })
        .collect();
    for (i, (from, _)) in pods.iter().enumerate() {
        let (_, to) = &pods[1 - i];
        wait_for(
            &format!("pod {i} pings {to}"),
            Duration::from_secs(10),
            || ping(from, to).then_some(()),
        );
    }
}

/// `twill lab up --image`: the shipped two-racks-vxlan topology with every Twill node run from
/// the image, a node container and an agent container each, as containerlab runs them; the
/// pods ping across the racks; a node's agent stops and starts (the DaemonSet pod replaced)
/// while its node, links and pods stay; `lab down` leaves no container.
#[test]
fn twill_lab_runs_twill_nodes_from_the_image() {
    if let Err(why) = docker_available() {
        eprintln!("skipped: no Docker engine here ({why})");
        return;
    }
    let image = image();
    let lab = Lab::up_with(
        "two-racks-vxlan",
        &topology("two-racks-vxlan"),
        &["--image", &image],
    );
    assert!(lab.up_output.contains("8 pods"), "{}", lab.up_output);
    let o = lab.test();
    assert!(
        o.status.success() && text(&o).contains("all 56 pod pairs reachable"),
        "{}",
        text(&o)
    );
    let running = |name: &str| {
        docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.Config.Image}}",
            name,
        ])
    };
    let agent = format!("{}-agent", lab.ns("a1"));
    assert_eq!(running(&agent), format!("true {image}"));
    assert_eq!(running(&lab.ns("a1")), format!("true {image}"));
    let o = lab.twill(&["lab", "stop", "a1"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(running(&agent).starts_with("false"));
    assert!(running(&lab.ns("a1")).starts_with("true"), "the node stays");
    let o = lab.twill(&["lab", "start", "a1"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(running(&agent).starts_with("true"));
    let o = lab.test();
    assert!(
        text(&o).contains("all 56 pod pairs reachable"),
        "{}",
        text(&o)
    );
    assert!(lab.down().status.success());
    let left = docker(&["ps", "-aq", "--filter", &format!("name={}-", lab.prefix)]);
    assert!(left.is_empty(), "containers left: {left}");
}
