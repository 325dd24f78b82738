//! A deployed function: its spec, its replicas, and the reconciliation that
//! keeps the replicas at the desired count — the local counterpart of a
//! Kubernetes Deployment.
//!
//! Each replica is a *slot* driven by its own task: it waits the emulated
//! start delay (if any), spawns the process, polls its health route, and, if
//! the process dies on its own, restarts it in place after an exponential
//! backoff (a pod restarting its container). Stopping a slot sends SIGTERM,
//! waits up to the grace period for the process to drain and exit, then
//! SIGKILLs it.
//!
//! Counts are derived from the slots, never stored apart from them:
//! `replicas` is the number of slots not being stopped (pending, starting,
//! available, or waiting to restart), `availableReplicas` the number of those
//! whose health route answers 200.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::clock::format_rfc3339;
use crate::config::Config;
use crate::image::Launch;
use crate::logs::LogStore;
use crate::types::{FunctionDeployment, FunctionStatus, FunctionUsage};

/// Where OpenFaaS mounts secrets in a function's container. An env var value
/// under this path is rewritten to the replica's own secrets directory, so a
/// stack.yml written for OpenFaaS (`NATS_TOKEN_FILE: /var/openfaas/secrets/t`)
/// works unchanged here.
pub const OPENFAAS_SECRETS_PATH: &str = "/var/openfaas/secrets/";

/// Env var naming a replica's secrets directory.
pub const SECRETS_DIR_ENV: &str = "FARM_SECRETS_DIR";

/// A ready replica that was available this long before crashing restarts
/// with the initial backoff again (Kubernetes resets after 10 minutes; a
/// local farm wants a shorter memory).
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// Failed health polls in a row before an available replica stops counting
/// as available (Kubernetes' default failureThreshold).
const READINESS_FAILURES: u32 = 3;

/// Start records a function keeps (oldest dropped first): a bound on the
/// memory of a long-lived provider, far above what one run starts.
const MAX_START_RECORDS: usize = 4096;

/// Timeout of one health poll.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Host variables a replica inherits; everything else comes from the
/// deployment, as a container does not see its host's environment.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// The HTTP client shared by health polls and the invocation proxy.
pub(crate) type HttpClient = Client<HttpConnector, Body>;

/// What every function shares: configuration, logs, tasks, HTTP client.
pub(crate) struct Ctx {
    pub config: Config,
    pub logs: LogStore,
    pub tracker: TaskTracker,
    pub http: HttpClient,
    pub state_dir: PathBuf,
    rng: Mutex<Pcg64Mcg>,
    next_slot: AtomicU64,
}

impl Ctx {
    pub fn new(config: Config, logs: LogStore, state_dir: PathBuf) -> Self {
        let rng = match config.start_delay_seed {
            Some(seed) => Pcg64Mcg::seed_from_u64(seed),
            // Emulation needs variety, not secrecy: the clock and pid will do
            // (rand's OS entropy source is not enabled in this workspace).
            None => Pcg64Mcg::seed_from_u64(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
                    ^ u64::from(std::process::id()),
            ),
        };
        let http = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Ctx {
            config,
            logs,
            tracker: TaskTracker::new(),
            http,
            state_dir,
            rng: Mutex::new(rng),
            next_slot: AtomicU64::new(1),
        }
    }

    fn start_delay(&self) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        self.config.start_delay.sample(&mut *rng)
    }
}

/// A deployment resolved and validated at deploy time.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub spec: FunctionDeployment,
    pub launch: Launch,
    /// Secret name -> file holding its value.
    pub secrets: Vec<(String, PathBuf)>,
}

