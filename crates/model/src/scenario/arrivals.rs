//! Arrival processes: rate phases over a base rate (Poisson or deterministic),
//! a two-state Markov-modulated Poisson process, and per-second count traces.

use rand::Rng;
use rand_distr::{Distribution, Poisson};
use serde::{Deserialize, Serialize};

use super::ScenarioError;

/// How tasks arrive.
///
/// YAML: a map with `kind: phases | mmpp | trace` and the fields of that kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Arrivals {
    /// A sequence of phases, each shaping a rate multiplier over `base_rate`.
    Phases {
        /// Poisson (random) or deterministic (evenly spread) arrivals.
        #[serde(default)]
        process: Process,
        /// Base arrival rate, tasks per second; phases multiply it.
        base_rate: f64,
        /// Phases in order; the workload lasts the sum of their durations.
        phases: Vec<Phase>,
    },
    /// Two-state Markov-modulated Poisson process (bursty traffic): the
    /// process stays in state `i` for an exponential time of mean
    /// `mean_sojourn_s[i]`, arriving as a Poisson process of rate `rates[i]`.
    /// It starts in state 0.
    Mmpp {
        /// Arrival rate in each state, tasks per second.
        rates: [f64; 2],
        /// Mean time spent in each state before switching, seconds.
        mean_sojourn_s: [f64; 2],
        /// Length of the arrival window, seconds.
        duration_s: f64,
    },
    /// Recorded per-second arrival counts: exactly `counts[k]` tasks arrive in
    /// second `k`, spread within the second like a Poisson process (uniform
    /// order statistics, i.e. exponential gaps conditioned on the count).
    Trace {
        /// Tasks arriving in each one-second window.
        counts: Vec<u32>,
    },
}

/// Whether arrivals of a rate-shaped workload are random or evenly spread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Process {
    /// Poisson: the count in each one-second window is Poisson with the rate
    /// integrated over the window; inside the window arrivals follow the
    /// (possibly varying) rate, with exponential gaps for a flat rate.
    #[default]
    Poisson,
    /// Deterministic: the n-th task arrives when the integrated rate reaches
    /// n + 1/2, so a flat rate r gives a task every 1/r seconds.
    Deterministic,
}

/// One phase of a rate-shaped workload. The multiplier `m(t)` is a function of
/// the time `t` since the start of the phase; the rate is `base_rate * m(t)`.
///
/// YAML: a map with `shape: constant | ramp | sine | square | spike`,
/// `duration_s`, and the shape's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Phase {
    /// `m(t) = level`.
    Constant {
        /// Phase length, seconds.
        duration_s: f64,
        /// Rate multiplier.
        level: f64,
    },
    /// Linear ramp from `from` at the start to `to` at the end.
    Ramp {
        /// Phase length, seconds.
        duration_s: f64,
        /// Multiplier at the start.
        from: f64,
        /// Multiplier at the end.
        to: f64,
    },
    /// `m(t) = mid + amp * sin(2 pi (t / period_s + offset))` with
    /// `mid = (min + max) / 2`, `amp = (max - min) / 2`: starts at the middle
    /// going up when `offset` is 0; `offset: 0.75` starts at the trough.
    Sine {
        /// Phase length, seconds.
        duration_s: f64,
        /// Lowest multiplier.
        min: f64,
        /// Highest multiplier.
        max: f64,
        /// Period of one full cycle, seconds.
        period_s: f64,
        /// Starting point within the cycle, fraction of a period in [0, 1).
        #[serde(default)]
        offset: f64,
    },
    /// Square wave: `high` for the first `duty * period_s` of each period,
    /// `low` for the rest.
    Square {
        /// Phase length, seconds.
        duration_s: f64,
        /// Multiplier in the low part.
        low: f64,
        /// Multiplier in the high part.
        high: f64,
        /// Period of one cycle, seconds.
        period_s: f64,
        /// Share of each period at `high`, in (0, 1).
        #[serde(default = "half")]
        duty: f64,
    },
    /// Flash crowd: `level`, except `peak` during `[start_s, start_s + length_s)`.
    Spike {
        /// Phase length, seconds.
        duration_s: f64,
        /// Multiplier outside the spike.
        level: f64,
        /// Multiplier during the spike.
        peak: f64,
        /// Start of the spike from the start of the phase, seconds.
        start_s: f64,
        /// Length of the spike, seconds.
        length_s: f64,
    },
}

fn half() -> f64 {
    0.5
}

impl Phase {
    /// Phase length, seconds.
    pub fn duration_s(&self) -> f64 {
        match *self {
            Phase::Constant { duration_s, .. }
            | Phase::Ramp { duration_s, .. }
            | Phase::Sine { duration_s, .. }
            | Phase::Square { duration_s, .. }
            | Phase::Spike { duration_s, .. } => duration_s,
        }
    }

    /// Rate multiplier at `t` seconds into the phase.
    pub fn multiplier(&self, t: f64) -> f64 {
        match *self {
            Phase::Constant { level, .. } => level,
            Phase::Ramp {
                duration_s,
                from,
                to,
            } => {
                if duration_s > 0.0 {
                    from + (to - from) * (t / duration_s)
                } else {
                    from
                }
            }
            Phase::Sine {
                min,
                max,
                period_s,
                offset,
                ..
            } => {
                let (mid, amp) = ((min + max) / 2.0, (max - min) / 2.0);
                mid + amp * (std::f64::consts::TAU * (t / period_s + offset)).sin()
            }
            Phase::Square {
                low,
                high,
                period_s,
                duty,
                ..
            } => {
                if (t / period_s).fract() < duty {
                    high
                } else {
                    low
                }
            }
            Phase::Spike {
                level,
                peak,
                start_s,
                length_s,
                ..
            } => {
                if t >= start_s && t < start_s + length_s {
                    peak
                } else {
                    level
                }
            }
        }
    }

