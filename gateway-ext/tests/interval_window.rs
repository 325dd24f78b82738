//! gateway-ext's interval window against a real collector (a process) on a
//! real nats-server: the signals built at each tick from the difference of
//! two fresh cumulative snapshots describe exactly the results the
//! collector wrote in between (checked against its OUTPUT entries).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use farm_observe::{BuildContext, NatsObserver, Sample, SignalsBuilder};
use farm_runtime::names::FarmNames;
use farm_runtime::proto::{Status, TaskResult};
use farm_testsupport::NatsServer;
use prost::Message;
use tokio_util::sync::CancellationToken;

const FARM: &str = "window";

/// One result per `(service ms, deadline ms)`; ids from `first`.
async fn publish_batch(
    js: &async_nats::jetstream::Context,
    names: &FarmNames,
    first: u64,
    batch: &[(i64, u64, bool)],
) {
    let stored = farm_runtime::worker::now_us() - 300_000;
    for (k, (service_ms, deadline_ms, ok)) in batch.iter().enumerate() {
        let i = first + k as u64;
        let r = TaskResult {
            task_id: format!("t-{i}"),
            seq: i,
            worker: "w".into(),
            started_us: 0,
            finished_us: service_ms * 1000,
            status: if *ok { Status::Ok } else { Status::Error } as i32,
            task_stored_us: stored - (i as i64 % 7) * 50_000,
            deadline_ms: *deadline_ms,
            deliveries: 1,
            ..Default::default()
        };
        js.publish(names.results_subject(), r.encode_to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
}

/// OUTPUT latencies (seconds) of the successful entries with ids in `ids`.
async fn output_latencies(
    js: &async_nats::jetstream::Context,
    names: &FarmNames,
    ids: std::ops::Range<u64>,
) -> Vec<f64> {
    let mut output = js.get_stream(names.output_stream()).await.expect("OUTPUT");
    let last = output.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for s in 1..=last {
        let m = output.get_raw_message(s).await.expect("entry");
        let get = |k: &str| m.headers.get(k).map(|v| v.as_str().to_string());
        let id: u64 = get(collector::output::H_TASK_ID)
            .and_then(|v| v.strip_prefix("t-").and_then(|n| n.parse().ok()))
            .expect("id");
        if ids.contains(&id) && get(collector::output::H_STATUS).as_deref() == Some("ok") {
            let us: f64 = get(collector::output::H_LATENCY_US)
                .and_then(|v| v.parse().ok())
                .expect("latency");
            out.push(us / 1e6);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

async fn wait_written(observer: &NatsObserver, n: u64) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if observer
            .fresh_snapshot()
            .await
            .is_some_and(|s| s.completed >= n)
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "collector did not write {n} results"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ctx() -> BuildContext {
    BuildContext {
        interval_s: 1.0,
        window_s: 0.0,
        desired: 1,
        since_last_scale_s: 1.0,
        min: 1,
        max: 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tick_signals_are_the_results_written_in_the_interval() {
    let nats = NatsServer::start().expect("nats-server");
    // Publications far apart: the window must come from fresh requests.
    let _collector = common::start_collector(&nats.url(), FARM, "1m").await;

    let names = FarmNames::new(FARM).expect("names");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let shared = Arc::new(tokio::sync::OnceCell::new());
    shared.set(client.clone()).expect("set once");
    let stop = CancellationToken::new();
    let observer = NatsObserver::start(
        shared,
        names.clone(),
        Duration::from_secs(120),
        stop.clone(),
    );
    wait_written(&observer, 0).await;

    let mut builder = SignalsBuilder::default();
    let tick = |snapshot| Sample {
        snapshot,
        ..Default::default()
    };
    builder.build(&tick(observer.fresh_snapshot().await), &ctx());

    // Interval 1: 12 successes (service 10..=120 ms, deadlines 1 s / 100 ms), 2 failures.
    let one: Vec<(i64, u64, bool)> = (1..=14)
        .map(|i| (i * 10, if i % 3 == 0 { 100 } else { 1_000 }, i <= 12))
        .collect();
    publish_batch(&js, &names, 0, &one).await;
    wait_written(&observer, 14).await;
    let s1 = builder.build(&tick(observer.fresh_snapshot().await), &ctx());

    // Interval 2: 5 successes, service 200 ms, deadline 2 s.
    let two: Vec<(i64, u64, bool)> = (0..5).map(|_| (200, 2_000, true)).collect();
    publish_batch(&js, &names, 100, &two).await;
    wait_written(&observer, 19).await;
    let s2 = builder.build(&tick(observer.fresh_snapshot().await), &ctx());

    // Interval 3: nothing.
    let s3 = builder.build(&tick(observer.fresh_snapshot().await), &ctx());

    for (s, ids, batch) in [(&s1, 0..14u64, &one), (&s2, 100..105u64, &two)] {
        let ok: Vec<&(i64, u64, bool)> = batch.iter().filter(|b| b.2).collect();
        let lat = output_latencies(&js, &names, ids).await;
        assert_eq!(s.completions, ok.len() as f64);
        assert_eq!(lat.len(), ok.len());
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let svc: Vec<f64> = ok.iter().map(|b| b.0 as f64 / 1e3).collect();
        let dl: Vec<f64> = ok.iter().map(|b| b.1 as f64 / 1e3).collect();
        let close = |a: Option<f64>, b: f64, rel: f64| {
            let a = a.expect("a statistic");
            assert!((a - b).abs() <= b * rel + 1e-6, "{a} vs {b}");
        };
        close(s.service_mean_s, mean(&svc), 1e-9);
        close(s.deadline_mean_s, mean(&dl), 1e-9);
        close(s.latency_mean_s, mean(&lat), 1e-6);
        close(s.latency_max_s, *lat.last().expect("a latency"), 0.01);
        // Nearest-rank p95 (the simulator's), within the histogram's 1 %.
        let rank = ((0.95 * lat.len() as f64 - 1e-9).ceil() as usize).max(1);
        close(s.latency_p95_s, lat[rank - 1], 0.01);
        let mut svc_sorted = svc.clone();
        svc_sorted.sort_by(f64::total_cmp);
        close(s.service_p95_s, svc_sorted[rank - 1], 0.01);
        let dmin = dl.iter().copied().fold(f64::INFINITY, f64::min);
        close(s.deadline_min_s, dmin, 0.01);
    }
    // On-time counts follow the deadlines: the 100 ms tasks of interval 1
    // (stored 300+ ms before their result) are late, the others on time.
    assert_eq!(s1.completions_on_time, 8.0);
    assert_eq!(s2.completions_on_time, 5.0);
    assert_eq!(s3.completions, 0.0);
    assert_eq!(s3.latency_mean_s, None);

    stop.cancel();
    client.flush().await.expect("flush");
}
