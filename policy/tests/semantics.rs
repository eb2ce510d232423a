//! One test per point of networking.k8s.io/v1's semantics, each decided twice — by the model
//! (`eval`) and by the compiled rules of both ends' nodes walked like the kernel would
//! (`simulate`) — and the two must agree. Then the render and plan steps: only Twill's chains
//! and sets, a second plan empty, membership swapped through a temporary set, leftovers removed.

use cluster::workloads::{build, file, Protocol, Workloads};
use policy::eval::{evaluate, End};
use policy::observed::{parse_ipset, parse_iptables, Observed};
use policy::plan::{believed, plan};
use policy::render::rule_line;
use policy::simulate::{passes, Packet};
use policy::{compile, Family};
use std::net::IpAddr;

/// x (team=a): web (app=web; http 8080/TCP, dns 53/UDP, sctp-x 7000/SCTP), db (app=db; http
/// 9090/TCP). y (team=b): client (app=client), web (app=web; http 8080/TCP). All dual-stack;
/// y/client on n2, the rest on n1.
const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web, tier: front}}
spec:
  nodeName: n1
  containers:
    - {name: c, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}, {name: sctp-x, containerPort: 7000, protocol: SCTP}]}
status: {podIPs: [{ip: 10.0.1.1}, {ip: "fd00::1:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: x, labels: {app: db}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 9090}]}]}
status: {podIPs: [{ip: 10.0.1.2}, {ip: "fd00::1:2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: y, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIPs: [{ip: 10.0.2.1}, {ip: "fd00::2:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: y, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIPs: [{ip: 10.0.1.3}, {ip: "fd00::1:3"}]}
"#;

fn world(policies: &str) -> Workloads {
    let objects = file::parse(&format!("{PODS}\n---\n{policies}")).expect("parses");
    let built = build(&objects.objects(), None);
    assert!(built.problems.is_empty(), "{:?}", built.problems);
    built.workloads
}

/// Decided by the model and by the compiled rules; they must agree.
fn allowed(
    w: &Workloads,
    from: &str,
    to: &str,
    proto: Protocol,
    port: u16,
    family: Family,
) -> bool {
    let end = |s: &str| -> (End<'_>, Option<String>) {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return (End::Addr(ip), None);
        }
        let (ns, name) = s.split_once('/').unwrap();
        let p = w.pod(ns, name).unwrap();
        let ip = *p.ips.iter().find(|ip| Family::of(ip) == family).unwrap();
        (End::Pod(p, ip), p.node.clone())
    };
    let ((src, sn), (dst, dn)) = (end(from), end(to));
    let ip = |e: &End| match e {
        End::Pod(_, ip) | End::Addr(ip) => *ip,
    };
    let model = evaluate(w, src, dst, proto, port).allowed();
    let pkt = Packet {
        src: ip(&src),
        dst: ip(&dst),
        protocol: proto,
        port,
    };
    let mut rules = true;
    for node in [sn, dn]
        .into_iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
    {
        rules &= passes(&compile(w, &node, family), &pkt);
    }
    assert_eq!(
        model, rules,
        "{from} → {to} {port}/{proto}: model and rules disagree"
    );
    model
}

fn tcp(w: &Workloads, from: &str, to: &str, port: u16) -> bool {
    allowed(w, from, to, Protocol::Tcp, port, Family::V4)
}

const DENY_X: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n";

#[test]
fn pods_no_policy_selects_are_not_isolated() {
    let w = world("");
    assert!(tcp(&w, "y/client", "x/web", 80));
    assert!(tcp(&w, "x/web", "y/client", 80));
    // A policy in x isolates only x's pods.
    let w = world(DENY_X);
    assert!(!tcp(&w, "y/client", "x/web", 80));
    assert!(
        tcp(&w, "x/web", "y/web", 80),
        "y/web is not isolated; x is isolated for ingress only"
    );
}

#[test]
fn pod_selector_picks_pods_of_the_policy_namespace_only() {
    let w = world("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {matchLabels: {app: web}}}\n");
    assert!(!tcp(&w, "y/client", "x/web", 80));
    assert!(tcp(&w, "y/client", "x/db", 80), "x/db is not selected");
    assert!(
        tcp(&w, "y/client", "y/web", 80),
        "y/web has app=web but lives in y"
    );
}

#[test]
fn policy_types_default_to_ingress_and_to_egress_only_with_egress_rules() {
    // No policyTypes, no egress rules: ingress only.
    let w = world(DENY_X);
    assert!(tcp(&w, "x/web", "y/client", 80));
    // No policyTypes, an egress rule: egress too (and ingress, always).
    let w = world("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  egress: [{to: [{namespaceSelector: {}}]}]\n");
    assert!(tcp(&w, "x/web", "y/client", 80), "to any pod");
    assert!(
        !allowed(&w, "x/web", "192.0.2.1", Protocol::Tcp, 80, Family::V4),
        "not a pod"
    );
    assert!(
        !tcp(&w, "x/web", "x/db", 80),
        "x/db is isolated for ingress by the same policy"
    );
    // `egress: []` without policyTypes is not an egress rule: egress stays open.
    let w = world("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, egress: []}\n");
    assert!(tcp(&w, "x/web", "y/client", 80));
    // Egress alone: ingress stays open.
    let w = world("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, policyTypes: [Egress]}\n");
    assert!(tcp(&w, "y/client", "x/web", 80));
    assert!(!tcp(&w, "x/web", "y/client", 80));
}

#[test]
fn absent_and_empty_peer_and_port_lists_match_everything_an_empty_rule_list_nothing() {
    for rule in [
        "[{}]",
        "[{from: []}]",
        "[{ports: []}]",
        "[{from: [], ports: []}]",
    ] {
        let w = world(&format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec: {{podSelector: {{}}, ingress: {rule}}}\n"));
        assert!(tcp(&w, "y/client", "x/web", 443), "{rule}");
        assert!(
            allowed(&w, "10.9.9.9", "x/web", Protocol::Udp, 5, Family::V4),
            "{rule}: any source"
        );
    }
    let w = world("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: []}\n");
    assert!(!tcp(&w, "y/client", "x/web", 443));
}

#[test]
fn peers_namespace_and_pod_selectors_and_is_both_or_is_several_empty_is_all() {
    let pol = |from: &str| {
        world(&format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec: {{podSelector: {{matchLabels: {{app: db}}}}, ingress: [{{from: {from}}}]}}\n"))
    };
    // podSelector alone: the policy's namespace.
    let w = pol("[{podSelector: {matchLabels: {app: web}}}]");
    assert!(tcp(&w, "x/web", "x/db", 1));
    assert!(!tcp(&w, "y/web", "x/db", 1));
    // namespaceSelector alone: every pod there.
    let w = pol("[{namespaceSelector: {matchLabels: {team: b}}}]");
    assert!(tcp(&w, "y/client", "x/db", 1));
    assert!(!tcp(&w, "x/web", "x/db", 1));
    // Both in one peer: AND.
    let w = pol(
        "[{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: web}}}]",
    );
    assert!(tcp(&w, "y/web", "x/db", 1));
    assert!(!tcp(&w, "y/client", "x/db", 1));
    assert!(!tcp(&w, "x/web", "x/db", 1));
    // Two peers: OR.
    let w = pol(
        "[{namespaceSelector: {matchLabels: {team: b}}}, {podSelector: {matchLabels: {app: web}}}]",
    );
    assert!(tcp(&w, "y/client", "x/db", 1) && tcp(&w, "x/web", "x/db", 1));
    // Empty selectors: {} namespaces = all namespaces; {} pods = all pods of the namespace.
    let w = pol("[{namespaceSelector: {}}]");
    assert!(tcp(&w, "y/client", "x/db", 1) && tcp(&w, "x/web", "x/db", 1));
    let w = pol("[{podSelector: {}}]");
    assert!(tcp(&w, "x/web", "x/db", 1) && !tcp(&w, "y/client", "x/db", 1));
}

#[test]
fn match_expressions_in_notin_exists_doesnotexist() {
    let pol = |expr: &str| {
        world(&format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec: {{podSelector: {{matchLabels: {{app: db}}}}, ingress: [{{from: [{{namespaceSelector: {{}}, podSelector: {{matchExpressions: [{expr}]}}}}]}}]}}\n"))
    };
    let w = pol("{key: app, operator: In, values: [web, client]}");
    assert!(tcp(&w, "x/web", "x/db", 1) && tcp(&w, "y/client", "x/db", 1));
    let w = pol("{key: app, operator: NotIn, values: [web]}");
    assert!(!tcp(&w, "x/web", "x/db", 1) && tcp(&w, "y/client", "x/db", 1));
    let w = pol("{key: tier, operator: Exists}");
    assert!(tcp(&w, "x/web", "x/db", 1) && !tcp(&w, "y/web", "x/db", 1));
    let w = pol("{key: tier, operator: DoesNotExist}");
    assert!(!tcp(&w, "x/web", "x/db", 1) && tcp(&w, "y/web", "x/db", 1));
}

#[test]
fn ip_blocks_with_except_match_pod_addresses_too_and_only_their_family() {
    let w = world("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {matchLabels: {app: db}}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.2.0/24]}}, {ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]}]}\n");
    assert!(
        tcp(&w, "x/web", "x/db", 1),
        "a pod address inside the block"
    );
    assert!(!tcp(&w, "y/client", "x/db", 1), "a pod address in except");
    assert!(
        allowed(&w, "192.0.2.1", "x/db", Protocol::Tcp, 1, Family::V4),
        "0.0.0.0/0 held as two halves"
    );
    assert!(!allowed(
        &w,
        "10.200.0.1",
        "x/db",
        Protocol::Tcp,
        1,
        Family::V4
    ));
    // IPv4 blocks say nothing for IPv6: the pod is isolated there and nothing is allowed.
    assert!(!allowed(&w, "x/web", "x/db", Protocol::Tcp, 1, Family::V6));
}

#[test]
fn ports_by_number_range_and_name_with_protocols() {
    let pol = |ports: &str| {
        world(&format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec: {{podSelector: {{}}, ingress: [{{ports: {ports}}}]}}\n"))
    };
    // By number; TCP when the protocol is absent.
    let w = pol("[{port: 80}]");
    assert!(tcp(&w, "y/client", "x/web", 80) && !tcp(&w, "y/client", "x/web", 81));
    assert!(!allowed(
        &w,
        "y/client",
        "x/web",
        Protocol::Udp,
        80,
        Family::V4
    ));
    // A range with endPort.
    let w = pol("[{port: 8000, endPort: 8100}]");
    assert!(tcp(&w, "y/client", "x/web", 8000) && tcp(&w, "y/client", "x/web", 8100));
    assert!(!tcp(&w, "y/client", "x/web", 8101));
    // A protocol alone: all its ports.
    let w = pol("[{protocol: UDP}]");
    assert!(allowed(
        &w,
        "y/client",
        "x/web",
        Protocol::Udp,
        9,
        Family::V4
    ));
    assert!(!tcp(&w, "y/client", "x/web", 9));
    // SCTP.
    let w = pol("[{protocol: SCTP, port: 7000}]");
    assert!(allowed(
        &w,
        "y/client",
        "x/web",
        Protocol::Sctp,
        7000,
        Family::V4
    ));
    assert!(!tcp(&w, "y/client", "x/web", 7000));
    // By name: resolved on each destination pod, name and protocol both.
    let w = pol("[{port: http}]");
    assert!(tcp(&w, "y/client", "x/web", 8080) && tcp(&w, "y/client", "x/db", 9090));
    assert!(
        !tcp(&w, "y/client", "x/web", 9090),
        "9090 is http on db, not on web"
    );
    let w = pol("[{port: dns}]");
    assert!(
        !allowed(&w, "y/client", "x/web", Protocol::Udp, 53, Family::V4),
        "dns is UDP; the rule says TCP"
    );
    let w = pol("[{port: dns, protocol: UDP}]");
    assert!(allowed(
        &w,
        "y/client",
        "x/web",
        Protocol::Udp,
        53,
        Family::V4
    ));
    assert!(
        allowed(&w, "y/client", "x/web", Protocol::Udp, 53, Family::V6),
        "IPv6 too"
    );
}

#[test]
fn named_ports_on_egress_resolve_on_the_destination_pods() {
    let w = world("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: y}\nspec: {podSelector: {matchLabels: {app: client}}, policyTypes: [Egress], egress: [{ports: [{port: http}]}]}\n");
    assert!(tcp(&w, "y/client", "x/web", 8080) && tcp(&w, "y/client", "x/db", 9090));
    assert!(!tcp(&w, "y/client", "x/web", 9090));
    assert!(
        !allowed(&w, "y/client", "192.0.2.1", Protocol::Tcp, 8080, Family::V4),
        "no pod there: no named port"
    );
}

#[test]
fn several_policies_are_a_union_and_both_ends_must_allow() {
    let allow = |name: &str, app: &str| {
        format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: x}}\nspec: {{podSelector: {{matchLabels: {{app: db}}}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{app: {app}}}}}}}]}}]}}\n")
    };
    let w = world(&format!(
        "{DENY_X}{}{}",
        allow("a", "web"),
        allow("b", "nothing")
    ));
    assert!(tcp(&w, "x/web", "x/db", 1), "one of the policies allows it");
    // The source's egress closed: the destination's ingress allowing is not enough.
    let w = world(&format!("{}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: out, namespace: x}}\nspec: {{podSelector: {{matchLabels: {{app: web}}}}, policyTypes: [Egress]}}\n", allow("a", "web")));
    assert!(!tcp(&w, "x/web", "x/db", 1));
}

