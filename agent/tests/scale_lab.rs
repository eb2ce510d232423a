//! What broke first at 40 nodes: the host's one neighbour table (1,024 entries by default for
//! all namespaces) overflowed and sessions sat in Connect with no error. `lab up` now sizes
//! the table for the topology and `lab down` puts the host's limits back.

mod common;

use common::lab::Lab;
use twill_lab::topology::one_subnet;

fn thresh3() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn forty_nodes_on_one_subnet_converge_and_the_host_is_put_back() {
    let before = thresh3();
    let topo = one_subnet(40);
    let lab = Lab::up_file("one-subnet", &topo.join("one-subnet.clab.yml"));
    // `lab up` returned: every node routes the other 39 pod CIDRs over 39 Established sessions.
    assert!(lab.up_output.contains("converged"), "{}", lab.up_output);
    let peers = lab.peers("n40");
    assert_eq!(peers.len(), 39);
    assert!(
        peers.iter().all(|p| p["state"] == "Established"),
        "{peers:?}"
    );
    if before < 4 * 40 * 40 {
        assert!(thresh3() > before, "raised for the lab");
        assert!(
            lab.up_output.contains("neighbour table"),
            "{}",
            lab.up_output
        );
    }
    let o = lab.down();
    assert!(o.status.success());
    assert_eq!(thresh3(), before, "put back by lab down");
}
