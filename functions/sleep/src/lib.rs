//! The sleep worker: a rust-farm handler whose service time is dictated by
//! its payload, used to replay scenario service times on a real farm and as
//! the runtime's test vehicle.
//!
//! Payload (JSON): `{"sleep_ms": 250}` waits without using CPU,
//! `{"spin_ms": 250}` busy-loops on a blocking thread (CPU-bound work); both
//! may be given (sleep first). `"fail": true` makes the handler return a
//! retryable error, `"panic": true` makes it panic; `"output"` is echoed back.
//! The answer is JSON: `{"slept_ms":..,"spun_ms":..,"output":..}`.

use std::time::{Duration, Instant};

use farm_runtime::{HandlerError, Output, Task};
use serde::{Deserialize, Serialize};

/// Longest accepted sleep or spin: one hour (a bigger value is a bug in the
/// scenario, not a service time).
pub const MAX_MS: u64 = 3_600_000;

/// The payload of a sleep task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepJob {
    /// Milliseconds to sleep (idle).
    #[serde(default)]
    pub sleep_ms: u64,
    /// Milliseconds to busy-loop (CPU).
    #[serde(default)]
    pub spin_ms: u64,
    /// Return an error instead of a result.
    #[serde(default)]
    pub fail: bool,
    /// Panic instead of returning.
    #[serde(default)]
    pub panic: bool,
    /// Echoed back in the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

/// The reply of a sleep task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepReply {
    /// Milliseconds actually slept.
    pub slept_ms: u64,
    /// Milliseconds actually spun.
    pub spun_ms: u64,
    /// The job's `output`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

/// Handles one sleep task.
pub async fn handle(task: Task) -> Result<Output, HandlerError> {
    let job: SleepJob = task.json()?;
    if job.sleep_ms > MAX_MS || job.spin_ms > MAX_MS {
        return Err(HandlerError::permanent(format!(
            "sleep_ms/spin_ms must be at most {MAX_MS}, got {}/{}",
            job.sleep_ms, job.spin_ms
        )));
    }
    let t0 = Instant::now();
    if job.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.sleep_ms)).await;
    }
    let slept_ms = t0.elapsed().as_millis() as u64;
    let spun_ms = if job.spin_ms > 0 {
        let d = Duration::from_millis(job.spin_ms);
        // Busy work must not block the async reactor the runtime shares.
        tokio::task::spawn_blocking(move || spin(d)).await?
    } else {
        0
    };
    if job.panic {
        panic!("sleep worker asked to panic (task {})", task.id);
    }
    if job.fail {
        return Err(HandlerError::new(format!(
            "sleep worker asked to fail (task {})",
            task.id
        )));
    }
    Output::json(&SleepReply {
        slept_ms,
        spun_ms,
        output: job.output,
    })
}

/// Busy-loops for `d`; returns the milliseconds spent.
pub fn spin(d: Duration) -> u64 {
    let t0 = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while t0.elapsed() < d {
        for _ in 0..1000 {
            // xorshift: cheap work the optimiser cannot remove.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    }
    t0.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: &str) -> Task {
        Task::from_payload(json.to_owned(), "application/json")
    }

    #[tokio::test]
    async fn sleeps_and_spins() {
        let out = handle(task(r#"{"sleep_ms":20,"spin_ms":20,"output":7}"#))
            .await
            .unwrap();
        let r: SleepReply = serde_json::from_slice(&out.body).unwrap();
        assert!(r.slept_ms >= 20 && r.spun_ms >= 20, "{r:?}");
        assert_eq!(r.output, Some(serde_json::json!(7)));
    }

    #[tokio::test]
    async fn fail_is_retryable_and_bad_input_is_permanent() {
        let e = handle(task(r#"{"fail":true}"#)).await.unwrap_err();
        assert!(e.is_retryable());
        let e = handle(task(r#"{"sleep":1}"#)).await.unwrap_err();
        assert!(!e.is_retryable());
        let e = handle(task(r#"{"sleep_ms":99999999999}"#))
            .await
            .unwrap_err();
        assert!(!e.is_retryable());
    }
}
