//! `farm-observe`: observing a live farm: JetStream consumer info of the
//! `workers` consumer, the collector's latest `MetricsSnapshot`, and replica
//! counts from the provider, turned into farm-model [`Signals`]. Both live
//! hosts run it: gateway-ext's control loop and farmctl's live loop
//! (`farmctl run` / `compare`), so a policy sees the same signals in both.
//!
//! [`SignalsBuilder`] is the pure part (counter deltas between ticks, and
//! the interval window from the collector's cumulative sums, see
//! [`crate::interval`]); [`NatsObserver`] the I/O part.

pub mod interval;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farm_model::signals::Signals;
use farm_runtime::names::FarmNames;
use farm_runtime::proto::{Cumulative, MetricsSnapshot};
use futures::StreamExt;
use prost::Message;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

/// What JetStream says about the `workers` consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerSample {
    /// Tasks not yet delivered.
    pub num_pending: u64,
    /// Tasks delivered and not yet acked.
    pub num_ack_pending: u64,
    /// Tasks currently pending that were delivered more than once.
    pub num_redelivered: u64,
    /// Stream sequence of the last delivery; `+ num_pending` is the last
    /// stream sequence, whose growth counts arrivals.
    pub delivered_stream_seq: u64,
}

/// One observation of a farm at a tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Consumer state, `None` when JetStream could not be asked.
    pub consumer: Option<ConsumerSample>,
    /// The collector's latest snapshot, `None` when none arrived recently.
    pub snapshot: Option<MetricsSnapshot>,
    /// Replicas over all shards (starting + ready).
    pub replicas: u32,
    /// Ready replicas over all shards.
    pub available: u32,
    /// How long the task at the head of the work queue has waited, seconds
    /// (0 with an empty queue or when JetStream could not be asked).
    pub queue_head_age_s: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    arrivals_seq: Option<u64>,
    completed: Option<u64>,
    hits: Option<u64>,
}

impl Totals {
    /// `self`, with the fields it lacks taken from `earlier`: a source
    /// missing at a tick does not reset what later windows count from.
    fn or(self, earlier: Totals) -> Totals {
        Totals {
            arrivals_seq: self.arrivals_seq.or(earlier.arrivals_seq),
            completed: self.completed.or(earlier.completed),
            hits: self.hits.or(earlier.hits),
        }
    }
}

/// The farm's counters at a past tick: where a later window can start.
#[derive(Debug, Clone, Default)]
struct Boundary {
    /// Seconds on the builder's clock (the sum of the ticks' intervals).
    t_s: f64,
    totals: Totals,
    /// The collector's running sums.
    cumulative: Option<Cumulative>,
}

/// Builds [`Signals`] from successive [`Sample`]s.
///
/// Each tick closes a decision step and keeps the counters it saw as a
/// boundary; a tick's signals cover the window from the oldest boundary
/// inside [`BuildContext::window_s`] (the previous tick at least) to now,
/// as the simulator's sliding windows do (`farm_sim` keeps the buckets
/// whose start is inside the window).
#[derive(Debug, Clone, Default)]
pub struct SignalsBuilder {
    /// The builder's clock: the sum of the ticks' intervals, seconds.
    clock_s: f64,
    /// Past ticks still inside some window, oldest first; the last is the
    /// previous tick.
    past: VecDeque<Boundary>,
}

fn delta(prev: Option<u64>, now: Option<u64>) -> f64 {
    match (prev, now) {
        // A counter that went backwards was restarted (a new collector):
        // count from zero.
        (Some(p), Some(n)) if n >= p => (n - p) as f64,
        (Some(_), Some(n)) => n as f64,
        _ => 0.0,
    }
}

fn positive(x: f64) -> Option<f64> {
    (x.is_finite() && x > 0.0).then_some(x)
}

