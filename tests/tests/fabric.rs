//! Nodes with cni0 bridges and pods (reference bridge + host-local CNI plugins), their data plane
//! run by ipip + felix-lite from a static view of the other nodes.

use ipip::{Encap, EncapMode, EncapType};
use std::time::Duration;
use twill_lab::{wait_for, Capture, Dataplane, Netns, Pod, Remote, RouteMonitor, Switch, TwoRacks};

struct Node {
    ns: Netns,
    underlay: String,
    address: &'static str,
    pod_cidr: &'static str,
    dp: Dataplane,
    pod: Pod,
}

impl Node {
    fn new(
        switch: &Switch,
        address: &'static str,
        plen: u8,
        gw: Option<&str>,
        pod_cidr: &'static str,
    ) -> Node {
        let ns = Netns::new("n");
        let underlay = switch.attach(&ns, &[&format!("{address}/{plen}")], 1500);
        if let Some(gw) = gw {
            ns.exec(&["ip", "route", "add", "default", "via", gw]);
        }
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let dp = Dataplane::start(&ns, Encap::default(), address, pod_cidr).expect("fabric");
        // The pod's MTU comes from the file the fabric wrote, as the CNI plugin will read it.
        let mtu: u32 = std::fs::read_to_string(dp.state.join("mtu"))
            .expect("mtu file")
            .trim()
            .parse()
            .expect("mtu number");
        let pod = Pod::add(&ns, pod_cidr, mtu);
        Node {
            ns,
            underlay,
            address,
            pod_cidr,
            dp,
            pod,
        }
    }

    fn remote(&self) -> Remote {
        Remote {
            address: self.address.parse().unwrap(),
            pod_cidr: self.pod_cidr.parse().unwrap(),
        }
    }

    fn route(&self, prefix: &str) -> String {
        self.ns.exec(&["ip", "route", "show", prefix])
    }
}

fn reach_names(reaches: &[(ipnet::IpNet, ipip::Reach)]) -> Vec<(String, &'static str)> {
    reaches
        .iter()
        .map(|(p, r)| (p.to_string(), r.name()))
        .collect()
}

#[test]
fn one_subnet_gets_direct_routes_and_no_encapsulation() {
    let sw = Switch::new("swa");
    let n1 = Node::new(&sw, "10.1.0.11", 24, None, "10.244.1.0/24");
    let n2 = Node::new(&sw, "10.1.0.12", 24, None, "10.244.2.0/24");
    let (r1, reach1) = n1.dp.apply(&[n2.remote()]);
    let (r2, _) = n2.dp.apply(&[n1.remote()]);
    assert_eq!((r1.applied, r2.applied), (1, 1));
    assert_eq!(
        reach_names(&reach1),
        vec![("10.244.2.0/24".to_string(), "direct")]
    );
    let route = n1.route("10.244.2.0/24");
    assert!(
        route.contains(&format!("via 10.1.0.12 dev {} proto", n1.underlay)),
        "{route}"
    );

    let cap = Capture::start(&n1.ns, &n1.underlay, "udp port 4789 or icmp");
    assert!(
        n1.pod.ping(&n2.pod.ip, None),
        "pod on n1 cannot reach pod on n2"
    );
    assert!(
        n2.pod.ping(&n1.pod.ip, None),
        "pod on n2 cannot reach pod on n1"
    );
    let lines = cap.stop();
    let plain = format!("{} > {}: ICMP echo request", n1.pod.ip, n2.pod.ip);
    assert!(lines.iter().any(|l| l.contains(&plain)), "{lines:#?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("4789") || l.contains("VXLAN")),
        "encapsulated traffic on one subnet: {lines:#?}"
    );
}

/// Rack A (a1, a2 on 10.1.0.0/24) and rack B (b1 on 10.2.0.0/24), joined by a router namespace
/// that knows nothing of pods.
struct Lab {
    _underlay: TwoRacks,
    a1: Node,
    a2: Node,
    b1: Node,
}

fn two_racks() -> Lab {
    let u = TwoRacks::new();
    let (ga, gb) = (Some(TwoRacks::GATEWAY_A), Some(TwoRacks::GATEWAY_B));
    let a1 = Node::new(&u.a, "10.1.0.11", 24, ga, "10.244.1.0/24");
    let a2 = Node::new(&u.a, "10.1.0.12", 24, ga, "10.244.2.0/24");
    let b1 = Node::new(&u.b, "10.2.0.11", 24, gb, "10.244.3.0/24");
    Lab {
        _underlay: u,
        a1,
        a2,
        b1,
    }
}

