//! The collecting loop: results in, de-duplicated (and maybe re-ordered)
//! outputs out, statistics updated.
//!
//! Per round the collector takes the results that are ready (up to
//! `COLLECTOR_BATCH`), decides for each whether it is new and publishes the
//! new ones to OUTPUT back to back. The OUTPUT acks are awaited in the
//! background ([`Collector::settled`]), in publish order, while the next
//! rounds are already being read and published (at most
//! [`MAX_WRITES_INFLIGHT`] outputs in flight); a result is acked only once
//! its output's ack arrived. A crash at any point therefore loses nothing: an
//! unacked result is redelivered, and if its output had already been stored
//! the id set (rebuilt from OUTPUT at start) or OUTPUT's own duplicate window
//! recognises it, and failing both OUTPUT refuses it: each task has its own
//! subject there, which holds one entry at most (see [`crate::output`]). A
//! refused write counts like a duplicate: the result is acked.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, AckKind, message::PublishMessage};
use bytes::Bytes;
use farm_runtime::names::FarmNames;
use farm_runtime::proto::{MetricsSnapshot, Status, TaskResult};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use prost::Message as _;

use crate::dedup::IdSet;
use crate::output::{
    H_COMPLETED, H_LATENCY_US, H_QOS_HIT, H_QOS_HITS, H_SEQ, H_STATUS, H_TASK_ID, is_already_stored,
};
use crate::reorder::Reorder;
use crate::stats::{Arrivals, Completion, Stats, Totals, is_hit};

/// State shared between the collecting loop, the snapshot ticker and HTTP.
#[derive(Debug)]
pub struct Shared {
    /// Totals and window.
    pub stats: Stats,
    /// Latest arrival counts from the TASKS stream.
    pub arrivals: Arrivals,
    /// Latest dead-letter count from the DLQ stream.
    pub failed: u64,
    /// Results that could not be decoded (acked, kept in RESULTS, logged).
    pub invalid: u64,
    /// Set once the results consumer is bound.
    pub bound: bool,
    /// Monotonic origin of the stats' time axis.
    pub origin: Instant,
}

impl Shared {
    /// Fresh shared state for `farm`.
    pub fn new(stats: Stats) -> Self {
        Self {
            stats,
            arrivals: Arrivals::default(),
            failed: 0,
            invalid: 0,
            bound: false,
            origin: Instant::now(),
        }
    }

    /// The snapshot as of now.
    pub fn snapshot(&mut self) -> MetricsSnapshot {
        let now = self.origin.elapsed();
        let (arrivals, failed) = (self.arrivals, self.failed);
        self.stats
            .snapshot(now, farm_runtime::worker::now_us(), arrivals, failed)
    }
}

/// Locks the shared state; a poisoned lock (a panic while holding it) still
/// holds consistent counters, so it is used as is.
pub fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A result waiting to be written.
#[derive(Debug)]
struct Pending {
    msg: jetstream::Message,
    id: String,
    seq: u64,
    status: Status,
    completion: Completion,
}

/// Most OUTPUT publishes whose ack is awaited at once. Below the client's
/// in-flight ack limit (5000): past it `send_publish` itself waits for a
/// permit, which only an awaited ack gives back.
pub const MAX_WRITES_INFLIGHT: usize = 2048;

/// An OUTPUT publish on its way: resolves to the result and the store's
/// answer.
type Write = Pin<Box<dyn Future<Output = Written> + Send>>;

/// A result whose OUTPUT publish was answered.
#[derive(Debug)]
pub struct Written {
    pending: Pending,
    stored: Result<PublishAck, PublishError>,
}

/// The collecting loop's own state.
pub struct Collector {
    js: jetstream::Context,
    /// The farm's names: each output goes to its task's own subject.
    names: FarmNames,
    ids: IdSet,
    /// Ids admitted but not yet settled, with the copies of the same result
    /// delivered meanwhile: a copy is acked only once its twin's output is
    /// stored, and given back with it otherwise. (Acking a copy early loses
    /// the task if the twin's write then fails: after a server restart the
    /// copy can be the consumer's current delivery, so the twin's nak would
    /// be ignored.)
    inflight: HashMap<String, Vec<jetstream::Message>>,
    reorder: Option<Reorder<Pending>>,
    shared: Arc<Mutex<Shared>>,
    /// OUTPUT publishes awaiting their ack, in publish order.
    writes: FuturesOrdered<Write>,
    /// What the writes in flight add to the totals if they all succeed: the
    /// running counts in an entry's headers include every entry published
    /// before it.
    unsettled: Totals,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("farm", &self.names.farm())
            .field("inflight", &self.inflight.len())
            .field("writes", &self.writes.len())
            .field("ordered", &self.reorder.is_some())
            .finish_non_exhaustive()
    }
}

