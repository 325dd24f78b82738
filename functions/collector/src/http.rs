//! The collector's HTTP surface.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics/snapshot` (also `GET /`, `POST /`) | the current `MetricsSnapshot` as JSON |
//! | `GET /_/health` | 200 once connected to NATS with the results consumer bound, else 503 |

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use farm_runtime::proto::MetricsSnapshot;
use serde_json::{Value, json};

use crate::collect::{Shared, lock};

/// State of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Collector state.
    pub shared: Arc<Mutex<Shared>>,
    /// The NATS client, for the health check.
    pub client: async_nats::Client,
}

/// The snapshot as a JSON object with the protobuf field names.
pub fn snapshot_json(s: &MetricsSnapshot) -> Value {
    json!({
        "farm": s.farm,
        "at_us": s.at_us,
        "completed": s.completed,
        "qos_hits": s.qos_hits,
        "failed": s.failed,
        "duplicates": s.duplicates,
        "arrivals": s.arrivals,
        "window_s": s.window_s,
        "window_completed": s.window_completed,
        "window_hits": s.window_hits,
        "window_qos": s.window_qos,
        "latency_p50_s": s.latency_p50_s,
        "latency_p95_s": s.latency_p95_s,
        "latency_p99_s": s.latency_p99_s,
        "service_mean_s": s.service_mean_s,
        "service_p95_s": s.service_p95_s,
        "window_arrivals": s.window_arrivals,
        "deadline_min_s": s.deadline_min_s,
        "cumulative": s.cumulative.as_ref().map(|c| json!({
            "started_us": c.started_us,
            "completed": c.completed,
            "on_time": c.on_time,
            "latency_sum_us": c.latency_sum_us,
            "service_sum_us": c.service_sum_us,
            "deadline_sum_ms": c.deadline_sum_ms,
            "latency_max_us": c.latency_max_us,
            "latency": c.latency.as_ref().map(hist_json),
            "service": c.service.as_ref().map(hist_json),
            "deadline": c.deadline.as_ref().map(hist_json),
        })),
    })
}

fn hist_json(h: &farm_runtime::proto::Histogram) -> Value {
    json!({ "growth": h.growth, "index": h.index, "count": h.count })
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics/snapshot", get(snapshot))
        .route("/", get(snapshot).post(snapshot))
        .route("/_/health", get(health))
        .with_state(state)
}

async fn snapshot(State(state): State<HttpState>) -> Response {
    let snap = lock(&state.shared).snapshot();
    axum::Json(snapshot_json(&snap)).into_response()
}

async fn health(State(state): State<HttpState>) -> Response {
    let connected = state.client.connection_state() == async_nats::connection::State::Connected;
    if connected && lock(&state.shared).bound {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_field_names_and_absent_window_qos() {
        let s = MetricsSnapshot {
            farm: "f".into(),
            completed: 3,
            ..Default::default()
        };
        let v = snapshot_json(&s);
        assert_eq!(v["farm"], "f");
        assert_eq!(v["completed"], 3);
        assert!(v["window_qos"].is_null());
    }
}
