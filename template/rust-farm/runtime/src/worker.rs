//! The pull loop of one worker replica.
//!
//! For every task: decode, run the handler (panics caught), publish the
//! [`TaskResult`] on `farm.<f>.results` with `Nats-Msg-Id` = task id and wait
//! for the stream's ack, and only then acknowledge the task. A crash between
//! the two steps therefore causes a redelivery whose result the results
//! stream de-duplicates; it never loses a task.
//!
//! The task ack is a plain ack, not a double ack (ack + server
//! confirmation): once the result is stored, a lost ack only costs a
//! redelivery that the results stream and the collector de-duplicate, so
//! waiting a round trip per task for the confirmation buys nothing but
//! latency and server work. Tasks run concurrently (up to
//! `FARM_CONCURRENCY`), so their publishes and acks overlap with the next
//! fetches, and up to [`MAX_PULLS_IN_FLIGHT`] pull requests are open at once
//! (a new one once half a fetch batch of slots is free), so a busy replica
//! does not wait a round trip between pulls.
//!
//! Failures: a retryable handler error is negatively acknowledged with an
//! exponential delay; at the consumer's max deliveries (or at once for a
//! permanent error) the task is dead-lettered: a [`DeadLetter`] goes to the
//! DLQ, a `TaskResult` with status `ERROR` goes to the results (so the
//! collector counts the task as finished-and-failed), then the task is acked.
//! Bytes that are not a `Task` (or a `Task` without id) are dead-lettered at
//! once with the decode error.
//!
//! Every delivery counts against the consumer's max deliveries, give-backs
//! included, and JetStream never delivers a task again once they are used
//! up. So a task on its last delivery is never given back (a draining
//! replica runs it; at the drain deadline it is dead-lettered), and
//! [`dead_letter_exhausted`] dead-letters the tasks whose last delivery
//! ended without an ack (a replica killed while holding it).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::{TopologyConfig, WorkerConfig};
use crate::handler::{SharedHandler, call_isolated};
use crate::names::FarmNames;
use crate::proto::{DeadLetter, Status, Task, TaskResult};

/// Attempts to publish a result or dead letter before giving the task back.
const PUBLISH_ATTEMPTS: u32 = 5;

/// Everything the loop and its task futures share.
pub struct WorkerContext {
    /// JetStream context of the replica's connection.
    pub js: jetstream::Context,
    /// Farm names.
    pub names: FarmNames,
    /// Pull-loop settings.
    pub worker: WorkerConfig,
    /// Topology settings (ack wait, max deliveries).
    pub topology: TopologyConfig,
    /// The user's handler.
    pub handler: SharedHandler,
}

/// Wall clock in Unix microseconds (0 before 1970): time stamps that
/// cross processes (service times, result and snapshot stamps).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Redelivery delay after the `delivered`-th failed delivery.
pub fn nak_delay(cfg: &WorkerConfig, delivered: u64) -> Duration {
    let shift = delivered.saturating_sub(1).min(20) as u32;
    cfg.nak_delay
        .saturating_mul(1u32 << shift)
        .min(cfg.nak_delay_max)
}

/// Most pull requests one replica keeps open at once.
///
/// With one request at a time a busy replica waited a round trip per pull,
/// and once its slots were busy every pull asked only for the few slots free
/// at that moment; a second request, registered while the first is still
/// being delivered, hides that round trip (two replicas draining a preloaded
/// queue: 6 paired runs, 5 faster, about +15 % on average; see
/// BENCHMARKS.md). Each open request holds the slots it asked for, so more
/// requests would only split the same slots finer.
pub const MAX_PULLS_IN_FLIGHT: usize = 2;

/// One open pull request: the server's deliveries for it and the slots
/// reserved for them (one per message asked for).
struct Pull {
    batch: pull::Batch,
    permits: Vec<OwnedSemaphorePermit>,
}

/// A delivery of one pull request, with the slot reserved for it (`None` if
/// the server sent more messages than asked for).
type Delivered = (
    Result<jetstream::Message, async_nats::Error>,
    Option<OwnedSemaphorePermit>,
);