/// One replica start, as `GET /system/function/{name}/starts` reports it
/// (a farm-local extension, not an OpenFaaS route): when the slot was
/// created (the scale call that asked for it), the emulated start delay it
/// drew, and how long until its health route first answered 200. Restarts
/// of the same replica after a crash are not new starts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaStart {
    /// The replica's instance name (`<function>-<slot>`).
    pub instance: String,
    /// Wall clock (Unix µs) when the replica was asked for.
    pub requested_us: i64,
    /// The emulated start delay it waited before its process was spawned, seconds.
    pub emulated_delay_s: f64,
    /// Asked for -> first healthy, seconds: the emulated delay, the process
    /// start and the first successful poll. `None` while it never became
    /// available (still starting, or stopped before).
    pub available_after_s: Option<f64>,
}

/// A start record while the replica lives.
struct StartRec {
    id: u64,
    created: Instant,
    start: ReplicaStart,
}

/// Replica counts of a function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Replicas not being stopped.
    pub replicas: u64,
    /// Replicas whose health route answers.
    pub available: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the emulated start delay.
    Pending,
    /// Process spawned (or respawning), health not (or no longer) answering.
    Starting,
    /// Health answers 200.
    Ready,
    /// The process died; waiting to restart it.
    Backoff,
}

impl Phase {
    /// Scale-down order: replicas that serve nothing go first.
    fn stop_rank(self) -> u8 {
        match self {
            Phase::Backoff => 0,
            Phase::Pending => 1,
            Phase::Starting => 2,
            Phase::Ready => 3,
        }
    }
}

struct Slot {
    generation: u64,
    phase: Phase,
    port: Option<u16>,
    pid: Option<u32>,
    stop: watch::Sender<bool>,
    stopping: bool,
}

struct State {
    prepared: Arc<Prepared>,
    generation: u64,
    desired: u64,
    deleted: bool,
    slots: BTreeMap<u64, Slot>,
    /// Every replica start, in creation order (bounded).
    starts: VecDeque<StartRec>,
}

/// One deployed function.
pub(crate) struct Function {
    pub name: String,
    ctx: Arc<Ctx>,
    created_at: SystemTime,
    invocations: AtomicU64,
    rr: AtomicUsize,
    state: Mutex<State>,
    counts: watch::Sender<Counts>,
}

impl Function {
    /// Creates the function and starts `desired` replicas.
    pub fn start(ctx: Arc<Ctx>, prepared: Prepared, desired: u64) -> Arc<Function> {
        let f = Arc::new(Function {
            name: prepared.spec.service.clone(),
            ctx,
            created_at: SystemTime::now(),
            invocations: AtomicU64::new(0),
            rr: AtomicUsize::new(0),
            state: Mutex::new(State {
                prepared: Arc::new(prepared),
                generation: 1,
                desired,
                deleted: false,
                slots: BTreeMap::new(),
                starts: VecDeque::new(),
            }),
            counts: watch::Sender::new(Counts::default()),
        });
        f.with_state(reconcile);
        f
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on the state, then publishes the counts it leaves.
    fn with_state<R>(self: &Arc<Self>, op: impl FnOnce(&Arc<Self>, &mut State) -> R) -> R {
        let mut st = self.lock();
        let r = op(self, &mut st);
        let c = counts_of(&st);
        drop(st);
        self.counts.send_if_modified(|old| {
            let changed = *old != c;
            *old = c;
            changed
        });
        r
    }

    /// Sets the desired replica count.
    pub fn scale(self: &Arc<Self>, replicas: u64) {
        self.with_state(|f, st| {
            if st.desired != replicas {
                info!(function = %f.name, from = st.desired, to = replicas, "scale");
            }
            st.desired = replicas;
            reconcile(f, st);
        });
    }

    /// Replaces the spec; replicas are rolled over to it (new ones start,
    /// old ones stop as new ones become available).
    pub fn update(self: &Arc<Self>, prepared: Prepared) {
        self.with_state(|f, st| {
            st.prepared = Arc::new(prepared);
            st.generation += 1;
            info!(function = %f.name, generation = st.generation, "update");
            reconcile(f, st);
        });
    }

    /// Stops every replica; the function accepts no more work.
    pub fn delete(self: &Arc<Self>) {
        self.with_state(|f, st| {
            st.deleted = true;
            reconcile(f, st);
        });
    }

    /// The desired replica count.
    pub fn desired(&self) -> u64 {
        self.lock().desired
    }

    /// The minimum scale label (default 1), used by scale-from-zero.
    pub fn min_scale(&self) -> u64 {
        min_scale(&self.lock().prepared.spec).unwrap_or(1).max(1)
    }

    /// A receiver of count changes.
    pub fn subscribe(&self) -> watch::Receiver<Counts> {
        self.counts.subscribe()
    }

    /// The next available replica's port, round-robin.
    pub fn pick_endpoint(&self) -> Option<u16> {
        let st = self.lock();
        let ports: Vec<u16> = st
            .slots
            .values()
            .filter(|s| !s.stopping && s.phase == Phase::Ready)
            .filter_map(|s| s.port)
            .collect();
        drop(st);
        if ports.is_empty() {
            return None;
        }
        let i = self.rr.fetch_add(1, Ordering::Relaxed) % ports.len();
        Some(ports[i])
    }

    /// Counts one invocation.
    pub fn record_invocation(&self) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
    }

