//! One control interval's completion statistics, from the difference of two
//! of the collector's cumulative snapshots (`MetricsSnapshot.cumulative`).
//!
//! This is the simulator's window (`farm_sim` computes a tick's statistics
//! over exactly the tasks completed since the previous tick): counts, means
//! and sums are exact; the 95th percentiles, the maximum latency and the
//! smallest deadline come from the difference of the collector's
//! fixed-bucket histograms, read at the bucket's geometric midpoint, so they
//! err by at most `sqrt(growth) - 1` relative (1 % with the collector's
//! growth of 1.02). The maximum latency is exact whenever the collector's
//! running maximum grew during the interval (the new maximum is then one of
//! the interval's own results). Pure: no clock, no I/O.

use std::collections::HashMap;

use farm_runtime::proto::{Cumulative, Histogram};

/// Completion statistics of the successful results of one interval, in
/// seconds of the collector's clocks (wall clock).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntervalWindow {
    /// Successful results written in the interval.
    pub completions: u64,
    /// Of which within their deadline.
    pub on_time: u64,
    /// Mean and 95th percentile service time (`None` without completions).
    pub service: Option<(f64, f64)>,
    /// Mean, maximum and 95th percentile end-to-end latency.
    pub latency: Option<(f64, f64, f64)>,
    /// Smallest and mean relative deadline of the completions.
    pub deadline: Option<(f64, f64)>,
}

