//! Every YAML file under `deploy/` (the manifest and the examples) read into the Kubernetes
//! types it claims to be, and each Twill object checked against its CRD's schema.

use super::crd::{manifests, BGPConfiguration, BGPPeer};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::with::singleton_map_recursive::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Into `T` and back unchanged: a misspelt or misplaced field would be dropped on the way.
fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value, at: &str) {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "{at}: fields lost or changed on the way through the type"
    );
}

/// The structural subset of OpenAPI v3 that the CRDs use: type, properties (nothing unknown),
/// required, enum, minimum / maximum, items, pattern, and the `ipv4` / `ipv6` / `cidr` formats
/// the API server checks, alone or as `anyOf` alternatives. (The real API server applies the
/// same manifests in `agent/tests/k8s_lab.rs`; this is the quick check without one.)
fn check(schema: &Value, v: &Value, at: &str) {
    if v.is_null() && schema["nullable"] == true {
        return;
    }
    match schema["type"].as_str() {
        Some("object") => {
            let o = v
                .as_object()
                .unwrap_or_else(|| panic!("{at}: not an object"));
            let props = schema["properties"].as_object();
            for (k, val) in o {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check(s, val, &format!("{at}.{k}")),
                    None if !schema["additionalProperties"].is_null() => {
                        check(&schema["additionalProperties"], val, &format!("{at}.{k}"))
                    }
                    None => panic!("{at}.{k}: not in the schema"),
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                assert!(o.contains_key(r.as_str().unwrap()), "{at}.{r}: required");
            }
        }
        Some("array") => {
            for (i, x) in v
                .as_array()
                .unwrap_or_else(|| panic!("{at}: not an array"))
                .iter()
                .enumerate()
            {
                check(&schema["items"], x, &format!("{at}[{i}]"));
            }
        }
        Some("string") => {
            let s = v.as_str().unwrap_or_else(|| panic!("{at}: not a string"));
            if let Some(p) = schema["pattern"].as_str() {
                let re = regex::Regex::new(p).unwrap_or_else(|e| panic!("{at}: pattern {p}: {e}"));
                assert!(re.is_match(s), "{at}: {s} does not match {p}");
            }
            if let Some(f) = schema["format"].as_str() {
                assert!(format_ok(f, s), "{at}: {s} is not of format {f}");
            }
            if let Some(any) = schema["anyOf"].as_array() {
                assert!(
                    any.iter()
                        .any(|b| b["format"].as_str().is_none_or(|f| format_ok(f, s))),
                    "{at}: {s} matches none of {any:?}"
                );
            }
        }
        Some("integer") => {
            let n = v.as_f64().unwrap_or_else(|| panic!("{at}: not a number"));
            assert!(n.fract() == 0.0, "{at}: not an integer");
            if let Some(min) = schema["minimum"].as_f64() {
                assert!(n >= min, "{at}: {n} < {min}");
            }
            if let Some(max) = schema["maximum"].as_f64() {
                assert!(n <= max, "{at}: {n} > {max}");
            }
        }
        Some("boolean") => assert!(v.is_boolean(), "{at}: not a boolean"),
        _ => {}
    }
    if let Some(e) = schema["enum"].as_array() {
        assert!(e.contains(v), "{at}: {v} is not one of {e:?}");
    }
}

/// The formats the CRDs use, as the API server reads them. `format: ip` would be accepted here
/// and ignored there: refuse it.
fn format_ok(f: &str, s: &str) -> bool {
    match f {
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.parse::<ipnet::IpNet>().is_ok(),
        other => panic!("format {other}: not one the API server checks"),
    }
}

fn crd_schemas() -> Vec<(String, Value)> {
    serde_yaml_ng::Deserializer::from_str(&manifests())
        .map(|d| Value::deserialize_from(d))
        .map(|crd| {
            (
                crd["spec"]["names"]["kind"].as_str().unwrap().to_string(),
                crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
            )
        })
        .collect()
}

trait FromYaml {
    fn deserialize_from(d: serde_yaml_ng::Deserializer) -> Value;
}
impl FromYaml for Value {
    fn deserialize_from(d: serde_yaml_ng::Deserializer) -> Value {
        serde::Deserialize::deserialize(d).unwrap()
    }
}

