//! `farmctl run`: replay a scenario on the local farm `farmctl up` started.
//!
//! - **Arrivals**: the scenario's tasks for the seed are posted to the
//!   emitter as NDJSON batches, each task at its own due time and never
//!   before it ([`replay::PostSchedule`]: a batch holds the tasks already due when
//!   the replay wakes), each task a sleep-worker payload `{"sleep_ms": S/K}`
//!   with deadline `D/K` and id `<run>-<index>`. Time is compressed by
//!   `--speedup K`: arrival times, service times and deadlines are divided
//!   by K; every figure reported is multiplied back, so the table reads in
//!   scenario seconds and compares with `farmctl sim eval`.
//! - **Scaling**: when gateway-ext runs, it owns the worker pool; farmctl
//!   sets the worker's `com.rust-farm.policy` / `interval` annotations and
//!   only observes. Otherwise farmctl runs the control loop itself: every
//!   `control_interval_s / K` it builds farm-model [`farm_model::signals::Signals`] with
//!   gateway-ext's [`farm_observe::SignalsBuilder`] (JetStream consumer info + the
//!   collector's `MetricsSnapshot` + the provider's replica counts), replaces
//!   their completion statistics with those of exactly the results collected
//!   since the previous tick ([`control::IntervalStats`], read from OUTPUT; the
//!   simulator's window; `--live-signals snapshot` keeps the collector's
//!   sliding window instead), rescales them to scenario time
//!   ([`farm_model::signals::Signals::time_scaled`]), asks the policy, clamps to the farm's bounds and
//!   calls the provider's scale API. Every tick (signals and decision) is
//!   kept for `farmctl compare`'s side-by-side view.
//! - **Accounting**: every task posted is looked up in the collector's
//!   OUTPUT stream (entries written after the run started): completed (`ok`),
//!   dead-lettered (`error` / `timeout`), unfinished (still queued or held by
//!   a worker when the drain timeout ends) and lost (none of these; must be 0).
//!   Latency and QoS come from the OUTPUT headers, measured on the JetStream
//!   server's clock.
//! - **Report**: the `farmctl sim eval` table, a JSON file and a PNG timeline
//!   (replicas, backlog, window QoS) drawn by the simulator's plot code.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use farm_model::scenario::{Scenario, Workload};
use farm_observe::{NatsObserver, SharedNats};
use farm_runtime::names::FarmNames;
use farm_sim::RunMetrics;
use farm_sim::oracle::{self, DEFAULT_TARGET_QOS};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::local::FarmState;
use crate::shared::logging::log_to_stderr;
use crate::shared::output::write_json;
use crate::shared::plot;
use crate::shared::policy::make_policy;
use crate::shared::scenario::{Events, check_speedup, load_scenario, parse_events, with_interval};
use crate::shared::stack::{Farm, Stack};
use crate::shared::summary::{self, Run, summarise, table};

mod accounting;
mod control;
mod gateway;
mod output;
mod replay;

pub use accounting::Accounting;
pub use control::Tick;
pub use output::ServiceRecord;

use accounting::{LiveInputs, live_metrics};
use control::{Bounds, ControlLoop, Measured};
use output::Collected;
use replay::Poster;

