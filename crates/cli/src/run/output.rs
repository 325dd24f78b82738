//! The replay's reader of the collector's OUTPUT stream: every entry of
//! this run (ids `<run>-<index>`) written after the run started, the first
//! per task, shared with the control loop and the drain.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::Stream;
use farm_runtime::proto::TaskResult;
use futures::StreamExt;
use prost::Message as _;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::lock;

/// How one task ended, from its OUTPUT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The handler succeeded.
    Ok,
    /// It failed for good (dead-lettered) or timed out.
    Failed,
    /// Shed unrun past its deadline (`FARM_SHED_EXPIRED`).
    Shed,
}

/// One OUTPUT entry of this run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Done {
    pub(super) outcome: Outcome,
    pub(super) hit: bool,
    pub(super) latency_us: u64,
    /// Result stored time, µs since the epoch (server clock).
    pub(super) completed_us: i64,
    pub(super) deliveries: u64,
    /// Handler end minus start, µs (worker clock).
    pub(super) service_us: u64,
    /// The task's relative deadline, ms.
    pub(super) deadline_ms: u64,
}

/// One task a worker completed in a live run, as the worker and the server
/// timed it (wall clock, Unix µs): which replica ran it and when, so the
/// simulator can be given what the live platform really did (when each
/// new replica started serving, how long each task held its replica).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRecord {
    /// The task's index in the workload.
    pub index: usize,
    /// The worker instance (`HOSTNAME`, the provider's replica name).
    pub worker: String,
    /// When JetStream stored the task (server clock).
    pub stored_us: i64,
    /// Handler start (worker clock).
    pub started_us: i64,
    /// Handler end (worker clock).
    pub finished_us: i64,
}

/// What the reader has collected so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Collected {
    /// The first entry of every task, by id.
    done: Arc<Mutex<HashMap<String, Done>>>,
    /// Every task completed successfully, in the order the results arrived.
    services: Arc<Mutex<Vec<ServiceRecord>>>,
    /// Entries collected since the last [`Self::take_fresh`]: the control
    /// interval's window.
    fresh: Arc<Mutex<Vec<Done>>>,
}

impl Collected {
    /// Tasks with an entry so far.
    pub(super) fn finished(&self) -> usize {
        lock(&self.done).len()
    }

    /// The entries collected since the last call.
    pub(super) fn take_fresh(&self) -> Vec<Done> {
        std::mem::take(&mut *lock(&self.fresh))
    }

    /// Every task's entry and every service record, once the reader stopped.
    pub(super) fn take(&self) -> (HashMap<String, Done>, Vec<ServiceRecord>) {
        (
            std::mem::take(&mut *lock(&self.done)),
            std::mem::take(&mut *lock(&self.services)),
        )
    }

    /// Keeps `entry` unless the task has one already: a redelivered
    /// duplicate is not a second completion.
    fn record(&self, id: String, index: Option<usize>, entry: Done, result: TaskResult) {
        if lock(&self.done).insert(id, entry).is_some() {
            return;
        }
        lock(&self.fresh).push(entry);
        if let (Outcome::Ok, Some(index)) = (entry.outcome, index) {
            lock(&self.services).push(ServiceRecord {
                index,
                worker: result.worker,
                stored_us: result.task_stored_us,
                started_us: result.started_us,
                finished_us: result.finished_us,
            });
        }
    }
}

/// The sequence OUTPUT's next entry will get: a reader started from it
/// sees only what is written from now on.
pub(super) async fn next_sequence(output: &mut Stream) -> Result<u64> {
    Ok(output
        .info()
        .await
        .context("OUTPUT stream info")?
        .state
        .last_sequence
        + 1)
}

/// Reads OUTPUT from `start_sequence` into `into` until `stop`, keeping the
/// entries whose task id starts with `prefix`.
pub(super) async fn spawn_reader(
    output: &Stream,
    start_sequence: u64,
    prefix: String,
    into: Collected,
    stop: CancellationToken,
) -> Result<JoinHandle<()>> {
    let consumer = output
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
            ..Default::default()
        })
        .await
        .context("reading the OUTPUT stream")?;
    let mut messages = consumer
        .messages()
        .await
        .context("reading the OUTPUT stream")?;
    Ok(tokio::spawn(async move {
        loop {
            let m = tokio::select! {
                m = messages.next() => m,
                () = stop.cancelled() => return,
            };
            let Some(m) = m else { return };
            match m {
                Ok(m) => {
                    if let Some((id, index, entry, result)) = parse(&m, &prefix) {
                        into.record(id, index, entry, result);
                    }
                }
                Err(e) => warn!(error = %e, "reading OUTPUT"),
            }
        }
    }))
}

/// One OUTPUT entry: its task id, the task's index in the workload, the
/// entry and the worker's result; `None` for an entry of another run.
fn parse(
    m: &async_nats::jetstream::Message,
    prefix: &str,
) -> Option<(String, Option<usize>, Done, TaskResult)> {
    use collector::output::{H_LATENCY_US, H_QOS_HIT, H_STATUS, H_TASK_ID};
    let h = m.headers.as_ref()?;
    let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
    let id = get(H_TASK_ID).filter(|id| id.starts_with(prefix))?;
    let result = TaskResult::decode(m.payload.as_ref()).unwrap_or_default();
    let latency_us = get(H_LATENCY_US)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0u64);
    let entry = Done {
        outcome: if get(H_STATUS).as_deref() == Some("ok") {
            Outcome::Ok
        } else if result.error.starts_with(farm_runtime::worker::SHED_REASON) {
            Outcome::Shed
        } else {
            Outcome::Failed
        },
        hit: get(H_QOS_HIT).as_deref() == Some("1"),
        latency_us,
        completed_us: result
            .task_stored_us
            .saturating_add(i64::try_from(latency_us).unwrap_or(0)),
        deliveries: result.deliveries,
        service_us: u64::try_from(result.finished_us.saturating_sub(result.started_us))
            .unwrap_or(0),
        deadline_ms: result.deadline_ms,
    };
    let index = id[prefix.len()..].parse::<usize>().ok();
    Some((id, index, entry, result))
}
