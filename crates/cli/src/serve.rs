//! `farmctl sim serve`: the `FarmControl` gRPC service (proto/control.proto)
//! on top of the simulator, for the Gymnasium layer (gym/).
//!
//! Many environments share one server, keyed by the client-chosen `env_id`;
//! each is a [`farm_sim::Env`] behind its own lock. Simulation is CPU-bound,
//! so `Reset` and `StepBatch` run on tokio's blocking pool, never on the
//! reactor; a single `Step` (one control interval, tens of microseconds) runs inline,
//! as handing it to another thread would cost more than the step itself.
//! `StepBatch` can reply with flat arrays (`packed`, built with
//! [`farm_proto::batch::PackedBuilder`]) instead of one `StepReply` per env.
//! Accepted sockets get `TCP_NODELAY`, since a step is
//! one small request and one small reply. The same environments are also
//! served by `FarmControlStream.StepStream`: lockstep `Step`s over one
//! bidirectional stream, cheaper per step for a client stepping a single
//! environment than a unary call each (figures in BENCHMARKS.md
//! "Gymnasium"). Batch work holds one of two permits per thread, granted in
//! arrival order, so concurrent batches are stepped one after the other.
//!
//! The first line on stdout is `listening ADDR` (the bound address, useful
//! with port 0); logs go to stderr.
//!
//! # Reset options
//!
//! `ResetRequest.options` (a string map; an unknown key is refused so a typo
//! is not silently ignored):
//!
//! | key | value | default |
//! |---|---|---|
//! | `action_space` | `default` (deltas -4..+4), `paper` ({-1,0,+1}), `estimates`, or a comma list of meanings (`hold,delta:+1,estimate:x1.25`) | `default` |
//! | `scenarios` | comma list of built-in names: each episode draws one (seeded by the episode seed) | the request's scenario |
//! | `randomize` | `true` / `false`: domain randomisation of each episode's scenario | `false` |
//! | `randomize.rate` | `lo,hi`: arrival-rate multiplier range | `0.7,1.5` |
//! | `randomize.service` | `lo,hi`: service-time mean multiplier range (clip bounds follow) | `0.7,1.4` |
//! | `randomize.shape` | `lo,hi`: gamma shape multiplier (lognormal: 1/sigma^2), mean kept | `0.5,2.0` |
//! | `randomize.startup` | `lo,hi`: start-up delay multiplier range | `0.5,2.0` |
//! | `episode_steps` | override of `platform.episode_steps` | scenario's |
//! | `obs_version` | observation layout: `1`, `2` (v1 plus history features) or `3` (v2 plus memory in seconds and the planner's decision; `farm_model::observation::Observer`) | `1` |
//! | `interval` | comma list of decision intervals, seconds: each episode draws one (seeded) and keeps its length in seconds | scenario's |
//! | `window` | sliding window of the signals, seconds (at least the interval) | the interval |
//! | `events` | early decisions between ticks on a backlog jump: `off`, `on` or `share=X,jump=N,gap=S` (`farm_model::cadence`; a step then lasts up to one interval) | `off` |
//! | `reward.qos`, `reward.cost`, `reward.backlog`, `reward.churn` | reward weights | `farm_model::reward::RewardWeights::default()` |
//!
//! Each factor is drawn uniformly in its range from a random stream derived
//! from the episode seed, so a seed reproduces the randomised scenario.
//! Multiplier ranges must satisfy `0 < lo <= hi <= 10`.
//!
//! With `StepBatch { auto_reset: true }` an environment whose episode ended
//! starts its next episode at once with seed `reset_seed + episodes_done`
//! (wrapping), the same options and scenario list; the reply carries the
//! final step's reward, flags and info, the ended episode's last observation
//! in `final_observation`, and the new episode's first observation.
//!
//! ```text
//! $ farmctl sim serve --addr 127.0.0.1:0
//! listening 127.0.0.1:40123
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use farm_model::action::ActionSpace;
use farm_model::cadence::BacklogJump;
use farm_model::observation::{self, OBS_DIM, OBS_VERSION, Observer};
use farm_model::reward::RewardWeights;
use farm_model::scenario::{Arrivals, Dist, Scenario, ScenarioError, stream_rng};
use farm_proto::batch::{self, PackedBuilder};
use farm_proto::control::farm_control_server::{FarmControl, FarmControlServer};
use farm_proto::control::farm_control_stream_server::{FarmControlStream, FarmControlStreamServer};
use farm_proto::control::{
    Decision, EnvSpec, ResetRequest, RunSummary, SpecRequest, StepBatchReply, StepBatchRequest,
    StepReply, StepRequest, WatchRequest,
};
use farm_runtime::config::parse_bool;
use farm_sim::{Env, EnvError, RunMetrics, StepInfo};
use rand::Rng;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::{debug, info};

/// Largest gRPC message accepted or sent (a `StepBatch` of thousands of envs).
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Random stream of the domain randomisation ("randomiz").
const RANDOMIZE_STREAM: u64 = 0x7261_6e64_6f6d_697a;
/// Random stream choosing an episode's scenario from a list ("scenmix").
const MIX_STREAM: u64 = 0x0073_6365_6e6d_6978;
/// Stream of the per-episode draw of the decision interval (`interval` option).
const INTERVAL_STREAM: u64 = 0x0069_6e74_6572_7661;

