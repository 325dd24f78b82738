//! Where every task of a replay ended, and the simulator's metrics of the
//! run: the drain until every accepted task is in OUTPUT, the tally
//! (completed, dead-lettered, unfinished, lost) and [`RunMetrics`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context as JetStream;
use farm_runtime::names::FarmNames;
use farm_sim::metrics::nearest_rank_sorted as percentile;
use farm_sim::{RunMetrics, TimelinePoint};
use serde::Serialize;
use tracing::warn;

use super::output::{Collected, Done, Outcome};

/// The task accounting of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Tasks of the workload.
    pub tasks: u64,
    /// Accepted by the emitter.
    pub accepted: u64,
    /// Completed successfully.
    pub completed: u64,
    /// Of those, on time.
    pub on_time: u64,
    /// Dead-lettered or timed out (in OUTPUT with an error status).
    pub dead_lettered: u64,
    /// Still queued or held by a worker at the end.
    pub unfinished: u64,
    /// Accepted but nowhere to be found. Must be 0.
    pub lost: u64,
}

impl Accounting {
    /// Splits the tasks the emitter accepted: `found` have an OUTPUT entry
    /// (`failed` of them with an error status), `in_queue` are still held by
    /// the work queue; the rest of the accepted are lost.
    pub fn tally(
        tasks: u64,
        accepted: u64,
        completed: u64,
        on_time: u64,
        failed: u64,
        in_queue: u64,
    ) -> Accounting {
        let found = completed + failed;
        let unfinished = in_queue.min(accepted.saturating_sub(found));
        Accounting {
            tasks,
            accepted,
            completed,
            on_time,
            dead_lettered: failed,
            unfinished,
            lost: accepted.saturating_sub(found + unfinished),
        }
    }
}