/// `farmctl run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Built-in scenario name or YAML file.
    #[arg(long)]
    pub scenario: String,
    /// Time compression: arrivals, service times and deadlines are divided by K.
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Built-in policy sizing the worker pool (default: the worker's
    /// `com.rust-farm.policy` annotation, else `reactive-average`).
    #[arg(long)]
    pub policy: Option<String>,
    /// Workload seed (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// State directory of the farm.
    #[arg(long, default_value = ".farm")]
    pub state: PathBuf,
    /// Farm to drive when the stack declares several.
    #[arg(long)]
    pub farm: Option<String>,
    /// Output prefix: writes `<out>.json` and `<out>.png`.
    #[arg(long, default_value = "farm-run")]
    pub out: PathBuf,
    /// After the last arrival, how long to wait for the farm to finish, seconds (wall clock).
    #[arg(long, default_value_t = 120.0)]
    pub drain_timeout: f64,
    /// Longest the replay sleeps between two looks at the clock,
    /// milliseconds (wall clock). Each task is posted at its own due time
    /// (never before it) whatever this is; it only sets how often the
    /// progress display updates during gaps between arrivals.
    #[arg(long, default_value_t = 25)]
    pub slice_ms: u64,
    /// Where farmctl's control loop takes the completion statistics of an
    /// interval from (ignored when gateway-ext controls the farm).
    #[arg(long, value_enum, default_value_t = LiveSignals::Interval)]
    pub live_signals: LiveSignals,
    /// Decide every this many scenario seconds instead of the scenario's
    /// `control_interval_s` (the episode keeps its length in seconds).
    #[arg(long)]
    pub interval: Option<f64>,
    /// Early decisions between ticks when the work queue's backlog jumps
    /// (`farmctl sim --events`; gateway-ext's `events` key when it
    /// controls the farm): `off`, `on` or `share=X,jump=N,gap=S`.
    #[arg(long, default_value = "off", value_parser = parse_events)]
    pub events: Events,
}

/// Where the live control loop takes completion statistics from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveSignals {
    /// Exactly the results collected since the previous tick (read from the
    /// collector's OUTPUT stream): count, on-time count, mean / max / p95
    /// latency, mean / p95 service time, min / mean deadline. The
    /// simulator's definition of a control interval's window.
    #[default]
    Interval,
    /// gateway-ext's view: totals' deltas for the counts, and the
    /// collector's sliding-window `MetricsSnapshot` (published every
    /// second; its median standing in for the mean latency, its p99 for
    /// the maximum; no mean deadline) for the statistics.
    Snapshot,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    scenario: &'a str,
    policy: &'a str,
    controller: &'a str,
    seed: u64,
    speedup: f64,
    accounting: &'a Accounting,
    summary: &'a summary::Row,
}

