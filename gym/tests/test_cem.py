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


def test_residual_graph_matches_numpy_and_embeds_a_linear_policy(tmp_path) -> None:
    shape = cem.PolicyShape(17, 4, 6, residual=True)
    assert shape.size == 18 * 4 + 18 * 6 + 6 * 4
    theta = np.random.default_rng(5).standard_normal(shape.size)
    path = tmp_path / "r.onnx"
    path.write_bytes(cem.policy_graph(shape, theta).SerializeToString())
    obs = np.random.default_rng(6).uniform(0, 2, size=(64, 17)).astype(np.float32)
    assert np.abs(shape.logits(theta, obs) - run_onnx(path, obs)).max() < 1e-4
    # Embedding a linear policy gives the same scores (hidden layer off).
    lin = cem.PolicyShape(17, 4)
    w = np.random.default_rng(7).standard_normal(lin.size)
    assert np.allclose(shape.logits(shape.embed(w), obs), lin.logits(w, obs))
    with pytest.raises(ValueError):
        shape.embed(np.zeros(lin.size + 1))


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


def test_miss_cap_bounds_the_penalty() -> None:
    kw = {"cost": 0.0, "miss": 3.0, "target": 0.99}
    hopeless = {"qos": 0.5, "mean_replicas": 8.0}
    near = {"qos": 0.98, "mean_replicas": 8.0}
    # Uncapped, the whole shortfall counts; capped at 0.05 only 0.05 of it does.
    assert cem.score(hopeless, **kw) == pytest.approx(0.5 - 3.0 * 0.49)
    assert cem.score(hopeless, **kw, miss_cap=0.05) == pytest.approx(0.5 - 3.0 * 0.05)
    # A shortfall below the cap is unaffected.
    assert cem.score(near, **kw, miss_cap=0.05) == pytest.approx(cem.score(near, **kw))


def test_lognormal_service_has_the_requested_mean() -> None:
    body = cem.lognormal_service(1.5, 1.3)
    fields = dict(line.strip().split(": ") for line in body.splitlines() if ": " in line)
    mu, sigma = float(fields["mu"]), float(fields["sigma"])
    assert fields["kind"] == "lognormal"
    assert np.exp(mu + sigma**2 / 2) == pytest.approx(1.5)


def test_init_from_refuses_a_different_shape(address: str, tmp_path) -> None:
    np.savez(tmp_path / "w.npz", theta=np.zeros(7))
    with pytest.raises(SystemExit, match="expected"):
        cem.main(["--generations", "1", "--pop", "2", "--episodes", "1", "--eval-seeds", "0",
                  "--scenarios", "steady", "--no-extra", "--address", address,
                  "--init-from", str(tmp_path / "w.npz"), "--out", str(tmp_path / "o")])


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


def test_onnx_rows_reproduce_the_cli_on_the_same_seeds(address: str, tmp_path,
                                                      capsys) -> None:
    """An ONNX policy that always asks for +31 replicas is ``fixed:32`` from the first
    decision on: ``evaluate`` must print the same row for it as ``farmctl sim compare``
    prints for ``fixed:32`` (same seeds, same workload, same metrics)."""
    from rustfarm_gym import evaluate
    from rustfarm_gym.env import Connection
    from rustfarm_gym.onnx_export import metadata, save

    conn = Connection("sim", address, None)
    try:
        spec = conn.client.get_spec(action_space="delta:+31")
    finally:
        conn.close()
    shape = cem.PolicyShape(len(spec.observation_names), 1)
    path = save(cem.policy_graph(shape, np.zeros(shape.size)), tmp_path / "fixed32.onnx",
                metadata(spec, output="logits", algorithm="cem-linear", config={"test": 1}))
    assert evaluate.main(["--policies", f"{path},fixed:32", "--scenarios", "paper-4phase",
                          "--seeds", "2", "--address", address]) == 0
    rows = {ln.split()[1]: ln.split()[2:] for ln in capsys.readouterr().out.splitlines()
            if ln.startswith("paper-4phase")}
    onnx_row, cli_row = rows["fixed32"], rows["fixed:32"]
    # Every column but /bound@qos (n/a for ONNX rows) agrees.
    del onnx_row[7], cli_row[7]
    assert onnx_row == cli_row
