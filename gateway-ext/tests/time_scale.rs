//! The time scale: a farm of a run compressed K times is decided on the
//! run's clock. Its interval is declared in wall-clock time; the policy is
//! told each interval lasted K times longer (and so are latencies, service
//! times, deadlines and its own windows; see `farm_model::Signals::time_scaled`
//! and its unit test in `gateway_ext::observe`).

mod common;

use std::time::Duration;

use common::{Gateway, Local, config, eventually, farm_spec};
use farm_proto::control::SpecRequest;
use farm_proto::control::farm_control_client::FarmControlClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_sees_the_scaled_clock() {
    let local = Local::start(0).await;
    // A 10-minute interval: only the first tick runs during the test, and
    // its interval is the declared one, so the figures are exact.
    let scaled = farm_spec(
        "scaled",
        "scaled-worker",
        "fixed:1",
        &[("interval", "10m"), ("time-scale", "4")],
    );
    let by_default = farm_spec("plain", "plain-worker", "fixed:1", &[("interval", "10m")]);
    let cfg = config(
        &local.url,
        &[("DISCOVERY_INTERVAL", "off"), ("TIME_SCALE", "2")],
    );
    // farm_spec parses with the defaults of an empty config: apply the
    // service-wide TIME_SCALE the way the farms file would get it.
    let by_default = gateway_ext::config::FarmSpec {
        time_scale: cfg.defaults.time_scale,
        ..by_default
    };
    let gw = Gateway::start(cfg, vec![scaled, by_default], None)
        .await
        .unwrap();
    for (farm, k) in [("scaled", 4.0), ("plain", 2.0)] {
        let st = eventually(Duration::from_secs(20), "first decision", || async {
            gw.farm(farm)
                .await
                .filter(|f| f["decisions"].as_u64().unwrap_or(0) >= 1)
        })
        .await;
        assert_eq!(st["time_scale"], k, "{st}");
        assert_eq!(st["interval_s"], 600.0, "wall-clock interval: {st}");
        assert_eq!(
            st["last_decision"]["signals"]["interval_s"],
            600.0 * k,
            "the policy's interval: {st}"
        );
    }
    // External controllers are told the interval of the run's clock too.
    let mut grpc = FarmControlClient::connect(format!("http://{}", gw.grpc))
        .await
        .unwrap();
    let spec = grpc
        .get_spec(SpecRequest {
            farm: "scaled".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.control_interval_s, 2400.0);
    gw.shutdown().await;
    let mut local = local;
    local.shutdown().await;
}

/// A replay's start restarts the farm's control clock
/// (`POST /system/autoscaler/restart/{farm}`): the next tick comes a whole
/// interval later, and it covers the interval since the restart, on the
/// scaled clock. Every tick decision is listed by
/// `GET /system/autoscaler/decisions`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_starts_the_ticks_and_the_decision_log_lists_them() {
    let local = Local::start(0).await;
    let spec = farm_spec(
        "replay",
        "replay-worker",
        "fixed:1",
        &[("interval", "3s"), ("time-scale", "4")],
    );
    // The loop's first tick comes at its start.
    let gw = Gateway::with_farm(&local.url, spec).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = reqwest::Client::new();
    let restarted_us = farm_runtime::worker::now_us();
    assert_eq!(gw.post("/system/autoscaler/restart/replay").await, 204);
    assert_eq!(gw.post("/system/autoscaler/restart/nope").await, 404);
    let log = eventually(Duration::from_secs(20), "a tick after the restart", || {
        let client = client.clone();
        let url = format!("{}/system/autoscaler/decisions", gw.url);
        async move {
            let v: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
            let ticks: Vec<serde_json::Value> = v["replay"]
                .as_array()?
                .iter()
                .filter(|d| d["trigger"] == "tick" && d["at_us"].as_i64() > Some(restarted_us))
                .cloned()
                .collect();
            (!ticks.is_empty()).then_some(ticks)
        }
    })
    .await;
    let first = &log[0];
    // Without the restart the loop's phase would have ticked about 2 s
    // after it; with it, a whole 3 s interval passes first.
    let after_s = (first["at_us"].as_i64().unwrap() - restarted_us) as f64 / 1e6;
    assert!(after_s >= 2.9, "ticked {after_s} s after the restart");
    let interval = first["signals"]["interval_s"].as_f64().unwrap();
    assert!(interval >= 4.0 * 2.9, "the policy's interval {interval} s");
    assert!(
        first["policy"]
            .as_str()
            .is_some_and(|p| p.starts_with("fixed")),
        "{first}"
    );
    gw.shutdown().await;
    let mut local = local;
    local.shutdown().await;
}
