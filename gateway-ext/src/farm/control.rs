//! The loop itself: one task per farm that observes, decides, shields,
//! acts and records, every interval and on the handle's commands.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farm_model::cadence::Armed;
use farm_model::observation::{Observer, names_of};
use farm_observe::{BuildContext, NatsObserver, Sample, SignalsBuilder};
use farm_policy::shield::{ShieldConfig, shield};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

use super::{Command, DecisionRecord, FarmDeps, Shared, TickEvent, Trigger, lock, unix_s};
use crate::actuator::{self, FarmReplicas};
use crate::config::FarmSpec;
use crate::metrics::INFERENCE_BUCKETS;
use crate::policy::FarmPolicy;

/// How often the backlog is read between ticks when early decisions are
/// on (at most the control interval).
const EVENT_POLL: Duration = Duration::from_millis(500);

/// The state one farm's loop owns; built by [`super::start`], run by
/// [`FarmLoop::run`] until the farm's stop token is cancelled.
pub(super) struct FarmLoop {
    spec: FarmSpec,
    policy: FarmPolicy,
    deps: Arc<FarmDeps>,
    observer: Option<Arc<NatsObserver>>,
    builder: SignalsBuilder,
    /// Builds the observation in the layout the policy takes; its history
    /// (layout 2) advances on ticks only.
    obs: Observer,
    shared: Arc<Mutex<Shared>>,
    ticks: broadcast::Sender<TickEvent>,
    started: Instant,
    last_tick: Option<Instant>,
    desired: Option<u32>,
    last_change: Instant,
    /// Last replica counts read from the provider (kept for status when a
    /// read fails).
    replicas: Option<FarmReplicas>,
    /// Whether `replicas` was read at this decision; a stale listing is
    /// never used to skip a scale call.
    replicas_fresh: bool,
    floor: Option<(u32, Instant)>,
    seq: u64,
    last_applied: Option<(u32, u32)>,
    /// The backlog-jump trigger armed by the last step (`spec.events`).
    armed: Option<Armed>,
}

