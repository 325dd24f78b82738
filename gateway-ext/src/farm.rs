//! The control loop of one managed farm: observe, decide, shield, act,
//! record, every interval and on demand (alerts, scale requests).
//!
//! One task per farm owns the policy and all mutable state, so decisions of
//! a farm are strictly sequential; the HTTP and gRPC surfaces talk to it
//! through [`FarmHandle`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use farm_model::action::ActionSpace;
use farm_model::cadence::Armed;
use farm_model::observation::{Observer, names_of};
use farm_model::reward::{RewardWeights, reward};
use farm_model::signals::Signals;
use farm_observe::{BuildContext, NatsObserver, Sample, SharedNats, SignalsBuilder};
use farm_policy::shield::{ShieldConfig, shield};
use farm_runtime::names::FarmNames;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, trace, warn};

use crate::actuator::{self, FarmReplicas, Retry};
use crate::config::FarmSpec;
use crate::metrics::{INFERENCE_BUCKETS, Metrics};
use crate::policy::FarmPolicy;
use crate::provider::Provider;

/// How often the backlog is read between ticks when early decisions are
/// on (at most the control interval).
const EVENT_POLL: Duration = Duration::from_millis(500);

/// What set a decision off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The control interval elapsed.
    Tick,
    /// The work queue's backlog jumped between ticks (`events`): a step
    /// of the control loop like a tick, after which the ticks restart.
    Backlog,
    /// An AlertManager alert for the farm's function.
    Alert,
    /// A `POST /system/scale-function` for the farm's function.
    ScaleRequest,
}

impl Trigger {
    /// Whether the decision is a step of the control loop (a tick or an
    /// early decision), which advances the interval counters and the
    /// observation's history as the simulator's ticks do; alerts and scale
    /// requests decide out of band.
    pub fn steps(self) -> bool {
        matches!(self, Trigger::Tick | Trigger::Backlog)
    }

    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Tick => "tick",
            Trigger::Backlog => "backlog",
            Trigger::Alert => "alert",
            Trigger::ScaleRequest => "scale-request",
        }
    }
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// Farm name.
    pub farm: String,
    /// Wall clock, Unix microseconds.
    pub at_us: i64,
    /// Sequence number of the decision in this farm (from 1).
    pub seq: u64,
    /// The observation vector.
    pub observation: Vec<f32>,
    /// The signals it was built from.
    pub signals: Signals,
    /// Policy that decided.
    pub policy: String,
    /// Discrete action.
    pub action: Option<usize>,
    /// Raw policy outputs.
    pub outputs: Vec<f32>,
    /// Proposal before the shield.
    pub proposed: u32,
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas asked for before this decision.
    pub previous: u32,
    /// Shield interventions, fallback reasons, errors.
    pub note: String,
    /// What triggered it.
    pub trigger: Trigger,
    /// Whether the provider accepted the new counts.
    pub applied: bool,
    /// Whether this decision consumed an external controller's action.
    pub external_action: bool,
}

impl DecisionRecord {
    /// As the gRPC `Decision` message.
    pub fn to_proto(&self) -> farm_proto::control::Decision {
        farm_proto::control::Decision {
            farm: self.farm.clone(),
            at_us: self.at_us,
            observation: self.observation.clone(),
            policy: self.policy.clone(),
            action: self.action.and_then(|a| u32::try_from(a).ok()),
            outputs: self.outputs.clone(),
            proposed: self.proposed,
            desired: self.desired,
            previous: self.previous,
            note: self.note.clone(),
            trigger: self.trigger.label().to_owned(),
        }
    }
}

/// Status of a farm for `GET /system/autoscaler`.
#[derive(Debug, Clone, Serialize)]
pub struct FarmStatus {
    /// Farm name.
    pub farm: String,
    /// Worker function.
    pub function: String,
    /// Configured policy.
    pub policy: String,
    /// Fallback built-in and whether (and why) it is deciding.
    pub fallback: FallbackStatus,
    /// Successful loads of the ONNX model (start + reloads on SIGHUP or
    /// file change); 0 for other policies.
    pub model_loads: u64,
    /// Control interval, wall-clock seconds.
    pub interval_s: f64,
    /// Time compression K: the policy sees wall-clock durations times K
    /// (the signals of `last_decision` are in that policy time).
    pub time_scale: f64,
    /// Bounds.
    pub min: u32,
    /// Bounds.
    pub max: u32,
    /// Replicas per function before shards.
    pub per_function_cap: Option<u32>,
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas that exist, over all shards.
    pub replicas: u32,
    /// Ready replicas, over all shards.
    pub ready: u32,
    /// Per function: [replicas, ready].
    pub functions: BTreeMap<String, (u32, u32)>,
    /// Last observation by feature name.
    pub last_observation: BTreeMap<String, f32>,
    /// Last decision.
    pub last_decision: Option<DecisionRecord>,
    /// Active scale-request floor: replicas and seconds left.
    pub request_floor: Option<(u32, f64)>,
    /// Error counts by kind.
    pub errors: BTreeMap<String, u64>,
    /// The most recent error.
    pub last_error: Option<String>,
    /// The most recent error of each kind.
    pub last_errors: BTreeMap<String, String>,
    /// Decisions so far.
    pub decisions: u64,
    /// Age of the collector's latest metrics snapshot at the last decision
    /// (wall-clock seconds), `None` when none has arrived.
    pub snapshot_age_s: Option<f64>,
}

