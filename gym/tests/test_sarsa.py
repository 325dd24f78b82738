"""SARSA(lambda) training, ONNX export and agreement with numpy."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx

from rustfarm_gym import FarmVectorEnv, train
from rustfarm_gym.onnx_export import (
    METADATA_KEYS,
    metadata,
    read_metadata,
    run_onnx,
    save,
    tile_coder_graph,
)
from rustfarm_gym.sarsa import SarsaAgent, SarsaConfig
from rustfarm_gym.tiles import TileCoder


def test_sarsa_trains_exports_and_onnx_agrees(address: str, tmp_path) -> None:
    venv = FarmVectorEnv(8, "steady", address=address, action_space="estimates",
                         server_options={"randomize": "true", "scenarios": "steady,bursty"})
    spec = venv.farm_spec
    coder = TileCoder.for_spec(spec.observation_names, spec.observation_low,
                               spec.observation_high)
    agent = SarsaAgent(coder, len(spec.action_meanings), SarsaConfig(seed=3))
    records = agent.train(venv, 4000, log_csv=tmp_path / "log.csv", progress=False)
    venv.close()
    # Episodes are 30 (steady) or 37 (bursty) steps long.
    assert len(records) >= 4000 // 37 - 8
    assert np.abs(agent.w).sum() > 0, "no learning happened"
    with open(tmp_path / "log.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(records)

    meta = metadata(spec, output="q", algorithm="sarsa-lambda", config={"seed": 3})
    path = save(tile_coder_graph(coder, agent.w), tmp_path / "p.onnx", meta)
    got = read_metadata(path)
    assert set(METADATA_KEYS) <= set(got)
    assert json.loads(got["action_meanings"]) == list(spec.action_meanings)
    assert got["obs_version"] == "1" and got["output"] == "q"
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["obs"]
    assert [o.name for o in model.graph.output] == ["q"]

    rng = np.random.default_rng(0)
    # Random points, points on tile boundaries and out-of-range values.
    batch = rng.uniform(coder.low - 0.2, coder.high + 0.2, size=(2000, len(coder.low)))
    grid = np.round(rng.uniform(coder.low, coder.high, size=(500, len(coder.low))) * 8) / 8
    obs = np.concatenate([batch, grid]).astype(np.float32)
    ref = agent.q(obs)
    out = run_onnx(path, obs)
    assert out.shape == (len(obs), len(spec.action_meanings))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out.argmax(axis=1), ref.argmax(axis=1))
    np.testing.assert_array_equal(coder.active(obs), coder.active(obs.copy()))


def test_train_cli_is_reproducible(address: str, tmp_path) -> None:
    args = ["--algo", "sarsa", "--scenarios", "steady", "--eval-scenarios", "",
            "--steps", "960", "--envs", "4", "--eval-seeds", "1", "--seed", "5",
            "--address", address, "--no-progress"]
    assert train.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert train.main([*args, "--out", str(tmp_path / "b")]) == 0
    a = (tmp_path / "a" / "train.csv").read_text().splitlines()
    b = (tmp_path / "b" / "train.csv").read_text().splitlines()
    def strip(rows: list[str]) -> list[str]:
        return [r.rsplit(",", 1)[0] for r in rows]  # drop wall_s

    assert strip(a) == strip(b) and len(a) > 10
    wa = onnx.load(str(tmp_path / "a" / "policy.onnx")).graph.initializer
    wb = onnx.load(str(tmp_path / "b" / "policy.onnx")).graph.initializer
    assert [t.raw_data for t in wa] == [t.raw_data for t in wb]
    assert (tmp_path / "a" / "eval.csv").is_file()
