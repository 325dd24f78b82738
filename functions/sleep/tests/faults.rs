//! Crash and drain behaviour of real worker processes.

use std::time::Duration;

use bytes::Bytes;
use farm_runtime::names::FarmNames;
use farm_runtime::proto::Status;
use farm_testsupport::{NatsServer, eventually};
use prost::Message as _;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_redelivers_to_another_worker_and_results_are_deduplicated() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("kill").unwrap();
    let env = [("FARM_CONCURRENCY", "4"), ("FARM_ACK_WAIT", "1s")];
    let mut a = spawn_worker(&nats.url(), "kill", "worker-a", &env);
    wait_bound(&js, &names).await;

    let ids: Vec<String> = (0..4).map(|i| format!("long-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        publish_task(&js, &names, &task(id, i as u64, r#"{"sleep_ms":5000}"#)).await;
    }
    // Worker A holds all four (progress acks keep them past the ack wait).
    wait_held(&js, &names, 4).await;
    a.kill();

    let b = spawn_worker(&nats.url(), "kill", "worker-b", &env);
    let rs = wait_results(&js, &names, &ids).await;
    for r in &rs {
        assert_eq!(r.worker, "worker-b", "{r:?}");
        assert!(r.deliveries >= 2, "task was redelivered: {r:?}");
        assert_eq!(r.status, Status::Ok as i32);
        assert!(r.task_stored_us > 0);
    }
    assert_eq!(rs.len(), 4, "one result per task");

    // A second delivery of an already finished task (as after an ack lost in
    // a crash) yields no second stored result: the worker publishes with
    // the task id as message id. A different Nats-Msg-Id for the task
    // message gets it past the task stream's own de-duplication.
    let again = task(&ids[0], 0, r#"{"sleep_ms":1}"#);
    publish_raw(
        &js,
        &names,
        "redelivery-of-long-0",
        Bytes::from(again.encode_to_vec()),
    )
    .await;
    let marker = task("marker", 9, r#"{"sleep_ms":1}"#);
    publish_task(&js, &names, &marker).await;
    let mut all = ids.clone();
    all.push("marker".into());
    wait_results(&js, &names, &all).await;
    // Both extra tasks were consumed (the work queue is empty) ...
    eventually(
        "task stream drained",
        WAIT,
        Duration::from_millis(50),
        || async { (stream_len(&js, &names.tasks_stream()).await == 0).then_some(()) },
    )
    .await
    .unwrap();
    // ... but long-0 has still exactly one result.
    let rs = results(&js, &names).await;
    let grouped = by_id(&rs);
    assert_eq!(rs.len(), 5, "{rs:?}");
    assert!(grouped.values().all(|v| v.len() == 1), "{grouped:?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_held_tasks_and_exits_zero() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("term").unwrap();
    let mut w = spawn_worker(
        &nats.url(),
        "term",
        "worker-t",
        &[("FARM_CONCURRENCY", "3"), ("FARM_DRAIN_GRACE", "20s")],
    );
    wait_bound(&js, &names).await;
    let ids: Vec<String> = (0..3).map(|i| format!("t-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        publish_task(&js, &names, &task(id, i as u64, r#"{"sleep_ms":3000}"#)).await;
    }
    wait_held(&js, &names, 3).await;
    // Results must not exist yet, so the drain really finishes them.
    assert!(results(&js, &names).await.is_empty());
    w.terminate().unwrap();
    // A task published during the drain is not taken by the draining worker.
    publish_task(&js, &names, &task("late", 3, r#"{"sleep_ms":1}"#)).await;

    let status = w.wait_timeout(WAIT).unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", w.log_tail());
    let rs = results(&js, &names).await;
    let grouped = by_id(&rs);
    for id in &ids {
        assert_eq!(grouped.get(id).map(Vec::len), Some(1), "{id}: {rs:?}");
    }
    assert!(
        !grouped.contains_key("late"),
        "draining worker must not start new tasks"
    );
    // The three were acked (removed from the work queue); only "late" remains.
    assert_eq!(stream_len(&js, &names.tasks_stream()).await, 1);
    assert_eq!(consumer_counts(&js, &names).await.map(|c| c.0), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_timeout_gives_tasks_back_and_exits_nonzero() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("grace").unwrap();
    // A long ack wait: if the task were not given back explicitly, the
    // second worker could only get it after 60 s, beyond the test's bound.
    let env = [("FARM_DRAIN_GRACE", "300ms"), ("FARM_ACK_WAIT", "60s")];
    let mut w = spawn_worker(&nats.url(), "grace", "worker-g", &env);
    wait_bound(&js, &names).await;
    publish_task(&js, &names, &task("slow", 0, r#"{"sleep_ms":2000}"#)).await;
    wait_held(&js, &names, 1).await;
    w.terminate().unwrap();
    let status = w.wait_timeout(WAIT).unwrap();
    assert_eq!(status.code(), Some(1), "log:\n{}", w.log_tail());
    assert!(w.log().contains("drain grace period"), "{}", w.log_tail());
    // Not lost: still in the work queue, and taken over at once.
    assert_eq!(stream_len(&js, &names.tasks_stream()).await, 1);
    assert!(results(&js, &names).await.is_empty());
    let _w2 = spawn_worker(&nats.url(), "grace", "worker-h", &env);
    let rs = wait_results(&js, &names, &["slow".to_owned()]).await;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].worker, "worker-h");
    assert_eq!(rs[0].deliveries, 2);
}

/// A draining replica gives back what its open pull request still receives,
/// which costs each such task a delivery; on a task's last delivery
/// (`FARM_MAX_DELIVER`) a give-back would leave it in the queue, never
/// delivered again. Such a task is run instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_on_its_last_delivery_is_run_by_a_draining_worker() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("lastdel").unwrap();
    // Every delivery is the last; the open pull request outlives the SIGTERM.
    let env = [
        ("FARM_CONCURRENCY", "2"),
        ("FARM_MAX_DELIVER", "1"),
        ("FARM_FETCH_EXPIRES", "5s"),
        ("FARM_DRAIN_GRACE", "20s"),
    ];
    let mut w = spawn_worker(&nats.url(), "lastdel", "worker-l", &env);
    wait_bound(&js, &names).await;
    publish_task(&js, &names, &task("held", 0, r#"{"sleep_ms":1500}"#)).await;
    wait_held(&js, &names, 1).await;
    w.terminate().unwrap();
    // Delivered to the still-open pull request of the draining worker.
    publish_task(&js, &names, &task("late", 1, r#"{"sleep_ms":1}"#)).await;
    let status = w.wait_timeout(WAIT).unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", w.log_tail());
    let ids = ["held".to_owned(), "late".to_owned()];
    let rs = wait_results(&js, &names, &ids).await;
    assert!(rs.iter().all(|r| r.status == Status::Ok as i32), "{rs:?}");
    assert_eq!(stream_len(&js, &names.tasks_stream()).await, 0);
}

/// A task whose replica is killed on its last delivery is never delivered
/// again by JetStream; the surviving replicas dead-letter it (with an error
/// result) from the server's max-deliveries advisory instead of leaving it
/// stuck in the work queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_killed_on_its_last_delivery_is_dead_lettered() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("exhaust").unwrap();
    let env = [
        ("FARM_CONCURRENCY", "1"),
        ("FARM_MAX_DELIVER", "1"),
        ("FARM_ACK_WAIT", "1s"),
    ];
    let mut a = spawn_worker(&nats.url(), "exhaust", "worker-a", &env);
    wait_bound(&js, &names).await;
    publish_task(&js, &names, &task("doomed", 0, r#"{"sleep_ms":60000}"#)).await;
    wait_held(&js, &names, 1).await;
    let _b = spawn_worker(&nats.url(), "exhaust", "worker-b", &env);
    // B is up and pulling (A, busy, has no pull request open): its pull
    // request is what makes the server notice the exhausted task once A's
    // ack wait ran out.
    eventually(
        "worker B waits for tasks",
        WAIT,
        Duration::from_millis(50),
        || async {
            let info = js
                .get_stream(names.tasks_stream())
                .await
                .ok()?
                .consumer_info(names.workers_consumer())
                .await
                .ok()?;
            (info.num_waiting >= 1).then_some(())
        },
    )
    .await
    .unwrap();
    a.kill();

    let rs = wait_results(&js, &names, &["doomed".to_owned()]).await;
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0].status, Status::Error as i32, "{rs:?}");
    assert!(rs[0].error.contains("max deliveries"), "{rs:?}");
    eventually(
        "dead letter stored and task removed from the queue",
        WAIT,
        Duration::from_millis(50),
        || async {
            let dl = dead_letters(&js, &names).await;
            let gone = stream_len(&js, &names.tasks_stream()).await == 0;
            (gone && dl.len() == 1 && dl[0].task_id == "doomed").then_some(())
        },
    )
    .await
    .unwrap();
}
