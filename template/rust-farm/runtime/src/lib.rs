//! The rust-farm worker runtime.
//!
//! A function developer writes one handler,
//! `async fn handle(task: Task) -> Result<Output, HandlerError>`, and its
//! `main` calls [`run`]. The runtime then:
//!
//! 1. parses the configuration from the environment ([`config`]), exiting 64
//!    with every problem listed when it is wrong;
//! 2. serves HTTP on the of-watchdog upstream port ([`http`]): `/_/health`
//!    and `POST /` (synchronous invocation); with `FARM_WATCHDOG_LOCK` set,
//!    keeps of-watchdog's lock file present exactly while ready
//!    ([`watchdog`]), so probes through the watchdog see the runtime's
//!    readiness;
//! 3. connects to NATS ([`nats`]; refuses servers older than 2.10), creates
//!    or binds the farm's streams and the `workers` consumer ([`topology`]);
//! 4. pulls tasks and runs the handler on up to `FARM_CONCURRENCY` at once
//!    ([`worker`]): result published (message id = task id), then the task
//!    acked; failures retried, then dead-lettered; a task that reached the
//!    consumer's max deliveries without an ack (its replica killed on the
//!    last delivery) is dead-lettered from the server's advisory, never left
//!    stuck in the queue;
//! 5. on SIGTERM/SIGINT drains against one deadline, `FARM_DRAIN_GRACE`
//!    after the signal: stops pulling, answers new `POST /` with 503, and
//!    finishes (and acks) what it holds while the invocations in flight
//!    finish, both at once (an invocation still running at the deadline is
//!    cancelled and answered 503); then exits 0 (1 if held tasks outlasted
//!    the grace: they are given back). Naks and the final flush take at most
//!    [`config::WATCHDOG_DRAIN_MARGIN`] after the deadline, so of-watchdog's
//!    `healthcheck_interval` outwaits the whole drain.
//!
//! ```no_run
//! use farm_runtime::{HandlerError, Output, Task};
//!
//! #[derive(serde::Deserialize)]
//! struct Job { n: u64 }
//!
//! async fn handle(task: Task) -> Result<Output, HandlerError> {
//!     let job: Job = task.json()?;
//!     Output::json(&(job.n * 2))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     farm_runtime::run(handle)
//! }
//! ```
//!
//! In tests, [`serve`] runs the same thing in-process with a parsed
//! [`Config`] and any shutdown future.

pub mod config;
pub mod handler;
pub mod http;
pub mod names;
pub mod nats;
pub mod proto;
pub mod replicas;
pub mod telemetry;
pub mod topology;
pub mod watchdog;
pub mod worker;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::SetOnce;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub use config::Config;
pub use handler::{Handler, HandlerError, Output, SharedHandler, Task};

/// Longest wait for the final flush of acks on exit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// How long tasks aborted at the drain deadline get to send their naks.
/// With [`FLUSH_TIMEOUT`] it makes up [`config::WATCHDOG_DRAIN_MARGIN`].
const NAK_TIMEOUT: Duration = Duration::from_secs(2);

const _: () = assert!(
    NAK_TIMEOUT.as_millis() + FLUSH_TIMEOUT.as_millis()
        <= config::WATCHDOG_DRAIN_MARGIN.as_millis(),
    "what the drain takes after its deadline must fit the watchdog margin"
);

/// How long the HTTP server gets, once the invocations still running at
/// the drain deadline were answered 503, to write those answers and close.
const CUT_FLUSH: Duration = Duration::from_secs(1);

/// Exit code for a configuration error (`EX_USAGE` of sysexits.h).
pub const EXIT_CONFIG: u8 = 64;