/// The deliveries of one pull request until it ends (all messages delivered,
/// expired, or failed). Its unused slots are released when it ends.
fn deliveries(p: Pull) -> impl futures::Stream<Item = Delivered> + Send {
    futures::stream::unfold(p, |mut p| async move {
        let next = p.batch.next().await?;
        let permit = p.permits.pop();
        Some(((next, permit), p))
    })
}

/// Waits until a new pull request is due and reserves its slots: the first
/// free slot when no request is open (so a replica with long tasks refills
/// each slot as soon as it frees), else half a fetch batch of free slots
/// (so a busy replica pulls in large batches while the open request is
/// still being delivered). Then takes every other free slot, up to
/// `fetch_batch`.
async fn reserve(
    slots: &Arc<Semaphore>,
    open: usize,
    fetch_batch: usize,
) -> Option<Vec<OwnedSemaphorePermit>> {
    let need = if open == 0 {
        1
    } else {
        (fetch_batch / 2).max(1)
    };
    let mut first = slots
        .clone()
        .acquire_many_owned(u32::try_from(need).unwrap_or(u32::MAX))
        .await
        .ok()?;
    let mut permits = Vec::with_capacity(fetch_batch);
    while let Some(p) = first.split(1) {
        permits.push(p);
    }
    while permits.len() < fetch_batch {
        match slots.clone().try_acquire_owned() {
            Ok(p) => permits.push(p),
            Err(_) => break,
        }
    }
    Some(permits)
}

