//! `farmctl up`: build, start the supervisor, wait for the platform, then
//! deploy every function and wait for its replicas.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use farm_local::{FunctionDeployment, FunctionStatus, ImageStore};
use tracing::info;

use super::build::build_all;
use super::nats::find_nats_server;
use super::state::{FarmState, STATE_FILE, alive};
use super::{UpArgs, http_client, runtime, tail};
use crate::shared::stack::Stack;

/// Run `farmctl up`.
pub fn up(a: UpArgs) -> Result<()> {
    let state_dir = std::path::absolute(&a.state).context("state directory")?;
    let stack_file = std::path::absolute(&a.file).context("stack file")?;
    if let Ok(text) = std::fs::read_to_string(state_dir.join(STATE_FILE))
        && let Ok(old) = serde_json::from_str::<FarmState>(&text)
    {
        if alive(old.supervisor_pid) {
            bail!(
                "a farm is already up in {} (supervisor {}); run `farmctl down` first",
                state_dir.display(),
                old.supervisor_pid
            );
        }
        std::fs::remove_file(state_dir.join(STATE_FILE)).ok();
    }
    farm_local::StartDelay::parse(&a.start_delay)
        .map_err(|e| anyhow!("--start-delay {:?}: {e}", a.start_delay))?;
    let stack = Stack::load(&stack_file)?;
    println!(
        "{} (version {}, provider {} {}): {} functions",
        stack_file.display(),
        stack.version,
        stack.provider.name,
        stack.provider.gateway,
        stack.functions.len()
    );
    let nats = find_nats_server(&stack.dir)?;
    for sub in ["images", "logs", "secrets"] {
        std::fs::create_dir_all(state_dir.join(sub))
            .with_context(|| format!("creating {}", state_dir.join(sub).display()))?;
    }
    let images = ImageStore::new(state_dir.join("images"));
    if !a.no_build {
        build_all(&stack, &images, &state_dir, &a.cargo_profile)?;
    }

    let exe = std::env::current_exe().context("locating the farmctl executable")?;
    let log_path = state_dir.join("logs/supervisor.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__supervise")
        .arg("--state")
        .arg(&state_dir)
        .arg("--stack")
        .arg(&stack_file)
        .arg("--nats")
        .arg(&nats)
        .arg("--nats-port")
        .arg(a.nats_port.to_string())
        .arg("--nats-cluster")
        .arg(a.nats_cluster.to_string())
        .arg("--provider-port")
        .arg(a.provider_port.to_string())
        .arg("--gateway-port")
        .arg(a.gateway_port.to_string())
        .arg("--gateway-ext")
        .arg(format!("{:?}", a.gateway_ext).to_lowercase())
        .arg("--start-delay")
        .arg(&a.start_delay);
    if let Some(seed) = a.start_delay_seed {
        cmd.arg("--start-delay-seed").arg(seed.to_string());
    }
    cmd.arg("--startup-probe-ms")
        .arg(a.startup_probe_ms.max(1).to_string());
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: the terminal's Ctrl-C does not reach it, and
    // `down` can signal everything it started at once.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("starting the farm supervisor")?;

    let timeout = Duration::from_secs(a.timeout);
    let deadline = Instant::now() + timeout;
    let state = loop {
        if let Ok(text) = std::fs::read_to_string(state_dir.join(STATE_FILE))
            && let Ok(st) = serde_json::from_str::<FarmState>(&text)
        {
            break st;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the farm supervisor stopped ({status}) before the platform was up:\n{}",
                tail(&log_path, 30)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the platform did not come up within {}s:\n{}",
                a.timeout,
                tail(&log_path, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The supervisor outlives this command; nothing here waits for it.
    drop(child);

    let rt = runtime()?;
    rt.block_on(deploy_all(&stack, &state, timeout))?;

    println!("farm is up (state: {})", state_dir.display());
    for n in state.nats_nodes() {
        println!(
            "  nats-server   {}  (pid {}, store {})",
            n.url,
            n.pid,
            state_dir.join("nats").display()
        );
    }
    println!(
        "  provider      {}  (farm-local, in supervisor pid {})",
        state.provider_url, state.supervisor_pid
    );
    match &state.gateway_ext {
        Some(g) => println!("  gateway-ext   {}  (pid {})", g.url, g.pid),
        None => println!("  gateway-ext   not running: {}", state.gateway_ext_note),
    }
    for name in stack.functions.keys() {
        println!(
            "  function      {name:<20} {}/function/{name}",
            state.gateway_url()
        );
    }
    println!("  logs          {}", state_dir.join("logs").display());
    Ok(())
}

/// Deploys every function (PUT, then POST when new, like faas-cli) and
/// waits until each has its minimum replicas available.
async fn deploy_all(stack: &Stack, state: &FarmState, timeout: Duration) -> Result<()> {
    let client = http_client()?;
    let extra = BTreeMap::from([("NATS_URL".to_string(), state.nats_url())]);
    let url = format!("{}/system/functions", state.provider_url);
    for name in stack.functions.keys() {
        let dep: FunctionDeployment = stack.deployment(name, &extra)?;
        let r = client
            .put(&url)
            .json(&dep)
            .send()
            .await
            .with_context(|| format!("deploying {name}"))?;
        let r = if r.status() == reqwest::StatusCode::NOT_FOUND {
            client
                .post(&url)
                .json(&dep)
                .send()
                .await
                .with_context(|| format!("deploying {name}"))?
        } else {
            r
        };
        if !r.status().is_success() {
            let code = r.status();
            bail!(
                "deploying {name}: {code}: {}",
                r.text().await.unwrap_or_default().trim()
            );
        }
        info!(function = %name, "deployed");
    }
    for name in stack.functions.keys() {
        let (min, _) = stack.scale_bounds(name);
        let want = u64::from(min.max(1));
        let deadline = Instant::now() + timeout;
        loop {
            let st = function_status(&client, &state.provider_url, name).await?;
            if st.available_replicas >= want {
                println!(
                    "{name}: {}/{} replicas available",
                    st.available_replicas, st.replicas
                );
                break;
            }
            if Instant::now() > deadline {
                let logs = client
                    .get(format!(
                        "{}/system/logs?name={name}&tail=20",
                        state.provider_url
                    ))
                    .send()
                    .await
                    .ok();
                let logs = match logs {
                    Some(r) => r.text().await.unwrap_or_default(),
                    None => String::new(),
                };
                bail!(
                    "{name} has {}/{want} replicas available after {}s; its last log lines:\n{logs}\n(the farm stays up: `farmctl down` stops it)",
                    st.available_replicas,
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// `GET /system/function/{name}`.
pub async fn function_status(
    client: &reqwest::Client,
    provider: &str,
    name: &str,
) -> Result<FunctionStatus> {
    let r = client
        .get(format!("{provider}/system/function/{name}"))
        .send()
        .await
        .with_context(|| format!("asking the provider about {name}"))?;
    if !r.status().is_success() {
        bail!("provider: {name}: {}", r.status());
    }
    r.json()
        .await
        .with_context(|| format!("provider: {name}: bad status JSON"))
}
