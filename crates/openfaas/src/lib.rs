//! `farm-openfaas`: the JSON shapes of the OpenFaaS provider API, field for
//! field as faas-provider's `types` package spells them (camelCase), written
//! once for both sides of rust-farm that speak it: the local provider
//! (`farm-local`, which serves them) and gateway-ext (which reads and writes
//! them against any provider).
//!
//! Serde types only: no I/O, no HTTP, no validation beyond what the parse
//! itself refuses (a missing `replicas`, a negative count).
//!
//! Wire rules, chosen so a Go client (faas-cli, the gateway) reads exactly what
//! it would read from faas-netes or faasd, and so a Rust client reads any
//! provider's answer:
//!
//! - Optional fields are skipped when empty, as Go's `omitempty` does.
//! - `labels` and `annotations` are `*map[string]string` in Go, so a provider
//!   may write `null`; it reads as an empty map here (and other maps and lists
//!   take `null` the same way).
//! - The two counts `replicas` and `availableReplicas` are always written, even
//!   when zero: a Go client reads a missing number as zero anyway, and a Rust
//!   client should not have to guess.
//!
//! ```
//! use farm_openfaas::{FunctionStatus, ScaleServiceRequest};
//!
//! # fn main() -> Result<(), serde_json::Error> {
//! // What `GET /system/function/{name}` answers...
//! let s: FunctionStatus = serde_json::from_str(
//!     r#"{"name":"worker","image":"w:1","labels":null,"replicas":2,"availableReplicas":1}"#,
//! )?;
//! assert_eq!((s.replicas, s.available_replicas), (2, 1));
//! assert!(s.labels.is_empty());
//!
//! // ...and what `POST /system/scale-function/{name}` takes.
//! let body = serde_json::to_string(&ScaleServiceRequest::new("worker", 4))?;
//! assert_eq!(body, r#"{"serviceName":"worker","replicas":4}"#);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Reads `null` as the type's default: Go writes a nil map or slice that has
/// no `omitempty` (and a nil `*map`) as `null`.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Memory and CPU of a function's `limits` or `requests` (Kubernetes
/// quantities, passed through as text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionResources {
    /// Memory quantity, e.g. `128Mi`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memory: String,
    /// CPU quantity, e.g. `100m`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu: String,
}

/// A request to create or update a function (`POST|PUT /system/functions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeployment {
    /// Name of the function.
    pub service: String,
    /// Image reference.
    pub image: String,
    /// Namespace; empty means the provider's default namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Command line overriding the image's entrypoint (OpenFaaS `fprocess`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    /// Environment variables of every replica.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env_vars: BTreeMap<String, String>,
    /// Placement constraints (provider-specific).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub constraints: Vec<String>,
    /// Names of secrets to mount as files in every replica.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<String>,
    /// Labels, e.g. `com.openfaas.scale.min`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotations, e.g. `com.rust-farm.farm`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    /// Resource requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    /// Read-only root filesystem.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
}

/// Resource usage of a function's replicas (newer faas-provider versions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUsage {
    /// Sum of the resident memory of the running replicas, bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total_memory_bytes: f64,
}

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
    /// Command line override, as deployed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    /// Environment variables, as deployed.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env_vars: BTreeMap<String, String>,
    /// Constraints, as deployed.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub constraints: Vec<String>,
    /// Secret names, as deployed.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<String>,
    /// Labels, as deployed.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotations, as deployed.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Limits, as deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    /// Requests, as deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    /// Read-only root filesystem, as deployed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
    /// Invocations proxied through `/function/{name}` since deployment.
    #[serde(default)]
    pub invocation_count: f64,
    /// Replicas that exist and are not being stopped (starting or ready).
    #[serde(default)]
    pub replicas: u64,
    /// Replicas ready to take work.
    #[serde(default)]
    pub available_replicas: u64,
    /// When the function was created, RFC 3339.
    #[serde(default)]
    pub created_at: String,
    /// Resource usage of the running replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<FunctionUsage>,
}

/// Body of `POST /system/scale-function/{name}`.
///
/// `replicas` is required here (Go would read a missing field as 0 and scale
/// the function away); a negative or fractional count is refused by the parse
/// itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleServiceRequest {
    /// Function name; may be empty, else must match the path.
    #[serde(default)]
    pub service_name: String,
    /// Desired replica count.
    pub replicas: u64,
    /// Namespace; empty means the default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl ScaleServiceRequest {
    /// A request to scale `name` in the default namespace.
    pub fn new(name: impl Into<String>, replicas: u64) -> Self {
        Self {
            service_name: name.into(),
            replicas,
            namespace: String::new(),
        }
    }
}

/// Body of `DELETE /system/functions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    /// Function to delete.
    pub function_name: String,
    /// Namespace; empty means the default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// OpenFaaS' default function namespace, the one faas-cli, the CE gateway
/// and Prometheus' `function_name` labels append (`NAME.openfaas-fn`).
pub const DEFAULT_NAMESPACE: &str = "openfaas-fn";

