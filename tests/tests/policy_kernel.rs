//! The policy enforcer against the real iptables, ip6tables and ipset, in a namespace of its
//! own that already holds another component's chains, rules and sets (kube-proxy-like): ours
//! are written, theirs stay byte-identical; a second pass changes nothing; what is deleted by
//! hand comes back; a failing `iptables-restore` leaves the previous rules in force and says
//! why. Outgoing NAT's chain in the nat table, by the same owner, beside Docker's and
//! kube-proxy's nat rules.

use cluster::workloads::{build, file, Workloads};
use policy::enforcer::{remove_all, Enforcer, EnforcerConfig};
use policy::{Family, NatOutgoing, Tools};
use std::sync::Arc;
use std::time::Duration;
use twill_lab::netns::{wait_for, Netns, TempDir};

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIPs: [{ip: 10.244.1.10}, {ip: "fd00:244:1::10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIPs: [{ip: 10.244.2.10}, {ip: "fd00:244:2::10"}]}
"#;

const POLICY: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: http}, {port: 5000, endPort: 5010, protocol: SCTP}, {protocol: UDP, port: 53}]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}, {ipBlock: {cidr: "fd00::/8"}}]
"#;

fn workloads(yaml: &str) -> Arc<Workloads> {
    let objects = file::parse(yaml).expect("test objects parse");
    let built = build(&objects.objects(), None);
    assert!(built.problems.is_empty(), "{:?}", built.problems);
    Arc::new(built.workloads)
}

/// Another component's state: a chain with a rule, a jump from FORWARD, a nat rule, a set.
fn foreign_state(ns: &Netns) {
    for ipt in ["iptables", "ip6tables"] {
        ns.exec(&[ipt, "-N", "KUBE-FORWARD"]);
        ns.exec(&[
            ipt,
            "-A",
            "KUBE-FORWARD",
            "-m",
            "comment",
            "--comment",
            "kube",
            "-j",
            "ACCEPT",
        ]);
        ns.exec(&[ipt, "-A", "FORWARD", "-j", "KUBE-FORWARD"]);
        ns.exec(&[ipt, "-t", "nat", "-N", "KUBE-SERVICES"]);
        ns.exec(&[ipt, "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-SERVICES"]);
    }
    ns.exec(&["ipset", "create", "KUBE-X", "hash:ip"]);
    ns.exec(&["ipset", "add", "KUBE-X", "10.9.9.9"]);
}

/// Every line of the save that is not Twill's (no counters, no timestamps).
fn foreign(ns: &Netns, save: &str) -> Vec<String> {
    ns.exec(&[save])
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("TWILL-") && !l.contains("twill:"))
        .map(str::to_string)
        .collect()
}

fn first_forward_rule(ns: &Netns, save: &str) -> String {
    ns.exec(&[save, "-t", "filter"])
        .lines()
        .find(|l| l.starts_with("-A FORWARD"))
        .unwrap_or_default()
        .to_string()
}

fn config(ns: &Netns, tools: Tools) -> EnforcerConfig {
    let mut tools = tools;
    tools.prefix = vec!["ip".into(), "netns".into(), "exec".into(), ns.name.clone()];
    EnforcerConfig {
        node: "n1".into(),
        families: vec![Family::V4, Family::V6],
        resync: Duration::from_millis(200),
        tools,
        backend: None,
        bridge_sysctl_dir: None,
        nat: NatOutgoing::default(),
    }
}

/// Hand `w` over and wait until it is in force, without error.
fn in_force(
    rt: &tokio::runtime::Runtime,
    e: &Enforcer,
    w: Arc<Workloads>,
    generation: u64,
) -> policy::EnforcerStatus {
    e.apply(w, generation);
    let s = rt
        .block_on(e.wait_for(generation, Duration::from_secs(20)))
        .expect("answered within 20 s");
    assert_eq!(s.error, None);
    s
}

