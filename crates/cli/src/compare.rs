//! `farmctl compare`: the same scenario, live on a local farm and in the
//! simulator, policy by policy, side by side.
//!
//! For each policy:
//!
//! 1. **Live**: a fresh farm (`farmctl up` into `<out>/farm`, gateway-ext
//!    off, the provider emulating the scenario's replica start-up delay
//!    divided by the speedup), `farmctl run`'s replay with farmctl's own
//!    control loop running the policy on scenario-time signals, then
//!    `farmctl down` (which removes the NATS store, so the next policy
//!    starts from empty streams). farmctl drives the pool rather than
//!    gateway-ext because gateway-ext runs on the wall clock: with a
//!    speedup its signals, windows and interval would not be the ones the
//!    simulator gives the policy.
//! 2. **Simulated**: the same workload (same scenario, same seed) in
//!    `farm-sim` under the platform the live farm really is, in scenario
//!    seconds: the emulated start-up distribution plus the local replica's
//!    own start time, the local drain time as scale-down delay, the scale
//!    call latency, and the per-task overhead of the farm (emitter ->
//!    JetStream -> worker -> collector) added to every service time. Those
//!    live figures come from `farmctl calibrate` (`--calibration`, default
//!    `platform.yaml` when present) or from the defaults measured on the
//!    development machine ([`Measured::default`]); real seconds are
//!    multiplied by the speedup.
//!
//! With `--driver gateway-ext` step 1 differs: `farmctl up` starts
//! gateway-ext, the worker's annotations name the policy under test, the
//! control interval divided by the speedup and the speedup as gateway-ext's
//! time scale (so its policy sees scenario-time signals, built from the
//! collector's cumulative snapshots differenced at each tick), with the
//! queueing-floor shield off as in the simulator; farmctl only replays,
//! observes and accounts, and the report's live ticks are gateway-ext's own
//! tick decisions (`GET /system/autoscaler/decisions`). A live run in which
//! gateway-ext made no decision fails.
//!
//! 3. **Simulated, replaying the live start-up delays** (`sim-replay`):
//!    step 2 with every replica start-up delay taken, in start order, from
//!    the live run (the provider's `GET /system/function/{name}/starts`:
//!    scale call -> health answers, or -> the replica's first task if that
//!    came first ([`live_serving_delays`]), real seconds x speedup), then
//!    from the step-2 distribution once the live ones run out
//!    ([`farm_model::scenario::DelaySequence`]), and every task the live
//!    run completed holding its replica as long as it did live
//!    ([`live_service_workload`]). Live and step 2 draw their
//!    delays independently, and with policies that keep their last
//!    scale-up (keda, hpa) one different draw changes the whole run; the
//!    replay compares the same draws, so what is left is the model's error.
//!
//! One table (live / sim / sim-replay in each cell), a JSON report (with
//! every control tick of both sides: the signals the policy saw and its
//! decision), one PNG with a replica timeline per policy, and
//! `ticks-<policy>.tsv` (and `ticks-<policy>-replay.tsv`), the live and
//! simulated ticks line by line ([`ticks_side_by_side`]), which is where a
//! live/sim difference shows its cause. The run fails if any task was
//! lost. The simulated runs end `--drain-timeout x speedup` scenario
//! seconds after the arrival window, as the live one does.
//!
//! Policies are built-in names (`farm_policy::builtin_names`) or
//! `onnx:<model.onnx>`; ONNX Runtime is found through `ORT_DYLIB_PATH`, else
//! in the repository's `.venv` ([`ort_library`]). A missing model file is
//! skipped with a message, not an error, so the default policy list works
//! before a model has been trained.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use farm_model::cadence::BacklogJump;
use farm_model::scenario::{DelaySequence, Dist, Platform, Scenario, Workload};
use farm_model::signals::Signals;
use farm_policy::{Decision, Policy};
use farm_sim::{RunMetrics, SimOptions, simulate_workload, simulate_workload_replay};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::calibrate::{Measured, load_calibration};
use crate::local::{self, DownArgs, FarmState, GatewayMode, UpArgs};
use crate::run::{self, Accounting, LiveSignals, RunArgs, Tick};
use crate::shared::logging::log_to_stderr;
use crate::shared::output::{file_safe, write_json};
use crate::shared::plot;
use crate::shared::policy::{PolicySpecError, make_policy};
use crate::shared::scenario::{Events, check_speedup, load_scenario, parse_events, with_interval};
use crate::shared::stack::Stack;

/// Target fidelity: live QoS within this many points of the simulator's.
pub const QOS_TOLERANCE_PTS: f64 = 3.0;
/// Target fidelity: live replica-seconds within this fraction of the simulator's.
pub const REPLICA_S_TOLERANCE: f64 = 0.10;

/// `farmctl compare` arguments.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Built-in scenario name or YAML file.
    #[arg(long)]
    pub scenario: String,
    /// Comma-separated policies: built-in names or `onnx:<path>`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "onnx:models/farm-policy.onnx,queueing,reactive-average,reactive-maximum,openfaas-ce,hpa,keda,kpa"
    )]
    pub policies: Vec<String>,
    /// Time compression of the live runs (the simulator runs in scenario time).
    #[arg(long, default_value_t = 4.0)]
    pub speedup: f64,
    /// Workload seed (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output directory: compare.json, compare.png, the farm's state and logs.
    #[arg(long, default_value = "farm-compare")]
    pub out: PathBuf,
    /// The stack file of the farm.
    #[arg(short = 'f', long = "file", default_value = "stack.yml")]
    pub file: PathBuf,
    /// Live platform figures from `farmctl calibrate` (default: platform.yaml if present).
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Cargo profile the functions are built with.
    #[arg(long, default_value = "release")]
    pub cargo_profile: String,
    /// Skip building the functions (deploy what the image store holds).
    #[arg(long)]
    pub no_build: bool,
    /// After the last arrival, how long a live run may take to finish, seconds (wall clock).
    #[arg(long, default_value_t = 120.0)]
    pub drain_timeout: f64,
    /// Where the live control loop takes an interval's completion statistics from.
    #[arg(long, value_enum, default_value_t = LiveSignals::Interval)]
    pub live_signals: LiveSignals,
    /// Who runs the policy in the live runs.
    #[arg(long, value_enum, default_value_t = Driver::Farmctl)]
    pub driver: Driver,
    /// Decide every this many scenario seconds instead of the scenario's
    /// `control_interval_s` (live and simulated; the episode keeps its
    /// length in seconds).
    #[arg(long)]
    pub interval: Option<f64>,
    /// Early decisions between ticks when the backlog jumps, live and
    /// simulated: `off`, `on` or `share=X,jump=N,gap=S`.
    #[arg(long, default_value = "off", value_parser = parse_events)]
    pub events: Events,
}

