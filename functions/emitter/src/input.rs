//! Turning an HTTP request (headers + body) into task drafts.
//!
//! This is a pure parse: no I/O, no clock, no randomness. Ids that the client
//! did not give stay `None` here; the publisher fills them in, so a test can
//! check exactly what the client asked for.
//!
//! Three body shapes are understood, chosen by `Content-Type`:
//!
//! | content type | meaning |
//! |---|---|
//! | `application/x-ndjson` (or `application/ndjson`, `application/jsonl`) | a batch, one JSON object per line: `{"payload": <json>, "id"?, "content_type"?, "deadline_ms"?, "attributes"?}` |
//! | `application/x-protobuf-delimited` | a batch of length-delimited protobuf `Task`s |
//! | anything else | one task whose payload is the whole body |
//!
//! Request headers give defaults: `X-Deadline-Ms` (a relative deadline in
//! milliseconds) and `X-Attr-<key>: <value>` attributes apply to every task
//! of the request unless a task sets its own; `X-Task-Id` names the task of a
//! single-task request and is refused on a batch (one id cannot name several
//! tasks).

use std::collections::HashMap;

use axum::http::{self as http_types, HeaderMap};
use bytes::{Buf, Bytes};
use farm_runtime::proto::Task;
use prost::Message;
use serde::Deserialize;

/// Header carrying the id of a single task.
pub const TASK_ID_HEADER: &str = "x-task-id";
/// Header carrying a relative deadline in milliseconds.
pub const DEADLINE_HEADER: &str = "x-deadline-ms";
/// Prefix of attribute headers: `X-Attr-<key>: <value>`.
pub const ATTR_PREFIX: &str = "x-attr-";
/// Content type of a length-delimited protobuf `Task` batch.
pub const PROTOBUF_DELIMITED: &str = "application/x-protobuf-delimited";
/// Content type given to a single task whose request had none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Longest task id accepted, in bytes (ids travel as NATS header values).
pub const MAX_ID_LEN: usize = 256;

/// A task as the client described it, before the emitter gives it an id (if
/// missing) and a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDraft {
    /// Client-chosen id, if any; also the JetStream de-duplication id.
    pub id: Option<String>,
    /// Input bytes for the handler.
    pub payload: Bytes,
    /// MIME type of `payload`.
    pub content_type: String,
    /// Relative deadline in milliseconds (0 = none).
    pub deadline_ms: u64,
    /// Free-form attributes.
    pub attributes: HashMap<String, String>,
}

/// Why a request could not be turned into tasks. Every variant names the
/// header or line at fault, so the 400 answer says what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// A header value was not what the header expects.
    #[error("bad header {header}: {reason}")]
    BadHeader {
        /// Lower-case header name.
        header: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// An NDJSON line was not a valid task object.
    #[error("bad NDJSON line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A length-delimited protobuf batch could not be decoded.
    #[error("bad protobuf task #{index} (starting at byte {offset}): {reason}")]
    BadProtobuf {
        /// 1-based position of the task in the batch.
        index: usize,
        /// Byte offset of its length prefix in the body.
        offset: usize,
        /// Decoder message.
        reason: String,
    },
    /// A batch held no task at all.
    #[error("empty batch: the body holds no task")]
    EmptyBatch,
    /// A batch held more tasks than the emitter accepts in one request.
    #[error("batch of {count} tasks exceeds the limit of {max} per request")]
    BatchTooLarge {
        /// Tasks found (counting stops at `max + 1`).
        count: usize,
        /// Configured limit.
        max: usize,
    },
    /// Two tasks of one batch carry the same id.
    #[error("duplicate task id {id:?} on line/task {at}")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// 1-based line or task number of the repetition.
        at: usize,
    },
}

/// Defaults taken from the request headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderDefaults {
    /// `X-Task-Id`, if present.
    pub id: Option<String>,
    /// `X-Deadline-Ms`, 0 if absent.
    pub deadline_ms: u64,
    /// `X-Attr-*` headers, keys lower-case without the prefix.
    pub attributes: HashMap<String, String>,
    /// `Content-Type` without parameters, lower-case; `None` if absent.
    pub content_type: Option<String>,
    /// The full `Content-Type` value as sent (kept for single tasks).
    pub content_type_raw: Option<String>,
}

/// The body shape chosen from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// One task per request.
    Single,
    /// Newline-delimited JSON batch.
    Ndjson,
    /// Length-delimited protobuf `Task` batch.
    ProtobufDelimited,
}

