//! Process test: the real `thumbnail-worker` binary against a real
//! nats-server turns a task into a thumbnail result, and dead-letters a bad
//! payload without dying.

use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use farm_runtime::config::TopologyConfig;
use farm_runtime::names::FarmNames;
use farm_runtime::proto::{DeadLetter, Status, Task, TaskResult};
use farm_testsupport::{ChildGuard, NatsServer, bin_path};
use futures::StreamExt;
use prost::Message;

async fn first_message(stream: &jetstream::stream::Stream) -> jetstream::Message {
    let consumer = stream
        .create_consumer(pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut msgs = consumer.messages().await.expect("messages");
    tokio::time::timeout(Duration::from_secs(60), msgs.next())
        .await
        .expect("a message within 60 s")
        .expect("stream open")
        .expect("message")
}

#[tokio::test]
async fn worker_process_makes_thumbnails_and_dead_letters_garbage() {
    let nats = NatsServer::start().expect("nats-server");
    let names = FarmNames::new("thumbs").expect("name");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let topo = farm_runtime::topology::ensure(&js, &names, &TopologyConfig::default())
        .await
        .expect("topology");

    let mut cmd =
        Command::new(bin_path("thumbnail-worker").expect("cargo build --workspace --bins first"));
    cmd.env("FARM_NAME", names.farm())
        .env("NATS_URL", nats.url())
        .env("FARM_HTTP_PORT", "0")
        .env("FARM_MAX_DELIVER", "5");
    let mut worker = ChildGuard::spawn("thumbnail-worker", cmd).expect("spawn worker");

    let mut task = Task {
        id: "img-1".into(),
        seq: 1,
        payload: br#"{"side": 512, "seed": 9, "thumb": 64}"#.to_vec().into(),
        content_type: "application/json".into(),
        deadline_ms: 60_000,
        ..Default::default()
    };
    js.publish(names.tasks_subject(), task.encode_to_vec().into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    let msg = first_message(&topo.results).await;
    let result = TaskResult::decode(msg.payload.clone()).expect("TaskResult");
    assert_eq!(result.task_id, "img-1");
    assert_eq!(result.status, Status::Ok as i32, "error: {}", result.error);
    assert_eq!(result.content_type, "image/png");
    assert!(result.output.starts_with(b"\x89PNG"));
    assert!(result.finished_us >= result.started_us);

    // A payload that is neither an image nor a request: permanent error,
    // straight to the DLQ; the worker keeps running.
    task.id = "bad-1".into();
    task.payload = b"not an image".to_vec().into();
    js.publish(names.tasks_subject(), task.encode_to_vec().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let letter = first_message(&topo.dlq).await;
    let letter = DeadLetter::decode(letter.payload.clone()).expect("DeadLetter");
    assert_eq!(letter.task_id, "bad-1");
    assert!(
        letter.reason.contains("neither"),
        "reason: {}",
        letter.reason
    );
    assert!(worker.is_running(), "worker died: {}", worker.log_tail());

    worker.terminate().expect("SIGTERM");
    let status = worker.wait_timeout(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "exit {status:?}: {}", worker.log_tail());
    client.flush().await.expect("flush");
}
