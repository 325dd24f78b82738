//! The supervisor (`farmctl __supervise`): owns nats-server, the provider
//! and gateway-ext for as long as the farm is up.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::{info, warn};

use super::state::{Endpoint, FarmState, STATE_FILE, clean_state};
use super::{GatewayMode, SuperviseArgs, free_port, http_client, nats, runtime, tail};
use crate::shared::policy::ort_library;

/// The NATS service addresses an OpenFaaS stack names (the `openfaas`
/// namespace's short and fully qualified names), resolved to the local
/// nats-server.
const NATS_SERVICES: [&str; 2] = ["nats.openfaas:4222", "nats.openfaas.svc.cluster.local:4222"];

/// Run the supervisor (`farmctl __supervise`, started by `up`).
pub fn supervise(a: SuperviseArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .try_init();
    let rt = runtime()?;
    let result = rt.block_on(supervise_async(&a));
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "supervisor failed");
    }
    clean_state(&a.state);
    result
}

/// A child process of the supervisor, stopped with SIGTERM then SIGKILL.
pub(super) struct Child {
    pub(super) name: &'static str,
    pub(super) child: tokio::process::Child,
}

impl Child {
    pub(super) async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => info!(process = self.name, %status, "stopped"),
            _ => {
                warn!(process = self.name, "did not stop in time; killing");
                let _ = self.child.kill().await;
            }
        }
    }
}

/// gateway-ext's binary: `GATEWAY_EXT`, next to farmctl, or on `PATH`.
fn find_gateway_ext() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GATEWAY_EXT") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let beside = std::env::current_exe().ok()?.parent()?.join("gateway-ext");
    if beside.is_file() {
        return Some(beside);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("gateway-ext"))
        .find(|p| p.is_file())
}

async fn start_gateway_ext(
    a: &SuperviseArgs,
    provider_url: &str,
    nats_url: &str,
) -> Result<(Child, String)> {
    let bin = find_gateway_ext().ok_or_else(|| anyhow!("its binary was not found (build it with `cargo build --release -p gateway-ext`, or set GATEWAY_EXT)"))?;
    let port = if a.gateway_port == 0 {
        free_port()?
    } else {
        a.gateway_port
    };
    let url = format!("http://127.0.0.1:{port}");
    let log_path = a.state.join("logs/gateway-ext.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.env("UPSTREAM_URL", provider_url)
        .env("GATEWAY_EXT_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("GATEWAY_EXT_GRPC_ADDR", "off")
        .env("NATS_URL", nats_url)
        .env("DISCOVERY_INTERVAL", "2s")
        // Every decision of a run stays readable for `farmctl compare`.
        .env("RECORD_CAPACITY", "100000")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    // `onnx:` policies need ONNX Runtime: the repository's venv copy when
    // the environment names none.
    if std::env::var_os("ORT_DYLIB_PATH").is_none()
        && let Ok(lib) = ort_library()
    {
        cmd.env("ORT_DYLIB_PATH", lib);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let client = http_client()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{url}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok((
                Child {
                    name: "gateway-ext",
                    child,
                },
                url,
            ));
        }
        if let Some(status) = child.try_wait()? {
            bail!("it exited ({status}):\n{}", tail(&log_path, 20));
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            bail!(
                "it did not answer /healthz within 20s:\n{}",
                tail(&log_path, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn supervise_async(a: &SuperviseArgs) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;

    let mut nats_nodes = nats::start(a).await?;
    let nodes: Vec<Endpoint> = nats_nodes
        .iter()
        .map(|n| Endpoint {
            pid: n.child.child.id().unwrap_or_default(),
            url: n.url(),
        })
        .collect();
    let nats_url = nodes
        .iter()
        .map(|n| n.url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let nats_port = nats_nodes[0].port;
    info!(url = %nats_url, "nats-server ready");

    let image_store = a.state.join("images");
    let mut service_aliases = farm_local::ServiceAliases::default();
    for service in NATS_SERVICES {
        service_aliases
            .insert(service, &format!("127.0.0.1:{nats_port}"))
            .map_err(|e| anyhow!("aliasing {service}: {e}"))?;
    }
    let config = farm_local::Config {
        port: a.provider_port,
        image_store: image_store.clone(),
        state_dir: Some(a.state.join("replicas")),
        secrets_dir: a.state.join("secrets"),
        // Workers drain within FARM_DRAIN_GRACE (25 s by default).
        termination_grace: Duration::from_secs(30),
        start_delay: farm_local::StartDelay::parse(&a.start_delay)
            .map_err(|e| anyhow!("--start-delay {:?}: {e}", a.start_delay))?,
        start_delay_seed: a.start_delay_seed,
        startup_probe: Duration::from_millis(a.startup_probe_ms.max(1)),
        service_aliases,
        ..farm_local::Config::default()
    };
    let provider = farm_local::Provider::new(config)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.provider_port))
        .await
        .with_context(|| format!("binding the provider on 127.0.0.1:{}", a.provider_port))?;
    let provider_url = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(provider.run(listener, async move {
        let _ = stop_rx.await;
    }));
    info!(url = %provider_url, "provider ready");

    let (mut gateway, note) = match a.gateway_ext {
        GatewayMode::Off => (None, "disabled (--gateway-ext off)".to_string()),
        mode => match start_gateway_ext(a, &provider_url, &nats_url).await {
            Ok((c, url)) => (Some((c, url)), String::new()),
            Err(e) if mode == GatewayMode::Auto => {
                warn!(error = %format!("{e:#}"), "going on without gateway-ext");
                (
                    None,
                    format!("{e:#}")
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                )
            }
            Err(e) => return Err(e.context("gateway-ext (--gateway-ext on)")),
        },
    };

    let state = FarmState {
        supervisor_pid: std::process::id(),
        stack_file: a.stack.clone(),
        state_dir: a.state.clone(),
        image_store,
        nats: nodes[0].clone(),
        nats_nodes: nodes,
        provider_url,
        gateway_ext: gateway.as_ref().map(|(c, url)| Endpoint {
            pid: c.child.id().unwrap_or_default(),
            url: url.clone(),
        }),
        gateway_ext_note: note,
    };
    let tmp = a.state.join(".state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&state)?)?;
    std::fs::rename(&tmp, a.state.join(STATE_FILE))?;
    info!("farm platform up");

    let why = tokio::select! {
        _ = term.recv() => "SIGTERM".to_string(),
        _ = int.recv() => "SIGINT".to_string(),
        why = nats::all_exited(&mut nats_nodes) => why,
        r = &mut server => format!("provider stopped ({r:?})"),
    };
    info!(reason = %why, "stopping the farm");
    if let Some((g, _)) = gateway.as_mut() {
        g.stop(Duration::from_secs(10)).await;
    }
    let _ = stop_tx.send(());
    // Replicas drain (SIGTERM, grace, SIGKILL) before run() returns.
    match tokio::time::timeout(Duration::from_secs(45), &mut server).await {
        Ok(Ok(Ok(()))) => info!("provider stopped, replicas drained"),
        Ok(r) => warn!(result = ?r, "provider stopped with an error"),
        Err(_) => warn!("provider did not stop in 45s"),
    }
    nats::stop_all(&mut nats_nodes).await;
    info!("farm stopped");
    Ok(())
}