impl FarmLoop {
    /// A loop that has not yet observed or decided anything.
    pub(super) fn new(
        spec: FarmSpec,
        policy: FarmPolicy,
        deps: Arc<FarmDeps>,
        observer: Option<Arc<NatsObserver>>,
        shared: Arc<Mutex<Shared>>,
        ticks: broadcast::Sender<TickEvent>,
    ) -> Self {
        Self {
            spec,
            policy,
            deps,
            observer,
            builder: SignalsBuilder::default(),
            obs: Observer::v1(),
            shared,
            ticks,
            started: Instant::now(),
            last_tick: None,
            desired: None,
            last_change: Instant::now(),
            replicas: None,
            replicas_fresh: false,
            floor: None,
            seq: 0,
            last_applied: None,
            armed: None,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>, stop: CancellationToken) {
        info!(function = %self.spec.function, policy = %self.spec.policy, interval = ?self.spec.interval, "farm loop started");
        let mut interval = tokio::time::interval(self.spec.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The backlog is watched between ticks only when early decisions
        // are on (one consumer-info request per poll).
        // A compressed run (time scale K) polls K times as often, so the
        // trigger sees the same scenario time as uncompressed.
        let poll = EVENT_POLL
            .div_f64(self.spec.time_scale.max(1.0))
            .max(Duration::from_millis(50))
            .min(self.spec.interval);
        let mut watch = tokio::time::interval(poll);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = interval.tick(), if !held => {
                    if self.policy.model_changed() {
                        let _ = self.reload();
                    }
                    self.decide(Trigger::Tick, None).await;
                }
                _ = watch.tick(), if !held && self.armed.is_some() => {
                    if self.backlog_jumped().await {
                        self.decide(Trigger::Backlog, None).await;
                        // The next tick is one interval after this step.
                        interval.reset();
                    }
                }
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Alert { firing, via, reply }) => {
                        let r = self.decide(Trigger::Alert, Some((firing, via))).await;
                        let _ = reply.send(r);
                    }
                    Some(Command::ScaleRequest { replicas, reply }) => {
                        self.floor = Some((replicas, Instant::now() + self.deps.floor_hold));
                        lock(&self.shared).status.request_floor =
                            Some((replicas, unix_s() + self.deps.floor_hold.as_secs_f64()));
                        let r = self.decide(Trigger::ScaleRequest, None).await;
                        let _ = reply.send(r);
                    }
                    Some(Command::Reload { reply }) => {
                        let _ = reply.send(self.reload());
                    }
                    Some(Command::Restart { reply }) => {
                        self.restart_clock().await;
                        interval.reset();
                        held = false;
                        let _ = reply.send(());
                    }
                    Some(Command::Hold { reply }) => {
                        held = true;
                        info!("tick decisions held until the clock restarts");
                        let _ = reply.send(());
                    }
                },
            }
        }
        self.deps.metrics.forget_farm(&self.spec.farm);
        info!("farm loop stopped");
    }

    /// Primes the interval counters with the farm as it is now and makes
    /// now the start of the policy's clock and of the next interval.
    async fn restart_clock(&mut self) {
        let now = Instant::now();
        // A new episode, as the simulator starts one: the policy's history
        // is forgotten and the previous decision is what the platform runs
        // now (someone else may have scaled it since the last tick).
        self.policy.reset();
        self.desired = None;
        let sample = self.observe().await;
        let previous = self
            .desired
            .unwrap_or_else(|| self.replicas.as_ref().map_or(self.spec.min, |r| r.replicas));
        let ctx = BuildContext {
            interval_s: self.spec.interval.as_secs_f64(),
            window_s: self.spec.window.as_secs_f64(),
            desired: previous,
            since_last_scale_s: 0.0,
            min: self.spec.min,
            max: self.spec.max,
        };
        let signals = self
            .builder
            .build(&sample, &ctx)
            .time_scaled(self.spec.time_scale);
        // Armed from the farm as it is now, as the simulator arms at t = 0.
        self.armed = self
            .spec
            .events
            .map(|t| t.arm(&signals, 0.0).for_replicas(f64::from(previous)));
        self.started = now;
        self.last_tick = Some(now);
        self.last_change = now;
        // A new episode: the observation's history starts empty, as in
        // the simulator.
        self.obs.reset();
        info!("control clock restarted");
    }

    /// Whether the work queue's backlog has jumped since the last step by
    /// more than the armed trigger allows (false when it cannot be read).
    async fn backlog_jumped(&mut self) -> bool {
        let (Some(armed), Some(o)) = (self.armed, self.observer.clone()) else {
            return false;
        };
        match o.consumer().await {
            Ok(c) => {
                let now_s = self.started.elapsed().as_secs_f64() * self.spec.time_scale;
                armed.fires(c.num_pending as f64, now_s)
            }
            Err(e) => {
                debug!(error = %e, "no consumer info for the backlog watch");
                false
            }
        }
    }

    fn reload(&mut self) -> Result<bool, String> {
        let r = self.policy.reload().map_err(|e| e.to_string());
        if let Err(e) = &r {
            warn!(error = %e, "model reload refused; the current policy keeps deciding");
            self.error("reload", e.clone());
        }
        self.sync_fallback_status();
        r
    }

    fn sync_fallback_status(&self) {
        let active = self.policy.fallback_reason().is_some();
        self.deps.metrics.set(
            "gateway_ext_policy_fallback",
            &[("farm", &self.spec.farm)],
            if active { 1.0 } else { 0.0 },
        );
        let mut g = lock(&self.shared);
        g.status.fallback.active = active;
        g.status.fallback.reason = self.policy.fallback_reason().map(str::to_owned);
        g.status.model_loads = self.policy.model_loads();
    }

    fn error(&self, kind: &str, message: String) {
        self.deps.metrics.inc(
            "gateway_ext_errors_total",
            &[("farm", &self.spec.farm), ("kind", kind)],
            1.0,
        );
        let mut g = lock(&self.shared);
        *g.status.errors.entry(kind.to_owned()).or_insert(0) += 1;
        g.status.last_error = Some(format!("{kind}: {message}"));
        g.status.last_errors.insert(kind.to_owned(), message);
    }

    /// Reads the replica counts from the provider (every call bounded by
    /// the provider timeout, retried with backoff); on failure the last
    /// counts stay for status but are marked stale.
    async fn read_replicas(&mut self) -> bool {
        let started = Instant::now();
        let r = actuator::read_replicas(
            self.deps.provider.as_ref(),
            self.deps.retry,
            &self.spec.function,
            None,
        )
        .await;
        match r {
            Ok(r) => {
                trace!(took = ?started.elapsed(), replicas = r.replicas, available = r.available, "replicas read");
                if r.worker.is_none() {
                    self.error(
                        "provider",
                        format!("worker function {} not found", self.spec.function),
                    );
                }
                self.replicas = Some(r);
                self.replicas_fresh = true;
            }
            Err(e) => {
                warn!(error = %e, took = ?started.elapsed(), "cannot read replicas");
                self.error("provider", e.to_string());
                self.replicas_fresh = false;
            }
        }
        self.replicas_fresh
    }

    async fn observe(&mut self) -> Sample {
        self.read_replicas().await;
        let (consumer, snapshot, queue_head_age_s) = match self.observer.clone() {
            Some(o) => {
                let started = Instant::now();
                let c = match o.consumer().await {
                    Ok(c) => {
                        trace!(took = ?started.elapsed(), pending = c.num_pending, ack_pending = c.num_ack_pending, "consumer read");
                        Some(c)
                    }
                    Err(e) => {
                        debug!(error = %e, took = ?started.elapsed(), "no consumer info");
                        self.error(e.kind(), e.to_string());
                        None
                    }
                };
                lock(&self.shared).status.snapshot_age_s =
                    o.snapshot_age().map(|a| a.as_secs_f64());
                // A snapshot taken now closes the interval at the tick;
                // the latest published one when the collector cannot answer.
                let snap = match o.fresh_snapshot().await {
                    Some(s) => Some(s),
                    None => o.snapshot(),
                };
                let age = match &c {
                    Some(c) => o.queue_head_age(c).await.unwrap_or_else(|e| {
                        debug!(error = %e, "no queue-head age");
                        0.0
                    }),
                    None => 0.0,
                };
                (c, snap, age)
            }
            None => (None, None, 0.0),
        };
        let (replicas, available) = self
            .replicas
            .as_ref()
            .map_or((0, 0), |r| (r.replicas, r.available));
        Sample {
            consumer,
            snapshot,
            replicas,
            available,
            queue_head_age_s,
        }
    }

    async fn decide(
        &mut self,
        trigger: Trigger,
        alert: Option<(bool, Option<String>)>,
    ) -> Arc<DecisionRecord> {
        let now = Instant::now();
        let sample = self.observe().await;
        let interval_s = self
            .last_tick
            .map_or(self.spec.interval.as_secs_f64(), |t| {
                now.duration_since(t).as_secs_f64()
            })
            .max(1e-3);
        // The first decision starts from what the platform runs now.
        let previous = self
            .desired
            .unwrap_or_else(|| self.replicas.as_ref().map_or(self.spec.min, |r| r.replicas));
        let ctx = BuildContext {
            interval_s,
            window_s: self.spec.window.as_secs_f64(),
            desired: previous,
            since_last_scale_s: now.duration_since(self.last_change).as_secs_f64(),
            min: self.spec.min,
            max: self.spec.max,
        };
        // Out-of-band decisions peek at the interval so far; only ticks
        // advance the counters, so tick intervals stay whole.
        let wall = if trigger.steps() {
            self.last_tick = Some(now);
            self.builder.build(&sample, &ctx)
        } else {
            self.builder.clone().build(&sample, &ctx)
        };
        // The policy decides on the run's clock: wall-clock durations times
        // the farm's time scale (1 for a run in real time).
        let k = self.spec.time_scale;
        let signals = wall.time_scaled(k);
        let version = self.policy.obs_version();
        if self.obs.version() != version {
            // A (re)loaded model of another layout: start its history afresh.
            self.obs = Observer::new(version).unwrap_or_else(|_| Observer::v1());
        }
        // A tick advances the farm's history; an alert or scale request
        // decides on a copy so the tick schedule's history stays the one
        // the simulator would build.
        let (obs, estimates) = if trigger.steps() {
            let obs = self.obs.observe(&signals);
            (obs, self.obs.estimates())
        } else {
            let mut copy = self.obs.clone();
            let obs = copy.observe(&signals);
            (obs, copy.estimates())
        };
        let now_s = now.duration_since(self.started).as_secs_f64() * k;
        let external = if self.policy.is_external() && trigger.steps() {
            lock(&self.shared).pending_action.take()
        } else {
            None
        };
        let mut proposal = match &alert {
            Some((firing, _)) => match self.policy.on_alert(now_s, *firing, &signals) {
                Some(p) => p,
                None => {
                    // The policy decides from the signals instead of the CE
                    // step; the note keeps the alert's state visible in
                    // status, the decision stream and logs.
                    let mut p = self
                        .policy
                        .decide(now_s, &signals, &obs, &estimates, None)
                        .await;
                    let tag = format!(
                        "alert ({}) decided by the policy",
                        if *firing { "firing" } else { "resolved" }
                    );
                    p.note = Some(match p.note.take() {
                        Some(n) => format!("{tag}; {n}"),
                        None => tag,
                    });
                    p
                }
            },
            None => {
                self.policy
                    .decide(now_s, &signals, &obs, &estimates, external)
                    .await
            }
        };
        if let Some((_, Some(via))) = &alert {
            let tag = format!("alerted function {via}");
            proposal.note = Some(match proposal.note.take() {
                Some(n) => format!("{n}; {tag}"),
                None => tag,
            });
        }
        if let Some(t) = proposal.inference {
            self.deps.metrics.observe(
                "gateway_ext_inference_seconds",
                &[("farm", &self.spec.farm)],
                INFERENCE_BUCKETS,
                t.as_secs_f64(),
            );
        }
        if let Some(e) = &proposal.error {
            self.error("inference", e.clone());
        }
        let floor = match self.floor {
            Some((n, until)) if until > now => Some(n),
            Some(_) => {
                self.floor = None;
                lock(&self.shared).status.request_floor = None;
                None
            }
            None => None,
        };
        let cfg = ShieldConfig {
            min: self.spec.min,
            max: self.spec.max,
            max_step: self.spec.max_step,
            queueing_floor: self.spec.queueing_floor,
        };
        let shielded = shield(&cfg, proposal.proposed, previous, &signals, &obs, floor);
        let mut notes: Vec<String> = Vec::new();
        if let Some(n) = &proposal.note {
            notes.push(n.clone());
        }
        for iv in &shielded.interventions {
            self.deps.metrics.inc(
                "gateway_ext_shield_total",
                &[("farm", &self.spec.farm), ("reason", iv.label())],
                1.0,
            );
        }
        if !shielded.interventions.is_empty() {
            let labels: Vec<&str> = shielded.interventions.iter().map(|i| i.label()).collect();
            notes.push(format!("shield: {}", labels.join(", ")));
        }
        if shielded
            .interventions
            .contains(&farm_policy::shield::Intervention::NonFiniteHold)
        {
            self.error(
                "observation",
                format!("non-finite observation {:?}; holding", obs.as_slice()),
            );
        }
        let desired = shielded.desired;
        let applied = self.act(desired, &mut notes).await;
        if Some(desired) != self.desired {
            self.last_change = now;
        }
        self.desired = Some(desired);
        self.seq += 1;
        // Every step re-arms the backlog-jump trigger from its signals; any
        // decision tells it the replicas now asked for.
        if trigger.steps() {
            self.armed = self.spec.events.map(|t| t.arm(&signals, now_s));
        }
        self.armed = self.armed.map(|a| a.for_replicas(f64::from(desired)));
        let record = Arc::new(DecisionRecord {
            farm: self.spec.farm.clone(),
            at_us: farm_runtime::worker::now_us(),
            seq: self.seq,
            observation: obs.to_vec(),
            signals,
            policy: proposal.policy.clone(),
            action: proposal.action,
            outputs: proposal.outputs.clone(),
            proposed: proposal.proposed,
            desired,
            previous,
            note: notes.join("; "),
            trigger,
            applied,
            external_action: external.is_some(),
        });
        self.record(&record, &obs, trigger);
        if trigger.steps() {
            self.last_applied = Some((previous, desired));
            let _ = self.ticks.send(TickEvent {
                record: record.clone(),
            });
        }
        record
    }

    async fn act(&mut self, desired: u32, notes: &mut Vec<String>) -> bool {
        // Counts from an earlier decision may be wrong (the provider
        // restarted, a replica died): read them again before acting on them.
        if !self.replicas_fresh && !self.read_replicas().await {
            notes.push("not applied: replicas unknown (provider unreachable)".into());
            return false;
        }
        let Some(current) = self.replicas.clone() else {
            notes.push("not applied: replicas unknown (provider unreachable)".into());
            return false;
        };
        if current.worker.is_none() {
            notes.push(format!(
                "not applied: worker function {} not found",
                self.spec.function
            ));
            return false;
        }
        let started = Instant::now();
        match actuator::apply(
            self.deps.provider.as_ref(),
            self.deps.retry,
            &current,
            desired,
            self.spec.per_function_cap,
        )
        .await
        {
            Ok(asked) => {
                debug!(desired, took = ?started.elapsed(), functions = asked.len(), "applied");
                self.deps.metrics.set(
                    "gateway_ext_shards",
                    &[("farm", &self.spec.farm)],
                    asked.len() as f64,
                );
                // The shards changed: forget the cached listing so the next
                // observation re-reads it.
                if asked.len() != current.shards.len() + 1 {
                    self.replicas = None;
                }
                // What the provider runs changed under the counts just read.
                self.replicas_fresh = false;
                true
            }
            Err(e) => {
                warn!(desired, error = %e, "scaling failed; will retry next decision");
                notes.push(format!("not applied: {e}"));
                self.error("provider", e.to_string());
                false
            }
        }
    }

    fn record(&self, record: &Arc<DecisionRecord>, obs: &[f32], trigger: Trigger) {
        let names = names_of(self.obs.version()).unwrap_or_default();
        let m = &self.deps.metrics;
        let farm = self.spec.farm.as_str();
        m.inc(
            "gateway_ext_decisions_total",
            &[
                ("farm", farm),
                ("trigger", trigger.label()),
                ("policy", &record.policy),
            ],
            1.0,
        );
        m.set(
            "gateway_ext_replicas_desired",
            &[("farm", farm)],
            f64::from(record.desired),
        );
        m.set(
            "gateway_ext_replicas_proposed",
            &[("farm", farm)],
            f64::from(record.proposed),
        );
        m.set(
            "gateway_ext_replicas_ready",
            &[("farm", farm)],
            record.signals.replicas_ready,
        );
        for (name, v) in names.iter().zip(obs) {
            m.set(
                "gateway_ext_observation",
                &[("farm", farm), ("feature", name)],
                f64::from(*v),
            );
        }
        self.sync_fallback_status();
        {
            let mut g = lock(&self.shared);
            g.history.push_back(record.clone());
            while g.history.len() > self.deps.record_capacity {
                g.history.pop_front();
            }
            let st = &mut g.status;
            st.desired = record.desired;
            if let Some(r) = &self.replicas {
                st.replicas = r.replicas;
                st.ready = r.available;
                st.functions = r.per_function.clone();
            }
            st.last_observation = names
                .iter()
                .zip(obs)
                .map(|(n, v)| ((*n).to_owned(), *v))
                .collect();
            st.last_decision = Some((**record).clone());
            st.decisions = record.seq;
        }
        let _ = self.deps.decisions.send(record.clone());
        info!(
            trigger = trigger.label(),
            policy = %record.policy,
            proposed = record.proposed,
            desired = record.desired,
            previous = record.previous,
            applied = record.applied,
            note = %record.note,
            "decision"
        );
    }
}
