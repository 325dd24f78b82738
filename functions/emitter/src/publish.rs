//! Publishing task drafts on the farm's TASKS stream.
//!
//! Each task is published with `Nats-Msg-Id` = task id, so a client that
//! retries a request with the same ids (after a timeout, say) cannot create a
//! second copy inside the stream's duplicate window. A task counts as accepted
//! only once JetStream has acknowledged storing it; publishes of a batch are
//! pipelined (sent back to back while the acks are awaited in order), so a
//! batch costs about one round trip, not one per task.
//!
//! Sequence numbers: the emitter numbers tasks from a counter that starts,
//! when the emitter starts, just after the TASKS stream's last sequence
//! (server state, so it survives restarts without a file of its own). A
//! number handed to a task that is then rejected (stream full) is not
//! reused, so the ordered output must tolerate gaps; the collector skips them
//! after a timeout (see its `reorder` module). Known limits: because rejected
//! tasks consume numbers but not stream sequences, an emitter restarted after
//! rejections can hand out a number again (the collector then releases equal
//! numbers together), and several emitter replicas number independently, so
//! `seq` order is only meaningful with one emitter.

use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use farm_runtime::proto::Task;
use prost::Message;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::input::TaskDraft;

/// Why JetStream did not take a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Rejection {
    /// The stream is at its message or byte limit (discard-new policy).
    #[error("stream full: {0}")]
    StreamFull(String),
    /// NATS is unreachable, timed out, or has no stream for the subject.
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
    /// The task is larger than the server accepts in one message.
    #[error("task too large: {0}")]
    TooLarge(String),
    /// Any other refusal by the server.
    #[error("publish failed: {0}")]
    Failed(String),
}

/// A task JetStream stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// Task id (also its message id).
    pub id: String,
    /// Sequence number given by the emitter.
    pub seq: u64,
    /// True when JetStream already held a task with this id (a retry).
    pub duplicate: bool,
}

/// A task JetStream did not store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Task id.
    pub id: String,
    /// Why.
    pub reason: Rejection,
}

/// What happened to each task of one request, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Stored tasks.
    pub accepted: Vec<Accepted>,
    /// Refused tasks.
    pub rejected: Vec<Rejected>,
}

/// Classifies a JetStream publish error.
pub fn classify(err: &jetstream::context::PublishError) -> Rejection {
    let text = err.to_string();
    match err.kind() {
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => Rejection::Unavailable(text),
        PublishErrorKind::MaxPayloadExceeded => Rejection::TooLarge(text),
        _ => {
            let api =
                std::error::Error::source(err).and_then(|s| s.downcast_ref::<jetstream::Error>());
            match api {
                // 10077 is "stream store failed"; with discard-new limits
                // its description is "maximum messages exceeded" or
                // "maximum bytes exceeded".
                Some(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_STORE_FAILED
                        && e.to_string().contains("maximum") =>
                {
                    Rejection::StreamFull(e.to_string())
                }
                Some(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM =>
                {
                    Rejection::TooLarge(e.to_string())
                }
                _ => Rejection::Failed(text),
            }
        }
    }
}

/// Publishes tasks on one farm's task subject.
#[derive(Debug)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    subject: String,
    next_seq: AtomicU64,
}

/// How many publish acks one request awaits at once. Kept below the
/// context's in-flight ack limit so one large batch cannot starve others.
const PIPELINE: usize = 1024;

impl Publisher {
    /// A publisher on `subject`, numbering tasks from `first_seq`.
    pub fn new(js: jetstream::Context, subject: String, first_seq: u64) -> Self {
        Self {
            client: js.client(),
            js,
            subject,
            next_seq: AtomicU64::new(first_seq),
        }
    }

    /// Whether the NATS connection is up right now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes the drafts and waits for every ack. Ids missing from the
    /// drafts are generated (UUID v4).
    pub async fn publish(&self, drafts: Vec<TaskDraft>) -> Outcome {
        let ids: Vec<String> = drafts
            .iter()
            .map(|d| {
                d.id.clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
            })
            .collect();
        if !self.connected() {
            // Answer at once instead of letting every publish time out: the
            // client would buffer them and they might still be sent later,
            // but without an ack we cannot call them accepted anyway.
            return Outcome {
                accepted: Vec::new(),
                rejected: ids
                    .into_iter()
                    .map(|id| Rejected {
                        id,
                        reason: Rejection::Unavailable("not connected to NATS".into()),
                    })
                    .collect(),
            };
        }
        let n = drafts.len() as u64;
        let first = self.next_seq.fetch_add(n, Ordering::Relaxed);

        let (tx, mut rx) = mpsc::channel(PIPELINE);
        let send = async {
            for (i, (draft, id)) in drafts.into_iter().zip(ids.iter()).enumerate() {
                let seq = first + i as u64;
                let task = Task {
                    id: id.clone(),
                    seq,
                    payload: draft.payload,
                    content_type: draft.content_type,
                    deadline_ms: draft.deadline_ms,
                    attributes: draft.attributes,
                };
                let msg = PublishMessage::build()
                    .message_id(id)
                    .payload(Bytes::from(task.encode_to_vec()));
                let sent = self.js.send_publish(self.subject.clone(), msg).await;
                if tx.send((i, seq, sent)).await.is_err() {
                    break;
                }
            }
            drop(tx);
        };
        let mut outcome = Outcome::default();
        let recv = async {
            while let Some((i, seq, sent)) = rx.recv().await {
                let id = ids[i].clone();
                let acked = match sent {
                    Ok(fut) => fut.await,
                    Err(e) => Err(e),
                };
                match acked {
                    Ok(ack) => outcome.accepted.push(Accepted {
                        id,
                        seq,
                        duplicate: ack.duplicate,
                    }),
                    Err(e) => {
                        let reason = classify(&e);
                        tracing::debug!(task = %id, %reason, "task rejected");
                        outcome.rejected.push(Rejected { id, reason });
                    }
                }
            }
        };
        tokio::join!(send, recv);
        outcome
    }
}
