//! gateway-ext benchmarks; print figures (run with `cargo bench -p gateway-ext`).
//!
//! 1. ONNX decision latency in process for a 2x64 MLP (target p99 <= 20 us):
//!    `OnnxModel::infer` alone, and the loop's path with the hop off the
//!    reactor (`FarmPolicy::decide`).
//! 2. Alert-to-scale-call latency (target p50 <= 5 ms): `POST /system/alert`
//!    for a managed farm until its answer, which is sent after the decision
//!    and the provider's scale call returned; real farm-local provider, real
//!    nats-server, real sleep-worker replicas.
//! 3. Proxy overhead at a fixed request rate (target <= 0.3 ms added at
//!    p50): the same requests to a minimal upstream directly and through
//!    gateway-ext, interleaved.

#[path = "../tests/common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Gateway, Local, config, eventually, farm_spec, ort_dylib, write_mlp_model};
use farm_model::action::ActionSpace;
use farm_model::observation::observe;
use farm_model::signals::Signals;
use farm_policy::PolicySpec;
use farm_policy::onnx::OnnxModel;
use farm_policy::platform;
use gateway_ext::policy::FarmPolicy;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn report(name: &str, h: &Histogram<u64>, unit: &str, div: f64) {
    println!(
        "{name}: n={} p50={:.2}{unit} p90={:.2}{unit} p99={:.2}{unit} max={:.2}{unit} mean={:.2}{unit}",
        h.len(),
        h.value_at_quantile(0.5) as f64 / div,
        h.value_at_quantile(0.9) as f64 / div,
        h.value_at_quantile(0.99) as f64 / div,
        h.max() as f64 / div,
        h.mean() / div,
    );
}

fn signals(i: u64) -> Signals {
    Signals {
        interval_s: 8.0,
        backlog: (i % 50) as f64,
        in_flight: 4.0,
        arrivals: 40.0 + (i % 7) as f64,
        completions: 38.0,
        completions_on_time: 36.0,
        service_mean_s: Some(1.5),
        service_p95_s: Some(2.6),
        latency_mean_s: Some(2.0),
        latency_max_s: Some(4.0),
        latency_p95_s: Some(3.5),
        deadline_min_s: Some(3.0),
        replicas_desired: 6.0,
        replicas_ready: 6.0,
        replicas_busy: 4.0,
        since_last_scale_s: 16.0,
        min_replicas: 1.0,
        max_replicas: 32.0,
        ..Default::default()
    }
}

async fn bench_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.onnx");
    let actions = ["delta:-2", "delta:-1", "hold", "delta:+1", "delta:+2"];
    write_mlp_model(&path, &actions);
    let ort = ort_dylib();
    let mut model = OnnxModel::load(Some(&ort), &path).unwrap();
    let obs: Vec<_> = (0..64).map(|i| observe(&signals(i))).collect();
    for o in obs.iter().cycle().take(2_000) {
        model.infer(o).unwrap();
    }
    let mut h = Histogram::<u64>::new(3).unwrap();
    for o in obs.iter().cycle().take(50_000) {
        let t = Instant::now();
        let r = model.infer(o).unwrap();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
        std::hint::black_box(r);
    }
    report(
        "onnx_infer_2x64_mlp (in process, OnnxModel::infer)",
        &h,
        "us",
        1000.0,
    );

    let plat = platform(Duration::from_secs(8), 1, 32, None);
    let mut policy = FarmPolicy::new(
        &PolicySpec::Onnx(path.clone()),
        "reactive-average",
        &plat,
        Some(&ort),
        ActionSpace::default(),
    )
    .unwrap();
    let sigs: Vec<_> = (0..64).map(signals).collect();
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..10_000usize {
        let s = &sigs[i % 64];
        let o = observe(s);
        let t = Instant::now();
        let p = policy
            .decide(i as f64, s, &o, &Default::default(), None)
            .await;
        if i >= 500 {
            h.record(t.elapsed().as_nanos() as u64).unwrap();
        }
        std::hint::black_box(p);
    }
    report(
        "onnx_decide_2x64_mlp (FarmPolicy::decide incl. spawn_blocking hop + fallback)",
        &h,
        "us",
        1000.0,
    );
}

