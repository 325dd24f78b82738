//! `farm_runtime::topology::ensure` against a real nats-server: idempotent,
//! and conflicting existing streams/consumers are typed errors.

use std::time::Duration;

use async_nats::jetstream::stream::{self, RetentionPolicy};
use farm_runtime::config::TopologyConfig;
use farm_runtime::names::FarmNames;
use farm_runtime::topology::{TopologyError, ensure};
use farm_testsupport::NatsServer;

mod common;

#[tokio::test]
async fn ensure_is_idempotent() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = common::js(&nats).await;
    let names = FarmNames::new("idem").unwrap();
    let cfg = TopologyConfig {
        tasks_max_msgs: 100,
        ..Default::default()
    };
    let mut a = ensure(&js, &names, &cfg).await.unwrap();
    let mut b = ensure(&js, &names, &cfg).await.unwrap();
    assert_eq!(a.tasks.info().await.unwrap().config.name, "FARM_IDEM_TASKS");
    let tasks = b.tasks.info().await.unwrap().config.clone();
    assert_eq!(tasks.retention, RetentionPolicy::WorkQueue);
    assert_eq!(tasks.discard, stream::DiscardPolicy::New);
    assert_eq!(tasks.max_messages, 100);
    assert_eq!(tasks.subjects, vec!["farm.idem.tasks".to_owned()]);
    let results = b.results.info().await.unwrap().config.clone();
    assert_eq!(results.retention, RetentionPolicy::Limits);
    assert_eq!(b.dlq.info().await.unwrap().config.name, "FARM_IDEM_DLQ");
    let ci = b.workers.info().await.unwrap();
    assert_eq!(ci.config.max_deliver, 5);
    assert_eq!(ci.config.ack_wait, Duration::from_secs(30));
    // Concurrent ensures from many "replicas" all succeed.
    let names2 = FarmNames::new("race").unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (js, names2, cfg) = (js.clone(), names2.clone(), cfg.clone());
        set.spawn(async move { ensure(&js, &names2, &cfg).await.map(|_| ()) });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
}

#[tokio::test]
async fn conflicting_stream_is_refused() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = common::js(&nats).await;
    let names = FarmNames::new("clash").unwrap();
    js.create_stream(stream::Config {
        name: names.tasks_stream(),
        subjects: vec![names.tasks_subject()],
        retention: RetentionPolicy::Limits,
        ..Default::default()
    })
    .await
    .unwrap();
    let err = ensure(&js, &names, &TopologyConfig::default())
        .await
        .unwrap_err();
    match err {
        TopologyError::StreamConflict { stream, field, .. } => {
            assert_eq!(stream, "FARM_CLASH_TASKS");
            assert_eq!(field, "retention");
        }
        other => panic!("expected StreamConflict, got {other:?}"),
    }
}

#[tokio::test]
async fn different_limits_are_refused() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = common::js(&nats).await;
    let names = FarmNames::new("limits").unwrap();
    ensure(&js, &names, &TopologyConfig::default())
        .await
        .unwrap();
    let cfg = TopologyConfig {
        tasks_max_msgs: 10,
        ..Default::default()
    };
    let err = ensure(&js, &names, &cfg).await.unwrap_err();
    assert!(
        matches!(
            err,
            TopologyError::StreamConflict {
                field: "max_msgs",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn conflicting_consumer_is_refused() {
    let nats = NatsServer::start().unwrap();
    let (_c, js) = common::js(&nats).await;
    let names = FarmNames::new("cons").unwrap();
    ensure(&js, &names, &TopologyConfig::default())
        .await
        .unwrap();
    let cfg = TopologyConfig {
        max_deliver: 3,
        ..Default::default()
    };
    let err = ensure(&js, &names, &cfg).await.unwrap_err();
    match err {
        TopologyError::ConsumerConflict {
            consumer,
            field,
            existing,
            wanted,
            ..
        } => {
            assert_eq!(consumer, "workers");
            assert_eq!(field, "max_deliver");
            assert_eq!((existing.as_str(), wanted.as_str()), ("5", "3"));
        }
        other => panic!("expected ConsumerConflict, got {other:?}"),
    }
    let cfg = TopologyConfig {
        ack_wait: Duration::from_secs(5),
        ..Default::default()
    };
    let err = ensure(&js, &names, &cfg).await.unwrap_err();
    assert!(
        matches!(
            err,
            TopologyError::ConsumerConflict {
                field: "ack_wait",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn refuses_a_server_without_the_right_version_check() {
    // The version gate itself is a pure function (no old server runs here);
    // this checks that a real 2.10+ server passes it through `connect`.
    let nats = NatsServer::start().unwrap();
    let cfg = farm_runtime::config::NatsConfig::plain(nats.url());
    let client = farm_runtime::nats::connect(&cfg).await.unwrap();
    farm_runtime::nats::check_server_version(&client.server_info().version).unwrap();
    assert!(matches!(
        farm_runtime::nats::check_server_version("2.9.25"),
        Err(farm_runtime::nats::NatsError::ServerTooOld { .. })
    ));
}

#[tokio::test]
async fn token_auth_is_used() {
    let nats = NatsServer::start_with(farm_testsupport::NatsOptions {
        token: Some("s3cret".into()),
        ..Default::default()
    })
    .unwrap();
    let mut cfg = farm_runtime::config::NatsConfig::plain(nats.url());
    let err = farm_runtime::nats::connect(&cfg).await.unwrap_err();
    assert!(
        !err.is_transient(),
        "auth failure must not be retried: {err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    cfg.auth = farm_runtime::config::NatsAuth::Token(farm_runtime::config::Secret::File(file));
    farm_runtime::nats::connect(&cfg).await.unwrap();
}
