//! A replay's setup holds the farm's tick decisions
//! (`POST /system/autoscaler/hold/{farm}`) until it restarts the control
//! clock at scenario time 0: `farmctl run` / `compare` scale the worker to
//! the scenario's initial replicas in between, and a tick there (the policy
//! deciding on the idle farm) started a live run from other replicas than
//! the simulator's.

mod common;

use std::time::Duration;

use common::{Gateway, Local, eventually, farm_spec};

/// Tick decisions listed by `GET /system/autoscaler/decisions` for `farm`.
async fn tick_count(client: &reqwest::Client, url: &str, farm: &str) -> usize {
    let v: serde_json::Value = client
        .get(format!("{url}/system/autoscaler/decisions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v[farm]
        .as_array()
        .map_or(0, |a| a.iter().filter(|d| d["trigger"] == "tick").count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_farm_makes_no_tick_decision_until_its_clock_restarts() {
    let local = Local::start(0).await;
    let spec = farm_spec("held", "held-worker", "fixed:1", &[("interval", "500ms")]);
    let gw = Gateway::with_farm(&local.url, spec).await;
    let client = reqwest::Client::new();
    assert_eq!(gw.post("/system/autoscaler/hold/held").await, 204);
    assert_eq!(gw.post("/system/autoscaler/hold/nope").await, 404);
    // Four intervals held: not one tick (unheld, the loop ticks every
    // 500 ms).
    let before = tick_count(&client, &gw.url, "held").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        tick_count(&client, &gw.url, "held").await,
        before,
        "a held farm ticked"
    );
    // The restart releases it: ticks come again.
    assert_eq!(gw.post("/system/autoscaler/restart/held").await, 204);
    let url = gw.url.clone();
    eventually(Duration::from_secs(20), "a tick after the restart", || {
        let client = client.clone();
        let url = url.clone();
        async move { (tick_count(&client, &url, "held").await > before).then_some(()) }
    })
    .await;
    gw.shutdown().await;
    let mut local = local;
    local.shutdown().await;
}
