//! The wire contract (`proto/farm.proto`, package `farm.v1`) as prost types.
//!
//! Generated at build time by protox + prost-build; see `build.rs`. Bytes
//! fields are [`bytes::Bytes`], so payloads are shared, not copied.

#![allow(missing_docs, clippy::doc_markdown)]

include!(concat!(env!("OUT_DIR"), "/farm.v1.rs"));

impl Status {
    /// Lower-case label for logs and metrics (`ok`, `error`, `timeout`).
    pub fn label(self) -> &'static str {
        match self {
            Status::Unspecified => "unspecified",
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
        }
    }
}