fn stored_us(msg: &jetstream::Message) -> Option<i64> {
    let info = msg.info().ok()?;
    i64::try_from(info.published.unix_timestamp_nanos() / 1_000).ok()
}

impl Collector {
    /// A collector writing to the OUTPUT stream of `names`, each output on
    /// its task's subject ([`FarmNames::output_task_subject`]). `ids` is the
    /// rebuilt id set; `reorder` is `Some` when ordering is on.
    pub fn new(
        js: jetstream::Context,
        names: FarmNames,
        ids: IdSet,
        reorder: Option<(u64, usize, Duration)>,
        shared: Arc<Mutex<Shared>>,
    ) -> Self {
        Self {
            js,
            names,
            ids,
            inflight: HashMap::new(),
            reorder: reorder.map(|(next, cap, gap)| Reorder::new(next, cap, gap)),
            shared,
            writes: FuturesOrdered::new(),
            unsettled: Totals::default(),
        }
    }

    fn now(&self) -> Duration {
        lock(&self.shared).origin.elapsed()
    }

    /// Decides what to do with one delivered result; returns what became
    /// ready to write.
    async fn admit(&mut self, msg: jetstream::Message) -> Vec<Pending> {
        let result = match TaskResult::decode(msg.payload.clone()) {
            Ok(r) if !r.task_id.is_empty() => r,
            Ok(_) | Err(_) => {
                let stream_seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                tracing::warn!(
                    stream_seq,
                    "result is not a valid TaskResult; skipped (kept in RESULTS)"
                );
                lock(&self.shared).invalid += 1;
                if let Err(e) = msg.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %e, "term of invalid result failed");
                }
                return Vec::new();
            }
        };
        if let Some(copies) = self.inflight.get_mut(&result.task_id) {
            tracing::debug!(task = %result.task_id, "duplicate result; waiting for its twin");
            copies.push(msg);
            return Vec::new();
        }
        if self.ids.contains(&result.task_id) {
            tracing::debug!(task = %result.task_id, "duplicate result");
            lock(&self.shared).stats.duplicate();
            if let Err(e) = msg.ack().await {
                tracing::warn!(error = %e, "ack of duplicate result failed");
            }
            return Vec::new();
        }
        let end_us = stored_us(&msg).unwrap_or(result.task_stored_us);
        let latency_us = u64::try_from(end_us - result.task_stored_us).unwrap_or(0);
        let service_us = u64::try_from(result.finished_us - result.started_us).unwrap_or(0);
        let status = Status::try_from(result.status).unwrap_or(Status::Unspecified);
        let completion = Completion {
            ok: status == Status::Ok,
            latency_us,
            service_us,
            deadline_ms: result.deadline_ms,
            hit: is_hit(status == Status::Ok, latency_us, result.deadline_ms),
        };
        self.inflight.insert(result.task_id.clone(), Vec::new());
        let pending = Pending {
            msg,
            id: result.task_id,
            seq: result.seq,
            status,
            completion,
        };
        let now = self.now();
        match self.reorder.as_mut() {
            Some(r) => r.push(pending.seq, pending, now),
            None => vec![pending],
        }
    }

    /// Releases results whose gap timed out (ordered mode).
    fn poll_reorder(&mut self) -> Vec<Pending> {
        let now = self.now();
        self.reorder
            .as_mut()
            .map(|r| r.poll(now))
            .unwrap_or_default()
    }

    /// Publishes `ready` to OUTPUT in order; the acks are settled later (see
    /// [`Collector::settled`]). Waits for the oldest writes first when
    /// [`MAX_WRITES_INFLIGHT`] are already in flight.
    async fn write(&mut self, ready: Vec<Pending>) {
        for p in ready {
            while self.writes.len() >= MAX_WRITES_INFLIGHT {
                match self.writes.next().await {
                    Some(done) => self.settle(done).await,
                    None => break,
                }
            }
            let planned = {
                let mut t = lock(&self.shared).stats.totals();
                t.completed += self.unsettled.completed + 1;
                t.qos_hits += self.unsettled.qos_hits + u64::from(p.completion.hit);
                t
            };
            self.unsettled.completed += 1;
            self.unsettled.qos_hits += u64::from(p.completion.hit);
            let mut h = HeaderMap::new();
            h.insert(H_TASK_ID, p.id.as_str());
            h.insert(H_SEQ, p.seq.to_string().as_str());
            h.insert(H_STATUS, p.status.label());
            h.insert(H_LATENCY_US, p.completion.latency_us.to_string().as_str());
            h.insert(H_QOS_HIT, if p.completion.hit { "1" } else { "0" });
            h.insert(H_COMPLETED, planned.completed.to_string().as_str());
            h.insert(H_QOS_HITS, planned.qos_hits.to_string().as_str());
            // The message id after the headers: `headers` replaces the
            // whole map, `message_id` adds to it.
            let publish = PublishMessage::build()
                .headers(h)
                .message_id(&p.id)
                .payload(Bytes::clone(&p.msg.payload));
            let sent = self
                .js
                .send_publish(self.names.output_task_subject(&p.id), publish)
                .await;
            self.writes.push_back(Box::pin(awaited(p, sent)));
        }
    }

    /// Whether OUTPUT publishes are waiting for their ack.
    pub fn writing(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Whether another round of up to `round` results may be read now: the
    /// writes in flight leave room for it, or none is in flight (a round
    /// larger than the limit then waits for its own oldest writes inside
    /// [`Collector::write`]).
    pub fn has_room(&self, round: usize) -> bool {
        self.writes.is_empty() || self.writes.len() + round <= MAX_WRITES_INFLIGHT
    }

    /// The oldest write in flight once its ack (or error) arrived; pending
    /// forever when nothing is in flight, so it can sit in a `select!`.
    pub async fn settled(&mut self) -> Written {
        match self.writes.next().await {
            Some(w) => w,
            None => std::future::pending().await,
        }
    }

    /// Applies one answered write: counts the completion and acks the result
    /// when the output is stored (now, or already: a duplicate, or a write
    /// OUTPUT refused because the task's subject holds its entry), else gives
    /// the result back.
    pub async fn settle(&mut self, done: Written) {
        let Written { pending: p, stored } = done;
        self.unsettled.completed -= 1;
        self.unsettled.qos_hits -= u64::from(p.completion.hit);
        let copies = self.inflight.remove(&p.id).unwrap_or_default();
        // Whether this write found the output already stored, or why it
        // failed.
        let stored = match stored {
            Ok(ack) => Ok(ack.duplicate),
            Err(e) if is_already_stored(&e) => {
                // An earlier attempt was stored but its ack was lost (say a
                // timeout while the stream changed leader), outside what the
                // duplicate window recognises.
                tracing::info!(task = %p.id, "output already stored; OUTPUT refused the second write, result acked");
                Ok(true)
            }
            Err(e) => Err(e),
        };
        match stored {
            Ok(already) => {
                // Already stored with an id we do not know means an earlier
                // attempt stored it but its ack was lost: it is this task's
                // one output, so it counts as a completion.
                let known = !self.ids.insert(&p.id);
                {
                    let mut sh = lock(&self.shared);
                    let now = sh.origin.elapsed();
                    if already && known {
                        sh.stats.duplicate();
                    } else {
                        sh.stats.record(p.completion, now);
                    }
                    for _ in &copies {
                        sh.stats.duplicate();
                    }
                }
                for m in std::iter::once(&p.msg).chain(&copies) {
                    if let Err(e) = m.ack().await {
                        // The output is stored; a redelivery is a duplicate.
                        tracing::warn!(task = %p.id, error = %e, "ack of result failed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(task = %p.id, error = %e, "output not stored; result will be redelivered");
                // Every copy is given back: whichever is the consumer's
                // current delivery comes back.
                let nak = AckKind::Nak(Some(Duration::from_millis(500)));
                for m in std::iter::once(&p.msg).chain(&copies) {
                    if let Err(e) = m.ack_with(nak).await {
                        tracing::debug!(error = %e, "nak failed; redelivery after the ack wait");
                    }
                }
            }
        }
    }

    /// Settles every write in flight (on shutdown, so stored outputs get
    /// their results acked instead of redelivered).
    pub async fn finish_writes(&mut self) {
        while let Some(done) = self.writes.next().await {
            self.settle(done).await;
        }
    }

    /// Handles one round of delivered results.
    pub async fn handle(&mut self, batch: Vec<jetstream::Message>) {
        let mut ready = Vec::new();
        for msg in batch {
            ready.extend(self.admit(msg).await);
        }
        if !ready.is_empty() {
            self.write(ready).await;
        }
    }

    /// Handles the ordered output's gap timer.
    pub async fn tick(&mut self) {
        let ready = self.poll_reorder();
        if !ready.is_empty() {
            self.write(ready).await;
        }
    }

    /// Whether ordering is on.
    pub fn ordered(&self) -> bool {
        self.reorder.is_some()
    }
}

/// Awaits the store's answer to one OUTPUT publish.
async fn awaited(pending: Pending, sent: Result<PublishAckFuture, PublishError>) -> Written {
    let stored = match sent {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    Written { pending, stored }
}