/// Why a replica stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// NATS refused us or is unusable (not retried).
    #[error(transparent)]
    Nats(#[from] nats::NatsError),
    /// The topology conflicts with this configuration.
    #[error(transparent)]
    Topology(#[from] topology::TopologyError),
    /// Held tasks did not finish within the drain grace period; they were
    /// given back to the stream.
    #[error(
        "drain grace period of {grace:?} expired with tasks still running; they were given back for redelivery"
    )]
    DrainTimeout {
        /// The grace period.
        grace: Duration,
    },
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs a worker replica with configuration from the environment; returns
/// the process exit code (0 after a clean drain, 64 on a configuration error,
/// 1 on any other failure).
pub fn run<H: Handler>(handler: H) -> ExitCode {
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(cfg.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %RunError::Runtime(e), "fatal");
            return ExitCode::FAILURE;
        }
    };
    let handler: SharedHandler = Arc::new(handler);
    let result = rt.block_on(serve(cfg, handler, shutdown_signal()));
    // Dropping the runtime would wait for blocking work a handler still runs
    // (`spawn_blocking`) past the grace, and the watchdog's deadline with it.
    rt.shutdown_background();
    match result {
        Ok(()) => {
            info!("drained; exiting 0");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "worker stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// The `main` of a farm service beside the workers (the emitter, the
/// collector): `cfg` is its configuration parsed from the environment (an
/// error is printed and exits 64), `farm` the runtime settings inside it
/// (log format, HTTP address); then the HTTP port is bound and `run` serves
/// until SIGTERM or SIGINT. Exit 0 after a clean stop, 1 on a failure.
pub async fn service_main<C, E, R, Fut>(
    name: &str,
    cfg: Result<C, E>,
    farm: impl Fn(&C) -> &Config,
    run: R,
) -> ExitCode
where
    E: std::fmt::Display,
    R: FnOnce(C, tokio::net::TcpListener, Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(farm(&cfg).log_format);
    let addr = (farm(&cfg).http.addr, farm(&cfg).http.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, ?addr, "cannot bind");
            return ExitCode::FAILURE;
        }
    };
    match run(cfg, listener, Box::pin(shutdown_signal())).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "{name} failed");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM received"),
                    _ = int.recv() => info!("SIGINT received"),
                }
            }
            _ => {
                warn!("cannot install signal handlers; only Ctrl-C will stop the worker");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs a replica until `shutdown` resolves, then drains.
///
/// The HTTP server starts first so `/_/health` answers 503 while NATS is
/// still unreachable; the connection is retried until it succeeds or
/// `shutdown` fires. The drain has one deadline, `drain_grace` after
/// `shutdown`: held tasks and in-flight `POST /` invocations finish by it,
/// concurrently; new invocations are answered 503 meanwhile. Returns `Ok`
/// after a clean drain of the held tasks.
pub async fn serve(
    cfg: Config,
    handler: SharedHandler,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    let readiness = Arc::new(http::Readiness::default());
    let addr = std::net::SocketAddr::new(cfg.http.addr, cfg.http.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.to_string(), |a| a.to_string());
    info!(addr = %local, farm = cfg.names.farm(), instance = %cfg.worker.instance, "http listening");
    let http_stop = CancellationToken::new();
    let invocations = TaskTracker::new();
    let cut = CancellationToken::new();
    let app = http::router(
        readiness.clone(),
        handler.clone(),
        invocations.clone(),
        cut.clone(),
    );
    let mut http_task = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
    );

    let lock_stop = CancellationToken::new();
    let lock_task = cfg.watchdog_lock.clone().map(|path| {
        tokio::spawn(watchdog::keep_lock_file(
            path,
            readiness.clone(),
            lock_stop.clone(),
        ))
    });

    let drain = SetOnce::new();
    let nats = serve_nats(&cfg, handler, readiness.clone(), &drain);
    tokio::pin!(nats);
    // The NATS side ends on its own only on a fatal error; the HTTP side then
    // drains as after a signal.
    let ended = tokio::select! {
        () = &mut shutdown => None,
        r = &mut nats => Some(r),
    };
    let deadline = Instant::now() + cfg.worker.drain_grace;
    readiness.set_draining();
    // Set once, here: the NATS side waits for it.
    let _ = drain.set(deadline);
    invocations.close();
    let invocations_done = async {
        if timeout_at(deadline, invocations.wait()).await.is_err() {
            warn!(
                in_flight = invocations.len(),
                grace = ?cfg.worker.drain_grace,
                "HTTP invocations still running at the end of the grace period; cancelling them (each answered 503)"
            );
            cut.cancel();
        }
    };
    let result = match ended {
        Some(r) => {
            invocations_done.await;
            r
        }
        None => tokio::join!(nats, invocations_done).0,
    };
    lock_stop.cancel();
    if let Some(t) = lock_task {
        let _ = t.await;
    }
    // Late invocations were answered 503 until now. The server's own
    // graceful shutdown waits for one that passed the draining check as the
    // signal came, but never past the deadline.
    // An invocation cut at the deadline has its 503 written by now; one that
    // slipped past the draining check as the signal came is cut here. The
    // last wait is bounded in case a peer never reads its answer.
    http_stop.cancel();
    if timeout_at(deadline, &mut http_task).await.is_err() {
        cut.cancel();
        if tokio::time::timeout(CUT_FLUSH, &mut http_task)
            .await
            .is_err()
        {
            warn!(
                "HTTP connections still open after the cut invocations were answered; closing them"
            );
            http_task.abort();
        }
    }
    result
}