    /// The function's status as the API reports it.
    pub fn status(&self) -> FunctionStatus {
        let st = self.lock();
        let c = counts_of(&st);
        let pids: Vec<u32> = st
            .slots
            .values()
            .filter(|s| !s.stopping)
            .filter_map(|s| s.pid)
            .collect();
        let spec = st.prepared.spec.clone();
        drop(st);
        let memory: u64 = pids.iter().filter_map(|p| resident_bytes(*p)).sum();
        FunctionStatus {
            name: spec.service,
            image: spec.image,
            namespace: crate::DEFAULT_NAMESPACE.to_string(),
            env_process: spec.env_process,
            env_vars: spec.env_vars,
            constraints: spec.constraints,
            secrets: spec.secrets,
            labels: spec.labels,
            annotations: spec.annotations,
            limits: spec.limits,
            requests: spec.requests,
            read_only_root_filesystem: spec.read_only_root_filesystem,
            invocation_count: self.invocations.load(Ordering::Relaxed) as f64,
            replicas: c.replicas,
            available_replicas: c.available,
            created_at: format_rfc3339(self.created_at),
            usage: (memory > 0).then_some(FunctionUsage {
                total_memory_bytes: memory as f64,
            }),
        }
    }

    fn set_phase(self: &Arc<Self>, id: u64, phase: Phase) {
        self.with_state(|f, st| {
            if let Some(s) = st.slots.get_mut(&id) {
                s.phase = phase;
                if phase != Phase::Ready && phase != Phase::Starting {
                    s.port = None;
                    s.pid = None;
                }
            }
            reconcile(f, st);
        });
    }

    /// Every replica start this function remembers, oldest first.
    pub fn starts(&self) -> Vec<ReplicaStart> {
        self.lock().starts.iter().map(|r| r.start.clone()).collect()
    }

    fn record_delay(&self, id: u64, delay: Duration) {
        let mut st = self.lock();
        if let Some(r) = st.starts.iter_mut().rev().find(|r| r.id == id) {
            r.start.emulated_delay_s = delay.as_secs_f64();
        }
    }

    /// The first time a slot answers its health check (later recoveries
    /// and restarts keep the first figure).
    fn record_available(&self, id: u64) {
        let mut st = self.lock();
        if let Some(r) = st.starts.iter_mut().rev().find(|r| r.id == id)
            && r.start.available_after_s.is_none()
        {
            r.start.available_after_s = Some(r.created.elapsed().as_secs_f64());
        }
    }

    fn set_process(self: &Arc<Self>, id: u64, port: u16, pid: Option<u32>) {
        self.with_state(|_, st| {
            if let Some(s) = st.slots.get_mut(&id) {
                s.port = Some(port);
                s.pid = pid;
            }
        });
    }

