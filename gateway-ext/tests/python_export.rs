//! Policies exported by the Python Gymnasium layer (`gym/`) load in
//! gateway-ext's ONNX loader and choose the same greedy actions as Python's
//! ONNX Runtime: a SARSA(lambda) tile-coding graph exported here by
//! `rustfarm_gym.onnx_export`, and the shipped `models/farm-policy.onnx`.

mod common;

use std::path::Path;

use common::{gym_python, ort_dylib, python_greedy_batch, workspace_root};
use farm_model::action::ActionSpace;
use farm_model::observation::{OBS_VERSION, high, high_of, low, low_of, names, names_of};
use farm_policy::onnx::OnnxModel;

/// Python side: export a SARSA graph with seeded random weights (when asked)
/// and write a batch of observations with ONNX Runtime's greedy actions.
const SCRIPT: &str = r#"
import json, sys
import numpy as np
from rustfarm_gym.client import Spec
from rustfarm_gym.onnx_export import metadata, run_onnx, save, tile_coder_graph
from rustfarm_gym.tiles import TileCoder

args = json.loads(sys.argv[1])
model, out = args["model"], args["out"]
low, high = np.array(args["low"]), np.array(args["high"])
if args["export"]:
    spec = Spec(obs_version=args["obs_version"], observation_names=tuple(args["names"]),
                observation_low=tuple(args["low"]), observation_high=tuple(args["high"]),
                action_meanings=tuple(args["actions"]), control_interval_s=8.0,
                episode_steps=30, backend="sim", server_version="test",
                scenarios=(), policies=())
    coder = TileCoder.for_spec(spec.observation_names, spec.observation_low,
                               spec.observation_high)
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(coder.n_tiles, len(spec.action_meanings)))
    meta = metadata(spec, output="q", algorithm="sarsa-lambda", config={"seed": 7})
    save(tile_coder_graph(coder, weights), model, meta)
rng = np.random.default_rng(1)
span = np.maximum(high - low, 1e-3)
inside = rng.uniform(low, high, size=(300, len(low)))
edges = np.round(rng.uniform(low, high, size=(100, len(low))) * 8) / 8
outside = rng.uniform(low - 0.2 * span, high + 0.2 * span, size=(100, len(low)))
obs = np.concatenate([inside, edges, outside]).astype(np.float32)
actions = run_onnx(model, obs).argmax(axis=1)
json.dump({"obs": obs.tolist(), "actions": actions.tolist()}, open(out, "w"))
"#;

/// Python's greedy actions of `model` on a batch of observations of layout
/// `version`.
fn python_greedy(
    model: &Path,
    export: bool,
    version: u32,
    actions: &[String],
) -> (Vec<Vec<f32>>, Vec<usize>) {
    let layout = "a known observation version";
    let args = serde_json::json!({
        "model": model, "export": export,
        "obs_version": version, "names": names_of(version).expect(layout),
        "actions": actions,
        "low": low_of(version).expect(layout), "high": high_of(version).expect(layout),
    });
    python_greedy_batch(SCRIPT, args)
}

fn assert_same_greedy(model: &Path, obs: &[Vec<f32>], expected: &[usize]) {
    let ort = ort_dylib();
    let mut m = OnnxModel::load(Some(&ort), model).expect("gateway-ext loads the model");
    assert_eq!(obs.len(), expected.len());
    let mut differ = 0;
    for (o, want) in obs.iter().zip(expected) {
        if m.infer(o).expect("inference").action != *want {
            differ += 1;
        }
    }
    assert_eq!(
        differ,
        0,
        "{differ} of {} greedy actions differ from Python",
        obs.len()
    );
}

#[test]
fn sarsa_export_loads_and_agrees_with_python() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("sarsa.onnx");
    let actions = ActionSpace::with_estimates().meanings();
    let (obs, expected) = python_greedy(&model, true, OBS_VERSION, &actions);
    assert_same_greedy(&model, &obs, &expected);
}

#[test]
fn shipped_policy_loads_and_agrees_with_python() {
    let model = workspace_root().join("models/farm-policy.onnx");
    // The observation layout the shipped model states in its metadata.
    let version = OnnxModel::load(Some(&ort_dylib()), &model)
        .expect("gateway-ext loads the shipped model")
        .obs_version();
    let (obs, expected) = python_greedy(&model, false, version, &[]);
    assert_same_greedy(&model, &obs, &expected);
}

/// Python side, the start of the export scripts below: the arguments and a
/// `Spec` built from them.
const SPEC_PRELUDE: &str = r#"
import json, sys
import numpy as np
from rustfarm_gym.client import Spec
from rustfarm_gym.onnx_export import metadata, save

