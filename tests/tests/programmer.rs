//! felix-lite against a real kernel routing table in a namespace: repair, foreign routes,
//! adoption across a restart, ECMP, recursive next hops, IPv6.

use felix_lite::{Change, Config, Hop, Programmer, Route};
use ipnet::IpNet;
use std::time::{Duration, Instant};
use twill_lab::{wait_for, Link, Netns, NsRuntime, RouteMonitor};

struct Lab {
    ns: Netns,
    _peer: Netns,
    ifindex: u32,
    rt: NsRuntime,
}

/// A namespace with one veth towards a peer namespace: 10.9.0.1/24 and fd00:9::1/64 here,
/// gateways .2/.3 and ::2 on the other side.
fn lab() -> Lab {
    let ns = Netns::new("fl");
    let peer = Netns::new("gw");
    let (ifname, _) = Link::connect(
        &ns,
        &["10.9.0.1/24", "fd00:9::1/64"],
        &peer,
        &["10.9.0.2/24", "10.9.0.3/24", "fd00:9::2/64"],
    );
    let ifindex: u32 = ns
        .exec(&["cat", &format!("/sys/class/net/{ifname}/ifindex")])
        .trim()
        .parse()
        .expect("ifindex");
    let rt = NsRuntime::new(&ns);
    Lab {
        ns,
        _peer: peer,
        ifindex,
        rt,
    }
}

impl Lab {
    fn start(&self) -> Programmer {
        self.rt
            .run(Programmer::start(Config::default()))
            .expect("programmer starts")
    }

    fn route(&self, prefix: &str, gw: &str) -> Route {
        let p: IpNet = prefix.parse().unwrap();
        Route::new(p, [Hop::direct(gw.parse().unwrap(), self.ifindex)])
    }

    fn show(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "route", "show"];
        v.extend_from_slice(args);
        self.ns.exec(&v)
    }

    fn replace_all(&self, p: &Programmer, routes: Vec<Route>) -> felix_lite::Report {
        let p = p.clone();
        self.rt
            .run(async move { p.replace_all(routes).await })
            .expect("replace_all")
    }

    fn resync(&self, p: &Programmer) -> felix_lite::Report {
        let p = p.clone();
        self.rt
            .run(async move { p.resync().await })
            .expect("resync")
    }

    fn shutdown(&self, p: Programmer) {
        self.rt.run(async move { p.shutdown().await });
    }
}

/// `ip` prints `proto twill` where the protocol name is installed, `proto 77` where not.
fn is_ours(route: &str) -> bool {
    route.contains("proto 77") || route.contains("proto twill")
}

fn three(lab: &Lab) -> Vec<Route> {
    (1..=3)
        .map(|i| lab.route(&format!("10.60.{i}.0/24"), "10.9.0.2"))
        .collect()
}

#[test]
fn routes_carry_twills_protocol_and_a_hand_deleted_one_returns() {
    let lab = lab();
    let p = lab.start();
    let report = lab.replace_all(&p, three(&lab));
    assert_eq!(report.applied, 3);
    let ours = lab.show(&["proto", "77"]);
    assert_eq!(ours.lines().count(), 3, "{ours}");
    assert!(ours.contains("10.60.2.0/24 via 10.9.0.2 dev"), "{ours}");

    lab.ns.exec(&["ip", "route", "del", "10.60.2.0/24"]);
    let t0 = Instant::now();
    wait_for(
        "the deleted route to return",
        Duration::from_secs(5),
        || {
            lab.show(&["10.60.2.0/24", "proto", "77"])
                .contains("via 10.9.0.2")
                .then_some(())
        },
    );
    let took = t0.elapsed();
    // Counted once the kernel has acknowledged the repair, a moment after `ip` can see it.
    wait_for("the repair counted", Duration::from_secs(5), || {
        (p.counters().repaired >= 1).then_some(())
    });

    // Replaced by hand with our protocol but another gateway: put back too.
    lab.ns.exec(&[
        "ip",
        "route",
        "replace",
        "10.60.3.0/24",
        "via",
        "10.9.0.3",
        "proto",
        "77",
    ]);
    wait_for(
        "the replaced route to be repaired",
        Duration::from_secs(5),
        || {
            lab.show(&["10.60.3.0/24"])
                .contains("via 10.9.0.2")
                .then_some(())
        },
    );
    println!(
        "deleted route back after {took:?}; counters {:?}",
        p.counters()
    );
    lab.shutdown(p);
}

