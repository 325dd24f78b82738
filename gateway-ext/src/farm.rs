//! The control loop of one managed farm: observe, decide, shield, act,
//! record, every interval and on demand (alerts, scale requests).
//!
//! One task per farm owns the policy and all mutable state, so decisions of
//! a farm are strictly sequential; the HTTP and gRPC surfaces talk to it
//! through [`FarmHandle`]. This module holds that surface (the handle, the
//! status and decision records it serves); [`control`] holds the loop.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use farm_model::action::ActionSpace;
use farm_model::signals::Signals;
use farm_observe::{NatsObserver, SharedNats};
use farm_runtime::names::FarmNames;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use crate::actuator::{self, Retry};
use crate::config::FarmSpec;
use crate::metrics::Metrics;
use crate::policy::FarmPolicy;
use crate::provider::Provider;

mod control;

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
    let lp = control::FarmLoop::new(spec, policy, deps, observer, shared, ticks);
    tokio::spawn(
        lp.run(cmd_rx, stop)
            .instrument(info_span!("farm", farm = %farm)),
    );
    handle
}