#[test]
fn replies_pass_first_and_only_forward_is_hooked() {
    let w = world(DENY_X);
    let rs = compile(&w, "n1", Family::V4);
    let forward = &rs.chains["TWILL-FORWARD"];
    assert!(rule_line("TWILL-FORWARD", &forward[0]).contains("--ctstate RELATED,ESTABLISHED"));
    assert_eq!(forward[0].target, policy::ruleset::Target::Return);
    // Node ⇄ own pods is INPUT / OUTPUT: Twill writes nothing there, so it is always allowed.
    let p = plan(&rs, &Observed::default());
    assert!(p
        .rules
        .contains("-I FORWARD 1 -m comment --comment twill:policy -j TWILL-FORWARD"));
    for l in p
        .rules
        .lines()
        .filter(|l| l.starts_with("-A ") || l.starts_with("-I "))
    {
        let chain = l.split_whitespace().nth(1).unwrap();
        assert!(chain.starts_with("TWILL-") || chain == "FORWARD", "{l}");
    }
}

/// What the kernel would print back after applying `p` on top of `o` (iptables-save and ipset
/// save spellings of our own rules and sets).
fn applied(desired: &policy::Ruleset) -> Observed {
    let p = plan(desired, &Observed::default());
    let mut save = String::from("*filter\n:FORWARD ACCEPT [0:0]\n");
    save.push_str(
        &p.rules
            .lines()
            .filter(|l| l.starts_with(':'))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    save.push_str("-A FORWARD -m comment --comment \"twill:policy\" -j TWILL-FORWARD\n");
    for l in p.rules.lines().filter(|l| l.starts_with("-A ")) {
        save.push_str(&format!("[0:0] {l}\n"));
    }
    save.push_str("COMMIT\n");
    let mut o = Observed::default();
    parse_iptables(&save, &mut o);
    let sets: String = p
        .sets
        .lines()
        .map(|l| l.replace(" -exist", ""))
        .map(|l| format!("{l}\n"))
        .collect();
    parse_ipset(&sets, &mut o);
    o
}

#[test]
fn a_second_plan_is_empty_membership_changes_never_empty_a_set_and_leftovers_go() {
    let w = world(DENY_X);
    let rs = compile(&w, "n1", Family::V4);
    let o = applied(&rs);
    assert!(plan(&rs, &o).is_empty(), "{:?}", plan(&rs, &o));
    // A new pod in x on n1: only set members change, through a temporary set and a swap.
    let mut w2 = w.clone();
    let mut pod = w2.pod("x", "db").unwrap().clone();
    pod.name = "db2".into();
    pod.ips = vec!["10.0.1.9".parse().unwrap()];
    w2.pods.push(pod);
    w2.sort_pods();
    let p = plan(&compile(&w2, "n1", Family::V4), &o);
    assert!(p.rules.is_empty(), "no rule changes for a pod: {}", p.rules);
    assert!(
        p.sets.contains("add twill-4-ingress 10.0.1.9 -exist"),
        "in place: {}",
        p.sets
    );
    assert!(!p.sets.contains("swap"), "{}", p.sets);
    // Many new pods: the sets are built anew and swapped in whole.
    let mut w3 = w.clone();
    for i in 0..100 {
        let mut pod = w3.pod("x", "db").unwrap().clone();
        pod.name = format!("db-{i}");
        pod.ips = vec![format!("10.0.3.{i}").parse().unwrap()];
        w3.pods.push(pod);
    }
    w3.sort_pods();
    let p = plan(&compile(&w3, "n1", Family::V4), &o);
    assert!(
        p.sets.contains("swap twill-t4-ingress twill-4-ingress"),
        "{}",
        p.sets
    );
    assert!(
        p.sets.contains("add twill-t4-ingress 10.0.3.99"),
        "{}",
        p.sets
    );
    // The policy gone: its chains go now; its set, which the old rules still match, goes with
    // the next batch (planned against the belief); other families' sets are not touched.
    let mut o6 = o.clone();
    o6.sets.insert("twill-6-ingress".into(), Default::default());
    let none = compile(&world(""), "n1", Family::V4);
    let p = plan(&none, &o6);
    assert!(p.rules.contains("-X TWILL-PI-"), "{}", p.rules);
    assert!(
        !p.sets.contains("destroy twill-4l-"),
        "still matched: {}",
        p.sets
    );
    assert!(
        p.unreferenced.iter().any(|s| s.starts_with("twill-4l-")),
        "{p:?}"
    );
    assert!(!p.sets.contains("twill-6-"), "{}", p.sets);
    let next = plan(&none, &believed(&none, &p));
    assert!(next.sets.contains("destroy twill-4l-"), "{}", next.sets);
    assert!(next.rules.is_empty(), "{}", next.rules);
    assert!(plan(&none, &believed(&none, &next)).is_empty());
}
