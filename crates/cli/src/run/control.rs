//! The replay's control loop: every control interval (wall clock) it reads
//! the work queue, the interval's results and the provider's replica
//! counts, builds the scenario-time [`Signals`] the simulator would give
//! the policy, and, when farmctl sizes the pool, asks the policy and calls
//! the provider's scale API. With gateway-ext sizing the pool it only
//! samples. It also emulates OpenFaaS CE's alert rule and takes early
//! decisions on a backlog jump (`--events`), both as the simulator does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use farm_model::cadence::{Armed, BacklogJump};
use farm_model::scenario::Platform;
use farm_model::signals::Signals;
use farm_observe::{BuildContext, ConsumerSample, NatsObserver, Sample, SignalsBuilder};
use farm_sim::TimelinePoint;
use farm_sim::metrics::nearest_rank_sorted as percentile;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::LiveSignals;
use super::output::{Collected, Done, Outcome};
use crate::local::function_status;
use crate::shared::stack::{Farm, Stack};

/// One control tick of a live run: what the policy saw and what it asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    /// Scenario time of the tick, seconds.
    pub t_s: f64,
    /// The signals the policy was given (scenario time).
    pub signals: Signals,
    /// Replicas asked for after the decision.
    pub desired: u32,
    /// Live only: the scenario time at which the work queue (backlog, in
    /// flight) was actually read, the midpoint of the consumer-info
    /// request; `t_s` is when the tick started. The simulator reads its
    /// queue at exactly `t_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_s: Option<f64>,
}

/// The completion statistics of one interval, the simulator's way
/// (`farm_sim::Engine::signals`), from the results collected in it and the
/// deadlines of the tasks submitted in it. Times in seconds of whatever
/// clock the inputs use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntervalStats {
    /// Successful completions.
    pub completions: f64,
    /// Of which on time.
    pub on_time: f64,
    /// Mean and 95th percentile service time.
    pub service: Option<(f64, f64)>,
    /// Mean, max and 95th percentile end-to-end latency.
    pub latency: Option<(f64, f64, f64)>,
    /// Smallest deadline among arrivals and completions.
    pub deadline_min: Option<f64>,
    /// Mean deadline of the completions.
    pub deadline_mean: Option<f64>,
}

impl IntervalStats {
    /// Statistics of `done` (results of the interval: outcome, hit,
    /// latency, service, deadline, in seconds) with `arrival_deadlines` of
    /// the tasks submitted in the interval.
    pub fn of(done: &[(bool, bool, f64, f64, f64)], arrival_deadlines: &[f64]) -> IntervalStats {
        let ok: Vec<&(bool, bool, f64, f64, f64)> = done.iter().filter(|d| d.0).collect();
        let n = ok.len();
        let mut lat: Vec<f64> = ok.iter().map(|d| d.2).collect();
        let mut svc: Vec<f64> = ok.iter().map(|d| d.3).collect();
        lat.sort_by(f64::total_cmp);
        svc.sort_by(f64::total_cmp);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let deadline_min = ok
            .iter()
            .map(|d| d.4)
            .chain(arrival_deadlines.iter().copied())
            .fold(f64::INFINITY, f64::min);
        IntervalStats {
            completions: n as f64,
            on_time: ok.iter().filter(|d| d.1).count() as f64,
            service: (n > 0).then(|| (mean(&svc), percentile(&svc, 0.95))),
            latency: (n > 0).then(|| {
                (
                    mean(&lat),
                    lat.last().copied().unwrap_or(0.0),
                    percentile(&lat, 0.95),
                )
            }),
            deadline_min: deadline_min.is_finite().then_some(deadline_min),
            deadline_mean: (n > 0).then(|| ok.iter().map(|d| d.4).sum::<f64>() / n as f64),
        }
    }

    /// Statistics of the OUTPUT entries `window` (µs and ms, wall clock)
    /// in seconds, with `arrival_deadlines` of the tasks submitted.
    fn of_entries(window: &[Done], arrival_deadlines: &[f64]) -> IntervalStats {
        let results: Vec<(bool, bool, f64, f64, f64)> = window
            .iter()
            .map(|d| {
                (
                    d.outcome == Outcome::Ok,
                    d.hit,
                    d.latency_us as f64 / 1e6,
                    d.service_us as f64 / 1e6,
                    d.deadline_ms as f64 / 1e3,
                )
            })
            .collect();
        IntervalStats::of(&results, arrival_deadlines)
    }

