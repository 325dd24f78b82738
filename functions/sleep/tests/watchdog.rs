//! The runtime under the template's of-watchdog settings, as a process.
//!
//! In the container, of-watchdog is PID 1: it passes its environment (the
//! Dockerfile's `ENV`) to the runtime, forwards SIGTERM to it, waits
//! `healthcheck_interval`, then exits, which ends the container and every
//! process in it. These tests start the real worker with exactly the
//! Dockerfile's `ENV` (only the port and the NATS address changed) and hold
//! it to the watchdog's deadline: after SIGTERM the worker must have finished
//! and acked what it holds, and exited 0, within `healthcheck_interval`.

use std::time::{Duration, Instant};

use farm_runtime::names::FarmNames;
use farm_runtime::proto::Status;
use farm_testsupport::{NatsOptions, NatsServer, free_port, wait_until};

mod common;
use common::*;

/// The `ENV` of the template's ship stage, `key="value"` pairs joined over
/// continuation lines, in order.
fn dockerfile_env() -> Vec<(String, String)> {
    let path = farm_testsupport::workspace_root().join("template/rust-farm/Dockerfile");
    let text = std::fs::read_to_string(path).unwrap();
    let mut env = Vec::new();
    let mut in_env = false;
    for line in text.lines() {
        let line = line.trim();
        let body = if let Some(rest) = line.strip_prefix("ENV ") {
            rest
        } else if in_env {
            line
        } else {
            continue;
        };
        let cont = body.ends_with('\\');
        for pair in body.trim_end_matches('\\').split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV key=value");
            env.push((k.to_owned(), v.trim_matches('"').to_owned()));
        }
        in_env = cont;
    }
    assert!(!env.is_empty(), "no ENV in the template's Dockerfile");
    env
}

fn value<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{key} not in the Dockerfile's ENV"))
}

fn seconds(v: &str) -> Duration {
    farm_runtime::config::parse_duration(v)
        .or_else(|| v.parse().ok().map(Duration::from_secs))
        .unwrap_or_else(|| panic!("{v:?} is not a duration"))
}