/// Pulls and processes tasks until `stop` is cancelled, then finishes what it
/// holds. `hard_stop` (the drain deadline) aborts running handlers and gives
/// their tasks back with an immediate nak. Returns when every held task was
/// finished (published and acked, or given back).
///
/// Up to [`MAX_PULLS_IN_FLIGHT`] pull requests are open at once, each asking
/// for at most `fetch_batch` tasks and holding a free slot per task asked
/// for, so the replica never holds more than `concurrency` tasks.
pub async fn pull_loop(
    ctx: Arc<WorkerContext>,
    consumer: PullConsumer,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(ctx.worker.concurrency));
    let fetch_batch = ctx.worker.fetch_batch.max(1);
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut pulls = futures::stream::SelectAll::new();
    let mut backoff = Duration::from_millis(50);
    let mut retry_at = tokio::time::Instant::now();
    loop {
        while inflight.try_join_next().is_some() {}
        let stopping = stop.is_cancelled();
        if stopping && pulls.is_empty() {
            break;
        }
        let open = pulls.len();
        let may_pull = !stopping && open < MAX_PULLS_IN_FLIGHT;
        tokio::select! {
            // Deliveries first: a message waiting in an inbox is a task
            // already taken from the queue.
            biased;
            delivered = pulls.next(), if open > 0 => {
                // `None`: every open request ended (they can end in the same
                // poll); the next turn may pull again.
                let Some((next, permit)): Option<Delivered> = delivered else { continue };
                let msg = match next {
                    Ok(m) => m,
                    Err(e) => {
                        debug!(error = %e, "pull request ended with an error");
                        continue;
                    }
                };
                // Open requests are read to their end even after `stop`:
                // they stay registered on the server until they expire, and
                // a message delivered to an abandoned inbox would wait a
                // whole ack wait for redelivery.
                // A give-back costs the task one of its `max_deliver`
                // deliveries, and on its last one JetStream would never
                // deliver it again: a task on its last delivery is run
                // here whatever the state (one task over the concurrency
                // at most), never given back.
                let last = delivery_of(&msg).delivered >= u64::from(ctx.topology.max_deliver);
                if last || (permit.is_some() && !stop.is_cancelled()) {
                    let ctx = ctx.clone();
                    let hard = hard_stop.clone();
                    inflight.spawn(process(ctx, msg, permit, hard));
                } else if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
                    // Draining (or more messages than asked for): the task
                    // was given back at once so another replica takes it;
                    // a failed nak returns it after the ack wait.
                    warn!(error = %e, "nak of a task received while draining failed");
                }
            }
            () = stop.cancelled(), if !stopping => {}
            permits = async {
                tokio::time::sleep_until(retry_at).await;
                reserve(&slots, open, fetch_batch).await
            }, if may_pull => {
                let Some(permits) = permits else { break };
                let request = consumer
                    .batch()
                    .max_messages(permits.len())
                    .expires(ctx.worker.fetch_expires)
                    .messages()
                    .await;
                match request {
                    Ok(batch) => {
                        backoff = Duration::from_millis(50);
                        pulls.push(Box::pin(deliveries(Pull { batch, permits })));
                    }
                    Err(e) => {
                        warn!(error = %e, "pull request failed; retrying");
                        drop(permits);
                        retry_at = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }
    let held = inflight.len();
    if held > 0 {
        info!(held, "stopped pulling; finishing held tasks");
    }
    while inflight.join_next().await.is_some() {}
}

/// Facts about one delivery taken from its JetStream metadata.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    stored_us: i64,
    delivered: u64,
    stream_seq: u64,
}

fn delivery_of(msg: &jetstream::Message) -> Delivery {
    match msg.info() {
        Ok(info) => Delivery {
            stored_us: i64::try_from(info.published.unix_timestamp_nanos() / 1_000).unwrap_or(0),
            delivered: u64::try_from(info.delivered).unwrap_or(1),
            stream_seq: info.stream_sequence,
        },
        // Not a JetStream delivery (cannot happen on a pull consumer); treat
        // as a first delivery so the task is still processed.
        Err(_) => Delivery {
            stored_us: 0,
            delivered: 1,
            stream_seq: 0,
        },
    }
}

/// Decodes a task message, requiring a non-empty id (the id is what makes
/// results idempotent, so a task without one cannot be processed safely).
pub fn decode_task(payload: &Bytes) -> Result<Task, String> {
    let task = Task::decode(payload.clone())
        .map_err(|e| format!("message is not a farm.v1.Task protobuf: {e}"))?;
    if task.id.is_empty() {
        return Err("farm.v1.Task has an empty id".to_owned());
    }
    Ok(task)
}

async fn process(
    ctx: Arc<WorkerContext>,
    msg: jetstream::Message,
    _permit: Option<OwnedSemaphorePermit>,
    hard_stop: CancellationToken,
) {
    let d = delivery_of(&msg);
    let task = match decode_task(&msg.payload) {
        Ok(t) => t,
        Err(reason) => {
            warn!(stream_seq = d.stream_seq, %reason, "undecodable task; dead-lettering");
            let letter = DeadLetter {
                task_id: String::new(),
                original: msg.payload.clone(),
                reason,
                deliveries: d.delivered,
                worker: ctx.worker.instance.clone(),
                task_stored_us: d.stored_us,
            };
            finish_dead(&ctx, &msg, d, letter, None, &hard_stop).await;
            return;
        }
    };
    let span = info_span!("task", id = %task.id, seq = task.seq, delivered = d.delivered);
    run_task(ctx, msg, task, d, hard_stop)
        .instrument(span)
        .await;
}

async fn run_task(
    ctx: Arc<WorkerContext>,
    msg: jetstream::Message,
    task: Task,
    d: Delivery,
    hard_stop: CancellationToken,
) {
    let started_us = now_us();
    if ctx.worker.shed_expired && expired(&task, d.stored_us, started_us) {
        let result = TaskResult {
            task_id: task.id.clone(),
            seq: task.seq,
            worker: ctx.worker.instance.clone(),
            started_us,
            finished_us: started_us,
            task_stored_us: d.stored_us,
            deadline_ms: task.deadline_ms,
            deliveries: d.delivered,
            ..Default::default()
        };
        let waited_ms = started_us.saturating_sub(d.stored_us) / 1000;
        let reason = format!(
            "{SHED_REASON}: waited {waited_ms} ms in the queue, deadline {} ms",
            task.deadline_ms
        );
        debug!(%reason, "shedding an expired task");
        dead_letter_task(&ctx, &msg, d, result, reason, &hard_stop).await;
        return;
    }
    let period = (ctx.topology.ack_wait / 3).max(Duration::from_millis(10));
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let call = call_isolated(&ctx.handler, task.clone());
    tokio::pin!(call);
    let outcome = loop {
        tokio::select! {
            r = &mut call => break Some(r),
            _ = progress.tick() => {
                // Tells the server the task is still being worked on, so a
                // long task is not redelivered after one ack wait.
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    warn!(error = %e, "in-progress ack failed");
                }
            }
            () = hard_stop.cancelled() => break None,
        }
    };
    let finished_us = now_us();
    let mut result = TaskResult {
        task_id: task.id.clone(),
        seq: task.seq,
        worker: ctx.worker.instance.clone(),
        started_us,
        finished_us,
        task_stored_us: d.stored_us,
        deadline_ms: task.deadline_ms,
        deliveries: d.delivered,
        ..Default::default()
    };
    let Some(outcome) = outcome else {
        if d.delivered >= u64::from(ctx.topology.max_deliver) {
            // Given back on its last delivery, the task would stay in the
            // queue undelivered forever: dead-letter it instead.
            error!("drain deadline reached on the task's last delivery; dead-lettering");
            let reason = "drain deadline reached on the task's last delivery".to_owned();
            dead_letter_task(&ctx, &msg, d, result, reason, &hard_stop).await;
            return;
        }
        warn!("drain deadline reached; giving the task back");
        if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
            warn!(error = %e, "nak failed; the task returns after the ack wait");
        }
        return;
    };
    match outcome {
        Ok(output) => {
            result.status = Status::Ok as i32;
            result.output = output.body;
            result.content_type = output.content_type;
            let subject = ctx.names.results_subject();
            let body = Bytes::from(result.encode_to_vec());
            if let Err(e) = publish_acked(&ctx.js, subject, body, &task.id, &hard_stop).await {
                error!(error = %e, "cannot publish result; giving the task back");
                let _ = msg.ack_with(AckKind::Nak(Some(ctx.worker.nak_delay))).await;
                return;
            }
            match msg.ack().await {
                Ok(()) => debug!("task done"),
                // The result is stored; a redelivery will be de-duplicated.
                Err(e) => warn!(error = %e, "ack after publishing the result failed"),
            }
        }
        Err(err) => {
            let last = !err.is_retryable() || d.delivered >= u64::from(ctx.topology.max_deliver);
            if !last {
                let delay = nak_delay(&ctx.worker, d.delivered);
                warn!(error = %err, ?delay, "handler failed; task will be retried");
                if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                    warn!(error = %e, "nak failed; the task returns after the ack wait");
                }
                return;
            }
            error!(error = %err, retryable = err.is_retryable(), "handler failed for the last time; dead-lettering");
            let reason = err.message().to_owned();
            dead_letter_task(&ctx, &msg, d, result, reason, &hard_stop).await;
        }
    }
}

