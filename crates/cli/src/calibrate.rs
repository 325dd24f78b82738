//! `farmctl calibrate`: measure the live local platform and write a
//! `platform:` section for scenario files.
//!
//! On the farm in `--state` (started here, gateway-ext off and no start-up
//! emulation, when none is up; brought down afterwards) it measures, on the
//! worker function of the stack:
//!
//! - **start-up**: scale `1 -> 2`, time until the provider reports the new
//!   replica available (health check answered, NATS bound);
//! - **drain**: scale `2 -> 1` with an idle worker, time until the provider
//!   no longer counts it;
//! - **scale-call latency**: the `POST /system/scale-function` round trip;
//! - **per-task overhead**: zero-work tasks replayed through emitter,
//!   JetStream, worker and collector (`farmctl run`'s replay), latency on
//!   the JetStream server's clock.
//!
//! The file holds `platform:` (farm-model's `Platform` YAML, in real
//! seconds: paste it into a scenario to fit the simulator to this machine)
//! and `measured:` (farmctl's summary, read by `farmctl compare`; not part
//! of a scenario).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use farm_model::scenario::{Dist, Platform, Scenario, TaskSpec, Workload};
use serde::{Deserialize, Serialize};

use crate::local::{self, DownArgs, FarmState, GatewayMode, UpArgs, function_status};
use crate::run::{self, RunArgs};
use crate::shared::stack::Stack;

/// `farmctl calibrate` arguments.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The stack file (used when a farm has to be started).
    #[arg(short = 'f', long = "file", default_value = "stack.yml")]
    pub file: PathBuf,
    /// State directory: a farm up there is used as is, else one is started and stopped.
    #[arg(long, default_value = ".farm-calibrate")]
    pub state: PathBuf,
    /// Scale-up / scale-down rounds.
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
    /// Zero-work tasks for the per-task overhead.
    #[arg(long, default_value_t = 200)]
    pub tasks: u32,
    /// Where to write the platform section.
    #[arg(long, default_value = "platform.yaml")]
    pub out: PathBuf,
    /// Cargo profile the functions are built with (when a farm is started).
    #[arg(long, default_value = "release")]
    pub cargo_profile: String,
    /// Skip building the functions (when a farm is started).
    #[arg(long)]
    pub no_build: bool,
}

/// What the live local platform does, in real (wall-clock) seconds; written
/// by `farmctl calibrate`, read by `farmctl compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Scale call -> the new replica answers its health check (no emulated delay), mean.
    pub start_s: f64,
    /// Scale-down call -> the replica is gone (an idle worker draining), mean.
    pub drain_s: f64,
    /// `POST /system/scale-function` round trip, median.
    pub scale_call_s: f64,
    /// End-to-end latency of a zero-work task through emitter, JetStream,
    /// worker and collector, median.
    pub task_overhead_s: f64,
    /// Where the figures come from.
    #[serde(default)]
    pub source: String,
}

impl Default for Measured {
    /// Measured with `farmctl calibrate` on the 2-core development machine
    /// with a debug farmctl, dev-profile functions and the 5 ms start-up
    /// probe `compare` uses (see BENCHMARKS.md, "Live vs simulated").
    fn default() -> Self {
        Measured {
            start_s: 0.019,
            drain_s: 0.004,
            scale_call_s: 0.002,
            task_overhead_s: 0.0007,
            source: "built-in defaults (farmctl calibrate on the development machine)".into(),
        }
    }
}

/// A `farmctl calibrate` file: a `platform:` section in the scenario
/// shape, and what was measured (farmctl's own key, not part of a scenario).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFile {
    /// The live platform as a scenario `platform:` section.
    pub platform: Platform,
    /// The raw figures.
    pub measured: Measured,
}

/// The calibration `compare` uses: `explicit`, else `platform.yaml` in the
/// current directory if present, else [`Measured::default`].
pub fn load_calibration(explicit: Option<&Path>) -> Result<Measured> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if Path::new("platform.yaml").is_file() => PathBuf::from("platform.yaml"),
        None => return Ok(Measured::default()),
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let f: CalibrationFile = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{}: not a `farmctl calibrate` file (platform: + measured:)",
            path.display()
        )
    })?;
    Ok(Measured {
        source: path.display().to_string(),
        ..f.measured
    })
}