/// The Dockerfile's ENV minus what each test sets itself (ports, NATS, the
/// farm, the lock file's path, which must not be the host's /tmp/.lock).
fn container_env(env: &[(String, String)]) -> Vec<(&str, &str)> {
    let overrides = [
        "FARM_HTTP_PORT",
        "NATS_URL",
        "FARM_NAME",
        "FARM_WATCHDOG_LOCK",
    ];
    env.iter()
        .filter(|(k, _)| !overrides.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The watchdog's interval before this fix: the length that cut drains.
const OLD_INTERVAL: Duration = Duration::from_secs(5);

/// Kubernetes' default terminationGracePeriodSeconds (faas-netes sets none).
const POD_GRACE: Duration = Duration::from_secs(30);

#[test]
fn the_dockerfile_watchdog_and_drain_settings_agree() {
    let env = dockerfile_env();
    let grace = seconds(value(&env, "FARM_DRAIN_GRACE"));
    let interval = seconds(value(&env, "healthcheck_interval"));
    assert!(
        grace + farm_runtime::config::WATCHDOG_DRAIN_MARGIN <= interval,
        "the watchdog must outwait the drain: grace {grace:?}, interval {interval:?}"
    );
    assert!(
        interval < POD_GRACE,
        "the pod must outwait the watchdog: interval {interval:?}, pod {POD_GRACE:?}"
    );
    // The configuration the runtime parses in the container is accepted,
    // with stack.yml's worker environment on top (it overrides the image's).
    let mut map: std::collections::HashMap<String, String> = env.into_iter().collect();
    map.insert("FARM_NAME".into(), "demo".into());
    let stack =
        std::fs::read_to_string(farm_testsupport::workspace_root().join("stack.yml")).unwrap();
    let stack_grace = stack
        .lines()
        .find_map(|l| l.trim().strip_prefix("FARM_DRAIN_GRACE:"))
        .expect("stack.yml sets the worker's FARM_DRAIN_GRACE")
        .trim();
    map.insert("FARM_DRAIN_GRACE".into(), stack_grace.into());
    farm_runtime::Config::from_map(&map).expect("stack.yml's worker starts under the template");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_longer_than_the_old_interval_finishes_before_the_watchdog_exits() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("wd").unwrap();
    let env = dockerfile_env();
    let interval = seconds(value(&env, "healthcheck_interval"));
    let grace = seconds(value(&env, "FARM_DRAIN_GRACE"));
    let task_len = OLD_INTERVAL * 2 + Duration::from_secs(2);
    assert!(task_len > OLD_INTERVAL && task_len < grace);
    let lock_dir = tempfile::tempdir().unwrap();
    let lock = lock_dir.path().join(".lock");
    let mut pairs = container_env(&env);
    pairs.push(("FARM_WATCHDOG_LOCK", lock.to_str().unwrap()));
    let mut w = spawn_worker(&nats.url(), "wd", "worker-wd", &pairs);
    wait_bound(&js, &names).await;
    let body = format!(r#"{{"sleep_ms":{}}}"#, task_len.as_millis());
    publish_task(&js, &names, &task("long", 0, &body)).await;
    wait_held(&js, &names, 1).await;

    // What the watchdog does: SIGTERM to the runtime, then its own exit
    // `healthcheck_interval` later.
    let sigterm = Instant::now();
    w.terminate().unwrap();
    let status = w.wait_timeout(interval).unwrap_or_else(|e| {
        panic!(
            "the worker outlived the watchdog's {interval:?}: {e}\n{}",
            w.log_tail()
        )
    });
    let drained_in = sigterm.elapsed();
    assert_eq!(status.code(), Some(0), "log:\n{}", w.log_tail());
    assert!(
        drained_in > OLD_INTERVAL,
        "the drain ran past the old interval ({drained_in:?}): the test proves something"
    );
    let rs = results(&js, &names).await;
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0].task_id, "long");
    assert_eq!(rs[0].status, Status::Ok as i32);
    assert_eq!(
        rs[0].deliveries, 1,
        "finished, not redelivered: {:?}",
        rs[0]
    );
    assert_eq!(stream_len(&js, &names.tasks_stream()).await, 0, "acked");
}

#[test]
fn the_old_template_settings_are_refused_naming_both_keys() {
    // healthcheck_interval=5s with the runtime's 25 s grace: the drain could
    // never finish under the watchdog.
    let mut w = spawn_worker(
        "nats://127.0.0.1:1",
        "wd-old",
        "worker-old",
        &[
            ("mode", "http"),
            ("write_timeout", "60s"),
            ("healthcheck_interval", "5s"),
            ("FARM_DRAIN_GRACE", "25s"),
        ],
    );
    let status = w.wait_timeout(WAIT).unwrap();
    assert_eq!(status.code(), Some(64), "{}", w.log_tail());
    let log = w.log();
    assert!(
        log.contains("FARM_DRAIN_GRACE") && log.contains("healthcheck_interval"),
        "{log}"
    );
}

/// What faas-netes' probes see through the watchdog: its lock file (`cat
/// /tmp/.lock`, and the watchdog's `/_/health`, which answers from it). The
/// watchdog writes the file once, at start; with the Dockerfile's
/// `FARM_WATCHDOG_LOCK` the runtime keeps it present exactly while its own
/// `/_/health` is 200: starting without NATS, ready, NATS lost, back, and
/// draining after SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn the_watchdog_lock_file_follows_the_runtimes_readiness() {
    let env = dockerfile_env();
    assert_eq!(value(&env, "FARM_WATCHDOG_LOCK"), "/tmp/.lock");
    assert_eq!(value(&env, "ready_path"), "/_/health");
    let lock_dir = tempfile::tempdir().unwrap();
    let lock = lock_dir.path().join(".lock");
    // The watchdog writes its lock file right after starting the runtime.
    std::fs::write(&lock, b"").unwrap();
    let nats_port = free_port().unwrap();
    let http_port = free_port().unwrap();
    let url = format!("nats://127.0.0.1:{nats_port}");
    let port = http_port.to_string();
    let mut pairs = container_env(&env);
    pairs.push(("FARM_HTTP_PORT", &port));
    pairs.push(("FARM_WATCHDOG_LOCK", lock.to_str().unwrap()));
    let mut w = spawn_worker(&url, "wdlock", "worker-lock", &pairs);
    let health = || http(http_port, "GET", "/_/health", "text/plain", b"").map(|(c, _)| c);
    let agree = |want_ready: bool, what: &str, w: &farm_testsupport::ChildGuard| {
        wait_until(what, WAIT, Duration::from_millis(20), || {
            let code = if want_ready { 200 } else { 503 };
            lock.exists() == want_ready && health() == Some(code)
        })
        .unwrap_or_else(|e| {
            panic!(
                "{e}: lock present {}, health {:?}\n{}",
                lock.exists(),
                health(),
                w.log_tail()
            )
        });
    };

    agree(false, "no NATS yet: lock removed, health 503", &w);
    let mut nats = NatsServer::start_with(NatsOptions {
        port: Some(nats_port),
        ..Default::default()
    })
    .unwrap();
    agree(true, "bound: lock present, health 200", &w);
    nats.stop();
    agree(false, "NATS lost: lock removed, health 503", &w);
    nats.start_again().unwrap();
    agree(true, "NATS back: lock present again", &w);

    // SIGTERM while a task runs: not ready (lock gone) while still draining.
    // The task outlasts the checks by seconds even on a loaded machine (a
    // 3 s task once finished before the lock's removal was seen), and fits
    // in the Dockerfile's FARM_DRAIN_GRACE (20 s).
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("wdlock").unwrap();
    publish_task(&js, &names, &task("held", 0, r#"{"sleep_ms":8000}"#)).await;
    wait_held(&js, &names, 1).await;
    w.terminate().unwrap();
    wait_until(
        "lock removed on drain",
        WAIT,
        Duration::from_millis(20),
        || !lock.exists(),
    )
    .unwrap();
    assert!(w.is_running(), "still draining when the lock went");
    let status = w.wait_timeout(WAIT).unwrap();
    assert_eq!(status.code(), Some(0), "{}", w.log_tail());
    assert!(!lock.exists());
    assert_eq!(results(&js, &names).await.len(), 1);
}

/// A worker under the Dockerfile's `ENV` on a free HTTP port, its lock file
/// in `lock_dir`: (worker, HTTP port).
fn spawn_container_worker(
    nats_url: &str,
    farm: &str,
    env: &[(String, String)],
    lock_dir: &tempfile::TempDir,
) -> (farm_testsupport::ChildGuard, u16) {
    let http_port = free_port().unwrap();
    let port = http_port.to_string();
    let lock = lock_dir.path().join(".lock");
    let mut pairs = container_env(env);
    pairs.push(("FARM_HTTP_PORT", &port));
    pairs.push(("FARM_WATCHDOG_LOCK", lock.to_str().unwrap()));
    let w = spawn_worker(nats_url, farm, &format!("worker-{farm}"), &pairs);
    (w, http_port)
}

/// What the runtime logs (at debug, which `spawn_worker` enables) when a
/// `POST /` reaches the handler.
const INVOCATION_STARTED: &str = "HTTP invocation started";

/// Starts a synchronous invocation of `json` on its own thread and waits
/// until the worker runs the handler on it (the `n`-th so far); the thread
/// returns the answer, `None` if the connection was cut first.
fn invoke_in_flight(
    w: &farm_testsupport::ChildGuard,
    port: u16,
    json: &str,
    n: usize,
) -> std::thread::JoinHandle<Option<(u16, Vec<u8>)>> {
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    );
    let answer = std::thread::spawn(move || http_raw(port, &[head.as_bytes()], WAIT * 3));
    wait_until(
        "the invocation reached the handler",
        WAIT,
        Duration::from_millis(20),
        || w.log().matches(INVOCATION_STARTED).count() >= n,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    answer
}

/// The NATS drain and the HTTP drain share one deadline: a held task that
/// ends close to the grace and an invocation in flight that would outlast
/// it, at once, and the worker still exits 0 within `FARM_DRAIN_GRACE` plus
/// the runtime's margin (the watchdog's `healthcheck_interval`). The
/// invocation is cut at the deadline and answered 503; the task is finished
/// and acked. (The
/// two waits one after the other took the task's time plus a whole grace.)
#[tokio::test(flavor = "multi_thread")]
async fn a_held_task_and_an_invocation_in_flight_drain_within_one_grace() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("wdboth").unwrap();
    let env = dockerfile_env();
    let grace = seconds(value(&env, "FARM_DRAIN_GRACE"));
    let margin = farm_runtime::config::WATCHDOG_DRAIN_MARGIN;
    let lock_dir = tempfile::tempdir().unwrap();
    let (mut w, port) = spawn_container_worker(&nats.url(), "wdboth", &env, &lock_dir);
    wait_bound(&js, &names).await;

    // Ends a little before the grace (counted from SIGTERM, a moment later)...
    let task_len = grace - Duration::from_secs(2);
    let body = format!(r#"{{"sleep_ms":{}}}"#, task_len.as_millis());
    publish_task(&js, &names, &task("near-grace", 0, &body)).await;
    wait_held(&js, &names, 1).await;
    // ... and outlasts the grace and the margin: only the deadline ends it.
    let invocation_len = grace + margin * 3;
    let json = format!(r#"{{"sleep_ms":{}}}"#, invocation_len.as_millis());
    let in_flight = invoke_in_flight(&w, port, &json, 1);

    let sigterm = Instant::now();
    w.terminate().unwrap();
    let status = w.wait_timeout(grace + margin).unwrap_or_else(|e| {
        panic!(
            "the drain outlasted FARM_DRAIN_GRACE + {margin:?} ({:?} after SIGTERM): {e}\n{}",
            sigterm.elapsed(),
            w.log_tail()
        )
    });
    assert_eq!(status.code(), Some(0), "log:\n{}", w.log_tail());
    let (code, body) = in_flight
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("the cut invocation got no answer\n{}", w.log_tail()));
    assert_eq!(
        (code, String::from_utf8_lossy(&body).into_owned()),
        (503, farm_runtime::http::CUT_AT_DEADLINE.to_owned()),
        "the invocation was cut at the deadline and told so"
    );
    let rs = results(&js, &names).await;
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0].task_id, "near-grace");
    assert_eq!(rs[0].status, Status::Ok as i32);
    assert_eq!(
        rs[0].deliveries, 1,
        "finished, not redelivered: {:?}",
        rs[0]
    );
    assert_eq!(stream_len(&js, &names.tasks_stream()).await, 0, "acked");
}

