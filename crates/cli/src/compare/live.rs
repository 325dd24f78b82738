//! The live side of a comparison: one policy's run on a fresh local farm,
//! and what the provider and gateway-ext recorded of it.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use farm_model::scenario::{Scenario, Workload};
use farm_model::signals::Signals;
use serde::Deserialize;

use super::{CompareArgs, Driver};
use crate::local::{self, DownArgs, FarmState, GatewayMode, UpArgs};
use crate::run::{self, RunArgs, Tick};
use crate::shared::policy::make_policy;
use crate::shared::stack::Stack;

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

pub(super) struct Ctx<'a> {
    pub(super) a: &'a CompareArgs,
    pub(super) scenario: &'a Scenario,
    pub(super) workload: &'a Workload,
    pub(super) seed: u64,
    pub(super) state: PathBuf,
    pub(super) emulation: String,
}

/// A live run and, with gateway-ext driving, the policies it reported.
pub(super) struct LiveRun {
    pub(super) live: run::Live,
    pub(super) decided_by: Vec<String>,
    /// The worker's replica starts from the provider (`None` when it
    /// could not say: a provider without the route).
    pub(super) starts: Option<Vec<farm_local::ReplicaStart>>,
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
pub(super) fn live_once(c: &Ctx<'_>, policy_spec: &str, build: bool) -> Result<LiveRun> {
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