#[test]
fn cross_subnet_pods_go_through_vxlan_and_same_subnet_pods_stay_direct() {
    let lab = two_racks();
    let (a1, a2, b1) = (&lab.a1, &lab.a2, &lab.b1);
    let (_, reach) = a1.dp.apply(&[a2.remote(), b1.remote()]);
    a2.dp.apply(&[a1.remote(), b1.remote()]);
    let (_, reach_b) = b1.dp.apply(&[a1.remote(), a2.remote()]);
    assert_eq!(
        reach_names(&reach),
        vec![
            ("10.244.2.0/24".to_string(), "direct"),
            ("10.244.3.0/24".to_string(), "vxlan")
        ]
    );
    assert!(reach_b.iter().all(|(_, r)| r.name() == "vxlan"));

    let r = a1.route("10.244.3.0/24");
    assert!(
        r.contains("via 10.244.3.0 dev twill.vxlan") && r.contains("onlink"),
        "{r}"
    );
    let fdb = a1.ns.exec(&["bridge", "fdb", "show", "dev", "twill.vxlan"]);
    assert!(fdb.contains("0e:74:0a:02:00:0b dst 10.2.0.11"), "{fdb}");
    let neigh = a1.ns.exec(&["ip", "neigh", "show", "dev", "twill.vxlan"]);
    assert!(
        neigh.contains("10.244.3.0 lladdr 0e:74:0a:02:00:0b PERMANENT"),
        "{neigh}"
    );
    let dev = a1.ns.exec(&["ip", "-d", "link", "show", "twill.vxlan"]);
    assert!(
        dev.contains("vxlan id 4096") && dev.contains("dstport 4789") && dev.contains("nolearning"),
        "{dev}"
    );

    let cap = Capture::start(&a1.ns, &a1.underlay, "udp port 4789 or icmp");
    assert!(a1.pod.ping(&b1.pod.ip, None), "a1 pod cannot reach b1 pod");
    assert!(a1.pod.ping(&a2.pod.ip, None), "a1 pod cannot reach a2 pod");
    let lines = cap.stop();
    let tunnelled = lines
        .iter()
        .filter(|l| l.contains("> 10.2.0.11.4789") && l.contains(&b1.pod.ip))
        .count();
    assert!(tunnelled >= 1, "no VXLAN packet towards b1: {lines:#?}");
    let direct = format!("{} > {}: ICMP echo request", a1.pod.ip, a2.pod.ip);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&direct) && !l.contains("VXLAN")),
        "no plain ICMP towards a2: {lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("VXLAN") && l.contains(&a2.pod.ip)),
        "same-subnet traffic was encapsulated: {lines:#?}"
    );
}

