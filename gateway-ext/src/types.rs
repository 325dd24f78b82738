//! The JSON shapes of the OpenFaaS provider API that gateway-ext reads and
//! writes (faas-provider `types`, camelCase), plus the AlertManager payload.
//!
//! Only the fields gateway-ext needs are typed; `limits` and `requests` are
//! kept as raw JSON so a shard is cloned from its worker without losing what
//! a newer provider may put there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `GET /system/functions` lists and `GET /system/function/{name}` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// Name of the function.
    pub name: String,
    /// Image reference as deployed.
    #[serde(default)]
    pub image: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Command line override (`fprocess`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    /// Placement constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Secret names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Labels (`com.openfaas.scale.min`, ...). `null` in JSON reads as empty.
    #[serde(default, deserialize_with = "null_map")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (`com.rust-farm.farm`, ...).
    #[serde(default, deserialize_with = "null_map")]
    pub annotations: BTreeMap<String, String>,
    /// Resource limits, as the provider wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<serde_json::Value>,
    /// Resource requests, as the provider wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<serde_json::Value>,
    /// Replicas that exist (starting or ready).
    #[serde(default)]
    pub replicas: u64,
    /// Replicas ready to take work.
    #[serde(default)]
    pub available_replicas: u64,
}

fn null_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// A request to create a function (`POST /system/functions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeployment {
    /// Name of the function.
    pub service: String,
    /// Image reference.
    pub image: String,
    /// Namespace; empty = default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Command line override.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    /// Placement constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Secret names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<serde_json::Value>,
    /// Resource requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<serde_json::Value>,
}

/// Body of `POST /system/scale-function/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleServiceRequest {
    /// Function name.
    #[serde(default)]
    pub service_name: String,
    /// Desired replica count.
    pub replicas: u64,
    /// Namespace; empty = default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Body of `DELETE /system/functions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    /// Function to delete.
    pub function_name: String,
}

/// The AlertManager webhook payload the OpenFaaS gateway parses on
/// `POST /system/alert`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    /// `firing` or `resolved` for the whole group.
    #[serde(default)]
    pub status: String,
    /// The receiver that sent it.
    #[serde(default)]
    pub receiver: String,
    /// The alerts of the group.
    #[serde(default)]
    pub alerts: Vec<Alert>,
    /// Every other field, kept so a forwarded part reads as the original.
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// One alert of an [`AlertPayload`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: String,
    /// Labels; `function_name` names the function.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Every other field (annotations, startsAt, ...).
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

impl Alert {
    /// The `function_name` label (the gateway's alert rule sets it).
    pub fn function_name(&self) -> Option<&str> {
        self.labels
            .get("function_name")
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether the alert is firing (anything else counts as resolved, as in the gateway).
    pub fn firing(&self) -> bool {
        self.status == "firing"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_status_reads_null_labels() {
        let s: FunctionStatus = serde_json::from_str(
            r#"{"name":"w","image":"i","labels":null,"replicas":2,"availableReplicas":1}"#,
        )
        .unwrap();
        assert!(s.labels.is_empty());
        assert_eq!((s.replicas, s.available_replicas), (2, 1));
    }

    #[test]
    fn alert_payload_keeps_unknown_fields() {
        let p: AlertPayload = serde_json::from_str(
            r#"{"status":"firing","receiver":"r","groupKey":"g","alerts":[{"status":"firing","labels":{"function_name":"f"},"startsAt":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(p.alerts[0].function_name(), Some("f"));
        assert!(p.alerts[0].firing());
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["groupKey"], "g");
        assert_eq!(back["alerts"][0]["startsAt"], "x");
    }
}
