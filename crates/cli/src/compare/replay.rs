//! What the live run really had, for the simulator to replay: its
//! replicas' start-up delays and how long each task held its replica.

use farm_model::scenario::Workload;

use crate::run;

/// The start-up delays the live run's replicas had, in start order and
/// scenario seconds (speedup `k`): every replica asked for at or after the
/// replay's start `t0_us` (the initial replicas are up before it, as the
/// simulator's are at time 0), asked-for -> first healthy. A replica
/// stopped before it became available counts its emulated delay plus the
/// mean live process start `start_s` (real seconds), which is what it
/// would have had.
pub fn live_startup_delays(
    starts: &[farm_local::ReplicaStart],
    t0_us: i64,
    k: f64,
    start_s: f64,
) -> Vec<f64> {
    live_serving_delays(starts, &[], t0_us, k, start_s)
}

/// [`live_startup_delays`], but each replica's delay ends when it started
/// its first task if that came before its health route answered: a
/// replica pulls from the work queue as soon as its consumer is bound,
/// and the provider only sees it healthy at its next probe (every 50 ms
/// real while starting, 0.2 scenario s at x4), so the health time is
/// late by up to a probe period for the only thing the simulator's
/// start-up delay stands for, serving. `services` are the run's completed
/// tasks (worker instance = the provider's replica name); a replica's
/// tasks are those it started at or after it was asked for and before
/// the same name was asked for again.
pub fn live_serving_delays(
    starts: &[farm_local::ReplicaStart],
    services: &[run::ServiceRecord],
    t0_us: i64,
    k: f64,
    start_s: f64,
) -> Vec<f64> {
    let mut picked: Vec<&farm_local::ReplicaStart> =
        starts.iter().filter(|s| s.requested_us >= t0_us).collect();
    picked.sort_by_key(|s| s.requested_us);
    picked
        .iter()
        .map(|s| {
            let healthy = s.available_after_s.unwrap_or(s.emulated_delay_s + start_s);
            // The same replica name asked for again later ends this one's span.
            let until = starts
                .iter()
                .filter(|o| o.instance == s.instance && o.requested_us > s.requested_us)
                .map(|o| o.requested_us)
                .min()
                .unwrap_or(i64::MAX);
            let first = services
                .iter()
                .filter(|r| {
                    r.worker == s.instance && r.started_us >= s.requested_us && r.started_us < until
                })
                .map(|r| (r.started_us - s.requested_us) as f64 / 1e6)
                .fold(f64::INFINITY, f64::min);
            healthy.min(first) * k
        })
        .collect()
}

/// The live per-task dispatch overhead, real seconds: the median gap on
/// one replica between a task's handler end and the next task's handler
/// start, over the pairs where that next task was already queued when the
/// first ended (so the gap is the replica's own work: ack, result
/// publish, the next pull; not waiting for an arrival). `None` without
/// such a pair.
pub fn dispatch_gap_s(services: &[run::ServiceRecord]) -> Option<f64> {
    let mut by_worker: std::collections::BTreeMap<&str, Vec<&run::ServiceRecord>> =
        std::collections::BTreeMap::new();
    for r in services {
        by_worker.entry(r.worker.as_str()).or_default().push(r);
    }
    let mut gaps: Vec<f64> = Vec::new();
    for rs in by_worker.values_mut() {
        rs.sort_by_key(|r| r.started_us);
        for w in rs.windows(2) {
            let (a, b) = (w[0], w[1]);
            if b.stored_us <= a.finished_us && b.started_us >= a.finished_us {
                gaps.push((b.started_us - a.finished_us) as f64 / 1e6);
            }
        }
    }
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    Some(gaps[gaps.len() / 2])
}

