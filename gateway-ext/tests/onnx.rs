//! ONNX policies through the real ONNX Runtime (the onnxruntime wheel of the
//! workspace venv, found through ORT_DYLIB_PATH set by the test), with models
//! written by the Python `onnx` package.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Gateway, config, eventually, farm_spec, ort_dylib, write_linear_model};
use farm_policy::onnx::OnnxError;
use gateway_ext::StartError;
use gateway_ext::policy::PolicyLoadError;
use gateway_ext::provider::{MemProvider, Provider};
use gateway_ext::types::FunctionStatus;

const ACTIONS: [&str; 3] = ["delta:-1", "hold", "delta:+1"];

fn cfg() -> gateway_ext::config::Config {
    let ort = ort_dylib();
    config(
        "http://127.0.0.1:1",
        &[
            ("DISCOVERY_INTERVAL", "off"),
            ("ORT_DYLIB_PATH", ort.to_str().unwrap()),
        ],
    )
}

fn provider() -> MemProvider {
    let mem = MemProvider::new();
    mem.insert(FunctionStatus {
        name: "w".into(),
        image: "img".into(),
        replicas: 1,
        available_replicas: 1,
        ..Default::default()
    });
    mem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_input_size_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("bad.onnx");
    write_linear_model(&model, 5, &ACTIONS, "[0, 1, 0]");
    let farm = farm_spec("bad", "w", &format!("onnx:{}", model.display()), &[]);
    let p: Arc<dyn Provider> = Arc::new(provider());
    let e = Gateway::start(cfg(), vec![farm], Some(p))
        .await
        .err()
        .unwrap();
    let msg = e.to_string();
    match e {
        StartError::Policy {
            farm,
            source:
                PolicyLoadError::Onnx(OnnxError::InputShape {
                    found, expected, ..
                }),
            ..
        } => {
            assert_eq!(farm, "bad");
            assert_eq!(found, vec![-1, 5]);
            assert_eq!(expected, farm_model::observation::OBS_DIM);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(msg.contains("expected [batch, 17]"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_mismatch_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    // Four outputs for a space of three actions.
    write_linear_model(
        &model,
        17,
        &["delta:-1", "hold", "delta:+1", "nonsense"],
        "[0, 1, 0, 0]",
    );
    let farm = farm_spec("bad", "w", &format!("onnx:{}", model.display()), &[]);
    let p: Arc<dyn Provider> = Arc::new(provider());
    let e = Gateway::start(cfg(), vec![farm], Some(p))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, StartError::Policy { source: PolicyLoadError::Onnx(OnnxError::BadMetadata { key, .. }), .. } if *key == "rust_farm.action_meanings"),
        "{e}"
    );
    let missing = dir.path().join("none.onnx");
    let farm = farm_spec("bad", "w", &format!("onnx:{}", missing.display()), &[]);
    let p: Arc<dyn Provider> = Arc::new(provider());
    let e = Gateway::start(cfg(), vec![farm], Some(p))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            &e,
            StartError::Policy {
                source: PolicyLoadError::Onnx(OnnxError::Load { .. }),
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn farm_follows_the_model_reloads_it_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("policy.onnx");
    // Always "delta:+1".
    write_linear_model(&model, 17, &ACTIONS, "[0.0, 0.5, 2.0]");
    let farm = farm_spec(
        "learned",
        "w",
        &format!("onnx:{}", model.display()),
        &[
            ("interval", "300ms"),
            ("min", "1"),
            ("max", "4"),
            ("fallback", "fixed:2"),
            ("queueing-floor", "false"),
        ],
    );
    let mem = provider();
    let p: Arc<dyn Provider> = Arc::new(mem.clone());
    let gw = Gateway::start(cfg(), vec![farm], Some(p)).await.unwrap();

    // Up one replica per tick until the maximum.
    let st = eventually(
        Duration::from_secs(20),
        "scaled to max by the model",
        || async { gw.farm("learned").await.filter(|f| f["desired"] == 4) },
    )
    .await;
    assert_eq!(mem.function("w").unwrap().replicas, 4);
    let d = &st["last_decision"];
    assert_eq!(d["action"], 2);
    assert_eq!(d["outputs"], serde_json::json!([0.0, 0.5, 2.0]));
    assert!(d["policy"].as_str().unwrap().starts_with("onnx:"));
    let scales: Vec<String> = mem
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("scale w"))
        .collect();
    assert_eq!(
        scales,
        vec!["scale w 2", "scale w 3", "scale w 4"],
        "one step per tick"
    );

    // A new file is picked up (file change) and followed: "delta:-1".
    tokio::time::sleep(Duration::from_millis(1100)).await; // distinct mtime
    write_linear_model(&model, 17, &ACTIONS, "[3.0, 0.5, 2.0]");
    eventually(
        Duration::from_secs(20),
        "scaled down to min by the new model",
        || async { gw.farm("learned").await.filter(|f| f["desired"] == 1) },
    )
    .await;
    assert_eq!(mem.function("w").unwrap().replicas, 1);

    // A replacement with the wrong input size is refused; the loaded model
    // keeps deciding ("hold" from now on would be visible as no change).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write_linear_model(&model, 5, &ACTIONS, "[0.0, 0.5, 2.0]");
    let st = eventually(Duration::from_secs(20), "reload refused", || async {
        gw.farm("learned")
            .await
            .filter(|f| f["errors"]["reload"].as_u64().unwrap_or(0) >= 1)
    })
    .await;
    assert_eq!(st["fallback"]["active"], false);
    assert!(
        st["last_errors"]["reload"]
            .as_str()
            .unwrap()
            .contains("expected [batch, 17]")
    );
    assert_eq!(
        mem.function("w").unwrap().replicas,
        1,
        "the old model still says delta:-1 at min"
    );

    // A model whose output is NaN: inference error -> the fallback (fixed:2) decides.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write_linear_model(&model, 17, &ACTIONS, "[NaN, 0.5, 2.0]");
    let st = eventually(Duration::from_secs(20), "fallback decides", || async {
        gw.farm("learned")
            .await
            .filter(|f| f["fallback"]["active"] == true && f["desired"] == 2)
    })
    .await;
    assert!(
        st["fallback"]["reason"]
            .as_str()
            .unwrap()
            .contains("non-finite")
    );
    assert_eq!(st["last_decision"]["policy"], "fixed:2");
    assert_eq!(mem.function("w").unwrap().replicas, 2);
    let m = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("gateway_ext_policy_fallback{farm=\"learned\"} 1"),
        "{m}"
    );
    assert!(m.contains("gateway_ext_errors_total{farm=\"learned\",kind=\"inference\"}"));
    assert!(m.contains("gateway_ext_inference_seconds_count{farm=\"learned\"}"));
    gw.shutdown().await;
}
