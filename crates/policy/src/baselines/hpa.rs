//! Kubernetes Horizontal Pod Autoscaler (autoscaling/v2) with its default
//! behaviour, and the behaviour engine KEDA reuses.
//!
//! Metric: per-replica utilisation, `replicas_busy / replicas_ready` against
//! a target of 80 %, the stand-in for CPU utilisation of a worker that is
//! either processing a task (busy) or idle waiting for one. Like CPU, it
//! saturates at 100 %, so HPA can grow at most by `1 / 0.8 = 1.25x` per
//! sync under overload; that slowness is HPA's, not a modelling shortcut.
//!
//! The algorithm (replica_calculator.go + horizontal.go):
//! 1. `ratio = utilisation / target`; within the tolerance (10 %) keep the
//!    current count; else `ceil(ratio * ready)`. When scaling up with
//!    replicas still starting, those count as 0 % busy and the ratio is
//!    recomputed; if that one no longer asks for more, keep the count.
//! 2. Stabilisation: the recommendation is kept for 300 s and the count
//!    never goes below the maximum recommendation of that window (scale-up
//!    window 0 s).
//! 3. Rate limits: up by at most `max(+4 pods, +100 %)` per 15 s (counting
//!    scale-ups already made in the last 15 s); down by at most 100 % per
//!    15 s (no limit in effect).
//!
//! The 15 s sync period is replaced by the host's control interval: HPA
//! runs at every `decide`.

use std::collections::VecDeque;

use super::{Decision, Policy, bounds, current};
use farm_model::scenario::Platform;
use farm_model::signals::Signals;

/// HPA `behavior` (defaults of autoscaling/v2).
#[derive(Debug, Clone, PartialEq)]
pub struct HpaBehavior {
    /// Metric tolerance (0.1).
    pub tolerance: f64,
    /// Scale-down stabilisation window, seconds (300).
    pub down_window_s: f64,
    /// Scale-up stabilisation window, seconds (0).
    pub up_window_s: f64,
    /// Scale-up policy period, seconds (15).
    pub up_period_s: f64,
    /// Scale-up policy: pods per period (4).
    pub up_pods: u32,
    /// Scale-up policy: percent per period (100).
    pub up_percent: f64,
    /// Scale-down policy period, seconds (15).
    pub down_period_s: f64,
    /// Scale-down policy: percent per period (100).
    pub down_percent: f64,
}

impl Default for HpaBehavior {
    fn default() -> Self {
        HpaBehavior {
            tolerance: 0.1,
            down_window_s: 300.0,
            up_window_s: 0.0,
            up_period_s: 15.0,
            up_pods: 4,
            up_percent: 100.0,
            down_period_s: 15.0,
            down_percent: 100.0,
        }
    }
}

/// The stateful part of HPA: recommendation history and scale events.
#[derive(Debug, Clone, Default)]
pub(crate) struct BehaviorState {
    recommendations: VecDeque<(f64, u32)>,
    /// (time, signed change) of past scale operations.
    events: VecDeque<(f64, i64)>,
}

impl BehaviorState {
    pub(crate) fn clear(&mut self) {
        self.recommendations.clear();
        self.events.clear();
    }

