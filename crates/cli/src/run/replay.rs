//! The replay's arrivals: every task of the workload posted to the emitter
//! at its own due time ([`PostSchedule`]), as NDJSON batches of
//! sleep-worker payloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use farm_model::scenario::TaskSpec;
use farm_sim::metrics::nearest_rank_sorted as percentile;
use tracing::{info, warn};

use super::output::Collected;

/// When a replay posts each task: at its own due time (scenario arrival
/// divided by the speedup, seconds of wall clock after the replay's
/// start), never before it, together with every other task already due.
///
/// Why not earlier: the emitter stamps a task when JetStream stores it,
/// and that stamp starts the task's deadline, so a task posted ahead of
/// its time would get a head start on its deadline. Why not later: the
/// simulator queues a task at exactly its arrival time, and a task posted
/// late is missing from the backlog a policy sees at a tick (keda, which
/// sizes from the backlog and never scales down within its cooldown,
/// kept one step fewer replicas for the whole run when farmctl posted
/// each 25 ms slice of arrivals at the slice's end). How late a task can
/// be is then the timer's wake-up delay plus the previous post's round
/// trip, both a few milliseconds.
///
/// Pure: the caller owns the clock and passes the time it read.
#[derive(Debug, Clone)]
pub struct PostSchedule {
    /// Due times, seconds after the replay's start, in posting order.
    due_s: Vec<f64>,
    /// Tasks posted so far (the next one to post).
    next: usize,
}

impl PostSchedule {
    /// The schedule of tasks arriving at `arrivals_s` (scenario seconds, in
    /// arrival order, as `Workload::tasks` holds them) replayed `speedup`
    /// times faster.
    #[must_use]
    pub fn new(arrivals_s: &[f64], speedup: f64) -> Self {
        Self {
            due_s: arrivals_s.iter().map(|a| a / speedup).collect(),
            next: 0,
        }
    }

    /// Tasks handed out by [`Self::take_due`] so far.
    #[must_use]
    pub fn posted(&self) -> usize {
        self.next
    }

    /// When to look at the clock next: the next task's due time, or
    /// `now_s + max_nap_s` if that comes first (the replay wakes that often
    /// to show progress); `None` once every task has been handed out.
    #[must_use]
    pub fn wake_s(&self, now_s: f64, max_nap_s: f64) -> Option<f64> {
        self.due_s
            .get(self.next)
            .map(|&due| due.min(now_s + max_nap_s.max(0.0)))
    }

    /// The tasks (indices) due at `now_s` and not handed out yet; they
    /// count as posted from now on. Empty when the next task is not due.
    pub fn take_due(&mut self, now_s: f64) -> std::ops::Range<usize> {
        let from = self.next;
        // A task due later stops the batch even if one after it (out of
        // order) is due: the order of the workload is kept.
        while self.next < self.due_s.len() && self.due_s[self.next] <= now_s {
            self.next += 1;
        }
        from..self.next
    }
}

/// Where and how a replay posts its tasks.
pub(super) struct Poster<'a> {
    pub(super) client: &'a reqwest::Client,
    /// The emitter's URL.
    pub(super) url: String,
    /// Task ids are `<prefix><index>`.
    pub(super) prefix: &'a str,
    /// The speedup.
    pub(super) k: f64,
    /// The longest nap between two looks at the clock (progress display).
    pub(super) max_nap: Duration,
}

