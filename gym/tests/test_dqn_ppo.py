"""Numpy Double DQN and PPO: gradients, targets, training, export, learning.

The training tests run against the real simulator (``farmctl sim serve``,
see conftest.py) and print their figures (``pytest -s`` shows them).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest

from rustfarm_gym import FarmClient, FarmVectorEnv, train
from rustfarm_gym.cem import PolicyShape
from rustfarm_gym.dqn import (
    DQNAgent,
    DQNConfig,
    ReplayBuffer,
    double_dqn_targets,
    huber,
    huber_grad,
)
from rustfarm_gym.nn import MLP, Adam, clip_grad_norm
from rustfarm_gym.onnx_export import METADATA_KEYS, metadata, read_metadata, run_onnx, save
from rustfarm_gym.ppo import (
    STEP_LOG_MAX_S,
    PPOAgent,
    PPOConfig,
    gae,
    linear_policy,
    log_softmax,
    policy_loss,
    score_weights,
)

#: The reward train.py uses by default.
REWARD = {"reward.qos": "1", "reward.cost": "0.15", "reward.backlog": "0.5",
          "reward.churn": "0.05"}
#: First seed of the held-out evaluation (training resets with seeds 0..N).
HELD_OUT_SEED = 1_000_000


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of scalar ``f()`` w.r.t. array ``x`` (in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_backward_matches_finite_differences(activation: str) -> None:
    rng = np.random.default_rng(0)
    net = MLP([5, 7, 6, 3], activation=activation, low=np.zeros(5), high=np.full(5, 2.0),
              seed=1)
    obs = rng.uniform(0, 2, size=(9, 5))
    weight = rng.normal(size=(9, 3))  # loss = sum(weight * out)
    out, cache = net.forward_train(obs)
    np.testing.assert_array_equal(out, net.forward(obs))
    grads = net.backward(cache, weight)
    assert [g.shape for g in grads] == [p.shape for p in net.params]
    for p, g in zip(net.params, grads, strict=True):
        num = numeric_grad(lambda: float((weight * net.forward(obs)).sum()), p)
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)


def test_mlp_seed_save_load_and_onnx(tmp_path) -> None:
    low, high = np.zeros(4), np.array([1.0, 2.0, 2.0, 1.5])
    a = MLP([4, 16, 16, 3], low=low, high=high, seed=5)
    b = MLP([4, 16, 16, 3], low=low, high=high, seed=5)
    c = MLP([4, 16, 16, 3], low=low, high=high, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a.params, b.params, strict=True))
    assert not np.array_equal(a.params[0], c.params[0])
    # Inputs are rescaled from [low, high] to [-1, 1].
    np.testing.assert_allclose(a.normalise(np.stack([low, high])), [[-1] * 4, [1] * 4])
    loaded = MLP.load(a.save(tmp_path / "net.npz"))
    obs = np.random.default_rng(2).uniform(-0.5, 2.5, size=(200, 4))
    np.testing.assert_array_equal(loaded.forward(obs), a.forward(obs))
    model = a.onnx_graph("q")
    assert {n.op_type for n in model.graph.node} == {"Mul", "Add", "Gemm", "Tanh"}
    path = tmp_path / "net.onnx"
    onnx.save(model, str(path))
    np.testing.assert_allclose(run_onnx(path, obs), a.forward(obs), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        a.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError):
        MLP([4, 3], activation="sigmoid")


def test_adam_and_grad_clip_minimise_a_regression() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(256, 3))
    y = np.sin(2 * x[:, :1]) + x[:, 1:2] * x[:, 2:3]
    net = MLP([3, 32, 1], seed=0)
    opt = Adam(net.params, lr=1e-2)
    first = last = 0.0
    for i in range(400):
        out, cache = net.forward_train(x)
        err = out - y
        loss = float((err * err).mean())
        first = loss if i == 0 else first
        last = loss
        grads = net.backward(cache, 2 * err / len(err))
        clip_grad_norm(grads, 1.0)
        assert np.sqrt(sum((g * g).sum() for g in grads)) <= 1.0 + 1e-9
        opt.step(grads)
    assert last < 0.05 * first, (first, last)


def test_double_dqn_target_on_a_hand_made_batch() -> None:
    q_online = np.array([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    q_target = np.array([[10.0, 0.5, 7.0], [4.0, 9.0, 2.0]])
    rewards = np.array([1.0, -1.0])
    terminated = np.array([0.0, 0.0])
    y = double_dqn_targets(q_online, q_target, rewards, terminated, 0.9)
    # Online argmax is action 1 then 2; the target net scores them 0.5 and 2.
    np.testing.assert_allclose(y, [1.0 + 0.9 * 0.5, -1.0 + 0.9 * 2.0])
    # Plain DQN would bootstrap from max(q_target): 10 and 9.
    assert not np.allclose(y, rewards + 0.9 * q_target.max(axis=1))
    y_term = double_dqn_targets(q_online, q_target, rewards, np.array([1.0, 0.0]), 0.9)
    np.testing.assert_allclose(y_term, [1.0, -1.0 + 0.9 * 2.0])


def test_dqn_agent_bootstraps_with_online_choice_and_target_value() -> None:
    agent = DQNAgent(4, 3, low=np.zeros(4), high=np.ones(4), cfg=DQNConfig(gamma=0.5))
    # Zero output weights: each network outputs its output bias for any input.
    agent.online.params[-2][...] = 0.0
    agent.online.params[-1][...] = [1.0, 3.0, 2.0]
    agent.target.params[-2][...] = 0.0
    agent.target.params[-1][...] = [10.0, 0.5, 7.0]
    y = agent.td_targets(np.array([1.0, 2.0]), np.full((2, 4), 0.3), np.array([0.0, 1.0]))
    np.testing.assert_allclose(y, [1.0 + 0.5 * 0.5, 2.0])
    # A gradient step moves Q(s, a) towards the target, and only for that action.
    obs, acts = np.full((2, 4), 0.7), np.array([0, 0])
    before = agent.q(obs)
    agent.update(obs, acts, np.array([1.0, 2.0]), np.full((2, 4), 0.3), np.array([0.0, 1.0]))
    after = agent.q(obs)
    assert np.all(after[:, 0] > before[:, 0])  # Q = 1, targets 1.25 and 2
    np.testing.assert_array_equal(after[:, 1:], before[:, 1:])


def test_huber_and_replay_buffer() -> None:
    td = np.array([-3.0, -0.5, 0.0, 0.25, 2.0])
    np.testing.assert_allclose(huber(td, 1.0), [2.5, 0.125, 0.0, 0.03125, 1.5])
    np.testing.assert_allclose(huber_grad(td, 1.0), [-1.0, -0.5, 0.0, 0.25, 1.0])
    buf = ReplayBuffer(5, 2)
    for k in range(3):  # 6 transitions into 5 slots: the first one is overwritten
        obs = np.full((2, 2), k, dtype=np.float32)
        buf.add(obs, np.array([2 * k, 2 * k + 1]), np.array([k, k], dtype=float), obs + 1,
                np.zeros(2))
    assert buf.size == 5
    assert sorted(buf.actions.tolist()) == [1, 2, 3, 4, 5]
    o, a, r, o2, t = buf.sample(np.random.default_rng(0), 64)
    assert set(a.tolist()) <= {1, 2, 3, 4, 5} and len(set(a.tolist())) == 5
    np.testing.assert_array_equal(o2, o + 1)
    np.testing.assert_array_equal(r, a // 2)
    np.testing.assert_array_equal(t, np.zeros(64))


def test_ppo_policy_loss_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(12, 4))
    actions = rng.integers(0, 4, size=12)
    # Old log-probs near the current ones, some far enough for the clip to bite.
    old_logp = log_softmax(logits)[np.arange(12), actions] + rng.normal(0, 0.3, size=12)
    adv = rng.normal(size=12)
    loss, grad, stats = policy_loss(logits, actions, old_logp, adv, 0.2, 0.05)
    assert 0 < stats["clip_frac"] < 1 and np.isfinite(loss)
    num = numeric_grad(lambda: policy_loss(logits, actions, old_logp, adv, 0.2, 0.05)[0],
                       logits)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-8)


def test_gae_matches_hand_computation() -> None:
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.array([[0.5], [0.25], [1.0]])
    last = np.array([4.0])
    # lambda = 1: advantage = discounted return (bootstrapped) - value.
    adv, ret = gae(rewards, values, np.zeros((3, 1)), last, 0.5, 1.0)
    np.testing.assert_allclose(ret[:, 0], [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4,
                                           2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4])
    np.testing.assert_allclose(adv, ret - values)
    # An episode ending at step 1 cuts bootstrapping and the advantage trace there.
    adv, _ = gae(rewards, values, np.array([[0.0], [1.0], [0.0]]), last, 0.5, 0.8)
    d2 = 3 + 0.5 * 4 - 1.0
    d1 = 2 - 0.25
    d0 = 1 + 0.5 * 0.25 - 0.5
    np.testing.assert_allclose(adv[:, 0], [d0 + 0.4 * d1, d1, d2])


def test_gae_takes_a_discount_per_step() -> None:
    rewards = np.array([[1.0, 1.0], [2.0, 2.0]])
    values = np.zeros((2, 2))
    last = np.array([4.0, 4.0])
    # Column 0: two 1 s steps discounted 0.5 per 2 s; column 1: one 2 s step
    # then a 2 s step, the scalar case.
    g = np.array([[0.5 ** 0.5, 0.5], [0.5 ** 0.5, 0.5]])
    _, ret = gae(rewards, values, np.zeros((2, 2)), last, g, np.ones((2, 2)))
    np.testing.assert_allclose(ret[:, 0], [1 + g[0, 0] * (2 + g[1, 0] * 4), 2 + g[1, 0] * 4])
    _, scalar = gae(rewards[:, 1:], values[:, 1:], np.zeros((2, 1)), last[1:], 0.5, 1.0)
    np.testing.assert_allclose(ret[:, 1:], scalar)


def test_step_weights_read_the_decision_step() -> None:
    obs = np.zeros((3, 4), dtype=np.float32)
    for i, step_s in enumerate([1.0, 2.0, 8.0]):
        obs[i, 2] = np.log1p(step_s) / np.log1p(STEP_LOG_MAX_S)
    cfg = PPOConfig(time_ref_s=8.0)
    agent = PPOAgent(4, 3, low=[0] * 4, high=[1] * 4, cfg=cfg, step_feature=2)
    np.testing.assert_allclose(agent.step_weights(obs), [1 / 8, 2 / 8, 1.0], rtol=1e-5)
    # Without a time reference every decision weighs 1.
    plain = PPOAgent(4, 3, low=[0] * 4, high=[1] * 4, step_feature=2)
    np.testing.assert_allclose(plain.step_weights(obs), [1.0, 1.0, 1.0])
    # A time reference needs the step feature.
    with pytest.raises(ValueError, match="step_log"):
        PPOAgent(4, 3, low=[0] * 4, high=[1] * 4, cfg=cfg)


def test_a_linear_warm_start_is_the_cem_policy_exactly(tmp_path) -> None:
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    theta = np.concatenate([w.ravel(), b])
    np.savez(tmp_path / "policy.npz", theta=theta, hidden=0)
    lw, lb = linear_policy(tmp_path / "policy.npz", 4, 3)
    agent = PPOAgent(4, 3, low=[0, -2, 5, 1], high=[1, 2, 9, 1], cfg=PPOConfig(hidden=()))
    agent.warm_start_linear(lw, lb)
    obs = rng.uniform(-3, 10, size=(50, 4))
    np.testing.assert_allclose(agent.logits(obs), obs @ w + b, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(agent.greedy(obs), PolicyShape(4, 3).logits(theta, obs)
                                  .argmax(1))
    # The wrong shape, a policy with hidden layers or an MLP file: clear errors.
    with pytest.raises(ValueError, match="15 parameters, expected 18"):
        linear_policy(tmp_path / "policy.npz", 5, 3)
    with pytest.raises(ValueError, match="without hidden layers"):
        PPOAgent(4, 3, low=[0] * 4, high=[1] * 4).warm_start_linear(lw, lb)
    np.savez(tmp_path / "mlp.npz", theta=theta, hidden=8)
    with pytest.raises(ValueError, match="not a linear CEM policy"):
        linear_policy(tmp_path / "mlp.npz", 4, 3)


def test_value_warmup_leaves_the_policy_where_it_started() -> None:
    agent = PPOAgent(3, 2, low=[0] * 3, high=[1] * 3, cfg=PPOConfig(hidden=()))
    before = [p.copy() for p in agent.policy.params]
    v_before = [p.copy() for p in agent.value.params]
    rng = np.random.default_rng(0)
    obs = rng.uniform(size=(16, 3))
    act, logp = agent.sample(obs)
    agent.update(obs, act, logp, rng.normal(size=16), rng.normal(size=16), policy=False)
    for p, q in zip(agent.policy.params, before, strict=True):
        np.testing.assert_array_equal(p, q)
    assert any(not np.array_equal(p, q) for p, q in zip(agent.value.params, v_before,
                                                         strict=True))
    agent.update(obs, act, logp, rng.normal(size=16), rng.normal(size=16))
    assert any(not np.array_equal(p, q) for p, q in zip(agent.policy.params, before,
                                                         strict=True))


def episode_returns(venv: FarmVectorEnv, policy, episodes: int, seed: int) -> np.ndarray:
    """Returns of the first ``episodes`` episodes of ``policy(obs, rng) -> actions``."""
    obs, _ = venv.reset(seed=seed)
    rng = np.random.default_rng(seed)
    ret = np.zeros(venv.num_envs)
    out: list[float] = []
    for _ in range(10_000):  # bounded: 30-step episodes end long before
        obs, r, term, trunc, _ = venv.step(policy(obs, rng))
        ret += r
        for i in np.flatnonzero(term | trunc):
            out.append(float(ret[i]))
            ret[i] = 0.0
        if len(out) >= episodes:
            return np.array(out[:episodes])
    raise AssertionError("episodes did not end")


AGENTS = {
    "dqn": (lambda spec, seed: DQNAgent(
        len(spec.observation_names), len(spec.action_meanings), low=spec.observation_low,
        high=spec.observation_high, cfg=DQNConfig(seed=seed)), "q", "double-dqn"),
    "ppo": (lambda spec, seed: PPOAgent(
        len(spec.observation_names), len(spec.action_meanings), low=spec.observation_low,
        high=spec.observation_high, cfg=PPOConfig(seed=seed)), "logits", "ppo"),
}


@pytest.mark.parametrize("algo", sorted(AGENTS))
def test_trains_exports_agrees_with_onnx_and_beats_random(algo: str, address: str,
                                                          tmp_path) -> None:
    make, output, algorithm = AGENTS[algo]
    venv = FarmVectorEnv(8, "steady", address=address, server_options=REWARD,
                         step_info=False)
    try:
        spec = venv.farm_spec
        agent = make(spec, 0)
        outputs = agent.q if algo == "dqn" else agent.logits
        n = len(spec.action_meanings)
        untrained = episode_returns(venv, lambda o, _r: agent.greedy(o), 32, HELD_OUT_SEED)
        records = agent.train(venv, 4000, log_csv=tmp_path / "log.csv", progress=False)
        # steady episodes are 30 steps: 4000 steps over 8 envs end 16 per env.
        assert len(records) >= 8 * (4000 // 8 // 30) - 8
        with open(tmp_path / "log.csv") as fh:
            assert len(list(csv.DictReader(fh))) == len(records)

        meta = metadata(spec, output=output, algorithm=algorithm, config={"seed": 0})
        path = save(agent.onnx_graph(), tmp_path / "p.onnx", meta)
        got = read_metadata(path)
        assert set(METADATA_KEYS) <= set(got)
        assert got["output"] == output and got["rust_farm.output_name"] == output
        assert json.loads(got["action_meanings"]) == list(spec.action_meanings)
        model = onnx.load(str(path))
        assert [i.name for i in model.graph.input] == ["obs"]
        assert [o.name for o in model.graph.output] == [output]

        # Observations the farm produces, plus random and out-of-range points.
        seen = np.concatenate([venv.reset(seed=7)[0]] + [
            venv.step(agent.greedy(venv.reset(seed=s)[0]))[0] for s in range(8, 40)])
        low, high = np.asarray(spec.observation_low), np.asarray(spec.observation_high)
        rng = np.random.default_rng(0)
        box = rng.uniform(low - 0.2, high + 0.2, size=(2000, len(low)))
        obs = np.concatenate([seen, box]).astype(np.float32)
        ref, out = outputs(obs), run_onnx(path, obs)
        assert out.shape == (len(obs), len(spec.action_meanings))
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(out.argmax(axis=1), agent.greedy(obs))

        # Learning: greedy beats uniform random on held-out seeds, clearly.
        greedy = episode_returns(venv, lambda o, _r: agent.greedy(o), 32, HELD_OUT_SEED)
        rand = episode_returns(venv, lambda o, r: r.integers(0, n, size=len(o)), 32,
                               HELD_OUT_SEED)
    finally:
        venv.close()
    print(f"\n{algo}: {len(records)} episodes, held-out return greedy "
          f"{greedy.mean():.2f} +- {greedy.std():.2f}, random {rand.mean():.2f} +- "
          f"{rand.std():.2f}, untrained greedy {untrained.mean():.2f} +- {untrained.std():.2f}")
    # Random scores about 0 +- 12 per 30-step episode on steady; always
    # scaling up scores about 25. The same network before training scores
    # -12 (dqn) and -2 (ppo) with seed 0: it would fail both checks.
    assert greedy.mean() > rand.mean() + 10.0
    assert greedy.mean() > 20.0
    assert greedy.mean() > untrained.mean() + 5.0


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_train_cli_is_reproducible(algo: str, address: str, tmp_path) -> None:
    def run(seed: int, out: str) -> None:
        args = ["--algo", algo, "--scenarios", "steady", "--eval-scenarios", "",
                "--steps", "1024", "--envs", "4", "--eval-seeds", "1", "--seed", str(seed),
                "--address", address, "--no-progress", "--out", str(tmp_path / out)]
        assert train.main(args) == 0

    run(5, "a")
    run(5, "b")

    def rows(run: str) -> list[dict[str, str]]:
        with open(tmp_path / run / "train.csv") as fh:
            return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(fh)]

    assert rows("a") == rows("b") and len(rows("a")) > 10
    wa = onnx.load(str(tmp_path / "a" / "policy.onnx")).graph.initializer
    wb = onnx.load(str(tmp_path / "b" / "policy.onnx")).graph.initializer
    assert [t.raw_data for t in wa] == [t.raw_data for t in wb]
    meta = read_metadata(tmp_path / "a" / "policy.onnx")
    assert meta["algorithm"] == ("double-dqn" if algo == "dqn" else "ppo")
    assert json.loads(meta["config"])[algo]["seed"] == 5
    # A different seed trains different weights.
    run(6, "c")
    wc = onnx.load(str(tmp_path / "c" / "policy.onnx")).graph.initializer
    assert [t.raw_data for t in wa] != [t.raw_data for t in wc]
    assert (tmp_path / "a" / "eval.csv").is_file()


def test_ppo_from_a_cem_policy_exports_that_policy_until_it_learns(address: str,
                                                                   tmp_path) -> None:
    # A linear CEM policy over the server's spec (observation v1, the default
    # action space), written as cem.py writes it.
    client = FarmClient(address)
    spec = client.get_spec()
    client.close()
    d, n = len(spec.observation_names), len(spec.action_meanings)
    rng = np.random.default_rng(4)
    theta = rng.normal(size=(d + 1) * n)
    np.savez(tmp_path / "cem.npz", theta=theta, hidden=0)

    def run(out: str, *extra: str) -> int:
        return train.main(["--algo", "ppo", "--scenarios", "steady", "--eval-scenarios", "",
                           "--steps", "512", "--envs", "4", "--eval-seeds", "0",
                           "--hidden", "", "--init-from", str(tmp_path / "cem.npz"),
                           "--address", address, "--no-progress", "--out",
                           str(tmp_path / out), *extra])

    # Every rollout a value warm-up: the exported policy is the CEM one exactly.
    assert run("warm", "--value-warmup", "100", "--init-sharpen", "3") == 0
    low, high = np.asarray(spec.observation_low), np.asarray(spec.observation_high)
    obs = rng.uniform(low, high, size=(256, d)).astype(np.float32)
    want = PolicyShape(d, n).logits(theta, obs).argmax(1)
    got = run_onnx(tmp_path / "warm" / "policy.onnx", obs).argmax(1)
    np.testing.assert_array_equal(got, want)
    cfg = json.loads((tmp_path / "warm" / "config.json").read_text())
    assert cfg["ppo"]["value_warmup"] == 100 and cfg["init_sharpen"] == 3.0
    # Policy updates move it.
    assert run("moved", "--lr", "0.05") == 0
    moved = run_onnx(tmp_path / "moved" / "policy.onnx", obs).argmax(1)
    assert (moved != want).any()
    # A warm start that does not fit is refused with the reason.
    with pytest.raises(ValueError, match="without hidden layers"):
        train.main(["--algo", "ppo", "--scenarios", "steady", "--steps", "64", "--envs", "2",
                    "--eval-seeds", "0", "--init-from", str(tmp_path / "cem.npz"),
                    "--address", address, "--no-progress", "--out", str(tmp_path / "bad")])
    # PPO's options on another algorithm are refused, not ignored.
    with pytest.raises(SystemExit, match="--init-from, --lr: only for --algo ppo"):
        train.main(["--algo", "dqn", "--init-from", str(tmp_path / "cem.npz"), "--lr", "0.1",
                    "--address", address, "--out", str(tmp_path / "dqn")])


def test_run_score_weights_are_read_and_checked() -> None:
    assert score_weights("cost=0.7,miss=3,miss_cap=0.05") == {
        "cost": 0.7, "miss": 3.0, "target": 0.99, "miss_cap": 0.05}
    assert score_weights("") == {"cost": 0.0, "miss": 0.0, "target": 0.99, "miss_cap": None}
    with pytest.raises(ValueError, match="'costs=1' is not one of cost=X"):
        score_weights("costs=1")
    with pytest.raises(ValueError, match="miss = 'lots' is not a number"):
        score_weights("miss=lots")


def test_ppo_on_the_run_score_trains_on_whole_runs(address: str, tmp_path) -> None:
    def run(out: str, *extra: str) -> int:
        return train.main(["--algo", "ppo", "--scenarios", "steady", "--eval-scenarios", "",
                           "--steps", "2048", "--envs", "8", "--eval-seeds", "0", "--seed", "2",
                           "--address", address, "--no-progress", "--out",
                           str(tmp_path / out), *extra])

    assert run("score", "--run-score", "cost=0.7,miss=3") == 0
    assert run("steps") == 0
    cfg = json.loads((tmp_path / "score" / "config.json").read_text())
    assert cfg["run_score"] == "cost=0.7,miss=3"
    # Whole runs: every episode ran to the end of its run, and the two
    # rewards trained different weights from the same seed.
    assert cfg["server_options"]["episode_steps"] == "100000"
    wa = onnx.load(str(tmp_path / "score" / "policy.onnx")).graph.initializer
    wb = onnx.load(str(tmp_path / "steps" / "policy.onnx")).graph.initializer
    assert [t.raw_data for t in wa] != [t.raw_data for t in wb]
    with pytest.raises(SystemExit, match="miss = 'x' is not a number"):
        run("bad", "--run-score", "miss=x")
