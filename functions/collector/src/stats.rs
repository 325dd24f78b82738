//! QoS and latency bookkeeping: totals, a sliding window and percentiles.
//!
//! Pure: the caller passes the time (`now`, a duration since any fixed
//! origin on one monotonic clock) and the arrival counts; nothing here reads
//! a clock or talks to NATS. Latencies are measured on the JetStream server's
//! clock (result stored time minus task stored time), service times on the
//! worker's clock (handler end minus start); both are differences on a single
//! clock, so no clock skew enters them.

use std::collections::VecDeque;
use std::time::Duration;

use farm_runtime::proto::MetricsSnapshot;
use hdrhistogram::Histogram;

use crate::cumulative::Cumulative;

/// One unique result, as the statistics need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Whether the handler succeeded.
    pub ok: bool,
    /// Result stored time minus task stored time, microseconds (server clock).
    pub latency_us: u64,
    /// Handler end minus start, microseconds (worker clock).
    pub service_us: u64,
    /// The task's relative deadline, milliseconds (0 = none).
    pub deadline_ms: u64,
    /// Whether the task met its QoS (see [`is_hit`]).
    pub hit: bool,
}

/// QoS rule: a task is a hit when it succeeded and its end-to-end latency is
/// within its deadline; a task without a deadline (0) is a hit when it
/// succeeded.
pub fn is_hit(ok: bool, latency_us: u64, deadline_ms: u64) -> bool {
    ok && (deadline_ms == 0 || latency_us <= deadline_ms.saturating_mul(1000))
}

/// Running totals (since the collector's output began; restored from the
/// OUTPUT stream on restart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Unique results output.
    pub completed: u64,
    /// Of which QoS hits.
    pub qos_hits: u64,
    /// Repeated results recognised and dropped.
    pub duplicates: u64,
}

/// Totals, a sliding window of completions, and their percentiles.
#[derive(Debug)]
pub struct Stats {
    farm: String,
    window: Duration,
    totals: Totals,
    events: VecDeque<(Duration, Completion)>,
    /// Running sums of this process, for interval windows by differencing.
    cumulative: Cumulative,
    /// Latency and service-time histograms of the last snapshot, reused:
    /// allocating two fresh ones (hundreds of KiB each) per snapshot cost
    /// more than filling them when snapshots are polled often.
    scratch: (Histogram<u64>, Histogram<u64>),
}

/// Arrival counts read from the TASKS stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrivals {
    /// Tasks ever stored in TASKS.
    pub total: u64,
    /// Tasks stored during the last window.
    pub window: u64,
}