/// Arguments of `farmctl sim serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback only by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Exit when stdin reaches end of file: a parent that started the
    /// server with a pipe on stdin takes it down by exiting, even on a crash.
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
}

/// Why a reset's options were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionError {
    /// The key is not a known option.
    #[error("unknown option `{key}` (known: {known})", known = KNOWN_OPTIONS.join(", "))]
    Unknown {
        /// The key given.
        key: String,
    },
    /// The value does not parse or is out of range.
    #[error("option `{key}` = `{value}`: expected {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

const KNOWN_OPTIONS: &[&str] = &[
    "action_space",
    "scenarios",
    "randomize",
    "randomize.rate",
    "randomize.service",
    "randomize.shape",
    "randomize.startup",
    "episode_steps",
    "obs_version",
    "interval",
    "window",
    "events",
    "reward.qos",
    "reward.cost",
    "reward.backlog",
    "reward.churn",
];

/// A closed range of multipliers drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Range {
    const fn new(lo: f64, hi: f64) -> Range {
        Range { lo, hi }
    }

    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        if self.hi > self.lo {
            rng.random_range(self.lo..=self.hi)
        } else {
            self.lo
        }
    }
}

/// Ranges of the domain randomisation (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Randomization {
    /// Arrival-rate multiplier.
    pub rate: Range,
    /// Service-time mean multiplier.
    pub service: Range,
    /// Service-time shape multiplier (variability; mean kept).
    pub shape: Range,
    /// Start-up delay multiplier.
    pub startup: Range,
}

impl Default for Randomization {
    fn default() -> Self {
        Randomization {
            rate: Range::new(0.7, 1.5),
            service: Range::new(0.7, 1.4),
            shape: Range::new(0.5, 2.0),
            startup: Range::new(0.5, 2.0),
        }
    }
}

/// Everything a reset fixes for the episodes of one environment.
#[derive(Debug, Clone)]
pub struct EpisodeConfig {
    /// Scenarios an episode draws from (one = always that one).
    pub scenarios: Vec<Scenario>,
    /// Domain randomisation, when enabled.
    pub randomize: Option<Randomization>,
    /// Action space.
    pub actions: ActionSpace,
    /// Reward weights.
    pub weights: RewardWeights,
    /// Override of the episode length in steps.
    pub episode_steps: Option<u32>,
    /// Observation layout version (1, 2 or 3).
    pub obs_version: u32,
    /// Decision intervals an episode draws from (empty = the scenario's).
    pub intervals: Vec<f64>,
    /// Sliding window of the signals, seconds.
    pub window: Option<f64>,
    /// Early decisions on a backlog jump.
    pub events: Option<BacklogJump>,
    /// Shed tasks past their deadline unstarted (option `shed_expired`).
    pub shed_expired: bool,
}