/// Fallback part of [`FarmStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct FallbackStatus {
    /// The fallback built-in.
    pub policy: String,
    /// Whether it is deciding now.
    pub active: bool,
    /// Why.
    pub reason: Option<String>,
}

/// What an external controller's `Step` waits for: a tick outcome.
#[derive(Debug, Clone)]
pub struct TickEvent {
    /// The decision of the tick.
    pub record: Arc<DecisionRecord>,
}

/// Services a farm loop uses.
pub struct FarmDeps {
    /// The provider.
    pub provider: Arc<dyn Provider>,
    /// NATS, once connected.
    pub nats: SharedNats,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Every decision of every farm (gRPC `Watch`).
    pub decisions: broadcast::Sender<Arc<DecisionRecord>>,
    /// Retries of provider calls.
    pub retry: Retry,
    /// Decisions kept per farm.
    pub record_capacity: usize,
    /// How long a scale request acts as a floor.
    pub floor_hold: Duration,
    /// Bound of one JetStream request of the loop.
    pub observe_timeout: Duration,
}

enum Command {
    Alert {
        firing: bool,
        /// The alerted function when it is not the worker (a companion).
        via: Option<String>,
        reply: oneshot::Sender<Arc<DecisionRecord>>,
    },
    ScaleRequest {
        replicas: u32,
        reply: oneshot::Sender<Arc<DecisionRecord>>,
    },
    Reload {
        reply: oneshot::Sender<Result<bool, String>>,
    },
    Restart {
        reply: oneshot::Sender<()>,
    },
    Hold {
        reply: oneshot::Sender<()>,
    },
}

struct Shared {
    status: FarmStatus,
    history: VecDeque<Arc<DecisionRecord>>,
    pending_action: Option<u32>,
}

/// Handle of a running farm loop.
pub struct FarmHandle {
    spec: FarmSpec,
    cmd: mpsc::Sender<Command>,
    shared: Arc<Mutex<Shared>>,
    ticks: broadcast::Sender<TickEvent>,
    stop: CancellationToken,
    action_space: Option<ActionSpace>,
}

/// Why a command to a farm failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FarmError {
    /// The farm loop has stopped.
    #[error("farm {0} is not running")]
    Stopped(String),
    /// The farm is not in external mode.
    #[error(
        "farm {0} is not in external mode (its policy is {1}); declare it with policy `external`"
    )]
    NotExternal(String, String),
    /// The action index is outside the farm's action space.
    #[error("action {action} is outside the action space of farm {farm} ({len} actions)")]
    BadAction {
        /// Farm.
        farm: String,
        /// Action given.
        action: u32,
        /// Number of actions.
        len: usize,
    },
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FarmHandle {
    /// The farm's declaration.
    pub fn spec(&self) -> &FarmSpec {
        &self.spec
    }

    /// Current status.
    pub fn status(&self) -> FarmStatus {
        let g = lock(&self.shared);
        let mut s = g.status.clone();
        if let Some((n, until)) = s.request_floor {
            // Stored as an absolute deadline (seconds since the Unix epoch); report what is left.
            let left = until - unix_s();
            s.request_floor = (left > 0.0).then_some((n, left));
        }
        s
    }

    /// The last `n` decisions, oldest first.
    pub fn history(&self, n: usize) -> Vec<Arc<DecisionRecord>> {
        let g = lock(&self.shared);
        g.history.iter().rev().take(n).rev().cloned().collect()
    }

    /// Whether `function` is this farm's worker or one of its shards.
    pub fn owns(&self, function: &str) -> bool {
        function == self.spec.function
            || actuator::shard_index(&self.spec.function, function).is_some()
    }

    /// Runs an immediate decision for an alert; returns the record.
    pub async fn alert(&self, firing: bool) -> Result<Arc<DecisionRecord>, FarmError> {
        self.alert_via(firing, None).await
    }

    /// As [`FarmHandle::alert`], for an alert that named `via`, a companion
    /// function of the farm (its emitter) rather than its worker; the
    /// decision's note says so.
    pub async fn alert_via(
        &self,
        firing: bool,
        via: Option<&str>,
    ) -> Result<Arc<DecisionRecord>, FarmError> {
        self.ask(|reply| Command::Alert {
            firing,
            via: via.map(str::to_owned),
            reply,
        })
        .await
    }

    /// Sends the loop the command `make` builds around a reply channel and
    /// waits for the reply.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, FarmError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(make(reply))
            .await
            .map_err(|_| FarmError::Stopped(self.spec.farm.clone()))?;
        rx.await
            .map_err(|_| FarmError::Stopped(self.spec.farm.clone()))
    }

    /// Honours a scale request as a floor and decides at once.
    pub async fn scale_request(&self, replicas: u32) -> Result<Arc<DecisionRecord>, FarmError> {
        self.ask(|reply| Command::ScaleRequest { replicas, reply })
            .await
    }

    /// Starts the farm's control clock now, as a replayed scenario starts
    /// (`farmctl run` / `compare` call it at scenario time 0): the next
    /// tick comes one interval from now, the first interval's window and
    /// counters start here, and the policy's clock reads 0 here. Without
    /// it the ticks keep the phase of the loop's start, so a live run
    /// decides at other scenario times than the simulator does.
    pub async fn restart_clock(&self) -> Result<(), FarmError> {
        self.ask(|reply| Command::Restart { reply }).await
    }

    /// Suspends the farm's tick decisions until the next
    /// [`FarmHandle::restart_clock`]: `farmctl run` / `compare` set up the
    /// scenario's initial replicas between the two, and a tick in between
    /// (the loop deciding on an idle farm) would start the replay from
    /// another replica count than the simulator's. Alerts and scale
    /// requests are still decided.
    pub async fn hold(&self) -> Result<(), FarmError> {
        self.ask(|reply| Command::Hold { reply }).await
    }

    /// Reloads an ONNX model (validated first). `Ok(false)` for other policies.
    pub async fn reload(&self) -> Result<Result<bool, String>, FarmError> {
        self.ask(|reply| Command::Reload { reply }).await
    }

    /// The action space of an external farm.
    pub fn action_space(&self) -> Option<&ActionSpace> {
        self.action_space.as_ref()
    }

    /// Subscribes to tick outcomes (external controllers).
    pub fn subscribe_ticks(&self) -> broadcast::Receiver<TickEvent> {
        self.ticks.subscribe()
    }

    /// Queues an external action for the next tick.
    pub fn set_pending_action(&self, action: u32) -> Result<(), FarmError> {
        let Some(space) = &self.action_space else {
            return Err(FarmError::NotExternal(
                self.spec.farm.clone(),
                self.spec.policy.to_string(),
            ));
        };
        if action as usize >= space.len() {
            return Err(FarmError::BadAction {
                farm: self.spec.farm.clone(),
                action,
                len: space.len(),
            });
        }
        lock(&self.shared).pending_action = Some(action);
        Ok(())
    }

    /// Stops the loop.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for FarmHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn unix_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Starts the loop of `spec` with a built policy.
