//! The OUTPUT stream `FARM_<F>_OUTPUT`: what the collector writes, and how it
//! recovers its state from it after a restart.
//!
//! Each entry is the worker's `TaskResult` bytes unchanged, published on the
//! task's own subject `farm.<f>.output.<token>`
//! ([`FarmNames::output_task_subject`]) with `Nats-Msg-Id` = task id and
//! these headers:
//!
//! | header | value |
//! |---|---|
//! | `Farm-Task-Id` | task id |
//! | `Farm-Seq` | the task's `seq` |
//! | `Farm-Status` | `ok`, `error` or `timeout` |
//! | `Farm-Latency-Us` | result stored time minus task stored time, µs (server clock) |
//! | `Farm-Qos-Hit` | `1` when the task met its deadline, else `0` |
//! | `Farm-Completed` | running count of outputs including this one |
//! | `Farm-Qos-Hits` | running count of hits including this one |
//!
//! The stream keeps at most one message per subject and refuses a new one
//! on a full subject (`discard_new_per_subject`), so a task's output is
//! stored at most once whatever the collector does: the server refuses the
//! second write ([`is_already_stored`]). The `Nats-Msg-Id` de-duplication
//! alone does not suffice: a publish in flight across a change of stream
//! leader can be committed without the new leader knowing its id, and the
//! redelivered result's publish would then be stored a second time.
//!
//! The running counts let a restarted collector continue its totals from the
//! last entry in O(1); the ids and `seq`s of the last `dedup_capacity`
//! entries rebuild the de-duplication set and the next expected `seq`.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use farm_runtime::config::TopologyConfig;
use farm_runtime::names::FarmNames;
use futures::StreamExt;

use crate::stats::Totals;

/// Header: task id.
pub const H_TASK_ID: &str = "Farm-Task-Id";
/// Header: task `seq`.
pub const H_SEQ: &str = "Farm-Seq";
/// Header: result status label.
pub const H_STATUS: &str = "Farm-Status";
/// Header: end-to-end latency in microseconds.
pub const H_LATENCY_US: &str = "Farm-Latency-Us";
/// Header: `1` for a QoS hit.
pub const H_QOS_HIT: &str = "Farm-Qos-Hit";
/// Header: running output count.
pub const H_COMPLETED: &str = "Farm-Completed";
/// Header: running hit count.
pub const H_QOS_HITS: &str = "Farm-Qos-Hits";

/// Configuration of the OUTPUT stream: one subject per task holding at most
/// one message, a second one refused (`discard: New` per subject), for as
/// long as entries are kept (`max_age`). Its duplicate window equals the task
/// stream's, so a re-publish with the same id inside it is answered as a
/// duplicate (with the first entry's sequence) before the per-subject limit
/// is even consulted.
///
/// A stream created with the earlier configuration (one subject
/// `farm.<f>.output`, `discard: Old`) is not changed in place:
/// [`farm_runtime::topology::ensure_stream`] refuses it with a
/// `StreamConflict` naming the stream and its subjects.
pub fn output_stream_config(
    names: &FarmNames,
    topo: &TopologyConfig,
    max_age: Duration,
) -> stream::Config {
    stream::Config {
        name: names.output_stream(),
        subjects: vec![names.output_filter()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::New,
        discard_new_per_subject: true,
        max_messages_per_subject: 1,
        duplicate_window: topo.duplicate_window,
        max_age,
        max_messages: -1,
        max_bytes: -1,
        num_replicas: farm_runtime::topology::requested_replicas(topo),
        description: Some(format!("rust-farm {}: collector output", names.farm())),
        ..Default::default()
    }
}

/// The text nats-server gives a publish refused because its subject already
/// holds `max_msgs_per_subject` messages and the stream discards new ones
/// per subject (Go `ErrMaxMsgsPerSubject`). It comes with the JetStream error
/// code 10077 ([`ErrorCode::STREAM_STORE_FAILED`]), which other store
/// failures (a full disk, a closed store) share, so the text tells them
/// apart; `tests/output_once.rs` checks both against the real server.
pub const MAX_PER_SUBJECT_REFUSAL: &str = "maximum messages per subject exceeded";

/// Whether an OUTPUT publish was refused because the task's subject already
/// holds its one entry: the task's output is stored. Any other error
/// (timeout, no stream, another store failure) is not.
pub fn is_already_stored(err: &PublishError) -> bool {
    if err.kind() != PublishErrorKind::Other {
        return false;
    }
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|je| {
            je.error_code() == ErrorCode::STREAM_STORE_FAILED
                && je.to_string().contains(MAX_PER_SUBJECT_REFUSAL)
        })
}