/// Start of the dead-letter reason of a task shed by `FARM_SHED_EXPIRED`.
pub const SHED_REASON: &str =
    "deadline passed before a replica started the task (FARM_SHED_EXPIRED)";

/// Whether `task`, stored at `stored_us`, is past its deadline at `now_us`
/// (never without a deadline).
fn expired(task: &Task, stored_us: i64, now_us: i64) -> bool {
    let waited_us = i128::from(now_us) - i128::from(stored_us);
    task.deadline_ms > 0 && waited_us > i128::from(task.deadline_ms) * 1000
}

/// Dead-letters a decoded task for `reason`: the letter to the DLQ and
/// `result` (turned into an `ERROR` result) to the results, then the ack.
async fn dead_letter_task(
    ctx: &WorkerContext,
    msg: &jetstream::Message,
    d: Delivery,
    mut result: TaskResult,
    reason: String,
    hard_stop: &CancellationToken,
) {
    result.status = Status::Error as i32;
    result.error = reason.clone();
    let letter = DeadLetter {
        task_id: result.task_id.clone(),
        original: msg.payload.clone(),
        reason,
        deliveries: d.delivered,
        worker: ctx.worker.instance.clone(),
        task_stored_us: d.stored_us,
    };
    finish_dead(ctx, msg, d, letter, Some(result), hard_stop).await;
}

/// Publishes the dead letter (and the error result, if any), then acks.
async fn finish_dead(
    ctx: &WorkerContext,
    msg: &jetstream::Message,
    d: Delivery,
    letter: DeadLetter,
    result: Option<TaskResult>,
    hard_stop: &CancellationToken,
) {
    if let Err(e) = publish_dead(ctx, d.stream_seq, letter, result, hard_stop).await {
        error!(error = %e, "giving the task back");
        let _ = msg.ack_with(AckKind::Nak(Some(ctx.worker.nak_delay))).await;
        return;
    }
    if let Err(e) = msg.ack().await {
        warn!(error = %e, "ack after dead-lettering failed");
    }
}

