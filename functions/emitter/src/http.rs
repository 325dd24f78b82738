//! The emitter's HTTP surface.
//!
//! | route | answer |
//! |---|---|
//! | `POST /` | 202 `{"ids": [...], "duplicates": [...]}` when every task was stored; otherwise 429 (stream full), 503 (NATS unavailable), 413 (task too large) or 500, with `{"error", "kind", "accepted": [...], "rejected": [{"id", "reason"}]}`; 400 `{"error", "kind": "bad_request"}` for bad input |
//! | `GET /_/health` | 200 when connected to NATS, else 503 |
//!
//! A 202 means JetStream acknowledged storing every task: none of them can be
//! lost any more. A partial failure lists exactly which ids were stored. A
//! task rejected as `unavailable` (e.g. an ack timeout) may still have been
//! stored; retrying it with the same id is safe, JetStream de-duplicates it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::input::{InputError, parse_request};
use crate::publish::{Outcome, Publisher, Rejection};

/// Shared state of the handlers.
#[derive(Debug)]
pub struct AppState {
    /// Where tasks go.
    pub publisher: Publisher,
    /// Most tasks one request may carry.
    pub max_batch: usize,
}

/// The router, with a request body limit of `max_body_bytes`.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", post(submit))
        .route("/_/health", get(health))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.publisher.connected() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to NATS").into_response()
    }
}

/// The status for a publish outcome: 202 only when nothing was rejected;
/// otherwise the most telling class of rejection wins (unavailable before
/// full, because a retry then needs NATS back, not just free space).
pub fn status_for(outcome: &Outcome) -> StatusCode {
    let has = |f: fn(&Rejection) -> bool| outcome.rejected.iter().any(|r| f(&r.reason));
    if outcome.rejected.is_empty() {
        StatusCode::ACCEPTED
    } else if has(|r| matches!(r, Rejection::Unavailable(_))) {
        StatusCode::SERVICE_UNAVAILABLE
    } else if has(|r| matches!(r, Rejection::StreamFull(_))) {
        StatusCode::TOO_MANY_REQUESTS
    } else if has(|r| matches!(r, Rejection::TooLarge(_))) {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

fn bad_request(err: &InputError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": err.to_string(), "kind": "bad_request"})),
    )
        .into_response()
}

async fn submit(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let drafts = match parse_request(&headers, body, state.max_batch) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "bad request");
            return bad_request(&e);
        }
    };
    let outcome = state.publisher.publish(drafts).await;
    let status = status_for(&outcome);
    if status == StatusCode::ACCEPTED {
        let duplicates: Vec<&str> = outcome
            .accepted
            .iter()
            .filter(|a| a.duplicate)
            .map(|a| a.id.as_str())
            .collect();
        let ids: Vec<&str> = outcome.accepted.iter().map(|a| a.id.as_str()).collect();
        return (
            status,
            axum::Json(json!({"ids": ids, "duplicates": duplicates})),
        )
            .into_response();
    }
    let first = &outcome.rejected[0].reason;
    let kind = match first {
        Rejection::StreamFull(_) => "stream_full",
        Rejection::Unavailable(_) => "unavailable",
        Rejection::TooLarge(_) => "too_large",
        Rejection::Failed(_) => "failed",
    };
    tracing::warn!(
        accepted = outcome.accepted.len(),
        rejected = outcome.rejected.len(),
        %first,
        "tasks rejected"
    );
    let accepted: Vec<&str> = outcome.accepted.iter().map(|a| a.id.as_str()).collect();
    let body = json!({
        "error": format!(
            "{} of {} tasks rejected: {first}",
            outcome.rejected.len(),
            outcome.rejected.len() + outcome.accepted.len()
        ),
        "kind": kind,
        "accepted": accepted,
        "rejected": outcome.rejected,
    });
    let mut resp = (status, axum::Json(body)).into_response();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::{Accepted, Rejected};

    fn outcome(rejections: Vec<Rejection>) -> Outcome {
        Outcome {
            accepted: vec![Accepted {
                id: "a".into(),
                seq: 1,
                duplicate: false,
            }],
            rejected: rejections
                .into_iter()
                .map(|reason| Rejected {
                    id: "r".into(),
                    reason,
                })
                .collect(),
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_for(&outcome(vec![])), StatusCode::ACCEPTED);
        assert_eq!(
            status_for(&outcome(vec![Rejection::StreamFull("x".into())])),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_for(&outcome(vec![
                Rejection::StreamFull("x".into()),
                Rejection::Unavailable("y".into())
            ])),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_for(&outcome(vec![Rejection::TooLarge("x".into())])),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status_for(&outcome(vec![Rejection::Failed("x".into())])),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
