//! The observation vector a learned policy sees: versioned, normalised, and
//! computed from [`Signals`] alone, so the simulator and the live autoscaler
//! build it with the same code.
//!
//! Two layout versions exist. Version 1 ([`OBS_VERSION`], [`OBS_DIM`] = 17
//! features) is one interval seen on its own, built by [`observe`]. Version 2
//! ([`OBS_DIM_V2`] = 23 features) is version 1 followed by
//! [`HISTORY_DIM`] = 6 features about the previous intervals, built by a
//! stateful [`Observer`] (one per farm or episode, reset with it). A model's
//! metadata names the version it was trained on; [`Observer::new`] builds
//! either.
//!
//! Version 1, in order:
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
//! Version 2 appends (`lambda` = arrival rate of an interval; "previous" =
//! the previous call of [`Observer::observe`] since the last reset; at the
//! first call the previous interval is taken to equal this one):
//!
//! | # | name | value | range |
//! |---|---|---|---|
//! | 17 | `prev_arrival_rate_log` | feature 2 of the previous interval | [0, 2] |
//! | 18 | `arrival_trend_log` | `ln((1 + lambda) / (1 + lambda_prev)) / ln(4)` | [-1, 1] |
//! | 19 | `arrival_ewma_log` | `log1p(ewma lambda) / log1p(100)`, weight [`EWMA_WEIGHT`] on the new interval | [0, 2] |
//! | 20 | `floor_ewma_frac` | EWMA (same weight) of the [`staffing_estimate`] / `max_replicas` over non-empty windows; 0 before the first | [0, 2] |
//! | 21 | `floor_peak_frac` | largest staffing estimate of the last [`PEAK_WINDOW`] non-empty windows / `max_replicas` | [0, 2] |
//! | 22 | `desired_change_frac` | `(replicas_desired - previous replicas_desired) / max_replicas`: the last decision's change | [-1, 1] |
//!
//! Version 3 ([`OBS_DIM_V3`] = 31) appends [`MEMORY_DIM`] = 8 features
//! measured in seconds, so one policy serves any decision interval and
//! window: `step_log` and `window_log` (the cadence itself, log1p(s) /
//! log1p(60)), `queue_age_log` (log1p(queue-head age / mean deadline) /
//! log1p(10): tasks already late when above log1p(1)), `plan_frac` (the
//! causal [`crate::planner::Planner`]'s decision / `max_replicas`, also
//! the target of the `mpc:xM` actions), `rate_peak_log` (peak window rate of
//! the last [`LONG_MEMORY_S`] s), `rate_fast_slow_log` (ln of the ratio of
//! 4 s and 60 s rate averages / ln 4), `rate_cv` (coefficient of variation
//! of the window rates of the last 120 s: bursty regimes) and `startup_log`
//! (the planner's start-up estimate, learned from the replicas seen
//! starting).
//!
//! Why these: one 8 s window of a Poisson stream at 7.5 tasks/s has a ~13 %
//! relative noise, and a replica takes 5 - 9 s to start, so a policy needs
//! both a smoothed level (19, 20) to avoid chasing noise downwards and the
//! direction of change (17, 18, 22) to act before a rising load is served.
//!
//! Every feature is clamped into `[low, high]`. Counts are log-scaled
//! because backlogs span orders of magnitude; replica counts are fractions of
//! the farm's own maximum so one policy transfers across farm sizes; times
//! are log-seconds so both a 0.05 s and a 30 s task stay distinguishable.
//!
//! Deliberately absent: any phase counter, step index or wall-clock time
//! (they would let a policy learn the training schedule instead of the
//! farm), and end-to-end time passed off as service time. An empty window is
//! flagged (feature 8) rather than reported as perfect QoS. The history of
//! version 2 is about the farm's own past signals, never about the episode's
//! position.

use std::collections::VecDeque;

use crate::action::Estimates;
use crate::planner::{MpcConfig, Planner};
use crate::queueing::{DEFAULT_EPS, staffing_estimate};
use crate::signals::Signals;

