//! Benchmark of the local provider: replica start time (spawn -> available)
//! and scale-call latency, printed as p50/p99/max.
//!
//! ```text
//! cargo build --release -p farm-local --bins && cargo build --release -p handler  # functions/sleep, binary sleep-worker
//! cargo run --release -p farm-local --example bench [-- ROUNDS]
//! FARM_LOCAL_STARTUP_PROBE=5ms cargo run --release -p farm-local --example bench
//! ```
//!
//! Replicas are the `farm-local-fixture` binary (an HTTP health route, like
//! a worker's) and, when `target/release/sleep-worker` and nats-server are
//! there, the real sleep-worker, whose health answers only once it has
//! connected to NATS and bound its consumer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use farm_local::{Config, FunctionDeployment, Provider, ProviderHandle};
use hdrhistogram::Histogram;

fn exe_dir() -> PathBuf {
    // target/<profile>/examples/bench -> target/<profile>/
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target dir")
}

fn summary(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<46} n={:<5} p50={:>8.2} ms  p99={:>8.2} ms  max={:>8.2} ms",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
}

async fn wait_counts(h: &ProviderHandle, name: &str, replicas: u64, available: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = h.status(name).expect("status");
        if s.replicas == replicas && s.available_replicas == available {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: stuck at {}/{}",
            s.replicas,
            s.available_replicas
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Scale 0 -> `n`, time until `n` are available, scale back to 0.
async fn start_times(
    h: &ProviderHandle,
    name: &str,
    n: u64,
    rounds: usize,
) -> (Histogram<u64>, Histogram<u64>) {
    let mut first = Histogram::<u64>::new(3).expect("histogram");
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..rounds {
        wait_counts(h, name, 0, 0).await;
        let t0 = Instant::now();
        h.scale(name, n).expect("scale");
        h.wait_available(name, 1, Duration::from_secs(60))
            .await
            .expect("first available");
        first.record(t0.elapsed().as_micros() as u64).ok();
        h.wait_available(name, n, Duration::from_secs(60))
            .await
            .expect("all available");
        all.record(t0.elapsed().as_micros() as u64).ok();
        h.scale(name, 0).expect("scale");
    }
    wait_counts(h, name, 0, 0).await;
    (first, all)
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let dir = exe_dir();
    let fixture = dir.join("farm-local-fixture");
    assert!(
        fixture.is_file(),
        "{} missing: cargo build --release -p farm-local --bins",
        fixture.display()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    // FARM_LOCAL_* variables apply (e.g. FARM_LOCAL_STARTUP_PROBE=5ms to
    // measure start time finer than the default 50 ms poll).
    let vars = std::env::vars().filter(|(k, _)| k.starts_with("FARM_LOCAL_"));
    let base = Config::from_pairs(vars).expect("FARM_LOCAL_* configuration");
    let config = Config {
        image_store: tmp.path().join("images"),
        state_dir: Some(tmp.path().join("state")),
        termination_grace: Duration::from_secs(10),
        ..base
    };
    println!(
        "farm-local bench: {rounds} rounds, startup probe every {:?}, {} CPUs",
        config.startup_probe,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let provider = Provider::new(config).expect("provider");
    let h = provider.handle();
    h.images()
        .install("fixture", &fixture)
        .expect("install fixture");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(provider.run(listener, async move {
        let _ = stop_rx.await;
    }));

    let fx = FunctionDeployment {
        service: "fx".into(),
        image: "fixture".into(),
        labels: BTreeMap::from([("com.openfaas.scale.min".to_string(), "0".to_string())]),
        ..Default::default()
    };
    h.deploy(fx).expect("deploy");
    let (first, _) = start_times(&h, "fx", 1, rounds).await;
    summary("fixture: spawn -> available (1 replica)", &first);
    let (first, all) = start_times(&h, "fx", 10, rounds.div_ceil(3)).await;
    summary("fixture: scale 0->10, first available", &first);
    summary("fixture: scale 0->10, all 10 available", &all);

    // Scale-call latency over HTTP: POST /system/scale-function, alternating
    // 4 <-> 5 replicas so every call changes the desired count.
    h.scale("fx", 4).expect("scale");
    wait_counts(&h, "fx", 4, 4).await;
    let http = reqwest::Client::new();
    let mut lat = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..rounds * 20 {
        let n = if i % 2 == 0 { 5 } else { 4 };
        let t0 = Instant::now();
        let r = http
            .post(format!("{base}/system/scale-function/fx"))
            .body(format!(r#"{{"serviceName":"fx","replicas":{n}}}"#))
            .send()
            .await
            .expect("scale call");
        lat.record(t0.elapsed().as_micros() as u64).ok();
        assert_eq!(r.status(), 202);
    }
    summary("scale call latency (HTTP, 202)", &lat);
    let mut st = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..rounds * 20 {
        let t0 = Instant::now();
        let r = http
            .get(format!("{base}/system/function/fx"))
            .send()
            .await
            .expect("status");
        let _ = r.bytes().await;
        st.record(t0.elapsed().as_micros() as u64).ok();
    }
    summary("status call latency (HTTP GET /system/function)", &st);
    h.scale("fx", 0).expect("scale");
    wait_counts(&h, "fx", 0, 0).await;

    // The real worker, if built and nats-server is available.
    let worker = dir.join("sleep-worker");
    match (worker.is_file(), farm_testsupport::NatsServer::start()) {
        (true, Ok(nats)) => {
            h.images()
                .install("sleep-worker", &worker)
                .expect("install worker");
            let sw = FunctionDeployment {
                service: "sw".into(),
                image: "sleep-worker".into(),
                env_vars: BTreeMap::from([
                    ("FARM_NAME".to_string(), "bench".to_string()),
                    ("NATS_URL".to_string(), nats.url()),
                ]),
                labels: BTreeMap::from([("com.openfaas.scale.min".to_string(), "0".to_string())]),
                ..Default::default()
            };
            h.deploy(sw).expect("deploy worker");
            let (first, _) = start_times(&h, "sw", 1, rounds).await;
            summary("sleep-worker: spawn -> available (NATS bound)", &first);
            let (_, all) = start_times(&h, "sw", 10, rounds.div_ceil(3)).await;
            summary("sleep-worker: scale 0->10, all 10 available", &all);
        }
        (false, _) => println!("sleep-worker: skipped ({} missing)", worker.display()),
        (_, Err(e)) => println!("sleep-worker: skipped (nats-server: {e})"),
    }

    let _ = stop_tx.send(());
    server.await.expect("join").expect("provider");
}
