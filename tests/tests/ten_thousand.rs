//! 10,000 tasks through the real emitter -> 3 sleep-worker processes ->
//! collector: every task in OUTPUT exactly once, and the collector's snapshot
//! agrees with what OUTPUT holds.

use std::collections::HashSet;

use farm_e2e::{Farm, WAIT, ids, noop_batch};
use farm_runtime::proto::Status;
use futures::StreamExt;

const TASKS: usize = 10_000;
const BATCH: usize = 500;

/// Deadlines: generous (60 s, surely met), none, or 1 ms (met only by a
/// task that waited for nothing), so hits and misses both occur.
fn deadline(i: usize) -> u64 {
    match i % 4 {
        0 | 1 => 60_000,
        2 => 0,
        _ => 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_exactly_once() {
    let mut farm = Farm::start("tenk", &[]);
    farm.start_collector();
    farm.start_emitter();
    farm.start_workers(3, &[("FARM_CONCURRENCY", "8")]);
    farm.wait_ready().await;

    let batches: Vec<String> = (0..TASKS / BATCH)
        .map(|b| noop_batch("t", b * BATCH..(b + 1) * BATCH, deadline))
        .collect();
    let answers: Vec<(u16, serde_json::Value)> = futures::stream::iter(batches.iter())
        .map(|body| farm.submit_ndjson(body))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut accepted = HashSet::new();
    for (status, answer) in &answers {
        assert_eq!(*status, 202, "answer {answer}\n{}", farm.logs());
        accepted.extend(ids(answer, "ids"));
    }
    assert_eq!(accepted.len(), TASKS);

    let snap = farm.wait_completed(TASKS as u64, WAIT).await;
    let out = farm.read_output().await;
    assert_eq!(out.len(), TASKS, "OUTPUT entries");
    let got: HashSet<String> = out.iter().map(|e| e.result.task_id.clone()).collect();
    assert_eq!(got.len(), TASKS, "a task appears twice in OUTPUT");
    assert_eq!(
        got, accepted,
        "OUTPUT holds other tasks than the accepted ones"
    );

    // Snapshot vs OUTPUT.
    assert_eq!(snap["completed"].as_u64(), Some(TASKS as u64), "{snap}");
    assert_eq!(snap["failed"].as_u64(), Some(0), "{snap}");
    let hits: u64 = out.iter().map(|e| e.num("Farm-Qos-Hit")).sum();
    assert_eq!(snap["qos_hits"].as_u64(), Some(hits), "{snap}");
    let last = out.last().expect("entries");
    assert_eq!(last.num("Farm-Completed"), TASKS as u64);
    assert_eq!(last.num("Farm-Qos-Hits"), hits);
    let mut misses_with_long_deadline = 0;
    for e in &out {
        let r = &e.result;
        assert_eq!(r.status, Status::Ok as i32, "{}: {}", r.task_id, r.error);
        let latency_us = e.num("Farm-Latency-Us");
        let hit = e.num("Farm-Qos-Hit") == 1;
        let expected = r.deadline_ms == 0 || latency_us <= r.deadline_ms * 1000;
        assert_eq!(
            hit, expected,
            "{}: latency {latency_us} µs, deadline {} ms",
            r.task_id, r.deadline_ms
        );
        if r.deadline_ms == 60_000 && !hit {
            misses_with_long_deadline += 1;
        }
    }
    assert_eq!(misses_with_long_deadline, 0);
    // The emitter's 10,000 tasks are the TASKS stream's 10,000 arrivals
    // (arrivals are refreshed once per snapshot interval, so wait for it).
    let snap = farm_testsupport::eventually(
        "arrivals",
        WAIT,
        std::time::Duration::from_millis(200),
        || async {
            let s = farm.snapshot().await?;
            (s["arrivals"].as_u64()? == TASKS as u64).then_some(s)
        },
    )
    .await
    .expect("arrivals reach 10000");
    assert!(snap["latency_p50_s"].as_f64().is_some_and(|p| p >= 0.0));
}
