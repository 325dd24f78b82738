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
//! A policy is a farm-model built-in or `onnx:<model.onnx>` (run through
//! gateway-ext's loader, as `farmctl compare` does).
//!
//! Seeds are `S..S+N` with `S = --seed` (default: the scenario's own seed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use farm_model::scenario::Scenario;
use farm_sim::oracle::{self, DEFAULT_TARGET_QOS};
use farm_sim::{RunMetrics, SimOptions, simulate_workload};
use serde::Serialize;

use crate::compare::{file_safe, make_policy};
use crate::plot;

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
    /// Shard functions the desired parallelism is spread over (per-function cap applies to each).
    #[arg(long, default_value_t = 1)]
    shards: u32,
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

pub(crate) fn load_scenario(spec: &str) -> Result<Scenario> {
    let path = Path::new(spec);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario file {spec}"))?;
        Scenario::from_yaml(&text).with_context(|| format!("scenario file {spec}"))
    } else {
        Scenario::builtin(spec)
            .with_context(|| format!("`{spec}` is neither a file nor a built-in scenario"))
    }
}

const ORACLE: &str = "oracle";

fn check_policy(name: &str, scenario: &Scenario) -> Result<()> {
    if name != ORACLE {
        make_policy(name, &scenario.platform)?;
    }
    Ok(())
}

/// One run of one policy on one seed, with the oracle bounds of that workload.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Run {
    pub(crate) seed: u64,
    pub(crate) metrics: RunMetrics,
    /// Oracle lower bound at the target QoS.
    pub(crate) bound_target: f64,
    /// Oracle lower bound at the QoS this run reached.
    pub(crate) bound_at_qos: f64,
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

/// Summary of a policy on a scenario over seeds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    scenario: String,
    policy: String,
    seeds: usize,
    qos_mean: f64,
    qos_sd: f64,
    seeds_meeting_target: usize,
    p99_s: f64,
    replica_seconds: f64,
    ratio_to_oracle_bound: f64,
    ratio_to_bound_at_own_qos: f64,
    mean_replicas: f64,
    max_replicas: f64,
    scaling_actions: f64,
    reversals: f64,
    unfinished: f64,
    runs: Vec<Run>,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { s / n as f64 }
}

pub(crate) fn summarise(scenario: &str, policy: &str, runs: Vec<Run>, target: f64) -> Row {
    let q: Vec<f64> = runs.iter().map(|r| r.metrics.qos).collect();
    let qm = mean(q.iter().copied());
    let sd = if q.len() > 1 {
        (q.iter().map(|x| (x - qm).powi(2)).sum::<f64>() / (q.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { f64::NAN };
    Row {
        scenario: scenario.to_string(),
        policy: policy.to_string(),
        seeds: runs.len(),
        qos_mean: qm,
        qos_sd: sd,
        seeds_meeting_target: runs
            .iter()
            .filter(|r| r.metrics.qos + 1e-12 >= target)
            .count(),
        p99_s: mean(runs.iter().map(|r| r.metrics.latency_p99_s)),
        replica_seconds: mean(runs.iter().map(|r| r.metrics.replica_seconds)),
        ratio_to_oracle_bound: mean(
            runs.iter()
                .map(|r| ratio(r.metrics.replica_seconds, r.bound_target)),
        ),
        ratio_to_bound_at_own_qos: mean(
            runs.iter()
                .map(|r| ratio(r.metrics.replica_seconds, r.bound_at_qos)),
        ),
        mean_replicas: mean(runs.iter().map(|r| r.metrics.mean_replicas)),
        max_replicas: mean(runs.iter().map(|r| f64::from(r.metrics.max_replicas))),
        scaling_actions: mean(runs.iter().map(|r| f64::from(r.metrics.scaling_actions))),
        reversals: mean(runs.iter().map(|r| f64::from(r.metrics.reversals))),
        unfinished: mean(runs.iter().map(|r| r.metrics.unfinished as f64)),
        runs,
    }
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
    let scenario = load_scenario(&a.scenario)?;
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
        .map(|s| load_scenario(s))
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

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn table(rows: &[Row], markdown: bool) -> String {
    let head = [
        "scenario",
        "policy",
        "QoS %",
        "met",
        "p99 s",
        "replica-s",
        "/oracle",
        "/bound@qos",
        "mean rep",
        "max rep",
        "actions",
        "reversals",
    ];
    let body: Vec<[String; 12]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                r.policy.clone(),
                format!("{:.2} ± {:.2}", r.qos_mean * 100.0, r.qos_sd * 100.0),
                format!("{}/{}", r.seeds_meeting_target, r.seeds),
                format!("{:.2}", r.p99_s),
                format!("{:.0}", r.replica_seconds),
                format!("{:.2}", r.ratio_to_oracle_bound),
                format!("{:.2}", r.ratio_to_bound_at_own_qos),
                format!("{:.2}", r.mean_replicas),
                format!("{:.1}", r.max_replicas),
                format!("{:.1}", r.scaling_actions),
                format!("{:.1}", r.reversals),
            ]
        })
        .collect();
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
        for b in &body {
            let _ = writeln!(out, "| {} |", b.join(" | "));
        }
        return out;
    }
    let mut width = head.map(|h| h.chars().count());
    for b in &body {
        for (w, cell) in width.iter_mut().zip(b) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&width).enumerate() {
            let pad = w - cell.chars().count();
            if i < 2 {
                let _ = write!(l, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(l, "{}{cell}  ", " ".repeat(pad));
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&head.map(String::from)));
    for b in &body {
        let _ = writeln!(out, "{}", line(b));
    }
    out
}
