//! The handler of this rust-farm function: the only code you write.
//!
//! `handle` runs once per task pulled from the farm's work queue (and once
//! per `POST /` through the OpenFaaS gateway). Return `Ok(output)` to publish
//! a result; return `Err(..)` to have the task retried and, after the farm's
//! max deliveries, dead-lettered with the error text. Any error converts with
//! `?`; use `HandlerError::permanent` for input that can never succeed.
//!
//! This skeleton echoes the payload back, and for a JSON payload
//! `{"name": "..."}` answers `{"greeting": "Hello, ..."}`.

use farm_runtime::{HandlerError, Output, Task};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Request {
    name: String,
}

#[derive(Serialize)]
struct Reply {
    greeting: String,
}

/// Handles one task.
pub async fn handle(task: Task) -> Result<Output, HandlerError> {
    if task.content_type.starts_with("application/json") {
        let req: Request = task.json()?;
        return Output::json(&Reply {
            greeting: format!("Hello, {}", req.name),
        });
    }
    Ok(Output::with_type(task.payload, task.content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn greets_json() {
        let task = Task::from_payload(r#"{"name":"farm"}"#, "application/json");
        let out = handle(task).await.unwrap();
        assert_eq!(&out.body[..], br#"{"greeting":"Hello, farm"}"#);
    }

    #[tokio::test]
    async fn echoes_other_payloads() {
        let task = Task::from_payload("raw bytes", "text/plain");
        let out = handle(task).await.unwrap();
        assert_eq!(&out.body[..], b"raw bytes");
        assert_eq!(out.content_type, "text/plain");
    }

    #[tokio::test]
    async fn bad_json_is_a_permanent_error() {
        let task = Task::from_payload("{", "application/json");
        assert!(!handle(task).await.unwrap_err().is_retryable());
    }
}
