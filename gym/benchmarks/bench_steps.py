"""Environment steps per second from Python over gRPC (prints figures).

``python benchmarks/bench_steps.py [--seconds 5] [--envs 16,64,256,1024] [--repeat 3]
[--transports native,grpcio] [--parts 1,2]``

Every figure is measured over each transport (``native``: the extension
``rustfarm_native``, gym/native/; ``grpcio``), runs of the transports
interleaved so that a change of load hits both alike, and each line pair
ends with the ratio native / grpcio of their best rates.

Single env, measured in layers so the cost of each is visible:

- ``empty RPC``: an empty ``StepBatch`` (no environment): over grpcio sent
  and received as raw bytes, the round trip with no protobuf and no
  simulation, the floor of any unary call from Python to this server; over
  the native transport ``Client.step_batch([], [])`` (an empty request,
  an empty list back);
- ``Step (client)``: ``FarmClient.step``, one unary ``Step`` with protobuf
  encoding and decoding (reset when an episode ends);
- ``StepStream (client)``: ``FarmClient.step_streamed``, the same steps
  written and read in lockstep on one bidirectional stream
  (``FarmControlStream.StepStream``, requests pre-encoded);
- ``FarmEnv.step``: the numpy observation and the info dict on top, over
  the stream (the default) and over unary calls (``stream=False``).

Each single-env line also prints its rate relative to the empty-RPC floor
of the same run.

Vector: ``FarmVectorEnv.step`` (packed ``StepBatch`` with auto-reset;
``parts=2``: from 256 envs, also the envs in two calls in flight at once,
``batch_parts=2``, against the default one call); steps/s counts env steps across all
envs. Every figure is the best of
``--repeat`` runs of ``--seconds`` each (the machine may be shared: the best
run is the one least disturbed), and the load average is printed before and
after.

Wall-clock rates depend on what else runs on the machine, so each line also
gives the CPU time spent per step by this Python process (client) and by the
server process (from /proc, Linux), summed over all runs. They bound what an
idle machine would do: a unary call is serial (client, then server), so at
most ``1 / (client + server)`` steps/s; during a ``StepBatch`` the server
steps on two threads while the client waits, so at most
``1 / (client + server / 2)``. The ``bound`` column prints that figure.

The server is the newest ``target/{release,debug}/farmctl`` (or ``FARMCTL``):
use a release build for meaningful numbers.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rustfarm_gym import FarmClient, FarmEnv, FarmVectorEnv, SimServer

#: From this many envs the vector figures also try two calls per step.
SPLIT_MIN_ENVS = 256

#: The server process being measured (set in main).
SERVER_PID = 0


def server_cpu_s() -> float:
    """CPU time (user + system) of the server process so far, or NaN."""
    try:
        fields = Path(f"/proc/{SERVER_PID}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


@dataclass
class Run:
    """Steps done in one timed run, with wall and CPU seconds."""

    steps: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float


def per_second(batch: Callable[[], int], seconds: float) -> Run:
    """Calls ``batch`` (returning how many steps it did) for ``seconds``."""
    n, t0, c0, s0 = 0, time.perf_counter(), time.process_time(), server_cpu_s()
    while time.perf_counter() - t0 < seconds:
        n += batch()
    return Run(n, time.perf_counter() - t0, time.process_time() - c0, server_cpu_s() - s0)


def bench_empty_rpc(address: str, seconds: float, transport: str) -> Run:
    client = FarmClient(address, transport=transport)
    if client.native is not None:
        native = client.native

        def batch() -> int:
            for _ in range(500):
                native.step_batch([], [], False)
            return 500
    else:
        call = client._channel.unary_unary("/farm.control.v1.FarmControl/StepBatch",
                                           request_serializer=None, response_deserializer=None,
                                           _registered_method=True)

        def batch() -> int:
            for _ in range(500):
                call(b"")
            return 500

    rate = per_second(batch, seconds)
    client.close()
    return rate


def bench_client_step(address: str, seconds: float, scenario: str, transport: str, *,
                      stream: bool = False) -> Run:
    client = FarmClient(address, transport=transport)
    client.reset("bench-client", 0, scenario=scenario)
    actions = np.random.default_rng(0).integers(0, 7, size=4096).tolist()
    step = client.step_streamed if stream else client.step
    k = 0

    def batch() -> int:
        nonlocal k
        for _ in range(500):
            r = step("bench-client", actions[k % 4096])
            k += 1
            if r.terminated or r.truncated:
                client.reset("bench-client", k, scenario=scenario)
        return 500

    rate = per_second(batch, seconds)
    client.close()
    return rate


def bench_single(address: str, seconds: float, scenario: str, transport: str, *,
                 stream: bool = True) -> Run:
    env = FarmEnv(scenario, address=address, stream=stream, transport=transport)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, env.action_space.n, size=100_000).tolist()
    k = 0

    def batch() -> int:
        nonlocal k
        for _ in range(500):
            _, _, term, trunc, _ = env.step(actions[k % len(actions)])
            k += 1
            if term or trunc:
                env.reset()
        return 500

    rate = per_second(batch, seconds)
    env.close()
    return rate


def bench_vector(address: str, seconds: float, scenario: str, num_envs: int,
                 step_info: bool, parts: int, transport: str) -> Run:
    venv = FarmVectorEnv(num_envs, scenario, address=address, step_info=step_info,
                         batch_parts=parts, transport=transport)
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, venv.single_action_space.n, size=(64, num_envs))
    k = 0

    def batch() -> int:
        nonlocal k
        venv.step(acts[k % 64])
        k += 1
        return num_envs

    rate = per_second(batch, seconds)
    venv.close()
    return rate


def report(label: str, runs: list[Run], *, parallel_server: bool, unit: str = "steps/s",
           floor: float | None = None) -> float:
    """Print the best wall rate and the CPU cost per step over all runs (and
    the ratio to ``floor`` when given); returns the best rate."""
    best = max(r.steps / r.wall_s for r in runs)
    steps = sum(r.steps for r in runs)
    client_us = sum(r.client_cpu_s for r in runs) / steps * 1e6
    server_us = sum(r.server_cpu_s for r in runs) / steps * 1e6
    bound = 1e6 / (client_us + (server_us / 2 if parallel_server else server_us))
    print(f"{label:<52} {best:>9,.0f} {unit}  cpu/step client {client_us:6.2f} us "
          f"server {server_us:6.2f} us  bound {bound:>9,.0f} {unit}"
          + (f"  x{best / floor:.2f} of floor" if floor else ""), flush=True)
    return best


def compare(label: str, run: Callable[[str], Run], transports: list[str], repeat: int, *,
            parallel_server: bool, unit: str = "steps/s",
            floors: dict[str, float] | None = None) -> dict[str, float]:
    """Runs ``run(transport)`` ``repeat`` times per transport, interleaved,
    prints one line per transport and the native / grpcio ratio; returns
    the best rate of each transport."""
    runs: dict[str, list[Run]] = {t: [] for t in transports}
    for _ in range(repeat):
        for t in transports:
            runs[t].append(run(t))
    best = {t: report(f"{label} [{t}]", runs[t], parallel_server=parallel_server, unit=unit,
                      floor=floors.get(t) if floors else None)
            for t in transports}
    if "native" in best and "grpcio" in best:
        print(f"{'':<52} native / grpcio: x{best['native'] / best['grpcio']:.2f}", flush=True)
    return best


def main() -> None:
    global SERVER_PID
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is shown")
    ap.add_argument("--scenario", default="paper-4phase")
    ap.add_argument("--envs", default="16,64,256,1024")
    ap.add_argument("--transports", default="native,grpcio",
                    help="comma list of native, grpcio")
    ap.add_argument("--parts", default="1,2",
                    help=f"batch_parts to try from {SPLIT_MIN_ENVS} envs on")
    ap.add_argument("--no-single", action="store_true", help="only the vector figures")
    ap.add_argument("--no-client", action="store_true",
                    help="skip the FarmClient.step lines (single env)")
    a = ap.parse_args()
    transports = [t.strip() for t in a.transports.split(",") if t.strip()]
    load = os.getloadavg()
    with SimServer() as server:
        SERVER_PID = server.pid
        print(f"server: {server.binary} at {server.address}; cores: {os.cpu_count()}; "
              f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        s, r, sc, addr = a.seconds, a.repeat, a.scenario, server.address
        if not a.no_single:
            floors = compare("empty RPC (floor)", lambda t: bench_empty_rpc(addr, s, t),
                             transports, r, parallel_server=False, unit="calls/s")
            if not a.no_client:
                compare(f"Step via FarmClient, unary ({sc})",
                        lambda t: bench_client_step(addr, s, sc, t), transports, r,
                        parallel_server=False, floors=floors)
                compare(f"Step via FarmClient, StepStream ({sc})",
                        lambda t: bench_client_step(addr, s, sc, t, stream=True), transports,
                        r, parallel_server=False, floors=floors)
            compare(f"FarmEnv.step, unary ({sc})",
                    lambda t: bench_single(addr, s, sc, t, stream=False), transports, r,
                    parallel_server=False, floors=floors)
            compare(f"FarmEnv.step, StepStream ({sc})",
                    lambda t: bench_single(addr, s, sc, t), transports, r,
                    parallel_server=False, floors=floors)
        split = [int(p) for p in a.parts.split(",")]
        for n in (int(x) for x in a.envs.split(",")):
            for parts in split if n >= SPLIT_MIN_ENVS else [1]:
                for info in (True, False):
                    compare(f"vector x{n} ({sc}, parts={parts}, step_info={info})",
                            lambda t, n=n, parts=parts, info=info: bench_vector(
                                addr, s, sc, n, info, parts, t),
                            transports, r, parallel_server=True)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
