"""Train a farm policy and export it to ONNX.

``python -m rustfarm_gym.train --algo sarsa|dqn|ppo --scenarios a,b --steps N``

- ``sarsa``: SARSA(lambda) with tile coding, numpy only.
- ``dqn``: Double DQN (:mod:`rustfarm_gym.dqn`) and ``ppo``: PPO with
  GAE(lambda) (:mod:`rustfarm_gym.ppo`), both on a numpy MLP
  (:mod:`rustfarm_gym.nn`), no torch; tested in CI. Their other
  hyper-parameters are the ``DQNConfig``/``PPOConfig`` defaults, recorded in
  ``config.json`` and the config hash.
- ``--backend sb3`` with ``dqn``/``ppo``: stable-baselines3 instead (its DQN
  uses standard, not Double-DQN, targets); needs the ``[train]`` extra
  (stable-baselines3 + torch) and is not exercised by the tests.

Training episodes draw a scenario from ``--scenarios`` and randomise it
(arrival rates, service-time mean and shape, start-up delays) unless
``--no-randomize``. Evaluation uses held-out seeds (``--eval-seed`` onwards,
never used in training) on the training scenarios and on ``--eval-scenarios``
(scenarios not used in training), without randomisation. Writes, under
``--out``: ``train.csv`` (one row per episode), ``eval.csv``, ``policy.onnx``
and ``config.json``. A fixed ``--seed`` reproduces a run.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .env import FarmEnv
from .onnx_export import config_hash, metadata, run_onnx, save, tile_coder_graph
from .sarsa import SarsaAgent, SarsaConfig
from .tiles import TileCoder
from .vector import FarmVectorEnv

DEFAULT_TRAIN = "paper-4phase,steady,ramp,diurnal,bursty,heavy-tail,cold-start"
DEFAULT_HELD_OUT = "spike,ce-capped"
#: Whole-run evaluation: no step limit, the episode ends when the run does
#: (the same run `farmctl sim eval` measures).
WHOLE_RUN = {"episode_steps": "100000"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    ap = argparse.ArgumentParser(prog="python -m rustfarm_gym.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", choices=["sarsa", "dqn", "ppo"], default="sarsa")
    ap.add_argument("--backend", choices=["numpy", "sb3"], default="numpy",
                    help="dqn/ppo implementation (sb3 needs the [train] extra)")
    ap.add_argument("--scenarios", default=DEFAULT_TRAIN, help="training scenarios (comma list)")
    ap.add_argument("--eval-scenarios", default=DEFAULT_HELD_OUT,
                    help="held-out scenarios, never trained on (comma list; '' for none)")
    ap.add_argument("--steps", type=int, default=200_000, help="environment steps in total")
    ap.add_argument("--envs", type=int, default=16, help="parallel environments")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-seeds", type=int, default=5)
    ap.add_argument("--eval-seed", type=int, default=1_000_000,
                    help="first evaluation seed (training uses seeds derived from --seed)")
    ap.add_argument("--action-space", default="estimates")
    ap.add_argument("--no-randomize", action="store_true")
    ap.add_argument("--obs-version", type=int, default=1, help="observation layout (1, 2 or 3)")
    ap.add_argument("--interval", default="",
                    help="decision intervals an episode draws from, seconds (comma list; "
                         "default: each scenario's)")
    ap.add_argument("--window", type=float, default=0.0,
                    help="sliding window of the signals, seconds (0: the interval)")
    ap.add_argument("--events", default="",
                    help="early decisions on a backlog jump: on, or share=X,jump=N,gap=S "
                         "(default off), as `farmctl sim --events`")
    ap.add_argument("--shapes", action="store_true",
                    help="dqn/ppo: also train on cem.training_scenarios() (steps, surges, "
                         "oscillations, log-normal service, starts from one replica), one "
                         "scenario per environment in turn")
    ap.add_argument("--reward", default="qos=1,cost=0.15,backlog=0.5,churn=0.05",
                    help="reward weights k=v,... (keys qos, cost, backlog, churn)")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--gamma", type=float, default=0.95)
    ap.add_argument("--lam", type=float, default=0.8)
    ap.add_argument("--time-ref", type=float, default=0.0,
                    help="ppo: seconds one --gamma discounts, with rewards weighted by "
                         "step / time-ref (0: per decision; needs --obs-version 3)")
    ap.add_argument("--tilings", type=int, default=4)
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--generated", type=int, default=0,
                    help="with --shapes: this many of the environments each run a farm of "
                         "their own from rustfarm_gym.scenegen (seeds drawn from --seed)")
    ap.add_argument("--init-from", default=None,
                    help="ppo: start the policy from a linear CEM policy.npz (same "
                         "--obs-version and --action-space; needs --hidden '')")
    ap.add_argument("--init-sharpen", type=float, default=1.0,
                    help="ppo with --init-from: multiply the warm start's logits by this (the "
                         "greedy policy is the same; the sampled one explores less)")
    ap.add_argument("--hidden", type=widths, default=None,
                    help="ppo: hidden layer widths, comma list ('' = linear; default 64,64)")
    ap.add_argument("--lr", type=float, default=None, help="ppo: Adam step size (default 1e-3)")
    ap.add_argument("--ent-coef", type=float, default=None,
                    help="ppo: entropy bonus weight (default 0.01)")
    ap.add_argument("--value-warmup", type=int, default=0,
                    help="ppo: rollouts at the start that train only the value network")
    ap.add_argument("--run-score", default="",
                    help="ppo: learn from one reward per whole run, cem's score with these "
                         "weights (e.g. cost=0.7,miss=3,miss_cap=0.05; implies whole runs)")
    ap.add_argument("--out", default="runs/latest", help="output directory")
    ap.add_argument("--address", default=None, help="FarmControl server (default: start one)")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def widths(text: str) -> tuple[int, ...]:
    """``--hidden``: comma list of positive layer widths, '' for none."""
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list of widths") from None
    if any(w < 1 for w in out):
        raise argparse.ArgumentTypeError(f"{text!r}: widths must be at least 1")
    return out


def reward_options(text: str) -> dict[str, str]:
    """``qos=1,cost=0.15`` -> ``{"reward.qos": "1", "reward.cost": "0.15"}``."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, _, v = part.partition("=")
        if k not in ("qos", "cost", "backlog", "churn") or not v:
            raise SystemExit(f"--reward: bad entry {part!r} (expected qos|cost|backlog|churn=NUM)")
        out[f"reward.{k}"] = v
    return out


