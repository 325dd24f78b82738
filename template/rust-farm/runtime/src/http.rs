//! The HTTP side of a replica, served on the of-watchdog upstream port.
//!
//! - `GET /_/health`: 200 when connected to NATS with the `workers` consumer
//!   bound and not draining, 503 otherwise (body: a JSON status).
//! - `POST /`: runs the handler synchronously on the body and answers with
//!   its output, so the function also works when invoked through the gateway.
//!   A body with `Content-Type: application/x-protobuf` is decoded as a
//!   `farm.v1.Task`; any other body becomes the payload of a fresh task.
//!   Handler errors answer 500 with the error text, undecodable tasks 400.
//!   While the replica drains, `POST /` answers 503 (the caller retries on
//!   another replica) and the invocations already running are tracked, so
//!   the drain can wait for them. One still running at the drain deadline
//!   is cancelled and answered 503 (`cut`), so its caller always gets an
//!   answer before the replica exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::{SharedHandler, Task, call_isolated};

/// Content type of a protobuf `Task` body.
pub const PROTOBUF: &str = "application/x-protobuf";

/// Readiness of a replica, shared between the NATS side and `/_/health`.
#[derive(Debug, Default)]
pub struct Readiness {
    client: std::sync::OnceLock<async_nats::Client>,
    bound: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Records the connected client (its state is read on every probe).
    pub fn set_client(&self, client: async_nats::Client) {
        let _ = self.client.set(client);
    }

    /// Records that the `workers` consumer is bound.
    pub fn set_bound(&self) {
        self.bound.store(true, Ordering::SeqCst);
    }

    /// Records that the replica is draining (it stops being ready).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the NATS connection is up right now.
    pub fn connected(&self) -> bool {
        self.client
            .get()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected)
    }

    /// Whether the replica is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Ready = connected, consumer bound, not draining.
    pub fn ready(&self) -> bool {
        self.connected() && self.bound.load(Ordering::SeqCst) && !self.draining()
    }
}

#[derive(Clone)]
struct AppState {
    readiness: Arc<Readiness>,
    handler: SharedHandler,
    invocations: TaskTracker,
    cut: CancellationToken,
}

/// The router serving `/_/health` and `POST /`; every synchronous invocation
/// runs tracked by `invocations`, and one still running when `cut` is
/// cancelled (the drain deadline) is aborted and answered 503.
pub fn router(
    readiness: Arc<Readiness>,
    handler: SharedHandler,
    invocations: TaskTracker,
    cut: CancellationToken,
) -> Router {
    Router::new()
        .route("/_/health", get(health))
        .route("/", post(invoke))
        .with_state(AppState {
            readiness,
            handler,
            invocations,
            cut,
        })
}

/// The answer to an invocation cancelled at the drain deadline.
pub const CUT_AT_DEADLINE: &str = "drain deadline reached: this replica is shutting down and cancelled the invocation before the handler finished; retry on another replica\n";

async fn health(State(s): State<AppState>) -> Response {
    let r = &s.readiness;
    let body = serde_json::json!({
        "nats_connected": r.connected(),
        "consumer_bound": r.bound.load(Ordering::SeqCst),
        "draining": r.draining(),
    });
    let code = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn invoke(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if s.readiness.draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: this replica is shutting down and takes no new invocations; retry on another replica\n",
        )
            .into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let task = if content_type.starts_with(PROTOBUF) {
        match Task::decode(body) {
            Ok(mut t) => {
                if t.id.is_empty() {
                    t.id = uuid::Uuid::new_v4().to_string();
                }
                t
            }
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("body is not a farm.v1.Task protobuf: {e}\n"),
                )
                    .into_response();
            }
        }
    } else {
        Task::from_payload(body, content_type)
    };
    let id = task.id.clone();
    tracing::debug!(task = %id, "HTTP invocation started");
    let call = s.invocations.track_future(call_isolated(&s.handler, task));
    let result = tokio::select! {
        r = call => r,
        () = s.cut.cancelled() => {
            tracing::warn!(task = %id, "HTTP invocation cancelled at the drain deadline");
            return (StatusCode::SERVICE_UNAVAILABLE, CUT_AT_DEADLINE).into_response();
        }
    };
    match result {
        Ok(out) => {
            let ct = if out.content_type.is_empty() {
                crate::handler::OCTET_STREAM.to_owned()
            } else {
                out.content_type
            };
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, ct),
                    (header::HeaderName::from_static("x-farm-task-id"), id),
                ],
                out.body,
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(task = %id, error = %e, "handler failed on an HTTP invocation");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
    }
}
