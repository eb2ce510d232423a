//! Bad objects are refused as the API server refuses them, named by kind, object, field and
//! value; a policy that fails keeps its previous version; the API's defaults are applied.

use super::{build, file, PortRef, Workloads};

fn built(yaml: &str, previous: Option<&Workloads>) -> (Workloads, Vec<String>) {
    let o = file::parse(yaml).expect("parses");
    let b = build(&o.objects(), previous);
    (
        b.workloads,
        b.problems.iter().map(|p| p.to_string()).collect(),
    )
}

fn policy(spec: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec: {spec}\n")
}

#[test]
fn bad_policies_are_refused_naming_object_field_and_value() {
    for (spec, want) in [
        (
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.300/8}}]}]}",
            "NetworkPolicy x/p: spec.ingress[0].from[0].ipBlock.cidr: 10.0.0.300/8 is not a CIDR",
        ),
        (
            "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.2.0.0/16, except: [10.1.0.0/16]}}]}]}",
            "NetworkPolicy x/p: spec.egress[0].to[0].ipBlock.except[0]: 10.1.0.0/16 is not a strict subset of cidr 10.2.0.0/16",
        ),
        (
            "{podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}",
            "NetworkPolicy x/p: spec.ingress[0].ports[0].protocol: ICMP is not one of TCP, UDP, SCTP",
        ),
        (
            "{podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}",
            "NetworkPolicy x/p: spec.ingress[0].ports[0].endPort: 80 is below port 90",
        ),
        (
            "{podSelector: {}, ingress: [{ports: [{port: http, endPort: 80}]}]}",
            "NetworkPolicy x/p: spec.ingress[0].ports[0].endPort: 80 needs a numeric port",
        ),
        (
            "{podSelector: {}, ingress: [{ports: [{port: Not_A_Name}]}]}",
            "NetworkPolicy x/p: spec.ingress[0].ports[0].port: Not_A_Name is not a port number or a port name (IANA_SVC_NAME)",
        ),
        (
            "{podSelector: {}, ingress: [{from: [{}]}]}",
            "NetworkPolicy x/p: spec.ingress[0].from[0]: {} must have a podSelector, a namespaceSelector or an ipBlock",
        ),
        (
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
            "NetworkPolicy x/p: spec.ingress[0].from[0].ipBlock: ipBlock cannot be combined with podSelector or namespaceSelector",
        ),
        (
            "{podSelector: {matchExpressions: [{key: a, operator: In}]}}",
            "NetworkPolicy x/p: spec.podSelector.matchExpressions[0].values: [] must not be empty for In",
        ),
        (
            "{podSelector: {}, ingress: [{ports: [{port: \"80\"}]}]}",
            "NetworkPolicy x/p: spec.ingress[0].ports[0].port: 80 is not a port number or a port name (IANA_SVC_NAME)",
        ),
        (
            "{podSelector: {}, policyTypes: [Both]}",
            "NetworkPolicy x/p: spec.policyTypes[0]: Both is not Ingress or Egress",
        ),
    ] {
        let (w, problems) = built(&policy(spec), None);
        assert_eq!(problems, [want], "{spec}");
        assert!(w.policies.is_empty(), "{spec}: left out");
    }
}

#[test]
fn a_refused_policy_keeps_its_previous_version() {
    let (good, p) = built(
        &policy("{podSelector: {}, ingress: [{ports: [{port: 80}]}]}"),
        None,
    );
    assert!(p.is_empty());
    let (now, p) = built(
        &policy("{podSelector: {}, ingress: [{ports: [{port: 0}]}]}"),
        Some(&good),
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(now.policies, good.policies, "the version in force stays");
}

#[test]
fn api_defaults_are_applied() {
    let (w, p) = built(
        &format!(
            "{}---\n{}",
            policy("{podSelector: {}, egress: [{ports: [{port: 53, protocol: UDP}]}]}"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"
        ),
        None,
    );
    assert!(p.is_empty(), "{p:?}");
    let pol = &w.policies[0];
    assert!(pol.isolates_ingress && pol.isolates_egress);
    assert_eq!(
        pol.egress[0].ports[0].port,
        Some(PortRef::Range { start: 53, end: 53 })
    );
    assert_eq!(
        w.namespaces["x"]
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("x")
    );
}