/// Waits until every one of the `accepted` tasks is in OUTPUT and the
/// arrival window (`window_end`) is over, or until `deadline`; returns
/// when the run ended. The run lasts at least the scenario's arrival
/// window, as in the simulator: replica-seconds and means are measured
/// over the same span.
pub(super) async fn drain(
    collected: &Collected,
    accepted: u64,
    window_end: Instant,
    deadline: Instant,
    bar: &indicatif::ProgressBar,
) -> Instant {
    loop {
        let finished = collected.finished() as u64;
        bar.set_position(finished);
        if (finished >= accepted && Instant::now() >= window_end) || Instant::now() > deadline {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Tasks still queued or held by a worker (0 when JetStream cannot say).
pub(super) async fn in_queue(js: &JetStream, names: &FarmNames) -> u64 {
    match js.get_stream(names.tasks_stream()).await {
        Ok(s) => s
            .consumer_info(names.workers_consumer())
            .await
            .map(|c| c.num_pending + c.num_ack_pending as u64)
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// The accounting of `tasks` tasks (ids `<prefix><index>`) of which the
/// emitter accepted `accepted`, from their OUTPUT entries `done` and the
/// `in_queue` tasks still in the work queue. When some are lost it says
/// where to look: a result held in RESULTS that the collector has not
/// written, or a dead letter that never reached OUTPUT.
pub(super) async fn account(
    js: &JetStream,
    names: &FarmNames,
    prefix: &str,
    tasks: usize,
    accepted: u64,
    done: &HashMap<String, Done>,
    in_queue: u64,
) -> Accounting {
    let completed = done.values().filter(|d| d.outcome == Outcome::Ok).count() as u64;
    let failed = done.len() as u64 - completed;
    let on_time = done
        .values()
        .filter(|d| d.outcome == Outcome::Ok && d.hit)
        .count() as u64;
    let accounting =
        Accounting::tally(tasks as u64, accepted, completed, on_time, failed, in_queue);
    if accounting.lost > 0 {
        let uncollected = match js.get_stream(names.results_stream()).await {
            Ok(s) => s
                .consumer_info(names.collector_consumer())
                .await
                .map(|c| c.num_pending + c.num_ack_pending as u64)
                .ok(),
            Err(_) => None,
        };
        let dead_letters = match js.get_stream(names.dlq_stream()).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).ok(),
            Err(_) => None,
        };
        let missing: Vec<String> = (0..tasks)
            .map(|i| format!("{prefix}{i}"))
            .filter(|id| !done.contains_key(id))
            .take(10)
            .collect();
        warn!(
            lost = accounting.lost,
            ?missing,
            ?uncollected,
            ?dead_letters,
            "tasks accepted by the emitter are neither in OUTPUT nor in the work queue"
        );
        eprintln!(
            "farmctl: {} task(s) lost; missing ids {missing:?}; RESULTS not collected: {uncollected:?}; DLQ messages: {dead_letters:?}",
            accounting.lost
        );
    }
    accounting
}

/// What [`live_metrics`] is computed from.
pub(super) struct LiveInputs<'a> {
    pub(super) tasks: u64,
    pub(super) done: &'a HashMap<String, Done>,
    pub(super) t0_us: i64,
    pub(super) k: f64,
    pub(super) last_arrival_s: f64,
    pub(super) end_s: f64,
    pub(super) replica_seconds: f64,
    pub(super) max_replicas: u32,
    pub(super) timeline: Vec<TimelinePoint>,
    pub(super) early_decisions: u32,
}

/// The simulator's [`RunMetrics`] for a live run, in scenario seconds.
pub(super) fn live_metrics(i: LiveInputs<'_>) -> RunMetrics {
    let k = i.k;
    let ok: Vec<&Done> = i
        .done
        .values()
        .filter(|d| d.outcome == Outcome::Ok)
        .collect();
    let mut lat: Vec<f64> = ok.iter().map(|d| d.latency_us as f64 / 1e6 * k).collect();
    lat.sort_by(f64::total_cmp);
    let on_time = ok.iter().filter(|d| d.hit).count() as u64;
    let last_completion_s = i
        .done
        .values()
        .map(|d| (d.completed_us - i.t0_us) as f64 / 1e6 * k)
        .fold(f64::NEG_INFINITY, f64::max);
    let completed = ok.len() as u64;
    let unfinished = i.tasks.saturating_sub(i.done.len() as u64);
    let end_s = i.end_s.max(1e-9);
    let drain_time_s = if unfinished > 0 || !last_completion_s.is_finite() {
        end_s - i.last_arrival_s
    } else {
        (last_completion_s - i.last_arrival_s).max(0.0)
    };
    let (mut actions, mut reversals, mut last_dir) = (0u32, 0u32, 0i8);
    for w in i.timeline.windows(2) {
        let dir = match w[1].desired.cmp(&w[0].desired) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
        };
        if dir != 0 {
            actions += 1;
            if last_dir != 0 && dir != last_dir {
                reversals += 1;
            }
            last_dir = dir;
        }
    }
    RunMetrics {
        tasks: i.tasks,
        completed,
        shed: i
            .done
            .values()
            .filter(|d| d.outcome == Outcome::Shed)
            .count() as u64,
        unfinished,
        on_time,
        qos: if i.tasks == 0 {
            1.0
        } else {
            on_time as f64 / i.tasks as f64
        },
        latency_p50_s: percentile(&lat, 0.50),
        latency_p95_s: percentile(&lat, 0.95),
        latency_p99_s: percentile(&lat, 0.99),
        replica_seconds: i.replica_seconds,
        mean_replicas: i.replica_seconds / end_s,
        max_replicas: i.max_replicas,
        scaling_actions: actions,
        reversals,
        drain_time_s,
        end_s,
        redeliveries: i
            .done
            .values()
            .map(|d| d.deliveries.saturating_sub(1))
            .sum(),
        // Replica crashes are restarted by the provider and not counted here.
        failures: 0,
        events: i.done.len() as u64,
        early_decisions: i.early_decisions,
        timeline: i.timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_finds_lost_tasks() {
        let a = Accounting::tally(100, 100, 90, 80, 4, 6);
        assert_eq!((a.unfinished, a.lost), (6, 0));
        let a = Accounting::tally(100, 100, 90, 80, 4, 0);
        assert_eq!(a.lost, 6);
        // A queue holding tasks of other runs cannot hide this run's losses.
        let a = Accounting::tally(10, 10, 10, 10, 0, 50);
        assert_eq!((a.unfinished, a.lost), (0, 0));
    }

    #[test]
    fn live_metrics_scale_back_and_count_actions() {
        let done: HashMap<String, Done> = [
            ("a", Outcome::Ok, true, 250_000u64, 1_000_000i64),
            ("b", Outcome::Ok, false, 1_000_000, 2_000_000),
            ("c", Outcome::Failed, false, 500_000, 1_500_000),
        ]
        .into_iter()
        .map(|(id, outcome, hit, latency_us, completed_us)| {
            (
                id.to_string(),
                Done {
                    outcome,
                    hit,
                    latency_us,
                    completed_us,
                    deliveries: 2,
                    service_us: 100_000,
                    deadline_ms: 500,
                },
            )
        })
        .collect();
        let point = |t_s: f64, desired: u32| TimelinePoint {
            t_s,
            desired,
            ready: desired,
            starting: 0,
            alive: desired,
            backlog: 0,
            arrivals: 0,
            completions: 0,
            window_qos: None,
        };
        let m = live_metrics(LiveInputs {
            tasks: 4,
            done: &done,
            t0_us: 0,
            k: 2.0,
            last_arrival_s: 1.0,
            end_s: 5.0,
            replica_seconds: 10.0,
            max_replicas: 3,
            timeline: vec![point(1.0, 1), point(2.0, 3), point(3.0, 2), point(4.0, 2)],
            early_decisions: 0,
        });
        assert_eq!((m.completed, m.on_time, m.unfinished), (2, 1, 1));
        assert_eq!(m.qos, 0.25);
        assert_eq!(m.latency_p50_s, 0.5);
        assert_eq!(m.latency_p99_s, 2.0);
        assert_eq!((m.scaling_actions, m.reversals), (2, 1));
        assert_eq!(m.mean_replicas, 2.0);
        assert_eq!(m.redeliveries, 3);
        assert_eq!(m.drain_time_s, 4.0);
    }
}
