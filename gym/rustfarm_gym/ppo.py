"""PPO in numpy only, over a :class:`~rustfarm_gym.vector.FarmVectorEnv`.

Proximal Policy Optimization (Schulman et al., 2017) with the clipped
surrogate objective, generalised advantage estimation (GAE(lambda)), an
entropy bonus and several epochs of minibatch Adam steps per rollout. The
policy (categorical over the farm's discrete actions, from an
:class:`~rustfarm_gym.nn.MLP` of logits) and the value function are separate
networks, so each has its own loss and optimiser and no loss weighting
couples them.

A truncated episode (time limit) adds ``gamma * V(final observation)`` to
its last reward, so the cut does not look like a terminal state; a
terminated one bootstraps nothing.

With ``time_ref_s > 0`` and an observation that states its decision step
(``step_log``, layout 3) the discount is per second, not per decision (a
semi-MDP): a step of ``dt`` seconds is discounted by
``gamma ** (dt / time_ref_s)`` (``lambda`` likewise) and its reward weighs
``dt / time_ref_s``, so one policy trained over decision intervals of 1-8 s
looks equally far ahead (and values a second of QoS or of a replica
equally) at every cadence. With a per-decision discount a 1 s cadence
would look 8 times less far ahead than an 8 s one, shorter than the
start-up delays it must plan over.

>>> agent = PPOAgent(obs_dim=17, n_actions=7, low=[0] * 17, high=[2] * 17)
>>> # records = agent.train(venv, 5000)  # venv: FarmVectorEnv
>>> # model = agent.onnx_graph()         # output "logits", greedy = argmax
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .cem import PolicyShape
from .dqn import EpisodeLog, train_vector_agent
from .nn import MLP, Adam, clip_grad_norm

#: ``step_log`` = ``log1p(step s) / log1p(STEP_LOG_MAX_S)`` (farm-model's
#: observation layout 3).
STEP_LOG_MAX_S = 60.0


@dataclass
class PPOConfig:
    """Hyper-parameters of PPO."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of both networks."""
    activation: str = "tanh"
    """Hidden non-linearity (``tanh`` or ``relu``)."""
    lr: float = 1e-3
    """Adam step size of both networks."""
    gamma: float = 0.95
    """Discount per control interval."""
    gae_lambda: float = 0.95
    """GAE trade-off between bias (0) and variance (1)."""
    n_steps: int = 32
    """Steps per sub-environment in one rollout."""
    epochs: int = 8
    """Passes over each rollout."""
    minibatch_size: int = 64
    """Transitions per gradient step."""
    clip: float = 0.2
    """Clipping range of the probability ratio."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip, per network."""
    normalize_advantages: bool = True
    """Standardise advantages per minibatch."""
    seed: int = 0
    """Seed of the initialisation, action sampling, minibatches and environments."""
    time_ref_s: float = 0.0
    """Seconds one ``gamma`` discounts (0: per decision); needs ``step_log``."""
    value_warmup: int = 0
    """Rollouts at the start that train only the value network (the policy
    acts but does not move), so a warm-started policy is not pushed around
    by the advantages of a value function that knows nothing yet."""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for the config hash)."""
        return asdict(self)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise ``log(softmax(logits))``, computed stably."""
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def policy_loss(logits: np.ndarray, actions: np.ndarray, old_logp: np.ndarray,
                adv: np.ndarray, clip: float, ent_coef: float,
                ) -> tuple[float, np.ndarray, dict[str, float]]:
    """PPO's clipped surrogate loss minus the entropy bonus, and its gradient.

    ``loss = -mean(min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A))
    - ent_coef * mean(entropy)``; returns ``(loss, d loss / d logits, stats)``
    with stats ``entropy``, ``clip_frac`` and ``approx_kl``.
    """
    b = len(actions)
    rows = np.arange(b)
    logp_all = log_softmax(logits)
    p = np.exp(logp_all)
    logp = logp_all[rows, actions]
    ratio = np.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = np.clip(ratio, 1.0 - clip, 1.0 + clip) * adv
    surrogate = np.minimum(unclipped, clipped)
    entropy = -(p * logp_all).sum(axis=1)
    loss = float(-surrogate.mean() - ent_coef * entropy.mean())
    # The min follows the unclipped term unless clipping made it smaller;
    # the clipped term is constant in the logits there.
    active = unclipped <= clipped
    onehot = np.zeros_like(logits)
    onehot[rows, actions] = 1.0
    d_logp = np.where(active, -adv * ratio, 0.0) / b
    dlogits = d_logp[:, None] * (onehot - p)
    # d entropy / d z_j = -p_j (log p_j + entropy)
    dlogits += ent_coef * p * (logp_all + entropy[:, None]) / b
    stats = {"entropy": float(entropy.mean()),
             "clip_frac": float(np.mean(np.abs(ratio - 1.0) > clip)),
             "approx_kl": float(np.mean(old_logp - logp))}
    return loss, dlogits, stats


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray,
        gamma: float | np.ndarray, lam: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GAE(lambda) advantages and value targets of a rollout ``[T, N]``.

    ``dones[t]`` marks that the episode ended at step ``t`` (the next
    observation starts a new one); ``last_values`` are ``V`` of the
    observations after the rollout. ``gamma`` and ``lam`` are scalars or
    per-step arrays ``[T, N]`` (a discount per transition).
    """
    shape = rewards.shape
    gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64), shape)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), shape)
    t_max = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(rewards.shape[1])
    for t in reversed(range(t_max)):
        next_v = last_values if t == t_max - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma[t] * next_v * nonterminal - values[t]
        running = delta + gamma[t] * lam[t] * nonterminal * running
        adv[t] = running
    return adv, adv + values


class PPOAgent:
    """Policy and value networks with their optimisers."""

    def __init__(self, obs_dim: int, n_actions: int, *,
                 low: Sequence[float] | np.ndarray, high: Sequence[float] | np.ndarray,
                 cfg: PPOConfig | None = None, step_feature: int | None = None) -> None:
        self.cfg = cfg = cfg or PPOConfig()
        self.n_actions = n_actions
        if cfg.time_ref_s > 0 and step_feature is None:
            raise ValueError("time_ref_s > 0 needs an observation with `step_log` "
                             "(observation layout 3)")
        self.step_feature = step_feature
        self.rng = np.random.default_rng(cfg.seed)
        # Small initial logits: the first policy is close to uniform.
        self.policy = MLP([obs_dim, *cfg.hidden, n_actions], activation=cfg.activation,
                          low=low, high=high, rng=self.rng, out_gain=0.01)
        self.value = MLP([obs_dim, *cfg.hidden, 1], activation=cfg.activation,
                         low=low, high=high, rng=self.rng)
        self.policy_opt = Adam(self.policy.params, lr=cfg.lr)
        self.value_opt = Adam(self.value.params, lr=cfg.lr)
        self.updates = 0

    def warm_start_linear(self, w: np.ndarray, b: np.ndarray) -> None:
        """Make the policy network the linear scorer ``obs @ w + b`` (e.g. a
        CEM ``policy.npz``), exactly: it needs a policy without hidden layers,
        and folds the network's input rescaling into the weights."""
        net = self.policy
        if net.n_layers != 1:
            raise ValueError("a linear warm start needs a policy without hidden layers "
                             f"(hidden = {list(self.cfg.hidden)})")
        if w.shape != (net.sizes[0], net.sizes[1]) or b.shape != (net.sizes[1],):
            raise ValueError(f"warm start of shape {w.shape} + {b.shape} for a policy over "
                             f"{net.sizes[0]} features and {net.sizes[1]} actions")
        # (x * scale + shift) @ W' + b' == x @ w + b
        net.params[0][...] = w / net.scale[:, None]
        net.params[1][...] = b - net.shift @ net.params[0]

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Action logits ``[N, A]``."""
        return self.policy.forward(obs)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Most probable actions (lowest index on ties, as ``argmax`` in ONNX users)."""
        return self.logits(obs).argmax(axis=1)

    def step_weights(self, obs: np.ndarray) -> np.ndarray:
        """``dt / time_ref_s`` of the decisions taken at ``obs`` (1 without a
        time reference): the decision step the observation states, which is
        the episode's fixed interval."""
        if self.cfg.time_ref_s <= 0 or self.step_feature is None:
            return np.ones(len(obs))
        step_s = np.expm1(obs[:, self.step_feature].astype(np.float64) * np.log1p(STEP_LOG_MAX_S))
        return np.maximum(step_s, 1e-3) / self.cfg.time_ref_s

    def values(self, obs: np.ndarray) -> np.ndarray:
        """State values ``[N]``."""
        return self.value.forward(obs)[:, 0]

    def sample(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions drawn from the policy, and their log-probabilities."""
        logp_all = log_softmax(self.logits(obs))
        cdf = np.cumsum(np.exp(logp_all), axis=1)
        u = self.rng.random((len(obs), 1)) * cdf[:, -1:]
        a = np.minimum((cdf < u).sum(axis=1), self.n_actions - 1)
        return a, logp_all[np.arange(len(a)), a]

    def update(self, obs: np.ndarray, actions: np.ndarray, old_logp: np.ndarray,
               adv: np.ndarray, returns: np.ndarray, *,
               policy: bool = True) -> dict[str, float]:
        """One Adam step of each network on a minibatch (of the value network
        only with ``policy=False``); returns loss statistics."""
        c = self.cfg
        if c.normalize_advantages and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        logits, cache = self.policy.forward_train(obs)
        loss, dlogits, stats = policy_loss(logits, actions, old_logp, adv, c.clip, c.ent_coef)
        if policy:
            grads = self.policy.backward(cache, dlogits)
            clip_grad_norm(grads, c.max_grad_norm)
            self.policy_opt.step(grads)
        v, vcache = self.value.forward_train(obs)
        err = v[:, 0] - returns
        vgrads = self.value.backward(vcache, (2.0 * err / len(err))[:, None])
        clip_grad_norm(vgrads, c.max_grad_norm)
        self.value_opt.step(vgrads)
        self.updates += 1
        return {"policy_loss": loss, "value_loss": float((err * err).mean()), **stats}

    def train(self, venv: Any, total_steps: int, *, log_csv: str | Path | None = None,
              progress: bool = True, on_episode: Callable[[dict[str, Any]], None] | None = None,
              run_score: Callable[[dict[str, Any]], float] | None = None,
              ) -> list[dict[str, Any]]:
        """Train for ``total_steps`` environment steps (summed over sub-envs,
        rounded down to whole rollouts, at least one).

        With ``run_score`` the agent learns from one reward per run instead of
        the environment's per-step rewards: 0 on every step and
        ``run_score(summary)`` on the step that ends the run (``summary``: the
        run's metrics, ``qos``, ``mean_replicas``, ...), the objective CEM
        optimises; the episode log keeps the environment's returns.

        Returns one record per finished episode (also written to ``log_csv``):
        ``step, env, return, length, qos, replica_seconds, mean_replicas,
        wall_s, entropy`` (the policy's mean entropy in the last update).
        """
        from tqdm import tqdm

        c = self.cfg
        n, t_len = venv.num_envs, c.n_steps
        rollouts = max(1, total_steps // (n * t_len))
        dim = self.policy.sizes[0]
        log = EpisodeLog(n, "entropy", log_csv, on_episode)
        bar = tqdm(total=rollouts * n * t_len, disable=not progress, unit="step", desc="ppo")
        obs, _ = venv.reset(seed=c.seed)
        entropy = float(np.log(self.n_actions))
        buf_obs = np.zeros((t_len, n, dim), dtype=np.float32)
        buf_act = np.zeros((t_len, n), dtype=np.int64)
        buf_logp = np.zeros((t_len, n))
        buf_val = np.zeros((t_len, n))
        buf_rew = np.zeros((t_len, n))
        buf_done = np.zeros((t_len, n))
        buf_gamma = np.zeros((t_len, n))
        buf_lam = np.zeros((t_len, n))
        step = 0
        try:
            for rollout in range(rollouts):
                for t in range(t_len):
                    act, logp = self.sample(obs)
                    buf_obs[t], buf_act[t], buf_logp[t] = obs, act, logp
                    buf_val[t] = self.values(obs)
                    obs2, r, term, trunc, info = venv.step(act)
                    done = term | trunc
                    dt = self.step_weights(obs)
                    buf_gamma[t], buf_lam[t] = c.gamma ** dt, c.gae_lambda ** dt
                    if run_score is None:
                        r_boot = np.asarray(r, dtype=np.float64) * dt
                    else:
                        r_boot = np.zeros(n)
                        summ = info["final_info"]["summary"] if done.any() else {}
                        for i in np.flatnonzero(done):
                            r_boot[i] = run_score({k: v[i] for k, v in summ.items()})
                    cut = np.flatnonzero(trunc & ~term)
                    if len(cut):
                        final = np.stack([info["final_obs"][i] for i in cut])
                        r_boot[cut] += buf_gamma[t][cut] * self.values(final)
                    buf_rew[t], buf_done[t] = r_boot, done
                    step += n
                    log.step(step, r, done, info, entropy)
                    obs = obs2
                    bar.update(n)
                adv, ret = gae(buf_rew, buf_val, buf_done, self.values(obs), buf_gamma,
                               buf_lam)
                flat = (buf_obs.reshape(-1, dim), buf_act.reshape(-1), buf_logp.reshape(-1),
                        adv.reshape(-1), ret.reshape(-1))
                size = len(flat[1])
                for _ in range(c.epochs):
                    perm = self.rng.permutation(size)
                    for lo in range(0, size, c.minibatch_size):
                        idx = perm[lo:lo + c.minibatch_size]
                        stats = self.update(*(x[idx] for x in flat),
                                            policy=rollout >= c.value_warmup)
                entropy = stats["entropy"]
                if log.records:
                    bar.set_postfix(ent=f"{entropy:.2f}", **log.postfix(2 * n))
        finally:
            bar.close()
            log.close()
        return log.records

    def onnx_graph(self) -> onnx.ModelProto:
        """The policy network as ONNX, output ``logits``."""
        return self.policy.onnx_graph("logits", name="ppo_logits")


def train_from_args(a: argparse.Namespace, cfg: dict[str, Any], out: Path,
                    server_opts: dict[str, str]) -> tuple[Any, onnx.ModelProto, Any]:
    """``train.py --algo ppo``: returns ``(logits_fn, onnx_model, spec)``.

    Uses ``--steps --envs --seed --gamma --time-ref --action-space``; the other
    hyper-parameters are :class:`PPOConfig`'s defaults.
    """
    pc = PPOConfig(gamma=a.gamma, seed=a.seed, time_ref_s=a.time_ref,
                   **({"hidden": a.hidden} if a.hidden is not None else {}),
                   **({"lr": a.lr} if a.lr is not None else {}),
                   **({"ent_coef": a.ent_coef} if a.ent_coef is not None else {}),
                   value_warmup=a.value_warmup)

    def make(spec: Any) -> PPOAgent:
        names = list(spec.observation_names)
        step = names.index("step_log") if "step_log" in names else None
        agent = PPOAgent(len(names), len(spec.action_meanings), low=spec.observation_low,
                         high=spec.observation_high, cfg=pc, step_feature=step)
        if a.init_from:
            w, b = linear_policy(a.init_from, len(names), len(spec.action_meanings))
            # Scaling the logits keeps the greedy policy and sharpens the sampled one.
            agent.warm_start_linear(a.init_sharpen * w, a.init_sharpen * b)
        return agent

    run_score = None
    if a.run_score:
        from .cem import score

        weights = score_weights(a.run_score)
        run_score = lambda summary: score(summary, **weights)  # noqa: E731
    agent, spec = train_vector_agent(a, cfg, out, server_opts, "ppo", pc, make,
                                     run_score=run_score)
    agent.policy.save(out / "policy.npz")
    agent.value.save(out / "value.npz")
    return agent.logits, agent.onnx_graph(), spec


def linear_policy(path: str | Path, obs_dim: int, n_actions: int,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of a linear CEM ``policy.npz`` over ``obs_dim`` features and
    ``n_actions`` actions."""
    with np.load(path) as z:
        if "theta" not in z or int(z.get("hidden", 0)) != 0:
            raise ValueError(f"{path}: not a linear CEM policy.npz (theta, hidden = 0)")
        theta = np.asarray(z["theta"], dtype=np.float64)
    if theta.shape != ((obs_dim + 1) * n_actions,):
        raise ValueError(f"{path}: {theta.size} parameters, expected "
                         f"{(obs_dim + 1) * n_actions} for {obs_dim} features x "
                         f"{n_actions} actions (the same --obs-version and actions?)")
    w, b = PolicyShape(obs_dim, n_actions).unpack(theta)
    return w, b


def score_weights(text: str) -> dict[str, Any]:
    """``--run-score cost=0.7,miss=3,miss_cap=0.05,target=0.99`` -> the keyword
    arguments of :func:`rustfarm_gym.cem.score` (``target`` 0.99 and no cap
    unless given)."""
    out: dict[str, Any] = {"cost": 0.0, "miss": 0.0, "target": 0.99, "miss_cap": None}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in out:
            raise ValueError(f"--run-score {text!r}: {part!r} is not one of "
                             f"{', '.join(k + '=X' for k in out)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--run-score {text!r}: {key} = {value!r} is not a number") from None
    return out
