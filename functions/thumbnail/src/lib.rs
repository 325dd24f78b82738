//! A real CPU worker for rust-farm: an image thumbnail pipeline like the
//! reference paper's image-processing farm (decode, resize, encode), built on
//! the `image` crate.
//!
//! A task payload is either a PNG/JPEG image, or a JSON request
//! `{"side": N, "seed": S, "thumb"?: T, "format"?: "png"|"jpeg"}` that makes
//! a synthetic `N`×`N` picture first, so a workload can set the service time
//! by the image side (the cost grows with side², as in the paper's
//! calibration). The output is the encoded thumbnail (longest side `T`,
//! default 128, or the task attribute `thumb`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use farm_runtime::Task;
//! let task = Task::from_payload(&br#"{"side": 256, "seed": 1}"#[..], "application/json");
//! let out = thumbnail_worker::handle(task).await.unwrap();
//! assert_eq!(out.content_type, "image/png");
//! # }
//! ```

pub mod pipeline;

use farm_runtime::{HandlerError, Output, Task};

use crate::pipeline::{DEFAULT_THUMB, MAX_THUMB, ThumbError};

/// Task attribute that sets the thumbnail side for image payloads.
pub const THUMB_ATTRIBUTE: &str = "thumb";

fn thumb_side(task: &Task) -> Result<u32, HandlerError> {
    match task.attributes.get(THUMB_ATTRIBUTE) {
        None => Ok(DEFAULT_THUMB),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(t) if (1..=MAX_THUMB).contains(&t) => Ok(t),
            _ => Err(HandlerError::permanent(format!(
                "attribute {THUMB_ATTRIBUTE}={v:?} is not a side in 1..={MAX_THUMB}"
            ))),
        },
    }
}

/// The handler: runs the pipeline on a blocking thread (it is pure CPU work
/// and must not stall the runtime's reactor, which also sends in-progress
/// acks). Bad input is a permanent error: retrying the same bytes cannot
/// help, so the task goes straight to the dead-letter stream.
pub async fn handle(task: Task) -> Result<Output, HandlerError> {
    let thumb = thumb_side(&task)?;
    let payload = task.payload;
    let made = tokio::task::spawn_blocking(move || pipeline::process(&payload, thumb))
        .await
        .map_err(|e| HandlerError::new(format!("thumbnail thread failed: {e}")))?;
    match made {
        Ok(t) => Ok(Output::with_type(t.bytes, t.format.content_type())),
        Err(
            e @ (ThumbError::BadRequest(_) | ThumbError::OutOfRange { .. } | ThumbError::Decode(_)),
        ) => Err(HandlerError::permanent(e.to_string())),
        Err(e @ ThumbError::Encode(_)) => Err(HandlerError::new(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn synthetic_task_gives_png() {
        let mut task = Task::from_payload(&br#"{"side": 100, "seed": 3}"#[..], "application/json");
        task.attributes.insert(THUMB_ATTRIBUTE.into(), "40".into());
        let out = handle(task).await.expect("thumbnail");
        assert_eq!(out.content_type, "image/png");
        assert!(out.body.starts_with(b"\x89PNG"));
    }

    #[tokio::test]
    async fn bad_payload_is_permanent() {
        let err = handle(Task::from_payload(&b"nope"[..], "text/plain"))
            .await
            .expect_err("rejected");
        assert!(!err.is_retryable());
        let mut task = Task::from_payload(&br#"{"side": 10}"#[..], "application/json");
        task.attributes.insert(THUMB_ATTRIBUTE.into(), "0".into());
        assert!(!handle(task).await.expect_err("rejected").is_retryable());
    }
}
