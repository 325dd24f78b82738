//! Creates or binds the JetStream topology of a farm, idempotently.
//!
//! | stream | subjects | retention | why |
//! |---|---|---|---|
//! | `FARM_<F>_TASKS` | `farm.<f>.tasks` | work queue, discard **new** | a task is removed once acked; a full stream rejects the publish (the emitter answers 429/503) instead of dropping a task it already accepted |
//! | `FARM_<F>_RESULTS` | `farm.<f>.results` | limits (max age) | workers publish with `Nats-Msg-Id` = task id, so a redelivered task yields one stored result within the duplicate window |
//! | `FARM_<F>_DLQ` | `farm.<f>.dlq` | limits (max age) | dead letters kept for inspection |
//!
//! and the durable pull consumer `workers` on the task stream (explicit ack,
//! ack wait, max deliver, max ack pending).
//!
//! [`ensure`] creates what is missing and checks what exists: a stream or
//! consumer whose settings differ from the requested ones is refused with
//! [`TopologyError::StreamConflict`] / [`TopologyError::ConsumerConflict`]
//! naming the field, never silently reused. The replica count of a new
//! stream comes from `FARM_STREAM_REPLICAS` checked against the cluster, or
//! is chosen from it when unset ([`crate::replicas`]).

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};

use crate::config::TopologyConfig;
use crate::names::FarmNames;
use crate::replicas::{self, ClusterShape, ReplicasError};

/// Why the topology could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// An existing stream has a setting that differs from the requested one.
    #[error(
        "stream {stream} exists with {field} = {existing}, but this farm needs {wanted}; delete the stream or align the configuration"
    )]
    StreamConflict {
        /// The stream.
        stream: String,
        /// The conflicting field (as in `nats stream info`).
        field: &'static str,
        /// Its current value.
        existing: String,
        /// The requested value.
        wanted: String,
    },
    /// An existing consumer has a setting that differs from the requested one.
    #[error(
        "consumer {consumer} on {stream} exists with {field} = {existing}, but this farm needs {wanted}; delete the consumer or align the configuration"
    )]
    ConsumerConflict {
        /// The stream.
        stream: String,
        /// The consumer.
        consumer: String,
        /// The conflicting field.
        field: &'static str,
        /// Its current value.
        existing: String,
        /// The requested value.
        wanted: String,
    },
    /// The stream replicas asked for do not fit the NATS deployment.
    #[error(transparent)]
    Replicas(#[from] ReplicasError),
    /// A JetStream API request failed.
    #[error("JetStream request for {what} failed: {message}")]
    JetStream {
        /// What was being done (`get stream FARM_X_TASKS`, ...).
        what: String,
        /// The server's or client's error text.
        message: String,
    },
}

/// The bound topology: stream handles and the workers consumer.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The task stream.
    pub tasks: stream::Stream,
    /// The result stream.
    pub results: stream::Stream,
    /// The dead-letter stream.
    pub dlq: stream::Stream,
    /// The durable pull consumer `workers` on the task stream.
    pub workers: PullConsumer,
}

/// `num_replicas` of the farm's stream configurations: the count asked for,
/// or 0 (the JetStream API's "unset") to let [`ensure_stream`] take an
/// existing stream's count or choose one for a new stream.
pub fn requested_replicas(cfg: &TopologyConfig) -> usize {
    cfg.replicas.unwrap_or(0)
}

