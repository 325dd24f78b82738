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


@pytest.mark.parametrize("hidden,residual", [(0, False), (4, True), (4, False)])
def test_widen_keeps_the_policy_on_the_old_features(hidden: int, residual: bool) -> None:
    rng = np.random.default_rng(5)
    narrow = cem.PolicyShape(17, 3, hidden, residual)
    wide = cem.PolicyShape(23, 3, hidden, residual)
    theta = rng.normal(size=narrow.size)
    obs = rng.uniform(size=(50, 23))
    w = wide.widen(theta, 17)
    assert w.shape == (wide.size,)
    # The extra features have zero weight, whatever their values.
    np.testing.assert_allclose(wide.logits(w, obs), narrow.logits(theta, obs[:, :17]))
    with pytest.raises(ValueError):
        wide.widen(np.zeros(3), 17)


def test_v2_with_unused_history_runs_as_v1(address: str) -> None:
    """Observation v2 is v1 plus history: a v1 policy widened with zero weights
    decides exactly as it did (the warm start of a v2 training)."""
    theta = np.random.default_rng(2).normal(size=cem.PolicyShape(17, 3).size)
    eps = [("steady", 3, {"randomize": "true"}), ("diurnal", 4, {})]
    runs, names = [], []
    for version in (1, 2):
        batch = cem.RunBatch("hold,estimate:x1,estimate:x1.6", address, obs_version=version)
        try:
            spec = batch.spec
            assert spec.obs_version == version
            shape = cem.PolicyShape(len(spec.observation_names), 3)
            th = theta if version == 1 else shape.widen(theta, 17)
            runs.append(batch.run(shape, [th], eps)[0])
            names.append(list(spec.observation_names))
        finally:
            batch.close()
    assert (len(names[0]), len(names[1])) == (17, 23)
    assert names[1][:17] == names[0]
    assert runs[0] == runs[1]


def test_v2_onnx_rows_match_the_trainer(address: str, tmp_path, capsys) -> None:
    """A v2 policy that uses its history features: ``evaluate`` (ONNX Runtime,
    observations v2 from the server) gives the runs the trainer's numpy
    scorer gives on the same seeds."""
    from rustfarm_gym import evaluate
    from rustfarm_gym.onnx_export import metadata, read_metadata, save
    from rustfarm_gym.train import WHOLE_RUN

    space = "hold,delta:-1,delta:+1,estimate:x1,estimate:x1.6"
    batch = cem.RunBatch(space, address, obs_version=2)
    try:
        spec = batch.spec
        shape = cem.PolicyShape(len(spec.observation_names), 5)
        theta = np.random.default_rng(9).normal(size=shape.size)
        runs = batch.run(shape, [theta], [("diurnal", s, WHOLE_RUN) for s in (0, 1)])[0]
    finally:
        batch.close()
    path = save(cem.policy_graph(shape, theta), tmp_path / "v2.onnx",
                metadata(spec, output="logits", algorithm="cem-linear", config={"test": 2}))
    assert read_metadata(path)["rust_farm.obs_version"] == "2"
    assert evaluate.main(["--policies", str(path), "--scenarios", "diurnal", "--seed", "0",
                          "--seeds", "2", "--address", address]) == 0
    row = next(ln.split() for ln in capsys.readouterr().out.splitlines()
               if ln.startswith("diurnal") and ln.split()[1] == "v2")
    assert float(row[2]) == pytest.approx(100 * np.mean([r["qos"] for r in runs]), abs=0.006)
    # row: scenario, policy, QoS ± std, met, p99, replica-s, ...
    assert float(row[7]) == pytest.approx(np.mean([r["replica_seconds"] for r in runs]), abs=0.6)


def test_input_mask_zeroes_only_the_masked_input_rows() -> None:
    shape = cem.PolicyShape(5, 3)
    mask = shape.input_mask([1, 4])
    w, b = shape.unpack(mask)
    assert (w[[1, 4]] == 0).all() and (w[[0, 2, 3]] == 1).all() and (b == 1).all()
    res = cem.PolicyShape(5, 3, 2, True)
    parts = res.unpack(res.input_mask([0]))
    assert (parts[0][0] == 0).all() and (parts[2][0] == 0).all()
    assert (parts[4] == 1).all()


def test_masked_features_stay_unused_in_training(address: str, tmp_path) -> None:
    assert cem.main(["--generations", "2", "--pop", "4", "--episodes", "2", "--eval-seeds", "0",
                     "--scenarios", "steady", "--no-extra", "--obs-version", "2",
                     "--mask-features", "backlog_log,floor_peak_frac", "--address", address,
                     "--out", str(tmp_path / "m")]) == 0
    theta = np.load(tmp_path / "m" / "policy.npz")["theta"]
    w, _ = cem.PolicyShape(23, len(cem.DEFAULT_ACTIONS.split(","))).unpack(theta)
    assert (w[[0, 21]] == 0).all() and (w[1:21] != 0).any()
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["obs_version"] == 2
    assert config["mask_features"] == "backlog_log,floor_peak_frac"