    fn slot_gone(self: &Arc<Self>, id: u64) {
        self.with_state(|f, st| {
            st.slots.remove(&id);
            reconcile(f, st);
        });
    }
}

/// The `com.openfaas.scale.min` label, if set.
pub(crate) fn min_scale(spec: &FunctionDeployment) -> Option<u64> {
    spec.labels
        .get("com.openfaas.scale.min")?
        .trim()
        .parse()
        .ok()
}

fn counts_of(st: &State) -> Counts {
    let live = st.slots.values().filter(|s| !s.stopping);
    let (mut replicas, mut available) = (0, 0);
    for s in live {
        replicas += 1;
        available += u64::from(s.phase == Phase::Ready);
    }
    Counts {
        replicas,
        available,
    }
}

/// Brings the slots in line with the desired count and generation.
fn reconcile(f: &Arc<Function>, st: &mut State) {
    if st.deleted {
        let all: Vec<u64> = st
            .slots
            .iter()
            .filter(|(_, s)| !s.stopping)
            .map(|(id, _)| *id)
            .collect();
        stop_slots(st, &all);
        return;
    }
    let generation = st.generation;
    let current: Vec<u64> = st
        .slots
        .iter()
        .filter(|(_, s)| !s.stopping && s.generation == generation)
        .map(|(id, _)| *id)
        .collect();
    let old: Vec<u64> = st
        .slots
        .iter()
        .filter(|(_, s)| !s.stopping && s.generation != generation)
        .map(|(id, _)| *id)
        .collect();
    let n = current.len() as u64;
    if n < st.desired {
        for _ in n..st.desired {
            spawn_slot(f, st);
        }
    } else if n > st.desired {
        let chosen = choose_to_stop(st, &current, (n - st.desired) as usize);
        stop_slots(st, &chosen);
    }
    // Old-generation replicas keep serving until enough new ones are up.
    let current_ready = current
        .iter()
        .filter(|id| st.slots.get(id).is_some_and(|s| s.phase == Phase::Ready))
        .count();
    let keep_old = st.desired.saturating_sub(current_ready as u64) as usize;
    if old.len() > keep_old {
        let chosen = choose_to_stop(st, &old, old.len() - keep_old);
        stop_slots(st, &chosen);
    }
}

/// Picks `k` of `ids` to stop: not-ready before ready, newest first.
fn choose_to_stop(st: &State, ids: &[u64], k: usize) -> Vec<u64> {
    let mut ranked: Vec<(u8, std::cmp::Reverse<u64>)> = ids
        .iter()
        .filter_map(|id| {
            st.slots
                .get(id)
                .map(|s| (s.phase.stop_rank(), std::cmp::Reverse(*id)))
        })
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(k)
        .map(|(_, std::cmp::Reverse(id))| id)
        .collect()
}

fn stop_slots(st: &mut State, ids: &[u64]) {
    for id in ids {
        if let Some(s) = st.slots.get_mut(id) {
            s.stopping = true;
            s.stop.send_replace(true);
        }
    }
}

fn spawn_slot(f: &Arc<Function>, st: &mut State) {
    let id = f.ctx.next_slot.fetch_add(1, Ordering::Relaxed);
    let (stop_tx, stop_rx) = watch::channel(false);
    st.slots.insert(
        id,
        Slot {
            generation: st.generation,
            phase: Phase::Pending,
            port: None,
            pid: None,
            stop: stop_tx,
            stopping: false,
        },
    );
    if st.starts.len() >= MAX_START_RECORDS {
        st.starts.pop_front();
    }
    st.starts.push_back(StartRec {
        id,
        created: Instant::now(),
        start: ReplicaStart {
            instance: format!("{}-{id}", f.name),
            requested_us: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            emulated_delay_s: 0.0,
            available_after_s: None,
        },
    });
    let prepared = st.prepared.clone();
    f.ctx
        .tracker
        .spawn(run_slot(f.clone(), id, prepared, stop_rx));
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender means the slot is gone: treat it as a stop too.
    let _ = stop.wait_for(|s| *s).await;
}

