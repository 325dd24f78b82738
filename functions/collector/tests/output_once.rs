//! OUTPUT holds each task's output once, by the server's own rule (real
//! nats-server, single node and a 3-node cluster): a second write of the
//! same task is refused even with another message id, with exactly the
//! error [`collector::output::is_already_stored`] recognises; a collector
//! given a result whose output is already stored acks it and counts it once;
//! and an OUTPUT stream of the earlier shape is refused with an error naming
//! it.

mod common;

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, ErrorCode, message::PublishMessage, stream};
use collector::output::{
    H_COMPLETED, H_QOS_HITS, H_SEQ, H_TASK_ID, MAX_PER_SUBJECT_REFUSAL, is_already_stored,
    output_stream_config,
};
use common::{now_snapshot, start_collector};
use farm_runtime::config::TopologyConfig;
use farm_runtime::names::FarmNames;
use farm_runtime::proto::{MetricsSnapshot, Status, TaskResult};
use farm_runtime::topology::{TopologyError, ensure_stream};
use farm_testsupport::{NatsCluster, NatsServer};
use prost::Message;

/// Creates the farm's OUTPUT stream the way the collector does.
async fn output_stream(js: &jetstream::Context, names: &FarmNames) -> stream::Stream {
    ensure_stream(
        js,
        output_stream_config(names, &TopologyConfig::default(), Duration::from_secs(600)),
    )
    .await
    .expect("OUTPUT stream")
}

/// Publishes `body` as task `id`'s output with message id `msg_id`.
async fn write_output(
    js: &jetstream::Context,
    names: &FarmNames,
    id: &str,
    msg_id: &str,
    body: &'static [u8],
) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
    let mut h = HeaderMap::new();
    h.insert(H_TASK_ID, id);
    let publish = PublishMessage::build()
        .headers(h)
        .message_id(msg_id)
        .payload(bytes::Bytes::from_static(body));
    js.send_publish(names.output_task_subject(id), publish)
        .await
        .expect("publish sent")
        .await
}