/// Version of the layout below; bump on any change of meaning or order.
pub const OBS_VERSION: u32 = 1;
/// Number of features.
pub const OBS_DIM: usize = 17;

// Version 1 is the first OBS_DIM features of version 2 (one table).
const NAMES: [&str; OBS_DIM] = prefix(NAMES_ALL);

const HIGH: [f32; OBS_DIM] = prefix(HIGH_ALL);

/// The first `N` entries of `all`.
const fn prefix<T: Copy, const N: usize, const M: usize>(all: [T; M]) -> [T; N] {
    assert!(N <= M);
    let mut out = [all[0]; N];
    let mut i = 0;
    while i < N {
        out[i] = all[i];
        i += 1;
    }
    out
}

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

/// The latest layout version [`Observer`] builds.
pub const OBS_VERSION_LATEST: u32 = 3;
/// Number of history features version 2 appends to version 1.
pub const HISTORY_DIM: usize = 6;
/// Number of features of version 2.
pub const OBS_DIM_V2: usize = OBS_DIM + HISTORY_DIM;
/// Number of memory features version 3 appends to version 2.
pub const MEMORY_DIM: usize = 8;
/// Number of features of version 3.
pub const OBS_DIM_V3: usize = OBS_DIM_V2 + MEMORY_DIM;
/// The longest observation of any version.
pub const OBS_DIM_MAX: usize = OBS_DIM_V3;
/// How far back the long memory of version 3 looks, seconds.
pub const LONG_MEMORY_S: f64 = 120.0;
/// Time constants of the fast and slow arrival-rate averages of version 3, seconds.
pub const RATE_TAU_S: (f64, f64) = (4.0, 60.0);
/// Weight of the newest interval in the EWMA features of version 2: 0.5
/// halves the variance of one window's Poisson noise (to a third) while
/// following a step change within two intervals.
pub const EWMA_WEIGHT: f64 = 0.5;
/// Number of non-empty windows `floor_peak_frac` looks back over (this one
/// included): about 24 s at the default 8 s interval, the order of a
/// replica's start-up plus one interval.
pub const PEAK_WINDOW: usize = 3;

const NAMES_ALL: [&str; OBS_DIM_MAX] = [
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
    "prev_arrival_rate_log",
    "arrival_trend_log",
    "arrival_ewma_log",
    "floor_ewma_frac",
    "floor_peak_frac",
    "desired_change_frac",
    "step_log",
    "window_log",
    "queue_age_log",
    "plan_frac",
    "rate_peak_log",
    "rate_fast_slow_log",
    "rate_cv",
    "startup_log",
];

const LOW_ALL: [f32; OBS_DIM_MAX] = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0,
    0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0,
];

const HIGH_ALL: [f32; OBS_DIM_MAX] = [
    2.0, 2.0, 2.0, 2.0, 1.5, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 1.0, 2.0, 1.0,
    2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0,
];

/// Why an observation layout was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObservationError {
    /// No layout with this version exists in this build.
    #[error(
        "observation layout v{version} is not known (this build has v1 to v{OBS_VERSION_LATEST})"
    )]
    UnknownVersion {
        /// The version asked for.
        version: u32,
    },
}

fn check_version(version: u32) -> Result<usize, ObservationError> {
    match version {
        1 => Ok(OBS_DIM),
        2 => Ok(OBS_DIM_V2),
        3 => Ok(OBS_DIM_V3),
        _ => Err(ObservationError::UnknownVersion { version }),
    }
}

/// Number of features of layout `version`.
pub fn dim_of(version: u32) -> Result<usize, ObservationError> {
    check_version(version)
}

/// Feature names of layout `version`, in vector order.
pub fn names_of(version: u32) -> Result<&'static [&'static str], ObservationError> {
    Ok(&NAMES_ALL[..check_version(version)?])
}

/// Lower bounds of layout `version`.
pub fn low_of(version: u32) -> Result<&'static [f32], ObservationError> {
    Ok(&LOW_ALL[..check_version(version)?])
}