/// Splits a function name as the provider API takes it, `NAME` or
/// `NAME.NAMESPACE`, at its last dot, as faas-netes reads
/// `/function/{name}` and the gateway names functions in metrics and
/// alerts: `("NAME", Some("NAMESPACE"))`, or `(name, None)` without a dot.
///
/// A name that itself contains dots is ambiguous; a caller that knows its
/// functions looks the whole name up first.
///
/// ```
/// use farm_openfaas::split_namespace;
/// assert_eq!(split_namespace("worker.openfaas-fn"), ("worker", Some("openfaas-fn")));
/// assert_eq!(split_namespace("worker"), ("worker", None));
/// assert_eq!(split_namespace("a.b.dev"), ("a.b", Some("dev")));
/// ```
pub fn split_namespace(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('.') {
        Some((base, ns)) => (base, Some(ns)),
        None => (name, None),
    }
}

/// The `function_name` label the CE gateway gives a function in its metrics
/// (and so in the alerts of its rules): `NAME.NAMESPACE`, with the default
/// namespace appended to a name without one, however the client named it.
/// The gateway's `/system/functions` finds each function's invocation count
/// in Prometheus by this label.
///
/// ```
/// use farm_openfaas::metric_name;
/// assert_eq!(metric_name("worker"), "worker.openfaas-fn");
/// assert_eq!(metric_name("worker.openfaas-fn"), "worker.openfaas-fn");
/// assert_eq!(metric_name("worker.dev"), "worker.dev");
/// ```
pub fn metric_name(name: &str) -> String {
    match split_namespace(name) {
        (_, Some(_)) => name.to_string(),
        (base, None) => format!("{base}.{DEFAULT_NAMESPACE}"),
    }
}

/// Version of the provider in `GET /system/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderVersion {
    /// Source revision, or `unknown`.
    pub sha: String,
    /// Release version.
    pub release: String,
}

/// Body of `GET /system/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// Provider name, e.g. `faas-netes` or `farm-local`.
    pub provider: String,
    /// Provider version.
    pub version: ProviderVersion,
    /// Orchestration, e.g. `kubernetes` or `process`.
    pub orchestration: String,
}

/// One line of `GET /system/logs` (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMessage {
    /// Function name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Replica instance that wrote the line.
    pub instance: String,
    /// When the line was read, RFC 3339 UTC.
    pub timestamp: String,
    /// The line, without its newline.
    pub text: String,
}

#[cfg(test)]
mod tests {
    //! The field names are checked against the list in REFERENCE.md §2 (the
    //! faas-provider JSON), not against this crate's own output.

    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::*;