    /// Integral of the multiplier over `[0, t]` (closed form per shape), so
    /// window counts use the exact integrated rate.
    pub fn cumulative(&self, t: f64) -> f64 {
        self.cumulative_with(t, self.start_cos())
    }

    /// `cos(2 pi offset)` for a sine phase (0 otherwise): constant per
    /// phase, so [`RateCurve`] computes it once instead of on every call.
    fn start_cos(&self) -> f64 {
        match *self {
            Phase::Sine { offset, .. } => (std::f64::consts::TAU * offset).cos(),
            _ => 0.0,
        }
    }

    /// [`Phase::cumulative`] given [`Phase::start_cos`], same arithmetic.
    fn cumulative_with(&self, t: f64, start_cos: f64) -> f64 {
        match *self {
            Phase::Constant { level, .. } => level * t,
            Phase::Ramp {
                duration_s,
                from,
                to,
            } => {
                if duration_s > 0.0 {
                    from * t + (to - from) * t * t / (2.0 * duration_s)
                } else {
                    from * t
                }
            }
            Phase::Sine {
                min,
                max,
                period_s,
                offset,
                ..
            } => {
                let (mid, amp) = ((min + max) / 2.0, (max - min) / 2.0);
                let w = std::f64::consts::TAU / period_s;
                let start = std::f64::consts::TAU * offset;
                mid * t + amp / w * (start_cos - (w * t + start).cos())
            }
            Phase::Square {
                low,
                high,
                period_s,
                duty,
                ..
            } => {
                let cycles = (t / period_s).floor();
                let per_cycle = period_s * (duty * high + (1.0 - duty) * low);
                let rest = t - cycles * period_s;
                let high_part = rest.min(duty * period_s);
                cycles * per_cycle + high_part * high + (rest - high_part) * low
            }
            Phase::Spike {
                level,
                peak,
                start_s,
                length_s,
                ..
            } => {
                let in_spike = (t.min(start_s + length_s) - start_s).max(0.0);
                level * (t - in_spike) + peak * in_spike
            }
        }
    }
}

/// Constants of a sine phase that [`Phase::multiplier`] and
/// [`Phase::cumulative`] recompute on every call (two divisions among
/// them), computed once per curve with the same operations, so results are
/// bit for bit the ones of the per-call formulas.
#[derive(Debug, Clone, Copy)]
struct SineConsts {
    mid: f64,
    amp: f64,
    period_s: f64,
    offset: f64,
    /// `TAU / period_s`.
    w: f64,
    /// `TAU * offset`.
    start: f64,
    /// `amp / w`.
    amp_w: f64,
    /// `cos(start)`.
    start_cos: f64,
}

impl SineConsts {
    fn of(p: &Phase) -> Option<SineConsts> {
        let Phase::Sine {
            min,
            max,
            period_s,
            offset,
            ..
        } = *p
        else {
            return None;
        };
        let (mid, amp) = ((min + max) / 2.0, (max - min) / 2.0);
        let w = std::f64::consts::TAU / period_s;
        Some(SineConsts {
            mid,
            amp,
            period_s,
            offset,
            w,
            start: std::f64::consts::TAU * offset,
            amp_w: amp / w,
            start_cos: p.start_cos(),
        })
    }

    /// [`Phase::multiplier`] of the sine phase, same arithmetic.
    fn multiplier(&self, t: f64) -> f64 {
        self.mid + self.amp * (std::f64::consts::TAU * (t / self.period_s + self.offset)).sin()
    }

    /// [`Phase::cumulative_with`] of the sine phase, same arithmetic.
    fn cumulative(&self, t: f64) -> f64 {
        self.mid * t + self.amp_w * (self.start_cos - (self.w * t + self.start).cos())
    }
}

/// A piecewise rate function over the whole workload, built from phases.
///
/// Workload generation inverts it once per arrival (Newton steps, each one
/// [`RateCurve::cumulative`] and one rate; Poisson windows inside a sine
/// phase use the cheaper local form of [`SineWindow`]), so the hot path
/// caches what the phase formulas would recompute (see [`SineConsts`]) and
/// finds a time's phase once per Newton step, with results bit for bit
/// those of the plain formulas (`cargo bench -p farm-model --bench
/// generate` prints a fingerprint of every generated bit).
struct RateCurve<'a> {
    base_rate: f64,
    phases: &'a [Phase],
    /// Start time of each phase, seconds.
    starts: Vec<f64>,
    /// Integrated rate (tasks) at the start of each phase.
    cum_at_start: Vec<f64>,
    /// [`Phase::start_cos`] of each phase.
    start_cos: Vec<f64>,
    /// [`SineConsts`] of each sine phase.
    sine: Vec<Option<SineConsts>>,
    /// Whether `starts` strictly increases (every duration positive, as
    /// validation demands), which the interval test of
    /// [`RateCurve::phase_near`] relies on.
    increasing: bool,
    duration_s: f64,
}