enum Outcome {
    /// Stopped on request (drained or killed).
    Stopped,
    /// Exited on its own (or never started) after being available this long.
    Crashed { healthy_for: Duration },
}

async fn run_slot(
    f: Arc<Function>,
    id: u64,
    prepared: Arc<Prepared>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = &f.ctx.config;
    let instance = format!("{}-{id}", f.name);
    let dir = f.ctx.state_dir.join(&instance);
    let delay = f.ctx.start_delay();
    f.record_delay(id, delay);
    if !delay.is_zero() {
        debug!(function = %f.name, %instance, delay_s = delay.as_secs_f64(), "emulated start delay");
        tokio::select! {
            _ = sleep(delay) => {}
            _ = stopped(&mut stop) => {
                f.slot_gone(id);
                return;
            }
        }
    }
    let mut backoff = cfg.restart_backoff;
    let mut restarts = 0u32;
    while !*stop.borrow() {
        f.set_phase(id, Phase::Starting);
        let outcome = match spawn_replica(&f, &instance, &dir, &prepared) {
            Ok((child, port)) => {
                f.set_process(id, port, child.id());
                info!(function = %f.name, %instance, port, pid = child.id(), restarts, "replica spawned");
                supervise(&f, id, &instance, child, port, &mut stop).await
            }
            Err(e) => {
                warn!(function = %f.name, %instance, error = %e, "replica failed to start");
                f.ctx.logs.push(
                    &f.name,
                    &instance,
                    format!("farm-local: cannot start replica: {e}"),
                );
                Outcome::Crashed {
                    healthy_for: Duration::ZERO,
                }
            }
        };
        match outcome {
            Outcome::Stopped => break,
            Outcome::Crashed { healthy_for } => {
                restarts += 1;
                if healthy_for >= BACKOFF_RESET_AFTER {
                    backoff = cfg.restart_backoff;
                }
                f.set_phase(id, Phase::Backoff);
                info!(function = %f.name, %instance, backoff_ms = backoff.as_millis() as u64, restarts, "restarting after backoff");
                tokio::select! {
                    _ = sleep(backoff) => {}
                    _ = stopped(&mut stop) => break,
                }
                backoff = (backoff * 2).min(cfg.restart_backoff_max);
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(%instance, error = %e, "cannot remove replica directory");
    }
    f.slot_gone(id);
}

/// Spawns the replica's process on a free port.
fn spawn_replica(
    f: &Arc<Function>,
    instance: &str,
    dir: &Path,
    prepared: &Prepared,
) -> std::io::Result<(Child, u16)> {
    let cfg = &f.ctx.config;
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    for (name, src) in &prepared.secrets {
        std::fs::copy(src, secrets.join(name))?;
    }
    let port = free_port()?;
    let launch = &prepared.launch;
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .current_dir(&launch.workdir)
        .env_clear();
    for key in INHERITED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("HOSTNAME", instance).env(SECRETS_DIR_ENV, &secrets);
    if !prepared.spec.env_process.is_empty() {
        cmd.env("fprocess", &prepared.spec.env_process);
    }
    let secrets_prefix = format!("{}/", secrets.display());
    for (k, v) in &prepared.spec.env_vars {
        match v.strip_prefix(OPENFAAS_SECRETS_PATH) {
            Some(rest) => cmd.env(k, format!("{secrets_prefix}{rest}")),
            None => cmd.env(k, cfg.service_aliases.apply(v)),
        };
    }
    for key in &cfg.port_env {
        cmd.env(key, port.to_string());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Own process group: a Ctrl-C on the provider's terminal must not hit
        // replicas directly; the provider drains them itself.
        .process_group(0);
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        f.ctx
            .tracker
            .spawn(capture(f.clone(), instance.to_string(), out));
    }
    if let Some(err) = child.stderr.take() {
        f.ctx
            .tracker
            .spawn(capture(f.clone(), instance.to_string(), err));
    }
    Ok((child, port))
}

async fn capture<R: tokio::io::AsyncRead + Unpin>(f: Arc<Function>, instance: String, stream: R) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        f.ctx.logs.push(&f.name, &instance, line);
    }
}