/// Upper bounds of layout `version`.
pub fn high_of(version: u32) -> Result<&'static [f32], ObservationError> {
    Ok(&HIGH_ALL[..check_version(version)?])
}

/// The normalisation description of layout `version` (ONNX metadata, `GetSpec`).
pub fn normalisation_of(version: u32) -> Result<&'static str, ObservationError> {
    match check_version(version)? {
        OBS_DIM => Ok(normalisation()),
        OBS_DIM_V3 => Ok(NORMALISATION_V3),
        _ => Ok(
            "farm-model observation v2: v1 (counts log1p(x)/log1p(ref) (backlog ref 1000, rates ref \
             100/s, redeliveries ref 100); replicas / max_replicas; times log1p(s)/log1p(60); \
             since-scale log1p(s)/log1p(600); window_qos 0 with window_empty=1 when nothing \
             completed) then history: previous arrival_rate_log, ln((1+rate)/(1+previous rate))/ln(4), \
             EWMA(0.5) of the rate as log1p/log1p(100), EWMA(0.5) and 3-window peak of the \
             staffing estimate / max_replicas, last desired change / max_replicas; clamped to \
             [low, high]",
        ),
    }
}

const NORMALISATION_V3: &str = "farm-model observation v3: v2 then memory in seconds: \
     log1p(decision step s)/log1p(60), log1p(window s)/log1p(60), log1p(queue-head age / mean \
     deadline)/log1p(10), planner decision / max_replicas, log1p(peak window rate of the last \
     120 s)/log1p(100), ln((1+EWMA 4 s rate)/(1+EWMA 60 s rate))/ln(4), CV of the window rates of \
     the last 120 s, log1p(estimated start-up s)/log1p(60); clamped to [low, high]";

/// One observation of any version: a fixed-capacity vector (no allocation
/// per step) that reads as a slice of its version's length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Obs {
    values: [f32; OBS_DIM_MAX],
    len: usize,
}

impl Obs {
    /// The features, `dim_of(version)` of them.
    pub fn as_slice(&self) -> &[f32] {
        &self.values[..self.len]
    }
}

impl std::ops::Deref for Obs {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a Obs {
    type Item = &'a f32;
    type IntoIter = std::slice::Iter<'a, f32>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl AsRef<[f32]> for Obs {
    fn as_ref(&self) -> &[f32] {
        self.as_slice()
    }
}

/// What version 2 remembers of the previous intervals.
#[derive(Debug, Clone, Default, PartialEq)]
struct History {
    /// Arrival rate of the previous interval, tasks/s.
    prev_rate: f64,
    /// Desired replicas in the previous interval's signals.
    prev_desired: f64,
    /// EWMA of the arrival rate, tasks/s.
    rate_ewma: f64,
    /// EWMA of the staffing estimate (replicas), once a window was non-empty.
    floor_ewma: Option<f64>,
    /// Staffing estimates of the last non-empty windows, newest last.
    floors: [f64; PEAK_WINDOW],
    /// How many of `floors` are filled.
    floors_len: usize,
}

/// Builds observations of one layout version for one farm or episode.
///
/// Version 1 is stateless ([`observe`]); version 2 remembers the previous
/// intervals, so every call of [`Observer::observe`] must be one whole
/// control interval, in order, and [`Observer::reset`] starts a new episode.
/// An out-of-band look at a partial interval (an alert between ticks) goes
/// through a clone, so it does not advance the history.
///
/// ```
/// use farm_model::observation::{Observer, OBS_DIM, OBS_DIM_V2};
/// use farm_model::signals::Signals;
///
/// let mut v1 = Observer::new(1)?;
/// let mut v2 = Observer::new(2)?;
/// let s = Signals { interval_s: 8.0, arrivals: 40.0, max_replicas: 32.0, ..Default::default() };
/// assert_eq!(v1.observe(&s).len(), OBS_DIM);
/// let o = v2.observe(&s);
/// assert_eq!(o.len(), OBS_DIM_V2);
/// assert_eq!(&o[..OBS_DIM], &farm_model::observation::observe(&s)[..]);
/// v2.reset();
/// # Ok::<(), farm_model::observation::ObservationError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Observer {
    version: u32,
    history: Option<History>,
    memory: Option<Memory>,
}

