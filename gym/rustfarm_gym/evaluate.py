"""Evaluate ONNX policies against the built-in baselines in the simulator.

``python -m rustfarm_gym.evaluate --policies models/farm-policy.onnx,hpa,oracle
--scenarios paper-4phase,steady --seeds 10 [--plot out.png]``

Built-in policies and the oracle run through ``farmctl sim compare`` (the
same code and seeds); each ONNX policy runs greedily (argmax of its output)
through FarmControl, one whole run per seed (no step limit, so the run ends
when its work is done, as in ``farmctl sim compare``). Prints the table of
``farmctl sim compare``; ``/bound@qos`` needs the oracle's bound at the
policy's own QoS, which only the CLI computes, so ONNX rows show ``n/a``
there. ``/oracle`` divides by the oracle's lower bound at the target; the
``oracle`` row itself is the oracle's achievable clairvoyant plan, as the CLI
prints it. An ONNX policy run here sees exactly the workload of the CLI's
run with the same seed (``episode_seed``), so its rows are comparable.
The PNG plots mean QoS against mean replica-seconds, one panel per
scenario, one point per policy.

``--check-targets`` then checks every ONNX policy against the targets of
issue 6 (:func:`check_targets`): (a) QoS >= the target at <= 1.2 x the
oracle plan's replica-seconds wherever the oracle plan reaches the target;
(b) better than every baseline (at least its QoS at no more replica-seconds,
better on one of the two); (c) on ``paper-4phase``: QoS above 99.20 % with
fewer than 14.78 mean replicas (the paper's SARSA).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .env import Connection, summary_dict
from .onnx_export import read_metadata
from .server import find_farmctl
from .train import WHOLE_RUN


@dataclass
class Row:
    """One policy on one scenario over seeds (the CLI's row)."""

    scenario: str
    policy: str
    qos: list[float]
    target: float
    p99_s: float
    replica_seconds: float
    ratio_oracle: float
    ratio_at_qos: float | None
    mean_replicas: float
    max_replicas: float
    actions: float
    reversals: float

    def cells(self) -> list[str]:
        """The table cells, formatted as ``farmctl sim compare`` does."""
        q = np.asarray(self.qos)
        sd = float(q.std(ddof=1)) if len(q) > 1 else 0.0
        met = int((q + 1e-12 >= self.target).sum())
        return [
            self.scenario, self.policy, f"{q.mean() * 100:.2f} ± {sd * 100:.2f}",
            f"{met}/{len(q)}", f"{self.p99_s:.2f}", f"{self.replica_seconds:.0f}",
            f"{self.ratio_oracle:.2f}",
            "n/a" if self.ratio_at_qos is None else f"{self.ratio_at_qos:.2f}",
            f"{self.mean_replicas:.2f}", f"{self.max_replicas:.1f}", f"{self.actions:.1f}",
            f"{self.reversals:.1f}",
        ]


HEAD = ["scenario", "policy", "QoS %", "met", "p99 s", "replica-s", "/oracle", "/bound@qos",
        "mean rep", "max rep", "actions", "reversals"]


def table(rows: Sequence[Row], markdown: bool = False) -> str:
    """Render rows like ``farmctl sim compare`` (aligned text or Markdown)."""
    body = [r.cells() for r in rows]
    if markdown:
        lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines) + "\n"
    width = [max(len(c) for c in col) for col in zip(HEAD, *body, strict=False)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if i < 2 else c.rjust(w)
                 for i, (c, w) in enumerate(zip(cells, width, strict=True))]
        return "  ".join(parts).rstrip()

    return "\n".join([line(HEAD), *(line(b) for b in body)]) + "\n"


