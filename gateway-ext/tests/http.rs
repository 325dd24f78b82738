//! The HTTP surface over real sockets: reverse proxy (methods, headers,
//! codes, streamed and chunked bodies), basic auth, alerts and scale
//! requests. The upstream is a real HTTP server in the test that echoes what
//! it received; the provider of the managed farm is the in-memory one so
//! every scale call can be checked exactly.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Gateway, config, eventually, farm_spec};
use gateway_ext::provider::{MemProvider, Provider};
use gateway_ext::types::FunctionStatus;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: hyper::HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn echo(
    log: Log,
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let status = parts
        .headers
        .get("x-echo-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(200u16);
    let mut b = Response::builder()
        .status(status)
        .header("x-echo-method", parts.method.as_str())
        .header(
            "x-echo-path",
            parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
        );
    if let Some(a) = parts.headers.get("authorization") {
        b = b.header("x-echo-auth", a);
    }
    if parts.uri.path() == "/chunked" {
        // Three chunks with pauses, no length: the response must be chunked.
        let stream = futures::stream::unfold(0u8, |i| async move {
            if i == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk{i};")))),
                i + 1,
            ))
        });
        return Ok(b.body(BoxBody::new(StreamBody::new(stream))).unwrap());
    }
    Ok(b.body(BoxBody::new(http_body_util::Full::new(body)))
        .unwrap())
}

async fn start_echo() -> (String, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let l2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let log = l2.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |r| echo(log.clone(), r));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (url, log)
}

