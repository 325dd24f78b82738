//! Running sums of the successful results this collector process wrote,
//! published in every snapshot as `MetricsSnapshot.cumulative`.
//!
//! A control loop that differences two snapshots gets the statistics of
//! exactly the results written between them, the simulator's definition of
//! a control interval's window: count, on-time count and mean latency,
//! service time and deadline exactly; percentiles, the maximum latency and
//! the minimum deadline from the difference of fixed-bucket histograms
//! ([`Buckets`]), within half a bucket (1 % relative with [`GROWTH`]). The
//! sliding-window fields of the snapshot cannot be differenced (a median is
//! no mean, a p99 no maximum), which is why these exist.
//!
//! Pure: the caller passes the process start stamp; nothing here reads a
//! clock.

use farm_runtime::proto;

use crate::stats::Completion;

/// Ratio of consecutive bucket edges. A value read as its bucket's
/// geometric midpoint errs by at most `sqrt(GROWTH) - 1` (0.995 %)
/// relative; 2 241 buckets cover 1 µs to `u64::MAX` µs.
pub const GROWTH: f64 = 1.02;

/// The bucket of a value in microseconds: the `i` with
/// `GROWTH^i <= max(v, 1) < GROWTH^(i+1)`.
pub fn bucket(v_us: u64) -> u32 {
    let v = v_us.max(1) as f64;
    let mut i = (v.ln() / GROWTH.ln()).floor().max(0.0) as i32;
    // The logarithm can round across an edge; the edges themselves are
    // what a reader computes (`GROWTH.powi(i)`), so settle on them.
    while i > 0 && GROWTH.powi(i) > v {
        i -= 1;
    }
    while GROWTH.powi(i + 1) <= v {
        i += 1;
    }
    u32::try_from(i).unwrap_or(0)
}

/// Cumulative counts per bucket (dense; at most a few thousand entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets {
    counts: Vec<u64>,
}

impl Buckets {
    /// Counts one value (microseconds).
    pub fn record(&mut self, v_us: u64) {
        let i = bucket(v_us) as usize;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// The non-empty buckets, as the wire message.
    pub fn to_proto(&self) -> proto::Histogram {
        let (index, count) = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (u32::try_from(i).unwrap_or(u32::MAX), *c))
            .unzip();
        proto::Histogram {
            growth: GROWTH,
            index,
            count,
        }
    }
}

/// Running sums since the collector process started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cumulative {
    started_us: i64,
    completed: u64,
    on_time: u64,
    latency_sum_us: u64,
    service_sum_us: u64,
    deadline_sum_ms: u64,
    latency_max_us: u64,
    latency: Buckets,
    service: Buckets,
    deadline: Buckets,
}

impl Cumulative {
    /// Empty sums of a process that started at `started_us` (Unix µs).
    pub fn new(started_us: i64) -> Self {
        Self {
            started_us,
            ..Self::default()
        }
    }

    /// Counts one unique result; failures are left out (they are no
    /// completion in the simulator's sense).
    pub fn record(&mut self, c: &Completion) {
        if !c.ok {
            return;
        }
        self.completed += 1;
        self.on_time += u64::from(c.hit);
        self.latency_sum_us = self.latency_sum_us.saturating_add(c.latency_us);
        self.service_sum_us = self.service_sum_us.saturating_add(c.service_us);
        self.deadline_sum_ms = self.deadline_sum_ms.saturating_add(c.deadline_ms);
        self.latency_max_us = self.latency_max_us.max(c.latency_us);
        self.latency.record(c.latency_us);
        self.service.record(c.service_us);
        self.deadline.record(c.deadline_ms.saturating_mul(1000));
    }

    /// Successful results counted so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// As the wire message.
    pub fn to_proto(&self) -> proto::Cumulative {
        proto::Cumulative {
            started_us: self.started_us,
            completed: self.completed,
            on_time: self.on_time,
            latency_sum_us: self.latency_sum_us,
            service_sum_us: self.service_sum_us,
            deadline_sum_ms: self.deadline_sum_ms,
            latency_max_us: self.latency_max_us,
            latency: Some(self.latency.to_proto()),
            service: Some(self.service.to_proto()),
            deadline: Some(self.deadline.to_proto()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(ok: bool, hit: bool, latency_us: u64, service_us: u64, deadline_ms: u64) -> Completion {
        Completion {
            ok,
            latency_us,
            service_us,
            deadline_ms,
            hit,
        }
    }

    #[test]
    fn buckets_hold_their_values_between_edges() {
        for v in [
            0u64,
            1,
            2,
            3,
            50,
            51,
            1_000,
            1_020,
            12_345,
            999_999,
            1_000_000,
            86_400_000_000,
            u64::MAX,
        ] {
            let i = bucket(v) as i32;
            let x = v.max(1) as f64;
            assert!(GROWTH.powi(i) <= x, "{v}: lower edge of {i}");
            assert!(x < GROWTH.powi(i + 1), "{v}: upper edge of {i}");
        }
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(u64::MAX), 2240);
        // Monotone: a larger value never lands in a lower bucket.
        let mut last = 0;
        for v in (1..200_000u64).step_by(7) {
            let b = bucket(v);
            assert!(b >= last);
            last = b;
        }
    }

    #[test]
    fn only_successes_are_summed() {
        let mut c = Cumulative::new(42);
        c.record(&done(true, true, 1_000, 400, 2));
        c.record(&done(true, false, 3_000, 600, 2));
        c.record(&done(false, false, 9_000_000, 5, 1));
        let p = c.to_proto();
        assert_eq!(p.started_us, 42);
        assert_eq!((p.completed, p.on_time), (2, 1));
        assert_eq!(
            (p.latency_sum_us, p.service_sum_us, p.deadline_sum_ms),
            (4_000, 1_000, 4)
        );
        assert_eq!(p.latency_max_us, 3_000);
        let lat = p.latency.unwrap_or_default();
        assert_eq!(lat.growth, GROWTH);
        assert_eq!(lat.index, vec![bucket(1_000), bucket(3_000)]);
        assert_eq!(lat.count, vec![1, 1]);
        let dl = p.deadline.unwrap_or_default();
        assert_eq!(dl.index, vec![bucket(2_000)]);
        assert_eq!(dl.count, vec![2]);
    }

    #[test]
    fn empty_sums_have_empty_histograms() {
        let p = Cumulative::new(1).to_proto();
        assert_eq!(p.completed, 0);
        assert!(p.service.unwrap_or_default().index.is_empty());
    }
}
