//! `farmctl run`: replay a scenario on the local farm `farmctl up` started.
//!
//! - **Arrivals**: the scenario's tasks for the seed are posted to the
//!   emitter as NDJSON batches, each task at its own due time and never
//!   before it ([`PostSchedule`]: a batch holds the tasks already due when
//!   the replay wakes), each task a sleep-worker payload `{"sleep_ms": S/K}`
//!   with deadline `D/K` and id `<run>-<index>`. Time is compressed by
//!   `--speedup K`: arrival times, service times and deadlines are divided
//!   by K; every figure reported is multiplied back, so the table reads in
//!   scenario seconds and compares with `farmctl sim eval`.
//! - **Scaling**: when gateway-ext runs, it owns the worker pool; farmctl
//!   sets the worker's `com.rust-farm.policy` / `interval` annotations and
//!   only observes. Otherwise farmctl runs the control loop itself: every
//!   `control_interval_s / K` it builds farm-model [`Signals`] with
//!   gateway-ext's [`SignalsBuilder`] (JetStream consumer info + the
//!   collector's `MetricsSnapshot` + the provider's replica counts), replaces
//!   their completion statistics with those of exactly the results collected
//!   since the previous tick ([`IntervalStats`], read from OUTPUT; the
//!   simulator's window; `--live-signals snapshot` keeps the collector's
//!   sliding window instead), rescales them to scenario time
//!   ([`farm_model::Signals::time_scaled`]), asks the policy, clamps to the farm's bounds and
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

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use farm_model::scenario::{Scenario, TaskSpec, Workload};
use farm_model::signals::Signals;
use farm_observe::{BuildContext, NatsObserver, Sample, SharedNats, SignalsBuilder};
use farm_runtime::names::FarmNames;
use farm_runtime::proto::TaskResult;
use farm_sim::oracle::{self, DEFAULT_TARGET_QOS};
use farm_sim::{RunMetrics, TimelinePoint};
use futures::StreamExt;
use prost::Message as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::local::{FarmState, function_status};
use crate::shared::logging::log_to_stderr;
use crate::shared::output::write_json;
use crate::shared::plot;
use crate::shared::policy::make_policy;
use crate::shared::scenario::{Events, check_speedup, load_scenario, parse_events, with_interval};
use crate::shared::stack::{Farm, Stack};
use crate::shared::summary::{self, Run, summarise, table};

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

/// One control tick of a live run: what the policy saw and what it asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    /// Scenario time of the tick, seconds.
    pub t_s: f64,
    /// The signals the policy was given (scenario time).
    pub signals: Signals,
    /// Replicas asked for after the decision.
    pub desired: u32,
    /// Live only: the scenario time at which the work queue (backlog, in
    /// flight) was actually read, the midpoint of the consumer-info
    /// request; `t_s` is when the tick started. The simulator reads its
    /// queue at exactly `t_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_s: Option<f64>,
}

/// One task a worker completed in a live run, as the worker and the server
/// timed it (wall clock, Unix µs): which replica ran it and when, so the
/// simulator can be given what the live platform really did (when each
/// new replica started serving, how long each task held its replica).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRecord {
    /// The task's index in the workload.
    pub index: usize,
    /// The worker instance (`HOSTNAME`, the provider's replica name).
    pub worker: String,
    /// When JetStream stored the task (server clock).
    pub stored_us: i64,
    /// Handler start (worker clock).
    pub started_us: i64,
    /// Handler end (worker clock).
    pub finished_us: i64,
}

/// The completion statistics of one interval, the simulator's way
/// (`farm_sim::Engine::signals`), from the results collected in it and the
/// deadlines of the tasks submitted in it. Times in seconds of whatever
/// clock the inputs use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntervalStats {
    /// Successful completions.
    pub completions: f64,
    /// Of which on time.
    pub on_time: f64,
    /// Mean and 95th percentile service time.
    pub service: Option<(f64, f64)>,
    /// Mean, max and 95th percentile end-to-end latency.
    pub latency: Option<(f64, f64, f64)>,
    /// Smallest deadline among arrivals and completions.
    pub deadline_min: Option<f64>,
    /// Mean deadline of the completions.
    pub deadline_mean: Option<f64>,
}

impl IntervalStats {
    /// Statistics of `done` (results of the interval: outcome, hit,
    /// latency, service, deadline, in seconds) with `arrival_deadlines` of
    /// the tasks submitted in the interval.
    pub fn of(done: &[(bool, bool, f64, f64, f64)], arrival_deadlines: &[f64]) -> IntervalStats {
        let ok: Vec<&(bool, bool, f64, f64, f64)> = done.iter().filter(|d| d.0).collect();
        let n = ok.len();
        let mut lat: Vec<f64> = ok.iter().map(|d| d.2).collect();
        let mut svc: Vec<f64> = ok.iter().map(|d| d.3).collect();
        lat.sort_by(f64::total_cmp);
        svc.sort_by(f64::total_cmp);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let deadline_min = ok
            .iter()
            .map(|d| d.4)
            .chain(arrival_deadlines.iter().copied())
            .fold(f64::INFINITY, f64::min);
        IntervalStats {
            completions: n as f64,
            on_time: ok.iter().filter(|d| d.1).count() as f64,
            service: (n > 0).then(|| (mean(&svc), percentile(&svc, 0.95))),
            latency: (n > 0).then(|| {
                (
                    mean(&lat),
                    lat.last().copied().unwrap_or(0.0),
                    percentile(&lat, 0.95),
                )
            }),
            deadline_min: deadline_min.is_finite().then_some(deadline_min),
            deadline_mean: (n > 0).then(|| ok.iter().map(|d| d.4).sum::<f64>() / n as f64),
        }
    }

    /// `s` with its completion statistics replaced by these.
    pub fn apply(&self, s: Signals) -> Signals {
        Signals {
            completions: self.completions,
            completions_on_time: self.on_time,
            service_mean_s: self.service.map(|x| x.0),
            service_p95_s: self.service.map(|x| x.1),
            latency_mean_s: self.latency.map(|x| x.0),
            latency_max_s: self.latency.map(|x| x.1),
            latency_p95_s: self.latency.map(|x| x.2),
            deadline_min_s: self.deadline_min,
            deadline_mean_s: self.deadline_mean,
            ..s
        }
    }
}