def compare_cli(scenarios: Sequence[str], policies: Sequence[str], seeds: int,
                seed: int | None, target: float) -> list[dict[str, Any]]:
    """Rows of ``farmctl sim compare --json`` for built-ins and the oracle."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [str(find_farmctl()), "sim", "compare", "--scenarios", ",".join(scenarios),
               "--policies", ",".join(policies), "--seeds", str(seeds), "--target",
               str(target), "--json", str(out)]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"farmctl sim compare failed:\n{done.stderr}")
        return json.loads(out.read_text())


def onnx_policy(path: str) -> tuple[Callable[[np.ndarray], np.ndarray], str, int]:
    """``(obs batch -> outputs, action space, observation layout version)`` of an
    exported policy."""
    import onnxruntime as ort

    meta = read_metadata(path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    meanings = json.loads(meta["action_meanings"])
    return ((lambda obs: sess.run(None, {"obs": obs.astype(np.float32)})[0]), ",".join(meanings),
            int(meta.get("rust_farm.obs_version", "1")))


def run_onnx_rows(path: str, scenario: str, seeds: Sequence[int], bounds: Sequence[float],
                  target: float, address: str | None) -> Row:
    """Whole greedy runs of an ONNX policy on one scenario, in the observation
    layout its metadata names (the reset option ``obs_version`` asks the server
    for layout 2)."""
    fn, space, version = onnx_policy(path)
    conn = Connection("sim", address, None)
    opts = {"action_space": space, **WHOLE_RUN,
            **({} if version == 1 else {"obs_version": str(version)})}
    env_id = f"evaluate-{Path(path).stem}"
    runs = []
    try:
        for seed in seeds:
            r = conn.client.reset(env_id, seed, scenario=scenario, options=opts)
            while True:
                obs = np.asarray(r.observation, dtype=np.float32)
                r = conn.client.step(env_id, int(np.argmax(fn(obs[None, :])[0])))
                if r.terminated or r.truncated:
                    runs.append(summary_dict(r.info.summary))
                    break
    finally:
        conn.close()
    mean = lambda k: float(np.mean([r[k] for r in runs]))  # noqa: E731
    return Row(scenario, Path(path).stem, [r["qos"] for r in runs], target,
               mean("latency_p99_s"), mean("replica_seconds"),
               float(np.mean([r["replica_seconds"] / b for r, b in zip(runs, bounds,
                                                                         strict=True)])),
               None, mean("mean_replicas"), mean("max_replicas"), mean("scaling_actions"),
               mean("reversals"))


def cli_row(r: dict[str, Any], target: float) -> Row:
    """A row of the CLI's JSON."""
    return Row(r["scenario"], r["policy"], [x["metrics"]["qos"] for x in r["runs"]], target,
               r["p99_s"], r["replica_seconds"], r["ratio_to_oracle_bound"],
               r["ratio_to_bound_at_own_qos"], r["mean_replicas"], r["max_replicas"],
               r["scaling_actions"], r["reversals"])


#: Target (a): replica-seconds at most this multiple of the oracle plan's.
ORACLE_FACTOR = 1.2
#: Target (c): the paper's SARSA on ``paper-4phase`` (QoS fraction, mean workers).
PAPER = ("paper-4phase", 0.992, 14.78)


@dataclass
class TargetCheck:
    """The targets of issue 6 for one policy on one scenario.

    ``a`` / ``c`` are ``None`` where the target does not apply (the oracle
    plan misses the QoS target; ``c`` on every scenario but paper-4phase).
    ``not_beaten`` lists the baselines the policy does not beat (b fails
    when it is not empty); ``dominated_by`` the subset that are at least as
    good on both axes (a Pareto failure, the stronger one).
    """

    scenario: str
    policy: str
    qos: float
    replica_seconds: float
    a: bool | None
    a_limit: float | None
    not_beaten: list[str]
    dominated_by: list[str]
    c: bool | None

    @property
    def b(self) -> bool:
        """Target (b): every baseline beaten."""
        return not self.not_beaten

    def line(self) -> str:
        """One human-readable line."""
        def yn(v: bool | None) -> str:
            return "n/a" if v is None else ("yes" if v else "NO")
        a = yn(self.a) + ("" if self.a_limit is None else
                          f" (limit {self.a_limit:.0f} replica-s)")
        b = "yes" if self.b else "NO, not beaten: " + ", ".join(self.not_beaten)
        dom = ", ".join(self.dominated_by) if self.dominated_by else "none"
        out = (f"{self.scenario:13s} {self.policy}: QoS {self.qos * 100:.2f} % at "
               f"{self.replica_seconds:.0f} replica-s | (a) {a} | (b) {b} | "
               f"dominated by: {dom}")
        if self.c is not None:
            out += f" | (c) {yn(self.c)}"
        return out


def _beats(q: float, r: float, qb: float, rb: float, eps: float) -> bool:
    """At least the baseline's QoS at no more replica-seconds, better on one."""
    no_worse = q >= qb - eps and r <= rb * (1 + eps)
    better = q > qb + eps or r < rb * (1 - eps)
    return no_worse and better


def check_targets(rows: Sequence[Row], policy: str, baselines: Sequence[str],
                  target: float = 0.99, eps: float = 1e-9) -> list[TargetCheck]:
    """Check ``policy``'s rows against the targets of issue 6, per scenario.

    ``rows`` must hold the policy's row, the ``oracle`` row and the rows of
    ``baselines`` for each scenario to check (scenarios without the policy
    or the oracle are skipped). Means over seeds are compared; ``eps`` is
    the tolerance of "equal" (QoS fraction, relative replica-seconds).
    """
    out = []
    for sc in dict.fromkeys(r.scenario for r in rows):
        mine = [r for r in rows if r.scenario == sc and r.policy == policy]
        orac = [r for r in rows if r.scenario == sc and r.policy == "oracle"]
        if not mine or not orac:
            continue
        p, o = mine[0], orac[0]
        q, rs = float(np.mean(p.qos)), p.replica_seconds
        a_ok: bool | None = None
        limit = None
        if float(np.mean(o.qos)) + 1e-12 >= target:
            limit = ORACLE_FACTOR * o.replica_seconds
            a_ok = q + 1e-12 >= target and rs <= limit
        not_beaten, dominated = [], []
        for b in (r for r in rows if r.scenario == sc and r.policy in baselines
                  and r.policy != policy):
            qb, rb = float(np.mean(b.qos)), b.replica_seconds
            if not _beats(q, rs, qb, rb, eps):
                not_beaten.append(b.policy)
                if qb >= q - eps and rb <= rs * (1 + eps):
                    dominated.append(b.policy)
        c_ok = None
        if sc == PAPER[0]:
            c_ok = q > PAPER[1] and p.mean_replicas < PAPER[2]
        out.append(TargetCheck(sc, policy, q, rs, a_ok, limit, not_beaten, dominated, c_ok))
    return out


