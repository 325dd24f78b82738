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
