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
//!    development machine ([`crate::calibrate::Measured::default`]); real seconds are
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
//! seconds after the arrival window, as the live one does, and shed tasks
//! already past their deadline when the stack's worker does
//! (`FARM_SHED_EXPIRED` in its `environment`).
//!
//! Policies are built-in names (`farm_policy::builtin_names`) or
//! `onnx:<model.onnx>`; ONNX Runtime is found through `ORT_DYLIB_PATH`, else
//! in the repository's `.venv` ([`crate::shared::policy::ort_library`]). A missing model file is
//! skipped with a message, not an error, so the default policy list works
//! before a model has been trained.

mod live;
mod replay;
mod report;
mod sim;

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use farm_model::scenario::{DelaySequence, Workload};
use farm_sim::SimOptions;
use serde::Serialize;

use self::live::{Ctx, live_once};
use self::replay::{
    dispatch_gap_s, live_service_workload, live_serving_delays, live_startup_delays,
};
use self::report::{
    LiveSide, QOS_TOLERANCE_PTS, REPLICA_S_TOLERANCE, ReplayInfo, Report, Row, fidelity, table,
    ticks_side_by_side, timelines,
};
use self::sim::{calibrated, simulate_recorded, simulate_replayed, start_emulation};
use crate::calibrate::load_calibration;
use crate::run::LiveSignals;
use crate::shared::logging::log_to_stderr;
use crate::shared::output::{file_safe, write_json};
use crate::shared::policy::{PolicySpecError, make_policy};
use crate::shared::scenario::{Events, check_speedup, load_scenario, parse_events, with_interval};
use crate::shared::stack::Stack;

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
    // What the live run does, the simulated one does: it stops
    // `--drain-timeout` (wall) after the arrival window, decides early on
    // the same backlog jumps, and sheds expired tasks if the stack's worker
    // does (`FARM_SHED_EXPIRED` in its environment).
    let sim_opts = SimOptions {
        max_drain_s: a.drain_timeout.max(0.0) * k,
        events: a.events.0,
        shed_expired: stack.sheds_expired(&farm.worker)?,
        ..SimOptions::default()
    };

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
        let (sim, sim_ticks) =
            simulate_recorded(&sim_workload, &sim_platform, seed, pol.as_mut(), &sim_opts)?;
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
                        &sim_opts,
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