/// Who runs the policy under test in a live run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// farmctl's own control loop (gateway-ext not started).
    #[default]
    Farmctl,
    /// gateway-ext's control loop, time-scaled by the speedup.
    GatewayExt,
}

impl Driver {
    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            Driver::Farmctl => "farmctl",
            Driver::GatewayExt => "gateway-ext",
        }
    }
}

// ---------------------------------------------------------------- calibration

/// The provider's start-delay emulation for `d` compressed `k` times
/// (`farm_local::StartDelay` syntax), and the distribution the simulator
/// must use for it in scenario seconds. The provider knows fixed, uniform
/// and normal delays: other shapes are emulated by their mean, and the
/// simulator is told so.
pub fn start_emulation(d: &Dist, k: f64) -> (String, Dist) {
    match d {
        Dist::Constant(c) => (format!("fixed:{}", c / k), Dist::Constant(*c)),
        Dist::Uniform { min, max } => (
            format!("uniform:{},{}", min / k, max / k),
            Dist::Uniform {
                min: *min,
                max: *max,
            },
        ),
        other => {
            let m = other.mean();
            (format!("fixed:{}", m / k), Dist::Constant(m))
        }
    }
}

/// `d` delayed by `c` seconds.
fn shift(d: &Dist, c: f64) -> Dist {
    match d {
        Dist::Constant(v) => Dist::Constant(v + c),
        Dist::Uniform { min, max } => Dist::Uniform {
            min: min + c,
            max: max + c,
        },
        Dist::Empirical { values } => Dist::Empirical {
            values: values.iter().map(|v| v + c).collect(),
        },
        // start_emulation only produces the shapes above.
        other => other.clone(),
    }
}

/// The simulator's platform and workload for a live run at speedup `k`:
/// what the local farm really does, in scenario seconds.
pub fn calibrated(
    scenario: &Platform,
    workload: &Workload,
    m: &Measured,
    k: f64,
    bounds: (u32, u32),
) -> (Platform, Workload) {
    let (_, emulated) = start_emulation(&scenario.startup_delay, k);
    let mut p = scenario.clone();
    p.startup_delay = shift(&emulated, m.start_s * k);
    p.scale_down_delay = Dist::Constant(m.drain_s * k);
    p.scale_api_latency_s = m.scale_call_s * k;
    p.min_replicas = bounds.0;
    p.max_replicas = bounds.1.max(bounds.0);
    p.initial_replicas = p.initial_replicas.clamp(p.min_replicas, p.max_replicas);
    let mut w = workload.clone();
    for t in &mut w.tasks {
        t.service_s += m.task_overhead_s * k;
    }
    (p, w)
}

// ---------------------------------------------------------------- report

/// One policy's live side.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSide {
    /// Where every task ended.
    pub accounting: Accounting,
    /// Metrics in scenario seconds.
    pub metrics: RunMetrics,
    /// Every control tick: the signals the policy saw and its decision.
    pub ticks: Vec<Tick>,
    /// Who decided the ticks: `farmctl` or `gateway-ext`.
    pub driver: String,
    /// The policies gateway-ext reported for its decisions (empty with
    /// farmctl): a fallback to a built-in would show here.
    pub decided_by: Vec<String>,
}

/// A policy that records what it was shown and what it decided, so the
/// simulator's ticks can be laid beside the live ones.
struct Recording<'a> {
    inner: &'a mut dyn Policy,
    ticks: Vec<Tick>,
}

impl Policy for Recording<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn reset(&mut self) {
        self.ticks.clear();
        self.inner.reset();
    }

    fn decide(&mut self, now_s: f64, s: &Signals) -> Decision {
        let d = self.inner.decide(now_s, s);
        let (lo, hi) = (s.min_replicas as u32, (s.max_replicas as u32).max(1));
        self.ticks.push(Tick {
            t_s: now_s,
            signals: s.clone(),
            desired: d.desired.clamp(lo, hi.max(lo)),
            sampled_s: None,
        });
        d
    }

    fn on_alert(&mut self, now_s: f64, firing: bool, s: &Signals) -> Option<Decision> {
        self.inner.on_alert(now_s, firing, s)
    }
}

/// The simulated run of `pol`, with its ticks; `max_drain_s` after the
/// arrival window (scenario seconds) the run ends, finished or not.
/// `events` decides early on backlog jumps, as `--events` does live.
pub fn simulate_recorded(
    workload: &Workload,
    platform: &Platform,
    seed: u64,
    pol: &mut dyn Policy,
    max_drain_s: f64,
    events: Option<BacklogJump>,
) -> Result<(RunMetrics, Vec<Tick>)> {
    recorded(pol, max_drain_s, events, |rec, opts| {
        simulate_workload(workload, platform, seed, rec, opts)
    })
}