impl<'a> RateCurve<'a> {
    fn new(base_rate: f64, phases: &'a [Phase]) -> Self {
        let mut starts = Vec::with_capacity(phases.len());
        let mut cum_at_start = Vec::with_capacity(phases.len());
        let start_cos: Vec<f64> = phases.iter().map(Phase::start_cos).collect();
        let sine = phases.iter().map(SineConsts::of).collect();
        let (mut t, mut cum) = (0.0, 0.0);
        for p in phases {
            starts.push(t);
            cum_at_start.push(cum);
            t += p.duration_s();
            cum += base_rate * p.cumulative(p.duration_s());
        }
        let increasing = starts.windows(2).all(|w| w[0] < w[1]);
        RateCurve {
            base_rate,
            phases,
            starts,
            cum_at_start,
            start_cos,
            sine,
            increasing,
            duration_s: t,
        }
    }

    fn phase_at(&self, t: f64) -> usize {
        // Phases are few; the last phase whose start is <= t.
        self.starts
            .iter()
            .rposition(|&s| s <= t)
            .unwrap_or_default()
    }

    /// [`RateCurve::phase_at`], trying phase `hint` first: with increasing
    /// starts, `hint` is the answer when `t` lies in its interval.
    fn phase_near(&self, t: f64, hint: usize) -> usize {
        if self.increasing
            && hint < self.starts.len()
            && self.starts[hint] <= t
            && self.starts.get(hint + 1).is_none_or(|&next| t < next)
        {
            hint
        } else {
            self.phase_at(t)
        }
    }

    /// Rate at `t` (in phase `i`, see [`RateCurve::phase_at`]), tasks per
    /// second (never negative).
    fn rate_in(&self, i: usize, t: f64) -> f64 {
        let local = t - self.starts[i];
        let m = match &self.sine[i] {
            Some(c) => c.multiplier(local),
            None => self.phases[i].multiplier(local),
        };
        (self.base_rate * m).max(0.0)
    }

    /// Expected tasks in `[0, t]` for `t` in `[0, duration_s]` in phase `i`.
    fn cumulative_in(&self, i: usize, t: f64) -> f64 {
        let local = t - self.starts[i];
        let c = match &self.sine[i] {
            Some(c) => c.cumulative(local),
            None => self.phases[i].cumulative_with(local, self.start_cos[i]),
        };
        self.cum_at_start[i] + self.base_rate * c
    }

    /// Expected tasks in `[0, t]`.
    fn cumulative(&self, t: f64) -> f64 {
        if self.phases.is_empty() {
            return 0.0;
        }
        let t = t.clamp(0.0, self.duration_s);
        self.cumulative_in(self.phase_at(t), t)
    }

    /// [`SineWindow`] of the window `[a, b]` when it lies inside one sine
    /// phase (bounds included) and spans at most
    /// [`SINE_WINDOW_MAX_ANGLE`] radians; `None` otherwise.
    fn sine_window(&self, a: f64, b: f64) -> Option<SineWindow> {
        let i = self.phase_at(a);
        let c = self.sine.get(i).copied().flatten()?;
        let end = self.starts.get(i + 1).copied().unwrap_or(self.duration_s);
        let h = b - a;
        if !(self.starts[i] <= a && b <= end && h > 0.0 && c.w * h <= SINE_WINDOW_MAX_ANGLE) {
            return None;
        }
        let theta0 = c.w * (a - self.starts[i]) + c.start;
        let (mid, amp, w) = (self.base_rate * c.mid, self.base_rate * c.amp, c.w);
        let (c0, s0) = (theta0.cos(), theta0.sin());
        // The cumulative from the window's start is a1 δ + a2 δ^2 + a3 δ^3
        // + a4 δ^4 + ...; reverting the series gives a first guess that is
        // off by O((w δ)^5), close enough for one Halley step to finish.
        // Only while the rate at the start dominates the series (a rate
        // near zero would make it diverge; the linear guess is used then).
        let a1 = mid + amp * s0;
        let mut b = [0.0; 4];
        if a1 > 0.25 * amp.abs() && a1 > 0.0 {
            let a2 = amp * w * c0 / 2.0;
            let a3 = -amp * w * w * s0 / 6.0;
            let a4 = -amp * w * w * w * c0 / 24.0;
            let r = 1.0 / a1;
            let r3 = r * r * r;
            let r5 = r3 * r * r;
            b = [
                r,
                -a2 * r3,
                (2.0 * a2 * a2 - a1 * a3) * r5,
                (5.0 * a1 * a2 * a3 - a1 * a1 * a4 - 5.0 * a2 * a2 * a2) * r5 * r * r,
            ];
        }
        Some(SineWindow {
            mid,
            amp,
            amp_w: self.base_rate * c.amp_w,
            w,
            c0,
            s0,
            h,
            b,
        })
    }

