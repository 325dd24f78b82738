//! The HTTP side of a real worker process: health and synchronous invocation.

use std::time::Duration;

use farm_runtime::proto::Task;
use farm_testsupport::{NatsOptions, NatsServer, free_port, wait_until};
use prost::Message as _;

mod common;
use common::*;

#[test]
fn health_is_503_until_nats_is_ready_and_post_runs_the_handler() {
    let nats_port = free_port().unwrap();
    let http_port = free_port().unwrap();
    let url = format!("nats://127.0.0.1:{nats_port}");
    let port = http_port.to_string();
    let mut w = spawn_worker(&url, "web", "worker-w", &[("FARM_HTTP_PORT", &port)]);

    // Nothing listens on the NATS port yet: the worker serves HTTP anyway.
    let mut first = None;
    wait_until("health answers", WAIT, Duration::from_millis(20), || {
        first = http(http_port, "GET", "/_/health", "text/plain", b"");
        first.is_some()
    })
    .unwrap();
    assert_eq!(first.unwrap().0, 503, "log:\n{}", w.log_tail());

    // The handler works without NATS.
    let (code, body) = http(
        http_port,
        "POST",
        "/",
        "application/json",
        br#"{"sleep_ms":1,"output":"hi"}"#,
    )
    .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["output"], "hi");
    let (code, body) = http(
        http_port,
        "POST",
        "/",
        "application/json",
        br#"{"fail":true}"#,
    )
    .unwrap();
    assert_eq!(code, 500);
    assert!(String::from_utf8_lossy(&body).contains("asked to fail"));
    let (code, _) = http(
        http_port,
        "POST",
        "/",
        "application/json",
        br#"{"panic":true}"#,
    )
    .unwrap();
    assert_eq!(code, 500);
    let t = Task {
        id: "pb".into(),
        payload: br#"{"output":3}"#.to_vec().into(),
        content_type: "application/json".into(),
        ..Default::default()
    };
    let (code, body) = http(
        http_port,
        "POST",
        "/",
        "application/x-protobuf",
        &t.encode_to_vec(),
    )
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["output"],
        3
    );
    let (code, _) = http(
        http_port,
        "POST",
        "/",
        "application/x-protobuf",
        b"\xff\xff",
    )
    .unwrap();
    assert_eq!(code, 400);

    // Now NATS comes up on that port: the worker connects, binds, is ready.
    let mut nats = NatsServer::start_with(NatsOptions {
        port: Some(nats_port),
        ..Default::default()
    })
    .unwrap();
    wait_until("health 200", WAIT, Duration::from_millis(50), || {
        matches!(
            http(http_port, "GET", "/_/health", "text/plain", b""),
            Some((200, _))
        )
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", w.log_tail()));

    // NATS goes away: not ready any more; back: ready again.
    nats.stop();
    wait_until(
        "health 503 while disconnected",
        WAIT,
        Duration::from_millis(50),
        || {
            matches!(
                http(http_port, "GET", "/_/health", "text/plain", b""),
                Some((503, _))
            )
        },
    )
    .unwrap();
    nats.start_again().unwrap();
    wait_until(
        "health 200 after reconnect",
        WAIT,
        Duration::from_millis(50),
        || {
            matches!(
                http(http_port, "GET", "/_/health", "text/plain", b""),
                Some((200, _))
            )
        },
    )
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", w.log_tail()));

    w.terminate().unwrap();
    let status = w.wait_timeout(WAIT).unwrap();
    assert_eq!(status.code(), Some(0), "{}", w.log_tail());
}

#[test]
fn configuration_errors_exit_64_listing_every_problem() {
    let mut w = spawn_worker(
        "nats://127.0.0.1:1",
        "Bad.Name",
        "worker-c",
        &[("FARM_CONCURRENCY", "zero"), ("FARM_ACK_WAIT", "10")],
    );
    let status = w.wait_timeout(WAIT).unwrap();
    assert_eq!(status.code(), Some(64));
    let log = w.log();
    assert!(log.contains("FARM_NAME"), "{log}");
    assert!(log.contains("FARM_CONCURRENCY"), "{log}");
    assert!(log.contains("FARM_ACK_WAIT"), "{log}");
}

#[test]
fn json_logs_and_clean_exit_before_nats_is_reachable() {
    let nats_port = free_port().unwrap();
    let url = format!("nats://127.0.0.1:{nats_port}");
    let mut w = spawn_worker(&url, "json", "worker-j", &[("LOG_FORMAT", "json")]);
    wait_until(
        "a reconnect warning",
        WAIT,
        Duration::from_millis(20),
        || w.log().contains("NATS not reachable yet"),
    )
    .unwrap();
    for line in w.log().lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
    }
    w.terminate().unwrap();
    let status = w.wait_timeout(WAIT).unwrap();
    assert_eq!(status.code(), Some(0), "{}", w.log_tail());
}
