//! The raw measurements of one control interval.
//!
//! Both the simulator and gateway-ext fill a [`Signals`] from what they can
//! see (simulated state, or JetStream consumer info + the collector's
//! `MetricsSnapshot` + the provider's replica counts). Everything a policy or
//! the observation vector uses must come from here, so that live and simulated
//! decisions are computed by the same code.

use serde::{Deserialize, Serialize};

/// Measurements taken at the end of one control interval.
///
/// Rates and window statistics cover the last `interval_s` seconds. A
/// statistic that has no sample in the window (no completion) is `None`, never
/// a made-up value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// Length of the window these signals cover, seconds: the interval
    /// since the previous decision, or a longer sliding window.
    pub interval_s: f64,
    /// Seconds since the previous decision (the decision step); 0 means the
    /// same as `interval_s` (tumbling windows). See [`Signals::step`].
    #[serde(default)]
    pub step_s: f64,
    /// Tasks waiting in the work queue, not yet delivered (JetStream `num_pending`).
    pub backlog: f64,
    /// Tasks delivered to a worker and not yet acknowledged (`num_ack_pending`).
    pub in_flight: f64,
    /// Tasks that arrived during the interval.
    pub arrivals: f64,
    /// Tasks completed during the interval.
    pub completions: f64,
    /// Of those, how many met their deadline.
    pub completions_on_time: f64,
    /// Mean service time measured by the workers, seconds.
    pub service_mean_s: Option<f64>,
    /// 95th percentile of service time measured by the workers, seconds.
    pub service_p95_s: Option<f64>,
    /// Mean end-to-end time (stored -> result stored) of completions, seconds.
    pub latency_mean_s: Option<f64>,
    /// Maximum end-to-end time of completions, seconds.
    pub latency_max_s: Option<f64>,
    /// 95th percentile of end-to-end time of completions, seconds.
    pub latency_p95_s: Option<f64>,
    /// Smallest relative deadline among tasks seen in the interval, seconds.
    pub deadline_min_s: Option<f64>,
    /// Mean relative deadline of the tasks completed in the interval,
    /// seconds (with `service_mean_s` it gives the mean waiting budget,
    /// which the queueing floor needs). `None` for an empty window.
    #[serde(default)]
    pub deadline_mean_s: Option<f64>,
    /// Replicas the platform was last asked for.
    pub replicas_desired: f64,
    /// Replicas ready to take work (`availableReplicas`).
    pub replicas_ready: f64,
    /// Replicas asked for but not ready yet (starting).
    pub replicas_starting: f64,
    /// Replicas busy with a task at the end of the interval (<= ready).
    pub replicas_busy: f64,
    /// Seconds since the last change of the desired replica count.
    pub since_last_scale_s: f64,
    /// Deliveries that were redeliveries during the interval.
    pub redeliveries: f64,
    /// Minimum and maximum replicas the platform allows for this farm.
    pub min_replicas: f64,
    /// Upper bound on replicas.
    pub max_replicas: f64,
    /// How long the task at the head of the work queue has waited, seconds
    /// (0 with an empty queue): the backlog's age.
    #[serde(default)]
    pub oldest_age_s: f64,
}

impl Signals {
    /// The same signals measured on the wall clock of a run compressed `k`
    /// times (`farmctl run --speedup K`, gateway-ext's time scale),
    /// expressed on the run's own clock, the one the simulator and the
    /// policies use: durations are multiplied by `k`, counts stay, so rates
    /// (count / interval) are divided by `k`. `k = 1` is the identity.
    pub fn time_scaled(&self, k: f64) -> Signals {
        let t = |x: Option<f64>| x.map(|v| v * k);
        Signals {
            interval_s: self.interval_s * k,
            step_s: self.step_s * k,
            oldest_age_s: self.oldest_age_s * k,
            service_mean_s: t(self.service_mean_s),
            service_p95_s: t(self.service_p95_s),
            latency_mean_s: t(self.latency_mean_s),
            latency_max_s: t(self.latency_max_s),
            latency_p95_s: t(self.latency_p95_s),
            deadline_min_s: t(self.deadline_min_s),
            deadline_mean_s: t(self.deadline_mean_s),
            since_last_scale_s: self.since_last_scale_s * k,
            ..self.clone()
        }
    }

    /// Seconds between the previous decision and this one (`step_s`, or
    /// `interval_s` when the window is the step).
    pub fn step(&self) -> f64 {
        if self.step_s > 0.0 {
            self.step_s
        } else {
            self.interval_s
        }
    }

    /// Arrival rate over the interval, tasks/s.
    pub fn arrival_rate(&self) -> f64 {
        if self.interval_s > 0.0 {
            self.arrivals / self.interval_s
        } else {
            0.0
        }
    }

    /// Completion rate over the interval, tasks/s.
    pub fn completion_rate(&self) -> f64 {
        if self.interval_s > 0.0 {
            self.completions / self.interval_s
        } else {
            0.0
        }
    }

    /// Mean waiting budget of a task, `deadline - service`, seconds: from the
    /// mean deadline when known, else from the tightest deadline (a
    /// conservative stand-in). `None` without a service-time measurement.
    pub fn slack_mean_s(&self) -> Option<f64> {
        let s = self.service_mean_s?;
        let d = self.deadline_mean_s.or(self.deadline_min_s)?;
        Some((d - s).max(0.0))
    }

    /// Share of completions that met their deadline, `None` for an empty window.
    pub fn window_qos(&self) -> Option<f64> {
        (self.completions > 0.0).then(|| self.completions_on_time / self.completions)
    }
}