fn hist() -> Histogram<u64> {
    // Microseconds from 1 µs to 1 day at three significant figures; longer
    // values are clamped to a day by `saturating_record`.
    Histogram::new_with_bounds(1, 86_400_000_000, 3)
        .unwrap_or_else(|_| unreachable!("bounds 1..1 day at 3 figures are valid"))
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

impl Stats {
    /// Empty statistics for `farm` over a sliding `window`.
    pub fn new(farm: impl Into<String>, window: Duration) -> Self {
        Self {
            farm: farm.into(),
            window,
            totals: Totals::default(),
            events: VecDeque::new(),
            cumulative: Cumulative::default(),
            scratch: (hist(), hist()),
        }
    }

    /// Stamps the running sums with the process start (Unix µs), which
    /// tells a reader that a restarted collector began them again.
    pub fn started_at(mut self, started_us: i64) -> Self {
        self.cumulative = Cumulative::new(started_us);
        self
    }

    /// Starts from totals recovered from the output stream.
    pub fn restore(&mut self, totals: Totals) {
        self.totals = totals;
    }

    /// Current totals.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Counts one unique result.
    pub fn record(&mut self, c: Completion, now: Duration) {
        self.totals.completed += 1;
        if c.hit {
            self.totals.qos_hits += 1;
        }
        self.cumulative.record(&c);
        self.events.push_back((now, c));
        self.prune(now);
    }

    /// Counts one dropped duplicate.
    pub fn duplicate(&mut self) {
        self.totals.duplicates += 1;
    }

    fn prune(&mut self, now: Duration) {
        let cutoff = now.saturating_sub(self.window);
        while self.events.front().is_some_and(|(t, _)| *t < cutoff) {
            self.events.pop_front();
        }
    }

    /// The snapshot at `now` (`at_us` is the wall-clock stamp to put in it).
    pub fn snapshot(
        &mut self,
        now: Duration,
        at_us: i64,
        arrivals: Arrivals,
        failed: u64,
    ) -> MetricsSnapshot {
        self.prune(now);
        let (lat, svc) = &mut self.scratch;
        lat.reset();
        svc.reset();
        let mut hits = 0u64;
        let mut svc_sum = 0u128;
        let mut deadline_min_ms = 0u64;
        for (_, c) in &self.events {
            // `saturating_record` clamps absurd values instead of failing.
            lat.saturating_record(c.latency_us);
            svc.saturating_record(c.service_us);
            svc_sum += u128::from(c.service_us);
            if c.hit {
                hits += 1;
            }
            if c.deadline_ms > 0 && (deadline_min_ms == 0 || c.deadline_ms < deadline_min_ms) {
                deadline_min_ms = c.deadline_ms;
            }
        }
        let n = self.events.len() as u64;
        let pct = |h: &Histogram<u64>, q: f64| {
            if n == 0 {
                0.0
            } else {
                secs(h.value_at_quantile(q))
            }
        };
        MetricsSnapshot {
            farm: self.farm.clone(),
            at_us,
            completed: self.totals.completed,
            qos_hits: self.totals.qos_hits,
            failed,
            duplicates: self.totals.duplicates,
            arrivals: arrivals.total,
            window_s: self.window.as_secs_f64(),
            window_completed: n,
            window_hits: hits,
            window_qos: (n > 0).then(|| hits as f64 / n as f64),
            latency_p50_s: pct(lat, 0.50),
            latency_p95_s: pct(lat, 0.95),
            latency_p99_s: pct(lat, 0.99),
            service_mean_s: if n == 0 {
                0.0
            } else {
                svc_sum as f64 / n as f64 / 1e6
            },
            service_p95_s: pct(svc, 0.95),
            window_arrivals: arrivals.window,
            deadline_min_s: deadline_min_ms as f64 / 1e3,
            cumulative: Some(self.cumulative.to_proto()),
        }
    }
}

/// Turns samples of a monotone counter (the TASKS stream's last sequence)
/// into "how many during the last window".
#[derive(Debug)]
pub struct WindowCounter {
    window: Duration,
    samples: VecDeque<(Duration, u64)>,
}

impl WindowCounter {
    /// A counter over a sliding `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Adds a sample and returns the increase over the window (from the
    /// newest sample at least a window old, or the oldest one kept).
    pub fn sample(&mut self, now: Duration, value: u64) -> u64 {
        self.samples.push_back((now, value));
        let cutoff = now.saturating_sub(self.window);
        // Keep exactly one sample at or before the cutoff as the baseline.
        while self.samples.len() >= 2 && self.samples[1].0 <= cutoff {
            self.samples.pop_front();
        }
        let base = self.samples.front().map_or(value, |s| s.1);
        value.saturating_sub(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn done(latency_ms: u64, deadline_ms: u64) -> Completion {
        Completion {
            ok: true,
            latency_us: latency_ms * 1000,
            service_us: latency_ms * 500,
            deadline_ms,
            hit: is_hit(true, latency_ms * 1000, deadline_ms),
        }
    }

    #[test]
    fn hit_rule() {
        assert!(is_hit(true, 1000, 1));
        assert!(!is_hit(true, 1001, 1));
        assert!(is_hit(true, u64::MAX, 0));
        assert!(!is_hit(false, 0, 10));
    }

    #[test]
    fn empty_snapshot_has_no_window_qos() {
        let mut st = Stats::new("f", s(8));
        let snap = st.snapshot(s(1), 7, Arrivals::default(), 0);
        assert_eq!(snap.window_qos, None);
        assert_eq!(snap.completed, 0);
        assert_eq!(snap.latency_p99_s, 0.0);
        assert_eq!(snap.at_us, 7);
        assert_eq!(snap.farm, "f");
    }

    #[test]
    fn totals_window_and_percentiles() {
        let mut st = Stats::new("f", s(10));
        // 100 tasks at t=0 with latencies 1..=100 ms, deadline 50 ms.
        for i in 1..=100 {
            st.record(done(i, 50), s(0));
        }
        st.duplicate();
        let snap = st.snapshot(
            s(5),
            0,
            Arrivals {
                total: 120,
                window: 30,
            },
            3,
        );
        assert_eq!(snap.completed, 100);
        assert_eq!(snap.qos_hits, 50);
        assert_eq!(snap.duplicates, 1);
        assert_eq!(snap.failed, 3);
        assert_eq!(snap.arrivals, 120);
        assert_eq!(snap.window_arrivals, 30);
        assert_eq!(snap.window_completed, 100);
        assert_eq!(snap.window_qos, Some(0.5));
        assert!(
            (snap.latency_p50_s - 0.050).abs() < 0.001,
            "{}",
            snap.latency_p50_s
        );
        assert!(
            (snap.latency_p99_s - 0.099).abs() < 0.001,
            "{}",
            snap.latency_p99_s
        );
        assert!((snap.service_mean_s - 0.02525).abs() < 1e-6);
        assert_eq!(snap.deadline_min_s, 0.05);

        // The window slides; totals stay.
        st.record(done(1, 0), s(20));
        let snap = st.snapshot(s(20), 0, Arrivals::default(), 0);
        assert_eq!(snap.completed, 101);
        assert_eq!(snap.window_completed, 1);
        assert_eq!(snap.window_qos, Some(1.0));
        assert_eq!(snap.deadline_min_s, 0.0);
        // The running sums never slide: 101 successes, 51 on time.
        let cum = snap.cumulative.unwrap_or_default();
        assert_eq!((cum.completed, cum.on_time), (101, 51));
        assert_eq!(cum.latency_sum_us, (5050 + 1) * 1000);
        assert_eq!(cum.latency_max_us, 100_000);
    }

    #[test]
    fn restore_continues_totals() {
        let mut st = Stats::new("f", s(8));
        st.restore(Totals {
            completed: 10,
            qos_hits: 4,
            duplicates: 0,
        });
        st.record(done(1, 0), s(0));
        assert_eq!(st.totals().completed, 11);
        assert_eq!(st.totals().qos_hits, 5);
    }

    #[test]
    fn window_counter() {
        let mut w = WindowCounter::new(s(10));
        assert_eq!(w.sample(s(0), 100), 0);
        assert_eq!(w.sample(s(5), 150), 50);
        assert_eq!(w.sample(s(10), 170), 70);
        // Baseline moves to the sample at t=5 once t=15 is reached.
        assert_eq!(w.sample(s(15), 200), 50);
    }
}