/// What version 3 remembers, measured in seconds so that it means the same
/// at any decision interval.
#[derive(Debug, Clone, PartialEq)]
struct Memory {
    /// Seconds observed since the reset (sum of the decision steps).
    clock_s: f64,
    /// The causal planner, fed every interval (its decision is feature 26
    /// and the target of the `mpc:xM` actions).
    planner: Planner,
    plan: Option<f64>,
    /// (time, window arrival rate) of the last [`LONG_MEMORY_S`] seconds.
    rates: VecDeque<(f64, f64)>,
    fast: f64,
    slow: f64,
}

impl Memory {
    fn new() -> Memory {
        Memory {
            clock_s: 0.0,
            planner: Planner::new(MpcConfig::default(), 0.0, 8.0),
            plan: None,
            rates: VecDeque::new(),
            fast: 0.0,
            slow: 0.0,
        }
    }

    /// Advance by one interval; the raw memory features of layout 3.
    fn advance(&mut self, s: &Signals) -> [f64; MEMORY_DIM] {
        let step = s.step().max(0.0);
        let first = self.rates.is_empty();
        self.clock_s += step;
        let t = self.clock_s;
        let lo = s.min_replicas.max(0.0) as u32;
        let hi = (s.max_replicas.max(1.0) as u32).max(lo);
        let plan = self.planner.decide(t, s, lo, hi);
        self.plan = Some(f64::from(plan));
        let rate = s.arrival_rate().max(0.0);
        let rate = if rate.is_finite() { rate } else { 0.0 };
        let blend = |old: f64, tau: f64| {
            if first {
                rate
            } else {
                let a = 1.0 - (-step / tau).exp();
                a * rate + (1.0 - a) * old
            }
        };
        self.fast = blend(self.fast, RATE_TAU_S.0);
        self.slow = blend(self.slow, RATE_TAU_S.1);
        self.rates.push_back((t, rate));
        while self
            .rates
            .front()
            .is_some_and(|&(t0, _)| t0 < t - LONG_MEMORY_S - 1e-9)
        {
            self.rates.pop_front();
        }
        let n = self.rates.len() as f64;
        let mean = self.rates.iter().map(|r| r.1).sum::<f64>() / n;
        let peak = self.rates.iter().map(|r| r.1).fold(0.0, f64::max);
        let var = self.rates.iter().map(|r| (r.1 - mean).powi(2)).sum::<f64>() / n;
        let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
        let deadline = s
            .deadline_mean_s
            .or(s.deadline_min_s)
            .or(s.service_mean_s)
            .filter(|d| *d > 0.0)
            .unwrap_or(1.0);
        let max_r = s.max_replicas.max(1.0);
        [
            log_ratio(step, 60.0),
            log_ratio(s.interval_s, 60.0),
            (s.oldest_age_s.max(0.0) / deadline).ln_1p() / 10f64.ln_1p(),
            f64::from(plan) / max_r,
            log_ratio(peak, 100.0),
            ((1.0 + self.fast) / (1.0 + self.slow)).ln() / 4f64.ln(),
            cv,
            log_ratio(self.planner.startup_estimate(), 60.0),
        ]
    }
}

impl Observer {
    /// An observer of layout `version` (1 or 2).
    pub fn new(version: u32) -> Result<Observer, ObservationError> {
        check_version(version)?;
        Ok(Observer {
            version,
            history: None,
            memory: (version >= 3).then(Memory::new),
        })
    }

    /// An observer of layout version 1 (the default; infallible).
    pub const fn v1() -> Observer {
        Observer {
            version: 1,
            history: None,
            memory: None,
        }
    }

    /// The layout version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Number of features per observation.
    pub fn dim(&self) -> usize {
        check_version(self.version).unwrap_or(OBS_DIM)
    }

    /// Forget the history (a new episode, or a farm whose policy changed).
    pub fn reset(&mut self) {
        self.history = None;
        if let Some(m) = self.memory.as_mut() {
            *m = Memory::new();
        }
    }