    fn keys(v: &Value) -> BTreeSet<&str> {
        v.as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn resources() -> Option<FunctionResources> {
        Some(FunctionResources {
            memory: "128Mi".into(),
            cpu: "100m".into(),
        })
    }

    fn full_deployment() -> FunctionDeployment {
        FunctionDeployment {
            service: "w".into(),
            image: "img:1".into(),
            namespace: "openfaas-fn".into(),
            env_process: "run".into(),
            env_vars: map(&[("A", "1")]),
            constraints: vec!["node=x".into()],
            secrets: vec!["s".into()],
            labels: map(&[("com.openfaas.scale.min", "1")]),
            annotations: map(&[("com.rust-farm.farm", "demo")]),
            limits: resources(),
            requests: resources(),
            read_only_root_filesystem: true,
        }
    }

    #[test]
    fn deployment_field_names_are_the_reference_ones() {
        let v = serde_json::to_value(full_deployment()).unwrap();
        let reference = [
            "service",
            "image",
            "namespace",
            "envProcess",
            "envVars",
            "labels",
            "annotations",
            "secrets",
            "limits",
            "requests",
        ];
        // faas-provider also has these two; REFERENCE.md lists the common ones.
        let beyond = ["constraints", "readOnlyRootFilesystem"];
        let expected: BTreeSet<&str> = reference.iter().chain(&beyond).copied().collect();
        assert_eq!(keys(&v), expected);
        assert_eq!(v["limits"], json!({"memory": "128Mi", "cpu": "100m"}));
    }

    #[test]
    fn deployment_reads_what_faas_cli_writes() {
        let d: FunctionDeployment = serde_json::from_value(json!({
            "service": "w", "image": "img:1", "namespace": "openfaas-fn",
            "envProcess": "run", "envVars": {"A": "1"}, "constraints": ["node=x"],
            "secrets": ["s"], "labels": {"com.openfaas.scale.min": "1"},
            "annotations": {"com.rust-farm.farm": "demo"},
            "limits": {"memory": "128Mi", "cpu": "100m"},
            "requests": {"memory": "128Mi", "cpu": "100m"},
            "readOnlyRootFilesystem": true
        }))
        .unwrap();
        assert_eq!(d, full_deployment());
    }

    #[test]
    fn empty_deployment_writes_only_the_required_fields() {
        let d = FunctionDeployment {
            service: "w".into(),
            image: "i".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(d).unwrap(),
            json!({"service": "w", "image": "i"})
        );
    }

    #[test]
    fn deployment_without_image_is_refused() {
        let e = serde_json::from_str::<FunctionDeployment>(r#"{"service":"w"}"#).unwrap_err();
        assert!(e.is_data(), "{e}");
    }

    #[test]
    fn null_maps_and_lists_read_as_empty() {
        let d: FunctionDeployment = serde_json::from_str(
            r#"{"service":"w","image":"i","labels":null,"annotations":null,"envVars":null,"secrets":null,"constraints":null}"#,
        )
        .unwrap();
        assert!(d.labels.is_empty() && d.annotations.is_empty() && d.env_vars.is_empty());
        assert!(d.secrets.is_empty() && d.constraints.is_empty());
    }

    #[test]
    fn status_field_names_are_the_reference_ones() {
        let s = FunctionStatus {
            name: "w".into(),
            image: "img:1".into(),
            namespace: "openfaas-fn".into(),
            env_process: "run".into(),
            env_vars: map(&[("A", "1")]),
            constraints: vec!["node=x".into()],
            secrets: vec!["s".into()],
            labels: map(&[("l", "1")]),
            annotations: map(&[("a", "1")]),
            limits: resources(),
            requests: resources(),
            read_only_root_filesystem: true,
            invocation_count: 3.0,
            replicas: 2,
            available_replicas: 1,
            created_at: "2026-01-01T00:00:00Z".into(),
            usage: Some(FunctionUsage {
                total_memory_bytes: 1024.0,
            }),
        };
        let v = serde_json::to_value(&s).unwrap();
        let reference = [
            "name",
            "image",
            "namespace",
            "envProcess",
            "envVars",
            "labels",
            "annotations",
            "secrets",
            "limits",
            "requests",
            "replicas",
            "availableReplicas",
            "invocationCount",
            "createdAt",
        ];
        let beyond = ["constraints", "readOnlyRootFilesystem", "usage"];
        let expected: BTreeSet<&str> = reference.iter().chain(&beyond).copied().collect();
        assert_eq!(keys(&v), expected);
        assert_eq!(v["usage"], json!({"totalMemoryBytes": 1024.0}));
        let back: FunctionStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn status_always_writes_the_counts() {
        let v = serde_json::to_value(FunctionStatus {
            name: "w".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v["replicas"], 0);
        assert_eq!(v["availableReplicas"], 0);
        assert!(v.get("labels").is_none());
    }

    #[test]
    fn status_reads_a_sparse_provider_answer() {
        let s: FunctionStatus =
            serde_json::from_str(r#"{"name":"w","labels":null,"replicas":2}"#).unwrap();
        assert_eq!((s.replicas, s.available_replicas), (2, 0));
        assert!(s.image.is_empty() && s.labels.is_empty());
    }

    #[test]
    fn scale_request_field_names_are_the_reference_ones() {
        let r = ScaleServiceRequest {
            service_name: "w".into(),
            replicas: 3,
            namespace: "openfaas-fn".into(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"serviceName": "w", "replicas": 3, "namespace": "openfaas-fn"})
        );
        let back: ScaleServiceRequest =
            serde_json::from_str(r#"{"serviceName":"w","replicas":3,"namespace":"openfaas-fn"}"#)
                .unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn scale_request_refuses_missing_negative_and_fractional_counts() {
        for body in [
            r#"{"serviceName":"w"}"#,
            r#"{"serviceName":"w","replicas":-1}"#,
            r#"{"serviceName":"w","replicas":1.5}"#,
            r#"{"serviceName":"w","replicas":"2"}"#,
        ] {
            let e = serde_json::from_str::<ScaleServiceRequest>(body).unwrap_err();
            assert!(e.is_data(), "{body}: {e}");
        }
    }

    #[test]
    fn delete_request_field_name_is_the_reference_one() {
        let r = DeleteFunctionRequest {
            function_name: "w".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"functionName": "w"})
        );
        let back: DeleteFunctionRequest =
            serde_json::from_str(r#"{"functionName":"w","namespace":"openfaas-fn"}"#).unwrap();
        assert_eq!(back.namespace, "openfaas-fn");
    }

    #[test]
    fn info_and_log_lines_have_the_provider_shapes() {
        let info = ProviderInfo {
            provider: "farm-local".into(),
            version: ProviderVersion {
                sha: "unknown".into(),
                release: "0.1.0".into(),
            },
            orchestration: "process".into(),
        };
        assert_eq!(
            serde_json::to_value(&info).unwrap(),
            json!({"provider": "farm-local", "version": {"sha": "unknown", "release": "0.1.0"}, "orchestration": "process"})
        );
        let line = LogMessage {
            name: "w".into(),
            namespace: "openfaas-fn".into(),
            instance: "w-1".into(),
            timestamp: "2026-01-01T00:00:00.000000001Z".into(),
            text: "hello".into(),
        };
        let v = serde_json::to_value(&line).unwrap();
        assert_eq!(
            keys(&v),
            BTreeSet::from(["name", "namespace", "instance", "timestamp", "text"])
        );
    }
}
