"""Procedural training scenarios: a new farm, load and platform every run.

``generate(seed)`` returns the YAML of one scenario drawn from a broad
distribution, the same YAML for the same seed:

- **arrivals**: one to five phases (constant, ramp, sine, square wave,
  spike) in random order with random levels, lengths and periods, Poisson
  or evenly spread; or a two-state MMPP with random rates and sojourns;
- **service**: gamma, log-normal (heavy tails), exponential or uniform,
  mean log-uniform in 0.1-6 s, so sub-second tasks are common;
- **deadlines**: proportional to the task's service time (factor 1.5-4) or
  one fixed deadline for every task (1.5-6 mean service times, >= 0.3 s);
- **platform**: 16-48 replicas at most, one run in five capped at 5 per
  function (sharded), start-up delays log-uniform 1-20 s, an initial pool
  from one replica to 2.5x what the first phase needs (over-provisioned
  starts under falling loads included).

The peak load asks for 25-85 % of the farm's maximum, so most runs can be
served and the policy learns to be cheap, not only to be big. The trainer
(:mod:`rustfarm_gym.cem`, ``--generated``) draws these next to the named
training shapes; the server's domain randomisation applies on top. No
evaluation scenario is read here.
"""

from __future__ import annotations

import numpy as np

#: Phase shapes of a generated rate-shaped workload.
SHAPES = ("constant", "ramp", "sine", "square", "spike")


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _phase(rng: np.random.Generator, shape: str, d: float) -> tuple[str, float]:
    """YAML of one phase of length ``d`` and its multiplier at the start."""
    lvl = lambda: float(rng.uniform(0.08, 1.0))  # noqa: E731
    head = f"  - shape: {shape}\n    duration_s: {d:.1f}\n"
    if shape == "constant":
        v = lvl()
        return head + f"    level: {v:.3f}", v
    if shape == "ramp":
        a, b = lvl(), lvl()
        return head + f"    from: {a:.3f}\n    to: {b:.3f}", a
    if shape == "sine":
        a, b = sorted((lvl(), lvl()))
        off = float(np.floor(rng.uniform(0.0, 1.0) * 1000.0)) / 1000.0  # < 1 as printed
        per = float(rng.uniform(20.0, 160.0))
        mid, amp = (a + b) / 2, (b - a) / 2
        return (head + f"    min: {a:.3f}\n    max: {b:.3f}\n    period_s: {per:.1f}\n"
                f"    offset: {off:.3f}"), mid + amp * float(np.sin(2 * np.pi * off))
    if shape == "square":
        a, b = sorted((lvl(), lvl()))
        per = float(rng.uniform(20.0, 120.0))
        duty = float(rng.uniform(0.2, 0.7))
        return (head + f"    low: {a:.3f}\n    high: {b:.3f}\n    period_s: {per:.1f}\n"
                f"    duty: {duty:.3f}"), b
    a = float(rng.uniform(0.08, 0.5))
    length = float(rng.uniform(5.0, min(60.0, 0.6 * d)))
    start = float(rng.uniform(0.0, d - length))
    return (head + f"    level: {a:.3f}\n    peak: 1.0\n    start_s: {start:.1f}\n"
            f"    length_s: {length:.1f}"), (1.0 if start == 0.0 else a)


def _service(rng: np.random.Generator, mean: float) -> str:
    kind = rng.choice(["gamma", "lognormal", "exponential", "uniform"], p=[0.35, 0.35, 0.15, 0.15])
    hi = min(60.0, 25.0 * mean)
    if kind == "gamma":
        k = float(rng.uniform(1.0, 8.0))
        dist = f"    kind: gamma\n    shape: {k:.3f}\n    scale: {mean / k:.5f}"
    elif kind == "lognormal":
        s = float(rng.uniform(0.4, 1.8))
        dist = f"    kind: lognormal\n    mu: {np.log(mean) - s * s / 2:.5f}\n    sigma: {s:.3f}"
    elif kind == "exponential":
        dist = f"    kind: exponential\n    mean: {mean:.5f}"
    else:
        w = float(rng.uniform(0.1, 0.9))
        dist = f"    kind: uniform\n    min: {mean * (1 - w):.5f}\n    max: {mean * (1 + w):.5f}"
    return f"  dist:\n{dist}\n  clip:\n    min: 0.01\n    max: {hi:.3f}"


def _deadline(rng: np.random.Generator, mean: float) -> str:
    if rng.random() < 0.7:
        return (f"  kind: factor\n  factor: {rng.uniform(1.5, 4.0):.3f}\n"
                f"  floor_s: {rng.uniform(0.1, 1.0):.3f}\n  cap_s: 30.0")
    return f"  kind: fixed\n  seconds: {max(0.3, mean * rng.uniform(1.5, 6.0)):.3f}"


def generate(seed: int) -> str:
    """The YAML of the generated scenario of ``seed`` (see the module docs)."""
    rng = np.random.default_rng([seed, 0x5CE2E])
    total = float(rng.uniform(160.0, 400.0))
    mean = _loguniform(rng, 0.1, 6.0)
    max_rep = int(rng.choice([16, 24, 32, 40, 48]))
    peak_need = float(rng.uniform(0.25, 0.85)) * max_rep
    if rng.random() < 0.75:
        n = int(rng.integers(1, 6))
        cuts = np.sort(rng.uniform(0.0, 1.0, n - 1))
        lens = np.diff(np.concatenate([[0.0], cuts, [1.0]])) * total
        lens = np.maximum(lens, 15.0)
        phases = [_phase(rng, str(rng.choice(SHAPES)), float(d)) for d in lens]
        rate = peak_need / mean
        start_need = phases[0][1] * peak_need
        process = "deterministic" if rng.random() < 0.15 else "poisson"
        body = "\n".join(p for p, _ in phases)
        arrivals = (f"  kind: phases\n  process: {process}\n  base_rate: {rate:.4f}\n"
                    f"  phases:\n{body}")
    else:
        hi = peak_need / mean
        lo = hi * float(rng.uniform(0.1, 0.5))
        stay = (float(rng.uniform(10.0, 60.0)), float(rng.uniform(5.0, 30.0)))
        arrivals = (f"  kind: mmpp\n  rates:\n  - {lo:.4f}\n  - {hi:.4f}\n"
                    f"  mean_sojourn_s:\n  - {stay[0]:.1f}\n  - {stay[1]:.1f}\n"
                    f"  duration_s: {total:.1f}")
        start_need = lo * mean
    initial = int(np.clip(round(start_need * rng.uniform(0.3, 2.5)), 1, max_rep))
    cap = "  per_function_cap: 5\n" if rng.random() < 0.2 else ""
    up = _loguniform(rng, 1.0, 20.0)
    return f"""name: gen-{seed}
description: 'generated (rustfarm_gym.scenegen): service mean {mean:.3f} s,
  peak load {peak_need:.2f} of {max_rep} replicas'
seed: 0
arrivals:
{arrivals}
service:
{_service(rng, mean)}
deadline:
{_deadline(rng, mean)}
platform:
  control_interval_s: 8.0
  episode_steps: {max(10, round(total / 8.0))}
  min_replicas: 1
  max_replicas: {max_rep}
  initial_replicas: {initial}
{cap}  startup_delay:
    kind: uniform
    min: {up:.2f}
    max: {up * rng.uniform(1.2, 1.8):.2f}
  scale_down_delay:
    kind: uniform
    min: 1.0
    max: 3.0
  scale_api_latency_s: 0.0
  failure_rate_per_hour: 0.0
"""
