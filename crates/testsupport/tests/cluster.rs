//! [`NatsCluster`] against real nats-servers: it forms a JetStream cluster,
//! an R3 stream survives killing, pausing and restarting its leader, and a
//! restart of every node keeps the stores.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use farm_testsupport::NatsCluster;

const WAIT: Duration = Duration::from_secs(30);

async fn count(js: &jetstream::Context, name: &str) -> u64 {
    let mut s = js.get_stream(name).await.expect("get stream");
    s.info().await.expect("stream info").state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_survives_kill_pause_and_full_restart() {
    let mut c = NatsCluster::start(3).expect("start cluster");
    assert_eq!(c.urls().split(',').count(), 3);
    let client = async_nats::connect(c.server_addrs())
        .await
        .expect("connect");
    let info = client.server_info();
    assert_eq!(info.cluster.as_deref(), Some(c.name()));
    assert_eq!(info.connect_urls.len(), 3, "{info:?}");
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "S".into(),
        subjects: vec!["s".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .expect("create R3 stream");
    let publish = |n: u64| {
        let js = js.clone();
        async move {
            for i in 0..n {
                js.publish("s", i.to_string().into())
                    .await
                    .expect("publish")
                    .await
                    .expect("stored");
            }
        }
    };
    publish(10).await;

    // Kill the leader: another node takes over, and the old one catches up.
    let leader = c.wait_stream_leader("S", WAIT, |_| true).await.unwrap();
    c.kill(leader);
    let next = c
        .wait_stream_leader("S", WAIT, |i| i != leader)
        .await
        .unwrap();
    publish(10).await;
    c.start_again(leader).expect("restart the old leader");
    assert_eq!(count(&js, "S").await, 20);

    // Freeze the leader until the others elect a new one, then thaw it.
    c.pause(next).unwrap();
    c.wait_stream_leader("S", WAIT, |i| i != next)
        .await
        .unwrap();
    c.resume(next).unwrap();
    c.wait_healthy().unwrap();
    publish(10).await;

    // Every node down at once, then up with its store.
    c.restart_all().expect("restart all");
    c.wait_stream_leader("S", WAIT, |_| true).await.unwrap();
    let js = jetstream::new(
        async_nats::connect(c.server_addrs())
            .await
            .expect("reconnect"),
    );
    assert_eq!(count(&js, "S").await, 30);
    for i in 0..c.size() {
        assert!(c.is_running(i), "{}", c.logs());
    }
}