impl EpisodeConfig {
    /// Parse a reset's scenario fields and options.
    pub fn from_request(req: &ResetRequest) -> Result<EpisodeConfig, Status> {
        let invalid = |e: OptionError| Status::invalid_argument(e.to_string());
        let scenario_err = |e: ScenarioError| Status::invalid_argument(e.to_string());
        let mut scenarios = Vec::new();
        if let Some(list) = req.options.get("scenarios") {
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                scenarios.push(Scenario::builtin(name).map_err(scenario_err)?);
            }
            if scenarios.is_empty() {
                return Err(invalid(OptionError::BadValue {
                    key: "scenarios".into(),
                    value: list.clone(),
                    expected: "a comma list of built-in scenario names",
                }));
            }
        } else if !req.scenario_yaml.trim().is_empty() {
            scenarios.push(Scenario::from_yaml(&req.scenario_yaml).map_err(scenario_err)?);
        } else {
            let name = if req.scenario.is_empty() {
                "paper-4phase"
            } else {
                req.scenario.as_str()
            };
            scenarios.push(Scenario::builtin(name).map_err(scenario_err)?);
        }
        let mut cfg = EpisodeConfig {
            scenarios,
            randomize: None,
            actions: ActionSpace::default(),
            weights: RewardWeights::default(),
            episode_steps: None,
            obs_version: OBS_VERSION,
            intervals: Vec::new(),
            window: None,
            events: None,
            shed_expired: false,
        };
        let mut ranges = Randomization::default();
        let mut randomize = false;
        for (key, value) in &req.options {
            let bad = |expected: &'static str| OptionError::BadValue {
                key: key.clone(),
                value: value.clone(),
                expected,
            };
            let weight = |v: &str| -> Result<f64, OptionError> {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|w| w.is_finite() && *w >= 0.0)
                    .ok_or_else(|| bad("a non-negative number"))
            };
            match key.as_str() {
                "scenarios" => {}
                "action_space" => {
                    cfg.actions = parse_action_space(value).ok_or_else(|| {
                        invalid(bad(
                            "default, paper, estimates, or a comma list of action meanings",
                        ))
                    })?
                }
                "randomize" => {
                    randomize = match value.trim() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" | "" => false,
                        _ => return Err(invalid(bad("true or false"))),
                    }
                }
                "randomize.rate" => {
                    ranges.rate = parse_range(value).ok_or_else(|| invalid(bad(RANGE_EXPECTED)))?
                }
                "randomize.service" => {
                    ranges.service =
                        parse_range(value).ok_or_else(|| invalid(bad(RANGE_EXPECTED)))?
                }
                "randomize.shape" => {
                    ranges.shape = parse_range(value).ok_or_else(|| invalid(bad(RANGE_EXPECTED)))?
                }
                "randomize.startup" => {
                    ranges.startup =
                        parse_range(value).ok_or_else(|| invalid(bad(RANGE_EXPECTED)))?
                }
                "episode_steps" => {
                    let n = value
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| invalid(bad("an integer >= 1")))?;
                    cfg.episode_steps = Some(n);
                }
                "obs_version" => {
                    cfg.obs_version = value
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|v| observation::dim_of(*v).is_ok())
                        .ok_or_else(|| invalid(bad("1, 2 or 3")))?;
                }
                "interval" => {
                    let seconds = |v: &str| {
                        v.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite() && *x > 0.0)
                    };
                    cfg.intervals = value
                        .split(',')
                        .map(seconds)
                        .collect::<Option<Vec<f64>>>()
                        .ok_or_else(|| invalid(bad("a comma list of positive seconds")))?;
                }
                "window" => {
                    cfg.window = Some(
                        value
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite() && *x > 0.0)
                            .ok_or_else(|| invalid(bad("a positive number of seconds")))?,
                    );
                }
                "events" => {
                    cfg.events = BacklogJump::parse(value)
                        .map_err(|e| Status::invalid_argument(format!("option events: {e}")))?;
                }
                "shed_expired" => {
                    cfg.shed_expired =
                        parse_bool(value).ok_or_else(|| invalid(bad("true or false")))?;
                }
                "reward.qos" => cfg.weights.qos = weight(value).map_err(invalid)?,
                "reward.cost" => cfg.weights.cost = weight(value).map_err(invalid)?,
                "reward.backlog" => cfg.weights.backlog = weight(value).map_err(invalid)?,
                "reward.churn" => cfg.weights.churn = weight(value).map_err(invalid)?,
                _ => return Err(invalid(OptionError::Unknown { key: key.clone() })),
            }
        }
        if randomize {
            cfg.randomize = Some(ranges);
        }
        Ok(cfg)
    }

    /// The scenario of the episode started with `seed`: drawn from the list,
    /// randomised when enabled, with the episode length override applied.
    pub fn scenario_for(&self, seed: u64) -> Scenario {
        let index = if self.scenarios.len() > 1 {
            stream_rng(seed, MIX_STREAM).random_range(0..self.scenarios.len())
        } else {
            0
        };
        let mut s = self.scenarios[index].clone();
        if let Some(r) = &self.randomize {
            randomize(&mut s, r, seed);
        }
        if !self.intervals.is_empty() {
            let k = stream_rng(seed, INTERVAL_STREAM).random_range(0..self.intervals.len());
            let dt = self.intervals[k];
            s.platform.episode_steps = (s.platform.episode_s() / dt).round().max(1.0) as u32;
            s.platform.control_interval_s = dt;
        }
        if let Some(n) = self.episode_steps {
            s.platform.episode_steps = n;
        }
        s
    }
}

const RANGE_EXPECTED: &str = "`lo,hi` with 0 < lo <= hi <= 10";

fn parse_range(text: &str) -> Option<Range> {
    let (lo, hi) = text.split_once(',')?;
    let lo: f64 = lo.trim().parse().ok()?;
    let hi: f64 = hi.trim().parse().ok()?;
    (lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi && hi <= 10.0)
        .then_some(Range { lo, hi })
}

fn parse_action_space(text: &str) -> Option<ActionSpace> {
    match text.trim() {
        "" | "default" => Some(ActionSpace::default()),
        "paper" => Some(ActionSpace::paper()),
        "estimates" => Some(ActionSpace::with_estimates()),
        list => {
            let meanings: Vec<String> = list.split(',').map(|m| m.trim().to_string()).collect();
            ActionSpace::from_meanings(&meanings).ok()
        }
    }
}

/// Apply domain randomisation to a scenario, seeded by the episode seed.
pub fn randomize(s: &mut Scenario, r: &Randomization, seed: u64) {
    let mut rng = stream_rng(seed, RANDOMIZE_STREAM);
    // Draw every factor whatever the scenario's kinds, so a factor's value
    // for a seed does not depend on which others apply.
    let rate = r.rate.draw(&mut rng);
    let service = r.service.draw(&mut rng);
    let shape = r.shape.draw(&mut rng);
    let startup = r.startup.draw(&mut rng);
    match &mut s.arrivals {
        Arrivals::Phases { base_rate, .. } => *base_rate *= rate,
        Arrivals::Mmpp { rates, .. } => {
            rates[0] *= rate;
            rates[1] *= rate;
        }
        Arrivals::Trace { counts } => {
            // Scale the recorded counts, carrying the fractional part so the
            // total follows the factor.
            let mut carry = 0.0;
            for c in counts.iter_mut() {
                let x = f64::from(*c) * rate + carry;
                let whole = x.floor();
                carry = x - whole;
                *c = whole.min(f64::from(u32::MAX)) as u32;
            }
        }
    }
    s.service.dist = reshape(&scale(&s.service.dist, service), shape);
    if let Some(c) = s.service.clip.as_mut() {
        c.min *= service;
        c.max *= service;
    }
    s.platform.startup_delay = scale(&s.platform.startup_delay, startup);
}