def test_extend_actions_keeps_the_greedy_policy_and_refines_estimates() -> None:
    rng = np.random.default_rng(3)
    old = ["hold", "estimate:x1", "estimate:x1.6"]
    new = [*old, "smoothed:x1", "peak:x1.6"]
    d = 5
    theta = rng.normal(size=(d + 1) * len(old))
    ext = cem.extend_actions(theta, d, old, new, margin=0.1)
    obs = rng.uniform(0, 2, size=(500, d))
    before = cem.PolicyShape(d, len(old)).logits(theta, obs)
    after = cem.PolicyShape(d, len(new)).logits(ext, obs)
    assert np.array_equal(after[:, :3], before)
    # Each new action scores exactly the margin below the action it refines.
    assert np.allclose(after[:, 3], before[:, 1] - 0.1)
    assert np.allclose(after[:, 4], before[:, 2] - 0.1)
    assert np.array_equal(after.argmax(axis=1), before.argmax(axis=1))
    with pytest.raises(ValueError, match="estimate:x2"):
        cem.extend_actions(theta, d, old, [*old, "smoothed:x2"])
    with pytest.raises(ValueError, match="delta"):
        cem.extend_actions(theta, d, old, [*old, "delta:+1"])


def test_extend_actions_warm_starts_drain_from_the_nearest_estimate() -> None:
    rng = np.random.default_rng(4)
    old = ["hold", "estimate:x0.9", "estimate:x1"]
    new = [*old, "drain:x1", "drain:x0.8"]
    d = 4
    theta = rng.normal(size=(d + 1) * len(old))
    ext = cem.extend_actions(theta, d, old, new, margin=0.1)
    obs = rng.uniform(0, 2, size=(300, d))
    before = cem.PolicyShape(d, len(old)).logits(theta, obs)
    after = cem.PolicyShape(d, len(new)).logits(ext, obs)
    # drain:x1 refines estimate:x1; drain:x0.8 copies the nearest multiple
    # above (0.9) twice the margin lower; the greedy policy is unchanged.
    assert np.allclose(after[:, 3], before[:, 2] - 0.1)
    assert np.allclose(after[:, 4], before[:, 1] - 0.2)
    assert np.array_equal(after.argmax(axis=1), before.argmax(axis=1))
    with pytest.raises(ValueError, match="drain:x2"):
        cem.extend_actions(theta, d, old, [*old, "drain:x2"])


def test_qos_cap_ignores_qos_above_the_target() -> None:
    kw = {"cost": 0.6, "miss": 3.0, "target": 0.99, "qos_cap": True}
    above = {"qos": 0.999, "mean_replicas": 16.0}
    at = {"qos": 0.99, "mean_replicas": 15.0}
    assert cem.score(above, **kw) == pytest.approx(0.99 - 0.6 * 0.5)
    # Capped, the cheaper run at the target wins; uncapped it would not
    # with a small cost.
    assert cem.score(at, **kw) > cem.score(above, **kw)
    assert cem.score(at, cost=0.05, miss=3.0, target=0.99) < cem.score(
        above, cost=0.05, miss=3.0, target=0.99)
    # Below the target nothing changes.
    low = {"qos": 0.95, "mean_replicas": 8.0}
    assert cem.score(low, **kw) == pytest.approx(
        cem.score(low, cost=0.6, miss=3.0, target=0.99))


def _gated_example() -> tuple[cem.GatedShape, list[str], np.ndarray, np.ndarray]:
    """A gated shape over 6 features and 5 actions; expert A reads 4 features
    and 3 of the actions."""
    union = ["hold", "estimate:x1", "estimate:x1.6", "smoothed:x1", "drain:x0.95"]
    a_actions = ["hold", "estimate:x1", "estimate:x1.6"]
    shape = cem.GatedShape(6, 5, 4, tuple(union.index(m) for m in a_actions))
    rng = np.random.default_rng(11)
    return (shape, a_actions, rng.normal(size=cem.PolicyShape(4, 3).size),
            rng.normal(size=cem.PolicyShape(6, 5).size))