/// How one task ended, from its OUTPUT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The handler succeeded.
    Ok,
    /// It failed for good (dead-lettered) or timed out.
    Failed,
}

/// The work queue and the interval's results as read at a tick.
struct QueueRead {
    /// The workers' consumer (backlog, in flight), if JetStream answered.
    consumer: Option<farm_observe::ConsumerSample>,
    /// When it was read: the midpoint of the request.
    at: Instant,
    /// Results collected since the previous tick.
    window: Vec<Done>,
    /// Tasks posted so far.
    posted: usize,
}

/// One OUTPUT entry of this run.
#[derive(Debug, Clone, Copy)]
struct Done {
    outcome: Outcome,
    hit: bool,
    latency_us: u64,
    /// Result stored time, µs since the epoch (server clock).
    completed_us: i64,
    deliveries: u64,
    /// Handler end minus start, µs (worker clock).
    service_us: u64,
    /// The task's relative deadline, ms.
    deadline_ms: u64,
}

/// The task accounting of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Tasks of the workload.
    pub tasks: u64,
    /// Accepted by the emitter.
    pub accepted: u64,
    /// Completed successfully.
    pub completed: u64,
    /// Of those, on time.
    pub on_time: u64,
    /// Dead-lettered or timed out (in OUTPUT with an error status).
    pub dead_lettered: u64,
    /// Still queued or held by a worker at the end.
    pub unfinished: u64,
    /// Accepted but nowhere to be found. Must be 0.
    pub lost: u64,
}

impl Accounting {
    /// Splits the tasks the emitter accepted: `found` have an OUTPUT entry
    /// (`failed` of them with an error status), `in_queue` are still held by
    /// the work queue; the rest of the accepted are lost.
    pub fn tally(
        tasks: u64,
        accepted: u64,
        completed: u64,
        on_time: u64,
        failed: u64,
        in_queue: u64,
    ) -> Accounting {
        let found = completed + failed;
        let unfinished = in_queue.min(accepted.saturating_sub(found));
        Accounting {
            tasks,
            accepted,
            completed,
            on_time,
            dead_lettered: failed,
            unfinished,
            lost: accepted.saturating_sub(found + unfinished),
        }
    }
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

/// When a replay posts each task: at its own due time (scenario arrival
/// divided by the speedup, seconds of wall clock after the replay's
/// start), never before it, together with every other task already due.
///
/// Why not earlier: the emitter stamps a task when JetStream stores it,
/// and that stamp starts the task's deadline, so a task posted ahead of
/// its time would get a head start on its deadline. Why not later: the
/// simulator queues a task at exactly its arrival time, and a task posted
/// late is missing from the backlog a policy sees at a tick (keda, which
/// sizes from the backlog and never scales down within its cooldown,
/// kept one step fewer replicas for the whole run when farmctl posted
/// each 25 ms slice of arrivals at the slice's end). How late a task can
/// be is then the timer's wake-up delay plus the previous post's round
/// trip, both a few milliseconds.
///
/// Pure: the caller owns the clock and passes the time it read.
#[derive(Debug, Clone)]
pub struct PostSchedule {
    /// Due times, seconds after the replay's start, in posting order.
    due_s: Vec<f64>,
    /// Tasks posted so far (the next one to post).
    next: usize,
}

impl PostSchedule {
    /// The schedule of tasks arriving at `arrivals_s` (scenario seconds, in
    /// arrival order, as `Workload::tasks` holds them) replayed `speedup`
    /// times faster.
    #[must_use]
    pub fn new(arrivals_s: &[f64], speedup: f64) -> Self {
        Self {
            due_s: arrivals_s.iter().map(|a| a / speedup).collect(),
            next: 0,
        }
    }

    /// Tasks handed out by [`Self::take_due`] so far.
    #[must_use]
    pub fn posted(&self) -> usize {
        self.next
    }

    /// When to look at the clock next: the next task's due time, or
    /// `now_s + max_nap_s` if that comes first (the replay wakes that often
    /// to show progress); `None` once every task has been handed out.
    #[must_use]
    pub fn wake_s(&self, now_s: f64, max_nap_s: f64) -> Option<f64> {
        self.due_s
            .get(self.next)
            .map(|&due| due.min(now_s + max_nap_s.max(0.0)))
    }

    /// The tasks (indices) due at `now_s` and not handed out yet; they
    /// count as posted from now on. Empty when the next task is not due.
    pub fn take_due(&mut self, now_s: f64) -> std::ops::Range<usize> {
        let from = self.next;
        // A task due later stops the batch even if one after it (out of
        // order) is due: the order of the workload is kept.
        while self.next < self.due_s.len() && self.due_s[self.next] <= now_s {
            self.next += 1;
        }
        from..self.next
    }
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
    let platform = &scenario.platform;
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
    let start_seq = output
        .info()
        .await
        .context("OUTPUT stream info")?
        .state
        .last_sequence
        + 1;

    let (stack_min, stack_max) = stack.scale_bounds(&farm.worker);
    let min = platform.min_replicas.max(stack_min);
    let max = platform.max_replicas.min(stack_max).max(min);
    let initial = platform.initial_replicas.clamp(min, max);
    let interval_real = Duration::from_secs_f64(platform.control_interval_s / k);
    let gateway = st.gateway_ext.is_some();
    let controller = if gateway { "gateway-ext" } else { "farmctl" };

