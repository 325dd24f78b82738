//! KEDA's NATS JetStream scaler feeding an HPA.
//!
//! Metric: the consumer lag `num_pending + num_ack_pending` (`backlog +
//! in_flight`) as an `AverageValue` external metric with target
//! `lagThreshold` (10). The HPA then computes
//! `ceil(lag / lagThreshold)`, keeps the current count when
//! `lag / (lagThreshold * current)` is within the 10 % tolerance, and applies
//! the default HPA behaviour (300 s scale-down stabilisation, scale-up
//! `max(+4, +100 %)` per 15 s); see [`super::hpa`].
//!
//! KEDA's `pollingInterval` (30 s) and `cooldownPeriod` (300 s) govern only
//! activation, the 0 <-> 1 step that KEDA performs itself: with a minimum of
//! 0 replicas, an idle farm is woken at the next poll after work appears,
//! and put to sleep after the lag has been 0 for the cooldown. With a
//! minimum of 1 or more they never bind, exactly as in KEDA.

use super::hpa::{BehaviorState, HpaBehavior};
use super::{Decision, Policy, bounds, current};
use farm_model::scenario::Platform;
use farm_model::signals::Signals;

/// Knobs of the KEDA baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct KedaConfig {
    /// `lagThreshold` (10).
    pub lag_threshold: f64,
    /// `pollingInterval`, seconds (30).
    pub polling_interval_s: f64,
    /// `cooldownPeriod`, seconds (300).
    pub cooldown_s: f64,
    /// HPA behaviour (defaults).
    pub behavior: HpaBehavior,
}

impl Default for KedaConfig {
    fn default() -> Self {
        KedaConfig {
            lag_threshold: 10.0,
            polling_interval_s: 30.0,
            cooldown_s: 300.0,
            behavior: HpaBehavior::default(),
        }
    }
}

/// KEDA NATS JetStream scaler + HPA.
#[derive(Debug, Clone)]
pub struct Keda {
    config: KedaConfig,
    platform: Platform,
    state: BehaviorState,
    last_active_s: f64,
    next_poll_s: f64,
}

impl Keda {
    /// KEDA with explicit knobs.
    pub fn new(config: KedaConfig, platform: &Platform) -> Self {
        Keda {
            config,
            platform: platform.clone(),
            state: BehaviorState::default(),
            last_active_s: 0.0,
            next_poll_s: 0.0,
        }
    }

    /// The HPA's raw recommendation from the lag.
    pub fn raw_recommendation(&self, s: &Signals) -> u32 {
        let cur = current(s);
        let lag = s.backlog.max(0.0) + s.in_flight.max(0.0);
        let t = self.config.lag_threshold;
        if cur > 0 {
            let ratio = lag / (t * f64::from(cur));
            if (ratio - 1.0).abs() <= self.config.behavior.tolerance {
                return cur;
            }
        }
        (lag / t).ceil() as u32
    }
}

impl Policy for Keda {
    fn name(&self) -> &str {
        "keda"
    }

    fn reset(&mut self) {
        self.state.clear();
        self.last_active_s = 0.0;
        self.next_poll_s = 0.0;
    }

    fn decide(&mut self, now_s: f64, s: &Signals) -> Decision {
        let (lo, hi) = bounds(s, &self.platform);
        let cur = current(s);
        let lag = s.backlog.max(0.0) + s.in_flight.max(0.0);
        if lag > 0.0 || s.arrivals > 0.0 {
            self.last_active_s = now_s;
        }
        if lo == 0 {
            // Activation is KEDA's own loop, on its polling clock.
            if cur == 0 {
                if now_s + 1e-9 >= self.next_poll_s {
                    self.next_poll_s = now_s + self.config.polling_interval_s;
                    if lag > 0.0 {
                        return Decision::to(1.min(hi));
                    }
                }
                return Decision::to(0);
            }
            if lag <= 0.0 && now_s - self.last_active_s >= self.config.cooldown_s {
                self.state.clear();
                return Decision::to(0);
            }
        }
        // Through the HPA: it never goes below 1 while active.
        let raw = self.raw_recommendation(s);
        let lo_hpa = lo.max(1);
        Decision::to(self.state.normalize(
            &self.config.behavior,
            now_s,
            cur,
            raw,
            lo_hpa,
            hi.max(lo_hpa),
        ))
    }
}
