"""The hand-built warm start of the drain-actions run (``init-theta.npz``).

Run from ``gym/`` with the venv: ``python ../models/training/drain-actions/make_init.py OUT.npz``.

Starts from the shipped policy (``models/training/policy.npz``, 17 v1
features x 11 actions) and builds a linear policy over 23 v2 features x 16
actions in which ``smoothed:x0.95`` takes the place of ``hold`` and
``drain:x1`` the place of ``estimate:x1`` (same column, bias +K*thr), gated
off when the service time is heavy-tailed (``service_p95_log -
service_mean_log`` >= 0.14; 0.10 on steady/ramp/diurnal/bursty, 0.23 on
heavy-tail, per-window medians under the shipped policy) and, for
``smoothed:x0.95``, when the staffing estimate's recent peak is well above
its EWMA (``floor_peak_frac - floor_ewma_frac`` >= 0.1: bursts). The other
new actions copy the nearest ``estimate:xM`` column 0.2 lower (never chosen
at first).
"""

import sys

import numpy as np

from rustfarm_gym.cem import PolicyShape

OLD = ["hold", "delta:-1", "delta:+1", "delta:+4", "estimate:x0.9", "estimate:x1",
       "estimate:x1.1", "estimate:x1.2", "estimate:x1.35", "estimate:x1.6", "estimate:x2"]
NEW = [*OLD, "smoothed:x0.9", "smoothed:x0.95", "smoothed:x1", "drain:x0.95", "drain:x1"]
K, THR = 30.0, 0.14  # heavy-tail gate on service_p95_log (5) - service_mean_log (4)
K3, THR3 = 30.0, 0.1  # burst gate on floor_peak_frac (21) - floor_ewma_frac (20)
SWAPS = {"smoothed:x0.95": "hold", "drain:x1": "estimate:x1"}


def main(out: str) -> None:
    w_old, b_old = PolicyShape(17, len(OLD)).unpack(
        np.load("../models/training/policy.npz")["theta"])
    cols, bias = [], []
    for m in NEW:
        if m in OLD:
            j = OLD.index(m)
            cols.append(w_old[:, j].copy())
            bias.append(b_old[j])
        elif m in SWAPS:
            w = w_old[:, OLD.index(SWAPS[m])].copy()
            w[5] -= K
            w[4] += K
            cols.append(w)
            bias.append(b_old[OLD.index(SWAPS[m])] + K * THR)
        else:
            mult = float(m.partition(":x")[2])
            est = [o for o in OLD if o.startswith("estimate:x")]
            j = OLD.index(min(est, key=lambda o: abs(float(o[len("estimate:x"):]) - mult)))
            cols.append(w_old[:, j].copy())
            bias.append(b_old[j] - 0.2)
    w_new = np.vstack([np.stack(cols, 1), np.zeros((6, len(NEW)))])
    b_new = np.asarray(bias)
    j = NEW.index("smoothed:x0.95")
    w_new[17 + 4, j] -= K3
    w_new[17 + 3, j] += K3
    b_new[j] += K3 * THR3
    theta = np.concatenate([w_new.ravel(), b_new])
    np.savez(out, theta=theta, final_mean=theta, hidden=0, residual=False)


if __name__ == "__main__":
    main(sys.argv[1])