    if gateway {
        // gateway-ext discovers the policy from the worker's annotations; the
        // update rolls the replicas over, so it happens before the run.
        let mut dep = stack.deployment(
            &farm.worker,
            &BTreeMap::from([("NATS_URL".to_string(), st.nats_url())]),
        )?;
        let ann = &mut dep.annotations;
        ann.insert("com.rust-farm.policy".into(), policy_name.to_string());
        ann.insert(
            "com.rust-farm.interval".into(),
            format!("{}ms", interval_real.as_millis().max(1)),
        );
        ann.insert("com.rust-farm.min".into(), min.to_string());
        ann.insert("com.rust-farm.max".into(), max.to_string());
        // gateway-ext tells the policy durations on the scenario clock
        // (wall x K), and decides unshielded like the simulator.
        ann.insert("com.rust-farm.time-scale".into(), k.to_string());
        ann.insert("com.rust-farm.queueing-floor".into(), "false".into());
        // The simulator's cadence, not gateway-ext's defaults: tumbling
        // windows (farmctl run has no --window) and early decisions only
        // with --events.
        ann.insert("com.rust-farm.window".into(), "0s".into());
        ann.insert("com.rust-farm.events".into(), a.events.to_string());
        let r = client
            .put(format!("{}/system/functions", st.provider_url))
            .json(&dep)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("updating {}: {}", farm.worker, r.status());
        }
        println!(
            "gateway-ext sizes {} with policy {policy_name} (every {:?})",
            farm.worker, interval_real
        );
        // gateway-ext sees the new annotations at its next discovery; the
        // replay must not start while its old loop still decides.
        if let Some(g) = &st.gateway_ext {
            let until = Instant::now() + Duration::from_secs(60);
            loop {
                let adopted = async {
                    let v: serde_json::Value = client
                        .get(format!("{}/system/autoscaler", g.url))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    v["farms"].as_array()?.iter().find(|f| {
                        f["farm"] == farm.name.as_str()
                            && f["policy"] == policy_name
                            && f["time_scale"].as_f64() == Some(k)
                    })?;
                    Some(())
                };
                if adopted.await.is_some() {
                    break;
                }
                if Instant::now() > until {
                    bail!(
                        "gateway-ext did not take up policy {policy_name} for {} within 60 s",
                        farm.name
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // No tick decision until the replay starts: a tick between the
            // scale to the initial replicas and the clock's restart (the
            // policy deciding on the idle farm) started the replay with
            // other replicas than the simulator's (steady-short, queueing:
            // 4 -> 2 just before the start, -15.8 QoS points).
            autoscaler_clock(&client, &g.url, "hold", &farm.name)
                .await
                .context("holding tick decisions for the replay's setup")?;
        }
    }
    scale(&client, &st.provider_url, &farm.worker, initial).await?;
    wait_ready(
        &client,
        &st.provider_url,
        &farm.worker,
        initial,
        Duration::from_secs(120),
    )
    .await?;
    println!(
        "replaying {} ({} tasks, seed {}) at x{k} with {initial} ready replicas, policy {policy_name} ({controller})",
        scenario.name,
        workload.tasks.len(),
        a.seed.unwrap_or(scenario.seed)
    );

    let stop = CancellationToken::new();
    // ---- OUTPUT reader: every entry written from now on.
    let done: Arc<Mutex<HashMap<String, Done>>> = Arc::new(Mutex::new(HashMap::new()));
    let services: Arc<Mutex<Vec<ServiceRecord>>> = Arc::new(Mutex::new(Vec::new()));
    // Results collected since the last control tick (the interval's window).
    let fresh: Arc<Mutex<Vec<Done>>> = Arc::new(Mutex::new(Vec::new()));
    // Tasks posted to the emitter so far (their deadlines enter the window).
    let posted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rid = run_id();
    let prefix = format!("{rid}-");
    let consumer = output
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start_seq,
            },
            ..Default::default()
        })
        .await
        .context("reading the OUTPUT stream")?;
    let mut messages = consumer
        .messages()
        .await
        .context("reading the OUTPUT stream")?;
    let reader = {
        let done = done.clone();
        let services = services.clone();
        let fresh = fresh.clone();
        let stop = stop.clone();
        let prefix = prefix.clone();
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    m = messages.next() => m,
                    () = stop.cancelled() => return,
                };
                let Some(m) = m else { return };
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(error = %e, "reading OUTPUT");
                        continue;
                    }
                };
                let Some(h) = m.headers.as_ref() else {
                    continue;
                };
                let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
                let Some(id) =
                    get(collector::output::H_TASK_ID).filter(|id| id.starts_with(&prefix))
                else {
                    continue;
                };
                let result = TaskResult::decode(m.payload.as_ref()).unwrap_or_default();
                let latency_us = get(collector::output::H_LATENCY_US)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0u64);
                let entry = Done {
                    outcome: if get(collector::output::H_STATUS).as_deref() == Some("ok") {
                        Outcome::Ok
                    } else {
                        Outcome::Failed
                    },
                    hit: get(collector::output::H_QOS_HIT).as_deref() == Some("1"),
                    latency_us,
                    completed_us: result
                        .task_stored_us
                        .saturating_add(i64::try_from(latency_us).unwrap_or(0)),
                    deliveries: result.deliveries,
                    service_us: u64::try_from(result.finished_us.saturating_sub(result.started_us))
                        .unwrap_or(0),
                    deadline_ms: result.deadline_ms,
                };
                let index = id[prefix.len()..].parse::<usize>().ok();
                // A redelivered duplicate is not a second completion.
                if lock(&done).insert(id, entry).is_none() {
                    lock(&fresh).push(entry);
                    if let (Outcome::Ok, Some(index)) = (entry.outcome, index) {
                        lock(&services).push(ServiceRecord {
                            index,
                            worker: result.worker,
                            stored_us: result.task_stored_us,
                            started_us: result.started_us,
                            finished_us: result.finished_us,
                        });
                    }
                }
            }
        })
    };

    // ---- Control / sampling loop.
    let shared: SharedNats = Arc::new(tokio::sync::OnceCell::new());
    let _ = shared.set(nats.clone());
    let observer = NatsObserver::start(
        shared,
        names.clone(),
        interval_real.max(Duration::from_secs(3)),
        stop.clone(),
    );
    // Prime the builder with the counters as the run starts, so the first
    // tick's arrivals and completions are deltas over the first interval,
    // as in the simulator, not a fallback estimate.
    let mut builder = SignalsBuilder::default();
    let prime_until = Instant::now() + Duration::from_secs(3);
    let consumer = loop {
        let c = observer.consumer().await.ok();
        if (c.is_some() && observer.snapshot().is_some()) || Instant::now() > prime_until {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let primed = builder.build(
        &Sample {
            consumer,
            snapshot: observer.snapshot(),
            replicas: initial,
            available: initial,
            queue_head_age_s: 0.0,
        },
        &BuildContext {
            interval_s: interval_real.as_secs_f64(),
            // The scenario's tumbling window (farmctl run has no --window yet).
            window_s: 0.0,
            desired: initial,
            since_last_scale_s: 0.0,
            min,
            max,
        },
    );
    lock(&fresh).clear();
    let t0 = Instant::now();
    let t0_us = farm_runtime::worker::now_us();
    if let (true, Some(g)) = (gateway, &st.gateway_ext) {
        // gateway-ext's ticks and policy clock start with the replay, as
        // the simulator's do (else they keep the phase of its farm loop).
        // The restart also releases the hold above: a failed restart would
        // leave the farm without tick decisions for the whole replay.
        autoscaler_clock(&client, &g.url, "restart", &farm.name)
            .await
            .context("restarting the control clock for the replay")?;
    }
    let sampler = {
        let stop = stop.clone();
        let client = client.clone();
        let provider = st.provider_url.clone();
        let worker = farm.worker.clone();
        let mut pol = pol;
        pol.reset();
        let arrivals_s: Vec<f64> = workload.tasks.iter().map(|t| t.arrival_s).collect();
        let deadlines_s: Vec<f64> = workload.tasks.iter().map(|t| t.deadline_s).collect();
        let fresh = fresh.clone();
        let posted = posted.clone();
        let mode = a.live_signals;
        let alert_every = Duration::from_secs_f64(AlertRule::EVAL_INTERVAL_S / k);
        // Early decisions (farmctl's loop only; gateway-ext has its own),
        // armed at t = 0 from the farm as the run starts, as the simulator's.
        let events = a.events.0.filter(|_| !gateway);
        let mut armed = events.map(|t| {
            t.arm(&primed.time_scaled(k), 0.0)
                .for_replicas(f64::from(initial))
        });
        tokio::spawn(async move {
            let mut alerts = AlertRule::default();
            let mut next_alert = t0 + alert_every;
            let mut alert_evals = 0u32;
            let mut last_signals: Option<Signals> = None;
            let mut desired = initial;
            let mut last_change = Instant::now();
            let mut replica_s = 0.0f64;
            let mut max_replicas = 0u32;
            let mut timeline: Vec<TimelinePoint> = Vec::new();
            let mut last_sample = Instant::now();
            let mut next_tick = t0 + interval_real;
            let mut last_tick = t0;
            let mut counts = (0u64, 0u64);
            let mut ticks: Vec<Tick> = Vec::new();
            let mut posted_prev = 0usize;
            let step = Duration::from_millis(100).min(interval_real);
            let mut queue_read: Option<QueueRead> = None;
            let mut early = 0u32;
            loop {
                // Wake at the tick itself, not up to a step late.
                let nap = step.min(next_tick.saturating_duration_since(Instant::now()));
                tokio::select! {
                    () = tokio::time::sleep(nap) => {}
                    () = stop.cancelled() => break,
                }
                // Between ticks, a backlog jump makes the tick due now; the
                // ticks then restart from it.
                if let Some(armed) = armed
                    && queue_read.is_none()
                    && Instant::now() < next_tick
                {
                    let before = Instant::now();
                    if let Ok(c) = observer.consumer().await {
                        let after = Instant::now();
                        let at = before + after.duration_since(before) / 2;
                        let now_s = at.duration_since(t0).as_secs_f64() * k;
                        if armed.fires(c.num_pending as f64, now_s) {
                            early += 1;
                            next_tick = at;
                            queue_read = Some(QueueRead {
                                consumer: Some(c),
                                at,
                                window: std::mem::take(&mut *lock(&fresh)),
                                posted: posted.load(std::sync::atomic::Ordering::Acquire),
                            });
                        }
                    }
                }
                // At a tick the work queue and the interval's results are
                // read first, before the provider's replica counts, so the
                // backlog is the one at the tick (the simulator's), not one
                // a provider round trip later.
                if queue_read.is_none() && Instant::now() >= next_tick {
                    let before = Instant::now();
                    let consumer = observer.consumer().await.ok();
                    let after = Instant::now();
                    queue_read = Some(QueueRead {
                        consumer,
                        at: before + after.duration_since(before) / 2,
                        window: std::mem::take(&mut *lock(&fresh)),
                        posted: posted.load(std::sync::atomic::Ordering::Acquire),
                    });
                }
                let Ok(status) = function_status(&client, &provider, &worker).await else {
                    continue;
                };
                let replicas = u32::try_from(status.replicas).unwrap_or(u32::MAX);
                let available = u32::try_from(status.available_replicas).unwrap_or(u32::MAX);
                let now = Instant::now();
                replica_s += f64::from(replicas) * now.duration_since(last_sample).as_secs_f64();
                last_sample = now;
                max_replicas = max_replicas.max(replicas);
                if gateway {
                    desired = replicas;
                }
                // The simulator's Prometheus + Alertmanager emulation, on
                // the scenario clock: alert-driven policies (OpenFaaS CE)
                // see the same notifications live as in simulation.
                if !gateway && now >= next_alert {
                    next_alert += alert_every;
                    alert_evals += 1;
                    let now_s = now.duration_since(t0).as_secs_f64() * k;
                    // The rule is evaluated at its nominal time (every 5
                    // scenario seconds, as in the simulator), not at the
                    // moment this loop woke: the rate compares a 10 s count
                    // with a threshold, and with arrivals near 5/s a wake-up
                    // 0.1-0.4 scenario s late moves one arrival into the
                    // window and fires (or resolves) where the simulator
                    // does not (spike, openfaas-ce: +28 % replica-seconds).
                    let eval_s = f64::from(alert_evals) * AlertRule::EVAL_INTERVAL_S;
                    let arrived = arrivals_s.partition_point(|&t| t <= eval_s) as u64;
                    if let (Some(firing), Some(s)) =
                        (alerts.evaluate(eval_s, arrived), &last_signals)
                    {
                        let s = Signals {
                            replicas_desired: f64::from(desired),
                            ..s.clone()
                        };
                        if let Some(d) = pol.on_alert(now_s, firing, &s) {
                            let want = d.desired.clamp(min, max);
                            if want != desired {
                                match scale(&client, &provider, &worker, want).await {
                                    Ok(()) => {
                                        info!(from = desired, to = want, firing, "scaled on alert");
                                        desired = want;
                                        last_change = now;
                                    }
                                    Err(e) => warn!(error = %format!("{e:#}"), "scale call failed"),
                                }
                            }
                        }
                    }
                }
                if now < next_tick {
                    continue;
                }
                let Some(QueueRead {
                    consumer,
                    at: sampled_at,
                    window,
                    posted: posted_now,
                }) = queue_read.take()
                else {
                    // The tick fell due during the provider call: read
                    // the queue at the next turn (no nap).
                    continue;
                };
                let sample = Sample {
                    consumer,
                    snapshot: observer.snapshot(),
                    replicas,
                    available,
                    queue_head_age_s: 0.0,
                };
                let ctx = BuildContext {
                    interval_s: sampled_at.duration_since(last_tick).as_secs_f64(),
                    window_s: 0.0,
                    desired,
                    since_last_scale_s: now.duration_since(last_change).as_secs_f64(),
                    min,
                    max,
                };
                last_tick = sampled_at;
                next_tick += interval_real;
                // After a stall (the process starved of CPU) keep the
                // cadence but skip a scheduled tick that would close less
                // than half an interval: the simulator never decides on a
                // sliver of an interval, where rates and latencies jump.
                while next_tick < now + interval_real / 2 {
                    next_tick += interval_real;
                }
                let built = builder.build(&sample, &ctx);
                let built = match mode {
                    LiveSignals::Snapshot => built,
                    LiveSignals::Interval => {
                        let results: Vec<(bool, bool, f64, f64, f64)> = window
                            .iter()
                            .map(|d| {
                                (
                                    d.outcome == Outcome::Ok,
                                    d.hit,
                                    d.latency_us as f64 / 1e6,
                                    d.service_us as f64 / 1e6,
                                    d.deadline_ms as f64 / 1e3,
                                )
                            })
                            .collect();
                        let arrived: Vec<f64> = deadlines_s
                            [posted_prev.min(posted_now)..posted_now.min(deadlines_s.len())]
                            .iter()
                            .map(|d| d / k)
                            .collect();
                        IntervalStats::of(&results, &arrived).apply(built)
                    }
                };
                posted_prev = posted_now;
                let signals = built.time_scaled(k);
                let now_s = now.duration_since(t0).as_secs_f64() * k;
                last_signals = Some(signals.clone());
                if !gateway {
                    let want = pol.decide(now_s, &signals).desired.clamp(min, max);
                    if want != desired {
                        match scale(&client, &provider, &worker, want).await {
                            Ok(()) => {
                                info!(from = desired, to = want, "scaled");
                                desired = want;
                                last_change = now;
                            }
                            Err(e) => warn!(error = %format!("{e:#}"), "scale call failed"),
                        }
                    }
                }
                if let Some(t) = events {
                    armed = Some(t.arm(&signals, now_s).for_replicas(f64::from(desired)));
                }
                let (c, h) = (
                    signals.completions as u64,
                    signals.completions_on_time as u64,
                );
                counts = (counts.0 + c, counts.1 + h);
                debug!(t = now_s, desired, replicas, available, signals = ?signals, "tick");
                ticks.push(Tick {
                    t_s: now_s,
                    signals: signals.clone(),
                    desired,
                    sampled_s: Some(sampled_at.saturating_duration_since(t0).as_secs_f64() * k),
                });
                timeline.push(TimelinePoint {
                    t_s: now_s,
                    desired,
                    ready: available,
                    starting: replicas.saturating_sub(available),
                    alive: replicas,
                    backlog: signals.backlog as u32,
                    arrivals: signals.arrivals as u32,
                    completions: c as u32,
                    window_qos: signals.window_qos(),
                });
            }
            (timeline, replica_s * k, max_replicas, ticks, early)
        })
    };

    // ---- Arrivals.
    let bar = indicatif::ProgressBar::new(workload.tasks.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} done  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let emitter_url = format!("{}/function/{}", st.gateway_url(), farm.emitter);
    // Each task is posted at its own due time, never before (see
    // `PostSchedule`); the replay wakes at least every `--slice-ms` to
    // show progress during gaps between arrivals.
    let max_nap_s = Duration::from_millis(a.slice_ms).as_secs_f64();
    let mut accepted = 0u64;
    let tasks: &[TaskSpec] = &workload.tasks;
    let arrivals: Vec<f64> = tasks.iter().map(|t| t.arrival_s).collect();
    let mut schedule = PostSchedule::new(&arrivals, k);
    // How far behind its due time each task was handed to the emitter
    // (wall seconds): the replay's own fidelity, logged at the end.
    let mut late_s: Vec<f64> = Vec::with_capacity(arrivals.len());
    while let Some(wake_s) = schedule.wake_s(t0.elapsed().as_secs_f64(), max_nap_s) {
        tokio::time::sleep_until((t0 + Duration::from_secs_f64(wake_s)).into()).await;
        let now_s = t0.elapsed().as_secs_f64();
        let due = schedule.take_due(now_s);
        late_s.extend(due.clone().map(|i| now_s - arrivals[i] / k));
        if !due.is_empty() {
            accepted += post_batch(
                &client,
                &emitter_url,
                &prefix,
                due.start,
                &tasks[due.clone()],
                k,
            )
            .await?;
            posted.store(due.end, std::sync::atomic::Ordering::Release);
        }
        let finished = lock(&done).len() as u64;
        bar.set_position(finished);
        bar.set_message(format!("sent {}", schedule.posted()));
    }
    let last_arrival = Instant::now();
    late_s.sort_by(f64::total_cmp);
    let late_ms = |q: f64| percentile(&late_s, q) * 1e3;
    info!(
        accepted,
        late_p50_ms = late_ms(0.5),
        late_p99_ms = late_ms(0.99),
        late_max_ms = late_ms(1.0),
        "all arrivals sent (posting delay behind schedule, wall clock)"
    );

    // ---- Drain: until every accepted task is in OUTPUT, or the timeout.
    // The run lasts at least the scenario's arrival window, as in the
    // simulator: replica-seconds and means are measured over the same span.
    let window_end = t0 + Duration::from_secs_f64(workload.duration_s / k);
    // The simulator's horizon: the arrival window plus the drain allowance
    // (`SimOptions::max_drain_s`), so an unfinished run ends at the same
    // scenario time on both sides (late posting under load extends it).
    let drain_deadline =
        last_arrival.max(window_end) + Duration::from_secs_f64(a.drain_timeout.max(0.0));
    loop {
        let finished = lock(&done).len() as u64;
        bar.set_position(finished);
        if (finished >= accepted && Instant::now() >= window_end) || Instant::now() > drain_deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = Instant::now();
    bar.finish_and_clear();
    let in_queue = match js.get_stream(names.tasks_stream()).await {
        Ok(s) => s
            .consumer_info(names.workers_consumer())
            .await
            .map(|c| c.num_pending + c.num_ack_pending as u64)
            .unwrap_or(0),
        Err(_) => 0,
    };
    stop.cancel();
    let (timeline, replica_seconds, max_replicas, ticks, early_decisions) =
        sampler.await.map_err(|e| anyhow!("sampler: {e}"))?;
    let _ = reader.await;
    nats.flush().await.ok();
    let services = std::mem::take(&mut *lock(&services));

    let done = std::mem::take(&mut *lock(&done));
    let metrics = live_metrics(LiveInputs {
        tasks: workload.tasks.len() as u64,
        done: &done,
        t0_us,
        k,
        last_arrival_s: tasks.last().map_or(0.0, |t| t.arrival_s),
        end_s: end.duration_since(t0).as_secs_f64() * k,
        replica_seconds,
        max_replicas,
        timeline,
        early_decisions,
    });
    let completed = done.values().filter(|d| d.outcome == Outcome::Ok).count() as u64;
    let failed = done.len() as u64 - completed;
    let on_time = done
        .values()
        .filter(|d| d.outcome == Outcome::Ok && d.hit)
        .count() as u64;
    let accounting = Accounting::tally(
        workload.tasks.len() as u64,
        accepted,
        completed,
        on_time,
        failed,
        in_queue,
    );
    if accounting.lost > 0 {
        // Say where to look: a result held in RESULTS that the collector has
        // not written, or a dead letter that never reached OUTPUT.
        let uncollected = match js.get_stream(names.results_stream()).await {
            Ok(s) => s
                .consumer_info(names.collector_consumer())
                .await
                .map(|c| c.num_pending + c.num_ack_pending as u64)
                .ok(),
            Err(_) => None,
        };
        let dead_letters = match js.get_stream(names.dlq_stream()).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).ok(),
            Err(_) => None,
        };
        let missing: Vec<String> = (0..tasks.len())
            .map(|i| format!("{prefix}{i}"))
            .filter(|id| !done.contains_key(id))
            .take(10)
            .collect();
        warn!(
            lost = accounting.lost,
            ?missing,
            ?uncollected,
            ?dead_letters,
            "tasks accepted by the emitter are neither in OUTPUT nor in the work queue"
        );
        eprintln!(
            "farmctl: {} task(s) lost; missing ids {missing:?}; RESULTS not collected: {uncollected:?}; DLQ messages: {dead_letters:?}",
            accounting.lost
        );
    }
    Ok(Live {
        metrics,
        accounting,
        controller,
        ticks,
        t0_us,
        services,
    })
}

