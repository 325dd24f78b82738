//! The rust-farm collector: reads results from `FARM_<F>_RESULTS`, writes
//! each task's result exactly once to `FARM_<F>_OUTPUT`, and reports QoS.
//!
//! - **De-duplication** by task id ([`dedup`]), bounded memory; rebuilt from
//!   the tail of OUTPUT at start, backed by OUTPUT's duplicate window and,
//!   deterministically, by OUTPUT itself: one subject per task, holding one
//!   entry at most, so the server refuses a second write ([`output`]).
//! - **QoS from one clock**: latency = the result's stored time in RESULTS
//!   minus the task's stored time in TASKS (`TaskResult.task_stored_us`),
//!   both stamped by the JetStream server; a hit is a successful task whose
//!   latency is within its deadline ([`stats::is_hit`]).
//! - **Arrivals** are the TASKS stream's last sequence (every task ever
//!   stored; JetStream de-duplicated re-publishes do not count), sampled
//!   every snapshot; **failed** is the DLQ stream's last sequence (every dead
//!   letter ever stored). A dead-lettered task that had an id also reaches
//!   OUTPUT as an `error` result (a QoS miss), so `completed` always equals
//!   the number of OUTPUT entries written.
//! - **Snapshots**: a protobuf `MetricsSnapshot` every
//!   `COLLECTOR_SNAPSHOT_INTERVAL` on `farm.<f>.metrics` (core NATS), and as
//!   JSON on `GET /metrics/snapshot` ([`http`]); a fresh one on request
//!   at `farm.<f>.metrics.now` (NATS request-reply), so a control loop can
//!   close its interval exactly at its tick. Each carries the running sums
//!   of [`cumulative`], from which two snapshots give one interval's window.
//! - **Order**: completion order, or `seq` order with `COLLECTOR_ORDERED`
//!   ([`reorder`]: bounded buffer, gaps skipped after a timeout).
//! - **Crash safety**: a result is acked only after its output is stored
//!   ([`collect`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = collector::config::CollectorConfig::from_map(&farm_runtime::config::env_map())?;
//! let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.farm.http.port)).await?;
//! collector::run(cfg, listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod collect;
pub mod config;
pub mod cumulative;
pub mod dedup;
pub mod http;
pub mod output;
pub mod reorder;
pub mod stats;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use farm_runtime::nats::NatsError;
use farm_runtime::topology::{self, TopologyError};
use futures::StreamExt;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::collect::{Collector, Shared, lock};
use crate::config::CollectorConfig;
use crate::dedup::IdSet;
use crate::output::RecoverError;
use crate::stats::{Stats, WindowCounter};

