//! What the collector's integration tests share: a real collector run in
//! this process against the test's nats-server, stopped on demand.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use farm_runtime::names::FarmNames;
use farm_runtime::proto::MetricsSnapshot;
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A collector running in this process, stopped by [`Collector::stop`].
pub struct Collector {
    stop: oneshot::Sender<()>,
    service: JoinHandle<Result<(), collector::CollectorError>>,
}

impl Collector {
    /// Stops the collector and checks that it stopped cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.service
            .await
            .expect("join")
            .expect("collector stopped cleanly");
    }
}

/// Starts the collector of `farm` on the nats-server at `nats_url`, its
/// HTTP server on a free loopback port and its periodic snapshots a minute
/// apart. Returns once it answers snapshot requests, with the farm's names
/// and a client of the nats-server (core and JetStream).
pub async fn start_collector(
    nats_url: &str,
    farm: &str,
) -> (FarmNames, async_nats::Client, jetstream::Context, Collector) {
    let env: HashMap<String, String> = [
        ("FARM_NAME", farm),
        ("NATS_URL", nats_url),
        ("COLLECTOR_SNAPSHOT_INTERVAL", "1m"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cfg = collector::config::CollectorConfig::from_map(&env).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (tx, rx) = oneshot::channel::<()>();
    let service = tokio::spawn(collector::run(cfg, listener, async {
        let _ = rx.await;
    }));

    let names = FarmNames::new(farm).expect("names");
    let client = async_nats::connect(nats_url).await.expect("connect");
    let js = jetstream::new(client.clone());
    // The collector declares the topology; wait until it answers.
    let until = Instant::now() + Duration::from_secs(20);
    while client
        .request(
            collector::snapshot_request_subject(&names),
            bytes::Bytes::new(),
        )
        .await
        .is_err()
    {
        assert!(Instant::now() < until, "collector never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (names, client, js, Collector { stop: tx, service })
}

/// The collector's metrics snapshot now (its request-reply subject).
pub async fn now_snapshot(client: &async_nats::Client, names: &FarmNames) -> MetricsSnapshot {
    let m = client
        .request(
            collector::snapshot_request_subject(names),
            bytes::Bytes::new(),
        )
        .await
        .expect("snapshot request answered");
    MetricsSnapshot::decode(m.payload).expect("snapshot")
}
