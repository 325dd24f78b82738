//! Knative Pod Autoscaler (KPA) in concurrency mode.
//!
//! Metric: observed concurrency, the requests in the system
//! (`backlog + in_flight`), as queue-proxies and the activator would count
//! requests waiting for and inside a pod of container concurrency 1. Target
//! per pod: `container concurrency (1) x target utilisation (0.7) = 0.7`.
//!
//! Each decision (autoscaler.go):
//! - `stable = avg concurrency over 60 s`, `panic = avg over 6 s`;
//!   `want_stable = ceil(stable / 0.7)`, `want_panic = ceil(panic / 0.7)`,
//!   both clamped to `[floor(ready / 2), ceil(1000 * ready)]` (max
//!   scale-down rate 2, max scale-up rate 1000);
//! - over the panic threshold when `panic / 0.7 / ready >= 2` (200 %);
//!   panic starts then and is extended every tick it is still over; it ends
//!   once 60 s (the stable window) have passed since;
//! - panicking: `desired = max(want_panic, highest desired during this
//!   panic)` (never scales down); otherwise `desired = want_stable`.
//!
//! Windows from one sample per control interval: Knative samples every
//! second and ticks every 2 s; here the host gives the concurrency at the end
//! of each interval. The policy keeps those samples, joins them linearly, and
//! averages that curve over the last 60 s and 6 s. So the 6 s panic window
//! against an 8 s interval is the last three quarters of the line from the
//! previous sample to the latest one, weighted towards the latest; the
//! decision still happens once per interval instead of every 2 s.

use std::collections::VecDeque;

use super::{Decision, Policy, bounds};
use farm_model::scenario::Platform;
use farm_model::signals::Signals;

/// Knobs of the KPA baseline (Knative defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct KpaConfig {
    /// Container concurrency target per pod (1: a worker runs one task).
    pub target_concurrency: f64,
    /// `container-concurrency-target-percentage` (0.7).
    pub target_utilisation: f64,
    /// `stable-window`, seconds (60).
    pub stable_window_s: f64,
    /// `panic-window-percentage` of the stable window (10 % -> 6 s).
    pub panic_window_s: f64,
    /// `panic-threshold-percentage` as a ratio (2.0).
    pub panic_threshold: f64,
    /// `max-scale-down-rate` (2.0).
    pub max_scale_down_rate: f64,
    /// `max-scale-up-rate` (1000).
    pub max_scale_up_rate: f64,
}

impl Default for KpaConfig {
    fn default() -> Self {
        KpaConfig {
            target_concurrency: 1.0,
            target_utilisation: 0.7,
            stable_window_s: 60.0,
            panic_window_s: 6.0,
            panic_threshold: 2.0,
            max_scale_down_rate: 2.0,
            max_scale_up_rate: 1000.0,
        }
    }
}

/// Knative KPA.
#[derive(Debug, Clone)]
pub struct Kpa {
    config: KpaConfig,
    platform: Platform,
    /// (time, concurrency) samples, oldest first.
    samples: VecDeque<(f64, f64)>,
    panic_since: Option<f64>,
    max_panic_pods: u32,
}

impl Kpa {
    /// KPA with explicit knobs.
    pub fn new(config: KpaConfig, platform: &Platform) -> Self {
        Kpa {
            config,
            platform: platform.clone(),
            samples: VecDeque::new(),
            panic_since: None,
            max_panic_pods: 0,
        }
    }

    /// Average of the piecewise-linear concurrency curve over
    /// `[now - window, now]`; before the first sample the curve is flat at
    /// the first value.
    pub fn window_average(&self, now: f64, window: f64) -> f64 {
        let Some(&(t_first, v_first)) = self.samples.front() else {
            return 0.0;
        };
        let start = now - window;
        if window <= 0.0 {
            return self.samples.back().map_or(0.0, |s| s.1);
        }
        let mut area = 0.0;
        // Flat part before the first sample.
        if start < t_first {
            area += v_first * (t_first.min(now) - start);
        }
        for pair in self.samples.iter().zip(self.samples.iter().skip(1)) {
            let (&(t0, v0), &(t1, v1)) = pair;
            let (a, b) = (t0.max(start), t1.min(now));
            if b <= a || t1 <= t0 {
                continue;
            }
            let at = |t: f64| v0 + (v1 - v0) * (t - t0) / (t1 - t0);
            area += (at(a) + at(b)) / 2.0 * (b - a);
        }
        area / window
    }
}

impl Policy for Kpa {
    fn name(&self) -> &str {
        "kpa"
    }

    fn reset(&mut self) {
        self.samples.clear();
        self.panic_since = None;
        self.max_panic_pods = 0;
    }

    fn decide(&mut self, now_s: f64, s: &Signals) -> Decision {
        let c = &self.config;
        let (lo, hi) = bounds(s, &self.platform);
        self.samples
            .push_back((now_s, s.backlog.max(0.0) + s.in_flight.max(0.0)));
        // Keep one sample older than the stable window for interpolation.
        while self.samples.len() > 2 && self.samples[1].0 <= now_s - c.stable_window_s {
            self.samples.pop_front();
        }
        let stable = self.window_average(now_s, c.stable_window_s);
        let panic = self.window_average(now_s, c.panic_window_s);
        let target = (c.target_concurrency * c.target_utilisation).max(1e-9);
        let ready = s.replicas_ready.max(1.0);
        let max_up = (c.max_scale_up_rate * ready).ceil();
        let max_down = (ready / c.max_scale_down_rate).floor();
        let clampf = |x: f64| x.ceil().clamp(max_down, max_up);
        let want_stable = clampf(stable / target) as u32;
        let want_panic = clampf(panic / target) as u32;
        let over = panic / target / ready >= c.panic_threshold;
        if over {
            self.panic_since = Some(now_s);
        } else if let Some(t) = self.panic_since
            && now_s >= t + c.stable_window_s
        {
            self.panic_since = None;
            self.max_panic_pods = 0;
        }
        let desired = if self.panic_since.is_some() {
            self.max_panic_pods = self.max_panic_pods.max(want_panic);
            self.max_panic_pods
        } else {
            want_stable
        };
        Decision::to(desired.clamp(lo, hi))
    }
}