/// Inputs of one build besides the sample.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext {
    /// Seconds since the previous tick (the decision step).
    pub interval_s: f64,
    /// Seconds of the sliding window the signals cover (counted back to
    /// the oldest tick inside it); at most `interval_s` (0, say) = since
    /// the previous tick.
    pub window_s: f64,
    /// Replicas last asked for.
    pub desired: u32,
    /// Seconds since the desired count last changed.
    pub since_last_scale_s: f64,
    /// Farm bounds.
    pub min: u32,
    /// Farm bounds.
    pub max: u32,
}

impl SignalsBuilder {
    /// The signals of the window ending with `s`, and `s` kept as the start
    /// of later windows (a tick). To look without closing a step (an
    /// out-of-band decision), build on a clone.
    ///
    /// Arrivals are the growth of the task stream's last sequence.
    /// Completion statistics come from the difference of the collector's
    /// cumulative sums between the window's start and now
    /// ([`crate::interval::between`]): exactly the successful results of the
    /// window, as the simulator computes them. The smallest deadline falls
    /// back to the collector's window when nothing completed (the simulator
    /// also counts the window's arrivals, which the collector cannot see).
    ///
    /// Without cumulative sums (a collector from before they existed, or the
    /// first tick) the counts are the growth of the collector's totals and
    /// the statistics its sliding window: its median stands in for the mean
    /// and its p99 for the maximum.
    pub fn build(&mut self, s: &Sample, ctx: &BuildContext) -> Signals {
        let now_s = self.clock_s + ctx.interval_s;
        let span = ctx.window_s.max(ctx.interval_s);
        // Boundaries older than the window are out of it for good (the
        // clock only advances); the previous tick always stays.
        while self.past.len() > 1 && self.past[0].t_s < now_s - span - 1e-9 {
            self.past.pop_front();
        }
        let start = self.past.front().cloned();
        let base = start.as_ref().map(|b| b.totals).unwrap_or_default();
        let window_s = start.as_ref().map_or(ctx.interval_s, |b| now_s - b.t_s);
        let now = Totals {
            arrivals_seq: s.consumer.map(|c| c.delivered_stream_seq + c.num_pending),
            completed: s.snapshot.as_ref().map(|m| m.completed),
            hits: s.snapshot.as_ref().map(|m| m.qos_hits),
        };
        let arrivals = match (base.arrivals_seq, now.arrivals_seq) {
            (Some(_), Some(_)) => delta(base.arrivals_seq, now.arrivals_seq),
            // No earlier stream position: fall back to the collector's window.
            _ => s.snapshot.as_ref().map_or(0.0, |m| {
                let w = if m.window_s > 0.0 { m.window_s } else { 1.0 };
                m.window_arrivals as f64 * (window_s / w).min(1.0)
            }),
        };
        let completions = delta(base.completed, now.completed);
        let on_time = delta(base.hits, now.hits).min(completions);
        let snap_has_window = s.snapshot.as_ref().is_some_and(|m| m.window_completed > 0);
        let window = |f: fn(&MetricsSnapshot) -> f64| {
            s.snapshot
                .as_ref()
                .filter(|_| snap_has_window)
                .and_then(|m| positive(f(m)))
        };
        let in_flight = s.consumer.map_or(0.0, |c| c.num_ack_pending as f64);
        let ready = f64::from(s.available);
        let cumulative = s.snapshot.as_ref().and_then(|m| m.cumulative.clone());
        let interval = match (
            start.as_ref().and_then(|b| b.cumulative.as_ref()),
            &cumulative,
        ) {
            (Some(p), Some(n)) => Some(crate::interval::between(Some(p), n)),
            _ => None,
        };
        // This tick is where later windows may start; a source missing now
        // keeps the last counters seen, so the next window still starts
        // where this one ended.
        let last = self.past.back();
        self.past.push_back(Boundary {
            t_s: now_s,
            totals: now.or(last.map(|b| b.totals).unwrap_or_default()),
            cumulative: cumulative.or_else(|| last.and_then(|b| b.cumulative.clone())),
        });
        self.clock_s = now_s;
        let snapshot_deadline_min = s.snapshot.as_ref().and_then(|m| positive(m.deadline_min_s));
        let signals = Signals {
            interval_s: window_s,
            step_s: ctx.interval_s,
            backlog: s.consumer.map_or(0.0, |c| c.num_pending as f64),
            in_flight,
            arrivals,
            completions,
            completions_on_time: on_time,
            service_mean_s: window(|m| m.service_mean_s),
            service_p95_s: window(|m| m.service_p95_s),
            latency_mean_s: window(|m| m.latency_p50_s),
            latency_max_s: window(|m| m.latency_p99_s),
            latency_p95_s: window(|m| m.latency_p95_s),
            deadline_min_s: snapshot_deadline_min,
            replicas_desired: f64::from(ctx.desired),
            replicas_ready: ready,
            replicas_starting: f64::from(s.replicas.saturating_sub(s.available)),
            // One task per replica at a time (FARM_CONCURRENCY=1, the default).
            replicas_busy: in_flight.min(ready),
            since_last_scale_s: ctx.since_last_scale_s,
            redeliveries: s.consumer.map_or(0.0, |c| c.num_redelivered as f64),
            min_replicas: f64::from(ctx.min),
            max_replicas: f64::from(ctx.max),
            oldest_age_s: s.queue_head_age_s.max(0.0),
            ..Default::default()
        };
        match interval {
            Some(w) => Signals {
                completions: w.completions as f64,
                completions_on_time: w.on_time as f64,
                service_mean_s: w.service.map(|x| x.0),
                service_p95_s: w.service.map(|x| x.1),
                latency_mean_s: w.latency.map(|x| x.0),
                latency_max_s: w.latency.map(|x| x.1),
                latency_p95_s: w.latency.map(|x| x.2),
                deadline_min_s: w.deadline.map(|x| x.0).or(snapshot_deadline_min),
                deadline_mean_s: w.deadline.map(|x| x.1),
                ..signals
            },
            None => signals,
        }
    }
}