fn check_file(path: &Path) -> Vec<String> {
    let schemas = crd_schemas();
    let mut kinds = Vec::new();
    for (i, d) in docs(path).iter().enumerate() {
        let kind = d["kind"].as_str().unwrap_or("(none)").to_string();
        let at = format!("{}[{i}] {kind}", path.display());
        match kind.as_str() {
            "Namespace" => round_trip::<Namespace>(d, &at),
            "ServiceAccount" => round_trip::<ServiceAccount>(d, &at),
            "ClusterRole" => round_trip::<ClusterRole>(d, &at),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(d, &at),
            "Role" => round_trip::<Role>(d, &at),
            "RoleBinding" => round_trip::<RoleBinding>(d, &at),
            "ConfigMap" => round_trip::<ConfigMap>(d, &at),
            "Secret" => round_trip::<Secret>(d, &at),
            "DaemonSet" => round_trip::<DaemonSet>(d, &at),
            "Pod" => round_trip::<Pod>(d, &at),
            "NetworkPolicy" => {
                round_trip::<NetworkPolicy>(d, &at);
                let p: NetworkPolicy = serde_json::from_value(d.clone()).unwrap();
                let built = crate::workloads::build(
                    &crate::workloads::Objects {
                        policies: &[p],
                        ..Default::default()
                    },
                    None,
                );
                assert!(built.problems.is_empty(), "{at}: {:?}", built.problems);
            }
            "CustomResourceDefinition" => round_trip::<CustomResourceDefinition>(d, &at),
            "BGPConfiguration" | "BGPPeer" => {
                let (_, schema) = schemas.iter().find(|(k, _)| *k == kind).unwrap();
                let mut body = d.clone();
                // apiVersion, kind and metadata are the API server's to check.
                for k in ["apiVersion", "kind", "metadata"] {
                    body.as_object_mut().unwrap().remove(k);
                }
                let mut s = schema.clone();
                s["properties"]
                    .as_object_mut()
                    .unwrap()
                    .retain(|k, _| k == "spec");
                check(&s, &body, &at);
                if kind == "BGPPeer" {
                    round_trip::<BGPPeer>(d, &at);
                } else {
                    round_trip::<BGPConfiguration>(d, &at);
                }
            }
            other => panic!("{at}: no type to check {other} against"),
        }
        kinds.push(kind);
    }
    kinds
}

#[test]
fn the_manifest_has_every_object_and_each_is_well_formed() {
    let kinds = check_file(&deploy().join("twill.yaml"));
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "DaemonSet",
        "CustomResourceDefinition",
    ] {
        assert!(
            kinds.iter().any(|x| x == k),
            "deploy/twill.yaml lacks a {k}"
        );
    }
}

#[test]
fn the_manifest_carries_the_crds_the_code_defines() {
    let file: Vec<Value> = docs(&deploy().join("twill.yaml"))
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    let code: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&manifests())
        .map(Value::deserialize_from)
        .collect();
    assert_eq!(
        file, code,
        "deploy/twill.yaml is stale: regenerate its CRDs with `twill crds`"
    );
}

#[test]
fn every_example_is_well_formed_and_valid_for_its_crd() {
    let mut n = 0;
    let mut dirs = vec![deploy().join("examples")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                n += check_file(&p).len();
            }
        }
    }
    assert!(n >= 17, "{n} example objects");
}

#[test]
fn the_schema_check_catches_mistakes() {
    let schemas = crd_schemas();
    let spec = |kind: &str| {
        schemas.iter().find(|(k, _)| k == kind).unwrap().1["properties"]["spec"].clone()
    };
    let (peer, config) = (spec("BGPPeer"), spec("BGPConfiguration"));
    check(
        &peer,
        &serde_json::json!({"peerIP": "10.1.0.1", "asNumber": 65000}),
        "ok",
    );
    for dual in [
        "10.244.0.0/16",
        "fd00:10:244::/56",
        "10.244.0.0/16,fd00:10:244::/56",
    ] {
        check(&config, &serde_json::json!({"podNetwork": dual}), dual);
    }
    for (schema, bad) in [
        (
            &peer,
            serde_json::json!({"peerIP": "10.1.0.1", "asNumber": 0}),
        ),
        (
            &peer,
            serde_json::json!({"peerIp": "10.1.0.1", "asNumber": 65000}),
        ),
        (&peer, serde_json::json!({"asNumber": 65000})),
        (
            &peer,
            serde_json::json!({"peerIP": "10.1.0.300", "asNumber": 65000}),
        ),
        (&config, serde_json::json!({"podNetwork": "10.244.0.0"})),
        (
            &config,
            serde_json::json!({"podNetwork": "10.244.0.0/16, fd00::/56"}),
        ),
    ] {
        let r = std::panic::catch_unwind(|| check(schema, &bad, "bad"));
        assert!(r.is_err(), "{bad} passed");
    }
}
