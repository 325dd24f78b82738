"""Build the two warm-start files of the end-drain runs (from gym/):

    ../.venv/bin/python ../models/training/end-drain/make_init.py ../runs/end-drain

drop-expert.npz: expert B, a linear policy over observation v1 (17 features)
and the 12 actions (the shipped 11 + drain:x0.05) that always picks
drain:x0.05 (zero weights, bias 1 on that action).
gate-init.npz: the gated policy A = shipped (training/policy.npz), B = the
drop expert, gate = -1.0 * arrival_rate_log + 0.05 (open only when an 8 s
window had (almost) no arrivals): the start of run a5.
"""
import sys
from pathlib import Path

import numpy as np
from rustfarm_gym.cem import DEFAULT_ACTIONS, GatedShape, PolicyShape

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
root = Path(__file__).resolve().parents[1]
acts = DEFAULT_ACTIONS.split(",") + ["drain:x0.05"]
drop = PolicyShape(17, len(acts))
tb = np.zeros(drop.size)
drop.unpack(tb)[1][acts.index("drain:x0.05")] = 1.0
np.savez(out / "drop-expert.npz", theta=tb, hidden=0, residual=False)
shape = GatedShape(17, len(acts), 17, tuple(range(11)))
ta = np.load(root / "policy.npz")["theta"]
th = shape.compose(ta, tb, 0.05)
th[2] = -1.0  # gate weight of arrival_rate_log (feature 2)
np.savez(out / "gate-init.npz", theta=th, final_mean=th, hidden=0, residual=False, a_dim=17,
         gate_a_actions=DEFAULT_ACTIONS)
print(f"wrote {out / 'drop-expert.npz'} and {out / 'gate-init.npz'}")
