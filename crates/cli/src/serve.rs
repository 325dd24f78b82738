//! `farmctl sim serve`: the `FarmControl` gRPC service (proto/control.proto)
//! on top of the simulator, for the Gymnasium layer (gym/).
//!
//! Many environments share one server, keyed by the client-chosen `env_id`;
//! each is a [`farm_sim::Env`] behind its own lock. Simulation is CPU-bound,
//! so `Reset` and `StepBatch` run on tokio's blocking pool, never on the
//! reactor; a single `Step` (one control interval, tens of microseconds) runs inline,
//! as handing it to another thread would cost more than the step itself.
//! `StepBatch` can reply with flat arrays (`packed`, built with
//! [`farm_proto::batch::PackedBuilder`]) instead of one `StepReply` per env.
//! Accepted sockets get `TCP_NODELAY`, since a step is
//! one small request and one small reply. The same environments are also
//! served by `FarmControlStream.StepStream`: lockstep `Step`s over one
//! bidirectional stream, cheaper per step for a client stepping a single
//! environment than a unary call each (figures in BENCHMARKS.md
//! "Gymnasium"). Batch work holds one of two permits per thread, granted in
//! arrival order, so concurrent batches are stepped one after the other.
//!
//! The first line on stdout is `listening ADDR` (the bound address, useful
//! with port 0); logs go to stderr.
//!
//! # Reset options
//!
//! `ResetRequest.options` (a string map; an unknown key is refused so a typo
//! is not silently ignored):
//!
//! | key | value | default |
//! |---|---|---|
//! | `action_space` | `default` (deltas -4..+4), `paper` ({-1,0,+1}), `estimates`, or a comma list of meanings (`hold,delta:+1,estimate:x1.25`) | `default` |
//! | `scenarios` | comma list of built-in names: each episode draws one (seeded by the episode seed) | the request's scenario |
//! | `randomize` | `true` / `false`: domain randomisation of each episode's scenario | `false` |
//! | `randomize.rate` | `lo,hi`: arrival-rate multiplier range | `0.7,1.5` |
//! | `randomize.service` | `lo,hi`: service-time mean multiplier range (clip bounds follow) | `0.7,1.4` |
//! | `randomize.shape` | `lo,hi`: gamma shape multiplier (lognormal: 1/sigma^2), mean kept | `0.5,2.0` |
//! | `randomize.startup` | `lo,hi`: start-up delay multiplier range | `0.5,2.0` |
//! | `episode_steps` | override of `platform.episode_steps` | scenario's |
//! | `obs_version` | observation layout: `1`, `2` (v1 plus history features) or `3` (v2 plus memory in seconds and the planner's decision; `farm_model::observation::Observer`) | `1` |
//! | `interval` | comma list of decision intervals, seconds: each episode draws one (seeded) and keeps its length in seconds | scenario's |
//! | `window` | sliding window of the signals, seconds (at least the interval) | the interval |
//! | `events` | early decisions between ticks on a backlog jump: `off`, `on` or `share=X,jump=N,gap=S` (`farm_model::cadence`; a step then lasts up to one interval) | `off` |
//! | `reward.qos`, `reward.cost`, `reward.backlog`, `reward.churn` | reward weights | `farm_model::reward::RewardWeights::default()` |
//!
//! Each factor is drawn uniformly in its range from a random stream derived
//! from the episode seed, so a seed reproduces the randomised scenario.
//! Multiplier ranges must satisfy `0 < lo <= hi <= 10`.
//!
//! With `StepBatch { auto_reset: true }` an environment whose episode ended
//! starts its next episode at once with seed `reset_seed + episodes_done`
//! (wrapping), the same options and scenario list; the reply carries the
//! final step's reward, flags and info, the ended episode's last observation
//! in `final_observation`, and the new episode's first observation.
//!
//! ```text
//! $ farmctl sim serve --addr 127.0.0.1:0
//! listening 127.0.0.1:40123
//! ```

mod batch;
mod options;
mod randomize;
mod reply;
mod service;
mod slot;

use std::future::Future;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use farm_proto::control::farm_control_server::FarmControlServer;
use farm_proto::control::farm_control_stream_server::FarmControlStreamServer;
use tokio::net::TcpListener;
use tracing::info;

use self::service::SimControl;

/// Largest gRPC message accepted or sent (a `StepBatch` of thousands of envs).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Arguments of `farmctl sim serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback only by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Exit when stdin reaches end of file: a parent that started the
    /// server with a pipe on stdin takes it down by exiting, even on a crash.
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
}

/// Serve `FarmControl` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let control = SimControl::default();
    let stream = FarmControlStreamServer::new(control.clone());
    let svc = FarmControlServer::new(control)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .add_service(svc)
        .add_service(stream)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// `farmctl sim serve`: bind, print `listening ADDR`, serve until Ctrl-C,
/// SIGTERM, or (with `--exit-on-stdin-eof`) the end of stdin.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    // Logs go to stderr: stdout's first line is the address clients read.
    crate::shared::logging::log_to_stderr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(args.clone()))
}

/// [`run`] for callers already inside a tokio runtime.
pub async fn run_async(args: ServeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {addr}")?;
        out.flush()?;
    }
    info!(%addr, "FarmControl (simulator) listening");
    let (tx, rx) = tokio::sync::oneshot::channel::<&'static str>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let stop = move |why: &'static str| {
        if let Ok(mut g) = tx.lock()
            && let Some(tx) = g.take()
        {
            let _ = tx.send(why);
        }
    };
    if args.exit_on_stdin_eof {
        let stop = stop.clone();
        // A plain thread: stdin is a blocking file descriptor.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read_until(b'\n', &mut sink), Ok(n) if n > 0) {
                sink.clear();
            }
            stop("stdin closed");
        });
    }
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop("interrupt");
        });
    }
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            term.recv().await;
            stop("terminate");
        });
    }
    serve(listener, async move {
        let why = rx.await.unwrap_or("shutdown channel closed");
        info!(reason = why, "shutting down");
    })
    .await?;
    Ok(())
}