    /// `s` with its completion statistics replaced by these.
    pub fn apply(&self, s: Signals) -> Signals {
        Signals {
            completions: self.completions,
            completions_on_time: self.on_time,
            service_mean_s: self.service.map(|x| x.0),
            service_p95_s: self.service.map(|x| x.1),
            latency_mean_s: self.latency.map(|x| x.0),
            latency_max_s: self.latency.map(|x| x.1),
            latency_p95_s: self.latency.map(|x| x.2),
            deadline_min_s: self.deadline_min,
            deadline_mean_s: self.deadline_mean,
            ..s
        }
    }
}

/// The replica bounds of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounds {
    pub(super) min: u32,
    pub(super) max: u32,
    /// Ready replicas when the replay starts.
    pub(super) initial: u32,
}

impl Bounds {
    /// The scenario platform's bounds within the stack's for `farm`'s worker.
    pub(super) fn of(platform: &Platform, stack: &Stack, farm: &Farm) -> Bounds {
        let (stack_min, stack_max) = stack.scale_bounds(&farm.worker);
        let min = platform.min_replicas.max(stack_min);
        let max = platform.max_replicas.min(stack_max).max(min);
        Bounds {
            min,
            max,
            initial: platform.initial_replicas.clamp(min, max),
        }
    }
}

/// The provider's scale API: `name` to `replicas`.
pub(super) async fn scale(
    client: &reqwest::Client,
    provider: &str,
    name: &str,
    replicas: u32,
) -> Result<()> {
    let body = serde_json::json!({"serviceName": name, "replicas": replicas, "namespace": farm_local::DEFAULT_NAMESPACE});
    let r = client
        .post(format!("{provider}/system/scale-function/{name}"))
        .json(&body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("scaling {name} to {replicas}: {}", r.status());
    }
    Ok(())
}

