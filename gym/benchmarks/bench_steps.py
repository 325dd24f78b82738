"""Environment steps per second from Python over gRPC (prints figures).

``python benchmarks/bench_steps.py [--seconds 5] [--envs 64,256,1024]``

Single env: ``FarmEnv.step`` (one unary ``Step`` per env step, reset when an
episode ends). Vector: ``FarmVectorEnv.step`` (one ``StepBatch`` with
auto-reset per call); steps/s counts env steps across all envs. The server is
the newest ``target/{release,debug}/farmctl`` (or ``FARMCTL``): use a release
build for meaningful numbers.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from rustfarm_gym import FarmEnv, FarmVectorEnv, SimServer


def bench_single(address: str, seconds: float, scenario: str) -> float:
    env = FarmEnv(scenario, address=address)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, env.action_space.n, size=100_000).tolist()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(500):
            _, _, term, trunc, _ = env.step(actions[n % len(actions)])
            n += 1
            if term or trunc:
                env.reset()
    rate = n / (time.perf_counter() - t0)
    env.close()
    return rate


def bench_vector(address: str, seconds: float, scenario: str, num_envs: int,
                 step_info: bool) -> float:
    venv = FarmVectorEnv(num_envs, scenario, address=address, step_info=step_info)
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, venv.single_action_space.n, size=(64, num_envs))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        venv.step(acts[n % 64])
        n += 1
    rate = n * num_envs / (time.perf_counter() - t0)
    venv.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--scenario", default="paper-4phase")
    ap.add_argument("--envs", default="16,64,256,1024")
    a = ap.parse_args()
    with SimServer() as server:
        print(f"server: {server.binary} at {server.address}; cores: {os.cpu_count()}")
        single = bench_single(server.address, a.seconds, a.scenario)
        print(f"single env  ({a.scenario}): {single:>10,.0f} steps/s")
        for n in (int(x) for x in a.envs.split(",")):
            for info in (True, False):
                r = bench_vector(server.address, a.seconds, a.scenario, n, info)
                print(f"vector x{n:<5} ({a.scenario}, step_info={info!s:<5}): {r:>10,.0f} steps/s")


if __name__ == "__main__":
    main()