/// Sorted samples, seconds.
#[derive(Debug, Clone, Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64());
        self.0.sort_by(f64::total_cmp);
    }
    fn quantile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i]
    }
    fn mean(&self) -> f64 {
        if self.0.is_empty() {
            0.0
        } else {
            self.0.iter().sum::<f64>() / self.0.len() as f64
        }
    }
    fn line(&self) -> String {
        format!(
            "n {} mean {:.1} ms p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            self.0.len(),
            self.mean() * 1e3,
            self.quantile(0.5) * 1e3,
            self.quantile(0.99) * 1e3,
            self.quantile(1.0) * 1e3
        )
    }
}

async fn scale(client: &reqwest::Client, provider: &str, name: &str, n: u32) -> Result<Duration> {
    let body = serde_json::json!({"serviceName": name, "replicas": n, "namespace": farm_local::DEFAULT_NAMESPACE});
    let t = Instant::now();
    let r = client
        .post(format!("{provider}/system/scale-function/{name}"))
        .json(&body)
        .send()
        .await?;
    let took = t.elapsed();
    if !r.status().is_success() {
        bail!("scaling {name} to {n}: {}", r.status());
    }
    Ok(took)
}

/// Polls every 2 ms until `ok(replicas, available)`; bounded by 60 s.
async fn until(
    client: &reqwest::Client,
    provider: &str,
    name: &str,
    ok: impl Fn(u64, u64) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = function_status(client, provider, name).await?;
        if ok(s.replicas, s.available_replicas) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{name}: still {}/{} replicas available after 60 s",
                s.available_replicas,
                s.replicas
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Figures {
    start: Samples,
    drain: Samples,
    call: Samples,
    task: run::Live,
}

async fn measure(a: &CalibrateArgs, st: &FarmState, stack: &Stack) -> Result<Figures> {
    let farm = stack.farm(None)?;
    let worker = &farm.worker;
    let provider = &st.provider_url;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (mut start, mut drain, mut call) =
        (Samples::default(), Samples::default(), Samples::default());
    scale(&client, provider, worker, 1).await?;
    until(&client, provider, worker, |r, av| r == 1 && av == 1).await?;
    for round in 0..a.rounds {
        let t = Instant::now();
        call.push(scale(&client, provider, worker, 2).await?);
        until(&client, provider, worker, |_, av| av >= 2).await?;
        let up = t.elapsed();
        start.push(up);
        // Let the new replica bind its consumer before it is drained.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        call.push(scale(&client, provider, worker, 1).await?);
        until(&client, provider, worker, |r, _| r <= 1).await?;
        let down = t.elapsed();
        drain.push(down);
        println!(
            "round {}/{}: start {:.1} ms, drain {:.1} ms",
            round + 1,
            a.rounds,
            up.as_secs_f64() * 1e3,
            down.as_secs_f64() * 1e3
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Zero-work tasks at 20/s on two replicas: the latency is the farm's own.
    let mut scenario = Scenario::builtin("steady")?;
    scenario.name = "calibrate".into();
    scenario.platform.initial_replicas = 2;
    scenario.platform.min_replicas = 1;
    let n = a.tasks.max(1);
    let workload = Workload {
        tasks: (0..n)
            .map(|i| TaskSpec {
                arrival_s: f64::from(i) * 0.05,
                service_s: 0.0,
                deadline_s: 1.0,
            })
            .collect(),
        duration_s: f64::from(n) * 0.05,
    };
    let run_args = RunArgs {
        scenario: "calibrate".into(),
        speedup: 1.0,
        policy: Some("fixed:2".into()),
        seed: Some(0),
        state: st.state_dir.clone(),
        farm: None,
        out: PathBuf::from("unused"),
        drain_timeout: 60.0,
        slice_ms: 25,
        live_signals: run::LiveSignals::Interval,
        interval: None,
        events: Default::default(),
    };
    let pol = farm_policy::builtin("fixed:2", &scenario.platform)?;
    let task = run::drive(
        &run_args, st, stack, &farm, &scenario, &workload, "fixed:2", pol,
    )
    .await?;
    if task.accounting.lost > 0 || task.accounting.completed == 0 {
        bail!("overhead run: {:?}", task.accounting);
    }
    scale(&client, provider, worker, 1).await?;
    Ok(Figures {
        start,
        drain,
        call,
        task,
    })
}

/// Run `farmctl calibrate`.
pub fn run(a: CalibrateArgs) -> Result<()> {
    let state = std::path::absolute(&a.state)?;
    let mut started = false;
    let st = match FarmState::load(&state) {
        Ok(st) => st,
        Err(_) => {
            local::up(UpArgs {
                file: a.file.clone(),
                state: state.clone(),
                nats_port: 0,
                nats_cluster: 1,
                provider_port: 0,
                gateway_port: 0,
                gateway_ext: GatewayMode::Off,
                cargo_profile: a.cargo_profile.clone(),
                no_build: a.no_build,
                timeout: 120,
                start_delay: "none".into(),
                start_delay_seed: None,
                // Replica starts measured as compare's farms see them.
                startup_probe_ms: local::FINE_STARTUP_PROBE_MS,
            })?;
            started = true;
            FarmState::load(&state)?
        }
    };
    let result = (|| {
        if st.gateway_ext.is_some() {
            bail!(
                "the farm in {} runs gateway-ext, which would resize the pool during the measurement; start one with `farmctl up --gateway-ext off`",
                state.display()
            );
        }
        let stack = Stack::load(&st.stack_file)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(measure(&a, &st, &stack))
    })();
    if started {
        local::down(DownArgs {
            state: state.clone(),
            timeout: 60,
        })?;
    }
    let f = result?;
    let m = &f.task.metrics;
    println!(
        "replica start-up (scale call -> available): {}",
        f.start.line()
    );
    println!(
        "replica drain (scale-down call -> gone, idle): {}",
        f.drain.line()
    );
    println!("scale call: {}", f.call.line());
    println!(
        "per-task overhead (zero-work task, {} tasks): p50 {:.1} ms p95 {:.1} ms p99 {:.1} ms",
        m.completed,
        m.latency_p50_s * 1e3,
        m.latency_p95_s * 1e3,
        m.latency_p99_s * 1e3
    );
    let measured = Measured {
        start_s: f.start.mean(),
        drain_s: f.drain.mean(),
        scale_call_s: f.call.quantile(0.5),
        task_overhead_s: m.latency_p50_s,
        source: String::new(),
    };
    let base = Scenario::builtin("steady")?.platform;
    let platform = Platform {
        startup_delay: Dist::Empirical {
            values: f.start.0.clone(),
        },
        scale_down_delay: Dist::Empirical {
            values: f.drain.0.clone(),
        },
        scale_api_latency_s: measured.scale_call_s,
        failure_rate_per_hour: 0.0,
        per_function_cap: None,
        ..base
    };
    let file = CalibrationFile { platform, measured };
    let header = format!(
        "# farmctl calibrate: the local provider on this machine, real seconds.\n\
         # `platform:` is a scenario platform section (bounds and interval are\n\
         # the `steady` scenario's; keep your own); `measured:` is read by\n\
         # `farmctl compare --calibration` and is not part of a scenario.\n\
         # per-task overhead p50 {:.1} ms, p99 {:.1} ms over {} zero-work tasks.\n",
        m.latency_p50_s * 1e3,
        m.latency_p99_s * 1e3,
        m.completed
    );
    let text = header + &serde_yaml::to_string(&file)?;
    std::fs::write(&a.out, text).with_context(|| format!("writing {}", a.out.display()))?;
    println!("platform: {}", a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_summarise() {
        let mut s = Samples::default();
        for ms in [30, 10, 20, 40] {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.0, vec![0.01, 0.02, 0.03, 0.04]);
        assert!((s.mean() - 0.025).abs() < 1e-12);
        assert_eq!(s.quantile(0.5), 0.02);
        assert_eq!(s.quantile(1.0), 0.04);
        assert_eq!(Samples::default().quantile(0.5), 0.0);
    }

    #[test]
    fn a_calibration_file_round_trips_and_its_platform_is_a_scenario_section() {
        let file = CalibrationFile {
            platform: Scenario::builtin("steady").unwrap().platform,
            measured: Measured::default(),
        };
        let text = serde_yaml::to_string(&file).unwrap();
        let back: CalibrationFile = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, file);
        // The platform section drops into a scenario as is.
        let mut s = Scenario::builtin("steady").unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let mut doc: serde_yaml::Value = serde_yaml::to_value(&s).unwrap();
        doc["platform"] = v["platform"].clone();
        s = Scenario::from_yaml(&serde_yaml::to_string(&doc).unwrap()).unwrap();
        assert_eq!(s.platform, file.platform);
    }
}
