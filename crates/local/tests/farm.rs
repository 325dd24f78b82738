//! A real farm on the local provider: sleep-worker replicas (the real
//! binary, `cargo build -p handler` first) pulling from a real
//! nats-server. Scaling down under load drains replicas with SIGTERM and
//! loses no task.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::TestProvider;
use farm_local::{FunctionDeployment, ImageStore};
use farm_runtime::config::TopologyConfig;
use farm_runtime::names::FarmNames;
use farm_runtime::proto::{Status, Task, TaskResult};
use farm_testsupport::{NatsServer, bin_path};
use prost::Message;

const FARM: &str = "localload";
const TASKS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_under_load_loses_no_task() {
    let nats = NatsServer::start().expect("nats-server");
    let worker = bin_path("sleep-worker").expect("run `cargo build -p handler` before this test");
    let p = TestProvider::start(|c, _| c.termination_grace = Duration::from_secs(30)).await;
    ImageStore::new(p.tmp.path().join("images"))
        .install("sleep-worker:latest", &worker)
        .unwrap();

    let env: BTreeMap<String, String> = [
        ("FARM_NAME", FARM.to_string()),
        ("NATS_URL", nats.url()),
        ("FARM_CONCURRENCY", "2".to_string()),
        ("FARM_FETCH_EXPIRES", "200ms".to_string()),
        ("FARM_DRAIN_GRACE", "25s".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let d = FunctionDeployment {
        service: "sleep-worker".into(),
        image: "sleep-worker:latest".into(),
        env_vars: env,
        ..Default::default()
    };
    assert_eq!(p.deploy(&d).await.status(), 202);
    assert_eq!(p.scale("sleep-worker", 5).await, 202);
    // A worker answers its health route only once NATS and the topology are
    // bound, so "available" here means "pulling".
    p.wait_counts("sleep-worker", 5, 5).await;

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let names = FarmNames::new(FARM).unwrap();
    let topo = farm_runtime::topology::ensure(&js, &names, &TopologyConfig::default())
        .await
        .unwrap();
    for i in 0..TASKS {
        let task = Task {
            id: format!("t-{i:04}"),
            seq: i as u64,
            payload: format!(r#"{{"sleep_ms":150,"output":{i}}}"#)
                .into_bytes()
                .into(),
            content_type: "application/json".into(),
            ..Default::default()
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", task.id.as_str());
        js.publish_with_headers(names.tasks_subject(), headers, task.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    // Let the five replicas work, then scale down to one mid-load.
    let mut results = topo.results.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while results.info().await.unwrap().state.messages < 30 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.scale("sleep-worker", 1).await, 202);
    let s = p.status("sleep-worker").await;
    assert_eq!((s.replicas, s.available_replicas), (1, 1));

    // Every task ends up with exactly one OK result.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = results.info().await.unwrap().state.messages;
        if n >= TASKS as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} of {TASKS} results");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = results.info().await.unwrap().state.clone();
    let mut ids = BTreeSet::new();
    for seq in state.first_sequence..=state.last_sequence {
        let msg = results.get_raw_message(seq).await.unwrap();
        let r = TaskResult::decode(msg.payload).unwrap();
        assert_eq!(r.status, Status::Ok as i32, "{r:?}");
        ids.insert(r.task_id);
    }
    assert_eq!(ids.len(), TASKS);
    assert_eq!(state.messages, TASKS as u64, "no duplicate results");
    let mut dlq = topo.dlq.clone();
    assert_eq!(
        dlq.info().await.unwrap().state.messages,
        0,
        "nothing dead-lettered"
    );
    let mut tasks = topo.tasks.clone();
    assert_eq!(
        tasks.info().await.unwrap().state.messages,
        0,
        "every task acked"
    );

    // The four stopped replicas drained and exited 0 on SIGTERM.
    let lines = p.log_lines("sleep-worker").await;
    let drained: BTreeSet<String> = lines
        .iter()
        .filter(|l| l.text.contains("drained; exiting 0"))
        .map(|l| l.instance.clone())
        .collect();
    assert_eq!(drained.len(), 4, "{drained:?}");
    let s = p.status("sleep-worker").await;
    assert_eq!((s.replicas, s.available_replicas), (1, 1));

    client.flush().await.unwrap();
    p.shutdown().await;
}
