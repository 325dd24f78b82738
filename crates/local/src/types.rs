//! The JSON shapes of the OpenFaaS provider API, field for field as
//! faas-provider's `types` package spells them (camelCase).
//!
//! Optional fields are skipped when empty, as Go's `omitempty` does, so a
//! faas-cli or gateway client reads exactly what it would read from
//! faas-netes or faasd. The two counts `replicas` and `availableReplicas` are
//! always written, even when zero: a Go client reads a missing number as
//! zero anyway, and a Rust client should not have to guess.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Memory and CPU of a function's limits or requests. Recorded and echoed
/// back; a local process is not confined by them.
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
    /// Image reference; resolved in the local image store (see [`crate::image`]).
    pub image: String,
    /// Namespace; empty means the default namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Command line overriding the image's entrypoint (OpenFaaS `fprocess`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    /// Environment variables of every replica.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    /// Placement constraints; meaningless on one machine, echoed back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Names of secrets to mount as files in every replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Labels, e.g. `com.openfaas.scale.min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Resource limits (recorded only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    /// Resource requests (recorded only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    /// Read-only root filesystem (recorded only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
}

/// Resource usage of a function's replicas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUsage {
    /// Sum of the resident memory of the running replicas, bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total_memory_bytes: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// What `GET /system/functions` lists and `GET /system/function/{name}` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// Name of the function.
    pub name: String,
    /// Image reference as deployed.
    pub image: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Command line override, as deployed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    /// Environment variables, as deployed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    /// Constraints, as deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Secret names, as deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Labels, as deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations, as deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
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
    /// Replicas that exist and are not being stopped: starting, ready, or
    /// waiting to restart after a crash (a pod in CrashLoopBackOff counts too).
    #[serde(default)]
    pub replicas: u64,
    /// Replicas whose health endpoint last answered 200.
    #[serde(default)]
    pub available_replicas: u64,
    /// When the function was first deployed, RFC 3339 UTC.
    #[serde(default)]
    pub created_at: String,
    /// Resource usage of the running replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<FunctionUsage>,
}

/// Body of `POST /system/scale-function/{name}`.
///
/// `replicas` is required here (Go would read a missing field as 0 and scale
/// the function away); a negative or fractional count is rejected by the
/// parse itself.
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

/// Body of `DELETE /system/functions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    /// Function to delete.
    pub function_name: String,
    /// Namespace; empty means the default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
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
    /// Provider name: `farm-local`.
    pub provider: String,
    /// Provider version.
    pub version: ProviderVersion,
    /// Orchestration: `process`.
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
    /// When the provider read the line, RFC 3339 UTC with nanoseconds.
    pub timestamp: String,
    /// The line, without its newline.
    pub text: String,
}