args = json.loads(sys.argv[1])
spec = Spec(obs_version=args["obs_version"], observation_names=tuple(args["names"]),
            observation_low=tuple(args["low"]), observation_high=tuple(args["high"]),
            action_meanings=tuple(args["actions"]), control_interval_s=8.0,
            episode_steps=30, backend="sim", server_version="test",
            scenarios=(), policies=())
"#;

/// Python side, after [`SPEC_PRELUDE`]: export the numpy Double-DQN (output
/// `q`) and PPO (output `logits`) MLPs of `rustfarm_gym` with seeded random
/// weights.
const MLP_SCRIPT: &str = r#"
from rustfarm_gym.dqn import DQNAgent, DQNConfig
from rustfarm_gym.ppo import PPOAgent, PPOConfig

kw = dict(low=spec.observation_low, high=spec.observation_high)
dim, n = len(spec.observation_names), len(spec.action_meanings)
dqn = DQNAgent(dim, n, cfg=DQNConfig(seed=7), **kw)
save(dqn.onnx_graph(), args["dqn"],
     metadata(spec, output="q", algorithm="double-dqn", config={"seed": 7}))
ppo = PPOAgent(dim, n, cfg=PPOConfig(seed=7), **kw)
# Spread the near-uniform initial logits so greedy actions vary across inputs.
ppo.policy.params[-2] *= 100.0
save(ppo.onnx_graph(), args["ppo"],
     metadata(spec, output="logits", algorithm="ppo", config={"seed": 7}))
"#;

#[test]
fn dqn_and_ppo_exports_load_and_agree_with_python() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dqn = dir.path().join("dqn.onnx");
    let ppo = dir.path().join("ppo.onnx");
    let actions = ActionSpace::with_estimates().meanings();
    let args = serde_json::json!({
        "dqn": dqn, "ppo": ppo, "obs_version": OBS_VERSION, "names": names(),
        "actions": actions, "low": low(), "high": high(),
    });
    gym_python(&format!("{SPEC_PRELUDE}{MLP_SCRIPT}"), &args);
    for model in [&dqn, &ppo] {
        let (obs, expected) = python_greedy(model, false, OBS_VERSION, &actions);
        let distinct: std::collections::BTreeSet<_> = expected.iter().collect();
        assert!(
            distinct.len() > 1,
            "{}: one greedy action only",
            model.display()
        );
        assert_same_greedy(model, &obs, &expected);
    }
}

/// Python side, after [`SPEC_PRELUDE`]: export a regime-gated CEM policy (`rustfarm_gym.cem.GatedShape`:
/// two linear experts and a linear gate, `Greater` + `Where` in the graph)
/// over observation v2 with seeded random weights, then write a batch of
/// observations with ONNX Runtime's greedy actions (the script above).
const GATED_SCRIPT: &str = r#"
from rustfarm_gym import cem

a_actions = args["a_actions"]
shape = cem.GatedShape(len(args["names"]), len(args["actions"]), args["a_dim"],
                       tuple(args["actions"].index(m) for m in a_actions))
rng = np.random.default_rng(9)
theta = shape.compose(rng.normal(size=(args["a_dim"] + 1) * len(a_actions)),
                      rng.normal(size=(len(args["names"]) + 1) * len(args["actions"])))
theta[:shape.gate_size] = rng.normal(size=shape.gate_size)
save(cem.policy_graph(shape, theta), args["model"],
     metadata(spec, output="logits", algorithm=shape.algorithm, config={"seed": 9}))
"#;

#[test]
fn gated_export_loads_and_agrees_with_python() {
    use farm_model::observation::{OBS_DIM, dim_of, high_of, low_of, names_of};
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("gated.onnx");
    let v2 = 2;
    let mut actions = ActionSpace::with_estimates().meanings();
    let a_actions = actions.clone();
    actions.extend(["smoothed:x1".to_string(), "drain:x0.95".to_string()]);
    let (names, lo, hi) = (
        names_of(v2).expect("v2"),
        low_of(v2).expect("v2"),
        high_of(v2).expect("v2"),
    );
    assert_eq!(dim_of(v2).expect("v2"), names.len());
    let args = serde_json::json!({
        "model": model, "obs_version": v2, "names": names, "low": lo, "high": hi,
        "actions": actions, "a_actions": a_actions, "a_dim": OBS_DIM,
    });
    gym_python(&format!("{SPEC_PRELUDE}{GATED_SCRIPT}"), &args);
    let batch = serde_json::json!({
        "model": model, "export": false, "low": lo, "high": hi,
    });
    let (obs, expected) = python_greedy_batch(SCRIPT, batch);
    let distinct: std::collections::BTreeSet<_> = expected.iter().collect();
    assert!(
        distinct.len() > 2,
        "the batch reaches both experts' actions"
    );
    assert!(
        expected.iter().any(|&a| a >= a_actions.len()),
        "some observations open the gate (an action only expert B has)"
    );
    assert_same_greedy(&model, &obs, &expected);
}