/// [`simulate_recorded`] with the start-up delays replayed from `replay`
/// (then its fallback); also returns the sequence, whose counters say how
/// many delays were replayed.
pub fn simulate_replayed(
    workload: &Workload,
    platform: &Platform,
    seed: u64,
    pol: &mut dyn Policy,
    max_drain_s: f64,
    events: Option<BacklogJump>,
    replay: DelaySequence,
) -> Result<(RunMetrics, Vec<Tick>, DelaySequence)> {
    let ((m, seq), ticks) = recorded(pol, max_drain_s, events, |rec, opts| {
        simulate_workload_replay(workload, platform, seed, rec, opts, replay)
    })?;
    Ok((m, ticks, seq))
}

/// Runs `sim` with `pol` wrapped so every tick is recorded, the run ending
/// at most `max_drain_s` after the arrival window.
fn recorded<T>(
    pol: &mut dyn Policy,
    max_drain_s: f64,
    events: Option<BacklogJump>,
    sim: impl FnOnce(&mut dyn Policy, &SimOptions) -> Result<T, farm_sim::SimError>,
) -> Result<(T, Vec<Tick>)> {
    let mut rec = Recording {
        inner: pol,
        ticks: Vec::new(),
    };
    let opts = SimOptions {
        max_drain_s,
        events,
        ..SimOptions::default()
    };
    let out = sim(&mut rec, &opts)?;
    Ok((out, rec.ticks))
}

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

/// How the `sim-replay` run used the live start-up delays.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayInfo {
    /// The live delays, scenario seconds, in start order: asked for ->
    /// serving (its first task, or its health route answering if earlier).
    pub live_delays_s: Vec<f64>,
    /// The same replicas' asked for -> health route answering, scenario
    /// seconds (what the replay used before 2026-11-27, FI3).
    pub healthy_delays_s: Vec<f64>,
    /// Median live dispatch gap per task ([`dispatch_gap_s`]), real seconds.
    pub dispatch_gap_s: Option<f64>,
    /// Mean time a completed task held its replica, scenario seconds: live
    /// (handler + dispatch gap, what `sim-replay` used) and the calibrated
    /// model's (nominal + `task_overhead_s`, what `sim` used).
    pub occupancy_live_s: f64,
    /// See `occupancy_live_s`.
    pub occupancy_model_s: f64,
    /// Delays the simulator took from them.
    pub replayed: usize,
    /// Delays it drew from the fallback after they ran out.
    pub fallbacks: usize,
}

/// Live and simulated ticks side by side, one line per control interval
/// (tab-separated): what each policy saw and what it asked for.
pub fn ticks_side_by_side(live: &[Tick], sim: &[Tick]) -> String {
    let cols = [
        "arr", "backlog", "inflight", "compl", "ontime", "lat_mean", "lat_max", "svc_mean",
        "dl_min", "dl_mean", "ready", "start", "desired",
    ];
    // `live_sampled_s`: when the live queue was really read (the simulator
    // reads its own at `t_s`).
    let mut out = String::from("t_s\tlive_sampled_s");
    for side in ["live", "sim"] {
        for c in cols {
            let _ = write!(out, "\t{side}_{c}");
        }
    }
    out.push('\n');
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    let cells = |t: Option<&Tick>| -> String {
        let Some(t) = t else {
            return "\t".repeat(cols.len());
        };
        let s = &t.signals;
        format!(
            "\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s.arrivals,
            s.backlog,
            s.in_flight,
            s.completions,
            s.completions_on_time,
            f(s.latency_mean_s),
            f(s.latency_max_s),
            f(s.service_mean_s),
            f(s.deadline_min_s),
            f(s.deadline_mean_s),
            s.replicas_ready,
            s.replicas_starting,
            t.desired
        )
    };
    for i in 0..live.len().max(sim.len()) {
        let (l, s) = (live.get(i), sim.get(i));
        let t = l.or(s).map_or(0.0, |t| t.t_s);
        let sampled = f(l.and_then(|t| t.sampled_s.or(Some(t.t_s))));
        let _ = writeln!(out, "{t:.1}\t{sampled}{}{}", cells(l), cells(s));
    }
    out
}

/// One policy, live and simulated.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The policy as given.
    pub policy: String,
    /// `ok`, `skipped: ...` or `failed: ...`.
    pub status: String,
    /// The live run.
    pub live: Option<LiveSide>,
    /// The simulated run.
    pub sim: Option<RunMetrics>,
    /// Live QoS minus simulated QoS, percentage points.
    pub qos_diff_pts: Option<f64>,
    /// Live replica-seconds relative to the simulator's, percent.
    pub replica_s_diff_pct: Option<f64>,
    /// Both differences within the targets.
    pub within_target: Option<bool>,
    /// The simulated run replaying the live start-up delays.
    pub sim_replay: Option<RunMetrics>,
    /// How the replay used the live delays.
    pub replay: Option<ReplayInfo>,
    /// Live QoS minus `sim-replay` QoS, percentage points.
    pub replay_qos_diff_pts: Option<f64>,
    /// Live replica-seconds relative to `sim-replay`'s, percent.
    pub replay_replica_s_diff_pct: Option<f64>,
    /// Both `sim-replay` differences within the targets.
    pub replay_within_target: Option<bool>,
}

impl Row {
    /// A policy with `status` and no runs (yet).
    fn no_runs(policy: String, status: String) -> Row {
        Row {
            policy,
            status,
            live: None,
            sim: None,
            qos_diff_pts: None,
            replica_s_diff_pct: None,
            within_target: None,
            sim_replay: None,
            replay: None,
            replay_qos_diff_pts: None,
            replay_replica_s_diff_pct: None,
            replay_within_target: None,
        }
    }
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Workload seed.
    pub seed: u64,
    /// Time compression of the live runs.
    pub speedup: f64,
    /// Tasks in the workload.
    pub tasks: usize,
    /// The provider's start-delay emulation (wall clock).
    pub start_delay_emulation: String,
    /// The live platform figures used.
    pub calibration: Measured,
    /// The simulator's platform (scenario seconds).
    pub sim_platform: Platform,
    /// Targets: QoS points and replica-seconds fraction.
    pub tolerance: (f64, f64),
    /// Who ran the policies live.
    pub driver: Driver,
    /// One per policy.
    pub rows: Vec<Row>,
}