/// Run `farmctl run`.
pub fn run(a: RunArgs) -> Result<()> {
    log_to_stderr();
    check_speedup(a.speedup)?;
    if a.slice_ms == 0 {
        bail!("--slice-ms must be at least 1");
    }
    let st = FarmState::load(&std::path::absolute(&a.state)?)?;
    let stack = Stack::load(&st.stack_file)?;
    let farm = stack.farm(a.farm.as_deref())?;
    let scenario = with_interval(load_scenario(&a.scenario)?, a.interval)?;
    let policy_name = a
        .policy
        .clone()
        .or_else(|| {
            stack
                .function(&farm.worker)
                .ok()?
                .annotations
                .get("com.rust-farm.policy")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "reactive-average".to_string());
    // Fails early with the list of built-ins on a typo, or a clear ONNX error.
    let pol = make_policy(&policy_name, &scenario.platform)?;
    let seed = a.seed.unwrap_or(scenario.seed);
    let workload = scenario.generate(seed);
    if workload.tasks.is_empty() {
        bail!(
            "scenario {} generates no task for seed {seed}",
            scenario.name
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let live = rt.block_on(drive(
        &a,
        &st,
        &stack,
        &farm,
        &scenario,
        &workload,
        &policy_name,
        pol,
    ))?;

    let k = a.speedup;
    let acc = &live.accounting;
    println!(
        "tasks {}: accepted {}, completed {} ({} on time), dead-lettered {}, unfinished {}, lost {}",
        acc.tasks,
        acc.accepted,
        acc.completed,
        acc.on_time,
        acc.dead_lettered,
        acc.unfinished,
        acc.lost
    );
    let bound = oracle::lower_bound_sharded(&workload, &scenario.platform, DEFAULT_TARGET_QOS, 1)
        .replica_seconds;
    let bound_at_qos =
        oracle::lower_bound_sharded(&workload, &scenario.platform, live.metrics.qos, 1)
            .replica_seconds;
    let run = Run {
        seed,
        metrics: live.metrics.clone(),
        bound_target: bound,
        bound_at_qos,
    };
    let row = summarise(&scenario.name, &policy_name, vec![run], DEFAULT_TARGET_QOS);
    println!(
        "live run, {} controlled, speedup {k} (figures in scenario seconds):",
        live.controller
    );
    print!("{}", table(std::slice::from_ref(&row), false));
    let json_path = a.out.with_extension("json");
    let png_path = a.out.with_extension("png");
    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let report = Report {
        scenario: &scenario.name,
        policy: &policy_name,
        controller: live.controller,
        seed,
        speedup: k,
        accounting: acc,
        summary: &row,
    };
    write_json(&json_path, &report)?;
    println!("json: {}", json_path.display());
    let title = format!(
        "{} / {} / seed {seed} / live x{k}",
        scenario.name, policy_name
    );
    match plot::timeline(&png_path, &title, &live.metrics) {
        Ok(()) => println!("plot: {}", png_path.display()),
        Err(e) => println!("plot not written: {e:#}"),
    }
    if acc.lost > 0 {
        bail!(
            "{} accepted tasks were lost (neither in OUTPUT nor in the work queue)",
            acc.lost
        );
    }
    Ok(())
}

/// What a live run measured.
pub(crate) struct Live {
    /// The simulator's metrics, in scenario seconds.
    pub(crate) metrics: RunMetrics,
    /// Where every task ended.
    pub(crate) accounting: Accounting,
    /// Who sized the pool: `farmctl` or `gateway-ext`.
    pub(crate) controller: &'static str,
    /// Every control tick.
    pub(crate) ticks: Vec<Tick>,
    /// Wall clock (Unix µs) of the replay's start, scenario time 0.
    pub(crate) t0_us: i64,
    /// Every task completed successfully (first result only), in the
    /// order the results arrived.
    pub(crate) services: Vec<ServiceRecord>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A short id for this run's tasks, unique enough within JetStream's
/// de-duplication window.
fn run_id() -> String {
    format!("r{:x}", farm_runtime::worker::now_us())
}

/// Replays `workload` on the farm in `st` and accounts for every task.
/// `pol` sizes the pool when farmctl controls it (no gateway-ext).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drive(
    a: &RunArgs,
    st: &FarmState,
    stack: &Stack,
    farm: &Farm,
    scenario: &Scenario,
    workload: &Workload,
    policy_name: &str,
    pol: Box<dyn farm_policy::Policy>,
) -> Result<Live> {
    let k = a.speedup;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let names = FarmNames::new(&farm.name)?;
    let nats = st.connect_nats().await?;
    let js = async_nats::jetstream::new(nats.clone());
    let mut output = js
        .get_stream(names.output_stream())
        .await
        .with_context(|| {
            format!(
                "stream {} (is the collector {} running?)",
                names.output_stream(),
                farm.collector
            )
        })?;
    let start_seq = output::next_sequence(&mut output).await?;

    // ---- Setup: who sizes the pool, and the initial replicas ready.
    let bounds = Bounds::of(&scenario.platform, stack, farm);
    let interval_real = Duration::from_secs_f64(scenario.platform.control_interval_s / k);
    let controller = if st.gateway_ext.is_some() {
        "gateway-ext"
    } else {
        "farmctl"
    };
    if let Some(g) = &st.gateway_ext {
        gateway::hand_over(
            &client,
            a,
            st,
            g,
            stack,
            farm,
            policy_name,
            interval_real,
            bounds,
        )
        .await?;
    }
    control::scale(&client, &st.provider_url, &farm.worker, bounds.initial).await?;
    control::wait_ready(
        &client,
        &st.provider_url,
        &farm.worker,
        bounds.initial,
        Duration::from_secs(120),
    )
    .await?;
    println!(
        "replaying {} ({} tasks, seed {}) at x{k} with {} ready replicas, policy {policy_name} ({controller})",
        scenario.name,
        workload.tasks.len(),
        a.seed.unwrap_or(scenario.seed),
        bounds.initial,
    );

    // ---- OUTPUT reader: every entry of this run written from now on.
    let stop = CancellationToken::new();
    let collected = Collected::default();
    let prefix = format!("{}-", run_id());
    let reader = output::spawn_reader(
        &output,
        start_seq,
        prefix.clone(),
        collected.clone(),
        stop.clone(),
    )
    .await?;

    // ---- Control loop (sampling only when gateway-ext sizes the pool).
    let shared: SharedNats = Arc::new(tokio::sync::OnceCell::new());
    let _ = shared.set(nats.clone());
    let observer = NatsObserver::start(
        shared,
        names.clone(),
        interval_real.max(Duration::from_secs(3)),
        stop.clone(),
    );
    let (builder, primed) = control::prime(&observer, bounds, interval_real).await;
    collected.take_fresh();
    let t0 = Instant::now();
    let t0_us = farm_runtime::worker::now_us();
    if let Some(g) = &st.gateway_ext {
        // gateway-ext's ticks and policy clock start with the replay, as
        // the simulator's do (else they keep the phase of its farm loop).
        // The restart also releases the hold: a failed restart would leave
        // the farm without tick decisions for the whole replay.
        gateway::clock(&client, &g.url, "restart", &farm.name)
            .await
            .context("restarting the control clock for the replay")?;
    }
    // Tasks posted to the emitter so far (their deadlines enter the window).
    let posted = Arc::new(AtomicUsize::new(0));
    let control = tokio::spawn(
        ControlLoop {
            client: client.clone(),
            provider: st.provider_url.clone(),
            worker: farm.worker.clone(),
            observer,
            builder,
            policy: pol,
            gateway: st.gateway_ext.is_some(),
            bounds,
            k,
            interval_real,
            t0,
            arrivals_s: workload.tasks.iter().map(|t| t.arrival_s).collect(),
            deadlines_s: workload.tasks.iter().map(|t| t.deadline_s).collect(),
            collected: collected.clone(),
            posted: posted.clone(),
            mode: a.live_signals,
            events: a.events.0,
            primed,
        }
        .run(stop.clone()),
    );

    // ---- Arrivals.
    let bar = indicatif::ProgressBar::new(workload.tasks.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} done  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    // Each task is posted at its own due time, never before (see
    // `PostSchedule`); the replay wakes at least every `--slice-ms` to
    // show progress during gaps between arrivals.
    let poster = Poster {
        client: &client,
        url: format!("{}/function/{}", st.gateway_url(), farm.emitter),
        prefix: &prefix,
        k,
        max_nap: Duration::from_millis(a.slice_ms),
    };
    let accepted = poster
        .replay(&workload.tasks, t0, &posted, &collected, &bar)
        .await?;
    let last_arrival = Instant::now();

    // ---- Drain: until every accepted task is in OUTPUT, or the timeout,
    // the simulator's horizon: the arrival window plus the drain allowance
    // (`SimOptions::max_drain_s`), so an unfinished run ends at the same
    // scenario time on both sides (late posting under load extends it).
    let window_end = t0 + Duration::from_secs_f64(workload.duration_s / k);
    let drain_deadline =
        last_arrival.max(window_end) + Duration::from_secs_f64(a.drain_timeout.max(0.0));
    let end = accounting::drain(&collected, accepted, window_end, drain_deadline, &bar).await;
    bar.finish_and_clear();
    let in_queue = accounting::in_queue(&js, &names).await;
    stop.cancel();
    let Measured {
        timeline,
        replica_seconds,
        max_replicas,
        ticks,
        early_decisions,
    } = control.await.map_err(|e| anyhow!("control loop: {e}"))?;
    let _ = reader.await;
    nats.flush().await.ok();
    let (done, services) = collected.take();

    let metrics = live_metrics(LiveInputs {
        tasks: workload.tasks.len() as u64,
        done: &done,
        t0_us,
        k,
        last_arrival_s: workload.tasks.last().map_or(0.0, |t| t.arrival_s),
        end_s: end.duration_since(t0).as_secs_f64() * k,
        replica_seconds,
        max_replicas,
        timeline,
        early_decisions,
    });
    let accounting = accounting::account(
        &js,
        &names,
        &prefix,
        workload.tasks.len(),
        accepted,
        &done,
        in_queue,
    )
    .await;
    Ok(Live {
        metrics,
        accounting,
        controller,
        ticks,
        t0_us,
        services,
    })
}