/// Waits until `name` has `want` replicas available, at most `timeout`.
pub(super) async fn wait_ready(
    client: &reqwest::Client,
    provider: &str,
    name: &str,
    want: u32,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = function_status(client, provider, name).await?;
        if s.available_replicas >= u64::from(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{name}: {}/{want} replicas available after {}s",
                s.available_replicas,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The builder primed with the farm's counters as the run starts, so the
/// first tick's arrivals and completions are deltas over the first
/// interval, as in the simulator, not a fallback estimate; and the
/// signals it built then (what early decisions are armed from at t = 0).
pub(super) async fn prime(
    observer: &NatsObserver,
    bounds: Bounds,
    interval_real: Duration,
) -> (SignalsBuilder, Signals) {
    let mut builder = SignalsBuilder::default();
    let prime_until = Instant::now() + Duration::from_secs(3);
    let consumer = loop {
        let c = observer.consumer().await.ok();
        if (c.is_some() && observer.snapshot().is_some()) || Instant::now() > prime_until {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let primed = builder.build(
        &Sample {
            consumer,
            snapshot: observer.snapshot(),
            replicas: bounds.initial,
            available: bounds.initial,
            queue_head_age_s: 0.0,
        },
        &BuildContext {
            interval_s: interval_real.as_secs_f64(),
            // The scenario's tumbling window (farmctl run has no --window yet).
            window_s: 0.0,
            desired: bounds.initial,
            since_last_scale_s: 0.0,
            min: bounds.min,
            max: bounds.max,
        },
    );
    (builder, primed)
}

/// What the control loop measured, in scenario seconds.
pub(super) struct Measured {
    /// One point per tick.
    pub(super) timeline: Vec<TimelinePoint>,
    /// Replica-seconds, sampled at every turn of the loop.
    pub(super) replica_seconds: f64,
    /// Most replicas seen.
    pub(super) max_replicas: u32,
    /// Every tick.
    pub(super) ticks: Vec<Tick>,
    /// Ticks taken early on a backlog jump.
    pub(super) early_decisions: u32,
}

/// The work queue and the interval's results as read at a tick.
struct QueueRead {
    /// The workers' consumer (backlog, in flight), if JetStream answered.
    consumer: Option<ConsumerSample>,
    /// When it was read: the midpoint of the request.
    at: Instant,
    /// Results collected since the previous tick.
    window: Vec<Done>,
    /// Tasks posted so far.
    posted: usize,
}

/// The control loop of one replay.
pub(super) struct ControlLoop {
    pub(super) client: reqwest::Client,
    pub(super) provider: String,
    pub(super) worker: String,
    pub(super) observer: Arc<NatsObserver>,
    /// Primed (see [`prime`]).
    pub(super) builder: SignalsBuilder,
    /// Sizes the pool unless gateway-ext does.
    pub(super) policy: Box<dyn farm_policy::Policy>,
    /// gateway-ext sizes the pool: only sample.
    pub(super) gateway: bool,
    pub(super) bounds: Bounds,
    /// The speedup.
    pub(super) k: f64,
    pub(super) interval_real: Duration,
    /// The replay's start, scenario time 0.
    pub(super) t0: Instant,
    /// The workload's arrival times and deadlines, scenario seconds.
    pub(super) arrivals_s: Vec<f64>,
    pub(super) deadlines_s: Vec<f64>,
    pub(super) collected: Collected,
    /// Tasks posted so far (their deadlines enter the window).
    pub(super) posted: Arc<AtomicUsize>,
    pub(super) mode: LiveSignals,
    /// Early decisions (farmctl's loop only; gateway-ext has its own).
    pub(super) events: Option<BacklogJump>,
    /// The signals at t = 0 (see [`prime`]).
    pub(super) primed: Signals,
}

/// The loop's state between turns.
struct State {
    alerts: AlertRule,
    next_alert: Instant,
    alert_evals: u32,
    last_signals: Option<Signals>,
    desired: u32,
    last_change: Instant,
    replica_s: f64,
    max_replicas: u32,
    timeline: Vec<TimelinePoint>,
    last_sample: Instant,
    next_tick: Instant,
    last_tick: Instant,
    ticks: Vec<Tick>,
    posted_prev: usize,
    queue_read: Option<QueueRead>,
    early: u32,
    armed: Option<Armed>,
}

impl ControlLoop {
    /// Runs until `stop`.
    pub(super) async fn run(mut self, stop: CancellationToken) -> Measured {
        let (k, t0, interval_real) = (self.k, self.t0, self.interval_real);
        self.policy.reset();
        let alert_every = Duration::from_secs_f64(AlertRule::EVAL_INTERVAL_S / k);
        // Early decisions are farmctl's loop's: gateway-ext has its own.
        self.events = self.events.filter(|_| !self.gateway);
        // Armed at t = 0 from the farm as the run starts, as the simulator's.
        let armed = self.events.map(|t| {
            t.arm(&self.primed.time_scaled(k), 0.0)
                .for_replicas(f64::from(self.bounds.initial))
        });
        let mut s = State {
            alerts: AlertRule::default(),
            next_alert: t0 + alert_every,
            alert_evals: 0,
            last_signals: None,
            desired: self.bounds.initial,
            last_change: Instant::now(),
            replica_s: 0.0,
            max_replicas: 0,
            timeline: Vec::new(),
            last_sample: Instant::now(),
            next_tick: t0 + interval_real,
            last_tick: t0,
            ticks: Vec::new(),
            posted_prev: 0,
            queue_read: None,
            early: 0,
            armed,
        };
        let step = Duration::from_millis(100).min(interval_real);
        loop {
            // Wake at the tick itself, not up to a step late.
            let nap = step.min(s.next_tick.saturating_duration_since(Instant::now()));
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                () = stop.cancelled() => break,
            }
            self.early_read(&mut s).await;
            // At a tick the work queue and the interval's results are
            // read first, before the provider's replica counts, so the
            // backlog is the one at the tick (the simulator's), not one
            // a provider round trip later.
            if s.queue_read.is_none() && Instant::now() >= s.next_tick {
                let before = Instant::now();
                let consumer = self.observer.consumer().await.ok();
                let after = Instant::now();
                s.queue_read = Some(QueueRead {
                    consumer,
                    at: before + after.duration_since(before) / 2,
                    window: self.collected.take_fresh(),
                    posted: self.posted.load(Ordering::Acquire),
                });
            }
            let Ok(status) = function_status(&self.client, &self.provider, &self.worker).await
            else {
                continue;
            };
            let replicas = u32::try_from(status.replicas).unwrap_or(u32::MAX);
            let available = u32::try_from(status.available_replicas).unwrap_or(u32::MAX);
            let now = Instant::now();
            s.replica_s += f64::from(replicas) * now.duration_since(s.last_sample).as_secs_f64();
            s.last_sample = now;
            s.max_replicas = s.max_replicas.max(replicas);
            if self.gateway {
                s.desired = replicas;
            }
            if !self.gateway && now >= s.next_alert {
                s.next_alert += alert_every;
                self.alert(&mut s, now).await;
            }
            if now < s.next_tick {
                continue;
            }
            let Some(read) = s.queue_read.take() else {
                // The tick fell due during the provider call: read
                // the queue at the next turn (no nap).
                continue;
            };
            self.tick(&mut s, read, now, replicas, available).await;
        }
        Measured {
            timeline: s.timeline,
            replica_seconds: s.replica_s * k,
            max_replicas: s.max_replicas,
            ticks: s.ticks,
            early_decisions: s.early,
        }
    }

    /// Between ticks, a backlog jump makes the tick due now; the ticks
    /// then restart from it. (`&mut self` though it only reads: the loop's
    /// future must be `Send`, and the policy is not `Sync`.)
    async fn early_read(&mut self, s: &mut State) {
        let Some(armed) = s.armed else { return };
        if s.queue_read.is_some() || Instant::now() >= s.next_tick {
            return;
        }
        let before = Instant::now();
        if let Ok(c) = self.observer.consumer().await {
            let after = Instant::now();
            let at = before + after.duration_since(before) / 2;
            let now_s = at.duration_since(self.t0).as_secs_f64() * self.k;
            if armed.fires(c.num_pending as f64, now_s) {
                s.early += 1;
                s.next_tick = at;
                s.queue_read = Some(QueueRead {
                    consumer: Some(c),
                    at,
                    window: self.collected.take_fresh(),
                    posted: self.posted.load(Ordering::Acquire),
                });
            }
        }
    }

    /// The simulator's Prometheus + Alertmanager emulation, on the scenario
    /// clock: alert-driven policies (OpenFaaS CE) see the same
    /// notifications live as in simulation.
    async fn alert(&mut self, s: &mut State, now: Instant) {
        s.alert_evals += 1;
        let now_s = now.duration_since(self.t0).as_secs_f64() * self.k;
        // The rule is evaluated at its nominal time (every 5 scenario
        // seconds, as in the simulator), not at the moment this loop woke:
        // the rate compares a 10 s count with a threshold, and with
        // arrivals near 5/s a wake-up 0.1-0.4 scenario s late moves one
        // arrival into the window and fires (or resolves) where the
        // simulator does not (spike, openfaas-ce: +28 % replica-seconds).
        let eval_s = f64::from(s.alert_evals) * AlertRule::EVAL_INTERVAL_S;
        let arrived = self.arrivals_s.partition_point(|&t| t <= eval_s) as u64;
        let (Some(firing), Some(last)) = (s.alerts.evaluate(eval_s, arrived), &s.last_signals)
        else {
            return;
        };
        let signals = Signals {
            replicas_desired: f64::from(s.desired),
            ..last.clone()
        };
        if let Some(d) = self.policy.on_alert(now_s, firing, &signals) {
            let want = d.desired.clamp(self.bounds.min, self.bounds.max);
            if want != s.desired {
                match scale(&self.client, &self.provider, &self.worker, want).await {
                    Ok(()) => {
                        info!(from = s.desired, to = want, firing, "scaled on alert");
                        s.desired = want;
                        s.last_change = now;
                    }
                    Err(e) => warn!(error = %format!("{e:#}"), "scale call failed"),
                }
            }
        }
    }

    /// One control tick on the queue `read` at its start.
    async fn tick(
        &mut self,
        s: &mut State,
        read: QueueRead,
        now: Instant,
        replicas: u32,
        available: u32,
    ) {
        let (k, t0, interval_real) = (self.k, self.t0, self.interval_real);
        let QueueRead {
            consumer,
            at: sampled_at,
            window,
            posted: posted_now,
        } = read;
        let sample = Sample {
            consumer,
            snapshot: self.observer.snapshot(),
            replicas,
            available,
            queue_head_age_s: 0.0,
        };
        let ctx = BuildContext {
            interval_s: sampled_at.duration_since(s.last_tick).as_secs_f64(),
            window_s: 0.0,
            desired: s.desired,
            since_last_scale_s: now.duration_since(s.last_change).as_secs_f64(),
            min: self.bounds.min,
            max: self.bounds.max,
        };
        s.last_tick = sampled_at;
        s.next_tick += interval_real;
        // After a stall (the process starved of CPU) keep the cadence but
        // skip a scheduled tick that would close less than half an
        // interval: the simulator never decides on a sliver of an
        // interval, where rates and latencies jump.
        while s.next_tick < now + interval_real / 2 {
            s.next_tick += interval_real;
        }
        let built = self.builder.build(&sample, &ctx);
        let built = match self.mode {
            LiveSignals::Snapshot => built,
            LiveSignals::Interval => {
                let arrived: Vec<f64> = self.deadlines_s
                    [s.posted_prev.min(posted_now)..posted_now.min(self.deadlines_s.len())]
                    .iter()
                    .map(|d| d / k)
                    .collect();
                IntervalStats::of_entries(&window, &arrived).apply(built)
            }
        };
        s.posted_prev = posted_now;
        let signals = built.time_scaled(k);
        let now_s = now.duration_since(t0).as_secs_f64() * k;
        s.last_signals = Some(signals.clone());
        if !self.gateway {
            let want = self
                .policy
                .decide(now_s, &signals)
                .desired
                .clamp(self.bounds.min, self.bounds.max);
            if want != s.desired {
                match scale(&self.client, &self.provider, &self.worker, want).await {
                    Ok(()) => {
                        info!(from = s.desired, to = want, "scaled");
                        s.desired = want;
                        s.last_change = now;
                    }
                    Err(e) => warn!(error = %format!("{e:#}"), "scale call failed"),
                }
            }
        }
        if let Some(t) = self.events {
            s.armed = Some(t.arm(&signals, now_s).for_replicas(f64::from(s.desired)));
        }
        let desired = s.desired;
        debug!(t = now_s, desired, replicas, available, signals = ?signals, "tick");
        s.ticks.push(Tick {
            t_s: now_s,
            signals: signals.clone(),
            desired,
            sampled_s: Some(sampled_at.saturating_duration_since(t0).as_secs_f64() * k),
        });
        s.timeline.push(TimelinePoint {
            t_s: now_s,
            desired,
            ready: available,
            starting: replicas.saturating_sub(available),
            alive: replicas,
            backlog: signals.backlog as u32,
            arrivals: signals.arrivals as u32,
            completions: signals.completions as u32,
            window_qos: signals.window_qos(),
        });
    }
}

/// The simulator's OpenFaaS CE alert emulation
/// ([`farm_sim::engine::alert_rule`]) for a live run: the rule is evaluated
/// every 5 scenario seconds on the count of tasks submitted so far.
#[derive(Debug, Clone, Default)]
struct AlertRule {
    counts: [u64; 3],
    pending_since: Option<f64>,
    firing: bool,
    last_post: f64,
}

impl AlertRule {
    const EVAL_INTERVAL_S: f64 = farm_sim::engine::alert_rule::EVAL_INTERVAL_S;

    /// One evaluation at scenario time `now_s` with `arrived` tasks so far;
    /// `Some(firing)` when Alertmanager would post a notification.
    fn evaluate(&mut self, now_s: f64, arrived: u64) -> Option<bool> {
        use farm_sim::engine::alert_rule::{FOR_S, RATE_WINDOW_S, REPEAT_S, THRESHOLD_PER_S};
        self.counts.rotate_left(1);
        self.counts[2] = arrived;
        let rate = self.counts[2].saturating_sub(self.counts[0]) as f64 / RATE_WINDOW_S;
        if rate > THRESHOLD_PER_S {
            let since = *self.pending_since.get_or_insert(now_s);
            let held = now_s - since + 1e-9 >= FOR_S;
            let post = !self.firing || now_s - self.last_post + 1e-9 >= REPEAT_S;
            if held && post {
                self.firing = true;
                self.last_post = now_s;
                return Some(true);
            }
            None
        } else {
            self.pending_since = None;
            if self.firing {
                self.firing = false;
                self.last_post = now_s;
                return Some(false);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_rescaled_to_scenario_time() {
        let s = Signals {
            interval_s: 2.0,
            arrivals: 12.0,
            service_mean_s: Some(0.375),
            latency_max_s: Some(0.5),
            deadline_min_s: None,
            since_last_scale_s: 4.0,
            backlog: 7.0,
            ..Default::default()
        };
        let t = s.time_scaled(4.0);
        assert_eq!(t.interval_s, 8.0);
        assert_eq!(t.arrivals, 12.0);
        assert_eq!(t.arrival_rate(), 1.5);
        assert_eq!(t.service_mean_s, Some(1.5));
        assert_eq!(t.latency_max_s, Some(2.0));
        assert_eq!(t.deadline_min_s, None);
        assert_eq!(t.since_last_scale_s, 16.0);
        assert_eq!(t.backlog, 7.0);
    }

    #[test]
    fn alert_rule_fires_after_five_seconds_above_threshold_and_resolves() {
        let mut a = AlertRule::default();
        // 10 tasks/s from t = 0: the first evaluation sees the window filling.
        assert_eq!(a.evaluate(5.0, 50), None, "rate 5/s is not above 5/s");
        assert_eq!(a.evaluate(10.0, 100), None, "pending, not yet held 5 s");
        assert_eq!(a.evaluate(15.0, 150), Some(true));
        assert_eq!(a.evaluate(20.0, 200), None, "no repeat before 30 s");
        assert_eq!(a.evaluate(45.0, 450), Some(true), "repeat after 30 s");
        assert_eq!(
            a.evaluate(50.0, 450),
            None,
            "still above over the 10 s window"
        );
        assert_eq!(a.evaluate(55.0, 450), Some(false));
        assert_eq!(a.evaluate(60.0, 450), None);
    }

    #[test]
    fn interval_stats_follow_the_simulator_window() {
        // (ok, hit, latency, service, deadline)
        let done = [
            (true, true, 1.0, 0.5, 2.0),
            (true, false, 3.0, 1.0, 2.0),
            (false, false, 9.0, 9.0, 0.2),
            (true, true, 2.0, 1.5, 4.0),
        ];
        let s = IntervalStats::of(&done, &[1.5, 6.0]);
        assert_eq!((s.completions, s.on_time), (3.0, 2.0));
        assert_eq!(s.latency, Some((2.0, 3.0, 3.0)));
        assert_eq!(s.service, Some((1.0, 1.5)));
        // Failed results do not count; arrivals' deadlines do.
        assert_eq!(s.deadline_min, Some(1.5));
        assert_eq!(s.deadline_mean, Some(8.0 / 3.0));
        let sig = s.apply(Signals {
            backlog: 4.0,
            completions: 99.0,
            ..Default::default()
        });
        assert_eq!((sig.backlog, sig.completions), (4.0, 3.0));
        assert_eq!(sig.window_qos(), Some(2.0 / 3.0));
        assert_eq!(sig.latency_max_s, Some(3.0));
        // An empty window has no statistics, only the arrivals' deadlines.
        let e = IntervalStats::of(&[], &[0.7]);
        assert_eq!((e.completions, e.latency, e.service), (0.0, None, None));
        assert_eq!((e.deadline_min, e.deadline_mean), (Some(0.7), None));
        assert_eq!(IntervalStats::of(&[], &[]).deadline_min, None);
    }
}