/// Publishes the dead letter of the task stored at `stream_seq`, then the
/// error result, if any. Both are de-duplicated by message id (the letter by
/// the task's stream sequence, which identifies it even without an id), so
/// a retry or a second replica doing the same stores each once.
async fn publish_dead(
    ctx: &WorkerContext,
    stream_seq: u64,
    letter: DeadLetter,
    result: Option<TaskResult>,
    hard_stop: &CancellationToken,
) -> Result<(), String> {
    let letter_id = format!("{}:{}", ctx.names.tasks_stream(), stream_seq);
    let body = Bytes::from(letter.encode_to_vec());
    publish_acked(
        &ctx.js,
        ctx.names.dlq_subject(),
        body,
        &letter_id,
        hard_stop,
    )
    .await
    .map_err(|e| format!("cannot publish dead letter: {e}"))?;
    if let Some(result) = result {
        let id = result.task_id.clone();
        let body = Bytes::from(result.encode_to_vec());
        publish_acked(&ctx.js, ctx.names.results_subject(), body, &id, hard_stop)
            .await
            .map_err(|e| format!("cannot publish error result: {e}"))?;
    }
    Ok(())
}

/// The JetStream advisory sent when a task of `stream` reached the
/// consumer's max deliveries without an ack: the server then never delivers
/// it again, though it stays in the work queue.
#[derive(Debug, serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

/// Dead-letters every task that reaches the consumer's max deliveries
/// without an ack (its replica crashed or was killed on the last delivery,
/// or it was given back then), so it is never silently stuck in the work
/// queue: the dead letter and an `ERROR` result are published (de-duplicated
/// across the replicas that all receive the advisory), then the task is
/// deleted from the queue. Runs until `stop`.
pub async fn dead_letter_exhausted(
    ctx: Arc<WorkerContext>,
    client: async_nats::Client,
    stop: CancellationToken,
) {
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        ctx.names.tasks_stream(),
        ctx.names.workers_consumer()
    );
    let mut advisories = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, subject, "cannot watch max-deliveries advisories");
            return;
        }
    };
    loop {
        let advisory = tokio::select! {
            a = advisories.next() => match a { Some(a) => a, None => return },
            () = stop.cancelled() => return,
        };
        let Ok(adv) = serde_json::from_slice::<MaxDeliveries>(&advisory.payload) else {
            warn!(subject, "unreadable max-deliveries advisory");
            continue;
        };
        if let Err(e) = exhausted(&ctx, &adv, &stop).await {
            warn!(stream_seq = adv.stream_seq, error = %e, "cannot dead-letter an exhausted task");
        }
    }
}

async fn exhausted(
    ctx: &WorkerContext,
    adv: &MaxDeliveries,
    stop: &CancellationToken,
) -> Result<(), String> {
    let stream = ctx
        .js
        .get_stream(ctx.names.tasks_stream())
        .await
        .map_err(|e| e.to_string())?;
    // Gone: acked meanwhile, or another replica handled the advisory.
    let Ok(stored) = stream.get_raw_message(adv.stream_seq).await else {
        return Ok(());
    };
    let stored_us = i64::try_from(stored.time.unix_timestamp_nanos() / 1_000).unwrap_or(0);
    let reason = format!(
        "no result after {} deliveries (max deliveries reached: the replicas holding it crashed, were killed or gave it back)",
        adv.deliveries
    );
    error!(stream_seq = adv.stream_seq, %reason, "dead-lettering an exhausted task");
    let task = decode_task(&stored.payload).ok();
    let letter = DeadLetter {
        task_id: task.as_ref().map(|t| t.id.clone()).unwrap_or_default(),
        original: stored.payload.clone(),
        reason: reason.clone(),
        deliveries: adv.deliveries,
        worker: ctx.worker.instance.clone(),
        task_stored_us: stored_us,
    };
    let result = task.map(|t| TaskResult {
        task_id: t.id,
        seq: t.seq,
        worker: ctx.worker.instance.clone(),
        task_stored_us: stored_us,
        deadline_ms: t.deadline_ms,
        deliveries: adv.deliveries,
        status: Status::Error as i32,
        error: reason,
        ..Default::default()
    });
    publish_dead(ctx, adv.stream_seq, letter, result, stop).await?;
    match stream.delete_message(adv.stream_seq).await {
        Ok(_) => Ok(()),
        // Another replica deleted it first.
        Err(e) => {
            debug!(error = %e, "delete of an exhausted task failed");
            Ok(())
        }
    }
}

