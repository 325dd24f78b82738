//! `farm-local-fixture`: a tiny stand-in replica for farm-local's own tests
//! and benchmark, shaped like a rust-farm worker's HTTP side.
//!
//! - `GET /_/health`: 200 while serving, 503 once draining.
//! - `POST /` (any path): echoes the body; headers `x-instance` (HOSTNAME)
//!   and `x-path` (the path it was called on).
//! - `GET /env/{KEY}`: the value of env var KEY (404 if unset).
//! - `GET /file?path=P`: the content of file P (to check secrets).
//! - `GET /pid`: its process id.
//!
//! On SIGTERM it stops answering health, waits `FIXTURE_DRAIN_MS` (default
//! 200) to emulate finishing held work, prints `drained` and exits 0.
//! `FIXTURE_START_MS` delays binding, to emulate a slow start.
//! The port comes from `PORT`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::signal::unix::{SignalKind, signal};

fn env_ms(key: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = match std::env::var("PORT").ok().and_then(|p| p.parse().ok()) {
        Some(p) => p,
        None => {
            eprintln!("fixture: PORT is not set to a port number");
            std::process::exit(64);
        }
    };
    let instance = std::env::var("HOSTNAME").unwrap_or_default();
    tokio::time::sleep(env_ms("FIXTURE_START_MS", 0)).await;
    let draining = Arc::new(AtomicBool::new(false));
    let d = draining.clone();
    let inst = instance.clone();
    let app = Router::new()
        .route(
            "/_/health",
            get(move || {
                let d = d.clone();
                async move {
                    if d.load(Ordering::SeqCst) {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        )
        .route(
            "/env/{key}",
            get(|Path(key): Path<String>| async move {
                match std::env::var(&key) {
                    Ok(v) => (StatusCode::OK, v),
                    Err(_) => (StatusCode::NOT_FOUND, String::new()),
                }
            }),
        )
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route(
            "/file",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    match q.get("path").map(std::fs::read_to_string) {
                        Some(Ok(s)) => (StatusCode::OK, s),
                        _ => (StatusCode::NOT_FOUND, String::new()),
                    }
                },
            ),
        )
        .fallback(move |uri: Uri, body: Bytes| {
            let inst = inst.clone();
            async move {
                let mut h = HeaderMap::new();
                if let Ok(v) = inst.parse() {
                    h.insert("x-instance", v);
                }
                if let Ok(v) = uri.path().parse() {
                    h.insert("x-path", v);
                }
                (h, body).into_response()
            }
        });
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fixture: cannot bind port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("fixture {instance} listening on {port}");
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fixture: cannot install SIGTERM handler: {e}");
            std::process::exit(1);
        }
    };
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    term.recv().await;
    draining.store(true, Ordering::SeqCst);
    println!("fixture {instance} draining");
    tokio::time::sleep(env_ms("FIXTURE_DRAIN_MS", 200)).await;
    println!("fixture {instance} drained");
    server.abort();
    std::process::exit(0);
}