impl Poster<'_> {
    /// Posts every one of `tasks` at its due time after `t0`, publishing
    /// the count posted so far in `posted`; returns how many the emitter
    /// accepted. `collected` and `bar` show progress.
    pub(super) async fn replay(
        &self,
        tasks: &[TaskSpec],
        t0: Instant,
        posted: &Arc<AtomicUsize>,
        collected: &Collected,
        bar: &indicatif::ProgressBar,
    ) -> Result<u64> {
        let k = self.k;
        let max_nap_s = self.max_nap.as_secs_f64();
        let mut accepted = 0u64;
        let arrivals: Vec<f64> = tasks.iter().map(|t| t.arrival_s).collect();
        let mut schedule = PostSchedule::new(&arrivals, k);
        // How far behind its due time each task was handed to the emitter
        // (wall seconds): the replay's own fidelity, logged at the end.
        let mut late_s: Vec<f64> = Vec::with_capacity(arrivals.len());
        while let Some(wake_s) = schedule.wake_s(t0.elapsed().as_secs_f64(), max_nap_s) {
            tokio::time::sleep_until((t0 + Duration::from_secs_f64(wake_s)).into()).await;
            let now_s = t0.elapsed().as_secs_f64();
            let due = schedule.take_due(now_s);
            late_s.extend(due.clone().map(|i| now_s - arrivals[i] / k));
            if !due.is_empty() {
                accepted += self.post_batch(due.start, &tasks[due.clone()]).await?;
                posted.store(due.end, Ordering::Release);
            }
            bar.set_position(collected.finished() as u64);
            bar.set_message(format!("sent {}", schedule.posted()));
        }
        late_s.sort_by(f64::total_cmp);
        let late_ms = |q: f64| percentile(&late_s, q) * 1e3;
        info!(
            accepted,
            late_p50_ms = late_ms(0.5),
            late_p99_ms = late_ms(0.99),
            late_max_ms = late_ms(1.0),
            "all arrivals sent (posting delay behind schedule, wall clock)"
        );
        Ok(accepted)
    }

    /// Posts one NDJSON batch, the tasks from index `first`; returns how
    /// many tasks the emitter stored. A full or unavailable queue is
    /// retried (same ids: JetStream de-duplicates), a refused batch is an
    /// error.
    async fn post_batch(&self, first: usize, tasks: &[TaskSpec]) -> Result<u64> {
        let (k, prefix) = (self.k, self.prefix);
        let mut body = String::new();
        for (i, t) in tasks.iter().enumerate() {
            let line = serde_json::json!({
                "id": format!("{prefix}{}", first + i),
                "payload": {"sleep_ms": (t.service_s * 1000.0 / k).round() as u64},
                "content_type": "application/json",
                "deadline_ms": ((t.deadline_s * 1000.0 / k).round() as u64).max(1),
            });
            body.push_str(&line.to_string());
            body.push('\n');
        }
        let mut backoff = Duration::from_millis(50);
        for attempt in 0..8 {
            let r = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                    let v: serde_json::Value = r.json().await.context("emitter: bad 202 body")?;
                    return Ok(v["ids"].as_array().map_or(0, |ids| ids.len() as u64));
                }
                Ok(r)
                    if r.status().is_client_error()
                        && r.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
                {
                    let code = r.status();
                    bail!(
                        "the emitter refused a batch ({code}): {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                Ok(r) => warn!(status = %r.status(), attempt, "emitter busy; retrying"),
                Err(e) => warn!(error = %e, attempt, "posting to the emitter; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        bail!(
            "the emitter did not accept a batch of {} tasks after 8 attempts",
            tasks.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny seeded generator (splitmix64) for the replay tests: uniform
    /// in `[0, 1)`.
    struct Uniform01(u64);

    impl Uniform01 {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Replays `arrivals` against a simulated clock: every wake-up is late
    /// by up to `jitter_s` and every post takes up to `post_s`. Returns each
    /// task's post time (seconds after the start), by task index.
    fn replay(arrivals: &[f64], k: f64, jitter_s: f64, post_s: f64, seed: u64) -> Vec<f64> {
        let mut rng = Uniform01(seed);
        let mut schedule = PostSchedule::new(arrivals, k);
        let mut posted_at = vec![f64::NAN; arrivals.len()];
        let mut now = 0.0f64;
        let mut wakes = 0usize;
        while let Some(wake) = schedule.wake_s(now, 0.025) {
            wakes += 1;
            assert!(wakes < 100 * arrivals.len() + 10_000, "the replay must end");
            // The timer never fires early, and may fire late.
            now = now.max(wake) + rng.next() * jitter_s;
            let due = schedule.take_due(now);
            for i in due.clone() {
                posted_at[i] = now;
            }
            if !due.is_empty() {
                now += rng.next() * post_s;
            }
        }
        posted_at
    }

    #[test]
    fn every_task_is_posted_once_at_or_after_its_due_time_and_soon_after() {
        let k = 4.0;
        for seed in 0..20u64 {
            // Poisson-like arrivals with bursts (gaps down to 0) over 240 s.
            let mut rng = Uniform01(seed.wrapping_add(99));
            let mut t = 0.0;
            let arrivals: Vec<f64> = (0..1500)
                .map(|_| {
                    t += if rng.next() < 0.2 {
                        0.0
                    } else {
                        rng.next() * 0.3
                    };
                    t
                })
                .collect();
            let (jitter, post) = (0.002, 0.005);
            let at = replay(&arrivals, k, jitter, post, seed);
            for (i, (&a, &p)) in arrivals.iter().zip(&at).enumerate() {
                let due = a / k;
                assert!(!p.is_nan(), "task {i} never posted");
                assert!(p >= due, "task {i} posted at {p} before its due time {due}");
                // At worst: the previous post was still running when it fell
                // due, then the timer woke late.
                assert!(
                    p <= due + post + jitter + 1e-9,
                    "task {i} posted {} s late",
                    p - due
                );
            }
        }
    }

    #[test]
    fn schedule_waits_for_the_next_due_task_and_naps_at_most_the_given_time() {
        let mut s = PostSchedule::new(&[0.4, 0.4, 2.0], 4.0);
        assert_eq!(s.wake_s(0.0, 1.0), Some(0.1));
        assert_eq!(s.take_due(0.099), 0..0, "not due yet");
        assert_eq!(s.take_due(0.1), 0..2, "both tasks due at 0.1 s");
        assert_eq!(s.posted(), 2);
        assert_eq!(s.wake_s(0.1, 0.025), Some(0.125), "a nap, not the due time");
        assert_eq!(s.wake_s(0.49, 0.025), Some(0.5));
        assert_eq!(s.take_due(0.3), 2..2);
        assert_eq!(s.take_due(0.7), 2..3, "a late wake-up posts what is due");
        assert_eq!(s.wake_s(0.7, 0.025), None, "all posted");
        assert_eq!(s.take_due(9.0), 3..3);
    }
}
