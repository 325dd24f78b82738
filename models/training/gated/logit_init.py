"""Supervised warm start for the gate: logistic regression on observations of the
shipped policy's runs (training scenarios, seeds 500-504), label 1 (expert G) on
steady / ramp / diurnal, 0 (shipped expert) on bursty, heavy-tail and the
training-only shapes (a class-balanced, L2-regularised fit on standardised
features, mapped back to raw features). Writes the gate (23 weights + bias,
0 for the features not given) and the two experts (the shipped
models/training/policy.npz and round 3's G, models/training/drain-actions/policy.npz)
into a gated policy.npz, the warm start of stage 1.

Run from gym/: ``../.venv/bin/python ../models/training/gated/logit_init.py FEATS.npz
FEATURE,FEATURE,... OUT.npz``
"""
import sys
import numpy as np
from rustfarm_gym import cem
z = np.load(sys.argv[1])
feats = sys.argv[2].split(",")
names = ("backlog_log in_flight_frac arrival_rate_log completion_rate_log service_mean_log service_p95_log latency_p95_log window_qos window_empty desired_frac ready_frac starting_frac busy_frac since_scale_log offered_load_frac queueing_floor_frac redeliveries_log prev_arrival_rate_log arrival_trend_log arrival_ewma_log floor_ewma_frac floor_peak_frac desired_change_frac").split()
idx = [names.index(f) for f in feats]
X, y, w = [], [], []
for k in z.files:
    pos = k in ("steady", "ramp", "diurnal")
    X.append(z[k][:, idx]); y.append(np.full(len(z[k]), 1.0 if pos else 0.0))
X = np.concatenate(X); y = np.concatenate(y)
# balance the classes
wts = np.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
mu, sd = X.mean(0), X.std(0) + 1e-6
Xs = (X - mu) / sd
beta = np.zeros(len(idx)); b0 = 0.0
for _ in range(3000):
    p = 1 / (1 + np.exp(-(Xs @ beta + b0)))
    g = wts * (p - y)
    beta -= 0.5 * (Xs.T @ g / len(y) + 1e-3 * beta); b0 -= 0.5 * g.mean()
p = 1 / (1 + np.exp(-(Xs @ beta + b0)))
acc = ((p > 0.5) == (y > 0)).mean()
for k in z.files:
    xs = (z[k][:, idx] - mu) / sd
    print(f"{k:24s} open {((xs @ beta + b0) > 0).mean():.2f}")
print("accuracy", acc)
# back to raw features
g = np.zeros(23); g[idx] = beta / sd; g0 = b0 - (beta * mu / sd).sum()
G = "hold,delta:-1,delta:+1,delta:+4,estimate:x0.9,estimate:x1,estimate:x1.1,estimate:x1.2,estimate:x1.35,estimate:x1.6,estimate:x2,smoothed:x0.9,smoothed:x0.95,smoothed:x1,drain:x0.95,drain:x1".split(",")
sh = cem.GatedShape(23, 16, 17, tuple(range(11)))
theta = sh.compose(np.load("../models/training/policy.npz")["theta"], np.load("../models/training/drain-actions/policy.npz")["theta"])
theta[:23] = g; theta[23] = g0
for f, v in zip(feats, g[idx]): print(f"{f:22s} {v:+.3f}")
print("bias", g0)
np.savez(sys.argv[3], theta=theta, final_mean=theta, hidden=0, residual=False, a_dim=17, gate_a_actions=cem.DEFAULT_ACTIONS)
