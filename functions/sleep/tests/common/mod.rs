//! Shared helpers of the sleep worker's process-level tests: real
//! nats-server, real `sleep-worker` processes.

#![allow(dead_code)] // each test file uses a subset

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use farm_runtime::names::FarmNames;
use farm_runtime::proto::{DeadLetter, Task, TaskResult};
use farm_testsupport::{ChildGuard, NatsServer, eventually};
use prost::Message as _;

/// Generous bound for anything the tests wait for.
pub const WAIT: Duration = Duration::from_secs(30);

/// Starts one `sleep-worker` process.
pub fn spawn_worker(url: &str, farm: &str, instance: &str, env: &[(&str, &str)]) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sleep-worker"));
    cmd.env_clear()
        .env("NATS_URL", url)
        .env("FARM_NAME", farm)
        .env("FARM_INSTANCE", instance)
        .env("FARM_HTTP_PORT", "0")
        .env("RUST_LOG", "info,farm_runtime=debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    ChildGuard::spawn(instance, cmd).expect("spawn sleep-worker")
}

/// A connected JetStream context.
pub async fn js(nats: &NatsServer) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    (client, js)
}

/// A task whose payload is the sleep job `json`.
pub fn task(id: &str, seq: u64, json: &str) -> Task {
    Task {
        id: id.to_owned(),
        seq,
        payload: Bytes::from(json.to_owned()),
        content_type: "application/json".to_owned(),
        ..Default::default()
    }
}

/// Publishes raw bytes on the task subject with a message id; waits for the ack.
pub async fn publish_raw(js: &jetstream::Context, names: &FarmNames, msg_id: &str, body: Bytes) {
    js.send_publish(
        names.tasks_subject(),
        PublishMessage::build().payload(body).message_id(msg_id),
    )
    .await
    .expect("publish")
    .await
    .expect("publish ack");
}

/// Publishes a task (message id = task id).
pub async fn publish_task(js: &jetstream::Context, names: &FarmNames, t: &Task) {
    publish_raw(js, names, &t.id, Bytes::from(t.encode_to_vec())).await;
}

/// Every message stored in `stream`, in order (0 if the stream is missing).
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<Bytes> {
    let Ok(mut s) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let state = s.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push(m.payload);
        }
    }
    out
}

/// All results, decoded.
pub async fn results(js: &jetstream::Context, names: &FarmNames) -> Vec<TaskResult> {
    read_stream(js, &names.results_stream())
        .await
        .into_iter()
        .map(|b| TaskResult::decode(b).expect("TaskResult"))
        .collect()
}

/// All dead letters, decoded.
pub async fn dead_letters(js: &jetstream::Context, names: &FarmNames) -> Vec<DeadLetter> {
    read_stream(js, &names.dlq_stream())
        .await
        .into_iter()
        .map(|b| DeadLetter::decode(b).expect("DeadLetter"))
        .collect()
}

/// Results grouped by task id.
pub fn by_id(rs: &[TaskResult]) -> HashMap<String, Vec<TaskResult>> {
    let mut m: HashMap<String, Vec<TaskResult>> = HashMap::new();
    for r in rs {
        m.entry(r.task_id.clone()).or_default().push(r.clone());
    }
    m
}

/// Waits until the results stream holds results for all `ids`.
pub async fn wait_results(
    js: &jetstream::Context,
    names: &FarmNames,
    ids: &[String],
) -> Vec<TaskResult> {
    eventually(
        "results for every task",
        WAIT,
        Duration::from_millis(100),
        || async {
            let rs = results(js, names).await;
            let got = by_id(&rs);
            ids.iter().all(|id| got.contains_key(id)).then_some(rs)
        },
    )
    .await
    .expect("all results")
}

/// Number of messages in a stream.
pub async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
    let mut s = js.get_stream(name).await.expect("stream");
    s.info().await.expect("info").state.messages
}

/// (ack pending, pending) of the workers consumer, once it exists.
pub async fn consumer_counts(js: &jetstream::Context, names: &FarmNames) -> Option<(usize, u64)> {
    let s = js.get_stream(names.tasks_stream()).await.ok()?;
    let mut c: jetstream::consumer::PullConsumer = s.get_consumer("workers").await.ok()?;
    let i = c.info().await.ok()?;
    Some((i.num_ack_pending, i.num_pending))
}

/// Waits until the workers consumer has exactly `n` tasks held by workers
/// (acked-pending) and none left to deliver.
pub async fn wait_held(js: &jetstream::Context, names: &FarmNames, n: usize) {
    eventually(
        &format!("workers hold {n} task(s), none pending"),
        WAIT,
        Duration::from_millis(20),
        || async { (consumer_counts(js, names).await == Some((n, 0))).then_some(()) },
    )
    .await
    .unwrap();
}

/// Waits until the workers consumer exists (a worker bound it).
pub async fn wait_bound(js: &jetstream::Context, names: &FarmNames) {
    eventually(
        "workers consumer",
        WAIT,
        Duration::from_millis(50),
        || async { consumer_counts(js, names).await.map(|_| ()) },
    )
    .await
    .expect("a worker bound the consumer");
}

/// A minimal HTTP/1.1 exchange over a fresh connection: (status, body).
/// Returns `None` when nothing listens yet.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    http_raw(port, &[head.as_bytes(), body], Duration::from_secs(10))
}

/// Sends `parts`, together one whole HTTP/1.1 request with `Connection:
/// close`, one write each, on a fresh connection, and reads the answer until
/// the server closes it: (status, body). `None` when nothing listens, when
/// the connection is cut before a whole answer or when none came within
/// `timeout`.
pub fn http_raw(port: u16, parts: &[&[u8]], timeout: Duration) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    for part in parts {
        s.write_all(part).ok()?;
        s.flush().ok()?;
    }
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..text_end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf[text_end + 4..].to_vec()))
}
