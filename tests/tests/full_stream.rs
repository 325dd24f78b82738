//! The emitter against a full task stream (small `FARM_TASKS_MAX_MSGS`, no
//! workers): 429 naming exactly which tasks were stored, 503 while NATS is
//! down, and every task that was accepted completes once workers start.

use std::collections::HashSet;
use std::time::Duration;

use farm_e2e::{Farm, WAIT, ids, noop_batch};
use farm_testsupport::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_stream_answers_429_and_keeps_every_accepted_task() {
    let mut farm = Farm::start("full", &[("FARM_TASKS_MAX_MSGS", "50")]);
    farm.start_collector();
    farm.start_emitter();
    farm.wait_ready().await;

    // 30 fit.
    let (status, answer) = farm.submit_ndjson(&noop_batch("a", 0..30, |_| 0)).await;
    assert_eq!(status, 202, "{answer}");
    let mut accepted: HashSet<String> = ids(&answer, "ids").into_iter().collect();
    assert_eq!(accepted.len(), 30);

    // Of the next 30, exactly 20 fit; the answer says which.
    let (status, answer) = farm.submit_ndjson(&noop_batch("b", 0..30, |_| 0)).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["kind"], "stream_full", "{answer}");
    let partial = ids(&answer, "accepted");
    let expected: Vec<String> = (0..20).map(|i| format!("b-{i}")).collect();
    assert_eq!(partial, expected, "{answer}");
    let rejected = answer["rejected"].as_array().expect("rejected list");
    assert_eq!(rejected.len(), 10);
    assert!(
        rejected
            .iter()
            .all(|r| r["reason"]["kind"] == "stream_full"),
        "{answer}"
    );
    accepted.extend(partial);

    // A single task is refused too.
    let (status, answer) = farm
        .submit("{}".into(), "application/json", &[("x-task-id", "c-1")])
        .await;
    assert_eq!(status, 429, "{answer}");

    // NATS down: 503 saying so.
    farm.nats.stop();
    let answer = eventually(
        "503 from the emitter",
        WAIT,
        Duration::from_millis(100),
        || async {
            let (status, answer) = farm
                .submit("{}".into(), "application/json", &[("x-task-id", "d-1")])
                .await;
            (status == 503).then_some(answer)
        },
    )
    .await
    .expect("emitter answers 503 while NATS is down");
    assert_eq!(answer["kind"], "unavailable", "{answer}");
    farm.nats.start_again().expect("restart nats-server");
    farm.wait_ready().await;

    // Workers start: every accepted task completes exactly once.
    farm.start_workers(2, &[("FARM_CONCURRENCY", "4")]);
    farm.wait_completed(accepted.len() as u64, WAIT).await;
    let out = farm.read_output().await;
    let got: Vec<String> = out.iter().map(|e| e.result.task_id.clone()).collect();
    let unique: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "duplicates in OUTPUT");
    assert_eq!(unique, accepted, "OUTPUT differs from the accepted tasks");

    // With room again, the emitter accepts and the task completes.
    let (status, answer) = farm
        .submit("{}".into(), "application/json", &[("x-task-id", "e-1")])
        .await;
    assert_eq!(status, 202, "{answer}");
    let snap = farm.wait_completed(accepted.len() as u64 + 1, WAIT).await;
    assert_eq!(snap["completed"].as_u64(), Some(accepted.len() as u64 + 1));
}