/// The shared NATS connection, set once it is established (the service
/// starts without it and keeps retrying, so a NATS outage never stops the
/// HTTP surface).
///
/// Only the connecting task may initialise it, with `set`. Readers use
/// `get` (and poll while it is empty): a reader that called
/// `get_or_init(pending)` would hold the cell's initialisation permit
/// forever, so the connector's `set` would fail with `InitializingError`
/// and every farm would stay "not connected" for the life of the process.
pub type SharedNats = Arc<OnceCell<async_nats::Client>>;

/// How often a reader looks whether the connection is there yet.
const CONNECTION_POLL: Duration = Duration::from_millis(50);

/// Default bound of one JetStream request of the control loop.
pub const DEFAULT_OBSERVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the JetStream side could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// Not connected to NATS (yet).
    #[error("not connected to NATS")]
    NotConnected,
    /// The task stream or the `workers` consumer does not exist (yet): no
    /// worker has declared the farm's topology.
    #[error("JetStream {what}: {name} does not exist (no worker has declared the farm yet?)")]
    Missing {
        /// `stream` or `consumer`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// JetStream did not answer within the observe timeout.
    #[error("JetStream {what}: no answer within {after:?}")]
    Timeout {
        /// What was asked.
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The task stream or the consumer could not be read.
    #[error("JetStream {what}: {message}")]
    JetStream {
        /// What was asked.
        what: &'static str,
        /// The error.
        message: String,
    },
}

impl ObserveError {
    /// A short label for metrics and status (`gateway_ext_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            ObserveError::Timeout { .. } => "jetstream_timeout",
            _ => "jetstream",
        }
    }
}

/// Waits until `nats` holds a client, without ever initialising it.
async fn connected(nats: &SharedNats, stop: &CancellationToken) -> Option<async_nats::Client> {
    loop {
        if let Some(c) = nats.get() {
            return Some(c.clone());
        }
        tokio::select! {
            () = tokio::time::sleep(CONNECTION_POLL) => {}
            () = stop.cancelled() => return None,
        }
    }
}

