"""CEM policy search: parameter layout, ONNX export, training-only scenarios,
and a tiny reproducible end-to-end run against a real ``farmctl sim serve``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rustfarm_gym import cem
from rustfarm_gym.onnx_export import METADATA_KEYS, read_metadata, run_onnx


@pytest.mark.parametrize("hidden", [0, 5])
def test_policy_graph_matches_numpy(hidden: int, tmp_path) -> None:
    shape = cem.PolicyShape(17, 4, hidden)
    theta = np.random.default_rng(3).standard_normal(shape.size)
    model = cem.policy_graph(shape, theta)
    path = tmp_path / "p.onnx"
    path.write_bytes(model.SerializeToString())
    obs = np.random.default_rng(4).uniform(0, 2, size=(64, 17)).astype(np.float32)
    ref = shape.logits(theta, obs)
    got = run_onnx(path, obs)
    assert got.shape == (64, 4)
    assert np.abs(ref - got).max() < 1e-4
    assert (ref.argmax(1) == got.argmax(1)).all()


def test_unpack_refuses_wrong_size() -> None:
    shape = cem.PolicyShape(17, 3)
    assert shape.size == 18 * 3
    with pytest.raises(ValueError):
        shape.unpack(np.zeros(shape.size + 1))


def test_score_penalises_misses_and_replicas() -> None:
    good = {"qos": 0.995, "mean_replicas": 8.0}
    fewer_misses = {"qos": 0.995, "mean_replicas": 16.0}
    missing = {"qos": 0.9, "mean_replicas": 8.0}
    kw = {"cost": 0.5, "miss": 2.0, "target": 0.99}
    assert cem.score(good, **kw) > cem.score(fewer_misses, **kw)
    assert cem.score(good, **kw) > cem.score(missing, **kw)
    # Below the target a point of QoS costs (1 + miss) points of score.
    assert cem.score(missing, **kw) == pytest.approx(0.9 - 0.125 - 2.0 * 0.09)


def test_training_scenarios_run_on_the_server(address: str) -> None:
    batch = cem.RunBatch("hold,delta:+1", address)
    try:
        shape = cem.PolicyShape(len(batch.spec.observation_names), 2)
        eps = [(yaml, 7, {"randomize": "true"}) for yaml in cem.training_scenarios().values()]
        runs = batch.run(shape, [np.zeros(shape.size)], eps)[0]
    finally:
        batch.close()
    assert len(runs) == len(cem.training_scenarios())
    for r in runs:
        assert r["tasks"] > 0
        assert 0.0 <= r["qos"] <= 1.0


def test_cem_cli_trains_exports_and_is_reproducible(address: str, tmp_path) -> None:
    args = ["--generations", "2", "--pop", "4", "--episodes", "2", "--eval-seeds", "1",
            "--scenarios", "steady", "--eval-scenarios", "spike", "--address", address]
    assert cem.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert cem.main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = (np.load(tmp_path / d / "policy.npz")["theta"] for d in ("a", "b"))
    assert np.array_equal(a, b)
    meta = read_metadata(tmp_path / "a" / "policy.onnx")
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["algorithm"] == "cem-linear"
    assert meta["output"] == "logits"
    assert json.loads(meta["action_meanings"]) == cem.DEFAULT_ACTIONS.split(",")
    rows = (tmp_path / "a" / "eval.csv").read_text().splitlines()
    assert len(rows) == 3  # header + steady + spike, one seed each


def test_evaluate_reuses_compare_json(address: str, tmp_path, capsys) -> None:
    """``evaluate --cli-json`` prints the CLI's rows and the ONNX policy's on the same seeds."""
    import subprocess

    from rustfarm_gym import evaluate
    from rustfarm_gym.server import find_farmctl

    cmp = tmp_path / "cmp.json"
    subprocess.run([str(find_farmctl()), "sim", "compare", "--scenarios", "steady",
                    "--policies", "queueing,oracle", "--seeds", "2", "--json", str(cmp)],
                   check=True, capture_output=True)
    assert cem.main(["--generations", "1", "--pop", "2", "--episodes", "1", "--eval-seeds", "0",
                     "--scenarios", "steady", "--eval-scenarios", "", "--address", address,
                     "--out", str(tmp_path / "p")]) == 0
    onnx_path = str(tmp_path / "p" / "policy.onnx")
    assert evaluate.main(["--policies", f"{onnx_path},queueing", "--scenarios", "steady",
                          "--seeds", "2", "--cli-json", str(cmp), "--address", address]) == 0
    lines = [ln.split() for ln in capsys.readouterr().out.splitlines()]
    policies = [ln[1] for ln in lines if ln and ln[0] == "steady"]
    assert policies == ["policy", "queueing"]