/// While the worker drains, a new `POST /` (the watchdog keeps proxying
/// until its own exit) is answered 503 "draining" at once, while the
/// invocation and the task it accepted before SIGTERM both finish.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_invocation_during_the_drain_is_answered_503_and_nothing_accepted_is_lost() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("wdlate").unwrap();
    let env = dockerfile_env();
    let interval = seconds(value(&env, "healthcheck_interval"));
    let lock_dir = tempfile::tempdir().unwrap();
    let (mut w, port) = spawn_container_worker(&nats.url(), "wdlate", &env, &lock_dir);
    wait_bound(&js, &names).await;
    publish_task(&js, &names, &task("held", 0, r#"{"sleep_ms":6000}"#)).await;
    wait_held(&js, &names, 1).await;
    let in_flight = invoke_in_flight(&w, port, r#"{"sleep_ms":6000,"output":"early"}"#, 1);

    w.terminate().unwrap();
    wait_until(
        "health says draining",
        WAIT,
        Duration::from_millis(20),
        || {
            http(port, "GET", "/_/health", "text/plain", b"").is_some_and(|(code, body)| {
                code == 503 && String::from_utf8_lossy(&body).contains(r#""draining":true"#)
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let (code, body) = http(
        port,
        "POST",
        "/",
        "application/json",
        br#"{"sleep_ms":1,"output":"late"}"#,
    )
    .expect("the draining worker answers a late invocation");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("draining"), "{text}");
    assert!(w.is_running(), "the late answer came during the drain");

    let (code, body) = in_flight
        .join()
        .unwrap()
        .expect("the invocation in flight is answered");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["output"], "early");
    let status = w.wait_timeout(interval).unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", w.log_tail());
    assert_eq!(
        w.log().matches(INVOCATION_STARTED).count(),
        1,
        "the late invocation never reached the handler"
    );
    let rs = results(&js, &names).await;
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0].task_id, "held");
    assert_eq!(rs[0].status, Status::Ok as i32);
    assert_eq!(stream_len(&js, &names.tasks_stream()).await, 0, "acked");
}

/// of-watchdog forwards a request body as it comes, chunked when the caller
/// sent it so: the handler runs on the whole body.
#[test]
fn a_chunked_invocation_runs_the_handler_on_the_whole_body() {
    let env = dockerfile_env();
    let lock_dir = tempfile::tempdir().unwrap();
    // No NATS: synchronous invocations do not need it.
    let nats_url = format!("nats://127.0.0.1:{}", free_port().unwrap());
    let (mut w, port) = spawn_container_worker(&nats_url, "wdchunk", &env, &lock_dir);
    wait_until("health answers", WAIT, Duration::from_millis(20), || {
        http(port, "GET", "/_/health", "text/plain", b"").is_some()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));

    let output = "chunk".repeat(4000);
    let json = format!(r#"{{"sleep_ms":1,"output":"{output}"}}"#);
    let head = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut parts = vec![head.as_bytes().to_vec()];
    // Uneven chunks, each its own write, splitting the JSON anywhere.
    let mut rest = json.as_bytes();
    for len in [1, 7, 4096, 13].into_iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        let mut part = format!("{:x}\r\n", chunk.len()).into_bytes();
        part.extend_from_slice(chunk);
        part.extend_from_slice(b"\r\n");
        parts.push(part);
        rest = tail;
    }
    parts.push(b"0\r\n\r\n".to_vec());
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let (code, body) = http_raw(port, &parts, WAIT).expect("an answer");
    assert_eq!(
        code,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        w.log_tail()
    );
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["output"], output.as_str());

    w.terminate().unwrap();
    let status = w.wait_timeout(WAIT).unwrap();
    assert_eq!(status.code(), Some(0), "{}", w.log_tail());
}