impl HeaderDefaults {
    /// Which body shape the request carries.
    pub fn body_kind(&self) -> BodyKind {
        match self.content_type.as_deref() {
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => {
                BodyKind::Ndjson
            }
            Some(PROTOBUF_DELIMITED) => BodyKind::ProtobufDelimited,
            _ => BodyKind::Single,
        }
    }
}

/// Checks a task id: non-empty, at most [`MAX_ID_LEN`] bytes, visible ASCII
/// without spaces (it becomes a NATS header value and a JSON string).
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty id".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("id longer than {MAX_ID_LEN} bytes"));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "id contains {c:?}; expected visible ASCII without spaces"
        ));
    }
    Ok(())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, InputError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| InputError::BadHeader {
                header: name.to_string(),
                reason: "value is not visible ASCII".into(),
            }),
    }
}

/// Reads the emitter's headers. Every problem is a [`InputError::BadHeader`]
/// naming the header.
pub fn parse_headers(headers: &HeaderMap) -> Result<HeaderDefaults, InputError> {
    let mut out = HeaderDefaults::default();
    if let Some(id) = header_str(headers, TASK_ID_HEADER)? {
        validate_id(id).map_err(|reason| InputError::BadHeader {
            header: TASK_ID_HEADER.into(),
            reason,
        })?;
        out.id = Some(id.to_string());
    }
    if let Some(d) = header_str(headers, DEADLINE_HEADER)? {
        out.deadline_ms = d.parse::<u64>().map_err(|_| InputError::BadHeader {
            header: DEADLINE_HEADER.into(),
            reason: format!("{d:?} is not a whole number of milliseconds"),
        })?;
    }
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(ATTR_PREFIX) else {
            continue;
        };
        if key.is_empty() {
            return Err(InputError::BadHeader {
                header: name.as_str().into(),
                reason: "attribute header needs a key: X-Attr-<key>".into(),
            });
        }
        let value = value.to_str().map_err(|_| InputError::BadHeader {
            header: name.as_str().into(),
            reason: "value is not visible ASCII".into(),
        })?;
        out.attributes
            .insert(key.to_string(), value.trim().to_string());
    }
    if let Some(ct) = header_str(headers, http_types::header::CONTENT_TYPE.as_str())? {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !essence.is_empty() {
            out.content_type = Some(essence);
            out.content_type_raw = Some(ct.to_string());
        }
    }
    Ok(out)
}

/// One NDJSON line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// A JSON string becomes its UTF-8 bytes; any other JSON value is
    /// serialised as JSON.
    payload: serde_json::Value,
    id: Option<String>,
    content_type: Option<String>,
    deadline_ms: Option<u64>,
    #[serde(default)]
    attributes: HashMap<String, String>,
}

fn merged(
    defaults: &HashMap<String, String>,
    own: HashMap<String, String>,
) -> HashMap<String, String> {
    let mut out = defaults.clone();
    out.extend(own);
    out
}

/// Parses the whole request into drafts, at most `max_batch` of them.
pub fn parse_request(
    headers: &HeaderMap,
    body: Bytes,
    max_batch: usize,
) -> Result<Vec<TaskDraft>, InputError> {
    let defaults = parse_headers(headers)?;
    let kind = defaults.body_kind();
    if kind != BodyKind::Single && defaults.id.is_some() {
        return Err(InputError::BadHeader {
            header: TASK_ID_HEADER.into(),
            reason: "X-Task-Id names one task; give ids inside a batch instead".into(),
        });
    }
    let drafts = match kind {
        BodyKind::Single => vec![TaskDraft {
            id: defaults.id.clone(),
            payload: body,
            content_type: defaults
                .content_type_raw
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
            deadline_ms: defaults.deadline_ms,
            attributes: defaults.attributes.clone(),
        }],
        BodyKind::Ndjson => parse_ndjson(&defaults, &body, max_batch)?,
        BodyKind::ProtobufDelimited => parse_protobuf(&defaults, body, max_batch)?,
    };
    check_unique(&drafts)?;
    Ok(drafts)
}

fn check_unique(drafts: &[TaskDraft]) -> Result<(), InputError> {
    if drafts.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(drafts.len());
    for (i, d) in drafts.iter().enumerate() {
        if let Some(id) = &d.id
            && !seen.insert(id.as_str())
        {
            return Err(InputError::DuplicateId {
                id: id.clone(),
                at: i + 1,
            });
        }
    }
    Ok(())
}

