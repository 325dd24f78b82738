//! `FARM_STREAM_REPLICAS` against a real single nats-server and a real
//! 3-node JetStream cluster: unset it is 1 on the server and 3 on the
//! cluster; a value the deployment cannot hold is refused naming the key,
//! the value and the cluster size; an existing stream keeps its count when
//! the key is unset.

use std::collections::HashMap;

use async_nats::jetstream;
use farm_runtime::config::{NatsConfig, TopologyConfig};
use farm_runtime::names::FarmNames;
use farm_runtime::replicas::ReplicasError;
use farm_runtime::topology::{TopologyError, ensure};
use farm_testsupport::{NatsCluster, NatsServer};

/// A JetStream context through the runtime's own connect, from a `NATS_URL`
/// (a comma list for the cluster).
async fn js(nats_url: &str) -> (async_nats::Client, jetstream::Context) {
    let map = HashMap::from([("NATS_URL".to_owned(), nats_url.to_owned())]);
    let cfg = NatsConfig::from_map(&map).expect("NATS_URL parses");
    let client = farm_runtime::nats::connect(&cfg).await.expect("connect");
    (client.clone(), jetstream::new(client))
}

fn replicas(n: Option<usize>) -> TopologyConfig {
    TopologyConfig {
        replicas: n,
        ..Default::default()
    }
}

async fn stream_replicas(js: &jetstream::Context, name: &str) -> usize {
    let mut s = js.get_stream(name).await.expect("stream exists");
    s.info().await.expect("info").config.num_replicas
}

#[tokio::test]
async fn single_server_defaults_to_one_and_refuses_more() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = js(&nats.url()).await;
    let names = FarmNames::new("one").unwrap();
    ensure(&js, &names, &replicas(None)).await.unwrap();
    assert_eq!(stream_replicas(&js, &names.tasks_stream()).await, 1);
    ensure(&js, &names, &replicas(Some(1))).await.unwrap();

    let names = FarmNames::new("three").unwrap();
    let err = ensure(&js, &names, &replicas(Some(3))).await.unwrap_err();
    assert!(
        matches!(
            err,
            TopologyError::Replicas(ReplicasError::NotClustered { requested: 3 })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("FARM_STREAM_REPLICAS=3"), "{err}");
    assert!(js.get_stream(names.tasks_stream()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_defaults_to_three_and_checks_the_size() {
    let nats = NatsCluster::start(3).unwrap();
    let (client, js) = js(&nats.urls()).await;

    let names = FarmNames::new("auto").unwrap();
    let topo = ensure(&js, &names, &replicas(None)).await.unwrap();
    for s in [
        names.tasks_stream(),
        names.results_stream(),
        names.dlq_stream(),
    ] {
        assert_eq!(stream_replicas(&js, &s).await, 3, "{s}");
    }
    let mut workers = topo.workers;
    let ci = workers.info().await.unwrap();
    assert_eq!(ci.cluster.as_ref().map(|c| c.replicas.len()), Some(2));
    // Unset again, or the same value set: the existing R3 streams are bound.
    ensure(&js, &names, &replicas(None)).await.unwrap();
    ensure(&js, &names, &replicas(Some(3))).await.unwrap();
    // A different value set is a conflict, never a silent re-size.
    let err = ensure(&js, &names, &replicas(Some(1))).await.unwrap_err();
    assert!(
        matches!(
            err,
            TopologyError::StreamConflict {
                field: "num_replicas",
                ..
            }
        ),
        "{err}"
    );

    let names = FarmNames::new("two").unwrap();
    ensure(&js, &names, &replicas(Some(2))).await.unwrap();
    assert_eq!(stream_replicas(&js, &names.tasks_stream()).await, 2);

    let names = FarmNames::new("five").unwrap();
    let err = ensure(&js, &names, &replicas(Some(5))).await.unwrap_err();
    match &err {
        TopologyError::Replicas(ReplicasError::TooMany {
            requested: 5,
            servers: 3,
            cluster,
        }) => assert_eq!(cluster, nats.name()),
        other => panic!("expected TooMany, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("FARM_STREAM_REPLICAS=5"), "{text}");
    assert!(text.contains("3 server"), "{text}");
    client.flush().await.unwrap();
}
