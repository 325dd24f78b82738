//! The running sums of a real collector (in process, real nats-server):
//! results published to RESULTS show up in `MetricsSnapshot.cumulative`,
//! a snapshot requested on `farm.<f>.metrics.now` is current, and the
//! difference of two snapshots is exactly the results written between them.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{now_snapshot, start_collector};
use farm_runtime::names::FarmNames;
use farm_runtime::proto::{MetricsSnapshot, Status, TaskResult};
use farm_testsupport::NatsServer;
use prost::Message;

const FARM: &str = "cumul";

/// Publishes one result the way a worker does (stored in RESULTS).
async fn publish(
    js: &async_nats::jetstream::Context,
    names: &FarmNames,
    i: u64,
    ok: bool,
    service_us: i64,
    deadline_ms: u64,
    stored_us: i64,
) {
    let r = TaskResult {
        task_id: format!("t-{i}"),
        seq: i,
        worker: "w".into(),
        started_us: 1_000,
        finished_us: 1_000 + service_us,
        status: if ok { Status::Ok } else { Status::Error } as i32,
        task_stored_us: stored_us,
        deadline_ms,
        deliveries: 1,
        ..Default::default()
    };
    js.publish(names.results_subject(), r.encode_to_vec().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
}

async fn wait_completed(client: &async_nats::Client, names: &FarmNames, n: u64) -> MetricsSnapshot {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let s = now_snapshot(client, names).await;
        if s.completed >= n {
            return s;
        }
        assert!(
            Instant::now() < until,
            "collector wrote {} of {n}",
            s.completed
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differenced_snapshots_give_the_interval_window() {
    let nats = NatsServer::start().expect("nats-server");
    let (names, client, js, collector) = start_collector(&nats.url(), FARM).await;

    // First interval: 3 successes (one late), 1 failure.
    let t = farm_runtime::worker::now_us();
    publish(&js, &names, 1, true, 10_000, 60_000, t).await;
    publish(&js, &names, 2, true, 20_000, 60_000, t).await;
    publish(&js, &names, 3, true, 30_000, 1, t - 5_000_000).await;
    publish(&js, &names, 4, false, 40_000, 60_000, t).await;
    let a = wait_completed(&client, &names, 4).await;
    let ca = a.cumulative.clone().expect("cumulative sums");
    assert_eq!((ca.completed, ca.on_time), (3, 2), "{ca:?}");
    assert_eq!(ca.service_sum_us, 60_000);
    assert_eq!(ca.deadline_sum_ms, 120_001);
    assert!(ca.latency_max_us >= 5_000_000, "{ca:?}");
    assert!(ca.started_us > 0 && ca.started_us <= farm_runtime::worker::now_us());

    // Second interval: 2 successes.
    let t = farm_runtime::worker::now_us();
    publish(&js, &names, 5, true, 100_000, 30_000, t).await;
    publish(&js, &names, 6, true, 300_000, 30_000, t).await;
    let b = wait_completed(&client, &names, 6).await;
    let cb = b.cumulative.clone().expect("cumulative sums");
    assert_eq!(cb.started_us, ca.started_us, "same process");
    assert_eq!(cb.completed - ca.completed, 2);
    assert_eq!(cb.on_time - ca.on_time, 2);
    assert_eq!(cb.service_sum_us - ca.service_sum_us, 400_000);
    assert_eq!(cb.deadline_sum_ms - ca.deadline_sum_ms, 60_000);
    // The service histogram's difference holds exactly the two new values.
    let count = |h: &farm_runtime::proto::Histogram| -> HashMap<u32, u64> {
        h.index
            .iter()
            .copied()
            .zip(h.count.iter().copied())
            .collect()
    };
    let (sa, sb) = (
        count(&ca.service.clone().unwrap_or_default()),
        count(&cb.service.clone().unwrap_or_default()),
    );
    let diff: HashMap<u32, u64> = sb
        .iter()
        .map(|(i, c)| (*i, c - sa.get(i).copied().unwrap_or(0)))
        .filter(|(_, c)| *c > 0)
        .collect();
    let expected: HashMap<u32, u64> = [
        (collector::cumulative::bucket(100_000), 1),
        (collector::cumulative::bucket(300_000), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(diff, expected);

    // The latency sums equal what the collector wrote to OUTPUT per task.
    let mut output = js
        .get_stream(names.output_stream())
        .await
        .expect("output stream");
    let last = output.info().await.expect("info").state.last_sequence;
    let mut ok_latency = 0u64;
    for s in 1..=last {
        let m = output.get_raw_message(s).await.expect("entry");
        let h = m.headers;
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
        if get(collector::output::H_STATUS).as_deref() == Some("ok") {
            ok_latency += get(collector::output::H_LATENCY_US)
                .and_then(|v| v.parse::<u64>().ok())
                .expect("latency header");
        }
    }
    assert_eq!(cb.latency_sum_us, ok_latency);

    client.flush().await.expect("flush");
    collector.stop().await;
}