fn runtime() -> tokio::runtime::Runtime {
    // A worker of its own: the enforcer keeps resyncing while the test polls.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn writes_only_its_own_chains_and_sets_repairs_them_and_removes_them() {
    let ns = Netns::new("pk");
    foreign_state(&ns);
    let before4 = foreign(&ns, "iptables-save");
    let before6 = foreign(&ns, "ip6tables-save");
    let sets_before = ns.exec(&["ipset", "list", "KUBE-X"]);
    let rt = runtime();
    let _guard = rt.enter();
    let e = Enforcer::start(config(&ns, Tools::default()));
    let s = in_force(&rt, &e, workloads(&format!("{PODS}{POLICY}")), 1);
    assert_eq!(s.in_force, 1);

    // Ours: the jump first in FORWARD, the policy's chains (SCTP accepted by the kernel through
    // multiport), IPv6 too; theirs: byte-identical.
    for save in ["iptables-save", "ip6tables-save"] {
        let first = first_forward_rule(&ns, save);
        assert!(
            first.contains("twill:policy") && first.ends_with("-j TWILL-FORWARD"),
            "{save}: {first}"
        );
        let text = ns.exec(&[save, "-t", "filter"]);
        assert!(
            text.contains("-p sctp") && text.contains("--dports 5000:5010"),
            "{save}:\n{text}"
        );
        assert!(text.contains(":TWILL-PI-"), "{save}:\n{text}");
        assert!(text.contains(":TWILL-PE-"), "{save}:\n{text}");
    }
    assert_eq!(foreign(&ns, "iptables-save"), before4);
    assert_eq!(foreign(&ns, "ip6tables-save"), before6);
    assert_eq!(ns.exec(&["ipset", "list", "KUBE-X"]), sets_before);
    let sets = ns.exec(&["ipset", "list", "-n"]);
    assert!(
        sets.contains("twill-4-ingress") && sets.contains("twill-6-ingress"),
        "{sets}"
    );
    let v4 = ns.exec(&["ipset", "save"]);
    assert!(
        v4.contains("10.244.1.10,tcp:8080"),
        "the named port resolved:\n{v4}"
    );
    assert!(
        v4.contains("10.1.0.0/16 nomatch"),
        "except as nomatch:\n{v4}"
    );

    // What the kernel holds reads back as exactly what was written: later passes change nothing.
    let batches = e.status().batches;
    let syncs = e.status().syncs;
    wait_for("three more resyncs", Duration::from_secs(10), || {
        (e.status().syncs >= syncs + 3).then_some(())
    });
    assert_eq!(
        e.status().batches,
        batches,
        "a resync rewrote unchanged state"
    );

    // Deleted by hand: the jump, a policy chain's rules, a set's members. All return.
    let pi = ns
        .exec(&["iptables-save", "-t", "filter"])
        .lines()
        .find_map(|l| l.strip_prefix(':').filter(|c| c.starts_with("TWILL-PI-")))
        .and_then(|c| c.split_whitespace().next())
        .unwrap()
        .to_string();
    ns.exec(&["iptables", "-D", "FORWARD", "1"]);
    ns.exec(&["iptables", "-F", &pi]);
    ns.exec(&["ipset", "flush", "twill-4-ingress"]);
    let repaired = || {
        let save = ns.exec(&["iptables-save", "-t", "filter"]);
        let members = ns.exec(&["ipset", "list", "twill-4-ingress"]);
        (first_forward_rule(&ns, "iptables-save").contains("twill:policy")
            && save.lines().any(|l| l.starts_with(&format!("-A {pi} ")))
            && members.contains("10.244.1.10"))
        .then_some(())
    };
    wait_for(
        "the resync to repair what was deleted",
        Duration::from_secs(10),
        repaired,
    );
    assert_eq!(foreign(&ns, "iptables-save"), before4);

    // 200 clients come: the peer set is rebuilt whole and swapped in (a few would have been
    // added in place); every one of them is in the kernel's set.
    let mut many = format!("{PODS}{POLICY}");
    for i in 0..200 {
        many += &format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: c{i}, namespace: x, labels: {{app: client}}}}\nspec: {{nodeName: n2}}\nstatus: {{podIPs: [{{ip: 10.244.9.{}}}, {{ip: \"fd00:244:9::{i:x}\"}}]}}\n", i + 1);
    }
    in_force(&rt, &e, workloads(&many), 2);
    let saved = ns.exec(&["ipset", "save"]);
    assert_eq!(
        saved
            .lines()
            .filter(|l| l.starts_with("add twill-4p-") && l.contains(" 10.244.9."))
            .count(),
        200,
        "{saved}"
    );
    assert!(!saved.contains("twill-t"), "no temporary set left: {saved}");

    // The pod gone from this node: its policy's chains and sets go, the rest stays.
    in_force(
        &rt,
        &e,
        workloads(&PODS.replace("nodeName: n1", "nodeName: n3")),
        3,
    );
    let save = ns.exec(&["iptables-save", "-t", "filter"]);
    assert!(
        !save.contains("TWILL-PI-") && !save.contains("TWILL-PE-"),
        "{save}"
    );
    // Its sets go with the next batch (the resync), once no rule matches them.
    wait_for(
        "the policy's sets destroyed",
        Duration::from_secs(10),
        || {
            let sets = ns.exec(&["ipset", "list", "-n"]);
            (!sets.contains("twill-4l-") && !sets.contains("twill-4n-")).then_some(())
        },
    );
    assert_eq!(foreign(&ns, "iptables-save"), before4);
    assert_eq!(foreign(&ns, "ip6tables-save"), before6);

    // Enforcement turned off: everything of Twill's goes, nothing of anyone else's. The
    // runtime goes first: its drop waits for a resync under way and starts none after it, so
    // none can write back what `remove_all` removes.
    drop(e);
    drop(_guard);
    drop(rt);
    let tools = config(&ns, Tools::default()).tools;
    let (chains, sets) = remove_all(&tools, &[Family::V4, Family::V6]).expect("removed");
    assert!(chains >= 6 && sets >= 4, "{chains} chains, {sets} sets");
    for save in ["iptables-save", "ip6tables-save"] {
        let text = ns.exec(&[save]);
        assert!(
            !text.contains("TWILL") && !text.contains("twill:"),
            "{text}"
        );
    }
    assert!(!ns.exec(&["ipset", "list", "-n"]).contains("twill-"));
    assert_eq!(foreign(&ns, "iptables-save"), before4);
    assert_eq!(foreign(&ns, "ip6tables-save"), before6);
    assert_eq!(ns.exec(&["ipset", "list", "KUBE-X"]), sets_before);
}

#[test]
fn a_failing_restore_keeps_the_previous_rules_and_says_why() {
    let ns = Netns::new("pf");
    let rt = runtime();
    let _guard = rt.enter();
    let e = Enforcer::start(config(&ns, Tools::default()));
    in_force(&rt, &e, workloads(&format!("{PODS}{POLICY}")), 1);
    // This enforcer stops for good (a resync of its own would repair what the next one fails
    // to change, and hide the failure): its runtime's drop waits for a sync under way.
    drop(e);
    drop(_guard);
    drop(rt);
    let rt = runtime();
    let _guard = rt.enter();
    let in_force = ns.exec(&["iptables-save", "-t", "filter"]);
    let sets = ns.exec(&["ipset", "save"]);

    // The real iptables-restore, given one rule with a match this kernel does not have.
    let dir = TempDir::new("pf");
    let wrapper = dir.join("iptables-restore");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nsed 's/^COMMIT$/-A TWILL-FORWARD -m nosuchmatch -j RETURN\\nCOMMIT/' | iptables-restore \"$@\"\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    let tools = Tools {
        iptables_restore: wrapper.display().to_string(),
        ..Tools::default()
    };
    let e = Enforcer::start(config(&ns, tools));
    // A different policy (and one pod more): sets and chains would change.
    let changed = POLICY.replace("app: client", "app: other").replace(
        "name: web, namespace: x}\nspec",
        "name: web2, namespace: x}\nspec",
    );
    e.apply(workloads(&format!("{PODS}{changed}")), 2);
    let s = rt
        .block_on(e.wait_for(2, Duration::from_secs(20)))
        .expect("answered");
    let err = s.error.expect("the failure is reported");
    assert!(
        err.contains("iptables-restore") && err.contains("nosuchmatch"),
        "{err}"
    );
    assert_eq!(s.in_force, 0, "nothing was in force from this enforcer");
    assert_eq!(
        ns.exec(&["iptables-save", "-t", "filter"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        in_force
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        "the previous rules stay in force"
    );
    // Sets the previous rules use keep their members (new ones may have been created unused).
    let now = ns.exec(&["ipset", "save"]);
    for line in sets.lines() {
        assert!(now.contains(line), "{line} is gone:\n{now}");
    }
}

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn nat_rules(ns: &Netns, save: &str) -> Vec<String> {
    ns.exec(&[save, "-t", "nat"])
        .lines()
        .filter(|l| l.starts_with("-A TWILL-POSTROUTING"))
        .map(str::to_string)
        .collect()
}

#[test]
fn outgoing_nat_has_its_own_chain_first_in_postrouting_and_follows_the_settings() {
    let ns = Netns::new("pn");
    foreign_state(&ns);
    // Docker's masquerade and kube-proxy's, already in POSTROUTING.
    ns.exec(&["iptables", "-t", "nat", "-N", "KUBE-POSTROUTING"]);
    ns.exec(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-j",
        "KUBE-POSTROUTING",
    ]);
    ns.exec(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "172.17.0.0/16",
        "!",
        "-o",
        "docker0",
        "-j",
        "MASQUERADE",
    ]);
    let before4 = foreign(&ns, "iptables-save");
    let before6 = foreign(&ns, "ip6tables-save");
    let rt = runtime();
    let _guard = rt.enter();
    let mut cfg = config(&ns, Tools::default());
    let on = NatOutgoing {
        families: [Family::V4, Family::V6].into_iter().collect(),
        local: nets(&["10.244.1.0/24", "fd00:244:1::/64"]),
        pods: nets(&[
            "10.244.1.0/24",
            "10.244.2.0/24",
            "fd00:244:1::/64",
            "fd00:244:2::/64",
        ]),
        except: nets(&["192.168.0.0/16"]),
    };
    cfg.nat = on.clone();
    // What a previous run left of NetworkPolicy: a chain, its jump, a set.
    ns.exec(&["iptables", "-N", "TWILL-FORWARD"]);
    ns.exec(&[
        "iptables",
        "-I",
        "FORWARD",
        "1",
        "-m",
        "comment",
        "--comment",
        "twill:policy",
        "-j",
        "TWILL-FORWARD",
    ]);
    ns.exec(&["ipset", "create", "twill-4-ingress", "hash:ip"]);
    let left = ns.exec(&["iptables-save", "-t", "filter"]);
    let e = Enforcer::start(cfg);
    let wait_nat = |families: &[&str]| {
        wait_for("outgoing NAT in force", Duration::from_secs(20), || {
            let s = e.status();
            (s.error.is_none() && s.syncs > 0 && s.nat_families == families).then_some(s)
        })
    };
    // Before NetworkPolicy has a model, NAT is programmed and the filter table left alone.
    wait_nat(&["IPv4", "IPv6"]);
    assert_eq!(
        ns.exec(&["iptables-save", "-t", "filter"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        left.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
    );
    assert!(ns
        .exec(&["ipset", "list", "-n"])
        .contains("twill-4-ingress"));
    // NetworkPolicy off on this node: only the nat table is Twill's.
    e.policy_off();
    let s = wait_for(
        "policy's leftovers removed",
        Duration::from_secs(20),
        || {
            let s = e.status();
            let sets = ns.exec(&["ipset", "list", "-n"]);
            // The set goes in the batch's ipset restore, the chains in the iptables-restore
            // after it: both must be seen gone.
            let filter = ["iptables-save", "ip6tables-save"]
                .iter()
                .any(|save| ns.exec(&[save, "-t", "filter"]).contains("TWILL"));
            (s.error.is_none() && !sets.contains("twill-4-ingress") && !filter).then_some(s)
        },
    );
    assert!(!s.policy_on);
    for save in ["iptables-save", "ip6tables-save"] {
        let nat = ns.exec(&[save, "-t", "nat"]);
        let first = nat
            .lines()
            .find(|l| l.starts_with("-A POSTROUTING"))
            .unwrap_or_default();
        assert!(
            first.contains("twill:nat") && first.ends_with("-j TWILL-POSTROUTING"),
            "{save}: our jump first in POSTROUTING:\n{nat}"
        );
        let filter = ns.exec(&[save, "-t", "filter"]);
        assert!(!filter.contains("TWILL"), "policy is off:\n{filter}");
    }
    let v4 = nat_rules(&ns, "iptables-save");
    assert_eq!(v4.len(), 4, "{v4:?}");
    assert!(
        v4[0].contains("--match-set twill-4c-") && v4[0].ends_with("-j RETURN"),
        "{v4:?}"
    );
    assert!(v4[1].contains("--match-set twill-4x-"), "{v4:?}");
    assert!(v4[2].contains("--dst-type LOCAL"), "{v4:?}");
    assert!(
        v4[3].contains("-s 10.244.1.0/24") && v4[3].ends_with("-j MASQUERADE"),
        "{v4:?}"
    );
    // No IPv6 destination is listed, so no set of them.
    let v6 = nat_rules(&ns, "ip6tables-save");
    assert_eq!(v6.len(), 3, "{v6:?}");
    assert!(
        v6[2].contains("-s fd00:244:1::/64") && v6[2].ends_with("-j MASQUERADE"),
        "{v6:?}"
    );
    let sets = ns.exec(&["ipset", "save"]);
    assert!(
        sets.lines()
            .any(|l| l.starts_with("add twill-4c-") && l.ends_with(" 10.244.2.0/24")),
        "{sets}"
    );
    // Theirs are untouched and keep their order (ours is inserted before them).
    assert_eq!(foreign(&ns, "iptables-save"), before4);
    assert_eq!(foreign(&ns, "ip6tables-save"), before6);

    // A node joins: one set entry more, the rules as they were.
    let mut joined = on.clone();
    joined.pods.push("10.244.3.0/24".parse().unwrap());
    e.set_nat(joined.clone());
    wait_for(
        "the new pod CIDR in the set",
        Duration::from_secs(20),
        || {
            let sets = ns.exec(&["ipset", "save"]);
            sets.lines()
                .any(|l| l.starts_with("add twill-4c-") && l.ends_with(" 10.244.3.0/24"))
                .then_some(())
        },
    );
    assert_eq!(nat_rules(&ns, "iptables-save"), v4);

    // The jump deleted by hand comes back first.
    ns.exec(&["iptables", "-t", "nat", "-D", "POSTROUTING", "1"]);
    wait_for("the jump repaired", Duration::from_secs(10), || {
        let nat = ns.exec(&["iptables-save", "-t", "nat"]);
        nat.lines()
            .find(|l| l.starts_with("-A POSTROUTING"))
            .is_some_and(|l| l.contains("twill:nat"))
            .then_some(())
    });

    // Off for IPv6 only, then off: our chains, jumps and sets go; theirs stay.
    let mut v4_only = joined.clone();
    v4_only.families.remove(&Family::V6);
    e.set_nat(v4_only);
    wait_nat(&["IPv4"]);
    assert!(!ns.exec(&["ip6tables-save", "-t", "nat"]).contains("TWILL"));
    assert_eq!(nat_rules(&ns, "iptables-save"), v4);
    e.set_nat(NatOutgoing::default());
    wait_nat(&[]);
    wait_for("NAT's sets destroyed", Duration::from_secs(10), || {
        (!ns.exec(&["ipset", "list", "-n"]).contains("twill-")).then_some(())
    });
    for save in ["iptables-save", "ip6tables-save"] {
        let text = ns.exec(&[save]);
        assert!(
            !text.contains("TWILL") && !text.contains("twill:"),
            "{text}"
        );
    }
    assert_eq!(foreign(&ns, "iptables-save"), before4);
    assert_eq!(foreign(&ns, "ip6tables-save"), before6);
}