/// Publishes with a message id and waits for the stream's ack, retrying
/// transient failures a few times (e.g. during a server restart).
pub async fn publish_acked(
    js: &jetstream::Context,
    subject: String,
    body: Bytes,
    msg_id: &str,
    hard_stop: &CancellationToken,
) -> Result<(), String> {
    let mut delay = Duration::from_millis(100);
    let mut last = String::new();
    for attempt in 1..=PUBLISH_ATTEMPTS {
        let publish = PublishMessage::build()
            .payload(body.clone())
            .message_id(msg_id);
        let r = match js.send_publish(subject.clone(), publish).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) => {
                warn!(attempt, error = %e, subject, "publish failed");
                last = e;
            }
        }
        if attempt < PUBLISH_ATTEMPTS {
            tokio::select! {
                () = tokio::time::sleep(delay) => {},
                () = hard_stop.cancelled() => break,
            }
            delay *= 2;
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wcfg() -> WorkerConfig {
        WorkerConfig {
            concurrency: 1,
            fetch_batch: 1,
            fetch_expires: Duration::from_secs(1),
            nak_delay: Duration::from_millis(100),
            nak_delay_max: Duration::from_millis(1000),
            drain_grace: Duration::from_secs(1),
            shed_expired: false,
            instance: "w".into(),
        }
    }

    #[tokio::test]
    async fn reserve_takes_one_slot_when_idle_and_half_a_batch_otherwise() {
        let slots = Arc::new(Semaphore::new(8));
        let held = slots.clone().acquire_many_owned(7).await.unwrap();
        // No request open: the one free slot is enough for a pull.
        let got = reserve(&slots, 0, 8).await.unwrap();
        assert_eq!(got.len(), 1);
        drop(got);
        // A request open: wait for half a batch (4) of free slots...
        let early = tokio::time::timeout(Duration::from_millis(50), reserve(&slots, 1, 8)).await;
        assert!(early.is_err());
        drop(held);
        // ...then take every free slot, up to the fetch batch.
        let got = reserve(&slots, 1, 8).await.unwrap();
        assert_eq!(got.len(), 8);
        assert_eq!(slots.available_permits(), 0);
        drop(got);
        assert_eq!(slots.available_permits(), 8);
        slots.close();
        assert!(reserve(&slots, 0, 8).await.is_none());
    }

    #[test]
    fn nak_delay_doubles_and_caps() {
        let c = wcfg();
        assert_eq!(nak_delay(&c, 1), Duration::from_millis(100));
        assert_eq!(nak_delay(&c, 2), Duration::from_millis(200));
        assert_eq!(nak_delay(&c, 4), Duration::from_millis(800));
        assert_eq!(nak_delay(&c, 5), Duration::from_millis(1000));
        assert_eq!(nak_delay(&c, 1000), Duration::from_millis(1000));
    }

    /// Expired = strictly more than the deadline since the task was stored;
    /// a task without a deadline never expires, and a clock behind the
    /// store's time does not wrap.
    #[test]
    fn a_task_expires_strictly_after_its_deadline_and_never_without_one() {
        let t = |deadline_ms| Task {
            id: "a".into(),
            deadline_ms,
            ..Default::default()
        };
        assert!(!expired(&t(2000), 1_000_000, 3_000_000));
        assert!(expired(&t(2000), 1_000_000, 3_000_001));
        assert!(!expired(&t(0), 0, i64::MAX));
        assert!(!expired(&t(1), i64::MAX, i64::MIN));
        assert!(!expired(&t(1), 5_000_000, 1_000_000));
    }

    #[test]
    fn decode_rejects_garbage_and_missing_id() {
        assert!(decode_task(&Bytes::from_static(b"\xff\xff\xff\xff")).is_err());
        assert!(decode_task(&Bytes::new()).unwrap_err().contains("empty id"));
        let t = Task {
            id: "a".into(),
            ..Default::default()
        };
        assert_eq!(decode_task(&Bytes::from(t.encode_to_vec())).unwrap(), t);
    }
}