pub fn start(spec: FarmSpec, policy: FarmPolicy, deps: Arc<FarmDeps>) -> Arc<FarmHandle> {
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (ticks, _) = broadcast::channel(16);
    let stop = CancellationToken::new();
    let action_space = policy
        .is_external()
        .then(|| policy.action_space())
        .flatten();
    let status = FarmStatus {
        farm: spec.farm.clone(),
        function: spec.function.clone(),
        policy: spec.policy.to_string(),
        fallback: FallbackStatus {
            policy: policy.fallback_name().to_owned(),
            active: policy.fallback_reason().is_some(),
            reason: policy.fallback_reason().map(str::to_owned),
        },
        model_loads: policy.model_loads(),
        interval_s: spec.interval.as_secs_f64(),
        time_scale: spec.time_scale,
        min: spec.min,
        max: spec.max,
        per_function_cap: spec.per_function_cap,
        desired: 0,
        replicas: 0,
        ready: 0,
        functions: BTreeMap::new(),
        last_observation: BTreeMap::new(),
        last_decision: None,
        request_floor: None,
        errors: BTreeMap::new(),
        last_error: None,
        last_errors: BTreeMap::new(),
        decisions: 0,
        snapshot_age_s: None,
    };
    let shared = Arc::new(Mutex::new(Shared {
        status,
        history: VecDeque::new(),
        pending_action: None,
    }));
    let handle = Arc::new(FarmHandle {
        spec: spec.clone(),
        cmd: cmd_tx,
        shared: shared.clone(),
        ticks: ticks.clone(),
        stop: stop.clone(),
        action_space,
    });
    let names = FarmNames::new(&spec.farm);
    let observer = names.ok().map(|n| {
        // A snapshot older than two intervals (plus slack) means the collector is gone.
        let max_age = spec.interval * 2 + Duration::from_secs(5);
        NatsObserver::start_with_timeout(
            deps.nats.clone(),
            n,
            max_age,
            deps.observe_timeout,
            stop.clone(),
        )
    });
    let farm = spec.farm.clone();
    let lp = FarmLoop {
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
    };
    tokio::spawn(
        lp.run(cmd_rx, stop)
            .instrument(info_span!("farm", farm = %farm)),
    );
    handle
}

struct FarmLoop {
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
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, stop: CancellationToken) {
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

/// The reward of the tick `next`, for the step that moved the desired count
/// from `previous` to `desired` (the gRPC `Step` reply).
pub fn step_reward(w: &RewardWeights, next: &Signals, previous: u32, desired: u32) -> f64 {
    reward(w, next, previous, desired)
}