    /// Apply stabilisation and rate limits to a raw recommendation.
    pub(crate) fn normalize(
        &mut self,
        b: &HpaBehavior,
        now: f64,
        current: u32,
        raw: u32,
        lo: u32,
        hi: u32,
    ) -> u32 {
        let raw = raw.clamp(lo, hi);
        // Stabilisation (stabilizeRecommendationWithBehaviors).
        self.recommendations.push_back((now, raw));
        let keep = b.down_window_s.max(b.up_window_s);
        while let Some(&(t, _)) = self.recommendations.front() {
            if t < now - keep - 1e-9 {
                self.recommendations.pop_front();
            } else {
                break;
            }
        }
        let (mut up_rec, mut down_rec) = (raw, raw);
        for &(t, r) in &self.recommendations {
            if t >= now - b.up_window_s - 1e-9 {
                up_rec = up_rec.min(r);
            }
            if t >= now - b.down_window_s - 1e-9 {
                down_rec = down_rec.max(r);
            }
        }
        let mut desired = current.max(up_rec).min(down_rec);
        // Rate limits (convertDesiredReplicasWithBehaviorRate).
        let horizon = b.up_period_s.max(b.down_period_s);
        while let Some(&(t, _)) = self.events.front() {
            if t < now - horizon - 1e-9 {
                self.events.pop_front();
            } else {
                break;
            }
        }
        if desired > current {
            let added: i64 = self
                .events
                .iter()
                .filter(|(t, d)| *t >= now - b.up_period_s - 1e-9 && *d > 0)
                .map(|(_, d)| *d)
                .sum();
            let start = (i64::from(current) - added).max(0) as f64;
            let by_pods = start + f64::from(b.up_pods);
            let by_percent = (start * (1.0 + b.up_percent / 100.0)).ceil();
            let limit = by_pods.max(by_percent).min(f64::from(hi));
            desired = desired.min(limit as u32);
        } else if desired < current {
            let removed: i64 = self
                .events
                .iter()
                .filter(|(t, d)| *t >= now - b.down_period_s - 1e-9 && *d < 0)
                .map(|(_, d)| -*d)
                .sum();
            let start = (i64::from(current) + removed) as f64;
            let limit = (start * (1.0 - b.down_percent / 100.0))
                .floor()
                .max(f64::from(lo));
            desired = desired.max(limit as u32);
        }
        let desired = desired.clamp(lo, hi);
        if desired != current {
            self.events
                .push_back((now, i64::from(desired) - i64::from(current)));
        }
        desired
    }
}

/// Knobs of the HPA baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaConfig {
    /// Target utilisation, busy / ready (0.8).
    pub target_utilisation: f64,
    /// Behaviour (defaults of autoscaling/v2).
    pub behavior: HpaBehavior,
}

impl Default for HpaConfig {
    fn default() -> Self {
        HpaConfig {
            target_utilisation: 0.8,
            behavior: HpaBehavior::default(),
        }
    }
}

/// Kubernetes HPA on per-replica utilisation.
#[derive(Debug, Clone)]
pub struct Hpa {
    config: HpaConfig,
    platform: Platform,
    state: BehaviorState,
}

impl Hpa {
    /// HPA with explicit knobs.
    pub fn new(config: HpaConfig, platform: &Platform) -> Self {
        Hpa {
            config,
            platform: platform.clone(),
            state: BehaviorState::default(),
        }
    }

    /// Step 1 of the algorithm: the raw recommendation before behaviour.
    pub fn raw_recommendation(&self, s: &Signals) -> u32 {
        let cur = current(s);
        let ready = s.replicas_ready.max(0.0);
        if ready < 1.0 {
            // No pod reports a metric: HPA leaves the count alone.
            return cur;
        }
        let target = self.config.target_utilisation;
        let tol = self.config.behavior.tolerance;
        let busy = s.replicas_busy.clamp(0.0, ready);
        let ratio = busy / ready / target;
        if (ratio - 1.0).abs() <= tol {
            return cur;
        }
        let starting = s.replicas_starting.max(0.0);
        if ratio > 1.0 && starting > 0.0 {
            let all = ready + starting;
            let ratio2 = busy / all / target;
            if ratio2 <= 1.0 + tol {
                return cur;
            }
            return (ratio2 * all).ceil() as u32;
        }
        (ratio * ready).ceil() as u32
    }
}

impl Policy for Hpa {
    fn name(&self) -> &str {
        "hpa"
    }

    fn reset(&mut self) {
        self.state.clear();
    }

    fn decide(&mut self, now_s: f64, s: &Signals) -> Decision {
        let (lo, hi) = bounds(s, &self.platform);
        let raw = self.raw_recommendation(s);
        Decision::to(
            self.state
                .normalize(&self.config.behavior, now_s, current(s), raw, lo, hi),
        )
    }
}