    /// The staffing estimates remembered so far (replicas): the EWMA and
    /// the [`PEAK_WINDOW`] peak of the [`staffing_estimate`] over non-empty
    /// windows, as of the last [`Observer::observe`]. Kept for every layout
    /// version (v1 observations do not show them) because the `smoothed:xM`
    /// and `peak:xM` actions ([`crate::action::Action`]) follow them.
    pub fn estimates(&self) -> Estimates {
        let plan = self.memory.as_ref().and_then(|m| m.plan);
        match &self.history {
            Some(h) => Estimates {
                plan,
                smoothed: h.floor_ewma,
                peak: (h.floors_len > 0)
                    .then(|| h.floors[..h.floors_len].iter().copied().fold(0.0, f64::max)),
            },
            None => Estimates {
                plan,
                ..Estimates::default()
            },
        }
    }

    /// The observation of one interval; advances the history (for every
    /// version: v1 does not show it, but [`Observer::estimates`] does).
    pub fn observe(&mut self, s: &Signals) -> Obs {
        let mut values = [0.0f32; OBS_DIM_MAX];
        values[..OBS_DIM].copy_from_slice(&observe(s));
        let history = self.advance(s);
        if self.version == 1 {
            return Obs {
                values,
                len: OBS_DIM,
            };
        }
        for (i, r) in history.iter().enumerate() {
            let k = OBS_DIM + i;
            let v = if r.is_finite() { *r as f32 } else { 0.0 };
            values[k] = v.clamp(LOW_ALL[k], HIGH_ALL[k]);
        }
        let Some(memory) = self.memory.as_mut() else {
            return Obs {
                values,
                len: OBS_DIM_V2,
            };
        };
        for (i, r) in memory.advance(s).iter().enumerate() {
            let k = OBS_DIM_V2 + i;
            let v = if r.is_finite() { *r as f32 } else { 0.0 };
            values[k] = v.clamp(LOW_ALL[k], HIGH_ALL[k]);
        }
        Obs {
            values,
            len: OBS_DIM_V3,
        }
    }

    /// Update the history with one interval; the raw (unclamped) history
    /// features of layout 2.
    fn advance(&mut self, s: &Signals) -> [f64; HISTORY_DIM] {
        let max_r = s.max_replicas.max(1.0);
        let lambda = s.arrival_rate().max(0.0);
        let lambda = if lambda.is_finite() { lambda } else { 0.0 };
        let floor = if s.completions > 0.0 {
            staffing_estimate(s, DEFAULT_EPS).filter(|f| f.is_finite())
        } else {
            None
        };
        let h = self.history.get_or_insert_with(|| History {
            prev_rate: lambda,
            prev_desired: s.replicas_desired,
            rate_ewma: lambda,
            ..History::default()
        });
        let prev_rate = h.prev_rate;
        let prev_desired = h.prev_desired;
        h.rate_ewma = EWMA_WEIGHT * lambda + (1.0 - EWMA_WEIGHT) * h.rate_ewma;
        if let Some(f) = floor {
            h.floor_ewma = Some(match h.floor_ewma {
                Some(e) => EWMA_WEIGHT * f + (1.0 - EWMA_WEIGHT) * e,
                None => f,
            });
            if h.floors_len == PEAK_WINDOW {
                h.floors.rotate_left(1);
                h.floors[PEAK_WINDOW - 1] = f;
            } else {
                h.floors[h.floors_len] = f;
                h.floors_len += 1;
            }
        }
        let peak = h.floors[..h.floors_len].iter().copied().fold(0.0, f64::max);
        let raw: [f64; HISTORY_DIM] = [
            log_ratio(prev_rate, 100.0),
            ((1.0 + lambda) / (1.0 + prev_rate)).ln() / 4f64.ln(),
            log_ratio(h.rate_ewma, 100.0),
            h.floor_ewma.unwrap_or(0.0) / max_r,
            peak / max_r,
            (s.replicas_desired - prev_desired) / max_r,
        ];
        h.prev_rate = lambda;
        h.prev_desired = s.replicas_desired;
        raw
    }
}

