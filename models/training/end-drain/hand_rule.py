"""Hand rules over existing actions on whole runs (run from gym/, FARMCTL set):
a replica level during arrivals, and a drop (`drain:xM`) whenever the last
8 s window had no arrivals (observation feature 2, arrival_rate_log == 0).

usage: hand_rule.py SCENARIOS FIRST_SEED NSEEDS RULE[,RULE...]
RULE: fixed:L | fixed:L+drop:M | shipped | shipped+drop:M (shipped = training/policy.npz)."""
import sys

import numpy as np
from rustfarm_gym.cem import DEFAULT_ACTIONS, PolicyShape
from rustfarm_gym.env import Connection, summary_dict

SHIP = DEFAULT_ACTIONS.split(",")
DELTAS = [f"delta:{d:+d}" for d in range(-31, 32) if d not in (-1, 1, 4, 0)]
def space(drops):
    return SHIP + DELTAS + [f"drain:x{m}" for m in drops]

def main():
    scen, seed0, n, rules = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
    drops = sorted({r.split("drop:")[1] for r in rules if "drop:" in r})
    meanings = space(drops)
    idx = {m: i for i, m in enumerate(meanings)}
    theta = np.load(sys.argv[5] if len(sys.argv) > 5 else "../models/training/policy.npz")["theta"]
    shp = PolicyShape(17, 11)
    conn = Connection("sim", None, None)
    c = conn.client
    c.get_spec(action_space=",".join(meanings))
    for sc in scen:
        for rule in rules:
            base, _, drop = rule.partition("+drop:")
            rows = []
            for s in range(seed0, seed0 + n):
                eid = f"h-{sc}-{rule}-{s}"
                r = c.reset(eid, s, scenario=sc, options={"action_space": ",".join(meanings), "episode_steps": "100000"})
                while True:
                    o = np.asarray(r.observation)
                    desired = round(o[9] * 32)
                    if drop and o[2] == 0.0:
                        a = idx[f"drain:x{drop}"]
                    elif base.startswith("fixed:"):
                        d = int(base[6:]) - desired
                        a = idx["hold"] if d == 0 else idx[{1: "delta:+1", -1: "delta:-1", 4: "delta:+4"}.get(d, f"delta:{d:+d}")]
                    else:
                        a = int(shp.logits(theta, o[None, :])[0].argmax())
                    r = c.step_batch([eid], [a], auto_reset=False)[0]
                    if r.terminated or r.truncated:
                        rows.append(summary_dict(r.info.summary)); break
            q = np.mean([x["qos"] for x in rows]) * 100
            rs = np.mean([x["replica_seconds"] for x in rows])
            mr = np.mean([x["mean_replicas"] for x in rows])
            dr = np.mean([x["drain_s"] for x in rows])
            print(f"{sc:12s} {rule:22s} QoS {q:6.2f}  replica-s {rs:7.1f}  mean rep {mr:5.2f}  "
                  f"drain_s {dr:5.1f}  met {sum(x['qos'] >= 0.99 for x in rows)}/{len(rows)}  "
                  f"per-seed rs {[round(x['replica_seconds']) for x in rows]} drain {[round(x['drain_s'], 1) for x in rows]}", flush=True)
    conn.close()

main()
