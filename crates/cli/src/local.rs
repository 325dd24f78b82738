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
//! ([`farm_local::ServiceAliases`], `NATS_SERVICES` in [`supervisor`]); on a
//! cluster to its first node, from which the client learns the others (the
//! servers' INFO `connect_urls`). Such a replica that starts while the first
//! node is down cannot connect until it is back.

mod build;
mod down;
mod nats;
mod state;
mod status;
mod supervisor;
mod up;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

pub use self::down::down;
pub use self::state::{Endpoint, FarmState};
pub use self::status::status;
pub use self::supervisor::supervise;
pub use self::up::{function_status, up};

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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
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

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")
}
