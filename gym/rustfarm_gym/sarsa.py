"""SARSA(lambda) with tile coding and replacing traces, in numpy only.

Linear action values over a :class:`~rustfarm_gym.tiles.TileCoder`, trained
on a :class:`~rustfarm_gym.vector.FarmVectorEnv` (each sub-environment has
its own eligibility traces; the weights are shared). A truncated episode
(time limit) bootstraps from the final observation; a terminated one does
not.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .tiles import TileCoder


@dataclass
class SarsaConfig:
    """Hyper-parameters of SARSA(lambda)."""

    alpha: float = 0.1
    """Step size, divided by the number of active tiles."""
    gamma: float = 0.95
    """Discount per control interval."""
    lam: float = 0.8
    """Trace decay."""
    epsilon_start: float = 0.3
    """Exploration at the start, decayed linearly..."""
    epsilon_end: float = 0.02
    """...to this value..."""
    epsilon_decay: float = 0.7
    """...over this fraction of the training steps."""
    tilings: int = 4
    """Offset grids per feature group."""
    bins: int = 8
    """Cells per dimension of a grid."""
    seed: int = 0
    """Seed of exploration and of the environments."""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for the config hash)."""
        return asdict(self)


class SarsaAgent:
    """Shared weights ``[n_tiles, n_actions]`` and per-env traces."""

    def __init__(self, coder: TileCoder, n_actions: int, cfg: SarsaConfig) -> None:
        self.coder = coder
        self.n_actions = n_actions
        self.cfg = cfg
        self.w = np.zeros((coder.n_tiles, n_actions), dtype=np.float64)
        self.rng = np.random.default_rng(cfg.seed)

    def q(self, obs: np.ndarray) -> np.ndarray:
        """Action values ``[N, A]``."""
        return self.coder.q(self.w, obs)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions (lowest index on ties, as ``argmax`` in ONNX users)."""
        return self.q(obs).argmax(axis=1)

    def _choose(self, q: np.ndarray, eps: float) -> np.ndarray:
        n = q.shape[0]
        # Random tie-breaking while learning: all-zero initial values would
        # otherwise always pick action 0.
        noisy = q + self.rng.uniform(0, 1e-9, size=q.shape)
        a = noisy.argmax(axis=1)
        explore = self.rng.random(n) < eps
        a[explore] = self.rng.integers(0, self.n_actions, size=int(explore.sum()))
        return a

    def epsilon(self, step: int, total: int) -> float:
        """Linearly decayed exploration rate at ``step`` of ``total``."""
        c = self.cfg
        frac = min(1.0, step / max(1.0, c.epsilon_decay * total))
        return c.epsilon_start + frac * (c.epsilon_end - c.epsilon_start)

    def train(self, venv: Any, total_steps: int, *, log_csv: str | Path | None = None,
              progress: bool = True, on_episode: Callable[[dict[str, Any]], None] | None = None,
              ) -> list[dict[str, Any]]:
        """Train for ``total_steps`` environment steps (summed over sub-envs).

        Returns one record per finished episode (also written to ``log_csv``):
        ``step, env, return, length, qos, replica_seconds, mean_replicas,
        epsilon, wall_s``.
        """
        from tqdm import tqdm

        c = self.cfg
        n = venv.num_envs
        alpha = c.alpha / self.coder.n_active
        obs, _ = venv.reset(seed=c.seed)
        tiles = self.coder.active(obs)
        act = self._choose(self.w[tiles].sum(axis=1), c.epsilon_start)
        traces = np.zeros((n, self.coder.n_tiles, self.n_actions), dtype=np.float64)
        rows = np.arange(n)[:, None]
        ret = np.zeros(n)
        length = np.zeros(n, dtype=np.int64)
        records: list[dict[str, Any]] = []
        fields = ["step", "env", "return", "length", "qos", "replica_seconds",
                  "mean_replicas", "epsilon", "wall_s"]
        writer = None
        fh = None
        if log_csv is not None:
            Path(log_csv).parent.mkdir(parents=True, exist_ok=True)
            fh = open(log_csv, "w", newline="")  # noqa: SIM115 (closed below)
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
        t0 = time.perf_counter()
        iters = max(1, total_steps // n)
        bar = tqdm(total=iters * n, disable=not progress, unit="step", desc="sarsa")
        try:
            for it in range(iters):
                eps = self.epsilon(it * n, iters * n)
                obs2, r, term, trunc, info = venv.step(act)
                done = term | trunc
                tiles2 = self.coder.active(obs2)
                q2 = self.w[tiles2].sum(axis=1)
                act2 = self._choose(q2, eps)
                q_next = q2[np.arange(n), act2]
                if done.any():
                    for i in np.flatnonzero(done):
                        if term[i]:
                            q_next[i] = 0.0
                        else:
                            fo = info["final_obs"][i][None, :]
                            q_next[i] = self.coder.q(self.w, fo).max()
                q_sa = self.w[tiles, act[:, None]].sum(axis=1)
                delta = r + c.gamma * q_next - q_sa
                traces *= c.gamma * c.lam
                traces[rows, tiles, :] = 0.0
                traces[rows, tiles, act[:, None]] = 1.0
                self.w += alpha * np.einsum("n,nta->ta", delta, traces)
                ret += r
                length += 1
                for i in np.flatnonzero(done):
                    traces[i] = 0.0
                    s = info["final_info"]["summary"]
                    rec = {
                        "step": (it + 1) * n, "env": int(i), "return": float(ret[i]),
                        "length": int(length[i]), "qos": float(s["qos"][i]),
                        "replica_seconds": float(s["replica_seconds"][i]),
                        "mean_replicas": float(s["mean_replicas"][i]), "epsilon": eps,
                        "wall_s": time.perf_counter() - t0,
                    }
                    records.append(rec)
                    if writer is not None:
                        writer.writerow(rec)
                    if on_episode is not None:
                        on_episode(rec)
                    ret[i] = 0.0
                    length[i] = 0
                tiles, act = tiles2, act2
                bar.update(n)
                if records and it % 50 == 0:
                    last = records[-min(len(records), 2 * n):]
                    bar.set_postfix(qos=f"{np.mean([x['qos'] for x in last]):.3f}",
                                    reps=f"{np.mean([x['mean_replicas'] for x in last]):.1f}",
                                    eps=f"{eps:.2f}")
        finally:
            bar.close()
            if fh is not None:
                fh.close()
        return records