/// The distribution of `f * X`.
fn scale(d: &Dist, f: f64) -> Dist {
    match d {
        Dist::Constant(v) => Dist::Constant(v * f),
        Dist::Uniform { min, max } => Dist::Uniform {
            min: min * f,
            max: max * f,
        },
        Dist::Exponential { mean } => Dist::Exponential { mean: mean * f },
        Dist::Gamma { shape, scale } => Dist::Gamma {
            shape: *shape,
            scale: scale * f,
        },
        Dist::LogNormal { mu, sigma } => Dist::LogNormal {
            mu: mu + f.ln(),
            sigma: *sigma,
        },
        Dist::Empirical { values } => Dist::Empirical {
            values: values.iter().map(|v| v * f).collect(),
        },
    }
}

/// Change the variability of a gamma or log-normal distribution by `g`
/// (gamma: shape * g; log-normal: sigma / sqrt(g)), keeping its mean; other
/// kinds are returned unchanged.
fn reshape(d: &Dist, g: f64) -> Dist {
    match d {
        Dist::Gamma { shape, scale } => Dist::Gamma {
            shape: shape * g,
            scale: scale / g,
        },
        Dist::LogNormal { mu, sigma } => {
            let s2 = sigma / g.sqrt();
            Dist::LogNormal {
                mu: mu + (sigma * sigma - s2 * s2) / 2.0,
                sigma: s2,
            }
        }
        other => other.clone(),
    }
}

/// One environment of the server.
#[derive(Debug)]
struct Slot {
    env: Env,
    cfg: EpisodeConfig,
    /// Seed of the last explicit reset.
    seed: u64,
    /// Episodes started since that reset.
    episodes: u64,
}

impl Slot {
    /// Start the episode with this seed; the reply of its first interval.
    fn start(&mut self, env_id: &str, seed: u64) -> Result<StepReply, Status> {
        let scenario = self.cfg.scenario_for(seed);
        let (obs, info) = self.env.reset(&scenario, seed).map_err(env_status)?;
        self.episodes += 1;
        let done = info.metrics.is_some();
        Ok(reply(env_id, &obs, 0.0, done, false, &info))
    }

    fn step(&mut self, env_id: &str, action: u32, auto_reset: bool) -> Result<StepReply, Status> {
        let out = self.env.step(action as usize).map_err(env_status)?;
        self.finish(env_id, &out, auto_reset)
    }

    /// One step appended to a packed batch reply: no `StepReply` (and no
    /// allocation) unless the episode ended.
    fn step_packed(
        &mut self,
        env_id: &str,
        action: u32,
        auto_reset: bool,
        packed: &mut PackedBuilder,
    ) -> Result<(), Status> {
        let out = self.env.step(action as usize).map_err(env_status)?;
        if out.terminated || out.truncated {
            packed.push_reply(self.finish(env_id, &out, auto_reset)?);
        } else {
            packed.push(
                &out.obs,
                out.reward,
                false,
                false,
                &step_info(&out.info),
                StepReply::default,
            );
        }
        Ok(())
    }

    /// The reply of a step; with `auto_reset`, starts the next episode when
    /// this one ended.
    fn finish(
        &mut self,
        env_id: &str,
        out: &farm_sim::StepOut,
        auto_reset: bool,
    ) -> Result<StepReply, Status> {
        let mut r = reply(
            env_id,
            &out.obs,
            out.reward,
            out.terminated,
            out.truncated,
            &out.info,
        );
        if auto_reset && (out.terminated || out.truncated) {
            let seed = self.seed.wrapping_add(self.episodes);
            let next = self.start(env_id, seed)?;
            r.final_observation = std::mem::replace(&mut r.observation, next.observation);
        }
        Ok(r)
    }
}

fn env_status(e: EnvError) -> Status {
    match e {
        EnvError::InvalidAction { .. } | EnvError::Sim(_) => {
            Status::invalid_argument(e.to_string())
        }
        EnvError::NotRunning => Status::failed_precondition(e.to_string()),
    }
}

fn summary(m: &RunMetrics) -> RunSummary {
    RunSummary {
        tasks: m.tasks,
        completed: m.completed,
        unfinished: m.unfinished,
        qos: m.qos,
        latency_p50_s: m.latency_p50_s,
        latency_p95_s: m.latency_p95_s,
        latency_p99_s: m.latency_p99_s,
        replica_seconds: m.replica_seconds,
        mean_replicas: m.mean_replicas,
        max_replicas: m.max_replicas,
        scaling_actions: m.scaling_actions,
        reversals: m.reversals,
        drain_s: m.drain_time_s,
    }
}

fn reply(
    env_id: &str,
    obs: &[f32],
    reward: f64,
    terminated: bool,
    truncated: bool,
    info: &StepInfo,
) -> StepReply {
    StepReply {
        env_id: env_id.to_string(),
        observation: obs.to_vec(),
        reward,
        terminated,
        truncated,
        info: Some(step_info(info)),
        final_observation: Vec::new(),
    }
}

fn step_info(info: &StepInfo) -> farm_proto::control::StepInfo {
    let s = &info.signals;
    let count = |x: f64| {
        if x.is_finite() && x > 0.0 {
            x.round() as u32
        } else {
            0
        }
    };
    farm_proto::control::StepInfo {
        time_s: info.time_s,
        desired: info.desired,
        ready: count(s.replicas_ready),
        starting: count(s.replicas_starting),
        backlog: s.backlog,
        in_flight: s.in_flight,
        window_qos: s.window_qos(),
        arrivals: s.arrivals,
        completions: s.completions,
        summary: info.metrics.as_ref().map(summary),
    }
}

