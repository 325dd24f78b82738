//! OpenFaaS autoscalers: the Community Edition alert rule and OpenFaaS Pro's
//! queue-based mode.

use super::{Decision, Policy, bounds, clamp_ceil, current};
use farm_model::scenario::Platform;
use farm_model::signals::Signals;

/// Knobs of the CE rule (OpenFaaS defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenFaasCeConfig {
    /// `com.openfaas.scale.factor`, percent (10).
    pub scale_factor: f64,
    /// Community Edition replica ceiling in the step formula (5).
    pub ce_cap: u32,
    /// Threshold of the alert rule, invocations per second (5).
    pub alert_rate_per_s: f64,
    /// Evaluate the alert from each tick's arrival rate instead of waiting
    /// for [`Policy::on_alert`] (for hosts without Alertmanager emulation).
    pub alerts_from_ticks: bool,
}

impl Default for OpenFaasCeConfig {
    fn default() -> Self {
        OpenFaasCeConfig {
            scale_factor: 10.0,
            ce_cap: 5,
            alert_rate_per_s: 5.0,
            alerts_from_ticks: false,
        }
    }
}

/// OpenFaaS Community Edition: scales only on Alertmanager notifications.
///
/// - firing: `replicas + ceil(min(max, 5) / 100 * factor)`, capped at max;
/// - resolved: `min` replicas.
///
/// The alert (`rate(invocations[10s]) > 5` for 5 s, re-notified every
/// repeat interval) is the host's job: the simulator emulates Prometheus and
/// Alertmanager and calls [`Policy::on_alert`]; gateway-ext forwards real
/// alerts. At ticks the gateway does nothing, so `decide` holds. With
/// `alerts_from_ticks` (name `openfaas-ce:tick`) `decide` evaluates the
/// rule itself from the interval's mean arrival rate (an interval of at
/// least 5 s above the threshold counts as "for 5 s"), scaling up at every
/// firing tick and to `min` on the tick it resolves.
///
/// The CE platform's own 5-replica ceiling is a platform property
/// ([`Platform::per_function_cap`]), not part of this rule.
#[derive(Debug, Clone)]
pub struct OpenFaasCe {
    config: OpenFaasCeConfig,
    platform: Platform,
    firing: bool,
}

impl OpenFaasCe {
    /// The CE rule.
    pub fn new(config: OpenFaasCeConfig, platform: &Platform) -> Self {
        OpenFaasCe {
            config,
            platform: platform.clone(),
            firing: false,
        }
    }

    /// The step added per firing notification.
    pub fn step(&self, max_replicas: u32) -> u32 {
        let m = f64::from(max_replicas.min(self.config.ce_cap));
        (m / 100.0 * self.config.scale_factor).ceil() as u32
    }

    fn react(&mut self, firing: bool, s: &Signals) -> Decision {
        let (lo, hi) = bounds(s, &self.platform);
        self.firing = firing;
        if firing {
            Decision::to(current(s).saturating_add(self.step(hi)).clamp(lo, hi))
        } else {
            Decision::to(lo)
        }
    }
}

impl Policy for OpenFaasCe {
    fn name(&self) -> &str {
        if self.config.alerts_from_ticks {
            "openfaas-ce:tick"
        } else {
            "openfaas-ce"
        }
    }

    fn reset(&mut self) {
        self.firing = false;
    }

    fn decide(&mut self, _now_s: f64, s: &Signals) -> Decision {
        if self.config.alerts_from_ticks {
            let above = s.interval_s >= 5.0 && s.arrival_rate() > self.config.alert_rate_per_s;
            if above {
                return self.react(true, s);
            }
            if self.firing {
                return self.react(false, s);
            }
        }
        let (lo, hi) = bounds(s, &self.platform);
        Decision::to(current(s).clamp(lo, hi))
    }

    fn on_alert(&mut self, _now_s: f64, firing: bool, s: &Signals) -> Option<Decision> {
        Some(self.react(firing, s))
    }
}

/// Knobs of OpenFaaS Pro queue-based scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenFaasProQueueConfig {
    /// `com.openfaas.scale.target`: queued tasks per replica. Default 1: a
    /// farm worker runs one task at a time, so one queued task per replica
    /// is the "replicas match the queue" setting queue mode is built for.
    pub target: f64,
    /// `com.openfaas.scale.target-proportion` (0.9).
    pub target_proportion: f64,
}

impl Default for OpenFaasProQueueConfig {
    fn default() -> Self {
        OpenFaasProQueueConfig {
            target: 1.0,
            target_proportion: 0.9,
        }
    }
}

/// OpenFaaS Pro queue mode: `desired = ceil(queued / (target * proportion))`,
/// where `queued` is the consumer's outstanding work, pending plus
/// delivered-but-unacknowledged (`backlog + in_flight`), evaluated at every
/// tick.
#[derive(Debug, Clone)]
pub struct OpenFaasProQueue {
    config: OpenFaasProQueueConfig,
    platform: Platform,
}

impl OpenFaasProQueue {
    /// Queue mode with explicit knobs.
    pub fn new(config: OpenFaasProQueueConfig, platform: &Platform) -> Self {
        OpenFaasProQueue {
            config,
            platform: platform.clone(),
        }
    }
}

impl Policy for OpenFaasProQueue {
    fn name(&self) -> &str {
        "openfaas-pro-queue"
    }

    fn decide(&mut self, _now_s: f64, s: &Signals) -> Decision {
        let (lo, hi) = bounds(s, &self.platform);
        let queued = s.backlog.max(0.0) + s.in_flight.max(0.0);
        let per = (self.config.target * self.config.target_proportion).max(1e-9);
        Decision::to(clamp_ceil(queued / per, lo, hi))
    }
}
