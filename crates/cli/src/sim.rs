//! `farmctl sim`: evaluate policies on scenarios in the simulator.
//!
//! - `farmctl sim scenarios` lists the built-in scenarios.
//! - `farmctl sim eval --scenario NAME|FILE --policy NAME [--seeds N]` runs
//!   one policy and prints one row per seed plus a summary.
//! - `farmctl sim compare --scenarios a,b --policies p,q [--seeds N]` prints
//!   the comparison table; `oracle` is a pseudo-policy (the achievable
//!   clairvoyant plan), and every row carries the ratio to the oracle's
//!   provable lower bound.
//!
//! A policy is a farm-policy built-in or `onnx:<model.onnx>` (run through
//! farm-policy's ONNX loader, as `farmctl compare` does).
//!
//! Seeds are `S..S+N` with `S = --seed` (default: the scenario's own seed).

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use farm_model::scenario::Scenario;
use farm_sim::oracle::{self, DEFAULT_TARGET_QOS};
use farm_sim::{SimOptions, simulate_workload};

use crate::shared::output::{file_safe, write_json};
use crate::shared::plot;
use crate::shared::policy::make_policy;
use crate::shared::scenario::{Events, load_scenario, parse_events, with_interval};
use crate::shared::summary::{Run, summarise, table};

/// `farmctl sim` arguments.
#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// List the built-in scenarios.
    Scenarios,
    /// Run one policy on one scenario over several seeds.
    Eval(EvalArgs),
    /// Compare policies (and the oracle) on scenarios.
    Compare(CompareArgs),
    /// Serve the FarmControl gRPC API over the simulator (for gym/).
    Serve(crate::serve::ServeArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Number of seeds.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// First seed (default: the scenario's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// QoS target of the oracle, as a fraction.
    #[arg(long, default_value_t = DEFAULT_TARGET_QOS)]
    target: f64,
    /// Shard functions the desired parallelism is spread over (per-function
    /// cap applies to each); 0 = as many as `max_replicas` needs under the
    /// cap, as gateway-ext spreads a farm.
    #[arg(long, default_value_t = 0)]
    shards: u32,
    /// Decide every this many seconds instead of the scenario's
    /// `control_interval_s` (the episode keeps its length in seconds).
    #[arg(long)]
    interval: Option<f64>,
    /// Signals over a sliding window of this many seconds (default: the
    /// interval since the previous decision).
    #[arg(long)]
    window: Option<f64>,
    /// Early decisions between ticks when the backlog jumps: `off`, `on`,
    /// or `share=X,jump=N,gap=S` (see gateway-ext's `CONTROL_EVENTS`).
    #[arg(long, default_value = "off", value_parser = parse_events)]
    events: Events,
    /// Drop tasks whose deadline passed before a replica starts them (the
    /// runtime's `FARM_SHED_EXPIRED`).
    #[arg(long)]
    shed_expired: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Built-in scenario name or YAML file.
    #[arg(long)]
    scenario: String,
    /// Policy name (`farmctl sim compare --help` lists them) or `oracle`.
    #[arg(long)]
    policy: String,
    /// Write a PNG timeline of the first seed.
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Comma-separated scenario names or files (default: all built-ins).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Comma-separated policies (default: every built-in and `oracle`).
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Write one PNG timeline (first seed) per scenario and policy into this directory.
    #[arg(long)]
    plot_dir: Option<PathBuf>,
    /// Markdown table instead of aligned text.
    #[arg(long)]
    markdown: bool,
    #[command(flatten)]
    common: Common,
}

/// Run `farmctl sim`.
pub fn run(args: SimArgs) -> Result<()> {
    match args.command {
        SimCommand::Scenarios => {
            for name in Scenario::builtin_names() {
                let s = Scenario::builtin(name)?;
                println!("{name:<16} {}", s.description);
            }
            Ok(())
        }
        SimCommand::Eval(a) => eval(a),
        SimCommand::Compare(a) => compare(a),
        SimCommand::Serve(a) => crate::serve::run(&a),
    }
}

/// The scenario with `--interval` applied: the same episode length in
/// seconds at the new decision interval. `--window` must be a positive
/// number of seconds.
fn with_cadence(scenario: Scenario, c: &Common) -> Result<Scenario> {
    if let Some(w) = c.window
        && !(w.is_finite() && w > 0.0)
    {
        bail!("--window: expected a positive number of seconds, got {w}");
    }
    with_interval(scenario, c.interval)
}

const ORACLE: &str = "oracle";

fn check_policy(name: &str, scenario: &Scenario) -> Result<()> {
    if name != ORACLE {
        make_policy(name, &scenario.platform)?;
    }
    Ok(())
}

fn run_one(
    scenario: &Scenario,
    policy_name: &str,
    seed: u64,
    c: &Common,
    bound_target: f64,
) -> Result<Run> {
    let workload = scenario.generate(seed);
    let opts = SimOptions {
        shards: c.shards,
        window_s: c.window,
        events: c.events.0,
        shed_expired: c.shed_expired,
        ..SimOptions::default()
    };
    let metrics = if policy_name == ORACLE {
        oracle::plan(&workload, &scenario.platform, seed, c.target, &opts)?.metrics
    } else {
        let mut p = make_policy(policy_name, &scenario.platform)?;
        simulate_workload(&workload, &scenario.platform, seed, p.as_mut(), &opts)?
    };
    let bound_at_qos =
        oracle::lower_bound_sharded(&workload, &scenario.platform, metrics.qos, c.shards)
            .replica_seconds;
    Ok(Run {
        seed,
        metrics,
        bound_target,
        bound_at_qos,
    })
}