def greedy_episode(env: FarmEnv, policy: Any, seed: int, scenario: str) -> dict[str, Any]:
    """Run one whole run greedily; its summary."""
    obs, info = env.reset(options={"scenario": scenario, "episode_seed": seed, **WHOLE_RUN})
    while True:
        a = int(np.argmax(policy(obs[None, :])[0]))
        obs, _, term, trunc, info = env.step(a)
        if term or trunc:
            return info["summary"]


def evaluate(policy: Any, scenarios: Sequence[str], seeds: Sequence[int], *, address: str | None,
             action_space: str, held_out: set[str]) -> list[dict[str, Any]]:
    """Greedy whole runs of ``policy`` (obs batch -> values) per scenario and seed."""
    env = FarmEnv(address=address, action_space=action_space)
    rows = []
    try:
        for sc in scenarios:
            for seed in seeds:
                s = greedy_episode(env, policy, seed, sc)
                rows.append({"scenario": sc, "held_out": sc in held_out, "seed": seed, **s})
    finally:
        env.close()
    return rows


def train_sarsa(a: argparse.Namespace, cfg: dict[str, Any], out: Path,
                server_opts: dict[str, str]) -> tuple[Any, Any, Any]:
    """Train SARSA(lambda); returns ``(policy_fn, onnx_model, spec)``."""
    venv = FarmVectorEnv(a.envs, "paper-4phase", address=a.address,
                         action_space=a.action_space, server_options=server_opts,
                         step_info=False)
    try:
        spec = venv.farm_spec
        coder = TileCoder.for_spec(spec.observation_names, spec.observation_low,
                                   spec.observation_high, tilings=a.tilings, bins=a.bins)
        sc = SarsaConfig(alpha=a.alpha, gamma=a.gamma, lam=a.lam, tilings=a.tilings,
                         bins=a.bins, seed=a.seed)
        agent = SarsaAgent(coder, len(spec.action_meanings), sc)
        agent.train(venv, a.steps, log_csv=out / "train.csv", progress=not a.no_progress)
    finally:
        venv.close()
    model = tile_coder_graph(coder, agent.w)
    return agent.q, model, spec