/// Environments per unit of work of a `StepBatch`.
const BATCH_CHUNK: usize = 32;

/// The results of one chunk of a `StepBatch`, in the form the request asked.
enum Chunk {
    Replies(Vec<StepReply>),
    Packed(PackedBuilder),
}

/// A `StepBatch` shared by the threads stepping it.
struct BatchWork {
    req: Arc<StepBatchRequest>,
    /// The slot of each step, in request order.
    slots: Vec<Arc<Mutex<Slot>>>,
    /// The next chunk to take.
    next: AtomicUsize,
    /// Observation length of every environment of a packed batch.
    obs_dim: usize,
}

impl BatchWork {
    /// Step chunks until none is left; each with its index.
    fn run(&self) -> Result<Vec<(usize, Chunk)>, Status> {
        let steps = batch::steps(&self.req).map_err(|e| Status::internal(e.to_string()))?;
        let auto_reset = self.req.auto_reset;
        let mut out = Vec::new();
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let first = index.saturating_mul(BATCH_CHUNK);
            if first >= steps.len() {
                return Ok(out);
            }
            let last = (first + BATCH_CHUNK).min(steps.len());
            let pairs = self.slots[first..last].iter().zip(&steps[first..last]);
            let chunk = if self.req.packed {
                let mut packed =
                    PackedBuilder::new(last - first, self.obs_dim, self.req.packed_info);
                for (slot, (env_id, action)) in pairs {
                    lock(slot)?.step_packed(env_id, *action, auto_reset, &mut packed)?;
                }
                Chunk::Packed(packed)
            } else {
                Chunk::Replies(
                    pairs
                        .map(|(slot, (env_id, action))| {
                            lock(slot)?.step(env_id, *action, auto_reset)
                        })
                        .collect::<Result<Vec<_>, Status>>()?,
                )
            };
            out.push((index, chunk));
        }
    }
}

/// The environments of a server, by id.
type EnvTable = Mutex<HashMap<String, Arc<Mutex<Slot>>>>;

/// Threads stepping `StepBatch` work at once: the cores of the machine this
/// targets (two).
const BATCH_THREADS: usize = 2;

/// The simulator-backed `FarmControl` service (and `FarmControlStream`,
/// which shares its environments).
#[derive(Debug, Clone)]
pub struct SimControl {
    envs: Arc<EnvTable>,
    /// Permits to step batch work, one per thread, granted first come first
    /// served (tokio's semaphore is fair): of two batches in flight (a client
    /// that splits its environments to decode one reply while the server
    /// steps the next), the first gets every core and is answered first,
    /// instead of both sharing the cores and finishing together.
    batch_permits: Arc<tokio::sync::Semaphore>,
}