/// `workload` (scenario seconds, the nominal service times) with each
/// task's service replaced by how long it held its live replica: its
/// handler time plus the dispatch gap `gap_s` (both real seconds, times
/// `k`). Tasks the live run did not complete keep the calibrated model's
/// service, nominal plus `overhead_s` (real) times `k`.
pub fn live_service_workload(
    workload: &Workload,
    services: &[run::ServiceRecord],
    k: f64,
    gap_s: f64,
    overhead_s: f64,
) -> Workload {
    let mut w = workload.clone();
    for t in &mut w.tasks {
        t.service_s += overhead_s * k;
    }
    for r in services {
        if let Some(t) = w.tasks.get_mut(r.index) {
            let handler_s = (r.finished_us - r.started_us).max(0) as f64 / 1e6;
            t.service_s = (handler_s + gap_s) * k;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use farm_model::scenario::Scenario;

    use super::*;

    fn start(requested_us: i64, delay: f64, after: Option<f64>) -> farm_local::ReplicaStart {
        farm_local::ReplicaStart {
            instance: format!("w-{requested_us}"),
            requested_us,
            emulated_delay_s: delay,
            available_after_s: after,
        }
    }

    #[test]
    fn live_delays_are_the_run_s_starts_in_order_in_scenario_seconds() {
        let starts = [
            start(50, 1.0, Some(1.1)),  // an initial replica, before t0
            start(300, 2.0, Some(2.2)), // listed out of order
            start(200, 1.5, Some(1.6)),
            start(400, 1.0, None), // stopped before it was available
        ];
        let d = live_startup_delays(&starts, 100, 4.0, 0.05);
        let want = [1.6 * 4.0, 2.2 * 4.0, (1.0 + 0.05) * 4.0];
        assert_eq!(d.len(), want.len(), "{d:?}");
        for (a, b) in d.iter().zip(want) {
            assert!((a - b).abs() < 1e-9, "{d:?}");
        }
        assert!(live_startup_delays(&starts, 1_000, 4.0, 0.05).is_empty());
    }

    fn rec(
        index: usize,
        worker: &str,
        stored: i64,
        started: i64,
        finished: i64,
    ) -> run::ServiceRecord {
        run::ServiceRecord {
            index,
            worker: worker.into(),
            stored_us: stored,
            started_us: started,
            finished_us: finished,
        }
    }

    #[test]
    fn a_replica_serves_from_its_first_task_when_that_precedes_its_health() {
        let named =
            |instance: &str, requested_us: i64, after: Option<f64>| farm_local::ReplicaStart {
                instance: instance.into(),
                requested_us,
                emulated_delay_s: 1.0,
                available_after_s: after,
            };
        let starts = [
            named("w-1", 1_000_000, Some(1.5)),
            named("w-2", 1_000_000, Some(1.5)),
            // w-1 stopped and asked for again: a new replica, a new span.
            named("w-1", 5_000_000, Some(1.2)),
        ];
        let services = [
            rec(0, "w-1", 0, 2_400_000, 2_600_000), // 1.4 s: before its health at 1.5
            rec(1, "w-1", 0, 2_300_000, 2_350_000), // 1.3 s: the first, listed late
            rec(2, "w-2", 0, 2_700_000, 2_800_000), // 1.7 s: after its health
            rec(3, "w-1", 0, 5_900_000, 6_000_000), // 0.9 s into the second w-1
            rec(4, "w-9", 0, 1_100_000, 1_200_000), // another function's replica
        ];
        let d = live_serving_delays(&starts, &services, 0, 4.0, 0.05);
        let want = [1.3 * 4.0, 1.5 * 4.0, 0.9 * 4.0];
        assert_eq!(d.len(), want.len(), "{d:?}");
        for (a, b) in d.iter().zip(want) {
            assert!((a - b).abs() < 1e-9, "{d:?}");
        }
    }

    #[test]
    fn dispatch_gap_counts_only_back_to_back_tasks_on_one_replica() {
        let services = [
            // w-a: task 1 queued (stored 50) before task 0 ended (100): gap 3.
            rec(0, "w-a", 0, 10, 100),
            rec(1, "w-a", 50, 103, 200),
            // task 2 arrived after task 1 ended: an idle wait, not a gap.
            rec(2, "w-a", 900, 905, 1_000),
            // w-b: gaps 5 and 7.
            rec(3, "w-b", 0, 0, 100),
            rec(4, "w-b", 10, 105, 300),
            rec(5, "w-b", 20, 307, 400),
        ];
        let g = dispatch_gap_s(&services).unwrap();
        assert!((g - 5e-6).abs() < 1e-12, "{g}");
        assert_eq!(dispatch_gap_s(&services[..1]), None);
    }

    #[test]
    fn live_service_replaces_the_model_where_measured() {
        let s = Scenario::builtin("paper-4phase").unwrap();
        let w = s.generate(0);
        let services = [rec(1, "w-a", 0, 1_000_000, 1_250_000)];
        let r = live_service_workload(&w, &services, 4.0, 0.002, 0.004);
        assert_eq!(r.tasks.len(), w.tasks.len());
        assert!((r.tasks[1].service_s - (0.25 + 0.002) * 4.0).abs() < 1e-9);
        assert!((r.tasks[0].service_s - (w.tasks[0].service_s + 0.016)).abs() < 1e-9);
        assert_eq!(r.tasks[0].arrival_s, w.tasks[0].arrival_s);
    }
}
