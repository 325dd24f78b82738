//! What one run measured: [`RunMetrics`] and its per-interval timeline.

use serde::{Deserialize, Serialize};

/// One control interval of a run, for plots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// End of the interval, seconds.
    pub t_s: f64,
    /// Replicas asked for (after clamping).
    pub desired: u32,
    /// Replicas ready to take work.
    pub ready: u32,
    /// Replicas starting.
    pub starting: u32,
    /// Replicas that exist (starting, ready, draining, leaving): what is paid.
    pub alive: u32,
    /// Tasks queued, not delivered.
    pub backlog: u32,
    /// Arrivals in the interval.
    pub arrivals: u32,
    /// Completions in the interval.
    pub completions: u32,
    /// Share of the interval's completions that met their deadline; `None`
    /// when nothing completed.
    pub window_qos: Option<f64>,
}

/// Metrics of one simulated run.
///
/// A run lasts from 0 to `end_s = max(arrival window, last completion)`,
/// bounded by the arrival window plus [`crate::SimOptions::max_drain_s`];
/// tasks not completed by then are `unfinished` and count as missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Tasks in the workload.
    pub tasks: u64,
    /// Tasks completed (on time or late).
    pub completed: u64,
    /// Tasks dropped unstarted because their deadline had passed
    /// ([`crate::SimOptions::shed_expired`]; dead-lettered live).
    #[serde(default)]
    pub shed: u64,
    /// Tasks not completed (nor shed) when the run ended.
    pub unfinished: u64,
    /// Tasks completed within their deadline.
    pub on_time: u64,
    /// `on_time / tasks` in `[0, 1]` (1 for an empty workload).
    pub qos: f64,
    /// End-to-end latency percentiles of completed tasks (nearest rank), seconds.
    pub latency_p50_s: f64,
    /// 95th percentile, seconds.
    pub latency_p95_s: f64,
    /// 99th percentile, seconds.
    pub latency_p99_s: f64,
    /// Integral of existing replicas over `[0, end_s]`, start-up and drain included.
    pub replica_seconds: f64,
    /// `replica_seconds / end_s`.
    pub mean_replicas: f64,
    /// Most replicas that existed at once.
    pub max_replicas: u32,
    /// Changes of the desired replica count.
    pub scaling_actions: u32,
    /// Scaling actions in the opposite direction of the previous one.
    pub reversals: u32,
    /// Last completion minus last arrival (or run end minus last arrival when
    /// tasks were left unfinished), seconds.
    pub drain_time_s: f64,
    /// When the run ended, seconds.
    pub end_s: f64,
    /// Deliveries repeated because a replica failed.
    pub redeliveries: u64,
    /// Replica failures.
    pub failures: u64,
    /// Events processed (for throughput figures).
    pub events: u64,
    /// Decisions taken between ticks on a backlog jump
    /// ([`crate::SimOptions::events`]).
    #[serde(default)]
    pub early_decisions: u32,
    /// One point per control interval.
    #[serde(default)]
    pub timeline: Vec<TimelinePoint>,
}

/// Nearest-rank percentile of unsorted samples (reorders `v`); 0 when empty.
pub(crate) fn nearest_rank(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let k = rank_index(v.len(), q);
    *v.select_nth_unstable_by(k, f64::total_cmp).1
}

/// Nearest-rank percentiles of unsorted samples (reorders `v`); 0 when
/// empty. The values of sorting `v` and indexing it, in linear time: a
/// selection leaves the samples above the rank it places behind it, so a
/// higher rank is then selected among those only (give `qs` ascending for
/// that, e.g. p50 on all samples, then p95 on the upper half; any order
/// is correct).
pub(crate) fn nearest_ranks<const N: usize>(v: &mut [f64], qs: [f64; N]) -> [f64; N] {
    let mut out = [0.0; N];
    let n = v.len();
    if n == 0 {
        return out;
    }
    // `v[start..]` holds the `n - start` largest samples, `v[start - 1]`
    // the one below them (when `start > 0`).
    let mut start = 0;
    for (o, &q) in out.iter_mut().zip(&qs) {
        let k = rank_index(n, q);
        if start > 0 && k == start - 1 {
            *o = v[k];
            continue;
        }
        let from = if k >= start { start } else { 0 };
        *o = *v[from..].select_nth_unstable_by(k - from, f64::total_cmp).1;
        start = k + 1;
    }
    out
}

/// Nearest-rank percentile of sorted samples; 0 when empty.
pub fn nearest_rank_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v[rank_index(v.len(), q)]
    }
}

fn rank_index(n: usize, q: f64) -> usize {
    // Smallest rank r with r/n >= q, 1-based.
    let r = (q * n as f64 - 1e-9).ceil().max(1.0) as usize;
    r.min(n) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_matches_definition() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&mut v, 0.95), 95.0);
        assert_eq!(nearest_rank_sorted(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert_eq!(nearest_rank_sorted(&[7.0], 0.99), 7.0);
        assert_eq!(nearest_rank_sorted(&[], 0.5), 0.0);
    }

    /// The selections give exactly what sorting and indexing gives, for
    /// sizes around the ranks' boundaries, ties, signed zeros, and ranks
    /// in any order.
    #[test]
    fn nearest_ranks_equal_sorted_lookup() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for n in 0..300usize {
            let v: Vec<f64> = (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match i % 7 {
                        0 => 0.0,
                        1 => -0.0,
                        2 => 1.5,
                        _ => (x % 1000) as f64 / 37.0,
                    }
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            for qs in [[0.5, 0.95, 0.99], [0.99, 0.5, 0.95], [0.95, 0.95, 0.0]] {
                let mut w = v.clone();
                let got = nearest_ranks(&mut w, qs);
                for (g, q) in got.iter().zip(qs) {
                    assert_eq!(
                        g.to_bits(),
                        nearest_rank_sorted(&sorted, q).to_bits(),
                        "n {n} q {q}"
                    );
                }
            }
        }
    }
}