impl Default for SimControl {
    fn default() -> Self {
        SimControl {
            envs: Arc::default(),
            batch_permits: Arc::new(tokio::sync::Semaphore::new(BATCH_THREADS)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, Status> {
    m.lock()
        .map_err(|_| Status::internal("an environment lock was poisoned by a panic"))
}

impl SimControl {
    fn slot(&self, env_id: &str) -> Result<Arc<Mutex<Slot>>, Status> {
        lock(&self.envs)?.get(env_id).cloned().ok_or_else(|| {
            Status::not_found(format!("unknown env_id `{env_id}`: call Reset first"))
        })
    }

    /// One `Step`, inline: one step simulates one control interval
    /// (microseconds; see BENCHMARKS.md "Gymnasium"), less than a hand-off
    /// to a blocking thread and back costs. Batches and resets (workload
    /// generation) still go to the blocking pool.
    fn step_one(&self, req: &StepRequest) -> Result<StepReply, Status> {
        let slot = self.slot(&req.env_id)?;
        lock(&slot)?.step(&req.env_id, req.action, false)
    }
}

/// Run CPU-bound work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("simulation task failed: {e}")))?
}

#[tonic::async_trait]
impl FarmControl for SimControl {
    async fn get_spec(&self, request: Request<SpecRequest>) -> Result<Response<EnvSpec>, Status> {
        let req = request.into_inner();
        let actions = parse_action_space(&req.action_space).ok_or_else(|| {
            Status::invalid_argument(format!(
                "action_space `{}`: expected default, paper, estimates, or a comma list of action meanings",
                req.action_space
            ))
        })?;
        let default =
            Scenario::builtin("paper-4phase").map_err(|e| Status::internal(e.to_string()))?;
        let version = if req.obs_version == 0 {
            OBS_VERSION
        } else {
            req.obs_version
        };
        let bad_version = |e: observation::ObservationError| {
            Status::invalid_argument(format!("obs_version {}: {e}", req.obs_version))
        };
        Ok(Response::new(EnvSpec {
            obs_version: version,
            observation_names: observation::names_of(version)
                .map_err(bad_version)?
                .iter()
                .map(|s| s.to_string())
                .collect(),
            observation_low: observation::low_of(version).map_err(bad_version)?.to_vec(),
            observation_high: observation::high_of(version).map_err(bad_version)?.to_vec(),
            action_meanings: actions.meanings(),
            control_interval_s: default.platform.control_interval_s,
            episode_steps: default.platform.episode_steps,
            backend: "sim".into(),
            server_version: format!("farmctl {}", env!("CARGO_PKG_VERSION")),
            scenarios: Scenario::builtin_names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            policies: Vec::new(),
        }))
    }

    async fn reset(&self, request: Request<ResetRequest>) -> Result<Response<StepReply>, Status> {
        let req = request.into_inner();
        if req.env_id.is_empty() {
            return Err(Status::invalid_argument(
                "env_id must be a non-empty string",
            ));
        }
        let cfg = EpisodeConfig::from_request(&req)?;
        let env_id = req.env_id.clone();
        let seed = req.seed;
        debug!(env_id, seed, scenarios = cfg.scenarios.len(), "reset");
        let (slot, reply) = blocking(move || {
            let observer = Observer::new(cfg.obs_version)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let env = Env::new(cfg.actions.clone(), cfg.weights)
                .with_observer(observer)
                .with_window(cfg.window)
                .with_events(cfg.events)
                .with_shed_expired(cfg.shed_expired);
            let mut slot = Slot {
                env,
                cfg,
                seed,
                episodes: 0,
            };
            let reply = slot.start(&env_id, seed)?;
            Ok((slot, reply))
        })
        .await?;
        lock(&self.envs)?.insert(req.env_id, Arc::new(Mutex::new(slot)));
        Ok(Response::new(reply))
    }

    async fn step(&self, request: Request<StepRequest>) -> Result<Response<StepReply>, Status> {
        Ok(Response::new(self.step_one(&request.into_inner())?))
    }

    async fn step_batch(
        &self,
        request: Request<StepBatchRequest>,
    ) -> Result<Response<StepBatchReply>, Status> {
        let req = Arc::new(request.into_inner());
        // One pass under the table lock: check the form, refuse duplicate
        // ids (two steps of one env in a batch would race), find the slots.
        let (slots, obs_dim) = {
            let steps = batch::steps(&req).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let envs = lock(&self.envs)?;
            let mut seen = HashSet::with_capacity(steps.len());
            let mut slots = Vec::with_capacity(steps.len());
            let mut obs_dim = None;
            for (env_id, _) in &steps {
                if !seen.insert(*env_id) {
                    return Err(Status::invalid_argument(format!(
                        "env_id `{env_id}` appears twice in one StepBatch"
                    )));
                }
                let slot = envs.get(*env_id).cloned().ok_or_else(|| {
                    Status::not_found(format!("unknown env_id `{env_id}`: call Reset first"))
                })?;
                if req.packed {
                    // Packed rows share one length: refuse environments of
                    // different observation versions in one packed batch.
                    let dim = observation::dim_of(lock(&slot)?.env.obs_version())
                        .map_err(|e| Status::internal(e.to_string()))?;
                    if *obs_dim.get_or_insert(dim) != dim {
                        return Err(Status::invalid_argument(format!(
                            "env_id `{env_id}` has {dim} observation features, other environments \
                             of this packed StepBatch have {}: use one obs_version per packed batch",
                            obs_dim.unwrap_or(dim)
                        )));
                    }
                }
                slots.push(slot);
            }
            (slots, obs_dim.unwrap_or(OBS_DIM))
        };
        let n = slots.len();
        if n == 0 {
            return Ok(Response::new(StepBatchReply {
                replies: Vec::new(),
                packed: req
                    .packed
                    .then(|| PackedBuilder::new(0, OBS_DIM, false).finish()),
            }));
        }
        // Small chunks taken in turn by up to two blocking threads (the
        // machine this targets has two cores; environments are independent,
        // ids are distinct). Taking chunks instead of fixed halves keeps
        // both threads busy when one half has more episode resets, or when
        // one thread is descheduled on a busy machine.
        let work = Arc::new(BatchWork {
            req: Arc::clone(&req),
            slots,
            next: AtomicUsize::new(0),
            obs_dim,
        });
        let run = || {
            let work = Arc::clone(&work);
            let permits = Arc::clone(&self.batch_permits);
            async move {
                let permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|_| Status::internal("batch permits closed"))?;
                blocking(move || {
                    let out = work.run();
                    drop(permit);
                    out
                })
                .await
            }
        };
        let mut done = if n > BATCH_CHUNK {
            let (a, b) = tokio::join!(run(), run());
            let mut a = a?;
            a.extend(b?);
            a
        } else {
            run().await?
        };
        done.sort_unstable_by_key(|(index, _)| *index);
        let reply = if req.packed {
            let mut packed = PackedBuilder::new(0, obs_dim, req.packed_info);
            for (_, chunk) in done {
                if let Chunk::Packed(p) = chunk {
                    packed.append(p);
                }
            }
            StepBatchReply {
                replies: Vec::new(),
                packed: Some(packed.finish()),
            }
        } else {
            let mut replies = Vec::with_capacity(n);
            for (_, chunk) in done {
                if let Chunk::Replies(r) = chunk {
                    replies.extend(r);
                }
            }
            StepBatchReply {
                replies,
                packed: None,
            }
        };
        Ok(Response::new(reply))
    }

    type WatchStream = tonic::codegen::tokio_stream::Empty<Result<Decision, Status>>;

    async fn watch(
        &self,
        _request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented(
            "Watch streams live decisions of managed farms: served by gateway-ext, not by the simulator",
        ))
    }
}

/// Replies of a `StepStream`, in request order.
type StepReplies = std::pin::Pin<
    Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<StepReply, Status>> + Send>,
>;

#[tonic::async_trait]
impl FarmControlStream for SimControl {
    type StepStreamStream = StepReplies;