/// Watches one farm's JetStream consumer and metrics subject.
pub struct NatsObserver {
    nats: SharedNats,
    names: FarmNames,
    latest: Arc<Mutex<Option<(MetricsSnapshot, Instant)>>>,
    max_age: Duration,
    timeout: Duration,
}

impl NatsObserver {
    /// Starts watching `names`' metrics subject (as soon as NATS is
    /// connected) until `stop`. Snapshots older than `max_age` are ignored.
    /// JetStream requests are bounded by [`DEFAULT_OBSERVE_TIMEOUT`].
    pub fn start(
        nats: SharedNats,
        names: FarmNames,
        max_age: Duration,
        stop: CancellationToken,
    ) -> Arc<Self> {
        Self::start_with_timeout(nats, names, max_age, DEFAULT_OBSERVE_TIMEOUT, stop)
    }

    /// As [`NatsObserver::start`], with every JetStream request bounded by
    /// `timeout`.
    pub fn start_with_timeout(
        nats: SharedNats,
        names: FarmNames,
        max_age: Duration,
        timeout: Duration,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let obs = Arc::new(NatsObserver {
            nats: nats.clone(),
            names: names.clone(),
            latest: Arc::new(Mutex::new(None)),
            max_age,
            timeout,
        });
        let latest = obs.latest.clone();
        tokio::spawn(async move {
            let Some(client) = connected(&nats, &stop).await else {
                return;
            };
            watch_snapshots(client, names, latest, stop).await;
        });
        obs
    }

    /// The latest snapshot if it is recent.
    pub fn snapshot(&self) -> Option<MetricsSnapshot> {
        let g = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.as_ref()
            .filter(|(_, at)| at.elapsed() <= self.max_age)
            .map(|(s, _)| s.clone())
    }

    /// A snapshot as of now, asked of the collector on
    /// `farm.<f>.metrics.now` (bounded by the observe timeout, at most 1 s),
    /// so an interval closes at the tick, not up to a publication period
    /// earlier. `None` when no collector answers (one from before that
    /// subject existed, or none running): callers fall back to
    /// [`NatsObserver::snapshot`]. An answer also becomes the latest
    /// snapshot.
    pub async fn fresh_snapshot(&self) -> Option<MetricsSnapshot> {
        let client = self.nats.get()?;
        let subject = format!("{}.now", self.names.metrics_subject());
        let wait = self.timeout.min(Duration::from_secs(1));
        let answer = tokio::time::timeout(wait, client.request(subject, bytes::Bytes::new()))
            .await
            .ok()?
            .ok()?;
        let snap = MetricsSnapshot::decode(answer.payload.as_ref()).ok()?;
        *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((snap.clone(), Instant::now()));
        Some(snap)
    }

    /// How long ago the latest snapshot arrived, `None` before the first.
    pub fn snapshot_age(&self) -> Option<Duration> {
        let g = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.as_ref().map(|(_, at)| at.elapsed())
    }

