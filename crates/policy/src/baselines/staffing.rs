//! The queueing-theory policy (`queueing`): M/G/c staffing for the deadline
//! plus backlog drain, looking one start-up delay ahead. The strongest
//! non-learned baseline.
//!
//! Each decision:
//! 1. Smooth the measurements: service mean `S`, `Cs^2` (from the service
//!    p95, [`farm_model::queueing::cs2_from_p95`]) and the mean waiting budget `b = deadline -
//!    service` ([`Signals::slack_mean_s`]) by EWMA, keeping the last known
//!    value through empty windows.
//! 2. Forecast the arrival rate: Holt's linear smoothing (level + trend) of
//!    the per-interval rate, projected `startup + interval / 2` ahead,
//!    because replicas asked for now serve from one start-up delay on. The
//!    rate used is `max(forecast, current rate)`: a rise is followed at once,
//!    a fall only once the forecast agrees.
//! 3. `c_q` = smallest `c` with `P(miss) = C(c, a) / (1 + theta b) <= eps`
//!    ([`min_servers_for_slack`]; eps = 1 %).
//! 4. Backlog drain: the backlog is projected to the moment new replicas are
//!    ready (`B + max(0, lambda - ready / S) * startup`) and must drain
//!    within `H = max(b, interval)` on top of the arrivals:
//!    `c_d = ceil(lambda S + B' S / H)`.
//! 5. `raw = max(c_q, c_d)`; scale-up at once, scale-down only to the
//!    maximum of the raw values over the last `2 x (startup + interval)`
//!    seconds, so a replica is not released just before it would be needed
//!    again: releasing is quick, getting it back costs a start-up plus the
//!    wait for the next decision. (Tuned in simulation over the suite:
//!    1x that time lost 3-4 QoS points on oscillating and bursty load for
//!    ~6 % fewer replica-seconds; 4x bought little more QoS.)
//!
//! Before the first service-time measurement it holds the current count
//! (plus one replica per queued task up to the load it can see, if nothing
//! is ready).

use super::{Decision, Policy, bounds, clamp_ceil, current};
use farm_model::estimate::{RecentMax, ServiceEstimate};
use farm_model::queueing::min_servers_for_slack;
use farm_model::scenario::Platform;
use farm_model::signals::Signals;

/// Knobs of the queueing policy.
#[derive(Debug, Clone, PartialEq)]
pub struct StaffingConfig {
    /// Target miss probability (0.01 = 99 % QoS).
    pub eps: f64,
    /// EWMA weight of new service / slack measurements (0.5).
    pub smoothing: f64,
    /// Holt level weight (0.5).
    pub level_alpha: f64,
    /// Holt trend weight (0.3).
    pub trend_beta: f64,
    /// Scale-down stabilisation window, seconds; `None` = twice (mean
    /// start-up delay + one control interval).
    pub down_window_s: Option<f64>,
}

impl Default for StaffingConfig {
    fn default() -> Self {
        StaffingConfig {
            eps: 0.01,
            smoothing: 0.5,
            level_alpha: 0.5,
            trend_beta: 0.3,
            down_window_s: None,
        }
    }
}

/// The queueing-theory policy.
#[derive(Debug, Clone)]
pub struct Staffing {
    config: StaffingConfig,
    platform: Platform,
    service: ServiceEstimate,
    level: Option<f64>,
    trend: f64,
    history: RecentMax,
}

impl Staffing {
    /// The policy with explicit knobs.
    pub fn new(config: StaffingConfig, platform: &Platform) -> Self {
        Staffing {
            config,
            platform: platform.clone(),
            service: ServiceEstimate::default(),
            level: None,
            trend: 0.0,
            history: RecentMax::default(),
        }
    }

    /// Seconds between two decisions (the Holt trend is per decision).
    fn interval(&self, s: &Signals) -> f64 {
        if s.step() > 0.0 {
            s.step()
        } else {
            self.platform.control_interval_s
        }
    }

    /// Forecast arrival rate one start-up delay ahead (after updating).
    fn forecast(&mut self, s: &Signals) -> f64 {
        let rate = s.arrival_rate();
        let c = &self.config;
        match self.level {
            None => {
                self.level = Some(rate);
                self.trend = 0.0;
            }
            Some(level) => {
                let new_level = c.level_alpha * rate + (1.0 - c.level_alpha) * (level + self.trend);
                self.trend = c.trend_beta * (new_level - level) + (1.0 - c.trend_beta) * self.trend;
                self.level = Some(new_level);
            }
        }
        let interval = self.interval(s);
        let ahead = (self.platform.startup_delay.mean() + interval / 2.0) / interval;
        let f = self.level.unwrap_or(rate) + self.trend * ahead;
        f.max(rate).max(0.0)
    }

    /// The raw (unstabilised) staffing for these signals, given the
    /// smoothed state; `None` before any service time is known.
    fn raw(&mut self, s: &Signals) -> Option<f64> {
        self.service.update(s, self.config.smoothing);
        let lambda = self.forecast(s);
        let mean = self.service.mean?;
        let cs2 = self.service.cs2.unwrap_or(1.0);
        let slack = self.service.slack.unwrap_or(mean);
        let c_q = f64::from(min_servers_for_slack(
            lambda,
            mean,
            cs2,
            slack,
            self.config.eps,
        ));
        let startup = self.platform.startup_delay.mean();
        let capacity = s.replicas_ready.max(0.0) / mean;
        let growth = (s.arrival_rate() - capacity).max(0.0) * startup;
        let backlog = s.backlog.max(0.0) + growth;
        let horizon = slack.max(self.interval(s));
        let c_d = lambda * mean + backlog * mean / horizon;
        Some(c_q.max(c_d))
    }
}

impl Policy for Staffing {
    fn name(&self) -> &str {
        "queueing"
    }

    fn reset(&mut self) {
        self.service = ServiceEstimate::default();
        self.level = None;
        self.trend = 0.0;
        self.history.clear();
    }

    fn decide(&mut self, now_s: f64, s: &Signals) -> Decision {
        let (lo, hi) = bounds(s, &self.platform);
        let cur = current(s);
        let raw = match self.raw(s) {
            Some(r) => clamp_ceil(r, lo, hi),
            None if s.replicas_ready < 1.0 && s.backlog > 0.0 => cur.max(1).clamp(lo, hi),
            None => cur.clamp(lo, hi),
        };
        let window = self.config.down_window_s.unwrap_or(
            2.0 * (self.platform.startup_delay.mean() + self.platform.control_interval_s),
        );
        let desired = self.history.push(now_s, raw, window);
        Decision::to(desired.clamp(lo, hi))
    }
}