/// Why the collector could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// NATS could not be reached or was refused.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The JetStream topology could not be created or conflicts.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The OUTPUT tail could not be read.
    #[error(transparent)]
    Recover(#[from] RecoverError),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// How long the collector waits for nats-server to come up at start.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// Runs the collector with its HTTP server on `listener` until `shutdown`
/// resolves. Results held in the reorder buffer at shutdown are not acked
/// and are redelivered to the next collector.
pub async fn run(
    cfg: CollectorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    let client =
        farm_runtime::nats::connect_retrying(&cfg.farm.nats, Some(CONNECT_PATIENCE)).await?;
    let js = jetstream::new(client.clone());
    let names = cfg.farm.names.clone();
    let topo = topology::retrying(|| topology::ensure(&js, &names, &cfg.farm.topology)).await?;
    let mut output = topology::retrying(|| {
        topology::ensure_stream(
            &js,
            output::output_stream_config(&names, &cfg.farm.topology, cfg.output_max_age),
        )
    })
    .await?;
    let recovered = output::recover(&mut output, cfg.dedup_capacity).await?;
    tracing::info!(
        entries = recovered.ids.len(),
        completed = recovered.totals.completed,
        "recovered state from the output stream"
    );
    let mut ids = IdSet::new(cfg.dedup_capacity);
    for id in &recovered.ids {
        ids.insert(id);
    }
    let mut stats = Stats::new(names.farm(), cfg.window).started_at(farm_runtime::worker::now_us());
    stats.restore(recovered.totals);
    let shared = Arc::new(Mutex::new(Shared::new(stats)));

    let max_ack_pending = i64::try_from(cfg.reorder_capacity + 4 * cfg.batch).unwrap_or(i64::MAX);
    let consumer = topology::retrying(|| {
        topology::ensure_consumer(
            &topo.results,
            output::collector_consumer_config(&names, cfg.ack_wait, max_ack_pending),
        )
    })
    .await?;
    lock(&shared).bound = true;

    let stop = CancellationToken::new();
    let http_task = tokio::spawn({
        let app = http::router(http::HttpState {
            shared: shared.clone(),
            client: client.clone(),
        });
        let stop = stop.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });
    let ticker = tokio::spawn(snapshot_loop(
        js.clone(),
        client.clone(),
        names.clone(),
        cfg.snapshot_interval,
        cfg.window,
        shared.clone(),
        stop.clone(),
    ));

    let responder = tokio::spawn(answer_snapshot_requests(
        client.clone(),
        names.clone(),
        shared.clone(),
        stop.clone(),
    ));

    let reorder = cfg.ordered.then(|| {
        let next = recovered.max_seq.map_or(1, |s| s + 1);
        (next, cfg.reorder_capacity, cfg.gap_timeout)
    });
    let mut collector = Collector::new(js.clone(), names.clone(), ids, reorder, shared);
    tracing::info!(
        farm = names.farm(),
        ordered = cfg.ordered,
        "collector ready"
    );

    tokio::pin!(shutdown);
    'outer: loop {
        let messages = match consumer
            .stream()
            .max_messages_per_batch(cfg.batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start pulling results; retrying");
                tokio::select! {
                    () = &mut shutdown => break 'outer,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue 'outer,
                }
            }
        };
        let mut chunks = messages.ready_chunks(cfg.batch);
        let mut gap_timer = tokio::time::interval(Duration::from_millis(50));
        gap_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Biased: new results are published before earlier outputs'
            // acks are settled (latency first); `has_room` stops reading
            // when too many outputs await their acks, so settling is never
            // starved.
            tokio::select! {
                biased;
                () = &mut shutdown => break 'outer,
                chunk = chunks.next(), if collector.has_room(cfg.batch) => {
                    let Some(chunk) = chunk else {
                        tracing::warn!("result stream ended; re-subscribing");
                        continue 'outer;
                    };
                    let mut batch = Vec::with_capacity(chunk.len());
                    for m in chunk {
                        match m {
                            Ok(m) => batch.push(m),
                            // Missed heartbeats and the like during a server
                            // restart; the stream keeps retrying by itself.
                            Err(e) => tracing::warn!(error = %e, "pulling results"),
                        }
                    }
                    collector.handle(batch).await;
                }
                // Acks of earlier rounds' outputs are settled while the next
                // rounds are read and published.
                done = collector.settled(), if collector.writing() => collector.settle(done).await,
                _ = gap_timer.tick(), if collector.ordered() => collector.tick().await,
            }
        }
    }
    tracing::info!("collector stopping");
    // Outputs already published get their results acked (bounded: an ack
    // that never comes times out in the client).
    collector.finish_writes().await;
    stop.cancel();
    let _ = ticker.await;
    let _ = responder.await;
    let served = match http_task.await {
        Ok(r) => r.map_err(CollectorError::Serve),
        Err(e) => Err(CollectorError::Serve(std::io::Error::other(e))),
    };
    // Acks are plain publishes: flush so none is lost on exit.
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "flush on shutdown failed");
    }
    served
}

/// Every `interval`: refresh arrival and dead-letter counts from the stream
/// states, then publish the snapshot on `farm.<f>.metrics`.
async fn snapshot_loop(
    js: jetstream::Context,
    client: async_nats::Client,
    names: farm_runtime::names::FarmNames,
    interval: Duration,
    window: Duration,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut arrivals_window = WindowCounter::new(window);
    let subject = names.metrics_subject();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let tasks = last_sequence(&js, &names.tasks_stream()).await;
        let dlq = last_sequence(&js, &names.dlq_stream()).await;
        let snap = {
            let mut sh = lock(&shared);
            let now = sh.origin.elapsed();
            if let Some(total) = tasks {
                sh.arrivals.total = total;
                sh.arrivals.window = arrivals_window.sample(now, total);
            }
            if let Some(d) = dlq {
                sh.failed = d;
            }
            sh.snapshot()
        };
        if let Err(e) = client
            .publish(subject.clone(), snap.encode_to_vec().into())
            .await
        {
            tracing::debug!(error = %e, "snapshot publish failed");
        }
    }
}

/// The subject on which the collector answers with a fresh snapshot.
pub fn snapshot_request_subject(names: &farm_runtime::names::FarmNames) -> String {
    format!("{}.now", names.metrics_subject())
}

/// Answers every request on [`snapshot_request_subject`] with the snapshot
/// as of now (protobuf), until `stop`.
async fn answer_snapshot_requests(
    client: async_nats::Client,
    names: farm_runtime::names::FarmNames,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
) {
    let subject = snapshot_request_subject(&names);
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, subject, "cannot answer snapshot requests");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            m = sub.next() => m,
        };
        let Some(msg) = msg else { break };
        let Some(reply) = msg.reply else { continue };
        let snap = lock(&shared).snapshot();
        if let Err(e) = client.publish(reply, snap.encode_to_vec().into()).await {
            tracing::debug!(error = %e, "snapshot reply failed");
        }
    }
    let _ = sub.unsubscribe().await;
}

/// A stream's last sequence, or `None` if it cannot be read right now.
async fn last_sequence(js: &jetstream::Context, stream: &str) -> Option<u64> {
    let read = async {
        let mut s = js.get_stream(stream).await.ok()?;
        Some(s.info().await.ok()?.state.last_sequence)
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()
        .flatten()
}
