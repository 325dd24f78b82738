//! The step API for reinforcement learning (what the Gymnasium layer drives
//! through `FarmControl`).
//!
//! An episode is `platform.episode_steps` control intervals of one scenario
//! and seed. [`Env::reset`] runs the first interval with the initial replicas
//! and returns its observation. Each [`Env::step`] maps the action index
//! through the [`ActionSpace`] to a desired count, runs to the next decision
//! (one interval, or less with [`Env::with_events`]), and returns the new
//! observation and the reward of `farm_model::reward`.
//!
//! - `truncated` is set when the episode's `episode_steps` intervals of time
//!   have passed and the run is not over: the episode was cut by its time
//!   limit, not by a terminal state.
//! - `terminated` is set when the run is over: every task has arrived and
//!   completed (the MDP has nothing left to do), or the drain bound of
//!   [`SimOptions::max_drain_s`] was hit.
//!
//! The final step's [`StepInfo::metrics`] carries the run's [`RunMetrics`]
//! up to that moment (tasks still queued count as unfinished). Alerts are not
//! emulated in the step API: the agent is the only decision maker.

use farm_model::action::ActionSpace;
use farm_model::cadence::BacklogJump;
use farm_model::observation::{Obs, Observer};
use farm_model::reward::{RewardWeights, reward};
use farm_model::scenario::Scenario;
use farm_model::signals::Signals;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Pause, SimOptions};
use crate::metrics::RunMetrics;
use crate::run::{SimError, validate};

/// Why a reset or step was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvError {
    /// The action index is not in the action space.
    #[error("action {action} out of range: the action space has {len} actions")]
    InvalidAction {
        /// The index given.
        action: usize,
        /// Number of actions.
        len: usize,
    },
    /// `step` before `reset`, or after the episode ended.
    #[error("no running episode: call reset first")]
    NotRunning,
    /// The scenario cannot be simulated.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// Diagnostics of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    /// Logical time at the end of the step, seconds.
    pub time_s: f64,
    /// Steps taken in this episode.
    pub step: u32,
    /// Desired replicas after applying the action (clamped).
    pub desired: u32,
    /// The raw signals the observation was built from.
    pub signals: Signals,
    /// Run metrics, on the last step of an episode only.
    pub metrics: Option<RunMetrics>,
}

/// What a step returns.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOut {
    /// Observation after the step (`farm_model::observation`, the
    /// environment's layout version).
    pub obs: Obs,
    /// Reward of the step.
    pub reward: f64,
    /// The run is over (all work done, or the drain bound hit).
    pub terminated: bool,
    /// The episode's step limit was reached first.
    pub truncated: bool,
    /// Diagnostics.
    pub info: StepInfo,
}

/// A simulated farm as a reinforcement-learning environment.
#[derive(Debug)]
pub struct Env {
    actions: ActionSpace,
    weights: RewardWeights,
    opts: SimOptions,
    engine: Option<Engine>,
    signals: Signals,
    steps: u32,
    /// When the episode is cut, seconds: the first interval (run by
    /// `reset`) plus `episode_steps` control intervals
    /// (early decisions make more, shorter steps in the same time).
    episode_s: f64,
    observer: Observer,
}

impl Env {
    /// An environment with the given action space and reward weights.
    pub fn new(actions: ActionSpace, weights: RewardWeights) -> Env {
        Env {
            actions,
            weights,
            opts: SimOptions {
                alerts: false,
                ..SimOptions::default()
            },
            engine: None,
            signals: Signals::default(),
            steps: 0,
            episode_s: 0.0,
            observer: Observer::v1(),
        }
    }

    /// The same environment building observations with `observer` (e.g.
    /// `Observer::new(2)` for the layout with history); takes effect at the
    /// next reset, which resets it.
    pub fn with_observer(mut self, observer: Observer) -> Env {
        self.observer = observer;
        self
    }

    /// Signals over a sliding window of `window_s` seconds
    /// ([`SimOptions::window_s`]; `None` = the decision interval).
    pub fn with_window(mut self, window_s: Option<f64>) -> Env {
        self.opts.window_s = window_s;
        self
    }

    /// Early decisions between ticks on a backlog jump
    /// ([`SimOptions::events`]; `None` = only at ticks).
    pub fn with_events(mut self, events: Option<BacklogJump>) -> Env {
        self.opts.events = events;
        self
    }

    /// Drops tasks already past their deadline instead of starting them
    /// ([`crate::SimOptions::shed_expired`]).
    pub fn with_shed_expired(mut self, shed: bool) -> Env {
        self.opts.shed_expired = shed;
        self
    }

    /// The observation layout version.
    pub fn obs_version(&self) -> u32 {
        self.observer.version()
    }

    /// The action space.
    pub fn action_space(&self) -> &ActionSpace {
        &self.actions
    }

    /// Start an episode of `scenario` with `seed`; returns the observation
    /// of the first interval (initial replicas, no decision yet).
    pub fn reset(&mut self, scenario: &Scenario, seed: u64) -> Result<(Obs, StepInfo), EnvError> {
        let workload = scenario.generate(seed);
        validate(&workload, &scenario.platform)?;
        let mut engine = Engine::new(
            workload.tasks,
            workload.duration_s,
            &scenario.platform,
            seed,
            self.opts.clone(),
        );
        self.steps = 0;
        // The same product as the engine's tick times, so the last tick
        // of the episode meets it exactly.
        // `reset` runs the first interval, so the last of `episode_steps`
        // steps ends one interval later.
        self.episode_s = f64::from(scenario.platform.episode_steps.saturating_add(1))
            * scenario.platform.control_interval_s;
        let (signals, finished) = advance(&mut engine);
        self.signals = signals;
        let info = StepInfo {
            time_s: engine.now(),
            step: 0,
            desired: engine.desired(),
            signals: self.signals.clone(),
            metrics: finished.then(|| engine.metrics()),
        };
        self.engine = if finished { None } else { Some(engine) };
        self.observer.reset();
        Ok((self.observer.observe(&self.signals), info))
    }

    /// Apply action `action` and run one control interval.
    pub fn step(&mut self, action: usize) -> Result<StepOut, EnvError> {
        let len = self.actions.len();
        if action >= len {
            return Err(EnvError::InvalidAction { action, len });
        }
        let Some(engine) = self.engine.as_mut() else {
            return Err(EnvError::NotRunning);
        };
        let prev = engine.desired();
        // The observer has just observed `self.signals`: its staffing history
        // is what the `smoothed` / `peak` actions follow.
        let wanted = self
            .actions
            .apply_with(action, &self.signals, &self.observer.estimates());
        let desired = engine.set_desired(wanted);
        let (signals, terminated) = advance(engine);
        self.steps += 1;
        let truncated = !terminated && engine.now() >= self.episode_s;
        let r = reward(&self.weights, &signals, prev, desired);
        let done = terminated || truncated;
        let info = StepInfo {
            time_s: engine.now(),
            step: self.steps,
            desired,
            signals: signals.clone(),
            metrics: done.then(|| engine.metrics()),
        };
        self.signals = signals;
        if done {
            self.engine = None;
        }
        Ok(StepOut {
            obs: self.observer.observe(&self.signals),
            reward: r,
            terminated,
            truncated,
            info,
        })
    }
}

/// Run to the next tick; `(signals, finished)`. When the run finishes
/// between ticks, the signals cover the partial interval.
fn advance(engine: &mut Engine) -> (Signals, bool) {
    loop {
        match engine.run() {
            Pause::Tick(s) => return (s, false),
            Pause::Alert { .. } => {}
            Pause::Finished => return (engine.signals(), true),
        }
    }
}
