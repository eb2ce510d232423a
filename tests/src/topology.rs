//! Shipped lab topologies copied to a directory of their own with the cluster view edited, for
//! benchmarks and tests that compare variants of one fabric.

use crate::TempDir;
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/containerlab")
}

/// `deploy/containerlab/NAME.clab.yml` and its `NAME/` directory (the routers' configurations
/// too), the view `NAME/cluster.yaml` passed through `edit`. The topology file is
/// `dir.join("NAME.clab.yml")`; the view can be rewritten at `dir.join("NAME/cluster.yaml")`
/// while the lab runs (then SIGHUP the agents).
pub fn copy_with_view(name: &str, edit: impl Fn(&str) -> String) -> TempDir {
    let dir = TempDir::new("topo");
    let file = format!("{name}.clab.yml");
    copy_tree(&shipped().join(name), &dir.join(name));
    std::fs::copy(shipped().join(&file), dir.join(&file)).expect("copy topology");
    let view = std::fs::read_to_string(shipped().join(name).join("cluster.yaml"))
        .expect("shipped cluster.yaml");
    std::fs::write(dir.join(name).join("cluster.yaml"), edit(&view)).expect("write view");
    dir
}

/// Copy a directory of files and directories (a topology's configurations: a few small files).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("topology dir");
    for e in std::fs::read_dir(from).expect("shipped topology dir") {
        let e = e.expect("dir entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy topology file");
        }
    }
}

/// The `rr-fabric` view with the node-to-node mesh on (reflectors kept).
pub fn rr_fabric_mesh_on(view: &str) -> String {
    view.replace("nodeToNodeMesh: false", "nodeToNodeMesh: true")
}

/// The `rr-fabric` view as a plain full mesh: mesh on, no reflectors.
pub fn rr_fabric_full_mesh(view: &str) -> String {
    rr_fabric_mesh_on(view).replace(", routeReflectorClusterID: 10.255.0.1", "")
}

/// A generated topology `one-subnet` of `n` Twill nodes (n1…) on one switch, 10.1.0.0/24, in
/// a full iBGP mesh with no pods: the shape whose neighbour entries outgrow the host's default
/// table first. The file is `dir.join("one-subnet.clab.yml")`.
pub fn one_subnet(n: usize) -> TempDir {
    let dir = TempDir::new("topo");
    std::fs::create_dir_all(dir.join("one-subnet")).expect("topology dir");
    let mut view = String::from("asNumber: 64512\npodNetwork: 10.244.0.0/16\nnodeToNodeMesh: true\nencapsulation: {type: VXLAN, mode: CrossSubnet}\ntimers: {holdTime: 9, keepaliveTime: 3, connectRetryTime: 2}\nnodes:\n");
    let mut topo = String::from("name: one-subnet\ntopology:\n  nodes:\n    sw:\n      kind: linux\n      image: alpine\n      exec:\n        - ip link add name br0 type bridge\n        - ip link set br0 up\n");
    let mut links = String::from("  links:\n");
    for i in 1..=n {
        view += &format!(
            "  - {{name: n{i}, address: 10.1.0.{}, podCIDR: 10.244.{i}.0/24}}\n",
            10 + i
        );
        topo +=
            &format!("        - ip link set eth{i} master br0\n        - ip link set eth{i} up\n");
        links += &format!("    - endpoints: [n{i}:eth1, sw:eth{i}]\n");
    }
    for i in 1..=n {
        topo += &format!(
            "    n{i}:\n      kind: linux\n      image: ghcr.io/twill-net/twill:latest\n      binds: [one-subnet/cluster.yaml:/etc/twill/cluster.yaml:ro]\n      env: {{NODE_NAME: n{i}}}\n      labels: {{twill.io/pods: \"0\"}}\n      exec:\n        - ip addr add 10.1.0.{}/24 dev eth1\n      cmd: twill agent --config /etc/twill/cluster.yaml\n",
            10 + i
        );
    }
    std::fs::write(dir.join("one-subnet").join("cluster.yaml"), view).expect("write view");
    std::fs::write(dir.join("one-subnet.clab.yml"), topo + &links).expect("write topology");
    dir
}