#[test]
fn foreign_routes_are_never_changed_even_on_wanted_prefixes() {
    let lab = lab();
    // One foreign route beside ours, one on a prefix Twill will want.
    lab.ns.exec(&[
        "ip",
        "route",
        "add",
        "10.61.0.0/24",
        "via",
        "10.9.0.3",
        "proto",
        "static",
    ]);
    lab.ns.exec(&[
        "ip",
        "route",
        "add",
        "10.60.5.0/24",
        "via",
        "10.9.0.3",
        "proto",
        "static",
    ]);
    let foreign_before = lab.show(&["proto", "static"]);
    let p = lab.start();
    let mut want = three(&lab);
    want.push(lab.route("10.60.5.0/24", "10.9.0.2"));
    let report = lab.replace_all(&p, want);
    assert_eq!(report.applied, 3);
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].foreign.protocol, 4);

    // A foreign route replacing one of ours by hand is left alone too.
    lab.ns.exec(&[
        "ip",
        "route",
        "replace",
        "10.60.1.0/24",
        "via",
        "10.9.0.3",
        "proto",
        "static",
    ]);
    for _ in 0..3 {
        let r = lab.resync(&p);
        assert_eq!(r.applied, 0, "a resync touched something: {r:?}");
        assert_eq!(r.conflicts.len(), 2);
    }
    let foreign_after = lab.show(&["proto", "static"]);
    assert!(
        foreign_after.contains("10.60.1.0/24 via 10.9.0.3"),
        "{foreign_after}"
    );
    for line in foreign_before.lines() {
        assert!(
            foreign_after.contains(line.trim()),
            "{line} changed:\n{foreign_after}"
        );
    }
    assert!(p.counters().conflicts >= 6, "{:?}", p.counters());

    // Once the foreign route on a wanted prefix goes, ours takes its place.
    lab.ns
        .exec(&["ip", "route", "del", "10.60.5.0/24", "proto", "static"]);
    wait_for(
        "our route on the freed prefix",
        Duration::from_secs(5),
        || {
            lab.show(&["10.60.5.0/24", "proto", "77"])
                .contains("via 10.9.0.2")
                .then_some(())
        },
    );
    lab.shutdown(p);
}

#[test]
fn a_restart_adopts_its_routes_without_a_single_kernel_change() {
    let lab = lab();
    let routes: Vec<Route> = (0..200)
        .map(|i| lab.route(&format!("10.70.{i}.0/24"), "10.9.0.2"))
        .collect();
    let first = lab.start();
    assert_eq!(lab.replace_all(&first, routes.clone()).applied, 200);
    lab.shutdown(first);
    // A stray of ours a previous run left and nobody wants any more.
    lab.ns.exec(&[
        "ip",
        "route",
        "add",
        "10.71.0.0/24",
        "via",
        "10.9.0.2",
        "proto",
        "77",
    ]);
    let before = lab.show(&["proto", "77"]);

    let mut monitor = RouteMonitor::start(&lab.ns);
    let second = lab.start();
    // Until the owner hands over a complete set, nothing is deleted, not even the stray.
    let one = routes[0].clone();
    let s = second.clone();
    let r = lab
        .rt
        .run(async move { s.update(vec![Change::Set(one)]).await })
        .expect("update");
    assert_eq!(r.applied, 0);
    monitor.barrier(&lab.ns);
    assert_eq!(
        monitor.lines(),
        Vec::<String>::new(),
        "kernel changed before replace_all"
    );
    assert_eq!(lab.show(&["proto", "77"]), before);

    let report = lab.replace_all(&second, routes);
    monitor.barrier(&lab.ns);
    let events = monitor.lines();
    assert_eq!(report.applied, 1, "only the stray goes: {report:?}");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("Deleted 10.71.0.0/24"), "{events:?}");
    let c = second.counters();
    assert_eq!((c.added, c.replaced, c.deleted), (0, 0, 1), "{c:?}");
    assert_eq!(c.programmed, 200);
    lab.shutdown(second);
}

#[test]
fn ecmp_recursive_next_hops_and_ipv6() {
    let lab = lab();
    // The kernel's own route towards a next hop behind a router.
    lab.ns.exec(&[
        "ip",
        "route",
        "add",
        "10.77.0.0/16",
        "via",
        "10.9.0.3",
        "proto",
        "static",
    ]);
    let p = lab.start();
    let ecmp = Route::new(
        "10.62.0.0/24".parse().unwrap(),
        [
            Hop::direct("10.9.0.2".parse().unwrap(), lab.ifindex),
            Hop::direct("10.9.0.3".parse().unwrap(), lab.ifindex),
        ],
    );
    let recursive = Route::new(
        "10.63.0.0/24".parse().unwrap(),
        [Hop::recursive("10.77.0.9".parse().unwrap())],
    );
    let v6 = lab.route("fd00:244:1::/64", "fd00:9::2");
    let report = lab.replace_all(&p, vec![ecmp, recursive, v6]);
    assert_eq!(report.applied, 3, "{report:?}");
    let e = lab.show(&["10.62.0.0/24"]);
    assert_eq!(e.matches("nexthop via").count(), 2, "{e}");
    assert!(
        e.contains("via 10.9.0.2") && e.contains("via 10.9.0.3"),
        "{e}"
    );
    let r = lab.show(&["10.63.0.0/24"]);
    assert!(r.contains("via 10.9.0.3") && is_ours(&r), "{r}");
    let six = lab
        .ns
        .exec(&["ip", "-6", "route", "show", "fd00:244:1::/64"]);
    assert!(six.contains("via fd00:9::2") && is_ours(&six), "{six}");
    // Nothing to do on a resync: the kernel's view of each equals ours.
    assert_eq!(lab.resync(&p).applied, 0);
    let listed = lab.rt.run({
        let p = p.clone();
        async move { p.routes().await }
    });
    assert!(listed.expect("routes").iter().all(|r| r.installed));
    lab.shutdown(p);
}
