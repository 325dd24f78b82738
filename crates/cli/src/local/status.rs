//! `farmctl status`: the farm's processes, functions and queues.

use anyhow::{Context, Result};
use farm_local::FunctionStatus;
use serde::Serialize;

use super::state::{FarmState, alive};
use super::{StatusArgs, http_client, runtime};
use crate::shared::stack::Stack;

/// One function in `farmctl status`.
#[derive(Debug, Clone, Serialize)]
struct FunctionRow {
    name: String,
    image: String,
    replicas: u64,
    available: u64,
    invocations: f64,
}

/// One farm in `farmctl status`.
#[derive(Debug, Clone, Serialize)]
struct FarmRow {
    farm: String,
    worker: String,
    /// Tasks waiting (JetStream `num_pending` of the workers consumer).
    queued: Option<u64>,
    /// Tasks held by workers (`num_ack_pending`).
    in_flight: Option<u64>,
    /// The collector's latest snapshot, as JSON.
    snapshot: Option<serde_json::Value>,
    /// Run-long QoS: hits / completed.
    qos: Option<f64>,
}

/// Run `farmctl status`.
pub fn status(a: StatusArgs) -> Result<()> {
    let st = FarmState::load(&std::path::absolute(&a.state)?)?;
    let stack = Stack::load(&st.stack_file)?;
    let rt = runtime()?;
    let (functions, farms) = rt.block_on(async {
        let client = http_client()?;
        let r = client
            .get(format!("{}/system/functions", st.provider_url))
            .send()
            .await
            .context("asking the provider")?;
        let list: Vec<FunctionStatus> = r.json().await.context("provider: bad function list")?;
        let functions: Vec<FunctionRow> = list
            .into_iter()
            .map(|f| FunctionRow {
                name: f.name,
                image: f.image,
                replicas: f.replicas,
                available: f.available_replicas,
                invocations: f.invocation_count,
            })
            .collect();
        let nats = st.connect_nats().await?;
        let js = async_nats::jetstream::new(nats.clone());
        let mut farms = Vec::new();
        for farm in stack.farms()?.into_values() {
            let names = farm_runtime::names::FarmNames::new(&farm.name)?;
            let consumer = match js.get_stream(names.tasks_stream()).await {
                Ok(s) => s.consumer_info(names.workers_consumer()).await.ok(),
                Err(_) => None,
            };
            let snapshot: Option<serde_json::Value> = match client
                .get(format!(
                    "{}/function/{}/metrics/snapshot",
                    st.provider_url, farm.collector
                ))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r.json().await.ok(),
                _ => None,
            };
            let qos = snapshot.as_ref().and_then(|s| {
                let done = s["completed"].as_f64()?;
                (done > 0.0).then(|| s["qos_hits"].as_f64().unwrap_or(0.0) / done)
            });
            farms.push(FarmRow {
                farm: farm.name.clone(),
                worker: farm.worker.clone(),
                queued: consumer.as_ref().map(|c| c.num_pending),
                in_flight: consumer.as_ref().map(|c| c.num_ack_pending as u64),
                snapshot,
                qos,
            });
        }
        nats.flush().await.ok();
        anyhow::Ok((functions, farms))
    })?;
    if a.json {
        let v = serde_json::json!({"state": st, "functions": functions, "farms": farms});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for n in st.nats_nodes() {
        println!(
            "nats-server {} (pid {}, {})",
            n.url,
            n.pid,
            if alive(n.pid) { "running" } else { "down" }
        );
    }
    println!(
        "provider {}   gateway-ext {}",
        st.provider_url,
        match &st.gateway_ext {
            Some(g) => g.url.clone(),
            None => format!("off ({})", st.gateway_ext_note),
        }
    );
    println!(
        "{:<24} {:>9} {:>10} {:>12}  image",
        "function", "replicas", "available", "invocations"
    );
    for f in &functions {
        println!(
            "{:<24} {:>9} {:>10} {:>12}  {}",
            f.name, f.replicas, f.available, f.invocations, f.image
        );
    }
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |x| x.to_string());
    for f in &farms {
        let s = f.snapshot.as_ref();
        let num = |k: &str| s.and_then(|s| s[k].as_f64());
        println!(
            "farm {}: queued {}, in flight {}, completed {}, failed {}, QoS {} (window {})",
            f.farm,
            opt(f.queued),
            opt(f.in_flight),
            num("completed").map_or("?".into(), |v| format!("{v:.0}")),
            num("failed").map_or("?".into(), |v| format!("{v:.0}")),
            f.qos.map_or("-".into(), |q| format!("{:.2} %", q * 100.0)),
            num("window_qos").map_or("-".into(), |q| format!("{:.2} %", q * 100.0)),
        );
    }
    Ok(())
}