    /// Asks JetStream about the `workers` consumer: one request
    /// (`CONSUMER.INFO`), bounded by the observe timeout. Nothing is cached
    /// between calls, so a stream or consumer created (or recreated) after
    /// the farm loop started is seen at the next tick.
    pub async fn consumer(&self) -> Result<ConsumerSample, ObserveError> {
        use async_nats::jetstream::ErrorCode;
        use async_nats::jetstream::response::Response;
        let client = self.nats.get().ok_or(ObserveError::NotConnected)?;
        let js = async_nats::jetstream::new(client.clone());
        let stream = self.names.tasks_stream();
        let consumer = self.names.workers_consumer();
        let subject = format!("CONSUMER.INFO.{stream}.{consumer}");
        let empty = serde_json::Map::new();
        let request =
            js.request::<_, _, Response<async_nats::jetstream::consumer::Info>>(subject, &empty);
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| ObserveError::Timeout {
                what: "consumer info",
                after: self.timeout,
            })?
            .map_err(|e| ObserveError::JetStream {
                what: "consumer info",
                message: e.to_string(),
            })?;
        trace!(farm = self.names.farm(), took = ?started.elapsed(), "consumer info");
        match answer {
            Response::Ok(info) => Ok(ConsumerSample {
                num_pending: info.num_pending,
                num_ack_pending: info.num_ack_pending as u64,
                num_redelivered: info.num_redelivered as u64,
                delivered_stream_seq: info.delivered.stream_sequence,
            }),
            Response::Err { error } if error.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Err(ObserveError::Missing {
                    what: "stream",
                    name: stream,
                })
            }
            Response::Err { error } if error.error_code() == ErrorCode::CONSUMER_NOT_FOUND => {
                Err(ObserveError::Missing {
                    what: "consumer",
                    name: format!("{stream}/{consumer}"),
                })
            }
            Response::Err { error } => Err(ObserveError::JetStream {
                what: "consumer info",
                message: error.to_string(),
            }),
        }
    }

    /// How long the task at the head of the work queue has waited, seconds:
    /// the age of the first task after the consumer's last delivery (one
    /// `STREAM.MSG.GET`, bounded by the observe timeout), 0 when nothing is
    /// pending. The stream's own timestamp of the task is its arrival (the
    /// emitter stores it when it accepts it), so the age needs no clock of
    /// the emitter; it is the simulator's `oldest_age_s`.
    pub async fn queue_head_age(&self, c: &ConsumerSample) -> Result<f64, ObserveError> {
        if c.num_pending == 0 {
            return Ok(0.0);
        }
        let client = self.nats.get().ok_or(ObserveError::NotConnected)?;
        let js = async_nats::jetstream::new(client.clone());
        let what = "queue head";
        let get = async {
            let stream = js
                .get_stream_no_info(self.names.tasks_stream())
                .await
                .map_err(|e| e.to_string())?;
            stream
                .raw_message_builder()
                .sequence(c.delivered_stream_seq + 1)
                .next_by_subject(self.names.tasks_subject())
                .send()
                .await
                .map_err(|e| e.to_string())
        };
        let msg = tokio::time::timeout(self.timeout, get)
            .await
            .map_err(|_| ObserveError::Timeout {
                what,
                after: self.timeout,
            })?
            .map_err(|message| ObserveError::JetStream { what, message })?;
        Ok((async_nats::datetime::now() - msg.time)
            .as_seconds_f64()
            .max(0.0))
    }
}