/// Counts of one histogram's buckets in `now` that are not in `prev`,
/// ascending by bucket.
fn diff(prev: Option<&Histogram>, now: Option<&Histogram>) -> (f64, Vec<(u32, u64)>) {
    let Some(now) = now else {
        return (0.0, Vec::new());
    };
    let before: HashMap<u32, u64> = prev
        .map(|p| {
            p.index
                .iter()
                .copied()
                .zip(p.count.iter().copied())
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<(u32, u64)> = now
        .index
        .iter()
        .zip(&now.count)
        .map(|(i, c)| (*i, c.saturating_sub(before.get(i).copied().unwrap_or(0))))
        .filter(|(_, c)| *c > 0)
        .collect();
    out.sort_unstable_by_key(|(i, _)| *i);
    (now.growth, out)
}

/// Geometric midpoint of bucket `i`, seconds.
fn midpoint_s(growth: f64, i: u32) -> f64 {
    growth.powf(f64::from(i) + 0.5) / 1e6
}

/// Nearest-rank quantile `q` of the bucket counts (the simulator's
/// percentile definition), at the bucket's midpoint.
fn quantile_s(growth: f64, buckets: &[(u32, u64)], q: f64) -> Option<f64> {
    let n: u64 = buckets.iter().map(|(_, c)| c).sum();
    if n == 0 || growth <= 1.0 {
        return None;
    }
    let rank = ((q * n as f64 - 1e-9).ceil().max(1.0) as u64).min(n);
    let mut seen = 0;
    for (i, c) in buckets {
        seen += c;
        if seen >= rank {
            return Some(midpoint_s(growth, *i));
        }
    }
    None
}

/// The results written between `prev` and `now`. Without `prev`, or when
/// `now` comes from another collector process (a restart: its counters
/// began again), everything `now` counts belongs to the interval.
pub fn between(prev: Option<&Cumulative>, now: &Cumulative) -> IntervalWindow {
    let empty = Cumulative::default();
    let prev = match prev {
        Some(p) if p.started_us == now.started_us && p.completed <= now.completed => p,
        _ => &empty,
    };
    let n = now.completed - prev.completed;
    let on_time = now.on_time.saturating_sub(prev.on_time).min(n);
    if n == 0 {
        return IntervalWindow::default();
    }
    let nf = n as f64;
    let mean_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / nf / 1e6;
    let (gl, lat) = diff(prev.latency.as_ref(), now.latency.as_ref());
    let (gs, svc) = diff(prev.service.as_ref(), now.service.as_ref());
    let (gd, dl) = diff(prev.deadline.as_ref(), now.deadline.as_ref());
    let latency_mean = mean_s(now.latency_sum_us, prev.latency_sum_us);
    let latency_max = if now.latency_max_us > prev.latency_max_us {
        now.latency_max_us as f64 / 1e6
    } else {
        lat.last()
            .map_or(latency_mean, |(i, _)| midpoint_s(gl, *i))
            .min(now.latency_max_us as f64 / 1e6)
    };
    let latency_p95 = quantile_s(gl, &lat, 0.95).map_or(latency_mean, |p| p.min(latency_max));
    let service_mean = mean_s(now.service_sum_us, prev.service_sum_us);
    let service_p95 = quantile_s(gs, &svc, 0.95).unwrap_or(service_mean);
    let deadline_mean = now.deadline_sum_ms.saturating_sub(prev.deadline_sum_ms) as f64 / nf / 1e3;
    let deadline_min = dl.first().map_or(deadline_mean, |(i, _)| {
        midpoint_s(gd, *i).min(deadline_mean)
    });
    IntervalWindow {
        completions: n,
        on_time,
        service: Some((service_mean, service_p95)),
        latency: Some((latency_mean, latency_max, latency_p95)),
        deadline: Some((deadline_min, deadline_mean)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: f64 = 1.02;

    /// The collector's bucket rule, for building inputs.
    fn bucket(v_us: u64) -> u32 {
        let v = v_us.max(1) as f64;
        let mut i = (v.ln() / G.ln()).floor() as i32;
        while i > 0 && G.powi(i) > v {
            i -= 1;
        }
        while G.powi(i + 1) <= v {
            i += 1;
        }
        i as u32
    }

    fn hist(values: &[u64]) -> Histogram {
        let mut m: std::collections::BTreeMap<u32, u64> = Default::default();
        for v in values {
            *m.entry(bucket(*v)).or_default() += 1;
        }
        Histogram {
            growth: G,
            index: m.keys().copied().collect(),
            count: m.values().copied().collect(),
        }
    }

    /// Sums of `(latency µs, service µs, deadline ms, on time)` results.
    fn cum(started: i64, results: &[(u64, u64, u64, bool)]) -> Cumulative {
        let lat: Vec<u64> = results.iter().map(|r| r.0).collect();
        let svc: Vec<u64> = results.iter().map(|r| r.1).collect();
        let dl: Vec<u64> = results.iter().map(|r| r.2 * 1000).collect();
        Cumulative {
            started_us: started,
            completed: results.len() as u64,
            on_time: results.iter().filter(|r| r.3).count() as u64,
            latency_sum_us: lat.iter().sum(),
            service_sum_us: svc.iter().sum(),
            deadline_sum_ms: results.iter().map(|r| r.2).sum(),
            latency_max_us: lat.iter().copied().max().unwrap_or(0),
            latency: Some(hist(&lat)),
            service: Some(hist(&svc)),
            deadline: Some(hist(&dl)),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.01 + 1e-9
    }

    #[test]
    fn an_interval_is_the_difference_of_two_snapshots() {
        let first: Vec<(u64, u64, u64, bool)> = (1..=50)
            .map(|i| (i * 100_000, i * 10_000, 3_000, true))
            .collect();
        // The interval: 20 results, latencies 0.2..=4.0 s, service 20..=400 ms.
        let second: Vec<(u64, u64, u64, bool)> = (1..=20)
            .map(|i| {
                (
                    i * 200_000,
                    i * 20_000,
                    2_000 + i * 10,
                    i * 200_000 <= 2_000_000,
                )
            })
            .collect();
        let all: Vec<_> = first.iter().chain(&second).copied().collect();
        let w = between(Some(&cum(7, &first)), &cum(7, &all));
        assert_eq!((w.completions, w.on_time), (20, 10));
        let (lm, lmax, lp95) = w.latency.unwrap();
        assert!(close(lm, 2.1), "{lm}");
        // The running max stayed at 5.0 s (from the first part): the
        // interval's max comes from its top bucket.
        assert!(close(lmax, 4.0), "{lmax}");
        assert!(close(lp95, 3.8), "{lp95}");
        let (sm, sp95) = w.service.unwrap();
        assert!(close(sm, 0.21), "{sm}");
        assert!(close(sp95, 0.38), "{sp95}");
        let (dmin, dmean) = w.deadline.unwrap();
        assert!(close(dmin, 2.01), "{dmin}");
        assert!(close(dmean, 2.105), "{dmean}");
    }

    #[test]
    fn a_new_running_maximum_is_exact() {
        let a = cum(1, &[(1_000_000, 1, 1, true)]);
        let b = cum(1, &[(1_000_000, 1, 1, true), (1_234_567, 1, 1, false)]);
        let w = between(Some(&a), &b);
        assert_eq!(w.latency.unwrap().1, 1.234567);
        assert_eq!((w.completions, w.on_time), (1, 0));
    }

    #[test]
    fn an_empty_interval_has_no_statistics() {
        let a = cum(1, &[(1_000, 1, 1, true)]);
        assert_eq!(between(Some(&a), &a), IntervalWindow::default());
    }

    #[test]
    fn a_restarted_collector_counts_from_zero() {
        let old = cum(1, &[(1_000, 1, 1, true); 10]);
        let new = cum(2, &[(2_000, 1, 1, true); 3]);
        assert_eq!(between(Some(&old), &new).completions, 3);
        assert_eq!(between(None, &new).completions, 3);
    }
}
