//! Shipped lab topologies copied to a directory of their own with the cluster view edited, for
//! benchmarks and tests that compare variants of one fabric.

use crate::TempDir;
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/containerlab")
}

/// `deploy/containerlab/NAME.clab.yml` and its `NAME/cluster.yaml`, the view passed through
/// `edit`. The topology file is `dir.join("NAME.clab.yml")`; the view can be rewritten at
/// `dir.join("NAME/cluster.yaml")` while the lab runs (then SIGHUP the agents).
pub fn copy_with_view(name: &str, edit: impl Fn(&str) -> String) -> TempDir {
    let dir = TempDir::new("topo");
    let file = format!("{name}.clab.yml");
    std::fs::create_dir_all(dir.join(name)).expect("topology dir");
    std::fs::copy(shipped().join(&file), dir.join(&file)).expect("copy topology");
    let view = std::fs::read_to_string(shipped().join(name).join("cluster.yaml"))
        .expect("shipped cluster.yaml");
    std::fs::write(dir.join(name).join("cluster.yaml"), edit(&view)).expect("write view");
    dir
}

/// The `rr-fabric` view with the node-to-node mesh on (reflectors kept).
pub fn rr_fabric_mesh_on(view: &str) -> String {
    view.replace("nodeToNodeMesh: false", "nodeToNodeMesh: true")
}

/// The `rr-fabric` view as a plain full mesh: mesh on, no reflectors.
pub fn rr_fabric_full_mesh(view: &str) -> String {
    rr_fabric_mesh_on(view).replace(", routeReflectorClusterID: 10.255.0.1", "")
}