def test_gated_compose_is_expert_a_until_the_gate_opens() -> None:
    shape, _, ta, tb = _gated_example()
    assert shape.size == 7 + 2 * (6 * 5 + 5)
    theta = shape.compose(ta, tb, gate_bias=-0.1)
    obs = np.random.default_rng(12).uniform(0, 2, size=(400, 6))
    a = cem.PolicyShape(4, 3).logits(ta, obs[:, :4])
    b = cem.PolicyShape(6, 5).logits(tb, obs)
    cols = np.array(shape.a_cols)
    # Gate closed: expert A's greedy action, as an index of the union.
    assert np.array_equal(shape.logits(theta, obs).argmax(1), cols[a.argmax(1)])
    # An open gate on part of the batch: B there, A elsewhere.
    theta[:7] = [1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # open when obs[0] > obs[1]
    on_b = obs[:, 0] > obs[:, 1]
    assert 0.2 < on_b.mean() < 0.8
    got = shape.logits(theta, obs).argmax(1)
    assert np.array_equal(got[on_b], b.argmax(1)[on_b])
    assert np.array_equal(got[~on_b], cols[a.argmax(1)][~on_b])


def test_gated_structure_mask_freezes_what_it_must() -> None:
    shape, _, _, _ = _gated_example()
    g, g0, wa, ba, wb, bb = shape.unpack(shape.structure_mask("gate"))
    assert (g == 1).all() and g0[0] == 1 and not wa.any() and not ba.any()
    assert not wb.any() and not bb.any()
    g, g0, wa, ba, wb, bb = shape.unpack(shape.structure_mask("all", gate_features=[2]))
    assert list(g) == [0, 0, 1, 0, 0, 0] and g0[0] == 1
    # A's weights for the features it does not read and its absent actions stay fixed.
    assert not wa[4:].any() and not wa[:, [3, 4]].any() and wa[:4, [0, 1, 2]].all()
    assert list(ba) == [1, 1, 1, 0, 0] and wb.all() and bb.all()
    g, g0, wa, _, wb, _ = shape.unpack(shape.structure_mask("heads"))
    assert not g.any() and g0[0] == 0 and wb.all()
    with pytest.raises(ValueError, match="gate, heads or all"):
        shape.structure_mask("both")


def test_gated_onnx_matches_numpy_greedy_actions(tmp_path) -> None:
    shape, _, ta, tb = _gated_example()
    theta = shape.compose(ta, tb)
    obs = np.random.default_rng(14).uniform(0, 2, size=(512, 6)).astype(np.float32)
    theta[:6] = np.random.default_rng(13).normal(size=6)
    theta[6] = -float(np.median(obs @ theta[:6]))  # open on about half the batch
    path = tmp_path / "g.onnx"
    path.write_bytes(cem.policy_graph(shape, theta).SerializeToString())
    gate = shape.gate(theta, obs)
    assert 0.1 < (gate > 0).mean() < 0.9, "the batch exercises both experts"
    ref, got = shape.logits(theta, obs), run_onnx(path, obs)
    assert got.shape == (512, 5)
    assert np.array_equal(ref.argmax(1), got.argmax(1))
    assert np.abs(ref - got).max() < 1e-2  # the absent actions score GATE_FILL


def test_gated_cli_trains_only_the_gate_and_reloads(address: str, tmp_path) -> None:
    union = "hold,estimate:x1,estimate:x1.6,drain:x0.95"
    d = 23  # observation v2
    rng = np.random.default_rng(15)
    np.savez(tmp_path / "a.npz", theta=rng.normal(size=(17 + 1) * 3))
    np.savez(tmp_path / "b.npz", theta=rng.normal(size=(d + 1) * 4))
    args = ["--generations", "2", "--pop", "4", "--episodes", "2", "--eval-seeds", "0",
            "--val-episodes", "0", "--scenarios", "steady", "--no-extra", "--obs-version", "2",
            "--actions", union, "--gate-a-actions", "hold,estimate:x1,estimate:x1.6",
            "--address", address]
    assert cem.main([*args, "--gate-experts", f"{tmp_path / 'a.npz'},{tmp_path / 'b.npz'}",
                     "--gate-train", "gate", "--gate-std", "0.5",
                     "--out", str(tmp_path / "g")]) == 0
    z = np.load(tmp_path / "g" / "policy.npz")
    shape = cem.GatedShape(d, 4, int(z["a_dim"]), (0, 1, 2))
    start = shape.compose(np.load(tmp_path / "a.npz")["theta"],
                          np.load(tmp_path / "b.npz")["theta"])
    theta = z["theta"]
    assert int(z["a_dim"]) == 17
    assert np.array_equal(theta[shape.gate_size:], start[shape.gate_size:]), "experts frozen"
    assert not np.array_equal(theta[:shape.gate_size], start[:shape.gate_size])
    meta = read_metadata(tmp_path / "g" / "policy.onnx")
    assert meta["algorithm"] == "cem-gated-linear"
    assert meta["rust_farm.obs_version"] == "2"
    assert json.loads(meta["action_meanings"]) == union.split(",")
    # A gated policy.npz warm-starts a joint fine-tune.
    assert cem.main([*args, "--init-from", str(tmp_path / "g" / "policy.npz"),
                     "--out", str(tmp_path / "j")]) == 0
    joint = np.load(tmp_path / "j" / "policy.npz")["theta"]
    assert not np.array_equal(joint[shape.gate_size:], theta[shape.gate_size:])
    wa = shape.unpack(joint)[2]
    assert not wa[17:].any() and not wa[:, 3].any(), "expert A's structure is kept"
