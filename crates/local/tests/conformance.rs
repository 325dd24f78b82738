//! Provider conformance: every route's status code and JSON shape, chunked
//! request bodies through `/function/{name}`, and the error cases, against a
//! real provider running real replica processes (the fixture binary).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestProvider, fixture};
use farm_local::{FunctionResources, OPENFAAS_SECRETS_PATH, parse_rfc3339};
use futures::StreamExt;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_shapes_and_status_codes() {
    let p = TestProvider::start(|c, _| {
        c.service_aliases =
            farm_local::ServiceAliases::parse("nats.openfaas:4222=127.0.0.1:4333").unwrap()
    })
    .await;
    std::fs::write(p.tmp.path().join("secrets/api-key"), "s3cret").unwrap();

    // Fixed routes.
    let r = p.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "OK");
    let info: Value = p.get("/system/info").await.json().await.unwrap();
    assert_eq!(info["provider"], "farm-local");
    assert_eq!(info["orchestration"], "process");
    assert_eq!(info["version"]["release"], env!("CARGO_PKG_VERSION"));
    assert!(info["version"]["sha"].is_string());
    let ns: Value = p.get("/system/namespaces").await.json().await.unwrap();
    assert_eq!(ns, serde_json::json!(["openfaas-fn"]));
    let list: Value = p.get("/system/functions").await.json().await.unwrap();
    assert_eq!(list, serde_json::json!([]));

    // Deploy: 202, then a second POST of the same name is a conflict.
    let mut d = fixture("echo");
    d.env_vars = BTreeMap::from([
        ("GREETING".to_string(), "hi".to_string()),
        (
            "NATS_URL".to_string(),
            "nats://nats.openfaas:4222".to_string(),
        ),
        (
            "KEY_FILE".to_string(),
            format!("{OPENFAAS_SECRETS_PATH}api-key"),
        ),
    ]);
    d.secrets = vec!["api-key".into()];
    d.labels = BTreeMap::from([("com.openfaas.scale.min".to_string(), "1".to_string())]);
    d.annotations = BTreeMap::from([("topic".to_string(), "farm".to_string())]);
    d.limits = Some(FunctionResources {
        memory: "128Mi".into(),
        cpu: String::new(),
    });
    assert_eq!(p.deploy(&d).await.status(), 202);
    assert_eq!(p.deploy(&d).await.status(), 409);

    // Status JSON, field names as faas-provider spells them.
    let raw: Value = p.get("/system/function/echo").await.json().await.unwrap();
    for key in [
        "name",
        "image",
        "namespace",
        "envVars",
        "labels",
        "annotations",
        "secrets",
        "limits",
        "replicas",
        "availableReplicas",
        "invocationCount",
        "createdAt",
    ] {
        assert!(raw.get(key).is_some(), "missing {key} in {raw}");
    }
    assert_eq!(raw["name"], "echo");
    assert_eq!(raw["namespace"], "openfaas-fn");
    assert_eq!(raw["replicas"], 1);
    assert_eq!(raw["limits"], serde_json::json!({"memory": "128Mi"}));
    assert!(parse_rfc3339(raw["createdAt"].as_str().unwrap()).is_some());
    let s = p.wait_counts("echo", 1, 1).await;
    assert_eq!(s.invocation_count, 0.0);
    assert!(s.usage.is_some_and(|u| u.total_memory_bytes > 0.0));

    // A chunked request body is streamed to a replica and echoed back.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..5)
        .map(|i| Ok(format!("chunk-{i};").repeat(1000).into_bytes()))
        .collect();
    let expected: Vec<u8> = chunks
        .iter()
        .flat_map(|c| c.as_ref().unwrap().clone())
        .collect();
    let r = p
        .http
        .post(p.url("/function/echo"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-path"], "/");
    assert!(
        r.headers()["x-instance"]
            .to_str()
            .unwrap()
            .starts_with("echo-")
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), expected.as_slice());

    // Sub-paths, query strings and methods are forwarded.
    let r = p
        .http
        .put(p.url("/function/echo/a/b?x=1"))
        .body("put")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-path"], "/a/b");
    assert_eq!(r.text().await.unwrap(), "put");
    let r = p
        .http
        .post(p.url("/function/echo/"))
        .body("slash")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-path"], "/");

    // The replica sees its environment, port and secrets as files.
    let env = |k: &str| {
        let p = &p;
        let k = k.to_string();
        async move {
            p.get(&format!("/function/echo/env/{k}"))
                .await
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(env("GREETING").await, "hi");
    // A cluster service address resolves to its local alias in the
    // replica's environment; the deployment keeps the value it was sent.
    assert_eq!(env("NATS_URL").await, "nats://127.0.0.1:4333");
    assert_eq!(
        p.status("echo").await.env_vars["NATS_URL"],
        "nats://nats.openfaas:4222"
    );
    assert!(env("PORT").await.parse::<u16>().is_ok());
    assert_eq!(env("PORT").await, env("FARM_HTTP_PORT").await);
    assert!(env("HOSTNAME").await.starts_with("echo-"));
    let key_file = env("KEY_FILE").await;
    assert!(key_file.starts_with(&env("FARM_SECRETS_DIR").await));
    let secret = p
        .get(&format!("/function/echo/file?path={key_file}"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(secret, "s3cret");

    let s = p.status("echo").await;
    assert!(s.invocation_count >= 11.0, "{}", s.invocation_count);
    let list: Vec<farm_local::FunctionStatus> =
        p.get("/system/functions").await.json().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "echo");

    // Logs: NDJSON with faas-provider's fields; tail; follow.
    let lines = p.log_lines("echo").await;
    assert!(
        lines.iter().any(|l| l.text.contains("listening")),
        "{lines:?}"
    );
    let raw = p.get("/system/logs?name=echo&tail=1").await;
    assert_eq!(raw.headers()["content-type"], "application/x-ndjson");
    let text = raw.text().await.unwrap();
    assert_eq!(text.lines().count(), 1);
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for key in ["name", "namespace", "instance", "timestamp", "text"] {
        assert!(line.get(key).is_some(), "missing {key} in {line}");
    }
    let follow = p.get("/system/logs?name=echo&follow=true&tail=0").await;
    assert_eq!(follow.status(), 200);
    let mut stream = follow.bytes_stream();
    assert_eq!(p.scale("echo", 2).await, 202);
    let followed = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = String::new();
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if buf.contains("listening") {
                return buf;
            }
        }
        buf
    })
    .await
    .expect("a followed log line");
    assert!(followed.contains("listening"));
    drop(stream);
    p.wait_counts("echo", 2, 2).await;

    // Round-robin over the available replicas.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let r = p
            .http
            .post(p.url("/function/echo"))
            .body("x")
            .send()
            .await
            .unwrap();
        seen.insert(r.headers()["x-instance"].to_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // Scale to zero, then an invocation scales from zero.
    assert_eq!(p.scale("echo", 0).await, 202);
    p.wait_counts("echo", 0, 0).await;
    let r = p
        .http
        .post(p.url("/function/echo"))
        .body("wake")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "wake");
    assert_eq!(p.status("echo").await.replicas, 1);

    // Update: replicas roll over to the new spec and keep their count.
    d.env_vars.insert("GREETING".into(), "bye".into());
    let r = p
        .http
        .put(p.url("/system/functions"))
        .json(&d)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    p.wait_status("echo", Duration::from_secs(20), |s| {
        s.env_vars.get("GREETING").is_some_and(|g| g == "bye")
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env("GREETING").await != "bye" {
        assert!(
            std::time::Instant::now() < deadline,
            "update did not roll over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.wait_counts("echo", 1, 1).await;

    // Delete: 202, then it is gone.
    let r = p
        .http
        .delete(p.url("/system/functions"))
        .body(r#"{"functionName":"echo"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(p.get("/system/function/echo").await.status(), 404);
    assert_eq!(
        p.http
            .post(p.url("/function/echo"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    p.shutdown().await;
}

/// Function names as faas-cli 0.18 and the CE gateway send them:
/// `faas-cli invoke NAME` posts to `/function/NAME.openfaas-fn`, the
/// gateway's scale-from-zero asks `GET /system/function/NAME` and scales with
/// `?namespace=openfaas-fn`, `faas-cli remove` and `describe` name the
/// namespace too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_the_default_namespace() {
    let p = TestProvider::start(|_, _| {}).await;
    assert_eq!(p.deploy(&fixture("nsfn")).await.status(), 202);
    p.wait_counts("nsfn", 1, 1).await;

    // faas-cli invoke (text/plain by default).
    let invoke = |path: &str| {
        p.http
            .post(p.url(path))
            .header("content-type", "text/plain")
            .body("hello")
            .send()
    };
    let r = invoke("/function/nsfn.openfaas-fn").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["x-instance"]
            .to_str()
            .unwrap()
            .starts_with("nsfn-")
    );
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = invoke("/function/nsfn.openfaas-fn/sub?x=1").await.unwrap();
    assert_eq!(r.headers()["x-path"], "/sub");

    // Status (faas-cli describe, the gateway's scale-from-zero query).
    let r = p
        .get("/system/function/nsfn.openfaas-fn?namespace=openfaas-fn")
        .await;
    assert_eq!(r.status(), 200);
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["name"], "nsfn");
    assert_eq!(st["invocationCount"], 2.0);
    assert_eq!(
        p.get("/system/function/nsfn.openfaas-fn/starts")
            .await
            .status(),
        200
    );
    let r = p.get("/system/logs?name=nsfn.openfaas-fn&tail=1").await;
    assert_eq!(r.status(), 200);

    // Scale to zero by the namespaced name, then scale from zero on invoke.
    let r = p
        .post_json(
            "/system/scale-function/nsfn.openfaas-fn?namespace=openfaas-fn",
            r#"{"serviceName":"nsfn","replicas":0,"namespace":"openfaas-fn"}"#,
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    p.wait_counts("nsfn", 0, 0).await;
    let r = invoke("/function/nsfn.openfaas-fn").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(p.status("nsfn").await.replicas, 1);

    // The real OpenFaaS CE gateway's scale from zero, as recorded in front
    // of farm-local (`scale_from_zero=true`): the status with `usage=false`,
    // a scale call on the plain name with the namespace as a query, the
    // status again until a replica is available, then the namespaced invoke.
    let status = "/system/function/nsfn?namespace=openfaas-fn&usage=false";
    for n in [0, 1] {
        let body = format!(r#"{{"serviceName":"nsfn","replicas":{n}}}"#);
        let r = p
            .post_json("/system/scale-function/nsfn?namespace=openfaas-fn", &body)
            .await;
        assert_eq!(r.status(), 202);
        p.wait_counts("nsfn", n, n).await;
        let st: Value = p.get(status).await.json().await.unwrap();
        assert_eq!(
            (st["replicas"].clone(), st["availableReplicas"].clone()),
            (n.into(), n.into())
        );
    }
    assert_eq!(
        invoke("/function/nsfn.openfaas-fn").await.unwrap().status(),
        200
    );

    // Another namespace: a 400 that names it, on every route.
    for (method, path, body) in [
        ("POST", "/function/nsfn.dev", "x"),
        ("GET", "/system/function/nsfn.dev", ""),
        (
            "POST",
            "/system/scale-function/nsfn.dev",
            r#"{"serviceName":"nsfn","replicas":2}"#,
        ),
        (
            "DELETE",
            "/system/functions",
            r#"{"functionName":"nsfn.dev"}"#,
        ),
        ("GET", "/system/logs?name=nsfn.dev", ""),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = p
            .http
            .request(m, p.url(path))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 400, "{method} {path}: {text}");
        assert!(
            text.contains("\"dev\"") && text.contains("openfaas-fn"),
            "{method} {path}: {text}"
        );
    }
    assert_eq!(p.status("nsfn").await.replicas, 1);

    // A function whose own name has a dot is still found by that name.
    assert_eq!(p.deploy(&fixture("v1.2")).await.status(), 202);
    p.wait_counts("v1.2", 1, 1).await;
    assert_eq!(invoke("/function/v1.2").await.unwrap().status(), 200);
    assert_eq!(
        invoke("/function/v1.2.openfaas-fn").await.unwrap().status(),
        200
    );

    // faas-cli remove: by the namespaced name too.
    let r = p
        .http
        .delete(p.url("/system/functions"))
        .body(r#"{"functionName":"nsfn.openfaas-fn","namespace":"openfaas-fn"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(p.get("/system/function/nsfn").await.status(), 404);
    assert_eq!(
        p.get("/system/function/nsfn.openfaas-fn").await.status(),
        404
    );
    p.shutdown().await;
}

/// faas-cli 0.18's secret commands: `secret list` GETs, `create` POSTs,
/// `update` PUTs, `remove` DELETEs /system/secrets (with `?namespace=` on
/// list). Not a bare 404: a 501 whose body says where secrets go instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_routes_answer_501_saying_what_to_do() {
    let p = TestProvider::start(|_, _| {}).await;
    for (method, path, body) in [
        ("GET", "/system/secrets?namespace=openfaas-fn", ""),
        (
            "POST",
            "/system/secrets",
            r#"{"name":"api-key","namespace":"openfaas-fn","value":"s3cret"}"#,
        ),
        (
            "PUT",
            "/system/secrets",
            r#"{"name":"api-key","namespace":"openfaas-fn","value":"n3w"}"#,
        ),
        (
            "DELETE",
            "/system/secrets",
            r#"{"name":"api-key","namespace":"openfaas-fn"}"#,
        ),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = p
            .http
            .request(m, p.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 501, "{method} {path}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains("/system/secrets") && text.contains("FARM_LOCAL_SECRETS_DIR"),
            "{method}: {text}"
        );
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_cases() {
    let p = TestProvider::start(|c, _| c.max_replicas = 8).await;
    assert_eq!(p.deploy(&fixture("f")).await.status(), 202);

    let cases: Vec<(&str, &str, &str, u16)> = vec![
        // Unknown function.
        ("GET", "/system/function/nope", "", 404),
        (
            "POST",
            "/system/scale-function/nope",
            r#"{"serviceName":"nope","replicas":1}"#,
            404,
        ),
        (
            "PUT",
            "/system/functions",
            r#"{"service":"nope","image":"fixture"}"#,
            404,
        ),
        (
            "DELETE",
            "/system/functions",
            r#"{"functionName":"nope"}"#,
            404,
        ),
        ("POST", "/function/nope", "x", 404),
        ("GET", "/system/logs?name=nope", "", 404),
        // Scale bodies.
        (
            "POST",
            "/system/scale-function/f",
            r#"{"serviceName":"f","replicas":-1}"#,
            400,
        ),
        (
            "POST",
            "/system/scale-function/f",
            r#"{"serviceName":"f","replicas":"two"}"#,
            400,
        ),
        (
            "POST",
            "/system/scale-function/f",
            r#"{"serviceName":"f","replicas":1.5}"#,
            400,
        ),
        (
            "POST",
            "/system/scale-function/f",
            r#"{"serviceName":"f"}"#,
            400,
        ),
        (
            "POST",
            "/system/scale-function/f",
            r#"{"serviceName":"g","replicas":1}"#,
            400,
        ),
        (
            "POST",
            "/system/scale-function/f",
            r#"{"serviceName":"f","replicas":9}"#,
            400,
        ),
        ("POST", "/system/scale-function/f", "{bad json", 400),
        ("POST", "/system/scale-function/f", "", 400),
        (
            "POST",
            "/system/scale-function/f?namespace=other",
            r#"{"replicas":1}"#,
            400,
        ),
        // Deploy bodies.
        ("POST", "/system/functions", "{bad json", 400),
        ("POST", "/system/functions", "[]", 400),
        (
            "POST",
            "/system/functions",
            r#"{"service":"g","image":"not-built"}"#,
            400,
        ),
        (
            "POST",
            "/system/functions",
            r#"{"service":"bad/name","image":"fixture"}"#,
            400,
        ),
        (
            "POST",
            "/system/functions",
            r#"{"service":"g","image":"fixture","secrets":["missing"]}"#,
            400,
        ),
        (
            "POST",
            "/system/functions",
            r#"{"service":"g","image":"fixture","namespace":"other"}"#,
            400,
        ),
        (
            "POST",
            "/system/functions",
            r#"{"service":"g","image":"fixture","labels":{"com.openfaas.scale.min":"-1"}}"#,
            400,
        ),
        (
            "POST",
            "/system/functions",
            r#"{"service":"g","image":"fixture","envProcess":"/bin/sh"}"#,
            400,
        ),
        ("DELETE", "/system/functions", "{", 400),
        // Logs queries.
        ("GET", "/system/logs", "", 422),
        ("GET", "/system/logs?name=f&tail=many", "", 422),
        ("GET", "/system/logs?name=f&since=yesterday", "", 422),
        // Methods.
        ("PATCH", "/system/functions", "", 405),
    ];
    for (method, path, body, code) in cases {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = p
            .http
            .request(m, p.url(path))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, code, "{method} {path} {body}: {text}");
        if code == 400 && body.starts_with("{bad") {
            assert!(
                text.contains("line 1"),
                "parse error should say where: {text}"
            );
        }
    }
    // Nothing was changed by the refused requests.
    assert_eq!(p.status("f").await.replicas, 1);

    // No body makes the server panic or answer 5xx.
    let mut bodies: Vec<Vec<u8>> = vec![
        (0u8..=255).collect(),
        "[".repeat(10_000).into_bytes(),
        b"null".to_vec(),
    ];
    bodies.push(br#"{"service":"f","image":"fixture","envVars":{"a":1}}"#.to_vec());
    bodies.push(br#"{"serviceName":"f","replicas":18446744073709551616}"#.to_vec());
    for body in bodies {
        for path in ["/system/functions", "/system/scale-function/f"] {
            for m in [
                reqwest::Method::POST,
                reqwest::Method::PUT,
                reqwest::Method::DELETE,
            ] {
                let r = p
                    .http
                    .request(m.clone(), p.url(path))
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_client_error(), "{m} {path}: {}", r.status());
            }
        }
    }
    assert_eq!(p.get("/healthz").await.status(), 200);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_protects_system_routes() {
    let p = TestProvider::start(|c, tmp| {
        let auth = tmp.join("auth");
        std::fs::create_dir_all(&auth).unwrap();
        std::fs::write(auth.join(farm_local::USER_FILE), "admin\n").unwrap();
        std::fs::write(auth.join(farm_local::PASSWORD_FILE), "pw\n").unwrap();
        c.basic_auth = true;
    })
    .await;
    for path in [
        "/system/functions",
        "/system/info",
        "/system/namespaces",
        "/system/function/x",
        "/system/logs?name=x",
    ] {
        let r = p.get(path).await;
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"Restricted\""
        );
        let r = p
            .http
            .get(p.url(path))
            .basic_auth("admin", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = p
        .http
        .get(p.url("/system/functions"))
        .basic_auth("admin", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = p
        .http
        .post(p.url("/system/functions"))
        .basic_auth("admin", Some("pw"))
        .json(&fixture("f"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The CE gateway's scale from zero with basic_auth=true, as recorded:
    // credentials on the scale call (an empty namespace when the invoke
    // named the function without one), none on the invocation it forwards.
    let scale = |auth: bool| {
        let r = p
            .http
            .post(p.url("/system/scale-function/f?namespace="))
            .json(&serde_json::json!({"serviceName": "f", "replicas": 1}));
        if auth {
            r.basic_auth("admin", Some("pw"))
        } else {
            r
        }
    };
    assert_eq!(scale(false).send().await.unwrap().status(), 401);
    assert_eq!(scale(true).send().await.unwrap().status(), 202);
    // The health route and invocations stay open, as on the gateway.
    assert_eq!(p.get("/healthz").await.status(), 200);
    let r = p
        .http
        .post(p.url("/function/f"))
        .body("open")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    p.shutdown().await;
}

#[tokio::test]
async fn missing_credentials_fail_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = common::test_config(tmp.path());
    c.basic_auth = true;
    assert!(matches!(
        farm_local::Provider::new(c),
        Err(farm_local::ProviderError::Credentials { .. })
    ));
}
