"""Judge candidate policies on a scenario set at both cadences, as the model card does.

``python -m rustfarm_gym.devset --candidates onnx:runs/a/policy.onnx,onnx:models/farm-policy.onnx``
(from the repository root with ``FARMCTL`` set, or from gym/)

Runs ``farmctl sim compare`` on every scenario of the set, once at each
cadence of ``--cadences`` (``8`` = the scenario's own interval over tumbling
windows; ``2/8`` = a decision every 2 s over an 8 s sliding window), with the
candidates, the baselines and the oracle, and prints per policy:

- mean QoS over the scenario-cadence pairs, in points;
- total replica-seconds over the pairs divided by the reference's (``mpc``);
- on how many pairs no baseline dominates it (dominates = QoS higher by more
  than 0.2 points at no more replica-seconds, or replica-seconds lower by
  more than 1 % at no less QoS; the held-out ship rule's definition).

The sets: ``dev`` (default) is the choosing set of the model card, the
farms ``scenegen.generate(seed)`` for seeds 1,000,000 + 0 .. ``--farms`` - 1
(training draws random 62-bit seeds, so it never sees them); ``public`` the
built-in suite; anything else a comma list of scenario names or YAML files
(``scenarios/held-out/*.yaml`` for the held-out set: look at it only as its
README says). Extra arguments after ``--`` go to every ``farmctl sim
compare`` call (e.g. ``-- --events on``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .scenegen import generate
from .server import find_farmctl

#: First generator seed of the dev set.
DEV_SEED = 1_000_000
BASELINES = "mpc,queueing,kpa"


def scenario_files(which: str, farms: int, tmp: Path) -> list[str]:
    """The scenario arguments of the set ``which`` (see the module docs)."""
    if which == "dev":
        out = []
        for i in range(farms):
            path = tmp / f"dev-{i:03d}.yaml"
            path.write_text(generate(DEV_SEED + i))
            out.append(str(path))
        return out
    if which == "public":
        done = subprocess.run([str(find_farmctl()), "sim", "scenarios"], capture_output=True,
                              text=True, check=True)
        return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return [s for s in which.split(",") if s]


def cadence_args(cadence: str) -> list[str]:
    """``farmctl sim compare`` flags of one cadence (``8`` or ``2/8``)."""
    interval, _, window = cadence.partition("/")
    if not window:
        return [] if interval == "8" else ["--interval", interval]
    return ["--interval", interval, "--window", window]


def compare(scenarios: Sequence[str], policies: Sequence[str], seeds: int,
            extra: Sequence[str], tmp: Path) -> list[dict[str, Any]]:
    """Rows of one ``farmctl sim compare --json`` call."""
    out = tmp / "rows.json"
    cmd = [str(find_farmctl()), "sim", "compare", "--scenarios", ",".join(scenarios),
           "--policies", ",".join(policies), "--seeds", str(seeds), "--seed", "0",
           "--json", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"farmctl sim compare failed ({' '.join(cmd)}):\n{done.stderr}")
    return json.loads(out.read_text())


def dominates(q: float, r: float, qo: float, ro: float) -> bool:
    """Whether (QoS ``qo``, replica-s ``ro``) dominates (``q``, ``r``); QoS in points."""
    return (qo > q + 0.2 and ro <= r) or (ro < r * 0.99 and qo >= q)


def summary(pairs: dict[tuple[str, str], dict[str, tuple[float, float]]],
            policies: Sequence[str], baselines: Sequence[str],
            reference: str) -> list[tuple[str, float, float, int]]:
    """Per policy: mean QoS, replica-s over the reference's, undominated pairs."""
    out = []
    ref_rs = sum(p[reference][1] for p in pairs.values())
    for pol in policies:
        qos = [p[pol][0] for p in pairs.values()]
        rs = sum(p[pol][1] for p in pairs.values())
        undominated = sum(
            not any(dominates(*p[pol], *p[b]) for b in baselines if b != pol)
            for p in pairs.values())
        out.append((pol, sum(qos) / len(qos), rs / ref_rs, undominated))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="python -m rustfarm_gym.devset", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", required=True,
                    help="comma list of policies to judge (e.g. onnx:PATH)")
    ap.add_argument("--baselines", default=BASELINES, help="comma list; the first is the "
                    "replica-seconds reference")
    ap.add_argument("--set", default="dev", help="dev, public, or a comma list of scenarios")
    ap.add_argument("--farms", type=int, default=60, help="size of the dev set")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per pair (0 .. N-1)")
    ap.add_argument("--cadences", default="8,2/8", help="comma list of INTERVAL[/WINDOW]")
    ap.add_argument("--oracle", action="store_true", help="also run the clairvoyant oracle")
    ap.add_argument("--json", default=None, help="write every pair's figures here")
    a = ap.parse_args(argv)
    candidates = [c for c in a.candidates.split(",") if c]
    baselines = [b for b in a.baselines.split(",") if b]
    policies = candidates + [b for b in baselines if b not in candidates]
    runs = policies + (["oracle"] if a.oracle else [])
    pairs: dict[tuple[str, str], dict[str, tuple[float, float]]] = defaultdict(dict)
    with tempfile.TemporaryDirectory() as tmp:
        scenarios = scenario_files(a.set, a.farms, Path(tmp))
        for cadence in a.cadences.split(","):
            for r in compare(scenarios, runs, a.seeds, cadence_args(cadence) + extra, Path(tmp)):
                name = Path(r["scenario"]).stem
                pairs[(name, cadence)][r["policy"]] = (
                    100.0 * sum(x["metrics"]["qos"] for x in r["runs"]) / len(r["runs"]),
                    float(r["replica_seconds"]))
    print(f"{len(pairs)} pairs ({a.set}, cadences {a.cadences}, {a.seeds} seeds)")
    print(f"{'policy':40s} {'mean QoS':>9s} {'rs/' + baselines[0]:>9s} {'undominated':>12s}")
    for pol, q, rs, und in summary(pairs, policies, baselines, baselines[0]):
        print(f"{pol:40s} {q:9.2f} {rs:9.3f} {und:>6d} / {len(pairs)}")
    if a.oracle:
        for cadence in a.cadences.split(","):
            q = [p["oracle"][0] for (_, c), p in pairs.items() if c == cadence]
            print(f"oracle @ {cadence}: mean QoS {sum(q) / len(q):.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(
            [{"scenario": s, "cadence": c, "policies": {p: list(v) for p, v in d.items()}}
             for (s, c), d in sorted(pairs.items())], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
