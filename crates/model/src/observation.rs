//! The observation vector a learned policy sees: versioned, normalised, and
//! computed from [`Signals`] alone, so the simulator and the live autoscaler
//! build it with the same code.
//!
//! Layout version [`OBS_VERSION`] = 1, [`OBS_DIM`] = 17 features, in order:
//!
//! | # | name | value | range |
//! |---|---|---|---|
//! | 0 | `backlog_log` | `log1p(backlog) / log1p(1000)` | [0, 2] |
//! | 1 | `in_flight_frac` | `in_flight / max_replicas` | [0, 2] |
//! | 2 | `arrival_rate_log` | `log1p(arrivals / interval) / log1p(100)` (tasks/s) | [0, 2] |
//! | 3 | `completion_rate_log` | same for completions | [0, 2] |
//! | 4 | `service_mean_log` | `log1p(service mean s) / log1p(60)`; 0 if window empty | [0, 1.5] |
//! | 5 | `service_p95_log` | same for the service p95 | [0, 1.5] |
//! | 6 | `latency_p95_log` | same for the end-to-end p95 | [0, 1.5] |
//! | 7 | `window_qos` | on-time / completed; 0 if window empty | [0, 1] |
//! | 8 | `window_empty` | 1 when nothing completed in the interval, else 0 | [0, 1] |
//! | 9 | `desired_frac` | `replicas_desired / max_replicas` | [0, 1] |
//! | 10 | `ready_frac` | `replicas_ready / max_replicas` | [0, 1] |
//! | 11 | `starting_frac` | `replicas_starting / max_replicas` | [0, 1] |
//! | 12 | `busy_frac` | `replicas_busy / max_replicas` | [0, 1] |
//! | 13 | `since_scale_log` | `log1p(since_last_scale_s) / log1p(600)` | [0, 1] |
//! | 14 | `offered_load_frac` | `lambda * service mean / max_replicas` (0 if window empty) | [0, 2] |
//! | 15 | `queueing_floor_frac` | [`staffing_estimate`] / `max_replicas` (0 if window empty) | [0, 2] |
//! | 16 | `redeliveries_log` | `log1p(redeliveries) / log1p(100)` | [0, 1] |
//!
//! Every feature is clamped into `[low(), high()]`. Counts are log-scaled
//! because backlogs span orders of magnitude; replica counts are fractions of
//! the farm's own maximum so one policy transfers across farm sizes; times
//! are log-seconds so both a 0.05 s and a 30 s task stay distinguishable.
//!
//! Deliberately absent: any phase counter, step index or wall-clock time
//! (they would let a policy learn the training schedule instead of the
//! farm), and end-to-end time passed off as service time. An empty window is
//! flagged (feature 8) rather than reported as perfect QoS.

use crate::queueing::{DEFAULT_EPS, staffing_estimate};
use crate::signals::Signals;

/// Version of the layout below; bump on any change of meaning or order.
pub const OBS_VERSION: u32 = 1;
/// Number of features.
pub const OBS_DIM: usize = 17;

const NAMES: [&str; OBS_DIM] = [
    "backlog_log",
    "in_flight_frac",
    "arrival_rate_log",
    "completion_rate_log",
    "service_mean_log",
    "service_p95_log",
    "latency_p95_log",
    "window_qos",
    "window_empty",
    "desired_frac",
    "ready_frac",
    "starting_frac",
    "busy_frac",
    "since_scale_log",
    "offered_load_frac",
    "queueing_floor_frac",
    "redeliveries_log",
];

const HIGH: [f32; OBS_DIM] = [
    2.0, 2.0, 2.0, 2.0, 1.5, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 1.0,
];

/// Feature names, in vector order (stable strings, exported as ONNX metadata).
pub fn names() -> [&'static str; OBS_DIM] {
    NAMES
}

/// Lower bound of every feature (all 0).
pub fn low() -> [f32; OBS_DIM] {
    [0.0; OBS_DIM]
}

/// Upper bound of every feature (see the table in the module docs).
pub fn high() -> [f32; OBS_DIM] {
    HIGH
}

/// A description of the normalisation, for ONNX metadata and `GetSpec`.
pub fn normalisation() -> &'static str {
    "farm-model observation v1: counts log1p(x)/log1p(ref) (backlog ref 1000, rates ref 100/s, \
     redeliveries ref 100); replicas / max_replicas; times log1p(s)/log1p(60); since-scale \
     log1p(s)/log1p(600); window_qos 0 with window_empty=1 when nothing completed; clamped to [low, high]"
}

