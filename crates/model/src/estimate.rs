//! Smoothed measurements and the scale-down hold that the queueing-model
//! policies share (`queueing`, `mpc` and the planner behind it).

use std::collections::VecDeque;

use crate::queueing::cs2_from_p95;
use crate::signals::Signals;

/// EWMA with weight `w` on the new sample, keeping the last known value
/// through windows without one.
pub fn ewma(old: Option<f64>, new: Option<f64>, w: f64) -> Option<f64> {
    match (old, new) {
        (Some(o), Some(n)) => Some(w * n + (1.0 - w) * o),
        (None, n) => n,
        (o, None) => o,
    }
}

/// Smoothed service mean, `Cs^2` (from the service p95) and mean waiting
/// budget (deadline - service).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceEstimate {
    pub mean: Option<f64>,
    pub cs2: Option<f64>,
    pub slack: Option<f64>,
}

impl ServiceEstimate {
    /// Fold in one window's measurements with weight `w`.
    pub fn update(&mut self, s: &Signals, w: f64) {
        let mean_now = s.service_mean_s.filter(|v| *v > 0.0);
        self.mean = ewma(self.mean, mean_now, w);
        let cs2_now = match (mean_now, s.service_p95_s) {
            (Some(m), Some(p)) => Some(cs2_from_p95(m, p)),
            _ => None,
        };
        self.cs2 = ewma(self.cs2, cs2_now, w);
        self.slack = ewma(self.slack, s.slack_mean_s(), w);
    }
}

/// Scale-down stabilisation: the largest target of the last few seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentMax {
    history: VecDeque<(f64, u32)>,
}

impl RecentMax {
    /// Record `raw` at `now_s`; the largest target within `window_s`.
    pub fn push(&mut self, now_s: f64, raw: u32, window_s: f64) -> u32 {
        self.history.push_back((now_s, raw));
        while let Some(&(t, _)) = self.history.front() {
            if t < now_s - window_s - 1e-9 {
                self.history.pop_front();
            } else {
                break;
            }
        }
        self.history.iter().map(|&(_, r)| r).max().unwrap_or(raw)
    }

    /// Forget every target.
    pub fn clear(&mut self) {
        self.history.clear();
    }
}