/// Configuration of the durable `collector` consumer of RESULTS. It never
/// gives up on a result (`max_deliver` unlimited): a result is acked only
/// once its output is stored.
pub fn collector_consumer_config(
    names: &FarmNames,
    ack_wait: Duration,
    max_ack_pending: i64,
) -> pull::Config {
    pull::Config {
        durable_name: Some(names.collector_consumer().to_owned()),
        description: Some(format!("rust-farm {}: collector", names.farm())),
        deliver_policy: DeliverPolicy::All,
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        ack_wait,
        max_deliver: -1,
        max_ack_pending,
        filter_subject: names.results_subject(),
        ..Default::default()
    }
}

/// What one OUTPUT entry says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Task id.
    pub task_id: String,
    /// Task `seq`.
    pub seq: u64,
    /// Running totals after this entry.
    pub completed: u64,
    /// Running hits after this entry.
    pub qos_hits: u64,
}

/// Reads the farm headers of one OUTPUT entry; `None` if they are missing.
pub fn entry_meta(headers: &HeaderMap) -> Option<EntryMeta> {
    let get = |k: &str| headers.get(k).map(|v| v.as_str().to_owned());
    let num = |k: &str| get(k)?.parse::<u64>().ok();
    Some(EntryMeta {
        task_id: get(H_TASK_ID)?,
        seq: num(H_SEQ)?,
        completed: num(H_COMPLETED)?,
        qos_hits: num(H_QOS_HITS)?,
    })
}

/// State rebuilt from the tail of OUTPUT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Task ids of the tail, oldest first.
    pub ids: Vec<String>,
    /// Totals carried by the last entry.
    pub totals: Totals,
    /// Largest `seq` seen in the tail.
    pub max_seq: Option<u64>,
}

/// Why the OUTPUT tail could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the tail of {stream}: {message}")]
pub struct RecoverError {
    /// Stream name.
    pub stream: String,
    /// Client error.
    pub message: String,
}

/// Reads the last `tail` entries of OUTPUT (an ephemeral ordered consumer,
/// headers only).
pub async fn recover(output: &mut stream::Stream, tail: usize) -> Result<Recovered, RecoverError> {
    let name = output.cached_info().config.name.clone();
    let err = |what: &str, e: &dyn std::fmt::Display| RecoverError {
        stream: name.clone(),
        message: format!("{what}: {e}"),
    };
    let info = output
        .info()
        .await
        .map_err(|e| err("stream info", &e))?
        .clone();
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Recovered::default();
    if info.state.messages == 0 {
        return Ok(out);
    }
    let start = last.saturating_sub(tail as u64 - 1).max(first).max(1);
    let consumer = output
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| err("create ordered consumer", &e))?;
    let mut msgs = consumer.messages().await.map_err(|e| err("messages", &e))?;
    // Entries can expire (max age) while we read; a quiet second means the
    // tail is exhausted even if `last` itself is gone.
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), msgs.next()).await {
        let m = m.map_err(|e| err("read", &e))?;
        let seq_in_stream = m
            .info()
            .map(|i| i.stream_sequence)
            .map_err(|e| err("message info", &e))?;
        if let Some(meta) = m.headers.as_ref().and_then(entry_meta) {
            out.max_seq = Some(out.max_seq.map_or(meta.seq, |s| s.max(meta.seq)));
            out.totals.completed = meta.completed;
            out.totals.qos_hits = meta.qos_hits;
            out.ids.push(meta.task_id);
        }
        if seq_in_stream >= last {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip() {
        let mut h = HeaderMap::new();
        h.insert(H_TASK_ID, "t1");
        h.insert(H_SEQ, "7");
        h.insert(H_COMPLETED, "10");
        h.insert(H_QOS_HITS, "9");
        assert_eq!(
            entry_meta(&h),
            Some(EntryMeta {
                task_id: "t1".into(),
                seq: 7,
                completed: 10,
                qos_hits: 9
            })
        );
        h.insert(H_SEQ, "x");
        assert_eq!(entry_meta(&h), None);
    }

    #[test]
    fn configs_use_farm_names() {
        let names = FarmNames::new("demo").expect("valid");
        let s = output_stream_config(&names, &TopologyConfig::default(), Duration::from_secs(60));
        assert_eq!(s.name, "FARM_DEMO_OUTPUT");
        assert_eq!(s.subjects, vec!["farm.demo.output.>".to_string()]);
        assert_eq!(s.max_messages_per_subject, 1);
        assert_eq!(s.discard, DiscardPolicy::New);
        assert!(s.discard_new_per_subject);
        let c = collector_consumer_config(&names, Duration::from_secs(5), 100);
        assert_eq!(c.durable_name.as_deref(), Some("collector"));
        assert_eq!(c.filter_subject, "farm.demo.results");
        assert_eq!(c.max_deliver, -1);
    }
}