#[test]
fn the_mtu_is_worked_out_and_a_df_ping_one_byte_too_big_fails() {
    let lab = two_racks();
    let (a1, a2, b1) = (&lab.a1, &lab.a2, &lab.b1);
    a1.dp.apply(&[a2.remote(), b1.remote()]);
    b1.dp.apply(&[a1.remote(), a2.remote()]);
    // 1500 on the underlay, 50 bytes of VXLAN over IPv4.
    assert_eq!(a1.dp.mtu(), 1450);
    let dev = a1.ns.exec(&["ip", "link", "show", "twill.vxlan"]);
    assert!(dev.contains("mtu 1450"), "{dev}");
    let eth0 = a1.pod.ns.exec(&["ip", "link", "show", "eth0"]);
    assert!(eth0.contains("mtu 1450"), "{eth0}");
    // 1450 - 20 (IPv4) - 8 (ICMP) = 1422 bytes of payload is the largest that fits.
    assert!(
        a1.pod.ping(&b1.pod.ip, Some(1422)),
        "a 1450-byte DF packet did not cross the tunnel"
    );
    assert!(
        !a1.pod.ping(&b1.pod.ip, Some(1423)),
        "a 1451-byte DF packet went through"
    );
    // The tunnel's own limit, not only the pod's: from the node itself (MTU 1500 on its side),
    // a packet routed into twill.vxlan one byte too big is refused as well.
    let ok = a1.ns.try_exec(&[
        "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1422", &b1.pod.ip,
    ]);
    let big = a1.ns.try_exec(&[
        "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1423", &b1.pod.ip,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(!big.status.success());
}

#[test]
fn entries_of_nodes_that_went_away_are_removed_and_nothing_is_left_behind() {
    let lab = two_racks();
    let (a1, a2, b1) = (&lab.a1, &lab.a2, &lab.b1);
    a1.dp.apply(&[a2.remote(), b1.remote()]);
    assert!(a1.route("10.244.3.0/24").contains("twill.vxlan"));
    // b1 leaves the cluster.
    let (report, _) = a1.dp.apply(&[a2.remote()]);
    assert_eq!(report.applied, 1);
    assert_eq!(a1.route("10.244.3.0/24"), "");
    let fdb = a1.ns.exec(&["bridge", "fdb", "show", "dev", "twill.vxlan"]);
    assert!(!fdb.contains("0e:74:0a:02:00:0b"), "{fdb}");
    let neigh = a1.ns.exec(&["ip", "neigh", "show", "dev", "twill.vxlan"]);
    assert!(!neigh.contains("10.244.3.0"), "{neigh}");
    assert!(a1.route("10.244.2.0/24").contains("via 10.1.0.12"));

    // Leaving the node for good removes the device.
    a1.dp.teardown();
    wait_for("the device to go", Duration::from_secs(2), || {
        (!a1.ns
            .try_exec(&["ip", "link", "show", "twill.vxlan"])
            .status
            .success())
        .then_some(())
    });
}

/// A restarted agent finds its `twill.vxlan` in place and must leave it alone: rewriting even
/// the same MAC address makes the kernel flush the device's neighbour entries (NETDEV_CHANGEADDR),
/// and until they are written again cross-rack pod traffic has no VTEP to go to.
#[test]
fn a_restart_on_an_existing_vxlan_device_flushes_none_of_its_neighbours() {
    let lab = two_racks();
    let (a1, a2, b1) = (&lab.a1, &lab.a2, &lab.b1);
    a1.dp.apply(&[a2.remote(), b1.remote()]);
    let neigh = || a1.ns.exec(&["ip", "neigh", "show", "dev", "twill.vxlan"]);
    assert!(neigh().contains("10.244.3.0"), "{}", neigh());
    let mut mon = RouteMonitor::start_with(&a1.ns, &["neigh", "link"]);
    // The new agent's fabric, on the same node, with the same configuration.
    let again =
        Dataplane::start(&a1.ns, Encap::default(), a1.address, a1.pod_cidr).expect("fabric");
    again.apply(&[a2.remote(), b1.remote()]);
    mon.barrier(&a1.ns);
    let changes: Vec<String> = mon
        .lines()
        .into_iter()
        .filter(|l| l.contains("twill.vxlan"))
        .collect();
    assert!(
        changes.is_empty(),
        "the restart touched the device: {changes:#?}"
    );
    assert!(neigh().contains("10.244.3.0"), "{}", neigh());
}

/// A pod CIDR that moved to another node while the agent was down: the adopted entry (old node)
/// and the new one share the VTEP address. Handing over the complete set removes the old one
/// without deleting the neighbour entry the new one wrote.
#[test]
fn a_pod_cidr_that_moved_keeps_its_vtep_neighbour_when_the_old_entry_goes() {
    let lab = two_racks();
    let a1 = &lab.a1;
    let cidr: ipnet::IpNet = "10.244.3.0/24".parse().unwrap();
    let old = ipip::TunnelPeer::new("10.2.0.11".parse().unwrap(), &cidr);
    let new = ipip::TunnelPeer::new("10.2.0.99".parse().unwrap(), &cidr);
    assert_eq!(old.vtep, new.vtep);
    let set = |peers: Vec<ipip::TunnelPeer>| {
        let fabric = a1.dp.fabric.clone();
        a1.dp
            .rt
            .run(async move {
                fabric
                    .lock()
                    .await
                    .set_tunnel_peers(peers.into_iter().collect())
                    .await
            })
            .expect("tunnel peers");
    };
    set(vec![old]);
    // Before readiness, both (the adopted entry is only added to); then the complete set.
    set(vec![old, new]);
    set(vec![new]);
    let neigh = a1.ns.exec(&["ip", "neigh", "show", "dev", "twill.vxlan"]);
    let want = format!("10.244.3.0 lladdr {}", ipip::vtep::mac_string(&new.mac));
    assert!(neigh.contains(&want), "{want:?} in {neigh}");
    let fdb = a1.ns.exec(&["bridge", "fdb", "show", "dev", "twill.vxlan"]);
    assert!(fdb.contains("dst 10.2.0.99"), "{fdb}");
    assert!(!fdb.contains("dst 10.2.0.11"), "{fdb}");
}

#[test]
fn mode_always_encapsulates_even_on_link_and_never_removes_the_device() {
    let sw = Switch::new("swa");
    let ns = Netns::new("n");
    sw.attach(&ns, &["10.1.0.21/24"], 1500);
    let always = Encap {
        kind: EncapType::Vxlan,
        mode: EncapMode::Always,
    };
    let dp = Dataplane::start(&ns, always, "10.1.0.21", "10.244.21.0/24").expect("fabric");
    let peer = Remote {
        address: "10.1.0.22".parse().unwrap(),
        pod_cidr: "10.244.22.0/24".parse().unwrap(),
    };
    let (_, reach) = dp.apply(std::slice::from_ref(&peer));
    assert_eq!(reach[0].1.name(), "vxlan");
    drop(dp);
    let never = Encap {
        kind: EncapType::Vxlan,
        mode: EncapMode::Never,
    };
    let dp = Dataplane::start(&ns, never, "10.1.0.21", "10.244.21.0/24").expect("fabric");
    assert!(!ns
        .try_exec(&["ip", "link", "show", "twill.vxlan"])
        .status
        .success());
    assert_eq!(dp.mtu(), 1500);
    let (_, reach) = dp.apply(&[peer]);
    assert_eq!(reach[0].1.name(), "direct");
}
