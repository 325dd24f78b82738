//! The JSON shapes gateway-ext reads and writes: the OpenFaaS provider API
//! types, from [`farm_openfaas`] (one definition shared with the local
//! provider), plus the AlertManager payload the gateway takes on
//! `POST /system/alert`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use farm_openfaas::{
    DeleteFunctionRequest, FunctionDeployment, FunctionResources, FunctionStatus,
    ScaleServiceRequest,
};

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
