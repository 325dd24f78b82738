//! `farm-local`: the embedded default platform of rust-farm — an
//! OpenFaaS-provider-compatible server that runs function replicas as local
//! processes, so a whole farm runs, autoscaled, on one machine without
//! Kubernetes.
//!
//! It serves faas-provider's routes with the same JSON and status codes (see
//! [Routes](#routes)), so faas-cli, the OpenFaaS gateway and gateway-ext talk
//! to it as they would to faas-netes or faasd.
//!
//! - A function's `image` names a built binary in the local image store
//!   ([`image`]); [`build_function`] builds one from a handler folder the way
//!   `faas-cli build --shrinkwrap` assembles it, then runs cargo.
//! - A replica is a process with the deployment's `envVars`, its secrets
//!   copied as files into a per-replica directory (`FARM_SECRETS_DIR`; values
//!   under `/var/openfaas/secrets/` are rewritten to it), a free port in
//!   `PORT` and `FARM_HTTP_PORT`, and `HOSTNAME` set to its instance name. It
//!   is *available* only while its health route (`/_/health`) answers 200.
//! - Scaling up spawns replicas (after an optional emulated start delay,
//!   [`config::StartDelay`], off by default); scaling down sends SIGTERM,
//!   waits for the drain up to a grace period, then SIGKILLs, stopping
//!   not-ready and newest replicas first. A crashed replica restarts with
//!   exponential backoff. `replicas` / `availableReplicas` are computed from
//!   the live replicas, never stored apart from them.
//! - stdout and stderr of every replica feed `GET /system/logs`.
//!
//! # Routes
//!
//! | route | success | errors |
//! |---|---|---|
//! | `GET /system/functions` | 200 `[FunctionStatus]` | |
//! | `POST /system/functions` | 202 | 400 bad JSON/name/image/secret/label, 409 exists |
//! | `PUT /system/functions` | 202 | 400, 404 |
//! | `DELETE /system/functions` | 202 | 400, 404 |
//! | `GET /system/function/{name}` | 200 `FunctionStatus` | 404 |
//! | `POST /system/scale-function/{name}` | 202 | 400 bad JSON / negative / non-numeric / too many, 404 |
//! | `GET /system/info` | 200 `{provider, version, orchestration}` | |
//! | `GET /system/namespaces` | 200 `["openfaas-fn"]` | |
//! | `GET /system/logs?name&instance&tail&follow&since` | 200 NDJSON | 404, 422 |
//! | `GET/POST/PUT/DELETE /system/secrets` | | 501 with how to provide secrets instead |
//! | `GET /healthz` | 200 `OK` | |
//! | `ANY /function/{name}[/path]` | the replica's answer | 404, 502, 503 |
//!
//! Wherever a route takes a function name (`/function/{name}`,
//! `/system/function/{name}`, scale, delete, logs), `NAME.openfaas-fn` names
//! the function `NAME`, as faas-netes reads it (faas-cli invokes
//! `/function/NAME.openfaas-fn`); another namespace is a 400.
//!
//! Deploy, update, delete and scale answer 202 Accepted: the work completes
//! asynchronously, as with faas-netes. `/system/*` takes basic auth when
//! enabled (401 + `WWW-Authenticate`); `/healthz` and `/function/*` stay
//! open, as on the gateway. Error bodies are plain text, as Go's
//! `http.Error` writes them. `POST /system/functions` on an existing name is
//! 409 (faas-cli deploys with PUT, then POST on 404).
//!
//! # Embedding
//!
//! ```no_run
//! use farm_local::{Config, FunctionDeployment, Provider};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config { image_store: ".farm/images".into(), ..Config::default() };
//! let provider = Provider::new(config)?;
//! let handle = provider.handle();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(provider.run(listener, async move {
//!     let _ = stop_rx.await;
//! }));
//! handle.deploy(FunctionDeployment {
//!     service: "sleep-worker".into(),
//!     image: "sleep-worker:latest".into(),
//!     ..Default::default()
//! })?;
//! handle.scale("sleep-worker", 3)?;
//! // ... later: stop the server; replicas drain, then run() returns.
//! let _ = stop_tx.send(());
//! server.await??;
//! # Ok(()) }
//! ```

mod auth;
mod builder;
mod clock;
pub mod config;
mod error;
mod function;
pub mod image;
mod logs;
mod provider;
mod server;
pub mod types;

pub use auth::{Credentials, PASSWORD_FILE, USER_FILE};
pub use builder::{
    BuildError, BuildSpec, BuiltFunction, CONTEXT_WORKSPACE, assemble_context, build_function,
    cached_context, cargo_command,
};
pub use clock::{format_rfc3339, parse_rfc3339};
pub use config::{Config, ConfigError, ConfigErrors, ServiceAliases, StartDelay};
pub use error::{ApiError, ProviderError};
pub use function::{OPENFAAS_SECRETS_PATH, ReplicaStart, SECRETS_DIR_ENV};
pub use image::{ImageError, ImageStore};
pub use provider::{Provider, ProviderHandle};
pub use types::{
    DeleteFunctionRequest, FunctionDeployment, FunctionResources, FunctionStatus, FunctionUsage,
    LogMessage, ProviderInfo, ProviderVersion, ScaleServiceRequest,
};

/// The one namespace this provider has (OpenFaaS' default function
/// namespace); `NAME.openfaas-fn` names function `NAME` wherever the API
/// takes a function name ([`split_namespace`]).
pub use farm_openfaas::{DEFAULT_NAMESPACE, split_namespace};

/// Whether `name` is a valid function (or secret) name: `[-a-zA-Z_0-9.]+`,
/// as faas-provider's route pattern, and not starting with `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