/// The NATS side of a replica: connects, binds, pulls until `drain` is set,
/// then finishes held tasks by that deadline.
async fn serve_nats(
    cfg: &Config,
    handler: SharedHandler,
    readiness: Arc<http::Readiness>,
    drain: &SetOnce<Instant>,
) -> Result<(), RunError> {
    let client = tokio::select! {
        c = nats::connect_retrying(&cfg.nats, None) => c?,
        _ = drain.wait() => {
            info!("shutdown before NATS was reachable");
            return Ok(());
        }
    };
    info!(server = %client.server_info().version, "connected to NATS");
    readiness.set_client(client.clone());
    let js = async_nats::jetstream::new(client.clone());
    let topo = tokio::select! {
        t = topology::retrying(|| topology::ensure(&js, &cfg.names, &cfg.topology)) => t?,
        _ = drain.wait() => {
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await;
            return Ok(());
        }
    };
    readiness.set_bound();
    info!(
        stream = %cfg.names.tasks_stream(),
        consumer = cfg.names.workers_consumer(),
        concurrency = cfg.worker.concurrency,
        "consumer bound; pulling tasks"
    );

    let ctx = Arc::new(worker::WorkerContext {
        js,
        names: cfg.names.clone(),
        worker: cfg.worker.clone(),
        topology: cfg.topology.clone(),
        handler,
    });
    let stop = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    tokio::spawn(worker::dead_letter_exhausted(
        ctx.clone(),
        client.clone(),
        stop.clone(),
    ));
    let mut pull = tokio::spawn(worker::pull_loop(
        ctx,
        topo.workers,
        stop.clone(),
        hard_stop.clone(),
    ));
    let deadline = tokio::select! {
        d = drain.wait() => *d,
        r = &mut pull => {
            // The loop only returns after `stop`; reaching this is a bug.
            error!(?r, "pull loop ended unexpectedly");
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await;
            return Ok(());
        }
    };
    info!(grace = ?cfg.worker.drain_grace, "draining: stopped pulling");
    stop.cancel();
    let result = match timeout_at(deadline, &mut pull).await {
        Ok(_) => Ok(()),
        Err(_) => {
            error!(grace = ?cfg.worker.drain_grace, "drain grace period expired; aborting held tasks");
            hard_stop.cancel();
            // Let the aborted tasks send their naks.
            let _ = tokio::time::timeout(NAK_TIMEOUT, &mut pull).await;
            Err(RunError::DrainTimeout {
                grace: cfg.worker.drain_grace,
            })
        }
    };
    // Acks are fire-and-forget writes: flush them before the process exits.
    // Bounded, because a flush waits for a reconnect when NATS is down.
    match tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "flush on exit failed"),
        Err(_) => warn!(timeout = ?FLUSH_TIMEOUT, "flush on exit timed out (NATS unreachable?)"),
    }
    result
}