def targets_report(checks: Sequence[TargetCheck]) -> str:
    """The per-scenario lines and a summary count."""
    lines = [c.line() for c in checks]
    a = [c.a for c in checks if c.a is not None]
    c = [c.c for c in checks if c.c is not None]
    lines.append(
        f"summary {checks[0].policy if checks else ''}: (a) {sum(a)}/{len(a)}, "
        f"(b) {sum(x.b for x in checks)}/{len(checks)}, "
        f"undominated {sum(not x.dominated_by for x in checks)}/{len(checks)}, "
        f"(c) {sum(c)}/{len(c)}")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], path: str) -> None:
    """QoS against replica-seconds, one panel per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    cols = min(3, len(scenarios))
    nrows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 4 * nrows), squeeze=False)
    for ax, sc in zip(axes.flat, scenarios, strict=False):
        for r in (r for r in rows if r.scenario == sc):
            q = 100 * float(np.mean(r.qos))
            ax.scatter(r.replica_seconds, q, label=r.policy,
                       marker="*" if r.ratio_at_qos is None else "o", s=90)
            ax.annotate(r.policy, (r.replica_seconds, q), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_title(sc)
        ax.set_xlabel("replica-seconds (mean over seeds)")
        ax.set_ylabel("QoS %")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(scenarios):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m rustfarm_gym.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", required=True,
                    help="comma list of .onnx files and built-in policy names (and 'oracle')")
    ap.add_argument("--scenarios", default="paper-4phase")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: scenario's)")
    ap.add_argument("--target", type=float, default=0.99, help="QoS target (fraction)")
    ap.add_argument("--plot", default=None, help="write the QoS / replica-seconds PNG here")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--address", default=None, help="FarmControl server (default: start one)")
    ap.add_argument("--cli-json", default=None,
                    help="reuse the output of `farmctl sim compare --json` (same scenarios, "
                         "seeds and target, with the oracle) instead of running it again; "
                         "files of several runs may be given as a comma list")
    ap.add_argument("--check-targets", action="store_true",
                    help="after the table, check every ONNX policy against issue 6's targets "
                         "(the built-in policies given are the baselines)")
    a = ap.parse_args(argv)
    policies = [p for p in a.policies.split(",") if p]
    scenarios = [s for s in a.scenarios.split(",") if s]
    # `onnx:PATH` runs in the CLI (farmctl's own ONNX policy); a bare PATH here.
    onnx_files = [p for p in policies if p.endswith(".onnx") and not p.startswith("onnx:")]
    builtins = [p for p in policies if p not in onnx_files]
    # The oracle always runs: its bound normalises every row.
    if a.cli_json:
        cli = [r for f in a.cli_json.split(",") if f for r in json.loads(Path(f).read_text())
               if r["scenario"] in scenarios]
    else:
        cli = compare_cli(scenarios,
                          [*builtins, *(["oracle"] if "oracle" not in builtins else [])],
                          a.seeds, a.seed, a.target)
    rows: list[Row] = []
    oracle_rows = sorted((r for r in cli if r["policy"] == "oracle"),
                         key=lambda r: (scenarios.index(r["scenario"])
                                        if r["scenario"] in scenarios else len(scenarios)))
    for sc_row in oracle_rows:
        sc = sc_row["scenario"]
        seeds = [x["seed"] for x in sc_row["runs"]]
        bounds = [x["bound_target"] for x in sc_row["runs"]]
        for p in policies:
            if p in onnx_files:
                rows.append(run_onnx_rows(p, sc, seeds, bounds, a.target, a.address))
            else:
                rows += [cli_row(r, a.target) for r in cli
                         if r["scenario"] == sc and r["policy"] == p]
    print(table(rows, a.markdown), end="")
    if a.plot:
        plot(rows, a.plot)
        print(f"plot: {a.plot}")
    if a.check_targets:
        base = [p for p in builtins if p != "oracle"]
        for f in onnx_files:
            print()
            print(targets_report(check_targets(rows, Path(f).stem, base, a.target)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
