//! The reference paper's reactive baselines (ReactiveAverage and
//! ReactiveMaximum), as in its public implementation:
//!
//! ```text
//! S        = max(mean end-to-end time, 0.1)              (Average)
//!          = max(max end-to-end time, mean, 0.1)          (Maximum)
//! H        = max(horizon 8 s, S, 1)
//! target   = lambda * S + (q / H) * S                     (safety factor 1)
//! busy     = min(workers, in_flight) / H * S * 0.5        (adjustment factor 0.5)
//! delta    = target - (workers - busy)
//! action   = +1 if delta >= 0.5, -1 if delta <= -0.5, else 0
//! ```
//!
//! `workers` is the desired replica count the policy last set (the
//! reference's own worker counter), `q` the queued tasks (backlog), `lambda`
//! the arrival rate of the interval. The reference measures S as end-to-end
//! time, not service time; that mistake is kept on purpose, since these
//! baselines reproduce the published behaviour. An empty window counts as
//! 0 s, floored at 0.1 s as the reference does.

use super::{Decision, Policy, bounds, current};
use farm_model::scenario::Platform;
use farm_model::signals::Signals;

/// Which service-time estimate the rule uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactiveVariant {
    /// Mean end-to-end time.
    Average,
    /// The larger of the maximum and the mean end-to-end time.
    Maximum,
}

/// Knobs of the reactive rule (defaults from the reference implementation).
#[derive(Debug, Clone, PartialEq)]
pub struct ReactiveConfig {
    /// Control horizon, seconds (8).
    pub horizon_s: f64,
    /// Multiplier on the target (1.0).
    pub safety_factor: f64,
    /// Weight of busy workers in the capacity adjustment (0.5).
    pub adjustment_factor: f64,
    /// Smallest service-time estimate, seconds (0.1).
    pub min_service_s: f64,
    /// |delta| needed to act (0.5).
    pub threshold: f64,
}

impl Default for ReactiveConfig {
    fn default() -> Self {
        ReactiveConfig {
            horizon_s: 8.0,
            safety_factor: 1.0,
            adjustment_factor: 0.5,
            min_service_s: 0.1,
            threshold: 0.5,
        }
    }
}

/// ReactiveAverage / ReactiveMaximum.
#[derive(Debug, Clone)]
pub struct Reactive {
    variant: ReactiveVariant,
    config: ReactiveConfig,
    platform: Platform,
}

impl Reactive {
    /// The rule with the reference defaults.
    pub fn new(variant: ReactiveVariant, platform: &Platform) -> Self {
        Self::with_config(variant, ReactiveConfig::default(), platform)
    }

    /// The rule with explicit knobs.
    pub fn with_config(
        variant: ReactiveVariant,
        config: ReactiveConfig,
        platform: &Platform,
    ) -> Self {
        Reactive {
            variant,
            config,
            platform: platform.clone(),
        }
    }

    /// The real-valued `delta` of the rule (exposed for tests and plots).
    pub fn delta(&self, s: &Signals) -> f64 {
        let c = &self.config;
        let mean = s.latency_mean_s.unwrap_or(0.0);
        let service = match self.variant {
            ReactiveVariant::Average => mean.max(c.min_service_s),
            ReactiveVariant::Maximum => s
                .latency_max_s
                .unwrap_or(0.0)
                .max(mean)
                .max(c.min_service_s),
        };
        let horizon = c.horizon_s.max(service).max(1.0);
        let workers = s.replicas_desired.max(0.0);
        let target =
            (s.arrival_rate() * service + s.backlog.max(0.0) / horizon * service) * c.safety_factor;
        let busy = workers.min(s.in_flight.max(0.0)) / horizon * service * c.adjustment_factor;
        target - (workers - busy)
    }
}

impl Policy for Reactive {
    fn name(&self) -> &str {
        match self.variant {
            ReactiveVariant::Average => "reactive-average",
            ReactiveVariant::Maximum => "reactive-maximum",
        }
    }

    fn decide(&mut self, _now_s: f64, s: &Signals) -> Decision {
        let (lo, hi) = bounds(s, &self.platform);
        let d = self.delta(s);
        let cur = current(s);
        let (desired, action) = if d >= self.config.threshold {
            (cur.saturating_add(1), 2)
        } else if d <= -self.config.threshold {
            (cur.saturating_sub(1), 0)
        } else {
            (cur, 1)
        };
        // The action index refers to ActionSpace::paper() = {-1, 0, +1}.
        Decision {
            desired: desired.clamp(lo, hi),
            action: Some(action),
        }
    }
}
