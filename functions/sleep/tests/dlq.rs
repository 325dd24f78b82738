//! Failing, panicking and undecodable tasks end in the dead-letter stream;
//! the replica survives and keeps working.

use std::time::Duration;

use bytes::Bytes;
use farm_runtime::names::FarmNames;
use farm_runtime::proto::Status;
use farm_testsupport::{NatsServer, eventually};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn failing_and_panicking_tasks_are_dead_lettered_after_max_deliveries() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("dlq").unwrap();
    let mut w = spawn_worker(
        &nats.url(),
        "dlq",
        "worker-d",
        &[
            ("FARM_CONCURRENCY", "2"),
            ("FARM_MAX_DELIVER", "3"),
            ("FARM_NAK_DELAY", "20ms"),
        ],
    );
    wait_bound(&js, &names).await;
    let mut ok_ids = Vec::new();
    for i in 0..10 {
        let id = format!("ok-{i}");
        publish_task(&js, &names, &task(&id, i, r#"{"sleep_ms":5}"#)).await;
        ok_ids.push(id);
    }
    publish_task(&js, &names, &task("bad", 10, r#"{"fail":true}"#)).await;
    publish_task(&js, &names, &task("boom", 11, r#"{"panic":true}"#)).await;
    publish_task(&js, &names, &task("garbled", 12, r#"{"sleep_ms":"soon"}"#)).await;

    let letters = eventually(
        "3 dead letters",
        WAIT,
        Duration::from_millis(100),
        || async {
            let l = dead_letters(&js, &names).await;
            (l.len() >= 3).then_some(l)
        },
    )
    .await
    .unwrap();
    let find = |id: &str| letters.iter().find(|l| l.task_id == id).cloned().unwrap();
    let bad = find("bad");
    assert_eq!(bad.deliveries, 3);
    assert!(bad.reason.contains("asked to fail"), "{bad:?}");
    assert_eq!(bad.worker, "worker-d");
    assert!(!bad.original.is_empty());
    let boom = find("boom");
    assert_eq!(boom.deliveries, 3);
    assert!(boom.reason.contains("panicked"), "{boom:?}");
    // Bad input is permanent: dead-lettered on the first delivery.
    let garbled = find("garbled");
    assert_eq!(garbled.deliveries, 1);
    assert!(garbled.reason.contains("JSON"), "{garbled:?}");

    let mut all = ok_ids.clone();
    all.extend(["bad", "boom", "garbled"].map(String::from));
    let rs = wait_results(&js, &names, &all).await;
    let grouped = by_id(&rs);
    for id in &ok_ids {
        assert_eq!(grouped[id].len(), 1);
        assert_eq!(grouped[id][0].status, Status::Ok as i32);
    }
    for id in ["bad", "boom", "garbled"] {
        assert_eq!(grouped[id].len(), 1);
        assert_eq!(grouped[id][0].status, Status::Error as i32);
        assert!(!grouped[id][0].error.is_empty());
    }
    assert_eq!(
        dead_letters(&js, &names).await.len(),
        3,
        "no duplicate letters"
    );
    eventually(
        "task stream drained",
        WAIT,
        Duration::from_millis(50),
        || async { (stream_len(&js, &names.tasks_stream()).await == 0).then_some(()) },
    )
    .await
    .unwrap();
    assert!(
        w.is_running(),
        "a panicking handler must not kill the replica"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_bytes_go_to_the_dlq_and_the_worker_continues() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats).await;
    let names = FarmNames::new("garbage").unwrap();
    let mut w = spawn_worker(&nats.url(), "garbage", "worker-x", &[]);
    wait_bound(&js, &names).await;
    let junk = Bytes::from_static(b"\xff\xfe this is not protobuf");
    publish_raw(&js, &names, "junk-1", junk.clone()).await;
    publish_raw(&js, &names, "junk-2", Bytes::new()).await;
    publish_task(&js, &names, &task("after", 0, r#"{"sleep_ms":1}"#)).await;

    wait_results(&js, &names, &["after".to_owned()]).await;
    let letters = eventually(
        "2 dead letters",
        WAIT,
        Duration::from_millis(50),
        || async {
            let l = dead_letters(&js, &names).await;
            (l.len() >= 2).then_some(l)
        },
    )
    .await
    .unwrap();
    assert_eq!(letters.len(), 2);
    let first = letters
        .iter()
        .find(|l| l.original == junk)
        .expect("junk kept");
    assert_eq!(first.deliveries, 1, "no retries for undecodable bytes");
    assert!(first.reason.contains("not a farm.v1.Task"), "{first:?}");
    assert!(first.task_stored_us > 0);
    let empty = letters.iter().find(|l| l.original.is_empty()).unwrap();
    assert!(empty.reason.contains("empty id"), "{empty:?}");
    assert!(w.is_running());
    assert_eq!(results(&js, &names).await.len(), 1);
}

/// Publishes a 1.5 s blocker, then three tasks with a 300 ms deadline and
/// one with a minute, to a farm whose one replica runs one task at a time;
/// returns the replica's results and dead letters once all five are in.
async fn behind_a_blocker(
    nats: &NatsServer,
    farm: &str,
    shed: &str,
) -> (
    Vec<farm_runtime::proto::TaskResult>,
    Vec<farm_runtime::proto::DeadLetter>,
) {
    let (_c, js) = js(nats).await;
    let names = FarmNames::new(farm).unwrap();
    let _w = spawn_worker(
        &nats.url(),
        farm,
        "worker-s",
        &[("FARM_CONCURRENCY", "1"), ("FARM_SHED_EXPIRED", shed)],
    );
    wait_bound(&js, &names).await;
    publish_task(&js, &names, &task("blocker", 0, r#"{"sleep_ms":1500}"#)).await;
    wait_held(&js, &names, 1).await;
    let mut ids = vec!["blocker".to_owned()];
    for i in 1..=4u64 {
        let id = if i == 4 {
            "fresh".to_owned()
        } else {
            format!("stale-{i}")
        };
        let mut t = task(&id, i, r#"{"sleep_ms":5}"#);
        t.deadline_ms = if i == 4 { 60_000 } else { 300 };
        publish_task(&js, &names, &t).await;
        ids.push(id);
    }
    let rs = wait_results(&js, &names, &ids).await;
    (rs, dead_letters(&js, &names).await)
}

/// With `FARM_SHED_EXPIRED`, tasks whose deadline passed while they waited
/// are dead-lettered unrun with the reason (an ERROR result each, so the
/// collector accounts for them), the task within its deadline runs; without
/// it (the default) every task runs, late or not. Nothing is lost either way.
#[tokio::test(flavor = "multi_thread")]
async fn expired_tasks_are_shed_to_the_dlq_only_when_asked() {
    let nats = NatsServer::start().unwrap();
    let (rs, letters) = behind_a_blocker(&nats, "shed", "1").await;
    let grouped = by_id(&rs);
    assert_eq!(rs.len(), 5, "{rs:?}");
    for id in ["blocker", "fresh"] {
        assert_eq!(
            grouped[id][0].status,
            Status::Ok as i32,
            "{:?}",
            grouped[id]
        );
    }
    let mut shed: Vec<&str> = letters.iter().map(|l| l.task_id.as_str()).collect();
    shed.sort_unstable();
    assert_eq!(shed, ["stale-1", "stale-2", "stale-3"], "{letters:?}");
    for l in &letters {
        assert!(
            l.reason.starts_with(farm_runtime::worker::SHED_REASON)
                && l.reason.contains("deadline 300 ms"),
            "{l:?}"
        );
        assert_eq!(grouped[&l.task_id][0].status, Status::Error as i32);
        assert_eq!(grouped[&l.task_id][0].error, l.reason);
    }

    let (rs, letters) = behind_a_blocker(&nats, "noshed", "false").await;
    assert_eq!(rs.len(), 5, "{rs:?}");
    assert!(rs.iter().all(|r| r.status == Status::Ok as i32), "{rs:?}");
    assert!(letters.is_empty(), "{letters:?}");
}