    /// The time in `[lo, hi]` at which the integrated rate reaches `target`:
    /// safeguarded Newton (the rate is the derivative), bisection fallback.
    /// Bounded to 60 iterations. `clo` and `chi` are `cumulative(lo)` and
    /// `cumulative(hi)`, which the callers already have. The curve has at
    /// least one phase.
    fn invert(&self, target: f64, mut lo: f64, mut hi: f64, clo: f64, chi: f64) -> f64 {
        let mut t = lo + 0.5 * (hi - lo);
        if self.phases.is_empty() {
            // Not reached: a curve without phases has no arrivals to place.
            return t;
        }
        if chi > clo {
            t = lo + (hi - lo) * ((target - clo) / (chi - clo)).clamp(0.0, 1.0);
        }
        let mut phase = self.phase_at(t);
        for _ in 0..60 {
            // The cumulative is taken at t clamped to the curve, the rate at
            // t itself; both in the same phase unless the clamp moved t.
            let tc = t.clamp(0.0, self.duration_s);
            phase = self.phase_near(tc, phase);
            let f = self.cumulative_in(phase, tc) - target;
            if f.abs() < 1e-12 * (1.0 + target.abs()) {
                break;
            }
            if f > 0.0 {
                hi = t;
            } else {
                lo = t;
            }
            let rate_phase = if tc == t { phase } else { self.phase_at(t) };
            let r = self.rate_in(rate_phase, t);
            let newton = if r > 0.0 { t - f / r } else { f64::NAN };
            t = if newton > lo && newton < hi {
                newton
            } else {
                0.5 * (lo + hi)
            };
            if hi - lo < 1e-12 {
                break;
            }
        }
        t
    }
}

/// Largest phase angle `w * (b - a)` one window of a sine phase may span
/// for [`SineWindow`]: [`sin_and_versin`]'s series are exact to a few
/// units in the last place up to it. Wider windows (periods under about
/// 6.3 s for one-second windows) take [`RateCurve::invert`].
const SINE_WINDOW_MAX_ANGLE: f64 = 1.0;

/// `(sin x, 1 - cos x)` for `|x| <= SINE_WINDOW_MAX_ANGLE`, by their Taylor
/// series to the `x^19` / `x^20` terms (the first term left out is below
/// 1e-17 at `|x| = 1`). `1 - cos x` is summed directly, without the
/// cancellation of subtracting a cosine from one. Plain multiplies and
/// adds: `mul_add` is a library call on the baseline x86-64 target.
#[inline(always)]
fn sin_and_versin(x: f64) -> (f64, f64) {
    const S: [f64; 9] = [
        -1.0 / 6.0,
        1.0 / 120.0,
        -1.0 / 5040.0,
        1.0 / 362_880.0,
        -1.0 / 39_916_800.0,
        1.0 / 6_227_020_800.0,
        -1.0 / 1_307_674_368_000.0,
        1.0 / 355_687_428_096_000.0,
        -1.0 / 121_645_100_408_832_000.0,
    ];
    const V: [f64; 10] = [
        1.0 / 2.0,
        -1.0 / 24.0,
        1.0 / 720.0,
        -1.0 / 40_320.0,
        1.0 / 3_628_800.0,
        -1.0 / 479_001_600.0,
        1.0 / 87_178_291_200.0,
        -1.0 / 20_922_789_888_000.0,
        1.0 / 6_402_373_705_728_000.0,
        -1.0 / 2_432_902_008_176_640_000.0,
    ];
    // Estrin's scheme: the powers of z and the pairs of terms are
    // independent, so the two series take a few multiply latencies, not
    // nine or ten in a row (Horner's rule made this inversion as slow as
    // the libm calls it replaces).
    let z = x * x;
    let z2 = z * z;
    let z4 = z2 * z2;
    let z8 = z4 * z4;
    let s = (S[0] + S[1] * z)
        + z2 * (S[2] + S[3] * z)
        + z4 * ((S[4] + S[5] * z) + z2 * (S[6] + S[7] * z))
        + z8 * S[8];
    let v = (V[0] + V[1] * z)
        + z2 * (V[2] + V[3] * z)
        + z4 * ((V[4] + V[5] * z) + z2 * (V[6] + V[7] * z))
        + z8 * (V[8] + V[9] * z);
    (x + x * z * s, z * v)
}

/// The integrated rate of a sine phase over one arrival window `[a, a + h]`
/// inside it, in local form. With `θ0` the phase angle at `a` and
/// `φ = w δ`, the angle-addition formulas give
///
/// `C(a + δ) - C(a) = base (mid δ + (amp / w) (cos θ0 (1 - cos φ) + sin θ0 sin φ))`
///
/// and the rate `base (mid + amp (sin θ0 cos φ + cos θ0 sin φ))`: the same
/// curve as [`RateCurve::cumulative`], with one `sin` and one `cos` per
/// window instead of a `cos` and a `sin` per Newton step, and with the
/// tasks counted from the window's start (a few units, not the hundreds of
/// the whole run), so the inversion is also more precise.
#[derive(Debug, Clone, Copy)]
struct SineWindow {
    /// `base * mid`.
    mid: f64,
    /// `base * amp`.
    amp: f64,
    /// `base * amp / w`.
    amp_w: f64,
    /// Angular frequency `w`, radians per second.
    w: f64,
    /// `cos θ0`.
    c0: f64,
    /// `sin θ0`.
    s0: f64,
    /// Window length `h`, seconds.
    h: f64,
    /// Coefficients of the inverse series `δ(y) = b1 y + b2 y^2 + b3 y^3 +
    /// b4 y^4` around the window's start (series reversion of the
    /// cumulative's Taylor series), all zero when the rate at the start is
    /// too small for the series to be of use.
    b: [f64; 4],
}

impl SineWindow {
    /// First guess of [`SineWindow::invert`] for `target` tasks, a
    /// fraction `u` of the window's: the inverse series, or `u h` (the
    /// linear interpolation of [`RateCurve::invert`]) without one.
    fn guess(&self, target: f64, u: f64) -> f64 {
        if self.b[0] > 0.0 {
            let [b1, b2, b3, b4] = self.b;
            target * (b1 + target * (b2 + target * (b3 + target * b4)))
        } else {
            u * self.h
        }
    }

