//! The causal model-predictive planner behind the `mpc` policy and the
//! `mpc:xM` actions: the strongest controller we can write that knows only
//! the past. It plans the replicas for the moment
//! a replica asked for now would be ready, with the queueing model of
//! [`crate::queueing`], and every memory it keeps is measured in seconds, so
//! the same controller serves any decision interval and window.
//!
//! Each decision (step `dt` = [`Signals::step`], window `W` =
//! `interval_s`):
//! 1. Smooth service mean `S`, `Cs^2` and waiting budget `b = D - S` with a
//!    time constant of [`MpcConfig::service_tau_s`] (`alpha = 1 - e^(-dt /
//!    tau)`), keeping the last value through empty windows.
//! 2. Forecast the arrival rate with continuous-time Holt smoothing (level
//!    time constant [`MpcConfig::level_tau_s`], trend
//!    [`MpcConfig::trend_tau_s`], trend in tasks/s per second), projected
//!    `d + dt + W / 2` ahead: the start-up delay `d`, the wait for the next
//!    decision, and the lag of a window's mean rate behind its end. The rate
//!    planned for is `max(forecast, measured)`: a rise is followed at once,
//!    a fall once the forecast agrees.
//! 3. Estimate `d` online by Little's law over the replicas seen starting
//!    (mean count starting / starts per second), from the platform's mean
//!    as prior, so live farms with unknown delays learn theirs.
//! 4. Plan `c = max(c_q, c_d)`: `c_q` the M/G/c staffing for the budget
//!    ([`min_servers_for_slack`], miss probability [`MpcConfig::eps`]);
//!    `c_d = lambda S + B' S / H`, the backlog projected to when new
//!    replicas are ready (`B' = B + max(0, lambda - ready / S) d`) drained
//!    within `H = max(b, dt, S)`.
//! 5. Scale up at once; scale down only to the largest plan of the last
//!    [`MpcConfig::hold_factor`] `x (d + dt)` seconds: a replica released
//!    costs a start-up plus a decision to get back.

use crate::estimate::{RecentMax, ServiceEstimate};
use crate::queueing::min_servers_for_slack;
use crate::signals::Signals;

/// Knobs of the model-predictive controller.
#[derive(Debug, Clone, PartialEq)]
pub struct MpcConfig {
    /// Target miss probability of the staffing (0.01 = 99 % QoS).
    pub eps: f64,
    /// Time constant of the service-time and slack smoothing, seconds.
    pub service_tau_s: f64,
    /// Time constant of the arrival-rate level, seconds.
    pub level_tau_s: f64,
    /// Time constant of the arrival-rate trend, seconds.
    pub trend_tau_s: f64,
    /// Scale-down hold, in multiples of (start-up delay + decision step).
    pub hold_factor: f64,
    /// Start-up delay assumed before any start was seen, seconds, when the
    /// platform does not give one (live).
    pub startup_prior_s: f64,
    /// Weight of the prior in starts (how many observed starts outweigh it).
    pub startup_prior_weight: f64,
}

impl Default for MpcConfig {
    fn default() -> Self {
        MpcConfig {
            eps: 0.01,
            service_tau_s: 16.0,
            level_tau_s: 6.0,
            trend_tau_s: 16.0,
            hold_factor: 2.0,
            startup_prior_s: 7.0,
            startup_prior_weight: 2.0,
        }
    }
}

/// The planner's memory of one farm (reset with the episode).
#[derive(Debug, Clone, PartialEq)]
pub struct Planner {
    config: MpcConfig,
    /// Mean start-up delay the platform states (0 = unknown: the prior).
    startup_mean_s: f64,
    /// Decision step assumed when the signals carry none.
    default_step_s: f64,
    service: ServiceEstimate,
    level: Option<f64>,
    trend: f64,
    /// Replica-seconds spent starting and starts seen (Little's law).
    starting_area: f64,
    starts: f64,
    prev: Option<(f64, f64)>,
    history: RecentMax,
}

/// EWMA weight of a new sample `dt` seconds after the last, time constant `tau`.
fn alpha(dt: f64, tau: f64) -> f64 {
    if tau <= 0.0 {
        1.0
    } else {
        1.0 - (-dt.max(0.0) / tau).exp()
    }
}