    async fn step_stream(
        &self,
        request: Request<tonic::Streaming<StepRequest>>,
    ) -> Result<Response<StepReplies>, Status> {
        use tonic::codegen::tokio_stream::StreamExt;
        let ctl = self.clone();
        // Each request is stepped inline as it arrives (like a unary Step);
        // the first error is sent and ends the stream, so a client never
        // reads a reply that belongs to another request.
        let mut failed = false;
        let replies = request
            .into_inner()
            .map(move |req| ctl.step_one(&req?))
            .take_while(move |r| {
                let go = !failed;
                failed |= r.is_err();
                go
            });
        Ok(Response::new(Box::pin(replies)))
    }
}

/// Serve `FarmControl` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let control = SimControl::default();
    let stream = FarmControlStreamServer::new(control.clone());
    let svc = FarmControlServer::new(control)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .add_service(svc)
        .add_service(stream)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// `farmctl sim serve`: bind, print `listening ADDR`, serve until Ctrl-C,
/// SIGTERM, or (with `--exit-on-stdin-eof`) the end of stdin.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    // Logs go to stderr: stdout's first line is the address clients read.
    crate::shared::logging::log_to_stderr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(args.clone()))
}

/// [`run`] for callers already inside a tokio runtime.
pub async fn run_async(args: ServeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {addr}")?;
        out.flush()?;
    }
    info!(%addr, "FarmControl (simulator) listening");
    let (tx, rx) = tokio::sync::oneshot::channel::<&'static str>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let stop = move |why: &'static str| {
        if let Ok(mut g) = tx.lock()
            && let Some(tx) = g.take()
        {
            let _ = tx.send(why);
        }
    };
    if args.exit_on_stdin_eof {
        let stop = stop.clone();
        // A plain thread: stdin is a blocking file descriptor.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read_until(b'\n', &mut sink), Ok(n) if n > 0) {
                sink.clear();
            }
            stop("stdin closed");
        });
    }
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop("interrupt");
        });
    }
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            term.recv().await;
            stop("terminate");
        });
    }
    serve(listener, async move {
        let why = rx.await.unwrap_or("shutdown channel closed");
        info!(reason = why, "shutting down");
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(options: &[(&str, &str)]) -> ResetRequest {
        ResetRequest {
            env_id: "e".into(),
            seed: 1,
            scenario: "paper-4phase".into(),
            scenario_yaml: String::new(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn unknown_option_is_refused() {
        let e = EpisodeConfig::from_request(&req(&[("randomise", "true")])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("randomise"), "{}", e.message());
    }

    #[test]
    fn obs_version_option_is_parsed_and_checked() {
        let cfg = EpisodeConfig::from_request(&req(&[])).unwrap();
        assert_eq!(cfg.obs_version, 1);
        let cfg = EpisodeConfig::from_request(&req(&[("obs_version", "2")])).unwrap();
        assert_eq!(cfg.obs_version, 2);
        let cfg = EpisodeConfig::from_request(&req(&[("obs_version", "3")])).unwrap();
        assert_eq!(cfg.obs_version, 3);
        for v in ["0", "4", "v2", ""] {
            let e = EpisodeConfig::from_request(&req(&[("obs_version", v)])).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{v}");
        }
    }

    /// `shed_expired` is off unless asked, and a value that is not a
    /// boolean is refused naming the option.
    #[test]
    fn shed_expired_option_is_a_boolean() {
        assert!(!EpisodeConfig::from_request(&req(&[])).unwrap().shed_expired);
        let on = EpisodeConfig::from_request(&req(&[("shed_expired", "true")])).unwrap();
        assert!(on.shed_expired);
        let e = EpisodeConfig::from_request(&req(&[("shed_expired", "maybe")])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("shed_expired"), "{}", e.message());
    }

    #[test]
    fn cadence_options_draw_an_interval_and_keep_the_episode_length() {
        let cfg =
            EpisodeConfig::from_request(&req(&[("interval", "1, 2,8"), ("window", "8")])).unwrap();
        assert_eq!(cfg.intervals, [1.0, 2.0, 8.0]);
        assert_eq!(cfg.window, Some(8.0));
        assert_eq!(cfg.events, None);
        let on = EpisodeConfig::from_request(&req(&[("events", "gap=2")])).unwrap();
        assert_eq!(on.events.map(|t| t.min_gap_s), Some(2.0));
        let base = EpisodeConfig::from_request(&req(&[]))
            .unwrap()
            .scenario_for(3);
        let mut seen = HashSet::new();
        for seed in 0..64 {
            let s = cfg.scenario_for(seed);
            assert_eq!(s, cfg.scenario_for(seed));
            let dt = s.platform.control_interval_s;
            assert!([1.0, 2.0, 8.0].contains(&dt), "{dt}");
            assert!((s.platform.episode_s() - base.platform.episode_s()).abs() < 1e-9);
            seen.insert(dt.to_bits());
        }
        assert_eq!(seen.len(), 3);
        for (k, v) in [
            ("interval", "0"),
            ("interval", "2,x"),
            ("interval", ""),
            ("window", "-1"),
            ("events", "sometimes"),
            ("events", "share=0"),
        ] {
            let e = EpisodeConfig::from_request(&req(&[(k, v)])).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{k}={v}");
        }
    }

    #[test]
    fn bad_range_is_refused() {
        for v in ["2,1", "0,1", "a,b", "1", "1,11"] {
            let e = EpisodeConfig::from_request(&req(&[("randomize.rate", v)])).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{v}");
        }
    }

    #[test]
    fn malformed_yaml_is_invalid_argument() {
        let mut r = req(&[]);
        r.scenario_yaml = "name: x\narrivals: {kind: nope}\n".into();
        let e = EpisodeConfig::from_request(&r).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("scenario"), "{}", e.message());
    }

    #[test]
    fn randomisation_is_seeded_and_within_ranges() {
        let cfg = EpisodeConfig::from_request(&req(&[("randomize", "true")])).unwrap();
        let base = Scenario::builtin("paper-4phase").unwrap();
        let a = cfg.scenario_for(5);
        assert_eq!(a, cfg.scenario_for(5));
        assert_ne!(a, cfg.scenario_for(6));
        let (Arrivals::Phases { base_rate: r0, .. }, Arrivals::Phases { base_rate: r1, .. }) =
            (&base.arrivals, &a.arrivals)
        else {
            panic!("paper-4phase has phases");
        };
        let f = r1 / r0;
        assert!((0.7..=1.5).contains(&f), "{f}");
        let m = a.service.dist.mean() / base.service.dist.mean();
        assert!((0.7 - 1e-9..=1.4 + 1e-9).contains(&m), "{m}");
        assert!(a.validate().is_ok());
    }

    #[test]
    fn reshape_keeps_the_mean() {
        for d in [
            Dist::Gamma {
                shape: 4.0,
                scale: 0.375,
            },
            Dist::LogNormal {
                mu: -0.4,
                sigma: 1.2,
            },
        ] {
            for g in [0.5, 1.3, 2.0] {
                let r = reshape(&d, g);
                assert!((r.mean() - d.mean()).abs() < 1e-9, "{d:?} {g}");
                assert!(r.cv2() != d.cv2());
            }
        }
    }

    #[test]
    fn scenario_mix_draws_from_the_list() {
        let cfg = EpisodeConfig::from_request(&req(&[("scenarios", "steady,spike")])).unwrap();
        let names: HashSet<String> = (0..32).map(|s| cfg.scenario_for(s).name).collect();
        assert_eq!(names.len(), 2);
    }

    /// Resets `n` environments `{prefix}{i}` with seed `i` (a mix of
    /// scenarios, short episodes so that batches cross episode ends).
    async fn reset_all(ctl: &SimControl, prefix: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = format!("{prefix}{i}");
            let mut r = req(&[
                ("scenarios", "paper-4phase,bursty,spike"),
                ("randomize", "true"),
                ("episode_steps", "5"),
            ]);
            r.env_id = id.clone();
            r.seed = i as u64;
            ctl.reset(Request::new(r)).await.unwrap();
            ids.push(id);
        }
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_batches_equal_serial_steps_bit_for_bit() {
        // A packed StepBatch over many chunks, stepped by two threads, and
        // concurrent batches, against the same environments stepped one by
        // one in request order on this thread.
        let n = 5 * BATCH_CHUNK + 7;
        let ctl = SimControl::default();
        let batched = reset_all(&ctl, "b", n).await;
        let serial = reset_all(&ctl, "s", n).await;
        let half = n / 2;
        let mut ended = 0;
        for k in 0..12u32 {
            let actions: Vec<u32> = (0..n as u32).map(|i| (i * 5 + k * 3) % 7).collect();
            let batch = |range: std::ops::Range<usize>| StepBatchRequest {
                env_ids: batched[range.clone()].to_vec(),
                actions: actions[range].to_vec(),
                auto_reset: true,
                packed: true,
                packed_info: true,
                ..Default::default()
            };
            // Odd steps: the batch split in two calls in flight at once.
            let packed = if k % 2 == 0 {
                vec![ctl.step_batch(Request::new(batch(0..n))).await.unwrap()]
            } else {
                let (a, b) = tokio::join!(
                    ctl.step_batch(Request::new(batch(0..half))),
                    ctl.step_batch(Request::new(batch(half..n)))
                );
                vec![a.unwrap(), b.unwrap()]
            };
            let packed: Vec<_> = packed
                .into_iter()
                .map(|r| r.into_inner().packed.unwrap())
                .collect();
            let obs: Vec<f32> = packed.iter().flat_map(|p| p.observations.clone()).collect();
            let rewards: Vec<f64> = packed.iter().flat_map(|p| p.rewards.clone()).collect();
            let info: Vec<f64> = packed.iter().flat_map(|p| p.info.clone()).collect();
            let flags: Vec<(bool, bool)> = packed
                .iter()
                .flat_map(|p| p.terminated.iter().copied().zip(p.truncated.clone()))
                .collect();
            for (i, id) in serial.iter().enumerate() {
                let slot = ctl.slot(id).unwrap();
                let r = lock(&slot).unwrap().step(id, actions[i], true).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&r.observation), bits(&obs[i * OBS_DIM..][..OBS_DIM]));
                assert_eq!(r.reward.to_bits(), rewards[i].to_bits(), "env {i} step {k}");
                assert_eq!((r.terminated, r.truncated), flags[i]);
                let step_info = r.info.unwrap();
                assert_eq!(step_info.time_s.to_bits(), info[i * 9].to_bits());
                ended += usize::from(r.terminated || r.truncated);
            }
        }
        assert!(ended >= 2 * n, "{ended} episode ends");
    }
}
