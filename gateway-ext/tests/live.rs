//! gateway-ext against real components: a real nats-server, the local
//! provider (farm-local) running real sleep-worker replicas as processes,
//! the real collector publishing `MetricsSnapshot`s, farms discovered from
//! annotations.

mod common;

use std::time::Duration;

use common::{Gateway, Local, config, eventually, farm_spec, start_collector, wait_consumer};
use farm_runtime::names::FarmNames;
use farm_runtime::proto::Task;
use farm_testsupport::NatsServer;
use prost::Message;

async fn publish_sleep_tasks(
    js: &async_nats::jetstream::Context,
    farm: &str,
    n: u64,
    sleep_ms: u64,
    deadline_ms: u64,
) {
    let names = FarmNames::new(farm).unwrap();
    for seq in 0..n {
        let t = Task {
            id: format!("{farm}-{seq}"),
            seq,
            payload: format!("{{\"sleep_ms\":{sleep_ms}}}").into_bytes().into(),
            content_type: "application/json".into(),
            deadline_ms,
            attributes: Default::default(),
        };
        js.publish(names.tasks_subject(), t.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

fn ready(f: &serde_json::Value) -> u64 {
    f["ready"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn farm_under_load_scales_up_and_back_down() {
    let nats = NatsServer::start().unwrap();
    let local = Local::start(0).await;
    local.deploy_worker(
        "load-worker",
        "load",
        &nats.url(),
        &[
            ("com.rust-farm.farm", "load"),
            ("com.rust-farm.policy", "openfaas-pro-queue"),
            ("com.rust-farm.interval", "500ms"),
            ("com.rust-farm.queueing-floor", "false"),
        ],
        &[
            ("com.openfaas.scale.min", "1"),
            ("com.openfaas.scale.max", "4"),
        ],
    );
    let js = wait_consumer(&nats.url(), "load").await;
    // The real collector: gateway-ext's QoS and latency figures come from
    // its snapshots.
    let collector = start_collector(&nats.url(), "load", "200ms").await;
    let cfg = config(
        &local.url,
        &[("DISCOVERY_INTERVAL", "300ms"), ("NATS_URL", &nats.url())],
    );
    let gw = Gateway::start(cfg, vec![], None).await.unwrap();
    let st = eventually(
        Duration::from_secs(20),
        "farm discovered and observed",
        || async {
            gw.farm("load")
                .await
                .filter(|f| f["decisions"].as_u64().unwrap_or(0) >= 2)
        },
    )
    .await;
    assert_eq!(st["desired"], 1, "idle farm stays at min: {st}");
    assert_eq!(
        (st["min"].as_u64(), st["max"].as_u64()),
        (Some(1), Some(4)),
        "bounds from the labels"
    );

    // 40 s of work for one replica: enough backlog to see the scale-up even
    // when replicas start slowly on a loaded machine.
    // Deadline 60 s: generous, and a value only the collector can report.
    publish_sleep_tasks(&js, "load", 160, 250, 60_000).await;
    let st = eventually(
        Duration::from_secs(60),
        "scaled up to the maximum with ready replicas",
        || async {
            gw.farm("load")
                .await
                .filter(|f| f["desired"] == 4 && ready(f) >= 3)
        },
    )
    .await;
    let obs = &st["last_decision"]["signals"];
    assert!(obs["backlog"].as_f64().unwrap() + obs["in_flight"].as_f64().unwrap() > 0.0);
    assert_eq!(st["last_decision"]["policy"], "openfaas-pro-queue");
    assert!(local.handle.status("load-worker").unwrap().replicas >= 3);

    // The observation carries the collector's figures (its MetricsSnapshot
    // through gateway-ext's own subscription), not made-up values.
    let st = eventually(
        Duration::from_secs(60),
        "a decision with the collector's QoS and latency figures",
        || async {
            gw.farm("load").await.filter(|f| {
                let s = &f["last_decision"]["signals"];
                s["completions"].as_f64().unwrap_or(0.0) > 0.0
                    && s["service_mean_s"].is_number()
                    && s["latency_mean_s"].is_number()
            })
        },
    )
    .await;
    let s = &st["last_decision"]["signals"];
    assert_eq!(
        num(&s["deadline_min_s"]),
        60.0,
        "the tasks' deadline, from the collector: {st}"
    );
    // Every task sleeps 250 ms in the handler: the workers' service times
    // and the end-to-end latencies cannot be shorter.
    assert!(num(&s["service_mean_s"]) >= 0.24, "{st}");
    assert!(
        num(&s["service_p95_s"]) >= num(&s["service_mean_s"]) * 0.5,
        "{st}"
    );
    assert!(num(&s["latency_mean_s"]) >= 0.24, "{st}");
    assert!(
        num(&s["latency_max_s"]) >= num(&s["latency_mean_s"]),
        "{st}"
    );
    let on_time = num(&s["completions_on_time"]);
    assert!(
        on_time > 0.0 && on_time <= num(&s["completions"]),
        "on-time completions from the collector's QoS hits: {st}"
    );
    assert!(
        num(&st["last_observation"]["window_qos"]) > 0.0,
        "window QoS in the observation: {st}"
    );
    assert!(st["snapshot_age_s"].is_number(), "{st}");

    eventually(
        Duration::from_secs(90),
        "backlog drained and scaled back to 1",
        || async {
            gw.farm("load").await.filter(|f| {
                f["desired"] == 1
                    && f["replicas"] == 1
                    && f["last_decision"]["signals"]["backlog"] == 0.0
            })
        },
    )
    .await;
    assert_eq!(local.handle.status("load-worker").unwrap().replicas, 1);
    let m = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("gateway_ext_observation{farm=\"load\",feature=\"backlog_log\"}"));
    gw.shutdown().await;
    let mut local = local;
    local.shutdown().await;
    drop(collector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_spread_replicas_over_capped_functions() {
    let nats = NatsServer::start().unwrap();
    let local = Local::start(0).await;
    let ann = |policy: &'static str| {
        vec![
            ("com.rust-farm.farm", "sharded"),
            ("com.rust-farm.policy", policy),
            ("com.rust-farm.interval", "300ms"),
            ("com.rust-farm.per-function-cap", "2"),
            ("com.rust-farm.max", "8"),
        ]
    };
    local.deploy_worker("sh-worker", "sharded", &nats.url(), &ann("fixed:5"), &[]);
    let cfg = config(
        &local.url,
        &[("DISCOVERY_INTERVAL", "300ms"), ("NATS_URL", &nats.url())],
    );
    let gw = Gateway::start(cfg, vec![], None).await.unwrap();
    let names = eventually(
        Duration::from_secs(30),
        "three functions with 5 replicas",
        || async {
            let fs = local.handle.list();
            let ours: Vec<_> = fs
                .iter()
                .filter(|f| f.name.starts_with("sh-worker"))
                .collect();
            let total: u64 = ours.iter().map(|f| f.replicas).sum();
            (ours.len() == 3 && total == 5).then(|| {
                let mut n: Vec<(String, u64)> =
                    ours.iter().map(|f| (f.name.clone(), f.replicas)).collect();
                n.sort();
                n
            })
        },
    )
    .await;
    assert_eq!(
        names,
        vec![
            ("sh-worker".to_owned(), 2),
            ("sh-worker-shard-1".to_owned(), 2),
            ("sh-worker-shard-2".to_owned(), 1)
        ]
    );
    // The shards are clones: same image and environment (same farm and consumer).
    let shard = local.handle.status("sh-worker-shard-1").unwrap();
    let worker = local.handle.status("sh-worker").unwrap();
    assert_eq!(shard.image, worker.image);
    assert_eq!(shard.env_vars, worker.env_vars);
    assert_eq!(shard.annotations["com.rust-farm.shard-of"], "sh-worker");
    // Their replicas really run and bind the farm: 5 ready in total.
    eventually(
        Duration::from_secs(30),
        "5 ready replicas over the shards",
        || async {
            gw.farm("sharded")
                .await
                .filter(|f| f["ready"] == 5)
                .map(|_| ())
        },
    )
    .await;

    // Re-declared at 1 replica: the shards go away.
    local.deploy_worker("sh-worker", "sharded", &nats.url(), &ann("fixed:1"), &[]);
    eventually(Duration::from_secs(30), "shards removed", || async {
        let fs = local.handle.list();
        let ours: Vec<_> = fs
            .iter()
            .filter(|f| f.name.starts_with("sh-worker"))
            .collect();
        (ours.len() == 1 && ours[0].replicas == 1).then_some(())
    })
    .await;
    gw.shutdown().await;
    let mut local = local;
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_down_for_a_while_loop_keeps_running_and_recovers() {
    let nats = NatsServer::start().unwrap();
    let mut local = Local::start(0).await;
    let port = local.addr.port();
    let annotations = [
        ("com.rust-farm.farm", "steady"),
        ("com.rust-farm.policy", "fixed:2"),
        ("com.rust-farm.interval", "300ms"),
    ];
    local.deploy_worker("steady-worker", "steady", &nats.url(), &annotations, &[]);
    let cfg = config(
        &local.url,
        &[("DISCOVERY_INTERVAL", "300ms"), ("NATS_URL", &nats.url())],
    );
    let gw = Gateway::start(cfg, vec![], None).await.unwrap();
    eventually(Duration::from_secs(30), "scaled to 2", || async {
        (local.handle.status("steady-worker").ok()?.replicas == 2).then_some(())
    })
    .await;

    local.shutdown().await;
    let before = gw.farm("steady").await.unwrap()["decisions"]
        .as_u64()
        .unwrap();
    let st = eventually(
        Duration::from_secs(20),
        "errors reported while decisions go on",
        || async {
            gw.farm("steady").await.filter(|f| {
                f["errors"]["provider"].as_u64().unwrap_or(0) >= 3
                    && f["decisions"].as_u64().unwrap() >= before + 3
            })
        },
    )
    .await;
    assert_eq!(st["last_decision"]["applied"], false);
    assert!(
        st["last_errors"]["provider"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{st}"
    );
    let m = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("gateway_ext_errors_total{farm=\"steady\",kind=\"provider\"}"));
    // The HTTP surface still answers.
    assert_eq!(
        reqwest::get(format!("{}/healthz", gw.url))
            .await
            .unwrap()
            .status(),
        200
    );

    // The provider comes back on the same address (empty, as after a restart);
    // the worker is redeployed with one replica, and the loop scales it back.
    let local = Local::start(port).await;
    local.deploy_worker("steady-worker", "steady", &nats.url(), &annotations, &[]);
    eventually(
        Duration::from_secs(30),
        "recovered to 2 replicas",
        || async {
            let f = gw.farm("steady").await?;
            (local.handle.status("steady-worker").ok()?.replicas == 2
                && f["last_decision"]["applied"] == true)
                .then_some(())
        },
    )
    .await;
    gw.shutdown().await;
    let mut local = local;
    local.shutdown().await;
}

/// Decisions listed by `GET /system/autoscaler/decisions` for `farm`.
async fn decisions(gw: &Gateway, farm: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = reqwest::get(format!("{}/system/autoscaler/decisions", gw.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v[farm].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_jump_decides_before_the_next_tick() {
    let nats = NatsServer::start().unwrap();
    let local = Local::start(0).await;
    // A 10-minute interval: after the start-up tick, any decision in this
    // test is an early one.
    local.deploy_worker(
        "burst-worker",
        "burst",
        &nats.url(),
        &[
            ("com.rust-farm.farm", "burst"),
            ("com.rust-farm.policy", "openfaas-pro-queue"),
            ("com.rust-farm.interval", "10m"),
            ("com.rust-farm.events", "on"),
            ("com.rust-farm.max", "4"),
        ],
        &[],
    );
    let js = wait_consumer(&nats.url(), "burst").await;
    let cfg = config(
        &local.url,
        &[("DISCOVERY_INTERVAL", "300ms"), ("NATS_URL", &nats.url())],
    );
    let gw = Gateway::start(cfg, vec![], None).await.unwrap();
    eventually(Duration::from_secs(20), "the start-up tick", || async {
        gw.farm("burst")
            .await
            .filter(|f| f["decisions"].as_u64().unwrap_or(0) >= 1)
    })
    .await;
    // Quiet: no jump, no early decision.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quiet = decisions(&gw, "burst").await;
    assert!(
        quiet.iter().all(|d| d["trigger"] == "tick"),
        "an early decision without a jump: {quiet:?}"
    );

    // 40 tasks of 250 ms on one replica: the backlog jumps past the
    // trigger's floor of 4 at once.
    publish_sleep_tasks(&js, "burst", 40, 250, 60_000).await;
    let early = eventually(Duration::from_secs(15), "an early decision", || async {
        decisions(&gw, "burst")
            .await
            .into_iter()
            .find(|d| d["trigger"] == "backlog")
    })
    .await;
    assert!(num(&early["signals"]["backlog"]) >= 4.0, "{early}");
    assert!(
        early["desired"].as_u64().unwrap_or(0) > 1,
        "the policy scaled on the jump: {early}"
    );
    let ticks = decisions(&gw, "burst")
        .await
        .iter()
        .filter(|d| d["trigger"] == "tick")
        .count();
    assert_eq!(ticks, 1, "only the start-up tick in a 10-minute interval");
    let m = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("trigger=\"backlog\""),
        "early decisions counted by trigger"
    );
    gw.shutdown().await;
    let mut local = local;
    local.shutdown().await;
}

/// Four farms on one gateway-ext, each with its own policy and real
/// sleep-worker replicas: every farm gets its own policy's count, and when
/// one farm breaks (its workers consumer deleted, its function gone from the
/// provider, so every scale call fails) the other three keep deciding and
/// keep their counts while the broken one reports provider errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_farms_decide_apart_and_one_outage_stalls_no_other() {
    let nats = NatsServer::start().unwrap();
    let mut local = Local::start(0).await;
    // (farm, policy, the count that policy asks for with no load)
    let farms = [
        ("fa", "fixed:2", 2),
        ("fb", "queueing", 1),
        ("fc", "fixed:3", 3),
        ("fd", "fixed:2", 2),
    ];
    let mut specs = Vec::new();
    for (farm, policy, _) in farms {
        let function = format!("{farm}-worker");
        local.deploy_worker(&function, farm, &nats.url(), &[], &[]);
        specs.push(farm_spec(farm, &function, policy, &[("interval", "300ms")]));
    }
    let cfg = config(
        &local.url,
        &[("DISCOVERY_INTERVAL", "off"), ("NATS_URL", &nats.url())],
    );
    let gw = Gateway::start(cfg, specs, None).await.unwrap();
    let counts_held = |local: &Local, upto: usize| {
        farms[..upto].iter().all(|(farm, _, n)| {
            local
                .handle
                .status(&format!("{farm}-worker"))
                .is_ok_and(|s| s.replicas == *n && s.available_replicas == *n)
        })
    };
    eventually(
        Duration::from_secs(60),
        "every farm at its own count",
        || async { counts_held(&local, farms.len()).then_some(()) },
    )
    .await;
    let js = wait_consumer(&nats.url(), "fd").await;

    // The outage of fd: its consumer and its function are gone.
    let names = FarmNames::new("fd").unwrap();
    js.get_stream(names.tasks_stream())
        .await
        .unwrap()
        .delete_consumer(names.workers_consumer())
        .await
        .unwrap();
    local.handle.delete("fd-worker").unwrap();
    let before: Vec<u64> = {
        let mut v = Vec::new();
        for (farm, _, _) in farms {
            v.push(gw.farm(farm).await.unwrap()["decisions"].as_u64().unwrap());
        }
        v
    };
    let broken = eventually(
        Duration::from_secs(30),
        "fd reports provider errors while the others go on deciding",
        || async {
            let fd = gw.farm("fd").await?;
            if fd["errors"]["provider"].as_u64().unwrap_or(0) < 3 {
                return None;
            }
            for (i, (farm, _, n)) in farms[..3].iter().enumerate() {
                let f = gw.farm(farm).await?;
                let fresh = f["decisions"].as_u64()? >= before[i] + 10;
                let own = f["last_decision"]["desired"].as_u64()? == *n;
                if !(fresh && own) {
                    return None;
                }
            }
            Some(fd)
        },
    )
    .await;
    assert!(
        broken["last_errors"]["provider"].as_str().is_some(),
        "{broken}"
    );
    assert!(
        counts_held(&local, 3),
        "the healthy farms kept their replicas"
    );
    for farm in ["fa", "fb", "fc"] {
        let f = gw.farm(farm).await.unwrap();
        assert_eq!(f["errors"]["provider"].as_u64().unwrap_or(0), 0, "{f}");
    }
    gw.shutdown().await;
    local.shutdown().await;
}
