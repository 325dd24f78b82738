//! nats-server is killed and restarted (same port, same store) while tasks
//! are queued, running and being collected: every task the emitter accepted
//! reaches OUTPUT exactly once.

use std::collections::HashSet;
use std::time::Duration;

use farm_e2e::{Farm, WAIT, ids};

const BATCHES: usize = 20;
const BATCH: usize = 100;
const RESTART_AFTER: usize = 8;

/// A batch of tasks that each sleep 20 ms, so the farm is busy when the
/// server goes away.
fn batch(b: usize) -> String {
    (b * BATCH..(b + 1) * BATCH)
        .map(|i| {
            format!("{{\"id\":\"r-{i}\",\"payload\":{{\"sleep_ms\":20}},\"deadline_ms\":60000}}\n")
        })
        .collect()
}

/// Submits `body` until the emitter accepts all of it. Retrying the same ids
/// is safe: JetStream de-duplicates them.
async fn submit_until_accepted(farm: &Farm, body: &str) -> Vec<String> {
    for _ in 0..240 {
        let (status, answer) = farm.submit_ndjson(body).await;
        match status {
            202 => return ids(&answer, "ids"),
            // Connection refused while the emitter's NATS link is down, or
            // 503 from the emitter itself: wait and retry.
            0 | 429 | 503 => tokio::time::sleep(Duration::from_millis(250)).await,
            other => panic!("unexpected status {other}: {answer}\n{}", farm.logs()),
        }
    }
    panic!("batch never accepted\n{}", farm.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_loses_and_duplicates_nothing() {
    let mut farm = Farm::start("restart", &[]);
    farm.start_collector();
    farm.start_emitter();
    farm.start_workers(3, &[("FARM_CONCURRENCY", "4")]);
    farm.wait_ready().await;

    let mut accepted = HashSet::new();
    for b in 0..BATCHES {
        if b == RESTART_AFTER {
            let before = farm.snapshot().await;
            farm.nats.restart().expect("restart nats-server");
            eprintln!("restarted nats-server; snapshot before: {before:?}");
        }
        accepted.extend(submit_until_accepted(&farm, &batch(b)).await);
    }
    assert_eq!(accepted.len(), BATCHES * BATCH);

    let snap = farm.wait_completed((BATCHES * BATCH) as u64, WAIT).await;
    let out = farm.read_output().await;
    let got: Vec<String> = out.iter().map(|e| e.result.task_id.clone()).collect();
    let unique: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "duplicates in OUTPUT");
    assert_eq!(unique, accepted, "OUTPUT differs from the accepted tasks");
    assert_eq!(snap["completed"].as_u64(), Some(got.len() as u64), "{snap}");
    // Nothing more arrives later either.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(farm.read_output().await.len(), got.len());
}