fn no_discovery() -> [(&'static str, &'static str); 1] {
    [("DISCOVERY_INTERVAL", "off")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_passes_methods_headers_codes_and_bodies() {
    let (up, log) = start_echo().await;
    let gw = Gateway::start(config(&up, &no_discovery()), vec![], None)
        .await
        .unwrap();
    let c = reqwest::Client::new();

    let r = c
        .get(format!("{}/some/path?q=1&r=two", gw.url))
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-echo-method"], "GET");
    assert_eq!(r.headers()["x-echo-path"], "/some/path?q=1&r=two");
    assert_eq!(
        log.lock().unwrap().last().unwrap().headers["x-custom"],
        "kept"
    );

    for (method, code) in [
        ("DELETE", 204u16),
        ("PUT", 404),
        ("PATCH", 418),
        ("POST", 500),
    ] {
        let r = c
            .request(
                method.parse().unwrap(),
                format!("{}/system/functions", gw.url),
            )
            .header("x-echo-status", code.to_string())
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{method}");
        assert_eq!(r.headers()["x-echo-method"], method);
        let seen = log.lock().unwrap().last().unwrap().clone();
        assert_eq!(
            (seen.method.as_str(), &seen.body[..]),
            (method, &b"payload"[..])
        );
    }

    // A large body, byte for byte.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let r = c
        .post(format!("{}/function/echo", gw.url))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), big);

    // A chunked request body arrives whole and still chunked.
    let parts =
        futures::stream::iter(["a", "bb", "ccc"].map(|s| Ok::<_, std::io::Error>(Bytes::from(s))));
    let r = c
        .post(format!("{}/function/echo?x=1", gw.url))
        .body(reqwest::Body::wrap_stream(parts))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), "abbccc");
    let seen = log.lock().unwrap().last().unwrap().clone();
    assert_eq!(seen.headers.get("transfer-encoding").unwrap(), "chunked");
    assert_eq!(seen.path, "/function/echo?x=1");

    // A chunked response streams through, chunk by chunk.
    let r = c.get(format!("{}/chunked", gw.url)).send().await.unwrap();
    assert_eq!(r.headers().get("transfer-encoding").unwrap(), "chunked");
    assert!(r.headers().get("content-length").is_none());
    let mut stream = r.bytes_stream();
    let mut got = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        got.push(chunk.unwrap());
    }
    assert!(got.len() >= 2, "streamed in pieces, got {got:?}");
    assert_eq!(got.concat(), b"chunk0;chunk1;chunk2;");

    // Gateway-compatible invocation metrics for /function/*.
    let metrics = c
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "gateway_function_invocation_total{function_name=\"echo.openfaas-fn\",code=\"200\"} 2"
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        "gateway_functions_seconds_count{function_name=\"echo.openfaas-fn\",code=\"200\"} 2"
    ));
    assert_eq!(
        c.get(format!("{}/healthz", gw.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502() {
    // A port nothing listens on.
    let port = farm_testsupport::free_port().unwrap();
    let gw = Gateway::start(
        config(&format!("http://127.0.0.1:{port}"), &no_discovery()),
        vec![],
        None,
    )
    .await
    .unwrap();
    let r = reqwest::get(format!("{}/function/x", gw.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let m = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains(
        "gateway_function_invocation_total{function_name=\"x.openfaas-fn\",code=\"502\"} 1"
    ));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_on_system_routes_like_the_gateway() {
    let (up, log) = start_echo().await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("basic-auth-user"), "admin\n").unwrap();
    std::fs::write(secrets.path().join("basic-auth-password"), "s3cret\n").unwrap();
    let dir = secrets.path().to_str().unwrap().to_owned();
    let cfg = config(
        &up,
        &[
            ("DISCOVERY_INTERVAL", "off"),
            ("BASIC_AUTH", "true"),
            ("SECRET_MOUNT_PATH", &dir),
        ],
    );
    let gw = Gateway::start(cfg, vec![], Some(Arc::new(MemProvider::new())))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    for path in [
        "/system/functions",
        "/system/autoscaler",
        "/system/alert",
        "/system/scale-function/f",
    ] {
        let r = c.get(format!("{}{path}", gw.url)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"Restricted\""
        );
        let r = c
            .get(format!("{}{path}", gw.url))
            .basic_auth("admin", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} wrong password");
    }
    let before = log.lock().unwrap().len();
    assert_eq!(before, 0, "refused requests never reach the upstream");
    let r = c
        .get(format!("{}/system/functions", gw.url))
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The credentials are forwarded upstream.
    assert_eq!(r.headers()["x-echo-auth"], "Basic YWRtaW46czNjcmV0");
    let r = c
        .get(format!("{}/system/autoscaler", gw.url))
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Function invocations and health are not protected, as in the gateway.
    assert_eq!(
        c.get(format!("{}/function/f", gw.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/healthz", gw.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_auth_secrets_refuse_to_start() {
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().to_str().unwrap().to_owned();
    let cfg = config(
        "http://127.0.0.1:1",
        &[
            ("DISCOVERY_INTERVAL", "off"),
            ("BASIC_AUTH", "true"),
            ("SECRET_MOUNT_PATH", &dir),
        ],
    );
    let e = Gateway::start(cfg, vec![], None).await.err().unwrap();
    assert!(
        matches!(e, gateway_ext::StartError::AuthSecret { .. }),
        "{e}"
    );
}

fn worker(name: &str, replicas: u64) -> FunctionStatus {
    FunctionStatus {
        name: name.into(),
        image: "img".into(),
        replicas,
        available_replicas: replicas,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_managed_unmanaged_malformed_unknown_and_scale_requests() {
    let (up, log) = start_echo().await;
    let mem = MemProvider::new();
    mem.insert(worker("managed-worker", 1));
    mem.insert(worker("other-fn", 1));
    // A long interval: only the first tick and the requests below decide.
    let farm = farm_spec(
        "alerted",
        "managed-worker",
        "openfaas-ce",
        &[
            ("interval", "1h"),
            ("min", "1"),
            ("max", "10"),
            ("queueing-floor", "false"),
        ],
    );
    let provider: Arc<dyn Provider> = Arc::new(mem.clone());
    let gw = Gateway::start(config(&up, &no_discovery()), vec![farm], Some(provider))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    eventually(Duration::from_secs(10), "first decision", || async {
        gw.farm("alerted")
            .await
            .filter(|f| f["decisions"] == 1)
            .map(|_| ())
    })
    .await;
    let alert_url = format!("{}/system/alert", gw.url);
    let calls = mem.calls().len();

    // Malformed -> 400, nothing scaled, nothing forwarded.
    let r = c.post(&alert_url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(mem.calls().len(), calls);
    assert!(log.lock().unwrap().is_empty());

    // Unknown function -> forwarded unchanged: the gateway answers for it
    // as it would without gateway-ext; nothing scaled here.
    let unknown = r#"{"status":"firing","receiver":"scale-up","alerts":[{"status":"firing","labels":{"alertname":"APIHighInvocationRate","function_name":"ghost"}}]}"#;
    let r = c.post(&alert_url).body(unknown).send().await.unwrap();
    assert_eq!(r.status(), 200, "the upstream's answer");
    assert_eq!(mem.calls().len(), calls);
    let seen = log.lock().unwrap().pop().unwrap();
    assert_eq!(&seen.body[..], unknown.as_bytes(), "byte for byte");
    assert!(log.lock().unwrap().is_empty());

    // Unmanaged -> forwarded unchanged.
    let unmanaged = r#"{"status":"firing","receiver":"scale-up","alerts":[{"status":"firing","labels":{"alertname":"APIHighInvocationRate","function_name":"other-fn"}}],"groupKey":"{}:{alertname=\"x\"}"}"#;
    let r = c
        .post(&alert_url)
        .header("x-echo-status", "202")
        .body(unmanaged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "the upstream's answer");
    let seen = log.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/system/alert")
    );
    assert_eq!(&seen.body[..], unmanaged.as_bytes(), "byte for byte");
    assert_eq!(mem.calls().len(), calls);

    // Managed -> an immediate decision through the policy's on_alert.
    let managed = r#"{"status":"firing","receiver":"scale-up","alerts":[{"status":"firing","labels":{"alertname":"APIHighInvocationRate","function_name":"managed-worker"}}]}"#;
    let r = c.post(&alert_url).body(managed).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let reply: serde_json::Value = r.json().await.unwrap();
    let d = &reply["decisions"][0];
    assert_eq!(d["farm"], "alerted");
    assert_eq!(d["policy"], "openfaas-ce");
    let desired = d["desired"].as_u64().unwrap();
    assert!(desired > d["previous"].as_u64().unwrap(), "{reply}");
    assert_eq!(mem.function("managed-worker").unwrap().replicas, desired);
    assert!(
        mem.calls()
            .contains(&format!("scale managed-worker {desired}"))
    );
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "managed alerts are not forwarded"
    );
    let st = gw.farm("alerted").await.unwrap();
    assert_eq!(st["last_decision"]["trigger"], "alert");

    // Resolved -> back to min (the CE rule).
    let resolved = managed.replace("\"firing\"", "\"resolved\"");
    let r = c.post(&alert_url).body(resolved).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mem.function("managed-worker").unwrap().replicas, 1);

    // Scale request for a managed function: a floor, applied at once.
    let r = c
        .post(format!("{}/system/scale-function/managed-worker", gw.url))
        .body(r#"{"serviceName":"managed-worker","replicas":6}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(mem.function("managed-worker").unwrap().replicas, 6);
    let st = gw.farm("alerted").await.unwrap();
    assert_eq!(st["request_floor"][0], 6);
    assert_eq!(st["last_decision"]["trigger"], "scale-request");
    // A resolved alert cannot go below the floor while it holds.
    let resolved = managed.replace("\"firing\"", "\"resolved\"");
    c.post(&alert_url).body(resolved).send().await.unwrap();
    assert_eq!(mem.function("managed-worker").unwrap().replicas, 6);
    let bad = c
        .post(format!("{}/system/scale-function/managed-worker", gw.url))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Scale request for another function: forwarded.
    let r = c
        .post(format!("{}/system/scale-function/other-fn", gw.url))
        .body(r#"{"serviceName":"other-fn","replicas":3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = log.lock().unwrap().last().unwrap().clone();
    assert_eq!(seen.path, "/system/scale-function/other-fn");
    assert_eq!(
        mem.function("other-fn").unwrap().replicas,
        1,
        "not scaled by gateway-ext"
    );

    let m = c
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("gateway_ext_decisions_total{farm=\"alerted\",trigger=\"alert\",policy=\"openfaas-ce\"} 3"), "{m}");
    assert!(
        m.contains("gateway_ext_errors_total{farm=\"\",kind=\"alert\"} 1"),
        "{m}"
    );
    gw.shutdown().await;
}

/// A farm function with `com.rust-farm.role: <role>` and, when given, the
/// `com.rust-farm.farm` annotation.
fn farm_function(name: &str, role: &str, farm: Option<&str>) -> FunctionStatus {
    let mut f = worker(name, 1);
    f.labels.insert("com.rust-farm.role".into(), role.into());
    if let Some(farm) = farm {
        f.annotations
            .insert("com.rust-farm.farm".into(), farm.into());
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_for_a_farms_emitter_drive_the_farms_decision() {
    let (up, log) = start_echo().await;
    let mem = MemProvider::new();
    // The stack.yml shape: emitter, worker (declaring the farm) and
    // collector, all annotated with the farm's name.
    let mut w = farm_function("fe-worker", "worker", Some("fe"));
    w.annotations
        .insert("com.rust-farm.policy".into(), "fixed:3".into());
    w.annotations
        .insert("com.rust-farm.interval".into(), "1h".into());
    mem.insert(w);
    mem.insert(farm_function("fe-emitter", "emitter", Some("fe")));
    mem.insert(farm_function("fe-collector", "collector", Some("fe")));
    // An emitter of a farm gateway-ext does not manage, and one that names none.
    mem.insert(farm_function("stray-emitter", "emitter", Some("nobody")));
    mem.insert(farm_function("plain-emitter", "emitter", None));
    let provider: Arc<dyn Provider> = Arc::new(mem.clone());
    // One discovery at start (the interval is long): the farm comes from
    // the worker's annotations; the companions declare nothing.
    let gw = Gateway::start(
        config(&up, &[("DISCOVERY_INTERVAL", "1h")]),
        vec![],
        Some(provider),
    )
    .await
    .unwrap();
    let c = reqwest::Client::new();
    let st = c
        .get(format!("{}/system/autoscaler", gw.url))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let farms: Vec<&str> = st["farms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["farm"].as_str().unwrap())
        .collect();
    assert_eq!(farms, vec!["fe"], "{st}");
    assert_eq!(st["farms"][0]["function"], "fe-worker");
    eventually(Duration::from_secs(10), "first decision", || async {
        gw.farm("fe")
            .await
            .filter(|f| f["decisions"] == 1)
            .map(|_| ())
    })
    .await;
    // The first tick applied the fixed policy; put the worker back at 1 so
    // the alert's decision is visible as a change.
    mem.insert(farm_function("fe-worker", "worker", Some("fe")));
    let alert = |function: &str, status: &str| {
        format!(
            r#"{{"status":"{status}","receiver":"scale-up","alerts":[{{"status":"{status}","labels":{{"alertname":"APIHighInvocationRate","function_name":"{function}"}}}}]}}"#
        )
    };
    let alert_url = format!("{}/system/alert", gw.url);

    // The CE alert names the emitter (it receives the HTTP load): the
    // farm's policy decides for the worker; the emitter is not scaled and
    // nothing is forwarded.
    let r = c
        .post(&alert_url)
        .body(alert("fe-emitter", "firing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reply: serde_json::Value = r.json().await.unwrap();
    let d = &reply["decisions"][0];
    assert_eq!(
        (&d["function"], &d["farm"], &d["policy"], &d["desired"]),
        (
            &serde_json::json!("fe-emitter"),
            &serde_json::json!("fe"),
            &serde_json::json!("fixed:3"),
            &serde_json::json!(3)
        ),
        "{reply}"
    );
    assert_eq!(mem.function("fe-worker").unwrap().replicas, 3);
    assert_eq!(mem.function("fe-emitter").unwrap().replicas, 1);
    assert!(log.lock().unwrap().is_empty(), "not forwarded");
    let st = gw.farm("fe").await.unwrap();
    assert_eq!(st["last_decision"]["trigger"], "alert");
    let note = st["last_decision"]["note"].as_str().unwrap();
    assert!(
        note.contains("alert (firing)") && note.contains("alerted function fe-emitter"),
        "{note}"
    );

    // Resolved: the policy decides again (no drop to min).
    let r = c
        .post(&alert_url)
        .body(alert("fe-emitter", "resolved"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mem.function("fe-worker").unwrap().replicas, 3);

    // Companions of unmanaged farms and unannotated emitters: forwarded
    // unchanged, as the gateway would get them.
    for f in ["stray-emitter", "plain-emitter"] {
        let body = alert(f, "firing");
        let r = c.post(&alert_url).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200, "{f}");
        let seen = log.lock().unwrap().last().unwrap().clone();
        assert_eq!(seen.path, "/system/alert");
        assert_eq!(&seen.body[..], body.as_bytes(), "{f}: byte for byte");
    }
    // A scale request for the emitter is the emitter's own: forwarded, not
    // a floor of the farm.
    let r = c
        .post(format!("{}/system/scale-function/fe-emitter", gw.url))
        .body(r#"{"serviceName":"fe-emitter","replicas":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        log.lock().unwrap().last().unwrap().path,
        "/system/scale-function/fe-emitter"
    );
    assert!(gw.farm("fe").await.unwrap()["request_floor"].is_null());
    gw.shutdown().await;
}

/// An Alertmanager webhook payload as Alertmanager posts it for the CE
/// gateway's `APIHighInvocationRate` rule: `function_name` carries the
/// namespace (`NAME.openfaas-fn`), as the gateway's metrics label it.
fn alertmanager_payload(functions: &[&str], status: &str) -> String {
    let alerts: Vec<String> = functions
        .iter()
        .map(|f| {
            format!(
                r#"{{"status":"{status}","labels":{{"alertname":"APIHighInvocationRate","code":"200","function_name":"{f}","instance":"gateway:8082","job":"openfaas-gateway","service":"gateway","severity":"major"}},"annotations":{{"description":"High invocation total on \"{f}\"","summary":"High invocation total on \"{f}\""}},"startsAt":"2026-01-01T10:00:00.000Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph?g0.expr=...","fingerprint":"0123456789abcdef"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"receiver":"scale-up","status":"{status}","alerts":[{}],"groupLabels":{{"alertname":"APIHighInvocationRate","service":"gateway"}},"commonLabels":{{"alertname":"APIHighInvocationRate","service":"gateway","severity":"major"}},"commonAnnotations":{{}},"externalURL":"http://alertmanager:9093","version":"4","groupKey":"{{}}:{{alertname=\"APIHighInvocationRate\", service=\"gateway\"}}","truncatedAlerts":0}}"#,
        alerts.join(",")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_name_functions_with_their_namespace() {
    let (up, log) = start_echo().await;
    let mem = MemProvider::new();
    mem.insert(worker("ns-worker", 1));
    mem.insert(worker("plain", 1));
    mem.insert(farm_function("ns-emitter", "emitter", Some("ns")));
    let farm = farm_spec(
        "ns",
        "ns-worker",
        "fixed:4",
        &[("interval", "1h"), ("min", "1"), ("max", "10")],
    );
    let provider: Arc<dyn Provider> = Arc::new(mem.clone());
    let gw = Gateway::start(config(&up, &no_discovery()), vec![farm], Some(provider))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    eventually(Duration::from_secs(10), "first decision", || async {
        gw.farm("ns")
            .await
            .filter(|f| f["decisions"] == 1)
            .map(|_| ())
    })
    .await;
    let alert_url = format!("{}/system/alert", gw.url);
    mem.insert(worker("ns-worker", 1));
    let calls = mem.calls().len();

    // Unmanaged, unknown, or in another namespace: forwarded byte for byte
    // with the upstream's answer, never a 500 and nothing scaled here.
    for f in [
        "plain.openfaas-fn",
        "ghost.openfaas-fn",
        "ns-worker.staging",
        "plain",
    ] {
        let body = alertmanager_payload(&[f], "firing");
        let r = c
            .post(&alert_url)
            .header("x-echo-status", "202")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{f}: {}", r.text().await.unwrap());
        let seen = log.lock().unwrap().pop().unwrap();
        assert_eq!(seen.path, "/system/alert");
        assert_eq!(&seen.body[..], body.as_bytes(), "{f}: byte for byte");
        assert_eq!(mem.calls().len(), calls, "{f}: nothing scaled");
    }

    // The managed worker and the farm's emitter, named with the namespace:
    // the farm's policy decides; nothing forwarded.
    for f in ["ns-worker.openfaas-fn", "ns-emitter.openfaas-fn"] {
        mem.insert(worker("ns-worker", 1));
        let r = c
            .post(&alert_url)
            .body(alertmanager_payload(&[f], "firing"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{f}");
        let reply: serde_json::Value = r.json().await.unwrap();
        assert_eq!(reply["decisions"][0]["function"], f, "{reply}");
        assert_eq!(reply["decisions"][0]["farm"], "ns", "{reply}");
        assert_eq!(reply["decisions"][0]["desired"], 4, "{reply}");
        assert_eq!(mem.function("ns-worker").unwrap().replicas, 4, "{f}");
        assert!(log.lock().unwrap().is_empty(), "{f}: not forwarded");
    }
    assert_eq!(mem.function("ns-emitter").unwrap().replicas, 1);

    // One group with both: the managed alert decides, the other part goes
    // to the gateway as a payload of its own.
    let r = c
        .post(&alert_url)
        .body(alertmanager_payload(
            &["ns-worker.openfaas-fn", "plain.openfaas-fn"],
            "firing",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reply: serde_json::Value = r.json().await.unwrap();
    assert_eq!(reply["forwarded"], 1, "{reply}");
    assert_eq!(reply["decisions"].as_array().unwrap().len(), 1, "{reply}");
    let seen = log.lock().unwrap().pop().unwrap();
    let part: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(part["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(
        part["alerts"][0]["labels"]["function_name"],
        "plain.openfaas-fn"
    );
    assert_eq!(part["version"], "4");
    assert_eq!(part["groupLabels"]["alertname"], "APIHighInvocationRate");

    // A scale request naming the managed worker with its namespace is the
    // farm's floor.
    let r = c
        .post(format!(
            "{}/system/scale-function/ns-worker.openfaas-fn",
            gw.url
        ))
        .body(r#"{"serviceName":"ns-worker","replicas":6,"namespace":"openfaas-fn"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(gw.farm("ns").await.unwrap()["request_floor"][0], 6);
    assert!(log.lock().unwrap().is_empty());

    let m = c
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !m.contains("gateway_ext_errors_total{farm=\"\",kind=\"alert\"}"),
        "{m}"
    );

    // Invocations count under the provider's name however the client names
    // the function (faas-cli invokes NAME.openfaas-fn), so the alert rules
    // see one series per function.
    for path in ["/function/plain.openfaas-fn", "/function/plain/x"] {
        let r = c.post(format!("{}{path}", gw.url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let m = c
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(
            "gateway_function_invocation_total{function_name=\"plain.openfaas-fn\",code=\"200\"} 2"
        ),
        "{m}"
    );
    gw.shutdown().await;
}

/// The root stack.yml's three functions as a provider lists them after
/// `faas-cli deploy` (labels and annotations as written there).
fn stack_yml_functions() -> Vec<FunctionStatus> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack.yml");
    let stack: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let text = |f: &serde_yaml::Value, key: &str| -> std::collections::BTreeMap<String, String> {
        f[key]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let v = match v {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                };
                (k.as_str().unwrap().to_owned(), v)
            })
            .collect()
    };
    ["demo-emitter", "demo-worker", "demo-collector"]
        .iter()
        .map(|name| {
            let f = &stack["functions"][*name];
            let mut st = worker(name, 1);
            st.image = f["image"].as_str().unwrap().to_owned();
            st.labels = text(f, "labels");
            st.annotations = text(f, "annotations");
            st
        })
        .collect()
}

/// The CE alert for the root stack.yml's farm names its emitter, with the
/// namespace, as the gateway's metrics label it: the alert reaches the
/// demo farm's policy (the worker's `com.rust-farm.policy`), which gateway-ext
/// discovered from the worker alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_on_the_stack_yml_emitter_reaches_the_farms_policy() {
    let (up, log) = start_echo().await;
    let mem = MemProvider::new();
    let functions = stack_yml_functions();
    let policy = functions[1].annotations["com.rust-farm.policy"].clone();
    for f in functions {
        mem.insert(f);
    }
    let provider: Arc<dyn Provider> = Arc::new(mem.clone());
    let gw = Gateway::start(
        config(&up, &[("DISCOVERY_INTERVAL", "1h")]),
        vec![],
        Some(provider),
    )
    .await
    .unwrap();
    let c = reqwest::Client::new();
    let st: serde_json::Value = c
        .get(format!("{}/system/autoscaler", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let farms: Vec<(&str, &str)> = st["farms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["farm"].as_str().unwrap(), f["function"].as_str().unwrap()))
        .collect();
    assert_eq!(farms, vec![("demo", "demo-worker")], "{st}");
    assert_eq!(st["discovery_errors"], serde_json::json!({}), "{st}");

    for f in ["demo-emitter.openfaas-fn", "demo-emitter"] {
        let r = c
            .post(format!("{}/system/alert", gw.url))
            .body(alertmanager_payload(&[f], "firing"))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let reply: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{f}: {reply}");
        let d = &reply["decisions"][0];
        assert_eq!(d["farm"], "demo", "{f}: {reply}");
        assert_eq!(d["policy"], policy.as_str(), "{f}: {reply}");
        assert_eq!(reply["forwarded"], 0, "{f}: {reply}");
    }
    assert!(log.lock().unwrap().is_empty(), "nothing forwarded");
    let st = gw.farm("demo").await.unwrap();
    assert_eq!(st["last_decision"]["trigger"], "alert");
    assert_eq!(mem.function("demo-emitter").unwrap().replicas, 1);
    gw.shutdown().await;
}
