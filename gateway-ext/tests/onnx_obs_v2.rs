//! Models trained on observation layout 2 (layout 1 plus history features,
//! `farm_model::observation::Observer`): a CEM linear policy exported by
//! `rustfarm_gym.cem` loads in gateway-ext's loader, reports its version,
//! takes 23-feature observations with the same greedy actions as Python's
//! ONNX Runtime, and refuses observations or metadata of another layout.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Gateway, config, eventually, farm_spec, ort_dylib, python_greedy_batch};
use farm_model::action::ActionSpace;
use farm_model::observation::{OBS_DIM, OBS_DIM_V2, high_of, low_of, names_of};
use farm_policy::onnx::{OnnxError, OnnxModel};
use gateway_ext::provider::{MemProvider, Provider};
use gateway_ext::types::FunctionStatus;

/// Python side: export a linear CEM policy over `dim` features with seeded
/// random weights and the metadata of layout `version` (names given), and
/// write a batch of observations with ONNX Runtime's greedy actions.
const SCRIPT: &str = r#"
import json, sys
import numpy as np
from rustfarm_gym.cem import PolicyShape, policy_graph
from rustfarm_gym.client import Spec
from rustfarm_gym.onnx_export import metadata, run_onnx, save

args = json.loads(sys.argv[1])
low, high = np.array(args["low"]), np.array(args["high"])
spec = Spec(obs_version=args["obs_version"], observation_names=tuple(args["names"]),
            observation_low=tuple(args["low"]), observation_high=tuple(args["high"]),
            action_meanings=tuple(args["actions"]), control_interval_s=8.0,
            episode_steps=30, backend="sim", server_version="test", scenarios=(), policies=())
shape = PolicyShape(len(low), len(args["actions"]))
theta = (np.array(args["theta"]) if "theta" in args
         else np.random.default_rng(3).normal(size=shape.size))
save(policy_graph(shape, theta), args["model"],
     metadata(spec, output="logits", algorithm=shape.algorithm, config={"seed": 3}))
obs = np.random.default_rng(1).uniform(low, high, size=(200, len(low))).astype(np.float32)
json.dump({"obs": obs.tolist(), "actions": run_onnx(args["model"], obs).argmax(1).tolist()},
          open(args["out"], "w"))
"#;

type Batch = (Vec<Vec<f32>>, Vec<usize>);

fn export(model: &Path, version: u32, names: &[&str], dim: usize) -> Batch {
    let actions = ActionSpace::with_estimates().meanings();
    export_with(model, version, names, dim, &actions, None)
}

fn export_with(
    model: &Path,
    version: u32,
    names: &[&str],
    dim: usize,
    actions: &[String],
    theta: Option<Vec<f64>>,
) -> Batch {
    let low = low_of(2).expect("v2");
    let high = high_of(2).expect("v2");
    let mut args = serde_json::json!({
        "model": model, "obs_version": version, "names": names,
        "actions": actions, "low": &low[..dim], "high": &high[..dim],
    });
    if let Some(t) = theta {
        args["theta"] = serde_json::json!(t);
    }
    python_greedy_batch(SCRIPT, args)
}

#[test]
fn v2_policy_loads_and_agrees_with_python() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("v2.onnx");
    let names = names_of(2).expect("v2");
    let (obs, expected) = export(&model, 2, names, OBS_DIM_V2);
    let mut m = OnnxModel::load(Some(&ort_dylib()), &model).expect("gateway-ext loads v2");
    assert_eq!(m.obs_version(), 2);
    let differ = obs
        .iter()
        .zip(&expected)
        .filter(|(o, want)| m.infer(o).expect("inference").action != **want)
        .count();
    assert_eq!(differ, 0, "{differ} of {} greedy actions differ", obs.len());
    // A layout-1 observation is refused, not padded.
    let e = m.infer(&obs[0][..OBS_DIM]).unwrap_err();
    assert_eq!(
        e,
        OnnxError::ObservationLength {
            found: OBS_DIM,
            expected: OBS_DIM_V2,
            version: 2
        }
    );
}

#[test]
fn layout_metadata_must_agree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ort = ort_dylib();
    // Version 2 with the 17 names of version 1 (and a 17-wide graph).
    let model = dir.path().join("names.onnx");
    export(&model, 2, names_of(1).expect("v1"), OBS_DIM);
    let e = OnnxModel::load(Some(&ort), &model).unwrap_err();
    assert!(matches!(e, OnnxError::Observation { .. }), "{e}");
    // A version this build does not compute.
    let model = dir.path().join("v3.onnx");
    export(&model, 3, names_of(2).expect("v2"), OBS_DIM_V2);
    let e = OnnxModel::load(Some(&ort), &model).unwrap_err();
    assert!(matches!(e, OnnxError::Observation { .. }), "{e}");
    // Version 1 with a 23-wide graph: the input shape is refused.
    let model = dir.path().join("v1wide.onnx");
    export(&model, 1, names_of(2).expect("v2"), OBS_DIM_V2);
    let e = OnnxModel::load(Some(&ort), &model).unwrap_err();
    assert!(matches!(e, OnnxError::Observation { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_farm_observes_v2_for_a_v2_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("v2.onnx");
    // Logits over (delta:-1, hold, delta:+1): "+1" unless the last decision
    // changed the count (desired_change_frac, the last v2 feature), then "hold".
    let actions: Vec<String> = ["delta:-1", "hold", "delta:+1"].map(String::from).to_vec();
    let mut theta = vec![0.0; (OBS_DIM_V2 + 1) * 3];
    theta[(OBS_DIM_V2 - 1) * 3 + 1] = 100.0;
    theta[OBS_DIM_V2 * 3..].copy_from_slice(&[0.0, 0.5, 2.0]);
    export_with(
        &model,
        2,
        names_of(2).expect("v2"),
        OBS_DIM_V2,
        &actions,
        Some(theta),
    );
    let ort = ort_dylib();
    let cfg = config(
        "http://127.0.0.1:1",
        &[
            ("DISCOVERY_INTERVAL", "off"),
            ("ORT_DYLIB_PATH", ort.to_str().expect("utf-8 path")),
        ],
    );
    let farm = farm_spec(
        "learned",
        "w",
        &format!("onnx:{}", model.display()),
        &[
            ("interval", "300ms"),
            ("min", "1"),
            ("max", "4"),
            ("queueing-floor", "false"),
        ],
    );
    let mem = MemProvider::new();
    mem.insert(FunctionStatus {
        name: "w".into(),
        image: "img".into(),
        replicas: 1,
        available_replicas: 1,
        ..Default::default()
    });
    let p: Arc<dyn Provider> = Arc::new(mem.clone());
    let gw = Gateway::start(cfg, vec![farm], Some(p))
        .await
        .expect("gateway");
    let st = eventually(Duration::from_secs(20), "scaled to max", || async {
        gw.farm("learned").await.filter(|f| f["desired"] == 4)
    })
    .await;
    let obs = st["last_observation"].as_object().expect("observation map");
    assert_eq!(obs.len(), OBS_DIM_V2);
    assert!(obs.contains_key("desired_change_frac") && obs.contains_key("floor_ewma_frac"));
    assert_eq!(
        st["last_decision"]["observation"].as_array().map(Vec::len),
        Some(OBS_DIM_V2)
    );
    // Every +1 is followed by a hold: the loop fed the model its history.
    // Three steps up then take at least five decisions.
    assert!(st["decisions"].as_u64().expect("decisions") >= 5, "{st}");
}
