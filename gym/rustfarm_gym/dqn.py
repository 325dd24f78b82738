"""Double DQN in numpy only, over a :class:`~rustfarm_gym.vector.FarmVectorEnv`.

Q-learning with an :class:`~rustfarm_gym.nn.MLP` action-value network, a
uniform replay buffer, the Huber loss, a hard-synced target network and
linearly decayed epsilon-greedy exploration. The bootstrap target is the
Double-DQN one (van Hasselt et al., 2016): the online network picks the next
action, the target network evaluates it,

``y = r + gamma * (1 - terminated) * Q_target(s', argmax_a Q_online(s', a))``

which removes most of the max-operator's over-estimation of plain DQN. A
truncated episode (time limit) bootstraps from its final observation; a
terminated one does not.

>>> agent = DQNAgent(obs_dim=17, n_actions=7, low=[0] * 17, high=[2] * 17)
>>> # records = agent.train(venv, 5000)  # venv: FarmVectorEnv
>>> # model = agent.onnx_graph()         # output "q"
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .nn import MLP, Adam, clip_grad_norm
from .vector import FarmVectorEnv

#: Columns of the per-episode training log (the last one is per algorithm).
LOG_FIELDS = ("step", "env", "return", "length", "qos", "replica_seconds", "mean_replicas",
              "wall_s")


@dataclass
class DQNConfig:
    """Hyper-parameters of Double DQN."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths."""
    activation: str = "relu"
    """Hidden non-linearity (``relu`` or ``tanh``)."""
    lr: float = 1e-3
    """Adam step size."""
    gamma: float = 0.95
    """Discount per control interval."""
    buffer_size: int = 50_000
    """Replay capacity in transitions (oldest overwritten first)."""
    batch_size: int = 64
    """Transitions per gradient step."""
    learning_starts: int = 500
    """Environment steps collected before the first gradient step."""
    train_ratio: float = 0.25
    """Gradient steps per environment step (summed over sub-environments)."""
    target_update: int = 500
    """Environment steps between copies of the online weights to the target net."""
    huber_delta: float = 1.0
    """Where the Huber loss turns from quadratic to linear."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    epsilon_start: float = 1.0
    """Exploration at the start, decayed linearly..."""
    epsilon_end: float = 0.05
    """...to this value..."""
    epsilon_decay: float = 0.4
    """...over this fraction of the training steps."""
    seed: int = 0
    """Seed of the initialisation, exploration, replay sampling and environments."""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for the config hash)."""
        return asdict(self)


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions ``(s, a, r, s', terminated)``."""

    def __init__(self, capacity: int, obs_dim: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float64)
        self.terminated = np.zeros(capacity, dtype=np.float64)
        self.size = 0
        self._next = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
            next_obs: np.ndarray, terminated: np.ndarray) -> None:
        """Append a batch of transitions (one per sub-environment)."""
        n = len(actions)
        idx = (self._next + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.next_obs[idx] = next_obs
        self.terminated[idx] = terminated
        self._next = int((self._next + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, ...]:
        """A uniform sample with replacement: ``(obs, actions, rewards, next_obs, terminated)``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        i = rng.integers(0, self.size, size=batch_size)
        return self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i], self.terminated[i]


def double_dqn_targets(q_next_online: np.ndarray, q_next_target: np.ndarray,
                       rewards: np.ndarray, terminated: np.ndarray, gamma: float) -> np.ndarray:
    """Double-DQN targets: the online values pick ``a*``, the target values score it."""
    a_star = np.argmax(q_next_online, axis=1)
    boot = q_next_target[np.arange(len(a_star)), a_star]
    return rewards + gamma * (1.0 - terminated) * boot


def huber_grad(td: np.ndarray, delta: float) -> np.ndarray:
    """Derivative of the Huber loss w.r.t. the TD error."""
    return np.clip(td, -delta, delta)


def huber(td: np.ndarray, delta: float) -> np.ndarray:
    """The Huber loss of each TD error."""
    a = np.abs(td)
    return np.where(a <= delta, 0.5 * td * td, delta * (a - 0.5 * delta))


class EpisodeLog:
    """Per-episode records of a vectorised training run, optionally to CSV.

    Shared by the numpy deep learners; ``extra`` names one algorithm-specific
    column (exploration rate, policy entropy).
    """

    def __init__(self, num_envs: int, extra: str, log_csv: str | Path | None,
                 on_episode: Callable[[dict[str, Any]], None] | None) -> None:
        self.extra = extra
        self.ret = np.zeros(num_envs)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.records: list[dict[str, Any]] = []
        self.on_episode = on_episode
        self.t0 = time.perf_counter()
        self._fh = None
        self._writer = None
        if log_csv is not None:
            Path(log_csv).parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(log_csv, "w", newline="")  # noqa: SIM115 (closed in close())
            self._writer = csv.DictWriter(self._fh, fieldnames=[*LOG_FIELDS, extra])
            self._writer.writeheader()

    def step(self, step: int, rewards: np.ndarray, done: np.ndarray, info: dict[str, Any],
             extra: float) -> None:
        """Account one vector step; record the episodes that ended in it."""
        self.ret += rewards
        self.length += 1
        for i in np.flatnonzero(done):
            s = info["final_info"]["summary"]
            rec = {
                "step": step, "env": int(i), "return": float(self.ret[i]),
                "length": int(self.length[i]), "qos": float(s["qos"][i]),
                "replica_seconds": float(s["replica_seconds"][i]),
                "mean_replicas": float(s["mean_replicas"][i]),
                "wall_s": time.perf_counter() - self.t0, self.extra: float(extra),
            }
            self.records.append(rec)
            if self._writer is not None:
                self._writer.writerow(rec)
            if self.on_episode is not None:
                self.on_episode(rec)
            self.ret[i] = 0.0
            self.length[i] = 0

    def postfix(self, n: int) -> dict[str, str]:
        """Progress-bar summary of the last ``n`` episodes."""
        last = self.records[-n:]
        if not last:
            return {}
        return {"ret": f"{np.mean([x['return'] for x in last]):.2f}",
                "qos": f"{np.mean([x['qos'] for x in last]):.3f}",
                "reps": f"{np.mean([x['mean_replicas'] for x in last]):.1f}"}

    def close(self) -> None:
        """Close the CSV file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def next_observations(obs2: np.ndarray, done: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """The true successor of each transition: ``final_obs`` where an episode ended.

    :class:`~rustfarm_gym.vector.FarmVectorEnv` resets finished
    sub-environments in the same step, so ``obs2`` holds the next episode's
    first observation there.
    """
    if not done.any():
        return obs2
    out = obs2.copy()
    for i in np.flatnonzero(done):
        out[i] = info["final_obs"][i]
    return out


class DQNAgent:
    """Online and target Q-networks, optimiser and replay buffer."""

    def __init__(self, obs_dim: int, n_actions: int, *,
                 low: Sequence[float] | np.ndarray, high: Sequence[float] | np.ndarray,
                 cfg: DQNConfig | None = None) -> None:
        self.cfg = cfg = cfg or DQNConfig()
        self.n_actions = n_actions
        self.rng = np.random.default_rng(cfg.seed)
        self.online = MLP([obs_dim, *cfg.hidden, n_actions], activation=cfg.activation,
                          low=low, high=high, rng=self.rng)
        self.target = self.online.copy()
        self.opt = Adam(self.online.params, lr=cfg.lr)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim)
        self.updates = 0

    def q(self, obs: np.ndarray) -> np.ndarray:
        """Online action values ``[N, A]``."""
        return self.online.forward(obs)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions (lowest index on ties, as ``argmax`` in ONNX users)."""
        return self.q(obs).argmax(axis=1)

    def epsilon(self, step: int, total: int) -> float:
        """Linearly decayed exploration rate at ``step`` of ``total``."""
        c = self.cfg
        frac = min(1.0, step / max(1.0, c.epsilon_decay * total))
        return c.epsilon_start + frac * (c.epsilon_end - c.epsilon_start)

    def act(self, obs: np.ndarray, eps: float) -> np.ndarray:
        """Epsilon-greedy actions for a batch of observations."""
        a = self.greedy(obs)
        explore = self.rng.random(len(a)) < eps
        a[explore] = self.rng.integers(0, self.n_actions, size=int(explore.sum()))
        return a

    def td_targets(self, rewards: np.ndarray, next_obs: np.ndarray,
                   terminated: np.ndarray) -> np.ndarray:
        """Double-DQN targets of a batch, from the online and target networks."""
        return double_dqn_targets(self.online.forward(next_obs), self.target.forward(next_obs),
                                  rewards, terminated, self.cfg.gamma)

    def update(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
               next_obs: np.ndarray, terminated: np.ndarray) -> float:
        """One Adam step on the mean Huber TD loss of a batch; returns the loss."""
        c = self.cfg
        y = self.td_targets(rewards, next_obs, terminated)
        q, cache = self.online.forward_train(obs)
        rows = np.arange(len(actions))
        td = q[rows, actions] - y
        dq = np.zeros_like(q)
        dq[rows, actions] = huber_grad(td, c.huber_delta) / len(actions)
        grads = self.online.backward(cache, dq)
        clip_grad_norm(grads, c.max_grad_norm)
        self.opt.step(grads)
        self.updates += 1
        return float(huber(td, c.huber_delta).mean())

    def sync_target(self) -> None:
        """Copy the online weights into the target network."""
        self.target.load_params(self.online)

    def train(self, venv: Any, total_steps: int, *, log_csv: str | Path | None = None,
              progress: bool = True, on_episode: Callable[[dict[str, Any]], None] | None = None,
              ) -> list[dict[str, Any]]:
        """Train for ``total_steps`` environment steps (summed over sub-envs).

        Returns one record per finished episode (also written to ``log_csv``):
        ``step, env, return, length, qos, replica_seconds, mean_replicas,
        wall_s, epsilon``.
        """
        from tqdm import tqdm

        c = self.cfg
        n = venv.num_envs
        iters = max(1, total_steps // n)
        log = EpisodeLog(n, "epsilon", log_csv, on_episode)
        bar = tqdm(total=iters * n, disable=not progress, unit="step", desc="double-dqn")
        obs, _ = venv.reset(seed=c.seed)
        credit = 0.0
        try:
            for it in range(iters):
                step = it * n
                eps = self.epsilon(step, iters * n)
                act = self.act(obs, eps)
                obs2, r, term, trunc, info = venv.step(act)
                done = term | trunc
                self.buffer.add(obs, act, r, next_observations(obs2, done, info), term)
                obs = obs2
                # Gradient steps keep pace with experience at `train_ratio`.
                if step + n >= c.learning_starts:
                    credit += n * c.train_ratio
                    while credit >= 1.0:
                        self.update(*self.buffer.sample(self.rng, c.batch_size))
                        credit -= 1.0
                if (step + n) // c.target_update > step // c.target_update:
                    self.sync_target()
                log.step(step + n, r, done, info, eps)
                bar.update(n)
                if log.records and it % 50 == 0:
                    bar.set_postfix(eps=f"{eps:.2f}", **log.postfix(2 * n))
        finally:
            bar.close()
            log.close()
        return log.records

    def onnx_graph(self) -> onnx.ModelProto:
        """The online network as ONNX, output ``q``."""
        return self.online.onnx_graph("q", name="double_dqn_q")


def train_vector_agent(a: argparse.Namespace, cfg: dict[str, Any], out: Path,
                       server_opts: dict[str, str], key: str, conf: Any,
                       make_agent: Callable[[Any], Any], **train_kw: Any) -> tuple[Any, Any]:
    """Shared body of ``train.py --algo dqn|ppo``: records ``conf`` in
    ``cfg[key]`` (and so in the config hash) and ``config.json``, builds the
    agent for the server's spec with ``make_agent(spec)`` and trains it for
    ``--steps`` over ``--envs`` environments (``train_kw`` goes to the
    agent's ``train``). Returns ``(agent, spec)``."""
    cfg[key] = conf.as_dict()
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    scenario: str | list[str] = "paper-4phase"
    opts = dict(server_opts)
    if getattr(a, "shapes", False):
        from .cem import training_scenarios
        from .scenegen import generate

        pool = [s for s in opts.pop("scenarios").split(",") if s]
        pool += list(training_scenarios().values())
        n_gen = min(getattr(a, "generated", 0), a.envs)
        rng = np.random.default_rng(a.seed)
        scenario = [generate(int(rng.integers(2**62))) for _ in range(n_gen)]
        scenario += [pool[i % len(pool)] for i in range(a.envs - n_gen)]
    venv = FarmVectorEnv(a.envs, scenario, address=a.address,
                         action_space=a.action_space, server_options=opts,
                         step_info=False)
    try:
        spec = venv.farm_spec
        agent = make_agent(spec)
        agent.train(venv, a.steps, log_csv=out / "train.csv", progress=not a.no_progress,
                    **train_kw)
    finally:
        venv.close()
    return agent, spec


def train_from_args(a: argparse.Namespace, cfg: dict[str, Any], out: Path,
                    server_opts: dict[str, str]) -> tuple[Any, onnx.ModelProto, Any]:
    """``train.py --algo dqn``: returns ``(q_fn, onnx_model, spec)``.

    Uses ``--steps --envs --seed --gamma --action-space``; the other
    hyper-parameters are :class:`DQNConfig`'s defaults.
    """
    dc = DQNConfig(gamma=a.gamma, seed=a.seed)
    agent, spec = train_vector_agent(
        a, cfg, out, server_opts, "dqn", dc,
        lambda spec: DQNAgent(len(spec.observation_names), len(spec.action_meanings),
                              low=spec.observation_low, high=spec.observation_high, cfg=dc))
    agent.online.save(out / "policy.npz")
    return agent.q, agent.onnx_graph(), spec