async fn bench_alert() {
    let nats = farm_testsupport::NatsServer::start().unwrap();
    let mut local = Local::start(0).await;
    local.deploy_worker("alert-worker", "alerted", &nats.url(), &[], &[]);
    local
        .handle
        .wait_available("alert-worker", 1, Duration::from_secs(30))
        .await
        .unwrap();
    let farm = farm_spec(
        "alerted",
        "alert-worker",
        "openfaas-ce",
        &[
            ("interval", "1h"),
            ("min", "1"),
            ("max", "10"),
            ("queueing-floor", "false"),
        ],
    );
    let cfg = config(
        &local.url,
        &[("DISCOVERY_INTERVAL", "off"), ("NATS_URL", &nats.url())],
    );
    let gw = Gateway::start(cfg, vec![farm], None).await.unwrap();
    eventually(Duration::from_secs(10), "first decision", || async {
        gw.farm("alerted")
            .await
            .filter(|f| f["decisions"] == 1)
            .map(|_| ())
    })
    .await;
    let c = reqwest::Client::new();
    let url = format!("{}/system/alert", gw.url);
    let body = |status: &str| {
        format!(
            r#"{{"status":"{status}","receiver":"scale-up","alerts":[{{"status":"{status}","labels":{{"alertname":"APIHighInvocationRate","function_name":"alert-worker"}}}}]}}"#
        )
    };
    let (fire, resolve) = (body("firing"), body("resolved"));
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut scaled = 0;
    for i in 0..300 {
        let b = if i % 2 == 0 {
            fire.clone()
        } else {
            resolve.clone()
        };
        let t = Instant::now();
        let r = c.post(&url).body(b).send().await.unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        let took = t.elapsed();
        let d = &v["decisions"][0];
        if d["applied"] == true && d["desired"] != d["previous"] {
            scaled += 1;
        }
        if i >= 20 {
            h.record(took.as_micros() as u64).unwrap();
        }
        // Let the replica start or stop between alerts, as real alerts are seconds apart.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report(
        &format!(
            "alert_to_scale_call (POST /system/alert -> decision + provider scale call answered; {scaled}/300 scaled)"
        ),
        &h,
        "ms",
        1000.0,
    );
    gw.shutdown().await;
    local.shutdown().await;
}

async fn start_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    url
}

async fn bench_proxy() {
    let up = start_upstream().await;
    let gw = Gateway::start(config(&up, &[("DISCOVERY_INTERVAL", "off")]), vec![], None)
        .await
        .unwrap();
    let client = gateway_ext::provider::http_client();
    let get = |base: &str| {
        let uri: hyper::Uri = format!("{base}/function/bench").parse().unwrap();
        let client = client.clone();
        async move {
            let req = Request::get(uri)
                .body(
                    Empty::<Bytes>::new()
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .unwrap();
            let t = Instant::now();
            let r = client.request(req).await.unwrap();
            let _ = r.into_body().collect().await.unwrap();
            t.elapsed()
        }
    };
    let rate = 500.0;
    let n = 5_000;
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut direct = Histogram::<u64>::new(3).unwrap();
    let mut proxied = Histogram::<u64>::new(3).unwrap();
    for _ in 0..200 {
        get(&up).await;
        get(&gw.url).await;
    }
    let mut next = Instant::now();
    for i in 0..n {
        next += gap;
        if i % 2 == 0 {
            direct.record(get(&up).await.as_micros() as u64).unwrap();
        } else {
            proxied
                .record(get(&gw.url).await.as_micros() as u64)
                .unwrap();
        }
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    report(
        &format!("proxy_direct (GET at {rate}/s, interleaved)"),
        &direct,
        "ms",
        1000.0,
    );
    report(
        &format!("proxy_via_gateway_ext (GET at {rate}/s, interleaved)"),
        &proxied,
        "ms",
        1000.0,
    );
    println!(
        "proxy_overhead: p50 +{:.3}ms p99 +{:.3}ms",
        (proxied.value_at_quantile(0.5) as f64 - direct.value_at_quantile(0.5) as f64) / 1000.0,
        (proxied.value_at_quantile(0.99) as f64 - direct.value_at_quantile(0.99) as f64) / 1000.0
    );
    gw.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects one part.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let want = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if want("onnx") {
            bench_onnx().await;
        }
        if want("alert") {
            bench_alert().await;
        }
        if want("proxy") {
            bench_proxy().await;
        }
    });
}
