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
    /// Check `raw`'s operators, naming `field` on error. Values are taken as given, as the
    /// view always did: `In` with none matches nothing, `NotIn` with none everything, and
    /// `Exists` / `DoesNotExist` ignore them.
    pub fn new(raw: &LabelSelector, field: &str) -> Result<Selector, ViewError> {
        for (k, r) in raw.match_expressions.iter().enumerate() {
            if !matches!(
                r.operator.as_str(),
                "In" | "NotIn" | "Exists" | "DoesNotExist"
            ) {
                return Err(ViewError {
                    field: format!("{field}.matchExpressions[{k}].operator"),
                    value: r.operator.clone(),
                    reason: "is not one of In, NotIn, Exists, DoesNotExist".into(),
                });
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
    fn bad_operators_name_the_field_and_empty_values_keep_their_old_meaning() {
        assert_eq!(
            sel("matchExpressions: [{key: rack, operator: Near}]").unwrap_err(),
            "nodeSelector.matchExpressions[0].operator: Near is not one of In, NotIn, Exists, DoesNotExist"
        );
        let labels: BTreeMap<String, String> = [("rack".to_string(), "a".to_string())].into();
        let m = |yaml: &str| sel(yaml).unwrap().matches(&labels);
        assert!(!m("matchExpressions: [{key: rack, operator: In}]"));
        assert!(m("matchExpressions: [{key: rack, operator: NotIn}]"));
        assert!(m(
            "matchExpressions: [{key: rack, operator: Exists, values: [b]}]"
        ));
    }
}
