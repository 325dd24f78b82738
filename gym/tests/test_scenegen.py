"""The procedural training scenarios: valid, seeded, and as broad as documented."""

from __future__ import annotations

import re

import numpy as np

from rustfarm_gym import cem
from rustfarm_gym.scenegen import generate


def test_the_same_seed_gives_the_same_scenario() -> None:
    assert generate(3) == generate(3)
    assert generate(3) != generate(4)


def test_every_generated_scenario_is_accepted_and_runs(address: str) -> None:
    batch = cem.RunBatch("hold,estimate:x1", address)
    try:
        shape = cem.PolicyShape(len(batch.spec.observation_names), 2)
        theta = np.zeros(shape.size)
        theta[shape.bias_offset + 1] = 1.0  # always follow the estimate
        eps = [(generate(s), s, {"randomize": "true"}) for s in range(300)]
        runs = batch.run(shape, [theta], eps)[0]
    finally:
        batch.close()
    assert len(runs) == 300
    for r in runs:
        assert r["tasks"] > 0
        assert 0.0 <= r["qos"] <= 1.0
    # A typical generated farm is served by following the queueing estimate.
    assert np.median([r["qos"] for r in runs]) > 0.7


def test_the_distribution_covers_what_the_docs_promise() -> None:
    texts = [generate(s) for s in range(400)]
    share = lambda key: sum(key in t for t in texts) / len(texts)  # noqa: E731
    assert 0.15 < share("kind: mmpp") < 0.35
    assert 0.2 < share("kind: fixed") < 0.4
    assert 0.1 < share("per_function_cap: 5") < 0.3
    assert share("kind: lognormal") > 0.2
    for shape in ("constant", "ramp", "sine", "square", "spike"):
        assert share(f"shape: {shape}") > 0.1
    # Service means log-uniform in 0.1-6 s (56 % sub-second), peak loads
    # 25-85 % of the farm's maximum.
    desc = [re.search(r"service mean ([0-9.]+) s,\s+peak load ([0-9.]+) of ([0-9]+)", t)
            for t in texts]
    mean = np.array([float(m[1]) for m in desc])
    load = np.array([float(m[2]) / float(m[3]) for m in desc])
    assert mean.min() >= 0.1 and mean.max() <= 6.0
    assert 0.45 < (mean < 1.0).mean() < 0.68
    assert load.min() >= 0.25 and load.max() <= 0.85
