//! A replay with gateway-ext sizing the pool: the policy under test handed
//! to gateway-ext through the worker's annotations, and gateway-ext's
//! control clock held and restarted around the replay's start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::RunArgs;
use super::control::Bounds;
use crate::local::{Endpoint, FarmState};
use crate::shared::stack::{Farm, Stack};

/// Makes gateway-ext size `farm` with `policy` deciding every
/// `interval_real` (wall clock) on the scenario clock of speedup
/// `a.speedup`, and returns once it has taken the policy up, with its
/// tick decisions held (see [`clock`]).
#[allow(clippy::too_many_arguments)]
pub(super) async fn hand_over(
    client: &reqwest::Client,
    a: &RunArgs,
    st: &FarmState,
    gateway_ext: &Endpoint,
    stack: &Stack,
    farm: &Farm,
    policy: &str,
    interval_real: Duration,
    bounds: Bounds,
) -> Result<()> {
    let k = a.speedup;
    // gateway-ext discovers the policy from the worker's annotations; the
    // update rolls the replicas over, so it happens before the run.
    let mut dep = stack.deployment(
        &farm.worker,
        &BTreeMap::from([("NATS_URL".to_string(), st.nats_url())]),
    )?;
    let ann = &mut dep.annotations;
    ann.insert("com.rust-farm.policy".into(), policy.to_string());
    ann.insert(
        "com.rust-farm.interval".into(),
        format!("{}ms", interval_real.as_millis().max(1)),
    );
    ann.insert("com.rust-farm.min".into(), bounds.min.to_string());
    ann.insert("com.rust-farm.max".into(), bounds.max.to_string());
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
        "gateway-ext sizes {} with policy {policy} (every {:?})",
        farm.worker, interval_real
    );
    // gateway-ext sees the new annotations at its next discovery; the
    // replay must not start while its old loop still decides.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let adopted = async {
            let v: serde_json::Value = client
                .get(format!("{}/system/autoscaler", gateway_ext.url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v["farms"].as_array()?.iter().find(|f| {
                f["farm"] == farm.name.as_str()
                    && f["policy"] == policy
                    && f["time_scale"].as_f64() == Some(k)
            })?;
            Some(())
        };
        if adopted.await.is_some() {
            break;
        }
        if Instant::now() > until {
            bail!(
                "gateway-ext did not take up policy {policy} for {} within 60 s",
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
    clock(client, &gateway_ext.url, "hold", &farm.name)
        .await
        .context("holding tick decisions for the replay's setup")
}

/// `POST /system/autoscaler/{route}/{farm}` on gateway-ext (`hold` or
/// `restart` its control clock); an error unless gateway-ext accepted it.
pub(super) async fn clock(
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