async fn scale(client: &reqwest::Client, provider: &str, name: &str, replicas: u32) -> Result<()> {
    let body = serde_json::json!({"serviceName": name, "replicas": replicas, "namespace": farm_local::DEFAULT_NAMESPACE});
    let r = client
        .post(format!("{provider}/system/scale-function/{name}"))
        .json(&body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("scaling {name} to {replicas}: {}", r.status());
    }
    Ok(())
}

/// `POST /system/autoscaler/{route}/{farm}` on gateway-ext (`hold` or
/// `restart` its control clock); an error unless gateway-ext accepted it.
async fn autoscaler_clock(
    client: &reqwest::Client,
    gateway_ext: &str,
    route: &str,
    farm: &str,
) -> Result<()> {
    let url = format!("{gateway_ext}/system/autoscaler/{route}/{farm}");
    let r = client
        .post(&url)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = r.status();
    if !status.is_success() {
        let body = r.text().await.unwrap_or_default();
        bail!(
            "gateway-ext refused {route} for {farm}: {status} {}",
            body.trim()
        );
    }
    Ok(())
}

async fn wait_ready(
    client: &reqwest::Client,
    provider: &str,
    name: &str,
    want: u32,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = function_status(client, provider, name).await?;
        if s.available_replicas >= u64::from(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{name}: {}/{want} replicas available after {}s",
                s.available_replicas,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts one NDJSON batch; returns how many tasks the emitter stored.
/// A full or unavailable queue is retried (same ids: JetStream
/// de-duplicates), a refused batch is an error.
async fn post_batch(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    first: usize,
    tasks: &[TaskSpec],
    k: f64,
) -> Result<u64> {
    let mut body = String::new();
    for (i, t) in tasks.iter().enumerate() {
        let line = serde_json::json!({
            "id": format!("{prefix}{}", first + i),
            "payload": {"sleep_ms": (t.service_s * 1000.0 / k).round() as u64},
            "content_type": "application/json",
            "deadline_ms": ((t.deadline_s * 1000.0 / k).round() as u64).max(1),
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    let mut backoff = Duration::from_millis(50);
    for attempt in 0..8 {
        let r = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                let v: serde_json::Value = r.json().await.context("emitter: bad 202 body")?;
                return Ok(v["ids"].as_array().map_or(0, |ids| ids.len() as u64));
            }
            Ok(r)
                if r.status().is_client_error()
                    && r.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                let code = r.status();
                bail!(
                    "the emitter refused a batch ({code}): {}",
                    r.text().await.unwrap_or_default()
                );
            }
            Ok(r) => warn!(status = %r.status(), attempt, "emitter busy; retrying"),
            Err(e) => warn!(error = %e, attempt, "posting to the emitter; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    bail!(
        "the emitter did not accept a batch of {} tasks after 8 attempts",
        tasks.len()
    )
}

/// The simulator's OpenFaaS CE alert emulation
/// ([`farm_sim::engine::alert_rule`]) for a live run: the rule is evaluated
/// every 5 scenario seconds on the count of tasks submitted so far.
#[derive(Debug, Clone, Default)]
struct AlertRule {
    counts: [u64; 3],
    pending_since: Option<f64>,
    firing: bool,
    last_post: f64,
}

impl AlertRule {
    const EVAL_INTERVAL_S: f64 = farm_sim::engine::alert_rule::EVAL_INTERVAL_S;

    /// One evaluation at scenario time `now_s` with `arrived` tasks so far;
    /// `Some(firing)` when Alertmanager would post a notification.
    fn evaluate(&mut self, now_s: f64, arrived: u64) -> Option<bool> {
        use farm_sim::engine::alert_rule::{FOR_S, RATE_WINDOW_S, REPEAT_S, THRESHOLD_PER_S};
        self.counts.rotate_left(1);
        self.counts[2] = arrived;
        let rate = self.counts[2].saturating_sub(self.counts[0]) as f64 / RATE_WINDOW_S;
        if rate > THRESHOLD_PER_S {
            let since = *self.pending_since.get_or_insert(now_s);
            let held = now_s - since + 1e-9 >= FOR_S;
            let post = !self.firing || now_s - self.last_post + 1e-9 >= REPEAT_S;
            if held && post {
                self.firing = true;
                self.last_post = now_s;
                return Some(true);
            }
            None
        } else {
            self.pending_since = None;
            if self.firing {
                self.firing = false;
                self.last_post = now_s;
                return Some(false);
            }
            None
        }
    }
}

struct LiveInputs<'a> {
    tasks: u64,
    done: &'a HashMap<String, Done>,
    t0_us: i64,
    k: f64,
    last_arrival_s: f64,
    end_s: f64,
    replica_seconds: f64,
    max_replicas: u32,
    timeline: Vec<TimelinePoint>,
    early_decisions: u32,
}

/// Nearest-rank percentile of sorted samples, 0 when empty (the
/// simulator's definition).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let r = (q * sorted.len() as f64 - 1e-9).ceil().max(1.0) as usize;
    sorted[r.min(sorted.len()) - 1]
}

/// The simulator's [`RunMetrics`] for a live run, in scenario seconds.
fn live_metrics(i: LiveInputs<'_>) -> RunMetrics {
    let k = i.k;
    let ok: Vec<&Done> = i
        .done
        .values()
        .filter(|d| d.outcome == Outcome::Ok)
        .collect();
    let mut lat: Vec<f64> = ok.iter().map(|d| d.latency_us as f64 / 1e6 * k).collect();
    lat.sort_by(f64::total_cmp);
    let on_time = ok.iter().filter(|d| d.hit).count() as u64;
    let last_completion_s = i
        .done
        .values()
        .map(|d| (d.completed_us - i.t0_us) as f64 / 1e6 * k)
        .fold(f64::NEG_INFINITY, f64::max);
    let completed = ok.len() as u64;
    let unfinished = i.tasks.saturating_sub(i.done.len() as u64);
    let end_s = i.end_s.max(1e-9);
    let drain_time_s = if unfinished > 0 || !last_completion_s.is_finite() {
        end_s - i.last_arrival_s
    } else {
        (last_completion_s - i.last_arrival_s).max(0.0)
    };
    let (mut actions, mut reversals, mut last_dir) = (0u32, 0u32, 0i8);
    for w in i.timeline.windows(2) {
        let dir = match w[1].desired.cmp(&w[0].desired) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
        };
        if dir != 0 {
            actions += 1;
            if last_dir != 0 && dir != last_dir {
                reversals += 1;
            }
            last_dir = dir;
        }
    }
    RunMetrics {
        tasks: i.tasks,
        completed,
        unfinished,
        on_time,
        qos: if i.tasks == 0 {
            1.0
        } else {
            on_time as f64 / i.tasks as f64
        },
        latency_p50_s: percentile(&lat, 0.50),
        latency_p95_s: percentile(&lat, 0.95),
        latency_p99_s: percentile(&lat, 0.99),
        replica_seconds: i.replica_seconds,
        mean_replicas: i.replica_seconds / end_s,
        max_replicas: i.max_replicas,
        scaling_actions: actions,
        reversals,
        drain_time_s,
        end_s,
        redeliveries: i
            .done
            .values()
            .map(|d| d.deliveries.saturating_sub(1))
            .sum(),
        // Replica crashes are restarted by the provider and not counted here.
        failures: 0,
        events: i.done.len() as u64,
        early_decisions: i.early_decisions,
        timeline: i.timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny seeded generator (splitmix64) for the replay tests: uniform
    /// in `[0, 1)`.
    struct Uniform01(u64);

    impl Uniform01 {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Replays `arrivals` against a simulated clock: every wake-up is late
    /// by up to `jitter_s` and every post takes up to `post_s`. Returns each
    /// task's post time (seconds after the start), by task index.
    fn replay(arrivals: &[f64], k: f64, jitter_s: f64, post_s: f64, seed: u64) -> Vec<f64> {
        let mut rng = Uniform01(seed);
        let mut schedule = PostSchedule::new(arrivals, k);
        let mut posted_at = vec![f64::NAN; arrivals.len()];
        let mut now = 0.0f64;
        let mut wakes = 0usize;
        while let Some(wake) = schedule.wake_s(now, 0.025) {
            wakes += 1;
            assert!(wakes < 100 * arrivals.len() + 10_000, "the replay must end");
            // The timer never fires early, and may fire late.
            now = now.max(wake) + rng.next() * jitter_s;
            let due = schedule.take_due(now);
            for i in due.clone() {
                posted_at[i] = now;
            }
            if !due.is_empty() {
                now += rng.next() * post_s;
            }
        }
        posted_at
    }

    #[test]
    fn every_task_is_posted_once_at_or_after_its_due_time_and_soon_after() {
        let k = 4.0;
        for seed in 0..20u64 {
            // Poisson-like arrivals with bursts (gaps down to 0) over 240 s.
            let mut rng = Uniform01(seed.wrapping_add(99));
            let mut t = 0.0;
            let arrivals: Vec<f64> = (0..1500)
                .map(|_| {
                    t += if rng.next() < 0.2 {
                        0.0
                    } else {
                        rng.next() * 0.3
                    };
                    t
                })
                .collect();
            let (jitter, post) = (0.002, 0.005);
            let at = replay(&arrivals, k, jitter, post, seed);
            for (i, (&a, &p)) in arrivals.iter().zip(&at).enumerate() {
                let due = a / k;
                assert!(!p.is_nan(), "task {i} never posted");
                assert!(p >= due, "task {i} posted at {p} before its due time {due}");
                // At worst: the previous post was still running when it fell
                // due, then the timer woke late.
                assert!(
                    p <= due + post + jitter + 1e-9,
                    "task {i} posted {} s late",
                    p - due
                );
            }
        }
    }

    #[test]
    fn schedule_waits_for_the_next_due_task_and_naps_at_most_the_given_time() {
        let mut s = PostSchedule::new(&[0.4, 0.4, 2.0], 4.0);
        assert_eq!(s.wake_s(0.0, 1.0), Some(0.1));
        assert_eq!(s.take_due(0.099), 0..0, "not due yet");
        assert_eq!(s.take_due(0.1), 0..2, "both tasks due at 0.1 s");
        assert_eq!(s.posted(), 2);
        assert_eq!(s.wake_s(0.1, 0.025), Some(0.125), "a nap, not the due time");
        assert_eq!(s.wake_s(0.49, 0.025), Some(0.5));
        assert_eq!(s.take_due(0.3), 2..2);
        assert_eq!(s.take_due(0.7), 2..3, "a late wake-up posts what is due");
        assert_eq!(s.wake_s(0.7, 0.025), None, "all posted");
        assert_eq!(s.take_due(9.0), 3..3);
    }

    #[test]
    fn signals_are_rescaled_to_scenario_time() {
        let s = Signals {
            interval_s: 2.0,
            arrivals: 12.0,
            service_mean_s: Some(0.375),
            latency_max_s: Some(0.5),
            deadline_min_s: None,
            since_last_scale_s: 4.0,
            backlog: 7.0,
            ..Default::default()
        };
        let t = s.time_scaled(4.0);
        assert_eq!(t.interval_s, 8.0);
        assert_eq!(t.arrivals, 12.0);
        assert_eq!(t.arrival_rate(), 1.5);
        assert_eq!(t.service_mean_s, Some(1.5));
        assert_eq!(t.latency_max_s, Some(2.0));
        assert_eq!(t.deadline_min_s, None);
        assert_eq!(t.since_last_scale_s, 16.0);
        assert_eq!(t.backlog, 7.0);
    }

    #[test]
    fn alert_rule_fires_after_five_seconds_above_threshold_and_resolves() {
        let mut a = AlertRule::default();
        // 10 tasks/s from t = 0: the first evaluation sees the window filling.
        assert_eq!(a.evaluate(5.0, 50), None, "rate 5/s is not above 5/s");
        assert_eq!(a.evaluate(10.0, 100), None, "pending, not yet held 5 s");
        assert_eq!(a.evaluate(15.0, 150), Some(true));
        assert_eq!(a.evaluate(20.0, 200), None, "no repeat before 30 s");
        assert_eq!(a.evaluate(45.0, 450), Some(true), "repeat after 30 s");
        assert_eq!(
            a.evaluate(50.0, 450),
            None,
            "still above over the 10 s window"
        );
        assert_eq!(a.evaluate(55.0, 450), Some(false));
        assert_eq!(a.evaluate(60.0, 450), None);
    }

    #[test]
    fn interval_stats_follow_the_simulator_window() {
        // (ok, hit, latency, service, deadline)
        let done = [
            (true, true, 1.0, 0.5, 2.0),
            (true, false, 3.0, 1.0, 2.0),
            (false, false, 9.0, 9.0, 0.2),
            (true, true, 2.0, 1.5, 4.0),
        ];
        let s = IntervalStats::of(&done, &[1.5, 6.0]);
        assert_eq!((s.completions, s.on_time), (3.0, 2.0));
        assert_eq!(s.latency, Some((2.0, 3.0, 3.0)));
        assert_eq!(s.service, Some((1.0, 1.5)));
        // Failed results do not count; arrivals' deadlines do.
        assert_eq!(s.deadline_min, Some(1.5));
        assert_eq!(s.deadline_mean, Some(8.0 / 3.0));
        let sig = s.apply(Signals {
            backlog: 4.0,
            completions: 99.0,
            ..Default::default()
        });
        assert_eq!((sig.backlog, sig.completions), (4.0, 3.0));
        assert_eq!(sig.window_qos(), Some(2.0 / 3.0));
        assert_eq!(sig.latency_max_s, Some(3.0));
        // An empty window has no statistics, only the arrivals' deadlines.
        let e = IntervalStats::of(&[], &[0.7]);
        assert_eq!((e.completions, e.latency, e.service), (0.0, None, None));
        assert_eq!((e.deadline_min, e.deadline_mean), (Some(0.7), None));
        assert_eq!(IntervalStats::of(&[], &[]).deadline_min, None);
    }

    #[test]
    fn accounting_finds_lost_tasks() {
        let a = Accounting::tally(100, 100, 90, 80, 4, 6);
        assert_eq!((a.unfinished, a.lost), (6, 0));
        let a = Accounting::tally(100, 100, 90, 80, 4, 0);
        assert_eq!(a.lost, 6);
        // A queue holding tasks of other runs cannot hide this run's losses.
        let a = Accounting::tally(10, 10, 10, 10, 0, 50);
        assert_eq!((a.unfinished, a.lost), (0, 0));
    }

    #[test]
    fn live_metrics_scale_back_and_count_actions() {
        let done: HashMap<String, Done> = [
            ("a", Outcome::Ok, true, 250_000u64, 1_000_000i64),
            ("b", Outcome::Ok, false, 1_000_000, 2_000_000),
            ("c", Outcome::Failed, false, 500_000, 1_500_000),
        ]
        .into_iter()
        .map(|(id, outcome, hit, latency_us, completed_us)| {
            (
                id.to_string(),
                Done {
                    outcome,
                    hit,
                    latency_us,
                    completed_us,
                    deliveries: 2,
                    service_us: 100_000,
                    deadline_ms: 500,
                },
            )
        })
        .collect();
        let point = |t_s: f64, desired: u32| TimelinePoint {
            t_s,
            desired,
            ready: desired,
            starting: 0,
            alive: desired,
            backlog: 0,
            arrivals: 0,
            completions: 0,
            window_qos: None,
        };
        let m = live_metrics(LiveInputs {
            tasks: 4,
            done: &done,
            t0_us: 0,
            k: 2.0,
            last_arrival_s: 1.0,
            end_s: 5.0,
            replica_seconds: 10.0,
            max_replicas: 3,
            timeline: vec![point(1.0, 1), point(2.0, 3), point(3.0, 2), point(4.0, 2)],
            early_decisions: 0,
        });
        assert_eq!((m.completed, m.on_time, m.unfinished), (2, 1, 1));
        assert_eq!(m.qos, 0.25);
        assert_eq!(m.latency_p50_s, 0.5);
        assert_eq!(m.latency_p99_s, 2.0);
        assert_eq!((m.scaling_actions, m.reversals), (2, 1));
        assert_eq!(m.mean_replicas, 2.0);
        assert_eq!(m.redeliveries, 3);
        assert_eq!(m.drain_time_s, 4.0);
    }
}
