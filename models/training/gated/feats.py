"""Observations (layout v2) of the shipped policy's whole runs on the training
scenarios (the five built-ins and cem.training_scenarios(), not randomised),
seeds 500-504; prints each feature's mean per scenario and saves the
observations for logit_init.py.

Run from gym/: ``FARMCTL=../target/release/farmctl ../.venv/bin/python
../models/training/gated/feats.py OUT.npz``
"""
import sys

import numpy as np
from rustfarm_gym import cem
from rustfarm_gym.env import Connection
from rustfarm_gym.train import WHOLE_RUN
ta = np.load("../models/training/policy.npz")["theta"]
A = cem.DEFAULT_ACTIONS
conn = Connection("sim", None, None)
names = conn.client.get_spec(action_space=A, obs_version=2).observation_names
pool = {"steady": "steady", "ramp": "ramp", "diurnal": "diurnal", "bursty": "bursty", "heavy-tail": "heavy-tail", **cem.training_scenarios()}
res = {}
for k, sc in pool.items():
    X = []
    for s in range(500, 505):
        yaml = sc if "\n" in sc else ""
        r = conn.client.reset("f", s, scenario="" if yaml else sc, scenario_yaml=yaml, options={"action_space": A, **WHOLE_RUN, "obs_version": "2"})
        while True:
            o = np.asarray(r.observation); X.append(o)
            r = conn.client.step("f", int(cem.PolicyShape(17, 11).logits(ta, o[None, :17]).argmax(1)[0]))
            if r.terminated or r.truncated: break
    res[k] = np.array(X)
np.savez(sys.argv[1], **{k.replace("-", "_"): v for k, v in res.items()})
keys = list(res)
print(f"{'feature':22s}" + "".join(f"{k[:9]:>10s}" for k in keys))
for i, n in enumerate(names):
    print(f"{n:22s}" + "".join(f"{res[k][:, i].mean():10.3f}" for k in keys))
conn.close()
