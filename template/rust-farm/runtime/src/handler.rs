//! The handler API: what a function developer implements.
//!
//! A handler is any `async fn(Task) -> Result<Output, HandlerError>`;
//! [`Handler`] is implemented for every such function, so
//! `farm_runtime::run(handler::handle)` is all `main` needs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::proto::Task;

/// Content type of JSON outputs.
pub const JSON: &str = "application/json";
/// Content type of raw byte outputs.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// What a handler returns on success.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// The output bytes (published as `TaskResult.output`).
    pub body: Bytes,
    /// Their MIME type.
    pub content_type: String,
}

impl Output {
    /// Raw bytes with content type `application/octet-stream`.
    pub fn bytes(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            content_type: OCTET_STREAM.to_owned(),
        }
    }

    /// Bytes with an explicit content type.
    pub fn with_type(body: impl Into<Bytes>, content_type: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            content_type: content_type.into(),
        }
    }

    /// UTF-8 text (`text/plain; charset=utf-8`).
    pub fn text(s: impl Into<String>) -> Self {
        Self::with_type(s.into(), "text/plain; charset=utf-8")
    }

    /// An empty output.
    pub fn empty() -> Self {
        Self::default()
    }

    /// `value` serialised as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, HandlerError> {
        let body = serde_json::to_vec(value).map_err(|e| {
            HandlerError::permanent(format!("cannot serialise output as JSON: {e}"))
        })?;
        Ok(Self::with_type(body, JSON))
    }
}

impl Task {
    /// The payload parsed as JSON into `T`.
    ///
    /// A payload that does not parse is a [`HandlerError::permanent`] error:
    /// retrying the same bytes cannot succeed, so the task goes straight to
    /// the dead-letter stream.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| HandlerError::permanent(format!("payload is not the expected JSON: {e}")))
    }

    /// The payload as UTF-8 text (permanent error otherwise).
    pub fn text(&self) -> Result<&str, HandlerError> {
        std::str::from_utf8(&self.payload)
            .map_err(|e| HandlerError::permanent(format!("payload is not UTF-8: {e}")))
    }

    /// A task with a fresh random id around `payload` (for tests and for
    /// `POST /` bodies that are not a `Task`).
    pub fn from_payload(payload: impl Into<Bytes>, content_type: impl Into<String>) -> Self {
        Task {
            id: uuid::Uuid::new_v4().to_string(),
            payload: payload.into(),
            content_type: content_type.into(),
            ..Default::default()
        }
    }
}

/// Why a handler failed.
///
/// Any `std::error::Error` converts into it with `?`. A *retryable* error
/// (the default) is negatively acknowledged and redelivered with backoff until
/// the consumer's max deliveries, then dead-lettered; a *permanent* one is
/// dead-lettered at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
    retryable: bool,
}

impl HandlerError {
    /// A retryable error.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// An error that retrying cannot fix (bad input).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// The error text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a redelivery may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

// Deliberately no `std::error::Error` impl, so this blanket conversion does
// not overlap with `From<T> for T` (the same trick as `anyhow::Error`).
impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        // Include the source chain: "cannot decode image: unexpected EOF".
        let mut message = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        Self::new(message)
    }
}

/// Boxed future returned by [`Handler::call`].
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Output, HandlerError>> + Send>>;

/// A task handler. Implemented for every
/// `Fn(Task) -> impl Future<Output = Result<Output, HandlerError>>`.
pub trait Handler: Send + Sync + 'static {
    /// Runs the handler on one task.
    fn call(&self, task: Task) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(Task) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Output, HandlerError>> + Send + 'static,
{
    fn call(&self, task: Task) -> HandlerFuture {
        Box::pin(self(task))
    }
}

/// A shared, type-erased handler.
pub type SharedHandler = Arc<dyn Handler>;

/// Runs `handler` on `task` in its own tokio task, so a panic is caught and
/// reported as a retryable [`HandlerError`] instead of killing the replica.
///
/// Dropping the returned future aborts the handler's task, so a replica that
/// gives up on a task (drain timeout) does not leave it running detached.
pub async fn call_isolated(handler: &SharedHandler, task: Task) -> Result<Output, HandlerError> {
    let mut guard = AbortOnDrop(tokio::spawn(handler.call(task)));
    match (&mut guard.0).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Err(HandlerError::new(format!("handler panicked: {text}")))
        }
        Err(e) => Err(HandlerError::new(format!(
            "handler task was cancelled: {e}"
        ))),
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
    struct In {
        n: u32,
    }

    #[test]
    fn json_helpers_round_trip() {
        let t = Task::from_payload(r#"{"n":3}"#, JSON);
        assert_eq!(t.json::<In>().unwrap(), In { n: 3 });
        let o = Output::json(&In { n: 4 }).unwrap();
        assert_eq!(o.content_type, JSON);
        assert_eq!(&o.body[..], br#"{"n":4}"#);
    }

    #[test]
    fn bad_json_is_permanent() {
        let t = Task::from_payload("nope", JSON);
        let e = t.json::<In>().unwrap_err();
        assert!(!e.is_retryable());
    }

    #[test]
    fn std_errors_convert_and_are_retryable() {
        fn f() -> Result<(), HandlerError> {
            let _: u32 = "x".parse()?;
            Ok(())
        }
        let e = f().unwrap_err();
        assert!(e.is_retryable());
        assert!(e.message().contains("invalid digit"));
    }

    #[tokio::test]
    async fn panics_are_caught() {
        async fn boom(_t: Task) -> Result<Output, HandlerError> {
            panic!("kaboom")
        }
        let h: SharedHandler = Arc::new(boom);
        let e = call_isolated(&h, Task::default()).await.unwrap_err();
        assert!(e.message().contains("kaboom"), "{e}");
        async fn ok(t: Task) -> Result<Output, HandlerError> {
            Ok(Output::bytes(t.payload))
        }
        let h: SharedHandler = Arc::new(ok);
        let o = call_isolated(&h, Task::from_payload("x", ""))
            .await
            .unwrap();
        assert_eq!(&o.body[..], b"x");
    }
}