fn seeds(scenario: &Scenario, c: &Common) -> Vec<u64> {
    let first = c.seed.unwrap_or(scenario.seed);
    (0..c.seeds).map(|i| first.wrapping_add(i)).collect()
}

/// Run `jobs` on up to `threads` scoped threads, keeping their order.
fn parallel<T: Send, F: Fn(usize) -> Result<T> + Sync>(
    n: usize,
    threads: Option<usize>,
    f: F,
) -> Result<Vec<T>> {
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, n.max(1));
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = f(i);
                    if let Ok(mut o) = out.lock() {
                        o[i] = Some(r);
                    }
                }
            });
        }
    });
    let out = out
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| bail!("a job did not run")))
        .collect()
}

fn eval(a: EvalArgs) -> Result<()> {
    let scenario = with_cadence(load_scenario(&a.scenario)?, &a.common)?;
    check_policy(&a.policy, &scenario)?;
    let c = &a.common;
    let seeds = seeds(&scenario, c);
    let runs = parallel(seeds.len(), c.threads, |i| {
        let w = scenario.generate(seeds[i]);
        let lb =
            oracle::lower_bound_sharded(&w, &scenario.platform, c.target, c.shards).replica_seconds;
        run_one(&scenario, &a.policy, seeds[i], c, lb)
    })?;
    println!(
        "{:>6} {:>8} {:>8} {:>11} {:>8} {:>9} {:>8} {:>8} {:>9} {:>10}",
        "seed",
        "QoS %",
        "p99 s",
        "replica-s",
        "/oracle",
        "mean rep",
        "max rep",
        "actions",
        "reversals",
        "unfinished"
    );
    for r in &runs {
        let m = &r.metrics;
        println!(
            "{:>6} {:>8.2} {:>8.2} {:>11.1} {:>8.2} {:>9.2} {:>8} {:>8} {:>9} {:>10}",
            r.seed,
            m.qos * 100.0,
            m.latency_p99_s,
            m.replica_seconds,
            m.replica_seconds / r.bound_target,
            m.mean_replicas,
            m.max_replicas,
            m.scaling_actions,
            m.reversals,
            m.unfinished
        );
    }
    if let (Some(path), Some(first)) = (&a.plot, runs.first()) {
        let title = format!("{} / {} / seed {}", scenario.name, a.policy, first.seed);
        plot::timeline(path, &title, &first.metrics)?;
        println!("plot: {}", path.display());
    }
    let row = summarise(&scenario.name, &a.policy, runs, c.target);
    print!("{}", table(std::slice::from_ref(&row), false));
    if let Some(path) = &c.json {
        write_json(path, &row)?;
    }
    Ok(())
}

fn compare(a: CompareArgs) -> Result<()> {
    let c = &a.common;
    let scenario_specs: Vec<String> = if a.scenarios.is_empty() {
        Scenario::builtin_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        a.scenarios.clone()
    };
    let policies: Vec<String> = if a.policies.is_empty() {
        farm_policy::builtin_names()
            .iter()
            .map(|s| s.to_string())
            .chain([ORACLE.to_string()])
            .collect()
    } else {
        a.policies.clone()
    };
    let scenarios: Vec<Scenario> = scenario_specs
        .iter()
        .map(|s| load_scenario(s).and_then(|sc| with_cadence(sc, &a.common)))
        .collect::<Result<_>>()?;
    for s in &scenarios {
        for p in &policies {
            check_policy(p, s)?;
        }
    }
    // One job per (scenario, seed): the bound is shared by its policies.
    let jobs: Vec<(usize, u64)> = scenarios
        .iter()
        .enumerate()
        .flat_map(|(i, s)| seeds(s, c).into_iter().map(move |seed| (i, seed)))
        .collect();
    let results = parallel(jobs.len(), c.threads, |j| {
        let (si, seed) = jobs[j];
        let s = &scenarios[si];
        let w = s.generate(seed);
        let lb = oracle::lower_bound_sharded(&w, &s.platform, c.target, c.shards).replica_seconds;
        policies
            .iter()
            .map(|p| run_one(s, p, seed, c, lb))
            .collect::<Result<Vec<Run>>>()
    })?;
    let mut rows = Vec::new();
    for (si, s) in scenarios.iter().enumerate() {
        for (pi, p) in policies.iter().enumerate() {
            let runs: Vec<Run> = jobs
                .iter()
                .zip(&results)
                .filter(|((i, _), _)| *i == si)
                .map(|(_, r)| r[pi].clone())
                .collect();
            if let (Some(dir), Some(first)) = (&a.plot_dir, runs.first()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                // `onnx:<path>` names hold separators: one file name per policy.
                let path = dir.join(format!("{}-{}.png", s.name, file_safe(p)));
                plot::timeline(
                    &path,
                    &format!("{} / {} / seed {}", s.name, p, first.seed),
                    &first.metrics,
                )?;
            }
            rows.push(summarise(&s.name, p, runs, c.target));
        }
    }
    print!("{}", table(&rows, a.markdown));
    if let Some(path) = &c.json {
        // The per-run timelines would dwarf the rest: keep them out.
        let mut slim = rows.clone();
        for r in &mut slim {
            for run in &mut r.runs {
                run.metrics.timeline.clear();
            }
        }
        write_json(path, &slim)?;
    }
    Ok(())
}