/// Keeps `latest` up to date with the snapshots on the farm's metrics
/// subject until `stop`; resubscribes (with a bounded backoff) when the
/// subscription cannot be made or ends while the client lives.
async fn watch_snapshots(
    client: async_nats::Client,
    names: FarmNames,
    latest: Arc<Mutex<Option<(MetricsSnapshot, Instant)>>>,
    stop: CancellationToken,
) {
    let subject = names.metrics_subject();
    let mut delay = Duration::from_millis(100);
    loop {
        let sub = tokio::select! {
            s = client.subscribe(subject.clone()) => s,
            () = stop.cancelled() => return,
        };
        match sub {
            Ok(mut sub) => {
                debug!(farm = names.farm(), subject = %subject, "watching metrics snapshots");
                loop {
                    tokio::select! {
                        m = sub.next() => match m {
                            Some(msg) => match MetricsSnapshot::decode(msg.payload.as_ref()) {
                                Ok(snap) => {
                                    *latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((snap, Instant::now()));
                                }
                                Err(e) => debug!(farm = names.farm(), error = %e, "undecodable metrics snapshot"),
                            },
                            // The client was closed: nothing more to watch.
                            None => return,
                        },
                        () = stop.cancelled() => {
                            let _ = sub.unsubscribe().await;
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                warn!(farm = names.farm(), error = %e, retry_in = ?delay, "cannot subscribe to metrics snapshots");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> BuildContext {
        BuildContext {
            interval_s: 2.0,
            window_s: 0.0,
            desired: 3,
            since_last_scale_s: 4.0,
            min: 1,
            max: 10,
        }
    }

    fn snap(completed: u64, hits: u64) -> MetricsSnapshot {
        MetricsSnapshot {
            completed,
            qos_hits: hits,
            window_s: 2.0,
            window_completed: 5,
            window_arrivals: 7,
            latency_p50_s: 1.0,
            latency_p95_s: 2.0,
            latency_p99_s: 3.0,
            service_mean_s: 0.5,
            service_p95_s: 0.9,
            deadline_min_s: 4.0,
            ..Default::default()
        }
    }

    #[test]
    fn deltas_between_samples() {
        let mut b = SignalsBuilder::default();
        let c1 = ConsumerSample {
            num_pending: 10,
            num_ack_pending: 2,
            num_redelivered: 0,
            delivered_stream_seq: 20,
        };
        let first = b.build(
            &Sample {
                consumer: Some(c1),
                snapshot: Some(snap(100, 90)),
                replicas: 3,
                available: 2,
                ..Default::default()
            },
            &ctx(),
        );
        assert_eq!(
            first.arrivals, 7.0,
            "first tick uses the collector's window"
        );
        assert_eq!(first.completions, 0.0);
        assert_eq!(first.backlog, 10.0);
        assert_eq!(first.replicas_starting, 1.0);
        assert_eq!(first.replicas_busy, 2.0);
        let c2 = ConsumerSample {
            num_pending: 4,
            num_ack_pending: 3,
            num_redelivered: 1,
            delivered_stream_seq: 40,
        };
        let s = b.build(
            &Sample {
                consumer: Some(c2),
                snapshot: Some(snap(110, 96)),
                replicas: 3,
                available: 3,
                ..Default::default()
            },
            &ctx(),
        );
        assert_eq!(s.arrivals, 14.0);
        assert_eq!(s.completions, 10.0);
        assert_eq!(s.completions_on_time, 6.0);
        assert_eq!(s.window_qos(), Some(0.6));
        assert_eq!(s.service_mean_s, Some(0.5));
        assert_eq!(s.latency_mean_s, Some(1.0));
        assert_eq!(s.deadline_min_s, Some(4.0));
        assert_eq!(s.redeliveries, 1.0);
        assert_eq!(
            (s.min_replicas, s.max_replicas, s.replicas_desired),
            (1.0, 10.0, 3.0)
        );
    }

    #[test]
    fn cumulative_sums_give_the_interval_window_not_the_sliding_one() {
        let hist = |i: u32, n: u64| farm_runtime::proto::Histogram {
            growth: 1.02,
            index: vec![i],
            count: vec![n],
        };
        let cum = |n: u64, lat_sum: u64| Cumulative {
            started_us: 9,
            completed: n,
            on_time: n,
            latency_sum_us: lat_sum,
            service_sum_us: n * 100_000,
            deadline_sum_ms: n * 4_000,
            latency_max_us: 2_000_000,
            latency: Some(hist(700, n)),
            service: Some(hist(580, n)),
            deadline: Some(hist(766, n)),
        };
        let with = |c: Cumulative| Sample {
            snapshot: Some(MetricsSnapshot {
                cumulative: Some(c),
                ..snap(0, 0)
            }),
            ..Default::default()
        };
        let mut b = SignalsBuilder::default();
        // First tick: no previous sums, the sliding window stands in.
        let first = b.build(&with(cum(10, 10_000_000)), &ctx());
        assert_eq!(first.latency_mean_s, Some(1.0));
        assert_eq!(first.deadline_mean_s, None);
        // Second: exactly the 4 results between the two snapshots.
        let s = b.build(&with(cum(14, 14_000_000 + 2_000_000)), &ctx());
        assert_eq!((s.completions, s.completions_on_time), (4.0, 4.0));
        assert_eq!(s.latency_mean_s, Some(1.5));
        assert_eq!(s.service_mean_s, Some(0.1));
        assert_eq!(s.deadline_mean_s, Some(4.0));
        let p95 = s.latency_p95_s.unwrap();
        assert!((p95 - 1.02f64.powf(700.5) / 1e6).abs() < 1e-9, "{p95}");
        // A tick without a completion: no statistics, the window's deadline.
        let s = b.build(&with(cum(14, 16_000_000)), &ctx());
        assert_eq!(s.completions, 0.0);
        assert_eq!(s.latency_mean_s, None);
        assert_eq!(s.deadline_min_s, Some(4.0));
    }

    #[test]
    fn policy_time_scales_durations_not_counts() {
        let mut b = SignalsBuilder::default();
        let wall = b.build(
            &Sample {
                consumer: Some(ConsumerSample {
                    num_pending: 10,
                    num_ack_pending: 2,
                    num_redelivered: 0,
                    delivered_stream_seq: 20,
                }),
                snapshot: Some(snap(100, 90)),
                replicas: 3,
                available: 2,
                ..Default::default()
            },
            &ctx(),
        );
        assert_eq!(wall.time_scaled(1.0), wall);
        let p = wall.time_scaled(4.0);
        assert_eq!(p.interval_s, 8.0);
        assert_eq!(p.since_last_scale_s, 16.0);
        assert_eq!(p.service_mean_s, Some(2.0));
        assert_eq!(p.service_p95_s, Some(3.6));
        assert_eq!(p.latency_mean_s, Some(4.0));
        assert_eq!(p.latency_max_s, Some(12.0));
        assert_eq!(p.deadline_min_s, Some(16.0));
        // Counts and replica figures stay; rates (per policy second) fall by K.
        assert_eq!(
            (p.backlog, p.in_flight, p.arrivals, p.replicas_ready),
            (
                wall.backlog,
                wall.in_flight,
                wall.arrivals,
                wall.replicas_ready
            )
        );
        assert_eq!(p.arrival_rate(), wall.arrival_rate() / 4.0);
        // Work in units of the policy's clock is unchanged: offered load.
        let load = |s: &Signals| s.arrival_rate() * s.service_mean_s.unwrap_or(0.0);
        assert!((load(&p) - load(&wall)).abs() < 1e-12);
    }

    /// A tick whose stream has seen `arrived` tasks and whose collector
    /// completed `done` (all on time) with `service_s` each.
    fn counted(arrived: u64, done: u64, service_s: f64) -> Sample {
        let us = (service_s * 1e6) as u64;
        Sample {
            consumer: Some(ConsumerSample {
                num_pending: 0,
                delivered_stream_seq: arrived,
                ..Default::default()
            }),
            snapshot: Some(MetricsSnapshot {
                completed: done,
                qos_hits: done,
                cumulative: Some(Cumulative {
                    completed: done,
                    on_time: done,
                    service_sum_us: done * us,
                    latency_sum_us: done * us,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            replicas: 2,
            available: 2,
            queue_head_age_s: 0.0,
        }
    }

    #[test]
    fn sliding_window_counts_back_to_the_oldest_tick_inside_it() {
        // Decide every 2 s over 6 s: the window spans the last three steps
        // once three have passed, as the simulator's buckets do.
        let w = BuildContext {
            window_s: 6.0,
            ..ctx()
        };
        let mut b = SignalsBuilder::default();
        b.build(&counted(0, 0, 0.0), &w);
        let mut arrived = 0;
        let mut done = 0;
        let mut seen = Vec::new();
        for k in 1..=5u64 {
            // Step k brings k tasks; completions (1 s each) trail by a step.
            arrived += k;
            done += k - 1;
            seen.push(b.build(&counted(arrived, done, 1.0), &w));
        }
        let spans: Vec<f64> = seen.iter().map(|s| s.interval_s).collect();
        assert_eq!(spans, [2.0, 4.0, 6.0, 6.0, 6.0]);
        assert!(seen.iter().all(|s| s.step_s == 2.0 && s.step() == 2.0));
        let arrivals: Vec<f64> = seen.iter().map(|s| s.arrivals).collect();
        assert_eq!(arrivals, [1.0, 3.0, 6.0, 9.0, 12.0]);
        let completions: Vec<f64> = seen.iter().map(|s| s.completions).collect();
        assert_eq!(completions, [0.0, 1.0, 3.0, 6.0, 9.0]);
        // Rates are over the window, not the step.
        assert_eq!(seen[4].arrival_rate(), 2.0);
        assert_eq!(seen[4].service_mean_s, Some(1.0));
        // A window no longer than the step is the tumbling one.
        let mut t = SignalsBuilder::default();
        t.build(&counted(0, 0, 0.0), &ctx());
        t.build(&counted(4, 1, 1.0), &ctx());
        let s = t.build(&counted(10, 3, 1.0), &ctx());
        assert_eq!((s.interval_s, s.arrivals, s.completions), (2.0, 6.0, 2.0));
    }

    #[test]
    fn a_peek_on_a_clone_leaves_the_ticks_alone() {
        let w = BuildContext {
            window_s: 8.0,
            ..ctx()
        };
        let mut b = SignalsBuilder::default();
        b.build(&counted(0, 0, 0.0), &w);
        b.build(&counted(4, 2, 1.0), &w);
        // An alert 0.5 s after the tick looks at the window so far.
        let peek = b.clone().build(
            &counted(5, 2, 1.0),
            &BuildContext {
                interval_s: 0.5,
                ..w
            },
        );
        assert_eq!((peek.interval_s, peek.arrivals), (2.5, 5.0));
        // The next tick counts from the same boundaries.
        let s = b.build(&counted(8, 4, 1.0), &w);
        assert_eq!((s.interval_s, s.arrivals, s.completions), (4.0, 8.0, 4.0));
    }

    #[test]
    fn a_missing_source_keeps_the_window_start() {
        let mut b = SignalsBuilder::default();
        b.build(&counted(0, 0, 0.0), &ctx());
        b.build(&counted(4, 2, 1.0), &ctx());
        // JetStream and the collector both unreachable for one tick.
        let gap = b.build(&Sample::default(), &ctx());
        assert_eq!((gap.arrivals, gap.completions), (0.0, 0.0));
        // The next tick counts from the last counters seen, so nothing that
        // happened during the gap is lost.
        let s = b.build(&counted(10, 6, 1.0), &ctx());
        assert_eq!((s.arrivals, s.completions), (6.0, 4.0));
    }

    #[test]
    fn queue_head_age_is_the_backlog_age() {
        let mut b = SignalsBuilder::default();
        let s = b.build(
            &Sample {
                queue_head_age_s: 3.5,
                ..counted(4, 0, 0.0)
            },
            &ctx(),
        );
        assert_eq!(s.oldest_age_s, 3.5);
        assert_eq!(s.time_scaled(4.0).oldest_age_s, 14.0);
    }

    #[test]
    fn missing_sources_give_empty_windows_not_made_up_values() {
        let mut b = SignalsBuilder::default();
        let s = b.build(&Sample::default(), &ctx());
        assert_eq!(s.window_qos(), None);
        assert_eq!(s.service_mean_s, None);
        assert_eq!(s.arrivals, 0.0);
        // A restarted collector (totals went down) counts from zero.
        b.build(
            &Sample {
                snapshot: Some(snap(100, 100)),
                ..Default::default()
            },
            &ctx(),
        );
        let s = b.build(
            &Sample {
                snapshot: Some(snap(5, 5)),
                ..Default::default()
            },
            &ctx(),
        );
        assert_eq!(s.completions, 5.0);
    }
}