fn parse_ndjson(
    defaults: &HeaderDefaults,
    body: &[u8],
    max_batch: usize,
) -> Result<Vec<TaskDraft>, InputError> {
    let mut out = Vec::new();
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.len() == max_batch {
            return Err(InputError::BatchTooLarge {
                count: max_batch + 1,
                max: max_batch,
            });
        }
        let line: Line = serde_json::from_slice(raw).map_err(|e| InputError::BadLine {
            line: line_no,
            reason: e.to_string(),
        })?;
        if let Some(id) = &line.id {
            validate_id(id).map_err(|reason| InputError::BadLine {
                line: line_no,
                reason,
            })?;
        }
        let (payload, implied_type) = match line.payload {
            serde_json::Value::String(s) => (Bytes::from(s), "text/plain; charset=utf-8"),
            other => (
                // Serialising a `Value` cannot fail (string keys only).
                Bytes::from(serde_json::to_vec(&other).map_err(|e| InputError::BadLine {
                    line: line_no,
                    reason: e.to_string(),
                })?),
                "application/json",
            ),
        };
        out.push(TaskDraft {
            id: line.id,
            payload,
            content_type: line.content_type.unwrap_or_else(|| implied_type.into()),
            deadline_ms: line.deadline_ms.unwrap_or(defaults.deadline_ms),
            attributes: merged(&defaults.attributes, line.attributes),
        });
    }
    if out.is_empty() {
        return Err(InputError::EmptyBatch);
    }
    Ok(out)
}

