//! File mode's workloads: one YAML file of Kubernetes objects (`Namespace`, `Pod`,
//! `NetworkPolicy`, and `List`s of them), as `kubectl get -o yaml` prints them or as a lab
//! writes them; documents separated by `---`. Objects of other kinds are refused by name, so a
//! typo does not silently drop a policy.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use std::path::Path;

/// The objects read from a file.
#[derive(Clone, Debug, Default)]
pub struct FileObjects {
    pub namespaces: Vec<core::Namespace>,
    pub pods: Vec<core::Pod>,
    pub policies: Vec<net::NetworkPolicy>,
}

impl FileObjects {
    pub fn objects(&self) -> super::Objects<'_> {
        super::Objects {
            namespaces: &self.namespaces,
            pods: &self.pods,
            policies: &self.policies,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {doc}: {reason}")]
    Document {
        path: String,
        doc: usize,
        reason: String,
    },
}

pub fn read(path: &Path) -> Result<FileObjects, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|(doc, reason)| FileError::Document {
        path: path.display().to_string(),
        doc,
        reason,
    })
}

/// Parse the text; an error is the (0-based) document index and why.
pub fn parse(text: &str) -> Result<FileObjects, (usize, String)> {
    use serde::Deserialize;
    let mut out = FileObjects::default();
    for (doc, d) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(d).map_err(|e| (doc, e.to_string()))?;
        if value.is_null() {
            continue;
        }
        add(&mut out, value).map_err(|e| (doc, e))?;
    }
    Ok(out)
}

fn add(out: &mut FileObjects, value: serde_json::Value) -> Result<(), String> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or("has no kind")?
        .to_string();
    let name = || {
        value
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .to_string()
    };
    let err = |e: serde_json::Error| format!("{kind} {}: {e}", name());
    match kind.as_str() {
        "Namespace" => out
            .namespaces
            .push(serde_json::from_value(value.clone()).map_err(err)?),
        "Pod" => out
            .pods
            .push(serde_json::from_value(value.clone()).map_err(err)?),
        "NetworkPolicy" => out
            .policies
            .push(serde_json::from_value(value.clone()).map_err(err)?),
        "List" => {
            for item in value
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default()
            {
                add(out, item)?;
            }
        }
        other => {
            return Err(format!(
                "kind {other} is not Namespace, Pod, NetworkPolicy or List"
            ))
        }
    }
    for p in &mut out.policies {
        if p.metadata.namespace.is_none() {
            p.metadata.namespace = Some("default".into());
        }
    }
    for p in &mut out.pods {
        if p.metadata.namespace.is_none() {
            p.metadata.namespace = Some("default".into());
        }
    }
    Ok(())
}
