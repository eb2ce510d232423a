//! Label selectors: the YAML / CRD form ([`LabelSelector`], which carries the schema) and the
//! compiled form ([`Selector`]) whose matching is kube-core's, so node selectors here and
//! NetworkPolicy's pod and namespace selectors later share Kubernetes' own semantics.

use crate::view::ViewError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kube::core::SelectorExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Kubernetes LabelSelector: `matchLabels` and `matchExpressions` (In, NotIn, Exists,
/// DoesNotExist), all of which must hold.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LabelRequirement {
    pub key: String,
    #[schemars(extend("enum" = ["In", "NotIn", "Exists", "DoesNotExist"]))]
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A validated selector, ready to match label sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(kube::core::Selector);

impl Selector {
    /// Check `raw` as the API server does (operator names; values required by In / NotIn and
    /// forbidden with Exists / DoesNotExist), naming `field` on error.
    pub fn new(raw: &LabelSelector, field: &str) -> Result<Selector, ViewError> {
        for (k, r) in raw.match_expressions.iter().enumerate() {
            let at = format!("{field}.matchExpressions[{k}]");
            let bad = |f: &str, v: &str, why: &str| ViewError {
                field: format!("{at}.{f}"),
                value: v.to_string(),
                reason: why.to_string(),
            };
            match (r.operator.as_str(), r.values.is_empty()) {
                ("In" | "NotIn", true) => {
                    return Err(bad(
                        "values",
                        "[]",
                        "must be given with operator In or NotIn",
                    ))
                }
                ("Exists" | "DoesNotExist", false) => {
                    return Err(bad(
                        "values",
                        &format!("[{}]", r.values.join(", ")),
                        "must be empty with operator Exists or DoesNotExist",
                    ))
                }
                ("In" | "NotIn" | "Exists" | "DoesNotExist", _) => {}
                (op, _) => {
                    return Err(bad(
                        "operator",
                        op,
                        "is not one of In, NotIn, Exists, DoesNotExist",
                    ))
                }
            }
        }
        let k8s = meta::LabelSelector {
            match_labels: Some(raw.match_labels.clone()),
            match_expressions: Some(
                raw.match_expressions
                    .iter()
                    .map(|r| meta::LabelSelectorRequirement {
                        key: r.key.clone(),
                        operator: r.operator.clone(),
                        values: Some(r.values.clone()),
                    })
                    .collect(),
            ),
        };
        kube::core::Selector::try_from(k8s)
            .map(Selector)
            .map_err(|e| ViewError {
                field: field.to_string(),
                value: String::new(),
                reason: e.to_string(),
            })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.matches(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(yaml: &str) -> Result<Selector, String> {
        let raw = serde_yaml_ng::from_str::<LabelSelector>(yaml).unwrap();
        Selector::new(&raw, "nodeSelector").map_err(|e| e.to_string())
    }

    #[test]
    fn label_selectors_match_as_kubernetes_does() {
        let labels: BTreeMap<String, String> = [("rack".to_string(), "a".to_string())].into();
        let m = |yaml: &str| sel(yaml).unwrap().matches(&labels);
        assert!(m("matchLabels: {rack: a}"));
        assert!(!m("matchLabels: {rack: b}"));
        assert!(m(
            "matchExpressions: [{key: rack, operator: In, values: [a, b]}]"
        ));
        assert!(!m(
            "matchExpressions: [{key: rack, operator: NotIn, values: [a]}]"
        ));
        assert!(m(
            "matchExpressions: [{key: zone, operator: NotIn, values: [x]}]"
        ));
        assert!(m("matchExpressions: [{key: zone, operator: DoesNotExist}]"));
        assert!(!m("matchExpressions: [{key: zone, operator: Exists}]"));
        assert!(!m(
            "{matchLabels: {rack: a}, matchExpressions: [{key: zone, operator: Exists}]}"
        ));
        assert!(m("{}"));
    }

    #[test]
    fn bad_selectors_name_the_field() {
        assert_eq!(
            sel("matchExpressions: [{key: rack, operator: Near}]").unwrap_err(),
            "nodeSelector.matchExpressions[0].operator: Near is not one of In, NotIn, Exists, DoesNotExist"
        );
        assert_eq!(
            sel("matchExpressions: [{key: rack, operator: In}]").unwrap_err(),
            "nodeSelector.matchExpressions[0].values: [] must be given with operator In or NotIn"
        );
        assert_eq!(
            sel("matchExpressions: [{key: rack, operator: Exists, values: [a]}]").unwrap_err(),
            "nodeSelector.matchExpressions[0].values: [a] must be empty with operator Exists or DoesNotExist"
        );
    }
}