/// The stream configurations [`ensure`] wants, in order tasks, results, DLQ.
pub fn stream_configs(names: &FarmNames, cfg: &TopologyConfig) -> [stream::Config; 3] {
    let tasks = stream::Config {
        name: names.tasks_stream(),
        subjects: vec![names.tasks_subject()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        discard: DiscardPolicy::New,
        duplicate_window: cfg.duplicate_window,
        max_messages: cfg.tasks_max_msgs,
        max_bytes: cfg.tasks_max_bytes,
        num_replicas: requested_replicas(cfg),
        description: Some(format!("rust-farm {}: tasks (work queue)", names.farm())),
        ..Default::default()
    };
    let results = stream::Config {
        name: names.results_stream(),
        subjects: vec![names.results_subject()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        duplicate_window: cfg.duplicate_window,
        max_age: cfg.results_max_age,
        max_messages: -1,
        max_bytes: -1,
        num_replicas: requested_replicas(cfg),
        description: Some(format!("rust-farm {}: task results", names.farm())),
        ..Default::default()
    };
    let dlq = stream::Config {
        name: names.dlq_stream(),
        subjects: vec![names.dlq_subject()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        duplicate_window: cfg.duplicate_window,
        max_age: cfg.dlq_max_age,
        max_messages: -1,
        max_bytes: -1,
        num_replicas: requested_replicas(cfg),
        description: Some(format!("rust-farm {}: dead letters", names.farm())),
        ..Default::default()
    };
    [tasks, results, dlq]
}

/// The consumer configuration [`ensure`] wants for `workers`.
pub fn workers_config(names: &FarmNames, cfg: &TopologyConfig) -> pull::Config {
    pull::Config {
        durable_name: Some(names.workers_consumer().to_owned()),
        description: Some(format!("rust-farm {}: worker replicas", names.farm())),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: cfg.ack_wait,
        max_deliver: i64::from(cfg.max_deliver),
        max_ack_pending: cfg.max_ack_pending,
        filter_subject: names.tasks_subject(),
        ..Default::default()
    }
}

/// Runs `attempt` until it succeeds or fails for a reason other than a
/// JetStream request error: right after a server start, or while a
/// cluster elects a stream's leader, the API times out or answers "not
/// ready" for a few seconds. Conflicts and replica errors are final.
pub async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, TopologyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, TopologyError>>,
{
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match attempt().await {
            Err(e @ TopologyError::JetStream { .. }) => {
                tracing::warn!(error = %e, retry_in = ?delay, "JetStream not ready yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Creates or binds the three streams and the `workers` consumer.
///
/// Safe to call from many processes at once: a creation race is resolved by
/// re-reading what the winner created and checking it like any existing one.
pub async fn ensure(
    js: &jetstream::Context,
    names: &FarmNames,
    cfg: &TopologyConfig,
) -> Result<Topology, TopologyError> {
    let [tasks_cfg, results_cfg, dlq_cfg] = stream_configs(names, cfg);
    let tasks = ensure_stream(js, tasks_cfg).await?;
    let results = ensure_stream(js, results_cfg).await?;
    let dlq = ensure_stream(js, dlq_cfg).await?;
    let workers = ensure_consumer(&tasks, workers_config(names, cfg)).await?;
    tracing::debug!(farm = names.farm(), "topology ensured");
    Ok(Topology {
        tasks,
        results,
        dlq,
        workers,
    })
}

/// Creates `want` if missing, otherwise checks the existing stream against it.
pub async fn ensure_stream(
    js: &jetstream::Context,
    want: stream::Config,
) -> Result<stream::Stream, TopologyError> {
    let name = want.name.clone();
    let js_err = |what: &str, e: &dyn std::fmt::Display| TopologyError::JetStream {
        what: format!("{what} {name}"),
        message: e.to_string(),
    };
    let existing = match js.get_stream(&name).await {
        Ok(s) => Some(s),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(je) if je.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                None
            }
            _ => return Err(js_err("get stream", &e)),
        },
    };
    let stream = match existing {
        Some(s) => s,
        None => match create_stream(js, &want).await? {
            Some(s) => return Ok(s),
            // Another process created it first with other settings; read it
            // back so the conflict is reported field by field.
            None => js
                .get_stream(&name)
                .await
                .map_err(|e| js_err("get stream", &e))?,
        },
    };
    check_stream(&stream.cached_info().config, &want)?;
    Ok(stream)
}

/// Creates `want` with its replicas resolved against the cluster this
/// connection sees; `None` if another process created the stream first.
async fn create_stream(
    js: &jetstream::Context,
    want: &stream::Config,
) -> Result<Option<stream::Stream>, TopologyError> {
    let requested = (want.num_replicas != 0).then_some(want.num_replicas);
    let shape = ClusterShape::of(&js.client().server_info());
    let replicas = replicas::for_new_stream(requested, &shape)?;
    let config = stream::Config {
        num_replicas: replicas,
        ..want.clone()
    };
    match js.create_stream(config).await {
        Ok(s) => {
            tracing::info!(stream = %want.name, replicas, cluster = ?shape.cluster, "created stream");
            Ok(Some(s))
        }
        Err(e) => {
            let refused = match e.kind() {
                CreateStreamErrorKind::JetStream(je)
                    if je.error_code() == ErrorCode::STREAM_NAME_EXIST =>
                {
                    return Ok(None);
                }
                CreateStreamErrorKind::JetStream(je) => replicas::refusal(
                    je.error_code(),
                    &je.to_string(),
                    &want.name,
                    replicas,
                    requested,
                    &shape,
                ),
                _ => None,
            };
            Err(refused.map_or_else(
                || TopologyError::JetStream {
                    what: format!("create stream {}", want.name),
                    message: e.to_string(),
                },
                TopologyError::from,
            ))
        }
    }
}

/// Compares the fields the farm relies on; server-filled defaults are ignored.
pub fn check_stream(have: &stream::Config, want: &stream::Config) -> Result<(), TopologyError> {
    let conflict = |field: &'static str, existing: String, wanted: String| {
        Err(TopologyError::StreamConflict {
            stream: want.name.clone(),
            field,
            existing,
            wanted,
        })
    };
    let mut have_subjects = have.subjects.clone();
    let mut want_subjects = want.subjects.clone();
    have_subjects.sort();
    want_subjects.sort();
    if have_subjects != want_subjects {
        return conflict(
            "subjects",
            format!("{have_subjects:?}"),
            format!("{want_subjects:?}"),
        );
    }
    if have.retention != want.retention {
        return conflict(
            "retention",
            format!("{:?}", have.retention),
            format!("{:?}", want.retention),
        );
    }
    if have.storage != want.storage {
        return conflict(
            "storage",
            format!("{:?}", have.storage),
            format!("{:?}", want.storage),
        );
    }
    if have.discard != want.discard {
        return conflict(
            "discard",
            format!("{:?}", have.discard),
            format!("{:?}", want.discard),
        );
    }
    if have.duplicate_window != want.duplicate_window {
        return conflict(
            "duplicate_window",
            format!("{:?}", have.duplicate_window),
            format!("{:?}", want.duplicate_window),
        );
    }
    if have.max_messages != want.max_messages {
        return conflict(
            "max_msgs",
            have.max_messages.to_string(),
            want.max_messages.to_string(),
        );
    }
    if have.max_bytes != want.max_bytes {
        return conflict(
            "max_bytes",
            have.max_bytes.to_string(),
            want.max_bytes.to_string(),
        );
    }
    // The server stores "no limit" as -1 whether 0 or -1 was asked for.
    let per_subject = |n: i64| n.max(0);
    if per_subject(have.max_messages_per_subject) != per_subject(want.max_messages_per_subject) {
        return conflict(
            "max_msgs_per_subject",
            have.max_messages_per_subject.to_string(),
            want.max_messages_per_subject.to_string(),
        );
    }
    if have.discard_new_per_subject != want.discard_new_per_subject {
        return conflict(
            "discard_new_per_subject",
            have.discard_new_per_subject.to_string(),
            want.discard_new_per_subject.to_string(),
        );
    }
    if have.max_age != want.max_age {
        return conflict(
            "max_age",
            format!("{:?}", have.max_age),
            format!("{:?}", want.max_age),
        );
    }
    // 0 asks for no particular count: an existing stream keeps its own.
    if want.num_replicas != 0 && have.num_replicas.max(1) != want.num_replicas {
        return conflict(
            "num_replicas",
            have.num_replicas.to_string(),
            want.num_replicas.to_string(),
        );
    }
    Ok(())
}

/// Creates the durable consumer if missing, otherwise checks it.
pub async fn ensure_consumer(
    stream: &stream::Stream,
    want: pull::Config,
) -> Result<PullConsumer, TopologyError> {
    let name = want.durable_name.clone().unwrap_or_default();
    let stream_name = stream.cached_info().config.name.clone();
    let js_err = |what: &str, e: &dyn std::fmt::Display| TopologyError::JetStream {
        what: format!("{what} {stream_name}/{name}"),
        message: e.to_string(),
    };
    let consumer: PullConsumer = stream
        .get_or_create_consumer(&name, want.clone())
        .await
        .map_err(|e| js_err("get or create consumer", &e))?;
    check_consumer(&stream_name, &consumer.cached_info().config, &want)?;
    Ok(consumer)
}

/// Compares the consumer fields the worker relies on.
pub fn check_consumer(
    stream: &str,
    have: &jetstream::consumer::Config,
    want: &pull::Config,
) -> Result<(), TopologyError> {
    let conflict = |field: &'static str, existing: String, wanted: String| {
        Err(TopologyError::ConsumerConflict {
            stream: stream.to_owned(),
            consumer: want.durable_name.clone().unwrap_or_default(),
            field,
            existing,
            wanted,
        })
    };
    if have.deliver_subject.is_some() {
        return conflict(
            "deliver_subject",
            format!("{:?}", have.deliver_subject),
            "none (pull consumer)".into(),
        );
    }
    if have.ack_policy != want.ack_policy {
        return conflict(
            "ack_policy",
            format!("{:?}", have.ack_policy),
            format!("{:?}", want.ack_policy),
        );
    }
    if have.ack_wait != want.ack_wait {
        return conflict(
            "ack_wait",
            format!("{:?}", have.ack_wait),
            format!("{:?}", want.ack_wait),
        );
    }
    if have.max_deliver != want.max_deliver {
        return conflict(
            "max_deliver",
            have.max_deliver.to_string(),
            want.max_deliver.to_string(),
        );
    }
    if have.max_ack_pending != want.max_ack_pending {
        return conflict(
            "max_ack_pending",
            have.max_ack_pending.to_string(),
            want.max_ack_pending.to_string(),
        );
    }
    let have_filter = if have.filter_subject.is_empty() && have.filter_subjects.len() == 1 {
        have.filter_subjects[0].clone()
    } else {
        have.filter_subject.clone()
    };
    if have_filter != want.filter_subject {
        return conflict("filter_subject", have_filter, want.filter_subject.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output_like() -> stream::Config {
        stream::Config {
            name: "FARM_DEMO_OUTPUT".into(),
            subjects: vec!["farm.demo.output.>".into()],
            discard: DiscardPolicy::New,
            discard_new_per_subject: true,
            max_messages_per_subject: 1,
            ..Default::default()
        }
    }

    #[test]
    fn per_subject_limits_are_checked() {
        let want = output_like();
        assert!(check_stream(&want, &want).is_ok());
        let unlimited = stream::Config {
            max_messages_per_subject: -1,
            ..want.clone()
        };
        assert!(matches!(
            check_stream(&unlimited, &want),
            Err(TopologyError::StreamConflict {
                field: "max_msgs_per_subject",
                ..
            })
        ));
        let keeps_old = stream::Config {
            discard_new_per_subject: false,
            ..want.clone()
        };
        assert!(matches!(
            check_stream(&keeps_old, &want),
            Err(TopologyError::StreamConflict {
                field: "discard_new_per_subject",
                ..
            })
        ));
    }

    #[test]
    fn unset_per_subject_limit_equals_the_servers_minus_one() {
        let want = stream::Config {
            name: "FARM_DEMO_TASKS".into(),
            ..Default::default()
        };
        let have = stream::Config {
            max_messages_per_subject: -1,
            ..want.clone()
        };
        assert!(check_stream(&have, &want).is_ok());
    }
}