/// The second write of one task, with a fresh message id, is refused with
/// JetStream error 10077 and the text [`MAX_PER_SUBJECT_REFUSAL`]; the
/// first entry stays the only one.
async fn second_write_is_refused(js: &jetstream::Context, names: &FarmNames) {
    let mut output = output_stream(js, names).await;
    // Ids with subject-significant characters get an encoded token.
    for id in ["t-1", "a.b", "x *>", "任务"] {
        let first = write_output(js, names, id, &format!("{id}#1"), b"first")
            .await
            .expect("first write stored");
        assert!(!first.duplicate);
        let err = write_output(js, names, id, &format!("{id}#2"), b"second")
            .await
            .expect_err("second write of the same task refused");
        let je = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .unwrap_or_else(|| panic!("not a JetStream API error: {err:?}"));
        assert_eq!(je.error_code(), ErrorCode::STREAM_STORE_FAILED, "{je}");
        assert_eq!(je.error_code(), ErrorCode(10077));
        assert!(je.to_string().contains(MAX_PER_SUBJECT_REFUSAL), "{je}");
        assert!(is_already_stored(&err), "{err:?}");
        // The same message id again is still answered as a duplicate.
        let again = write_output(js, names, id, &format!("{id}#1"), b"first")
            .await
            .expect("same message id answered");
        assert!(again.duplicate);
        assert_eq!(again.sequence, first.sequence);
        let stored = output
            .get_last_raw_message_by_subject(&names.output_task_subject(id))
            .await
            .expect("entry");
        assert_eq!(stored.sequence, first.sequence);
        assert_eq!(&stored.payload[..], b"first");
    }
    let info = output.info().await.expect("info");
    assert_eq!(info.state.messages, 4, "one entry per task");
    // Other failures are not "already stored".
    let missing = js
        .send_publish(
            "nowhere.at.all",
            PublishMessage::build().payload("x".into()),
        )
        .await
        .expect("sent")
        .await
        .expect_err("no stream");
    assert!(!is_already_stored(&missing), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_write_of_a_task_is_refused_by_the_server() {
    let nats = NatsServer::start().expect("nats-server");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client);
    second_write_is_refused(&js, &FarmNames::new("once").expect("names")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_write_of_a_task_is_refused_by_a_cluster() {
    let cluster = NatsCluster::start(3).expect("3-node cluster");
    let client = async_nats::ConnectOptions::new()
        .connect(cluster.server_addrs())
        .await
        .expect("connect");
    let js = jetstream::new(client);
    let names = FarmNames::new("once-r3").expect("names");
    second_write_is_refused(&js, &names).await;
    let info = js
        .get_stream(names.output_stream())
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .clone();
    assert_eq!(info.config.num_replicas, 3, "R3 on a 3-node cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_stream_of_the_old_shape_is_refused_by_name() {
    let nats = NatsServer::start().expect("nats-server");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client);
    let names = FarmNames::new("legacy").expect("names");
    let want = output_stream_config(&names, &TopologyConfig::default(), Duration::from_secs(600));
    // What collectors before per-task subjects created.
    js.create_stream(stream::Config {
        subjects: vec!["farm.legacy.output".into()],
        discard: stream::DiscardPolicy::Old,
        discard_new_per_subject: false,
        max_messages_per_subject: 0,
        ..want.clone()
    })
    .await
    .expect("old OUTPUT");
    let err = ensure_stream(&js, want)
        .await
        .expect_err("old shape refused");
    match &err {
        TopologyError::StreamConflict { stream, field, .. } => {
            assert_eq!(stream, "FARM_LEGACY_OUTPUT");
            assert_eq!(*field, "subjects");
        }
        other => panic!("expected a stream conflict, got {other:?}"),
    }
    assert!(err.to_string().contains("FARM_LEGACY_OUTPUT"), "{err}");
}

/// Waits until the collector's consumer has every result acked and its
/// snapshot satisfies `done`.
async fn settled(
    client: &async_nats::Client,
    js: &jetstream::Context,
    names: &FarmNames,
    done: impl Fn(&MetricsSnapshot) -> bool,
) -> MetricsSnapshot {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let snap = now_snapshot(client, names).await;
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_stream(names.results_stream())
            .await
            .expect("RESULTS")
            .get_consumer(names.collector_consumer())
            .await
            .expect("collector consumer");
        let info = consumer.info().await.expect("consumer info");
        if done(&snap) && info.num_pending == 0 && info.num_ack_pending == 0 {
            return snap;
        }
        assert!(
            Instant::now() < until,
            "not settled: {snap:?}, pending {}, ack pending {}",
            info.num_pending,
            info.num_ack_pending
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_output_is_stored_is_acked_and_counted_once() {
    const FARM: &str = "redeliver";
    let nats = NatsServer::start().expect("nats-server");
    let (names, client, js, collector) = start_collector(&nats.url(), FARM).await;

    // The output of task t-1 is stored already, as by an earlier attempt
    // whose ack was lost across a leader change: the collector (started on
    // an empty OUTPUT) does not know the id, and the message id differs
    // from the task id, so only the per-task subject can stop a second
    // entry.
    let mut h = HeaderMap::new();
    h.insert(H_TASK_ID, "t-1");
    h.insert(H_SEQ, "1");
    h.insert(H_COMPLETED, "1");
    h.insert(H_QOS_HITS, "1");
    js.send_publish(
        names.output_task_subject("t-1"),
        PublishMessage::build()
            .headers(h)
            .message_id("earlier-attempt")
            .payload("earlier".into()),
    )
    .await
    .expect("sent")
    .await
    .expect("stored");

    let result_of = |id: &str, seq: u64| TaskResult {
        task_id: id.into(),
        seq,
        worker: "w".into(),
        started_us: 1_000,
        finished_us: 2_000,
        status: Status::Ok as i32,
        task_stored_us: farm_runtime::worker::now_us(),
        deliveries: 2,
        ..Default::default()
    };
    // Published without a message id, so RESULTS keeps each copy: every
    // call is one more delivery of the result.
    let deliver = |result: TaskResult| {
        let js = js.clone();
        let subject = names.results_subject();
        async move {
            js.publish(subject, result.encode_to_vec().into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
    };
    deliver(result_of("t-1", 1)).await;
    let first = settled(&client, &js, &names, |s| s.completed >= 1).await;
    assert_eq!(
        (first.completed, first.duplicates),
        (1, 0),
        "an output stored by an earlier attempt is this task's completion"
    );
    deliver(result_of("t-1", 1)).await;
    let second = settled(&client, &js, &names, |s| s.duplicates >= 1).await;
    assert_eq!((second.completed, second.duplicates), (1, 1));

    let mut output = js.get_stream(names.output_stream()).await.expect("OUTPUT");
    let info = output.info().await.expect("info");
    assert_eq!(info.state.messages, 1, "OUTPUT keeps the one entry");
    let entry = output.get_raw_message(1).await.expect("entry");
    assert_eq!(&entry.payload[..], b"earlier");

    // A new task's output goes to its own subject, with the task id as
    // message id and the running count including t-1.
    deliver(result_of("t-2", 2)).await;
    let third = settled(&client, &js, &names, |s| s.completed >= 2).await;
    assert_eq!((third.completed, third.duplicates), (2, 1));
    let entry = output
        .get_last_raw_message_by_subject(&names.output_task_subject("t-2"))
        .await
        .expect("t-2's entry");
    let header = |k: &str| entry.headers.get(k).map(|v| v.as_str().to_owned());
    assert_eq!(header("Nats-Msg-Id").as_deref(), Some("t-2"));
    assert_eq!(header(H_TASK_ID).as_deref(), Some("t-2"));
    assert_eq!(header(H_COMPLETED).as_deref(), Some("2"));
    assert_eq!(output.info().await.expect("info").state.messages, 2);

    client.flush().await.expect("flush");
    collector.stop().await;
}