/// A port that was free a moment ago (the replica binds it itself).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Watches a running replica until it exits or is told to stop.
async fn supervise(
    f: &Arc<Function>,
    id: u64,
    instance: &str,
    mut child: Child,
    port: u16,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let cfg = &f.ctx.config;
    let spawned = Instant::now();
    let mut ready_since: Option<Instant> = None;
    let mut failures = 0u32;
    let mut next = Instant::now();
    enum Event {
        Stop,
        Exit(std::io::Result<std::process::ExitStatus>),
        Probe(bool),
    }
    loop {
        let probe = async {
            sleep_until(next).await;
            probe(&f.ctx, port).await
        };
        let ev = tokio::select! {
            _ = stopped(stop) => Event::Stop,
            status = child.wait() => Event::Exit(status),
            ok = probe => Event::Probe(ok),
        };
        match ev {
            Event::Stop => {
                terminate(f, instance, &mut child).await;
                return Outcome::Stopped;
            }
            Event::Exit(status) => {
                let status = status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                warn!(function = %f.name, %instance, %status, "replica exited on its own");
                return Outcome::Crashed {
                    healthy_for: ready_since.map(|t| t.elapsed()).unwrap_or_default(),
                };
            }
            Event::Probe(ok) => {
                if ok {
                    failures = 0;
                    if ready_since.is_none() {
                        ready_since = Some(Instant::now());
                        info!(
                            function = %f.name, %instance,
                            start_ms = spawned.elapsed().as_millis() as u64,
                            "replica available"
                        );
                        f.record_available(id);
                        f.set_phase(id, Phase::Ready);
                    }
                } else if ready_since.is_some() {
                    failures += 1;
                    if failures >= READINESS_FAILURES {
                        warn!(function = %f.name, %instance, "replica no longer answers its health check");
                        ready_since = None;
                        f.set_phase(id, Phase::Starting);
                    }
                }
                let period = if ready_since.is_some() {
                    cfg.readiness_period
                } else {
                    cfg.startup_probe
                };
                next = Instant::now() + period;
            }
        }
    }
}

/// One health poll: true when the route answers 200.
async fn probe(ctx: &Ctx, port: u16) -> bool {
    let uri = format!("http://127.0.0.1:{port}{}", ctx.config.health_path);
    let Ok(req) = hyper::Request::get(uri).body(Body::empty()) else {
        return false;
    };
    matches!(timeout(PROBE_TIMEOUT, ctx.http.request(req)).await, Ok(Ok(r)) if r.status() == hyper::StatusCode::OK)
}

/// SIGTERM, wait up to the grace period for the drain, then SIGKILL.
async fn terminate(f: &Function, instance: &str, child: &mut Child) {
    let grace = f.ctx.config.termination_grace;
    let started = Instant::now();
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    if let Ok(pid) = i32::try_from(pid)
        && let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM)
    {
        warn!(function = %f.name, %instance, error = %e, "SIGTERM failed");
    }
    match timeout(grace, child.wait()).await {
        Ok(Ok(status)) => {
            info!(
                function = %f.name, %instance, %status,
                drain_ms = started.elapsed().as_millis() as u64,
                "replica stopped"
            );
        }
        Ok(Err(e)) => {
            warn!(function = %f.name, %instance, error = %e, "waiting for replica failed")
        }
        Err(_) => {
            warn!(function = %f.name, %instance, grace_s = grace.as_secs_f64(), "replica did not exit within the grace period; SIGKILL");
            if let Err(e) = child.kill().await {
                warn!(function = %f.name, %instance, error = %e, "SIGKILL failed");
            }
        }
    }
}

/// Resident memory of a process from /proc, bytes (Linux only; `None` elsewhere).
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