fn log_ratio(x: f64, reference: f64) -> f64 {
    x.max(0.0).ln_1p() / reference.ln_1p()
}

/// Build the normalised observation from one interval's signals.
pub fn observe(s: &Signals) -> [f32; OBS_DIM] {
    let max_r = s.max_replicas.max(1.0);
    let empty = s.completions <= 0.0;
    let time = |t: Option<f64>| t.map_or(0.0, |v| log_ratio(v, 60.0));
    let lambda = s.arrival_rate();
    let offered = match s.service_mean_s {
        Some(m) if !empty => lambda * m / max_r,
        _ => 0.0,
    };
    let floor = if empty {
        0.0
    } else {
        staffing_estimate(s, DEFAULT_EPS).unwrap_or(0.0) / max_r
    };
    let raw: [f64; OBS_DIM] = [
        log_ratio(s.backlog, 1000.0),
        s.in_flight.max(0.0) / max_r,
        log_ratio(lambda, 100.0),
        log_ratio(s.completion_rate(), 100.0),
        if empty { 0.0 } else { time(s.service_mean_s) },
        if empty { 0.0 } else { time(s.service_p95_s) },
        if empty { 0.0 } else { time(s.latency_p95_s) },
        s.window_qos().unwrap_or(0.0),
        if empty { 1.0 } else { 0.0 },
        s.replicas_desired / max_r,
        s.replicas_ready / max_r,
        s.replicas_starting / max_r,
        s.replicas_busy / max_r,
        log_ratio(s.since_last_scale_s, 600.0),
        offered,
        floor,
        log_ratio(s.redeliveries, 100.0),
    ];
    let mut out = [0.0f32; OBS_DIM];
    for i in 0..OBS_DIM {
        let v = if raw[i].is_finite() {
            raw[i] as f32
        } else {
            0.0
        };
        out[i] = v.clamp(0.0, HIGH[i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_window() -> Signals {
        Signals {
            interval_s: 8.0,
            backlog: 12.0,
            in_flight: 8.0,
            arrivals: 60.0,
            completions: 50.0,
            completions_on_time: 45.0,
            service_mean_s: Some(1.5),
            service_p95_s: Some(2.6),
            latency_mean_s: Some(2.0),
            latency_max_s: Some(5.0),
            latency_p95_s: Some(4.0),
            deadline_min_s: Some(0.4),
            deadline_mean_s: Some(3.0),
            replicas_desired: 10.0,
            replicas_ready: 8.0,
            replicas_starting: 2.0,
            replicas_busy: 8.0,
            since_last_scale_s: 16.0,
            redeliveries: 0.0,
            min_replicas: 1.0,
            max_replicas: 32.0,
        }
    }

    #[test]
    fn names_are_unique_and_match_dim() {
        let mut n = names().to_vec();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), OBS_DIM);
    }

    #[test]
    fn values_by_hand() {
        let o = observe(&busy_window());
        let close = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-5;
        assert!(close(o[0], 13f64.ln() / 1001f64.ln()));
        assert!(close(o[1], 8.0 / 32.0));
        // 60 arrivals / 8 s = 7.5/s.
        assert!(close(o[2], 8.5f64.ln() / 101f64.ln()));
        assert!(close(o[7], 0.9));
        assert_eq!(o[8], 0.0);
        assert!(close(o[9], 10.0 / 32.0));
        // Offered load 7.5 * 1.5 = 11.25 replicas.
        assert!(close(o[14], 11.25 / 32.0));
        // The floor is above the offered load.
        assert!(f64::from(o[15]) > 11.25 / 32.0);
    }

    #[test]
    fn empty_window_is_flagged_not_perfect() {
        let mut s = busy_window();
        s.completions = 0.0;
        s.completions_on_time = 0.0;
        s.service_mean_s = None;
        s.service_p95_s = None;
        s.latency_p95_s = None;
        let o = observe(&s);
        assert_eq!(o[7], 0.0);
        assert_eq!(o[8], 1.0);
        assert_eq!(o[15], 0.0);
    }

    #[test]
    fn always_within_bounds() {
        let mut s = busy_window();
        s.backlog = 1e12;
        s.arrivals = 1e9;
        s.max_replicas = 0.0;
        s.service_mean_s = Some(f64::INFINITY);
        let o = observe(&s);
        for (i, v) in o.iter().enumerate() {
            assert!(*v >= low()[i] && *v <= high()[i], "{i}: {v}");
        }
    }
}