def train_sb3(a: argparse.Namespace, cfg: dict[str, Any], out: Path,
              server_opts: dict[str, str]) -> tuple[Any, Any, Any]:
    """DQN or PPO through stable-baselines3 (``[train]`` extra)."""
    try:
        import torch  # noqa: F401
        from stable_baselines3 import DQN, PPO
        from stable_baselines3.common.monitor import Monitor
    except ImportError as e:
        raise SystemExit(
            f"--algo {a.algo} needs the [train] extra: pip install -e 'gym[train]' ({e})"
        ) from e
    from .sb3_export import export_sb3

    env = Monitor(FarmEnv("paper-4phase", address=a.address, action_space=a.action_space,
                          server_options=server_opts), filename=str(out / "train"))
    env.reset(seed=a.seed)
    if a.algo == "dqn":
        model = DQN("MlpPolicy", env, seed=a.seed, gamma=a.gamma, verbose=0,
                    learning_starts=1000, target_update_interval=1000)
    else:
        model = PPO("MlpPolicy", env, seed=a.seed, gamma=a.gamma, verbose=0)
    model.learn(total_timesteps=a.steps, progress_bar=not a.no_progress)
    spec = env.unwrapped.farm_spec
    env.close()
    return export_sb3(model, a.algo, len(spec.observation_names))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    a = parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    server_opts = {"scenarios": a.scenarios, **reward_options(a.reward)}
    if not a.no_randomize:
        server_opts["randomize"] = "true"
    if a.obs_version != 1:
        server_opts["obs_version"] = str(a.obs_version)
    if a.interval:
        server_opts["interval"] = a.interval
    if a.window > 0:
        server_opts["window"] = f"{a.window:g}"
    if a.events:
        server_opts["events"] = a.events
    if a.run_score:
        from .ppo import score_weights

        try:
            score_weights(a.run_score)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        server_opts.update(WHOLE_RUN)  # one reward per run: the run must end
    cfg = {k: v for k, v in vars(a).items()
           if k not in ("out", "address", "no_progress")}
    if not a.events:
        del cfg["events"]  # added later: left out when off, so config hashes reproduce
    for k, off in (("generated", 0), ("init_from", None), ("init_sharpen", 1.0),
                   ("hidden", None), ("lr", None), ("ent_coef", None), ("value_warmup", 0),
                   ("run_score", "")):
        if cfg[k] == off:
            del cfg[k]  # likewise
    ppo_only = [f"--{k.replace('_', '-')}" for k in ("init_from", "init_sharpen", "hidden", "lr",
                                                       "ent_coef", "value_warmup", "run_score")
                if k in cfg]
    if ppo_only and a.algo != "ppo":
        raise SystemExit(f"{', '.join(ppo_only)}: only for --algo ppo")
    if a.generated and not a.shapes:
        raise SystemExit("--generated needs --shapes")
    cfg["server_options"] = server_opts
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    t0 = time.perf_counter()
    if a.algo == "sarsa":
        policy, model, spec = train_sarsa(a, cfg, out, server_opts)
        output = "q"
        algorithm = "sarsa-lambda"
    elif a.backend == "sb3":
        policy, model, spec = train_sb3(a, cfg, out, server_opts)
        output = "q" if a.algo == "dqn" else "logits"
        algorithm = a.algo
    else:
        from . import dqn, ppo

        trainer = dqn if a.algo == "dqn" else ppo
        policy, model, spec = trainer.train_from_args(a, cfg, out, server_opts)
        output = "q" if a.algo == "dqn" else "logits"
        algorithm = "double-dqn" if a.algo == "dqn" else "ppo"
    wall = time.perf_counter() - t0
    meta = metadata(spec, output=output, algorithm=algorithm, config=cfg)
    path = save(model, out / "policy.onnx", meta)
    # The exported graph must agree with the trainer on a batch of observations.
    rng = np.random.default_rng(a.seed)
    low, high = np.asarray(spec.observation_low), np.asarray(spec.observation_high)
    batch = rng.uniform(low, high, size=(1024, len(low))).astype(np.float32)
    ref, got = policy(batch), run_onnx(path, batch)
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    print(f"trained {a.algo} for {a.steps} steps in {wall:.1f} s; exported {path} "
          f"({config_hash(cfg)}); ONNX vs trainer: max |diff| {np.abs(ref - got).max():.2e}, "
          f"greedy agreement {agree:.4f}")
    if agree < 1.0:
        print("error: ONNX and trainer disagree on greedy actions", file=sys.stderr)
        return 1
    train_sc = [s for s in a.scenarios.split(",") if s]
    held = [s for s in a.eval_scenarios.split(",") if s]
    seeds = list(range(a.eval_seed, a.eval_seed + a.eval_seeds))
    rows = evaluate(lambda o: run_onnx(path, o), train_sc + held, seeds, address=a.address,
                    action_space=a.action_space, held_out=set(held)) if a.eval_seeds else []
    if rows:
        with open(out / "eval.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"{'scenario':<14} {'held-out':>8} {'QoS %':>8} {'replica-s':>10} {'mean rep':>9}")
        for sc in train_sc + held:
            r = [x for x in rows if x["scenario"] == sc]
            print(f"{sc:<14} {('yes' if sc in held else 'no'):>8} "
                  f"{100 * np.mean([x['qos'] for x in r]):>8.2f} "
                  f"{np.mean([x['replica_seconds'] for x in r]):>10.0f} "
                  f"{np.mean([x['mean_replicas'] for x in r]):>9.2f}")
    (out / "wall_time_s.txt").write_text(f"{wall:.1f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