    /// The offset `δ` in `[0, h]` at which the tasks counted from the
    /// window's start reach `target`, starting from the guess `δ0`.
    ///
    /// Halley's method (the rate's derivative is a by-product of the same
    /// series), safeguarded as [`RateCurve::invert`] is: a step leaving the
    /// bracket `[lo, hi]` of the root is replaced by bisection. A step is
    /// accepted as the answer once Halley's error term after it,
    /// `(r'^2 / (4 r^2) + |r''| / (6 r)) |step|^3`, is below 1e-12 s (with
    /// the step itself under a millisecond, where that term is the error);
    /// otherwise the loop ends when the count is within `1e-13 (1 +
    /// target)` tasks or the bracket is narrower than 1e-13 s, as in
    /// [`RateCurve::invert`]. From [`SineWindow::guess`], one evaluation
    /// usually suffices for the reference workload's oscillations.
    fn invert(&self, target: f64, guess: f64) -> f64 {
        let (mut lo, mut hi) = (0.0, self.h);
        let mut d = guess.clamp(0.0, self.h);
        let tol = 1e-13 * (1.0 + target.abs());
        for _ in 0..60 {
            let (s, v) = sin_and_versin(self.w * d);
            let c = 1.0 - v;
            let f = self.mid * d + self.amp_w * (self.c0 * v + self.s0 * s) - target;
            if f.abs() < tol {
                break;
            }
            if f > 0.0 {
                hi = d;
            } else {
                lo = d;
            }
            // The rate and its first two derivatives at d.
            let wave = self.s0 * c + self.c0 * s;
            let r = self.mid + self.amp * wave;
            let r1 = self.amp * self.w * (self.c0 * c - self.s0 * s);
            let r2 = -self.amp * self.w * self.w * wave;
            let next = if r > 0.0 {
                let step = 2.0 * f * r / (2.0 * r * r - f * r1);
                let next = d - step;
                let a = step.abs();
                if next > lo
                    && next < hi
                    && a < 1e-3
                    && (r1 * r1 / (4.0 * r * r) + r2.abs() / (6.0 * r)) * a * a * a < 1e-12
                {
                    return next;
                }
                next
            } else {
                f64::NAN
            };
            d = if next > lo && next < hi {
                next
            } else {
                0.5 * (lo + hi)
            };
            if hi - lo < 1e-13 {
                break;
            }
        }
        d
    }
}

/// Draw a Poisson count with mean `mean` (0 for a non-positive mean).
fn poisson_count<R: Rng + ?Sized>(rng: &mut R, mean: f64) -> u64 {
    if mean <= 0.0 || !mean.is_finite() {
        return 0;
    }
    match Poisson::new(mean) {
        Ok(p) => {
            let x: f64 = p.sample(rng);
            x as u64
        }
        Err(_) => mean.round() as u64,
    }
}

/// `n` sorted fractions in [0, 1): cumulative sums of `n + 1` exponential
/// gaps, normalised by their total (the order statistics of `n` uniforms).
fn sorted_fractions<R: Rng + ?Sized>(rng: &mut R, n: usize, out: &mut Vec<f64>) {
    out.clear();
    let mut acc = 0.0;
    for _ in 0..n {
        acc += exp1(rng);
        out.push(acc);
    }
    let total = acc + exp1(rng);
    for x in out.iter_mut() {
        *x /= total;
    }
}

/// Standard exponential variate.
fn exp1<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 1 - u is in (0, 1], so the log is finite.
    -(1.0 - rng.random::<f64>()).ln()
}

impl Arrivals {
    /// Length of the arrival window, seconds.
    pub fn duration_s(&self) -> f64 {
        match self {
            Arrivals::Phases { phases, .. } => phases.iter().map(Phase::duration_s).sum(),
            Arrivals::Mmpp { duration_s, .. } => *duration_s,
            Arrivals::Trace { counts } => counts.len() as f64,
        }
    }

    /// Expected number of tasks in `[t0, t1)`.
    ///
    /// For MMPP this is the stationary mean rate times the length.
    pub fn expected_count(&self, t0: f64, t1: f64) -> f64 {
        match self {
            Arrivals::Phases {
                base_rate, phases, ..
            } => {
                let c = RateCurve::new(*base_rate, phases);
                c.cumulative(t1) - c.cumulative(t0)
            }
            Arrivals::Mmpp {
                rates,
                mean_sojourn_s,
                duration_s,
            } => {
                let total = mean_sojourn_s[0] + mean_sojourn_s[1];
                let mean_rate = if total > 0.0 {
                    (rates[0] * mean_sojourn_s[0] + rates[1] * mean_sojourn_s[1]) / total
                } else {
                    0.0
                };
                mean_rate * (t1.min(*duration_s) - t0.max(0.0)).max(0.0)
            }
            Arrivals::Trace { counts } => {
                let mut sum = 0.0;
                for (k, &c) in counts.iter().enumerate() {
                    let (a, b) = (k as f64, k as f64 + 1.0);
                    let overlap = (b.min(t1) - a.max(t0)).max(0.0);
                    sum += f64::from(c) * overlap;
                }
                sum
            }
        }
    }

