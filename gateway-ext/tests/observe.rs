//! The observe path against a real nats-server: a farm's observer started
//! before NATS is connected still sees the connection (the race that kept
//! farms at "backlog 0" forever), a topology created after the observer
//! is seen at the next read, and a server that stops answering is a bounded
//! `Timeout`, not a stalled control loop.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::eventually;
use farm_observe::{NatsObserver, ObserveError, SharedNats};
use farm_runtime::names::FarmNames;
use farm_runtime::proto::MetricsSnapshot;
use farm_testsupport::{ChildGuard, NatsServer, free_port, nats_server_binary};
use prost::Message;
use tokio_util::sync::CancellationToken;

/// Creates the farm's task stream and `workers` consumer as a worker would.
async fn declare_topology(js: &async_nats::jetstream::Context, names: &FarmNames) {
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: names.tasks_stream(),
            subjects: vec![names.tasks_subject()],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(names.workers_consumer().to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
}

// One thread, so the observer's task provably runs (at the yield below)
// before the connection exists: the order that used to lose the race.
#[tokio::test(flavor = "current_thread")]
async fn observer_started_before_the_connection_sees_it() {
    let nats = NatsServer::start().unwrap();
    let names = FarmNames::new("early").unwrap();
    let shared: SharedNats = Arc::new(tokio::sync::OnceCell::new());
    let stop = CancellationToken::new();
    let observer = NatsObserver::start_with_timeout(
        shared.clone(),
        names.clone(),
        Duration::from_secs(30),
        Duration::from_secs(2),
        stop.clone(),
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        observer.consumer().await,
        Err(ObserveError::NotConnected)
    ));

    let client = async_nats::connect(nats.url()).await.unwrap();
    assert!(
        shared.set(client.clone()).is_ok(),
        "the observer must not hold the connection cell while it waits"
    );

    // Connected, no topology yet: a typed "missing", then the real figures
    // once a worker has declared it (nothing stale is cached).
    let e = observer.consumer().await.unwrap_err();
    assert!(
        matches!(e, ObserveError::Missing { what: "stream", .. }),
        "{e:?}"
    );
    let js = async_nats::jetstream::new(client.clone());
    declare_topology(&js, &names).await;
    for i in 0..3u8 {
        js.publish(names.tasks_subject(), vec![i].into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let c = observer.consumer().await.unwrap();
    assert_eq!((c.num_pending, c.num_ack_pending), (3, 0));

    // The metrics subscription was made once the connection appeared.
    let snap = MetricsSnapshot {
        completed: 42,
        qos_hits: 40,
        latency_p50_s: 0.25,
        ..Default::default()
    };
    let got = eventually(Duration::from_secs(10), "a metrics snapshot", || {
        let client = client.clone();
        let subject = names.metrics_subject();
        let payload = snap.encode_to_vec();
        let observer = observer.clone();
        async move {
            // Published until seen: the subscription may not be registered
            // with the server yet when the first one goes out.
            client.publish(subject, payload.into()).await.ok()?;
            client.flush().await.ok()?;
            observer.snapshot()
        }
    })
    .await;
    assert_eq!(got.completed, 42);
    assert!(observer.snapshot_age().is_some());
    stop.cancel();
    client.flush().await.unwrap();
}

/// `kill -<sig> <pid>`.
fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_a_bounded_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut cmd = Command::new(nats_server_binary().unwrap());
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path());
    let server = ChildGuard::spawn("nats-server", cmd).unwrap();
    let pid = server.pid().unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let client = eventually(Duration::from_secs(30), "nats-server up", || {
        let url = url.clone();
        async move { async_nats::connect(url).await.ok() }
    })
    .await;
    let names = FarmNames::new("frozen").unwrap();
    declare_topology(&async_nats::jetstream::new(client.clone()), &names).await;
    let shared: SharedNats = Arc::new(tokio::sync::OnceCell::new());
    shared.set(client.clone()).unwrap();
    let stop = CancellationToken::new();
    let timeout = Duration::from_millis(500);
    let observer = NatsObserver::start_with_timeout(
        shared,
        names,
        Duration::from_secs(30),
        timeout,
        stop.clone(),
    );
    observer.consumer().await.unwrap();

    // Frozen server: the TCP connection stays up, nothing answers.
    signal(pid, "STOP");
    let started = Instant::now();
    let r = observer.consumer().await;
    let took = started.elapsed();
    signal(pid, "CONT");
    match r {
        Err(ObserveError::Timeout { after, .. }) => assert_eq!(after, timeout),
        other => panic!("expected a timeout, got {other:?} after {took:?}"),
    }
    assert_eq!(
        ObserveError::Timeout {
            what: "x",
            after: timeout
        }
        .kind(),
        "jetstream_timeout"
    );
    // Answers again once the server runs.
    eventually(Duration::from_secs(30), "consumer info again", || async {
        observer.consumer().await.ok()
    })
    .await;
    stop.cancel();
    drop(server);
}

/// The queue-head age is the wait of the oldest undelivered task, from the
/// stream's own timestamps: it grows while the task waits, moves to the next
/// task once the first is delivered, and is 0 for an empty queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_head_age_is_the_wait_of_the_oldest_undelivered_task() {
    use futures::StreamExt;
    let nats = NatsServer::start().unwrap();
    let names = FarmNames::new("aged").unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    declare_topology(&js, &names).await;
    let shared: SharedNats = Arc::new(tokio::sync::OnceCell::new());
    shared.set(client.clone()).unwrap();
    let stop = CancellationToken::new();
    let observer =
        NatsObserver::start(shared, names.clone(), Duration::from_secs(30), stop.clone());
    let empty = observer.consumer().await.unwrap();
    assert_eq!(observer.queue_head_age(&empty).await.unwrap(), 0.0);

    let first = Instant::now();
    js.publish(names.tasks_subject(), "a".into())
        .await
        .unwrap()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = Instant::now();
    js.publish(names.tasks_subject(), "b".into())
        .await
        .unwrap()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = observer.consumer().await.unwrap();
    assert_eq!(c.num_pending, 2);
    let age = observer.queue_head_age(&c).await.unwrap();
    let waited = first.elapsed().as_secs_f64();
    // The server's clock stamps the task; allow for the publish round trip.
    assert!(age > 0.7 && age <= waited + 0.05, "{age} vs {waited}");

    // Deliver (and ack) the first task: the head is now the second one.
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(names.tasks_stream())
        .await
        .unwrap()
        .get_consumer(names.workers_consumer())
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let m = batch.next().await.unwrap().unwrap();
    assert_eq!(m.payload.as_ref(), b"a");
    m.double_ack().await.unwrap();
    let c = observer.consumer().await.unwrap();
    assert_eq!(c.num_pending, 1);
    let age = observer.queue_head_age(&c).await.unwrap();
    let waited = second.elapsed().as_secs_f64();
    assert!(age > 0.1 && age <= waited + 0.05, "{age} vs {waited}");
    client.flush().await.unwrap();
    stop.cancel();
}
