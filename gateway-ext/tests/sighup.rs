//! SIGHUP reloads the ONNX models of a real gateway-ext process: a valid
//! replacement is loaded and decides from then on; an invalid one is
//! refused, reported in `/system/autoscaler`, and the loaded model keeps
//! deciding.
//!
//! The farm's interval is 10 minutes, so after its first tick no tick runs
//! during the test: the file-change check (made on ticks) cannot be what
//! reloads the model. Decisions are asked for with AlertManager alerts,
//! which decide at once with the loaded model.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Local, eventually, ort_dylib, write_linear_model};

async fn farm_status(url: &str) -> Option<Value> {
    common::farm_status(url, None, FARM).await
}
use farm_testsupport::{ChildGuard, free_port};
use serde_json::{Value, json};

const ACTIONS: [&str; 3] = ["delta:-1", "hold", "delta:+1"];
const FARM: &str = "hup";
const WORKER: &str = "hup-worker";

/// `kill -<sig> <pid>`.
fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

/// A firing alert for the worker; returns the farm's decision outputs.
async fn decide(url: &str) -> Value {
    let body = json!({
        "status": "firing",
        "receiver": "gateway-ext",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "APIHighInvocationRate", "function_name": WORKER}
        }]
    });
    let r = reqwest::Client::new()
        .post(format!("{url}/system/alert"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let st = farm_status(url).await.expect("the farm in the status");
    assert_eq!(st["last_decision"]["trigger"], "alert", "{st}");
    st["last_decision"]["outputs"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_valid_model_and_refuses_an_invalid_one() {
    let local = Local::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("policy.onnx");
    write_linear_model(&model, 17, &ACTIONS, "[0.0, 0.5, 2.0]");
    let farms = dir.path().join("farms.yml");
    std::fs::write(
        &farms,
        format!(
            "farms:\n  - farm: {FARM}\n    function: {WORKER}\n    policy: \"onnx:{}\"\n    \
             interval: 10m\n    min: 1\n    max: 4\n    fallback: \"fixed:2\"\n    queueing-floor: false\n",
            model.display()
        ),
    )
    .unwrap();
    let port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway-ext"));
    cmd.env_clear()
        .env("UPSTREAM_URL", &local.url)
        .env("FARMS_FILE", &farms)
        .env("ORT_DYLIB_PATH", ort_dylib())
        .env("GATEWAY_EXT_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("GATEWAY_EXT_GRPC_ADDR", "off")
        .env("DISCOVERY_INTERVAL", "off")
        // Nothing listens there: the farm runs without JetStream signals.
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("RUST_LOG", "gateway_ext=info");
    let mut gw = ChildGuard::spawn("gateway-ext", cmd).unwrap();
    let pid = gw.pid().unwrap();

    let st = eventually(Duration::from_secs(30), "gateway-ext up", || async {
        farm_status(&url)
            .await
            .filter(|f| f["decisions"].as_u64().unwrap_or(0) >= 1)
    })
    .await;
    assert_eq!(st["model_loads"], 1, "{st}");
    assert_eq!(decide(&url).await, json!([0.0, 0.5, 2.0]));

    // A valid replacement, then SIGHUP: loaded, and it decides.
    write_linear_model(&model, 17, &ACTIONS, "[3.0, 0.5, 2.0]");
    signal(pid, "HUP");
    let st = eventually(Duration::from_secs(30), "model reloaded", || async {
        farm_status(&url)
            .await
            .filter(|f| f["model_loads"].as_u64().unwrap_or(0) >= 2)
    })
    .await;
    assert_eq!(st["model_loads"], 2, "one reload per SIGHUP: {st}");
    assert_eq!(st["fallback"]["active"], false);
    assert_eq!(decide(&url).await, json!([3.0, 0.5, 2.0]));

    // An invalid replacement (wrong input size), then SIGHUP: refused and
    // reported; the model loaded before keeps deciding.
    write_linear_model(&model, 5, &ACTIONS, "[0.0, 0.5, 2.0]");
    signal(pid, "HUP");
    let st = eventually(Duration::from_secs(30), "reload refused", || async {
        farm_status(&url)
            .await
            .filter(|f| f["errors"]["reload"].as_u64().unwrap_or(0) >= 1)
    })
    .await;
    assert!(
        st["last_errors"]["reload"]
            .as_str()
            .unwrap()
            .contains("expected [batch, 17]"),
        "{st}"
    );
    assert_eq!(st["model_loads"], 2, "{st}");
    assert_eq!(st["fallback"]["active"], false, "{st}");
    assert_eq!(decide(&url).await, json!([3.0, 0.5, 2.0]));
    let m = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(&format!(
            "gateway_ext_errors_total{{farm=\"{FARM}\",kind=\"reload\"}} 1"
        )),
        "{m}"
    );

    // Still serving, and it stops cleanly on SIGTERM.
    assert!(gw.is_running(), "{}", gw.log_tail());
    gw.terminate().unwrap();
    let status = gw.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status:?}\n{}", gw.log_tail());
    let mut local = local;
    local.shutdown().await;
}