    /// Arrival times in `[0, duration_s)`, sorted, drawn from `rng`.
    pub fn sample_times<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        // Room for the expected count plus a margin, so the vector rarely
        // regrows; capped so a huge scenario does not reserve wildly.
        let expected = self.expected_count(0.0, self.duration_s());
        let reserve = if expected.is_finite() {
            (expected * 1.1 + 16.0).clamp(0.0, 1e7) as usize
        } else {
            0
        };
        let mut times = Vec::with_capacity(reserve);
        let mut fractions = Vec::new();
        match self {
            Arrivals::Phases {
                process,
                base_rate,
                phases,
            } => {
                let curve = RateCurve::new(*base_rate, phases);
                let duration = curve.duration_s;
                match process {
                    Process::Poisson => {
                        let windows = duration.ceil() as usize;
                        // Window k ends where window k + 1 starts (at k + 1),
                        // so its integrated rate there is the next one's start.
                        let mut ca = curve.cumulative(0.0);
                        for k in 0..windows {
                            let (a, b) = (k as f64, (k as f64 + 1.0).min(duration));
                            let cb = curve.cumulative(b);
                            let n = poisson_count(rng, cb - ca) as usize;
                            sorted_fractions(rng, n, &mut fractions);
                            let window = if n > 0 { curve.sine_window(a, b) } else { None };
                            if let Some(win) = window {
                                // Same targets as below, counted from the
                                // window's start.
                                for &u in &fractions {
                                    let target = u * (cb - ca);
                                    let d = win.invert(target, win.guess(target, u));
                                    times.push((a + d).clamp(a, next_below(b)));
                                }
                            } else {
                                for &u in &fractions {
                                    let t = curve.invert(ca + u * (cb - ca), a, b, ca, cb);
                                    times.push(t.clamp(a, next_below(b)));
                                }
                            }
                            ca = cb;
                        }
                    }
                    Process::Deterministic => {
                        let total = curve.cumulative(duration);
                        let n = (total + 0.5).floor().max(0.0) as usize;
                        let (mut lo, mut n_done) = (0.0, 0usize);
                        while n_done < n {
                            let target = n_done as f64 + 0.5;
                            if target >= total {
                                break;
                            }
                            let t = curve.invert(target, lo, duration, curve.cumulative(lo), total);
                            times.push(t.clamp(0.0, next_below(duration)));
                            lo = t;
                            n_done += 1;
                        }
                    }
                }
            }
            Arrivals::Mmpp {
                rates,
                mean_sojourn_s,
                duration_s,
            } => {
                let (mut t, mut state) = (0.0, 0usize);
                // Bounded: each sojourn is validated to be > 0; the guard
                // stops a pathological tiny-sojourn configuration anyway.
                let mut guard = 0u64;
                while t < *duration_s && guard < 100_000_000 {
                    guard += 1;
                    let end = (t + exp1(rng) * mean_sojourn_s[state]).min(*duration_s);
                    let rate = rates[state];
                    if rate > 0.0 {
                        let mut a = t + exp1(rng) / rate;
                        while a < end {
                            times.push(a);
                            a += exp1(rng) / rate;
                        }
                    }
                    t = end;
                    state = 1 - state;
                }
            }
            Arrivals::Trace { counts } => {
                for (k, &c) in counts.iter().enumerate() {
                    sorted_fractions(rng, c as usize, &mut fractions);
                    let a = k as f64;
                    for &u in &fractions {
                        times.push((a + u).clamp(a, next_below(a + 1.0)));
                    }
                }
            }
        }
        // Sorted by construction; the check is insurance against
        // floating-point ties from the inversion (the sort is stable, so
        // skipping it on sorted input changes nothing).
        if !times.is_sorted_by(|a, b| a.total_cmp(b).is_le()) {
            times.sort_by(f64::total_cmp);
        }
        times
    }

    /// Parse a trace of per-second arrival counts from CSV text.
    ///
    /// Accepted forms, one row per second: `count` or `second,count` (the
    /// seconds must then be 0, 1, 2, ... in order). An optional header line
    /// (non-numeric first field) and blank lines or `#` comments are skipped.
    pub fn trace_from_csv(text: &str) -> Result<Arrivals, ScenarioError> {
        let mut counts = Vec::new();
        let mut first_data = true;
        for (lineno, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let field = format!("trace line {}", lineno + 1);
            let is_header = fields[0].parse::<f64>().is_err();
            if is_header && first_data {
                first_data = false;
                continue;
            }
            first_data = false;
            let count_text = match fields.as_slice() {
                [c] => *c,
                [sec, c] => {
                    let expected = counts.len();
                    match sec.parse::<usize>() {
                        Ok(s) if s == expected => *c,
                        _ => {
                            return Err(ScenarioError::Invalid {
                                field,
                                message: format!(
                                    "expected second {expected} (rows must be consecutive seconds from 0), got `{sec}`"
                                ),
                            });
                        }
                    }
                }
                _ => {
                    return Err(ScenarioError::Invalid {
                        field,
                        message: format!(
                            "expected `count` or `second,count`, got {} fields",
                            fields.len()
                        ),
                    });
                }
            };
            let count = count_text
                .parse::<u32>()
                .map_err(|_| ScenarioError::Invalid {
                    field: field.clone(),
                    message: format!("expected a non-negative integer count, got `{count_text}`"),
                })?;
            counts.push(count);
        }
        if counts.is_empty() {
            return Err(ScenarioError::Invalid {
                field: "trace".into(),
                message: "expected at least one per-second count".into(),
            });
        }
        Ok(Arrivals::Trace { counts })
    }

    /// Check the fields; `path` is the dotted path of this value.
    pub(crate) fn validate(&self, path: &str) -> Result<(), ScenarioError> {
        use super::check::{finite_nonneg, positive};
        match self {
            Arrivals::Phases {
                base_rate, phases, ..
            } => {
                finite_nonneg(&format!("{path}.base_rate"), *base_rate)?;
                if phases.is_empty() {
                    return Err(ScenarioError::Invalid {
                        field: format!("{path}.phases"),
                        message: "expected a non-empty list of phases".into(),
                    });
                }
                for (i, p) in phases.iter().enumerate() {
                    let pp = format!("{path}.phases[{i}]");
                    positive(&format!("{pp}.duration_s"), p.duration_s())?;
                    match *p {
                        Phase::Constant { level, .. } => {
                            finite_nonneg(&format!("{pp}.level"), level)?
                        }
                        Phase::Ramp { from, to, .. } => {
                            finite_nonneg(&format!("{pp}.from"), from)?;
                            finite_nonneg(&format!("{pp}.to"), to)?;
                        }
                        Phase::Sine {
                            min,
                            max,
                            period_s,
                            offset,
                            ..
                        } => {
                            finite_nonneg(&format!("{pp}.min"), min)?;
                            if !(max.is_finite() && max >= min) {
                                return Err(ScenarioError::Invalid {
                                    field: format!("{pp}.max"),
                                    message: format!("must be a number >= min ({min})"),
                                });
                            }
                            positive(&format!("{pp}.period_s"), period_s)?;
                            if !(0.0..1.0).contains(&offset) {
                                return Err(ScenarioError::Invalid {
                                    field: format!("{pp}.offset"),
                                    message: "must be a fraction of a period in [0, 1)".into(),
                                });
                            }
                        }
                        Phase::Square {
                            low,
                            high,
                            period_s,
                            duty,
                            ..
                        } => {
                            finite_nonneg(&format!("{pp}.low"), low)?;
                            finite_nonneg(&format!("{pp}.high"), high)?;
                            positive(&format!("{pp}.period_s"), period_s)?;
                            if !(duty > 0.0 && duty < 1.0) {
                                return Err(ScenarioError::Invalid {
                                    field: format!("{pp}.duty"),
                                    message: "must be a fraction in (0, 1)".into(),
                                });
                            }
                        }
                        Phase::Spike {
                            level,
                            peak,
                            start_s,
                            length_s,
                            ..
                        } => {
                            finite_nonneg(&format!("{pp}.level"), level)?;
                            finite_nonneg(&format!("{pp}.peak"), peak)?;
                            finite_nonneg(&format!("{pp}.start_s"), start_s)?;
                            positive(&format!("{pp}.length_s"), length_s)?;
                        }
                    }
                }
            }
            Arrivals::Mmpp {
                rates,
                mean_sojourn_s,
                duration_s,
            } => {
                for i in 0..2 {
                    finite_nonneg(&format!("{path}.rates[{i}]"), rates[i])?;
                    // Sojourns of at least a millisecond keep generation bounded.
                    if !(mean_sojourn_s[i].is_finite() && mean_sojourn_s[i] >= 1e-3) {
                        return Err(ScenarioError::Invalid {
                            field: format!("{path}.mean_sojourn_s[{i}]"),
                            message: "must be a number of seconds >= 0.001".into(),
                        });
                    }
                }
                positive(&format!("{path}.duration_s"), *duration_s)?;
            }
            Arrivals::Trace { counts } => {
                if counts.is_empty() {
                    return Err(ScenarioError::Invalid {
                        field: format!("{path}.counts"),
                        message: "expected a non-empty list of per-second counts".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The largest f64 strictly below `x` (for half-open windows).
fn next_below(x: f64) -> f64 {
    if x > 0.0 {
        f64::from_bits(x.to_bits() - 1)
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The inversion written with the plain per-phase formulas (no cached
    /// constants, phase looked up on every call): the reference the fast
    /// [`RateCurve::invert`] must match bit for bit.
    fn plain_invert(
        c: &RateCurve,
        target: f64,
        mut lo: f64,
        mut hi: f64,
        clo: f64,
        chi: f64,
    ) -> f64 {
        let cumulative = |t: f64| {
            let t = t.clamp(0.0, c.duration_s);
            let i = c.phase_at(t);
            c.cum_at_start[i] + c.base_rate * c.phases[i].cumulative(t - c.starts[i])
        };
        let rate = |t: f64| {
            let i = c.phase_at(t);
            (c.base_rate * c.phases[i].multiplier(t - c.starts[i])).max(0.0)
        };
        let mut t = lo + 0.5 * (hi - lo);
        if chi > clo {
            t = lo + (hi - lo) * ((target - clo) / (chi - clo)).clamp(0.0, 1.0);
        }
        for _ in 0..60 {
            let f = cumulative(t) - target;
            if f.abs() < 1e-12 * (1.0 + target.abs()) {
                break;
            }
            if f > 0.0 {
                hi = t;
            } else {
                lo = t;
            }
            let r = rate(t);
            let newton = if r > 0.0 { t - f / r } else { f64::NAN };
            t = if newton > lo && newton < hi {
                newton
            } else {
                0.5 * (lo + hi)
            };
            if hi - lo < 1e-12 {
                break;
            }
        }
        t
    }

    #[test]
    fn fast_inversion_equals_the_plain_formulas_bit_for_bit() {
        // Every shape, sines reaching zero rate, phase boundaries inside
        // one-second windows, and windows spanning several phases.
        let phases = vec![
            Phase::Constant {
                duration_s: 7.3,
                level: 0.4,
            },
            Phase::Sine {
                duration_s: 20.5,
                min: 0.0,
                max: 2.0,
                period_s: 6.1,
                offset: 0.3,
            },
            Phase::Ramp {
                duration_s: 11.2,
                from: 2.0,
                to: 0.1,
            },
            Phase::Square {
                duration_s: 9.7,
                low: 0.2,
                high: 1.9,
                period_s: 2.3,
                duty: 0.4,
            },
            Phase::Spike {
                duration_s: 0.4,
                level: 1.0,
                peak: 3.0,
                start_s: 0.1,
                length_s: 0.2,
            },
            Phase::Sine {
                duration_s: 30.0,
                min: 0.3,
                max: 1.7,
                period_s: 15.0,
                offset: 0.0,
            },
        ];
        let curve = RateCurve::new(7.0, &phases);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let mut checked = 0;
        for width in [1.0, 0.05, 4.0, curve.duration_s] {
            let mut a = 0.0;
            while a < curve.duration_s {
                let b = (a + width).min(curve.duration_s);
                let (ca, cb) = (curve.cumulative(a), curve.cumulative(b));
                for _ in 0..40 {
                    let target = ca + rng.random::<f64>() * (cb - ca);
                    let fast = curve.invert(target, a, b, ca, cb);
                    let plain = plain_invert(&curve, target, a, b, ca, cb);
                    assert_eq!(
                        fast.to_bits(),
                        plain.to_bits(),
                        "target {target} in [{a}, {b}]"
                    );
                    checked += 1;
                }
                a = b;
            }
        }
        assert!(checked > 4000, "{checked}");
    }

    /// The time where the curve's integrated rate reaches `target` in
    /// `[lo, hi]`, by 200 bisections of [`RateCurve::cumulative`]: slow,
    /// and as exact as the cumulative itself.
    fn bisect(c: &RateCurve, target: f64, mut lo: f64, mut hi: f64) -> f64 {
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if c.cumulative(mid) < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn sine_windows_invert_within_a_nanosecond() {
        // The reference's two oscillations (paper-4phase's last two
        // phases), a sine reaching zero rate, a steep one (narrow windows
        // only), and an offset start.
        let Arrivals::Phases { phases: paper, .. } =
            crate::scenario::Scenario::builtin("paper-4phase")
                .unwrap()
                .arrivals
        else {
            panic!("paper-4phase has phases")
        };
        let mut phases = paper[2..].to_vec();
        assert!(phases.iter().all(|p| matches!(p, Phase::Sine { .. })));
        phases.extend([
            Phase::Constant {
                duration_s: 2.5,
                level: 1.0,
            },
            Phase::Sine {
                duration_s: 40.3,
                min: 0.0,
                max: 3.0,
                period_s: 9.0,
                offset: 0.6,
            },
            Phase::Sine {
                duration_s: 10.0,
                min: 0.2,
                max: 4.0,
                period_s: 2.0,
                offset: 0.25,
            },
        ]);
        let curve = RateCurve::new(5.0, &phases);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(9);
        let (mut fast_windows, mut checked, mut worst) = (0, 0, 0.0f64);
        for width in [1.0, 0.05, 6.5] {
            let mut a = 0.0;
            while a < curve.duration_s {
                let b = (a + width).min(curve.duration_s);
                let (ca, cb) = (curve.cumulative(a), curve.cumulative(b));
                if let Some(win) = curve.sine_window(a, b) {
                    fast_windows += 1;
                    assert!(win.w * win.h <= SINE_WINDOW_MAX_ANGLE);
                    for _ in 0..40 {
                        let u = rng.random::<f64>();
                        let y = u * (cb - ca);
                        let fast = a + win.invert(y, win.guess(y, u));
                        let target = ca + u * (cb - ca);
                        // Tasks counted at the answer: right up to the
                        // rounding of the whole-run cumulative.
                        let residual = curve.cumulative(fast) - target;
                        assert!(residual.abs() <= 1e-10, "u {u} in [{a}, {b}]: {residual}");
                        // Times compared where the reference is itself
                        // exact to a fraction of a nanosecond: where the
                        // rate is not ~0 (at zero rate a count pins no time).
                        let exact = bisect(&curve, target, a, b);
                        if curve.rate_in(curve.phase_at(exact), exact) >= 0.01 {
                            worst = worst.max((fast - exact).abs());
                            assert!(
                                (fast - exact).abs() <= 1e-9,
                                "u {u} in [{a}, {b}]: {fast} vs {exact}"
                            );
                            checked += 1;
                        }
                    }
                }
                a = b;
            }
        }
        // Windows crossing a phase boundary, in the non-sine phase or too
        // wide an angle take the general inversion.
        assert!(curve.sine_window(119.5, 120.5).is_none());
        assert!(curve.sine_window(100.0, 101.0).is_some());
        assert!(curve.sine_window(121.0, 122.0).is_none());
        assert!(curve.sine_window(165.0, 166.0).is_none());
        assert!(fast_windows > 300, "{fast_windows}");
        assert!(checked > 12_000, "{checked}");
        assert!(worst < 1e-10, "worst error {worst} s");
    }
}
