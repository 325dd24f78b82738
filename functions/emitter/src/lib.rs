//! The rust-farm emitter: an HTTP function that turns requests into tasks on
//! the farm's JetStream work queue `FARM_<F>_TASKS`.
//!
//! One request carries one task (the body is the payload) or a batch (NDJSON,
//! or length-delimited protobuf `Task`s); see [`input`] for the formats and
//! headers. Every task is published with `Nats-Msg-Id` = its id and the
//! emitter answers `202 Accepted` with the ids only after JetStream has
//! acknowledged storing all of them, so an accepted task cannot be lost. When
//! the stream is at its limits (discard-new) the answer is 429, when NATS is
//! unreachable 503, and a partially stored batch lists exactly which ids were
//! stored; see [`http`].
//!
//! The main loop, as `main.rs` runs it:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = emitter::config::EmitterConfig::from_map(&farm_runtime::config::env_map())?;
//! let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.farm.http.port)).await?;
//! emitter::run(cfg, listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod http;
pub mod input;
pub mod publish;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use farm_runtime::nats::NatsError;
use farm_runtime::topology::{self, TopologyError};
use tokio::net::TcpListener;

use crate::config::EmitterConfig;
use crate::http::AppState;
use crate::publish::Publisher;

/// Why the emitter could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EmitterError {
    /// NATS could not be reached or was refused.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The JetStream topology could not be created or conflicts.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// How long the emitter waits for nats-server to come up at start.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// Runs the emitter on `listener` until `shutdown` resolves; then stops
/// accepting, lets in-flight requests finish and flushes the connection.
pub async fn run(
    cfg: EmitterConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EmitterError> {
    let client =
        farm_runtime::nats::connect_retrying(&cfg.farm.nats, Some(CONNECT_PATIENCE)).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(cfg.ack_timeout)
        .build(client.clone());
    let names = &cfg.farm.names;
    let topo = topology::retrying(|| topology::ensure(&js, names, &cfg.farm.topology)).await?;
    let tasks = topo.tasks;
    // Retried like the setup: a cluster may still be electing the leader.
    let last = topology::retrying(|| async {
        tasks
            .get_info()
            .await
            .map(|i| i.state.last_sequence)
            .map_err(|e| TopologyError::JetStream {
                what: format!("info of stream {}", names.tasks_stream()),
                message: e.to_string(),
            })
    })
    .await?;
    let publisher = Publisher::new(js, names.tasks_subject(), last + 1);
    let state = Arc::new(AppState {
        publisher,
        max_batch: cfg.max_batch,
    });
    let app = http::router(state, cfg.max_body_bytes);
    tracing::info!(
        farm = names.farm(),
        addr = ?listener.local_addr().ok(),
        first_seq = last + 1,
        "emitter ready"
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(EmitterError::Serve);
    // Every 202 was already acknowledged; flushing only pushes out whatever
    // a cancelled request left in the write buffer.
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "flush on shutdown failed");
    }
    served
}
