//! The firewall's owner writes through the iptables backend the node's kubelet uses, against
//! the real iptables-legacy and iptables-nft: a namespace where kubelet's marker chain and
//! kube-proxy's nat rules are in legacy gets Twill's NAT chain in legacy, with nothing of
//! Twill's in nft; an empty namespace gets nft; an explicit choice wins over the markers.

use policy::backend::Resolved;
use policy::enforcer::{Enforcer, EnforcerConfig};
use policy::{Backend, BackendChoice, Family, NatOutgoing, Tools};
use std::time::Duration;
use twill_lab::netns::{wait_for, Netns};

fn nat() -> NatOutgoing {
    let nets = |l: &[&str]| l.iter().map(|s| s.parse().unwrap()).collect::<Vec<_>>();
    NatOutgoing {
        families: [Family::V4].into_iter().collect(),
        local: nets(&["10.244.1.0/24"]),
        pods: nets(&["10.244.1.0/24", "10.244.2.0/24"]),
        except: Vec::new(),
    }
}

/// Start an enforcer in `ns` with `choice`, wait for NAT in force and for `settled`, and
/// return its status.
fn run(ns: &Netns, choice: BackendChoice, settled: impl Fn() -> bool) -> policy::EnforcerStatus {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let e = Enforcer::start(EnforcerConfig {
        node: "n1".into(),
        families: vec![Family::V4],
        resync: Duration::from_millis(200),
        tools: Tools {
            prefix: vec!["ip".into(), "netns".into(), "exec".into(), ns.name.clone()],
            ..Tools::default()
        },
        backend: Some(choice),
        bridge_sysctl_dir: None,
        nat: nat(),
    });
    let s = wait_for("outgoing NAT in force", Duration::from_secs(20), || {
        let s = e.status();
        (s.syncs > 0 && s.error.is_none() && s.nat_families == ["IPv4"] && settled()).then_some(s)
    });
    // The runtime's drop waits for a sync under way and starts no other, so the tables read
    // next hold what the enforcer wrote.
    drop(e);
    drop(_guard);
    drop(rt);
    s
}

fn resolved(s: &policy::EnforcerStatus) -> (Option<Backend>, &str) {
    let r: &Resolved = s.iptables.as_ref().expect("the backend is resolved");
    (r.backend, r.why.as_str())
}

fn twill_jump_first(ns: &Netns, save: &str) -> bool {
    ns.exec(&[save, "-t", "nat"])
        .lines()
        .find(|l| l.starts_with("-A POSTROUTING"))
        .is_some_and(|l| l.contains("twill:nat") && l.ends_with("-j TWILL-POSTROUTING"))
}

fn has_twill(ns: &Netns, save: &str) -> bool {
    ns.exec(&[save]).contains("TWILL")
}

/// A NAT chain, its jump and the set it matches, as an earlier agent left them in nft.
fn leftovers_in_nft(ns: &Netns) {
    ns.exec(&["ipset", "create", "twill-4c-0ld", "hash:net"]);
    for rule in [
        "-N TWILL-POSTROUTING",
        "-A TWILL-POSTROUTING -m set --match-set twill-4c-0ld dst -j RETURN",
        "-I POSTROUTING 1 -m comment --comment twill:nat -j TWILL-POSTROUTING",
    ] {
        let mut args = vec!["iptables-nft", "-t", "nat"];
        args.extend(rule.split(' '));
        ns.exec(&args);
    }
}

#[test]
fn rules_go_where_kubelet_s_are_and_leave_the_other_backend() {
    // kubelet and kube-proxy on legacy, as on a node whose iptables is set to legacy.
    let ns = Netns::new("ib");
    ns.exec(&[
        "iptables-legacy",
        "-t",
        "mangle",
        "-N",
        "KUBE-KUBELET-CANARY",
    ]);
    ns.exec(&["iptables-legacy", "-t", "nat", "-N", "KUBE-POSTROUTING"]);
    ns.exec(&[
        "iptables-legacy",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-j",
        "KUBE-POSTROUTING",
    ]);
    // In nft, a stray rule (Docker's, say), outweighed by kubelet's chain, and what an
    // earlier agent wrote there through plain `iptables` (nft on Debian 12).
    ns.exec(&["iptables-nft", "-t", "filter", "-N", "DOCKER-USER"]);
    ns.exec(&["iptables-nft", "-A", "DOCKER-USER", "-j", "RETURN"]);
    leftovers_in_nft(&ns);
    let s = run(&ns, BackendChoice::Auto, || {
        !ns.exec(&["ipset", "list", "-n"]).contains("twill-4c-0ld")
    });
    assert_eq!(
        resolved(&s),
        (
            Some(Backend::Legacy),
            "kubelet's KUBE-KUBELET-CANARY chain is in legacy"
        )
    );
    assert!(twill_jump_first(&ns, "iptables-legacy-save"));
    let legacy = ns.exec(&["iptables-legacy-save", "-t", "nat"]);
    assert!(
        legacy.contains("-A POSTROUTING -j KUBE-POSTROUTING"),
        "{legacy}"
    );
    // The earlier agent's chain and jump are gone from nft (so its set could go too); the
    // stray rule stays.
    assert!(!has_twill(&ns, "iptables-nft-save"));
    assert!(ns
        .exec(&["iptables-nft-save"])
        .contains("-A DOCKER-USER -j RETURN"));
}

#[test]
fn an_empty_node_gets_nft_and_an_explicit_choice_wins_and_says_so() {
    let ns = Netns::new("ib");
    let s = run(&ns, BackendChoice::Auto, || true);
    assert_eq!(resolved(&s).0, Some(Backend::Nft), "{s:?}");
    assert!(resolved(&s).1.starts_with("no kubelet chain"), "{s:?}");
    assert!(twill_jump_first(&ns, "iptables-nft-save"));
    // Nothing of Twill's in legacy, and no legacy table created by looking.
    assert_eq!(ns.exec(&["iptables-legacy-save"]).trim(), "");

    // Told legacy, beside kubelet's chain in nft: legacy it is, and status says auto differs.
    let ns = Netns::new("ib");
    ns.exec(&["iptables-nft", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"]);
    let s = run(&ns, BackendChoice::Fixed(Backend::Legacy), || true);
    assert_eq!(
        resolved(&s),
        (
            Some(Backend::Legacy),
            "set explicitly, though auto would take nft: kubelet's KUBE-IPTABLES-HINT chain is in nft"
        )
    );
    assert!(twill_jump_first(&ns, "iptables-legacy-save"));
    assert!(!has_twill(&ns, "iptables-nft-save"));
}