impl Planner {
    /// A planner with explicit knobs, for a platform whose mean start-up
    /// delay is `startup_mean_s` (0 when unknown) and whose decisions come
    /// every `default_step_s` when the signals do not say.
    pub fn new(config: MpcConfig, startup_mean_s: f64, default_step_s: f64) -> Self {
        Planner {
            config,
            startup_mean_s,
            default_step_s,
            service: ServiceEstimate::default(),
            level: None,
            trend: 0.0,
            starting_area: 0.0,
            starts: 0.0,
            prev: None,
            history: RecentMax::default(),
        }
    }

    /// The start-up delay it plans with, seconds.
    pub fn startup_estimate(&self) -> f64 {
        let prior = match self.startup_mean_s {
            m if m > 0.0 => m,
            _ => self.config.startup_prior_s,
        };
        let w = self.config.startup_prior_weight;
        (prior * w + self.starting_area) / (w + self.starts)
    }

    fn step(&self, s: &Signals) -> f64 {
        match s.step() {
            dt if dt > 0.0 => dt,
            _ => self.default_step_s,
        }
    }

    fn observe_starts(&mut self, s: &Signals, dt: f64) {
        let (ready, starting) = (s.replicas_ready.max(0.0), s.replicas_starting.max(0.0));
        self.starts += match self.prev {
            Some((pr, ps)) => (starting - ps + (ready - pr).max(0.0)).max(0.0),
            None => starting,
        };
        self.starting_area += starting * dt;
        self.prev = Some((ready, starting));
    }

    fn forecast(&mut self, s: &Signals, dt: f64, ahead: f64) -> f64 {
        let rate = s.arrival_rate().max(0.0);
        match self.level {
            None => {
                self.level = Some(rate);
                self.trend = 0.0;
            }
            Some(level) => {
                let a = alpha(dt, self.config.level_tau_s);
                let b = alpha(dt, self.config.trend_tau_s);
                let new_level = a * rate + (1.0 - a) * (level + self.trend * dt);
                self.trend = b * (new_level - level) / dt + (1.0 - b) * self.trend;
                self.level = Some(new_level);
            }
        }
        let f = self.level.unwrap_or(rate) + self.trend * ahead;
        f.max(rate)
    }

    /// The raw plan for these signals (replicas, real-valued), `None`
    /// before any service time is known.
    fn plan(&mut self, s: &Signals) -> Option<f64> {
        let dt = self.step(s);
        self.observe_starts(s, dt);
        self.service.update(s, alpha(dt, self.config.service_tau_s));
        let d = self.startup_estimate();
        let lambda = self.forecast(s, dt, d + dt + s.interval_s.max(dt) / 2.0);
        let mean = self.service.mean?;
        let slack = self.service.slack.unwrap_or(mean);
        let c_q = f64::from(min_servers_for_slack(
            lambda,
            mean,
            self.service.cs2.unwrap_or(1.0),
            slack,
            self.config.eps,
        ));
        let growth = (s.arrival_rate() - s.replicas_ready.max(0.0) / mean).max(0.0) * d;
        let backlog = s.backlog.max(0.0) + growth;
        let horizon = slack.max(dt).max(mean);
        let c_d = lambda * mean + backlog * mean / horizon;
        Some(c_q.max(c_d))
    }

    /// Forget everything, as at the start of an episode.
    pub fn reset(&mut self) {
        *self = Planner::new(
            self.config.clone(),
            self.startup_mean_s,
            self.default_step_s,
        );
    }

    /// The replicas to ask for at `now_s`, within `[lo, hi]`: the plan,
    /// raised to the largest plan of the hold window.
    pub fn decide(&mut self, now_s: f64, s: &Signals, lo: u32, hi: u32) -> u32 {
        let cur = s.replicas_desired.max(0.0).round() as u32;
        let raw = match self.plan(s) {
            Some(r) => clamp_ceil(r, lo, hi),
            None if s.replicas_ready < 1.0 && s.backlog > 0.0 => cur.max(1).clamp(lo, hi),
            None => cur.clamp(lo, hi),
        };
        let hold = self.config.hold_factor * (self.startup_estimate() + self.step(s));
        self.history.push(now_s, raw, hold).clamp(lo, hi)
    }
}

/// Clamp a real-valued target into the bounds and round up to replicas.
fn clamp_ceil(x: f64, lo: u32, hi: u32) -> u32 {
    if !x.is_finite() {
        return if x > 0.0 { hi } else { lo };
    }
    x.ceil().clamp(f64::from(lo), f64::from(hi)) as u32
}