fn parse_protobuf(
    defaults: &HeaderDefaults,
    mut body: Bytes,
    max_batch: usize,
) -> Result<Vec<TaskDraft>, InputError> {
    let total = body.len();
    let mut out = Vec::new();
    while body.has_remaining() {
        let offset = total - body.remaining();
        let index = out.len() + 1;
        if out.len() == max_batch {
            return Err(InputError::BatchTooLarge {
                count: max_batch + 1,
                max: max_batch,
            });
        }
        let task =
            Task::decode_length_delimited(&mut body).map_err(|e| InputError::BadProtobuf {
                index,
                offset,
                reason: e.to_string(),
            })?;
        let id = if task.id.is_empty() {
            None
        } else {
            validate_id(&task.id).map_err(|reason| InputError::BadProtobuf {
                index,
                offset,
                reason,
            })?;
            Some(task.id)
        };
        out.push(TaskDraft {
            id,
            payload: task.payload,
            content_type: if task.content_type.is_empty() {
                DEFAULT_CONTENT_TYPE.into()
            } else {
                task.content_type
            },
            deadline_ms: if task.deadline_ms == 0 {
                defaults.deadline_ms
            } else {
                task.deadline_ms
            },
            attributes: merged(&defaults.attributes, task.attributes.into_iter().collect()),
        });
    }
    if out.is_empty() {
        return Err(InputError::EmptyBatch);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("valid header"));
        }
        h
    }

    #[test]
    fn single_task_takes_headers() {
        let h = headers(&[
            ("x-task-id", "t-1"),
            ("x-deadline-ms", "250"),
            ("x-attr-user", "ann"),
            ("content-type", "image/png"),
        ]);
        let d = parse_request(&h, Bytes::from_static(b"abc"), 10).expect("parses");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].id.as_deref(), Some("t-1"));
        assert_eq!(d[0].deadline_ms, 250);
        assert_eq!(d[0].content_type, "image/png");
        assert_eq!(d[0].attributes.get("user").map(String::as_str), Some("ann"));
        assert_eq!(&d[0].payload[..], b"abc");
    }

    #[test]
    fn single_task_without_content_type_is_octet_stream() {
        let d = parse_request(&HeaderMap::new(), Bytes::new(), 10).expect("parses");
        assert_eq!(d[0].content_type, DEFAULT_CONTENT_TYPE);
        assert_eq!(d[0].id, None);
        assert_eq!(d[0].deadline_ms, 0);
    }

    #[test]
    fn bad_deadline_names_header() {
        let h = headers(&[("x-deadline-ms", "soon")]);
        let err = parse_request(&h, Bytes::new(), 10).expect_err("rejects");
        assert!(
            matches!(err, InputError::BadHeader { ref header, .. } if header == DEADLINE_HEADER)
        );
    }

    #[test]
    fn bad_id_names_header() {
        let h = headers(&[("x-task-id", "a b")]);
        let err = parse_request(&h, Bytes::new(), 10).expect_err("rejects");
        assert!(
            matches!(err, InputError::BadHeader { ref header, .. } if header == TASK_ID_HEADER)
        );
    }

    #[test]
    fn ndjson_batch_with_defaults_and_overrides() {
        let h = headers(&[
            ("content-type", "application/x-ndjson"),
            ("x-deadline-ms", "100"),
            ("x-attr-run", "r1"),
        ]);
        let body = concat!(
            "{\"payload\": {\"ms\": 5}}\n",
            "\n",
            "{\"payload\": \"hi\", \"id\": \"b\", \"deadline_ms\": 7, \"attributes\": {\"k\": \"v\"}}\r\n",
        );
        let d = parse_request(&h, Bytes::from(body), 10).expect("parses");
        assert_eq!(d.len(), 2);
        assert_eq!(&d[0].payload[..], br#"{"ms":5}"#);
        assert_eq!(d[0].content_type, "application/json");
        assert_eq!(d[0].deadline_ms, 100);
        assert_eq!(d[0].id, None);
        assert_eq!(&d[1].payload[..], b"hi");
        assert_eq!(d[1].id.as_deref(), Some("b"));
        assert_eq!(d[1].deadline_ms, 7);
        assert_eq!(d[1].attributes.get("run").map(String::as_str), Some("r1"));
        assert_eq!(d[1].attributes.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn ndjson_bad_line_is_named() {
        let h = headers(&[("content-type", "application/x-ndjson")]);
        let body = "{\"payload\": 1}\n{\"payload\": 2, \"oops\": 3}\n";
        let err = parse_request(&h, Bytes::from(body), 10).expect_err("rejects");
        assert!(
            matches!(err, InputError::BadLine { line: 2, .. }),
            "{err:?}"
        );
        let err = parse_request(&h, Bytes::from("{\"payload\": 1}\nnot json\n"), 10)
            .expect_err("rejects");
        assert!(
            matches!(err, InputError::BadLine { line: 2, .. }),
            "{err:?}"
        );
        let err = parse_request(&h, Bytes::from("{\"id\": \"x\"}"), 10).expect_err("rejects");
        assert!(
            matches!(err, InputError::BadLine { line: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn ndjson_limits() {
        let h = headers(&[("content-type", "application/x-ndjson")]);
        assert_eq!(
            parse_request(&h, Bytes::from("\n\n"), 10),
            Err(InputError::EmptyBatch)
        );
        let body = "{\"payload\":1}\n".repeat(4);
        assert!(matches!(
            parse_request(&h, Bytes::from(body), 3),
            Err(InputError::BatchTooLarge { max: 3, .. })
        ));
        let body = "{\"payload\":1,\"id\":\"a\"}\n{\"payload\":2,\"id\":\"a\"}\n";
        assert!(matches!(
            parse_request(&h, Bytes::from(body), 10),
            Err(InputError::DuplicateId { at: 2, .. })
        ));
    }

    #[test]
    fn batch_refuses_task_id_header() {
        let h = headers(&[("content-type", "application/x-ndjson"), ("x-task-id", "a")]);
        let err = parse_request(&h, Bytes::from("{\"payload\":1}\n"), 10).expect_err("rejects");
        assert!(
            matches!(err, InputError::BadHeader { ref header, .. } if header == TASK_ID_HEADER)
        );
    }

    #[test]
    fn protobuf_batch_round_trips() {
        let h = headers(&[("content-type", PROTOBUF_DELIMITED), ("x-deadline-ms", "9")]);
        let mut body = Vec::new();
        let a = Task {
            id: "a".into(),
            payload: Bytes::from_static(b"x"),
            content_type: "text/plain".into(),
            deadline_ms: 3,
            ..Default::default()
        };
        let b = Task {
            payload: Bytes::from_static(b"y"),
            ..Default::default()
        };
        a.encode_length_delimited(&mut body).expect("vec grows");
        b.encode_length_delimited(&mut body).expect("vec grows");
        let d = parse_request(&h, Bytes::from(body.clone()), 10).expect("parses");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].id.as_deref(), Some("a"));
        assert_eq!(d[0].deadline_ms, 3);
        assert_eq!(d[1].id, None);
        assert_eq!(d[1].deadline_ms, 9);
        assert_eq!(d[1].content_type, DEFAULT_CONTENT_TYPE);

        // A truncated body names the task that broke.
        body.truncate(body.len() - 1);
        let err = parse_request(&h, Bytes::from(body), 10).expect_err("rejects");
        assert!(
            matches!(err, InputError::BadProtobuf { index: 2, .. }),
            "{err:?}"
        );
    }
}