fn fidelity(live: &RunMetrics, sim: &RunMetrics) -> (f64, f64, bool) {
    let dq = (live.qos - sim.qos) * 100.0;
    let dr = if sim.replica_seconds > 0.0 {
        (live.replica_seconds / sim.replica_seconds - 1.0) * 100.0
    } else {
        f64::NAN
    };
    let ok = dq.abs() <= QOS_TOLERANCE_PTS && dr.abs() <= REPLICA_S_TOLERANCE * 100.0;
    (dq, dr, ok)
}

/// The comparison table: one line per policy, `live / sim / sim-replay`
/// in each cell (`sim`: independent start-up delay draws; `sim-replay`:
/// the live run's delays replayed, `-` when they could not be read), and
/// the live-minus-simulated differences against each.
pub fn table(rows: &[Row]) -> String {
    let head = [
        "policy",
        "QoS % live/sim/sim-replay",
        "p50 s",
        "p99 s",
        "replica-s",
        "mean rep",
        "max rep",
        "actions",
        "reversals",
        "lost",
        "dQoS pts sim",
        "d rep-s % sim",
        "dQoS pts replay",
        "d rep-s % replay",
    ];
    let mut body: Vec<Vec<String>> = Vec::new();
    for r in rows {
        match (&r.live, &r.sim) {
            (Some(l), Some(s)) => {
                let m = &l.metrics;
                let rp = r.sim_replay.as_ref();
                let three = |f: fn(&RunMetrics) -> f64, d: usize| {
                    let third = rp.map_or("-".to_string(), |x| format!("{:.d$}", f(x)));
                    format!("{:.d$} / {:.d$} / {third}", f(m), f(s))
                };
                let count = |f: fn(&RunMetrics) -> u32| {
                    let third = rp.map_or("-".to_string(), |x| f(x).to_string());
                    format!("{} / {} / {third}", f(m), f(s))
                };
                let pts = |d: Option<f64>| d.map_or("-".into(), |d| format!("{d:+.2}"));
                let pct = |d: Option<f64>| d.map_or("-".into(), |d| format!("{d:+.1}"));
                body.push(vec![
                    r.policy.clone(),
                    three(|x| x.qos * 100.0, 2),
                    three(|x| x.latency_p50_s, 2),
                    three(|x| x.latency_p99_s, 2),
                    three(|x| x.replica_seconds, 0),
                    three(|x| x.mean_replicas, 2),
                    count(|x| x.max_replicas),
                    count(|x| x.scaling_actions),
                    count(|x| x.reversals),
                    l.accounting.lost.to_string(),
                    pts(r.qos_diff_pts),
                    pct(r.replica_s_diff_pct),
                    pts(r.replay_qos_diff_pts),
                    pct(r.replay_replica_s_diff_pct),
                ]);
            }
            _ => {
                let mut v = vec![r.policy.clone(), r.status.clone()];
                v.resize(head.len(), String::new());
                body.push(v);
            }
        }
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            body.iter()
                .filter(|b| b.len() == head.len() && !b[2].is_empty())
                .map(|b| b[i].chars().count())
                .chain([head[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(l, "{c:<w$}", w = widths[0]);
            } else {
                let _ = write!(l, "  {c:>w$}", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(&head.map(String::from), &mut out);
    for b in &body {
        if b[2].is_empty() {
            let _ = writeln!(out, "{:<w$}  {}", b[0], b[1], w = widths[0]);
        } else {
            line(b, &mut out);
        }
    }
    out
}

/// One PNG, one panel per policy: replicas over scenario time, live and
/// simulated.
fn timelines(path: &Path, title: &str, rows: &[Row]) -> Result<()> {
    plot::ensure_font()?;
    let shown: Vec<(&Row, &LiveSide, &RunMetrics)> = rows
        .iter()
        .filter_map(|r| Some((r, r.live.as_ref()?, r.sim.as_ref()?)))
        .collect();
    if shown.is_empty() {
        bail!("no policy ran both live and simulated");
    }
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let h = 60 + 260 * u32::try_from(shown.len()).unwrap_or(1);
    let root = BitMapBackend::new(path, (1100, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 24))
        .map_err(|e| err(&e))?;
    let panels = root.split_evenly((shown.len(), 1));
    let orange = RGBColor(255, 140, 0);
    for ((row, live, sim), panel) in shown.iter().zip(&panels) {
        let lt = &live.metrics.timeline;
        let st = &sim.timeline;
        let t_max = live
            .metrics
            .end_s
            .max(sim.end_s)
            .max(row.sim_replay.as_ref().map_or(0.0, |m| m.end_s))
            .max(lt.last().map_or(0.0, |p| p.t_s))
            .max(1.0);
        let y_max = lt
            .iter()
            .chain(st)
            .chain(row.sim_replay.iter().flat_map(|m| &m.timeline))
            .map(|p| p.alive.max(p.desired))
            .max()
            .unwrap_or(1)
            .max(1);
        let steps = |tl: &[farm_sim::TimelinePoint], f: fn(&farm_sim::TimelinePoint) -> u32| {
            let mut v = Vec::with_capacity(tl.len() * 2);
            for (i, p) in tl.iter().enumerate() {
                let next = tl.get(i + 1).map_or(t_max, |q| q.t_s);
                v.push((p.t_s, f64::from(f(p))));
                v.push((next, f64::from(f(p))));
            }
            v
        };
        let rt: &[farm_sim::TimelinePoint] = row.sim_replay.as_ref().map_or(&[], |m| &m.timeline);
        let replay_caption = row.sim_replay.as_ref().map_or(String::new(), |m| {
            format!(
                "; sim-replay {:.1} %, {:.0} replica-s",
                m.qos * 100.0,
                m.replica_seconds
            )
        });
        let caption = format!(
            "{}: QoS live {:.1} % / sim {:.1} %, replica-s {:.0} / {:.0}{replay_caption}",
            row.policy,
            live.metrics.qos * 100.0,
            sim.qos * 100.0,
            live.metrics.replica_seconds,
            sim.replica_seconds
        );
        let mut c = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..t_max, 0f64..f64::from(y_max) * 1.15)
            .map_err(|e| err(&e))?;
        c.configure_mesh()
            .x_desc("scenario time (s)")
            .y_desc("replicas")
            .draw()
            .map_err(|e| err(&e))?;
        let mut series: Vec<plot::Line> = vec![
            ("live existing", RED, 4, steps(lt, |p| p.alive)),
            ("sim existing", orange, 2, steps(st, |p| p.alive)),
            ("live desired", BLUE, 1, steps(lt, |p| p.desired)),
            ("sim desired", CYAN, 1, steps(st, |p| p.desired)),
        ];
        if !rt.is_empty() {
            series.push(("sim-replay existing", GREEN, 2, steps(rt, |p| p.alive)));
        }
        plot::draw_lines(&mut c, series, 12).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

// ---------------------------------------------------------------- run

/// Brings a farm down when dropped (also on errors half-way).
struct Down(Option<PathBuf>);

impl Down {
    fn now(mut self) -> Result<()> {
        match self.0.take() {
            Some(state) => local::down(DownArgs { state, timeout: 60 }),
            None => Ok(()),
        }
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        if let Some(state) = self.0.take()
            && let Err(e) = local::down(DownArgs { state, timeout: 60 })
        {
            eprintln!("farmctl compare: bringing the farm down: {e:#}");
        }
    }
}

struct Ctx<'a> {
    a: &'a CompareArgs,
    scenario: &'a Scenario,
    workload: &'a Workload,
    seed: u64,
    state: PathBuf,
    emulation: String,
}

/// A live run and, with gateway-ext driving, the policies it reported.
struct LiveRun {
    live: run::Live,
    decided_by: Vec<String>,
    /// The worker's replica starts from the provider (`None` when it
    /// could not say: a provider without the route).
    starts: Option<Vec<farm_local::ReplicaStart>>,
}

/// The provider's record of the worker's replica starts.
async fn provider_starts(provider: &str, worker: &str) -> Result<Vec<farm_local::ReplicaStart>> {
    reqwest::Client::new()
        .get(format!("{provider}/system/function/{worker}/starts"))
        .send()
        .await
        .context("asking the provider for its replica starts")?
        .error_for_status()?
        .json()
        .await
        .context("the provider's replica starts")
}

/// One of gateway-ext's decision records, as `GET
/// /system/autoscaler/decisions` serves it (the fields the report uses).
#[derive(Debug, Deserialize)]
struct GatewayDecision {
    at_us: i64,
    signals: Signals,
    desired: u32,
    policy: String,
    trigger: String,
}

/// gateway-ext's tick decisions for `farm` since `t0_us`, as report ticks
/// on the scenario clock (speedup `k`), and the policies that made them.
async fn gateway_ticks(
    url: &str,
    farm: &str,
    t0_us: i64,
    k: f64,
) -> Result<(Vec<Tick>, Vec<String>)> {
    let all: std::collections::BTreeMap<String, Vec<GatewayDecision>> = reqwest::Client::new()
        .get(format!("{url}/system/autoscaler/decisions"))
        .send()
        .await
        .context("asking gateway-ext for its decisions")?
        .error_for_status()?
        .json()
        .await
        .context("gateway-ext's decisions")?;
    let records = all.get(farm).map(Vec::as_slice).unwrap_or_default();
    let mut decided_by: Vec<String> = Vec::new();
    let ticks: Vec<Tick> = records
        .iter()
        .filter(|d| d.trigger == "tick" && d.at_us >= t0_us)
        .map(|d| {
            if !decided_by.contains(&d.policy) {
                decided_by.push(d.policy.clone());
            }
            Tick {
                t_s: (d.at_us - t0_us) as f64 / 1e6 * k,
                signals: d.signals.clone(),
                desired: d.desired,
                sampled_s: None,
            }
        })
        .collect();
    if ticks.is_empty() {
        bail!("gateway-ext made no decision for farm {farm} during the run");
    }
    Ok((ticks, decided_by))
}

/// `spec` with an `onnx:` path made absolute: gateway-ext resolves it
/// from its own working directory.
fn absolute_spec(spec: &str) -> Result<String> {
    Ok(match spec.strip_prefix("onnx:") {
        Some(path) => format!("onnx:{}", std::path::absolute(path)?.display()),
        None => spec.to_string(),
    })
}

/// One live run on a fresh farm.
fn live_once(c: &Ctx<'_>, policy_spec: &str, build: bool) -> Result<LiveRun> {
    let a = c.a;
    // Armed before `up`: a half-started farm (a deploy that failed) is
    // brought down too.
    let guard = Down(Some(c.state.clone()));
    local::up(UpArgs {
        file: a.file.clone(),
        state: c.state.clone(),
        nats_port: 0,
        nats_cluster: 1,
        provider_port: 0,
        gateway_port: 0,
        gateway_ext: match a.driver {
            Driver::Farmctl => GatewayMode::Off,
            Driver::GatewayExt => GatewayMode::On,
        },
        cargo_profile: a.cargo_profile.clone(),
        no_build: !build,
        timeout: 120,
        start_delay: c.emulation.clone(),
        start_delay_seed: Some(c.seed),
        startup_probe_ms: local::FINE_STARTUP_PROBE_MS,
    })?;
    let st = FarmState::load(&c.state)?;
    let stack = Stack::load(&st.stack_file)?;
    let farm = stack.farm(None)?;
    let pol = make_policy(policy_spec, &c.scenario.platform)?;
    let run_args = RunArgs {
        scenario: a.scenario.clone(),
        speedup: a.speedup,
        policy: Some(policy_spec.to_string()),
        seed: Some(c.seed),
        state: c.state.clone(),
        farm: None,
        out: a.out.join("unused"),
        drain_timeout: a.drain_timeout,
        slice_ms: 25,
        live_signals: a.live_signals,
        // Applied to the scenario `drive` is given.
        interval: None,
        events: a.events,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let driven_spec = match a.driver {
        Driver::Farmctl => policy_spec.to_string(),
        Driver::GatewayExt => absolute_spec(policy_spec)?,
    };
    let live = rt.block_on(async {
        let mut live = run::drive(
            &run_args,
            &st,
            &stack,
            &farm,
            c.scenario,
            c.workload,
            &driven_spec,
            pol,
        )
        .await?;
        let mut decided_by = Vec::new();
        if a.driver == Driver::GatewayExt {
            let url = st
                .gateway_ext
                .as_ref()
                .map(|g| g.url.clone())
                .ok_or_else(|| anyhow!("gateway-ext is not running"))?;
            // Read before the farm goes down: the decisions live in gateway-ext.
            let (ticks, by) = gateway_ticks(&url, &farm.name, live.t0_us, a.speedup).await?;
            live.ticks = ticks;
            decided_by = by;
        }
        // Read before the farm goes down: the records live in the provider.
        let starts = match provider_starts(&st.provider_url, &farm.worker).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("farmctl compare: no live start-up delays, sim-replay skipped: {e:#}");
                None
            }
        };
        Ok::<_, anyhow::Error>(LiveRun {
            live,
            decided_by,
            starts,
        })
    });
    drop(rt);
    guard.now()?;
    live
}

/// Run `farmctl compare`.
pub fn run(a: CompareArgs) -> Result<()> {
    log_to_stderr();
    check_speedup(a.speedup)?;
    if a.policies.is_empty() {
        bail!("--policies is empty");
    }
    let scenario = with_interval(load_scenario(&a.scenario)?, a.interval)?;
    let seed = a.seed.unwrap_or(scenario.seed);
    let workload = scenario.generate(seed);
    if workload.tasks.is_empty() {
        bail!(
            "scenario {} generates no task for seed {seed}",
            scenario.name
        );
    }
    let measured = load_calibration(a.calibration.as_deref())?;
    let stack = Stack::load(&std::path::absolute(&a.file)?)?;
    let farm = stack.farm(None)?;
    let (smin, smax) = stack.scale_bounds(&farm.worker);
    let bounds = (
        scenario.platform.min_replicas.max(smin),
        scenario.platform.max_replicas.min(smax),
    );
    let k = a.speedup;
    let (emulation, _) = start_emulation(&scenario.platform.startup_delay, k);
    let (sim_platform, sim_workload) =
        calibrated(&scenario.platform, &workload, &measured, k, bounds);

    // Unusable policies: a typo is an error, a model not trained yet is skipped.
    let mut usable: Vec<(String, Option<String>)> = Vec::new();
    for p in &a.policies {
        match make_policy(p, &scenario.platform) {
            Ok(_) => usable.push((p.clone(), None)),
            Err(PolicySpecError::ModelMissing(path)) => {
                let why = format!("skipped: model {} not found", path.display());
                println!("{p}: {why}");
                usable.push((p.clone(), Some(why)));
            }
            Err(e) => return Err(anyhow!(e).context(format!("policy `{p}`"))),
        }
    }

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let out = std::path::absolute(&a.out)?;
    let ctx = Ctx {
        a: &a,
        scenario: &scenario,
        workload: &workload,
        seed,
        state: out.join("farm"),
        emulation: emulation.clone(),
    };
    println!(
        "compare {} (seed {seed}, {} tasks) at x{k}, live policy run by {}: provider start-delay emulation {emulation}; live figures from {}",
        scenario.name,
        workload.tasks.len(),
        a.driver.label(),
        measured.source
    );
    let mut rows = Vec::new();
    let mut built = a.no_build;
    for (p, skip) in usable {
        if let Some(why) = skip {
            rows.push(Row::no_runs(p, why));
            continue;
        }
        println!("--- {p}: live");
        let live = live_once(&ctx, &p, !built);
        built = true;
        let mut pol = make_policy(&p, &sim_platform)?;
        // The live run stops `--drain-timeout` (wall) after the arrival
        // window; the simulated one at the same scenario time.
        let (sim, sim_ticks) = simulate_recorded(
            &sim_workload,
            &sim_platform,
            seed,
            pol.as_mut(),
            a.drain_timeout.max(0.0) * k,
            a.events.0,
        )?;
        let row = match live {
            Ok(l) => {
                let (dq, dr, ok) = fidelity(&l.live.metrics, &sim);
                let tsv = out.join(format!("ticks-{}.tsv", file_safe(&p)));
                std::fs::write(&tsv, ticks_side_by_side(&l.live.ticks, &sim_ticks))
                    .with_context(|| format!("writing {}", tsv.display()))?;
                let mut replayed = None;
                if let Some(starts) = &l.starts {
                    let services = &l.live.services;
                    let healthy = live_startup_delays(starts, l.live.t0_us, k, measured.start_s);
                    let delays =
                        live_serving_delays(starts, services, l.live.t0_us, k, measured.start_s);
                    // How long each task held its replica live, where the
                    // run measured it; the calibrated model elsewhere.
                    let gap = dispatch_gap_s(services);
                    let replay_workload = live_service_workload(
                        &workload,
                        services,
                        k,
                        gap.unwrap_or(measured.task_overhead_s),
                        measured.task_overhead_s,
                    );
                    let occupancy = |w: &Workload| {
                        services
                            .iter()
                            .filter_map(|r| w.tasks.get(r.index).map(|t| t.service_s))
                            .sum::<f64>()
                            / services.len().max(1) as f64
                    };
                    let (occupancy_live_s, occupancy_model_s) =
                        (occupancy(&replay_workload), occupancy(&sim_workload));
                    let seq =
                        DelaySequence::new(delays.clone(), sim_platform.startup_delay.clone())
                            .context("the live start-up delays")?;
                    let mut pol = make_policy(&p, &sim_platform)?;
                    let (m, ticks, seq) = simulate_replayed(
                        &replay_workload,
                        &sim_platform,
                        seed,
                        pol.as_mut(),
                        a.drain_timeout.max(0.0) * k,
                        a.events.0,
                        seq,
                    )?;
                    let tsv = out.join(format!("ticks-{}-replay.tsv", file_safe(&p)));
                    std::fs::write(&tsv, ticks_side_by_side(&l.live.ticks, &ticks))
                        .with_context(|| format!("writing {}", tsv.display()))?;
                    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
                    println!(
                        "{p}: sim-replay: {} live start-up delays (mean {:.2} s scenario to serving, {:.2} s to healthy), {} replayed, {} drawn after they ran out; per task held its replica {occupancy_live_s:.3} s live against {occupancy_model_s:.3} s modelled ({} tasks, dispatch gap median {} ms real)",
                        delays.len(),
                        mean(&delays),
                        mean(&healthy),
                        seq.replayed(),
                        seq.fallbacks(),
                        services.len(),
                        gap.map_or("-".into(), |g| format!("{:.2}", g * 1e3)),
                    );
                    replayed = Some((
                        m,
                        ReplayInfo {
                            live_delays_s: delays,
                            healthy_delays_s: healthy,
                            dispatch_gap_s: gap,
                            occupancy_live_s,
                            occupancy_model_s,
                            replayed: seq.replayed(),
                            fallbacks: seq.fallbacks(),
                        },
                    ));
                }
                let rd = replayed.as_ref().map(|(m, _)| fidelity(&l.live.metrics, m));
                let (sim_replay, replay) = replayed.unzip();
                Row {
                    policy: p,
                    status: "ok".into(),
                    live: Some(LiveSide {
                        accounting: l.live.accounting,
                        metrics: l.live.metrics,
                        ticks: l.live.ticks,
                        driver: a.driver.label().into(),
                        decided_by: l.decided_by,
                    }),
                    sim: Some(sim),
                    qos_diff_pts: Some(dq),
                    replica_s_diff_pct: Some(dr),
                    within_target: Some(ok),
                    sim_replay,
                    replay,
                    replay_qos_diff_pts: rd.map(|r| r.0),
                    replay_replica_s_diff_pct: rd.map(|r| r.1),
                    replay_within_target: rd.map(|r| r.2),
                }
            }
            Err(e) => {
                eprintln!("farmctl compare: {p}: {e:#}");
                let status = format!("failed: {}", format!("{e:#}").lines().next().unwrap_or(""));
                Row {
                    sim: Some(sim),
                    ..Row::no_runs(p, status)
                }
            }
        };
        rows.push(row);
    }

    println!(
        "\n{} / seed {seed} / live x{k} vs simulated: sim = independent start-up delay draws, sim-replay = the live run's delays replayed (figures in scenario seconds; target |dQoS| <= {QOS_TOLERANCE_PTS} pts, |d rep-s| <= {:.0} %)",
        scenario.name,
        REPLICA_S_TOLERANCE * 100.0
    );
    print!("{}", table(&rows));
    let report = Report {
        scenario: scenario.name.clone(),
        seed,
        speedup: k,
        tasks: workload.tasks.len(),
        start_delay_emulation: emulation,
        calibration: measured,
        sim_platform,
        tolerance: (QOS_TOLERANCE_PTS, REPLICA_S_TOLERANCE),
        driver: a.driver,
        rows,
    };
    let json = out.join("compare.json");
    write_json(&json, &report)?;
    println!("json: {}", json.display());
    let png = out.join("compare.png");
    let title = format!("{} / seed {seed} / live x{k} vs simulated", scenario.name);
    match timelines(&png, &title, &report.rows) {
        Ok(()) => println!("plot: {}", png.display()),
        Err(e) => println!("plot not written: {e:#}"),
    }
    let lost: u64 = report
        .rows
        .iter()
        .filter_map(|r| r.live.as_ref())
        .map(|l| l.accounting.lost)
        .sum();
    if lost > 0 {
        bail!("{lost} tasks were lost in the live runs");
    }
    let failed: Vec<&str> = report
        .rows
        .iter()
        .filter(|r| r.status.starts_with("failed"))
        .map(|r| r.policy.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("live runs failed for: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(qos: f64, replica_seconds: f64) -> RunMetrics {
        RunMetrics {
            tasks: 0,
            completed: 0,
            shed: 0,
            unfinished: 0,
            on_time: 0,
            qos,
            latency_p50_s: 0.0,
            latency_p95_s: 0.0,
            latency_p99_s: 0.0,
            replica_seconds,
            mean_replicas: 0.0,
            max_replicas: 0,
            scaling_actions: 0,
            reversals: 0,
            drain_time_s: 0.0,
            end_s: 0.0,
            redeliveries: 0,
            failures: 0,
            events: 0,
            early_decisions: 0,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn start_emulation_compresses_the_scenario_delay() {
        let (s, d) = start_emulation(&Dist::Uniform { min: 5.0, max: 9.0 }, 4.0);
        assert_eq!(s, "uniform:1.25,2.25");
        assert_eq!(d, Dist::Uniform { min: 5.0, max: 9.0 });
        assert!(farm_local::StartDelay::parse(&s).is_ok());
        let (s, d) = start_emulation(&Dist::Exponential { mean: 2.0 }, 2.0);
        assert_eq!((s.as_str(), d), ("fixed:1", Dist::Constant(2.0)));
    }

    #[test]
    fn calibration_adds_live_overheads_in_scenario_seconds() {
        let s = Scenario::builtin("steady").unwrap();
        let w = s.generate(1);
        let m = Measured {
            start_s: 0.1,
            drain_s: 0.05,
            scale_call_s: 0.001,
            task_overhead_s: 0.01,
            source: String::new(),
        };
        let (p, w2) = calibrated(&s.platform, &w, &m, 4.0, (1, 16));
        assert_eq!(p.scale_down_delay, Dist::Constant(0.2));
        assert!((p.scale_api_latency_s - 0.004).abs() < 1e-12);
        assert_eq!(p.startup_delay, shift(&s.platform.startup_delay, 0.4));
        assert_eq!(p.max_replicas, 16);
        assert_eq!(w2.tasks.len(), w.tasks.len());
        assert!((w2.tasks[0].service_s - w.tasks[0].service_s - 0.04).abs() < 1e-12);
        assert_eq!(w2.tasks[0].deadline_s, w.tasks[0].deadline_s);
    }

    #[test]
    fn fidelity_flags_large_differences() {
        let m = metrics;
        let (dq, dr, ok) = fidelity(&m(0.95, 105.0), &m(0.97, 100.0));
        assert!((dq + 2.0).abs() < 1e-9 && (dr - 5.0).abs() < 1e-9 && ok);
        assert!(!fidelity(&m(0.90, 100.0), &m(0.97, 100.0)).2);
        assert!(!fidelity(&m(0.97, 120.0), &m(0.97, 100.0)).2);
    }

    #[test]
    fn the_table_has_one_line_per_policy() {
        let skipped = Row::no_runs(
            "onnx:x.onnx".into(),
            "skipped: model x.onnx not found".into(),
        );
        let ok = Row {
            policy: "queueing".into(),
            status: "ok".into(),
            live: Some(LiveSide {
                accounting: Accounting::default(),
                metrics: metrics(0.9, 0.0),
                ticks: Vec::new(),
                driver: "farmctl".into(),
                decided_by: Vec::new(),
            }),
            sim: Some(metrics(0.92, 0.0)),
            qos_diff_pts: Some(-2.0),
            replica_s_diff_pct: Some(1.0),
            within_target: Some(true),
            sim_replay: None,
            replay: None,
            replay_qos_diff_pts: None,
            replay_replica_s_diff_pct: None,
            replay_within_target: None,
        };
        let replayed = Row {
            policy: "keda".into(),
            sim_replay: Some(metrics(0.89, 0.0)),
            replay_qos_diff_pts: Some(1.0),
            replay_replica_s_diff_pct: Some(-0.5),
            replay_within_target: Some(true),
            ..ok.clone()
        };
        let t = table(&[ok, replayed, skipped]);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.contains("live/sim/sim-replay"), "{t}");
        assert!(
            t.contains("90.00 / 92.00 / -") && t.contains("skipped"),
            "{t}"
        );
        assert!(t.contains("90.00 / 92.00 / 89.00"), "{t}");
        assert!(t.contains("+1.00") && t.contains("-0.5"), "{t}");
    }

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

    #[test]
    fn ticks_file_shows_when_the_live_queue_was_read() {
        let tick = |t_s: f64, sampled_s: Option<f64>| Tick {
            t_s,
            signals: Signals::default(),
            desired: 1,
            sampled_s,
        };
        let text = ticks_side_by_side(&[tick(8.0, Some(8.04))], &[tick(8.0, None)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("t_s\tlive_sampled_s\tlive_arr"),
            "{text}"
        );
        assert!(lines[1].starts_with("8.0\t8.04\t"), "{text}");
        let cols = |l: &str| l.split('\t').count();
        assert_eq!(cols(lines[0]), cols(lines[1]), "{text}");
    }

    #[test]
    fn replaying_the_simulator_s_own_draws_reproduces_its_run() {
        // A replay of delays equal to the platform's constant must give the
        // run the plain simulator gives, and different delays a different one.
        // paper-4phase starts at one replica and must scale up.
        let s = Scenario::builtin("paper-4phase").unwrap();
        let w = s.generate(3);
        let mut p = s.platform.clone();
        p.startup_delay = Dist::Constant(6.0);
        let mut pol = make_policy("queueing", &p).unwrap();
        let (plain, _) = simulate_recorded(&w, &p, 3, pol.as_mut(), 60.0, None).unwrap();
        let seq = DelaySequence::new(vec![6.0; 4], Dist::Constant(6.0)).unwrap();
        let (same, _, seq) = simulate_replayed(&w, &p, 3, pol.as_mut(), 60.0, None, seq).unwrap();
        assert_eq!(plain.qos, same.qos);
        assert_eq!(plain.replica_seconds, same.replica_seconds);
        // The fallback only after every value was used.
        assert!(seq.fallbacks() == 0 || seq.replayed() == 4, "{seq:?}");
        assert!(seq.replayed() > 0, "the run started no replica");
        let slow = DelaySequence::new(vec![60.0; 64], Dist::Constant(60.0)).unwrap();
        let (other, _, _) = simulate_replayed(&w, &p, 3, pol.as_mut(), 60.0, None, slow).unwrap();
        assert_ne!(
            (plain.qos, plain.replica_seconds),
            (other.qos, other.replica_seconds)
        );
    }
}