/// Build the normalised observation from one interval's signals (layout
/// version 1; [`Observer`] builds any version).
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
            ..Signals::default()
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
    fn v1_observer_is_observe() {
        let mut o = Observer::new(1).unwrap();
        let s = busy_window();
        let a = o.observe(&s);
        assert_eq!(a.len(), OBS_DIM);
        assert_eq!(a.as_slice(), &observe(&s)[..]);
        assert_eq!(names_of(1).unwrap(), &names()[..]);
        assert_eq!(high_of(1).unwrap(), &high()[..]);
        assert_eq!(low_of(1).unwrap(), &low()[..]);
        assert_eq!(normalisation_of(1).unwrap(), normalisation());
        // Stateless: the same signals give the same vector.
        assert_eq!(o.observe(&s), a);
    }

    #[test]
    fn unknown_versions_are_refused() {
        for v in [0, 4, 17] {
            assert_eq!(
                Observer::new(v),
                Err(ObservationError::UnknownVersion { version: v })
            );
            assert!(matches!(
                names_of(v),
                Err(ObservationError::UnknownVersion { .. })
            ));
            assert!(dim_of(v).is_err());
        }
    }

    #[test]
    fn v2_layout_extends_v1() {
        let n = names_of(2).unwrap();
        assert_eq!(n.len(), OBS_DIM_V2);
        assert_eq!(&n[..OBS_DIM], &names()[..]);
        let mut sorted = n.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), OBS_DIM_V2);
        assert_eq!(dim_of(2).unwrap(), OBS_DIM_V2);
        assert_eq!(&high_of(2).unwrap()[..OBS_DIM], &high()[..]);
        assert_eq!(&low_of(2).unwrap()[..OBS_DIM], &low()[..]);
    }

    #[test]
    fn v2_history_by_hand() {
        let close = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-5;
        let mut o = Observer::new(2).unwrap();
        let s1 = busy_window();
        let f1 = staffing_estimate(&s1, DEFAULT_EPS).unwrap();
        let a = o.observe(&s1);
        assert_eq!(&a[..OBS_DIM], &observe(&s1)[..]);
        // First interval: the previous one is taken to equal it.
        assert!(close(a[17], a[2].into()));
        assert!(close(a[18], 0.0));
        assert!(close(a[19], a[2].into()));
        assert!(close(a[20], f1 / 32.0));
        assert!(close(a[21], f1 / 32.0));
        assert!(close(a[22], 0.0));

        // The load doubles (15/s) and the policy asked for 6 more replicas.
        let mut s2 = busy_window();
        s2.arrivals = 120.0;
        s2.replicas_desired = 16.0;
        let f2 = staffing_estimate(&s2, DEFAULT_EPS).unwrap();
        assert!(f2 > f1);
        let b = o.observe(&s2);
        assert!(close(b[17], 8.5f64.ln() / 101f64.ln()));
        assert!(close(b[18], (16.0f64 / 8.5).ln() / 4f64.ln()));
        // EWMA rate 0.5 * 15 + 0.5 * 7.5 = 11.25/s.
        assert!(close(b[19], 12.25f64.ln() / 101f64.ln()));
        assert!(close(b[20], (0.5 * f2 + 0.5 * f1) / 32.0));
        assert!(close(b[21], f2 / 32.0));
        assert!(close(b[22], 6.0 / 32.0));

        // An empty window keeps the staffing history; the load falls back.
        let mut s3 = busy_window();
        s3.completions = 0.0;
        s3.completions_on_time = 0.0;
        s3.service_mean_s = None;
        s3.replicas_desired = 16.0;
        let c = o.observe(&s3);
        assert!(close(c[17], 16f64.ln() / 101f64.ln()));
        assert!(f64::from(c[18]) < 0.0);
        assert!(close(c[20], b[20].into()));
        assert!(close(c[21], f2 / 32.0));
        assert!(close(c[22], 0.0));

        // Reset forgets it all: the same signals give the first vector again.
        o.reset();
        assert_eq!(o.observe(&s1), a);
    }

    #[test]
    fn v2_peak_looks_back_a_bounded_window() {
        let mut o = Observer::new(2).unwrap();
        let mut high_load = busy_window();
        high_load.arrivals = 160.0;
        let peak = staffing_estimate(&high_load, DEFAULT_EPS).unwrap() / 32.0;
        o.observe(&high_load);
        let low_load = busy_window();
        let base = staffing_estimate(&low_load, DEFAULT_EPS).unwrap() / 32.0;
        for _ in 1..PEAK_WINDOW {
            let x = o.observe(&low_load);
            assert!((f64::from(x[21]) - peak).abs() < 1e-5);
        }
        let x = o.observe(&low_load);
        assert!((f64::from(x[21]) - base).abs() < 1e-5);
    }

    #[test]
    fn v3_memory_by_hand() {
        let mut o = Observer::new(3).unwrap();
        let n = names_of(3).unwrap();
        assert_eq!(n.len(), OBS_DIM_V3);
        assert_eq!(&n[..OBS_DIM_V2], names_of(2).unwrap());
        let mut s = busy_window();
        s.interval_s = 8.0;
        s.step_s = 2.0;
        s.oldest_age_s = 3.0;
        let first = s.clone();
        let a = o.observe(&s);
        assert_eq!(a.len(), OBS_DIM_V3);
        let mut v2 = Observer::new(2).unwrap();
        assert_eq!(&a[..OBS_DIM_V2], &v2.observe(&s)[..]);
        let close = |x: f32, y: f64| (f64::from(x) - y).abs() < 1e-5;
        assert!(close(a[23], 3f64.ln() / 61f64.ln()));
        assert!(close(a[24], 9f64.ln() / 61f64.ln()));
        // Age 3 s against a mean deadline of 3 s: log1p(1) / log1p(10).
        assert!(close(a[25], 2f64.ln() / 11f64.ln()));
        let plan = o.estimates().plan.unwrap();
        assert!(plan >= 8.0, "{plan}");
        assert!(close(a[26], plan / 32.0));
        // One sample: peak = the rate, no trend, no spread.
        assert!(close(a[27], 8.5f64.ln() / 101f64.ln()));
        assert!(close(a[28], 0.0) && close(a[29], 0.0));
        // A burst: the peak remembers it, the fast average leads the slow one.
        s.arrivals = 240.0;
        let b = o.observe(&s);
        assert!(close(b[27], 31f64.ln() / 101f64.ln()));
        assert!(b[28] > 0.0 && b[29] > 0.5);
        // The plan follows the burst; reset forgets it.
        assert!(o.estimates().plan.unwrap() > plan);
        o.reset();
        assert_eq!(o.observe(&first), a);
    }

    #[test]
    fn v3_always_within_bounds() {
        let mut o = Observer::new(3).unwrap();
        let (lo, hi) = (low_of(3).unwrap(), high_of(3).unwrap());
        let mut s = busy_window();
        for (arrivals, age) in [(0.0, 0.0), (1e9, 1e9), (0.0, f64::NAN), (f64::NAN, 5.0)] {
            s.arrivals = arrivals;
            s.oldest_age_s = age;
            let x = o.observe(&s);
            for (i, v) in x.iter().enumerate() {
                assert!(*v >= lo[i] && *v <= hi[i], "{i}: {v}");
            }
        }
    }

    #[test]
    fn v2_always_within_bounds() {
        let mut o = Observer::new(2).unwrap();
        let (lo, hi) = (low_of(2).unwrap(), high_of(2).unwrap());
        let mut s = busy_window();
        for (arrivals, desired) in [(0.0, 0.0), (1e9, 1e6), (0.0, 0.0), (f64::NAN, 5.0)] {
            s.arrivals = arrivals;
            s.replicas_desired = desired;
            let x = o.observe(&s);
            for (i, v) in x.iter().enumerate() {
                assert!(*v >= lo[i] && *v <= hi[i], "{i}: {v}");
            }
        }
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
