//! Readiness through of-watchdog: the runtime keeps the watchdog's lock file
//! in step with its own readiness.
//!
//! of-watchdog writes its lock file (`/tmp/.lock`) once, right after starting
//! the runtime, and answers its own `GET /_/health` with 200 while the file
//! exists; faas-netes probes either that route or `cat /tmp/.lock`. Neither
//! knows whether the runtime is connected to NATS with its consumer bound.
//! With `FARM_WATCHDOG_LOCK` set, the runtime makes the file mean its own
//! readiness ([`crate::http::Readiness::ready`]): it removes the file while
//! not ready (starting, NATS down, draining) and writes it back when ready,
//! checking every [`SYNC_PERIOD`] (the watchdog writes the file once, after
//! the runtime started, so it is corrected within one period). On SIGTERM the
//! watchdog removes the file itself and the draining runtime never writes it
//! again.
//!
//! ```no_run
//! # async fn demo(readiness: std::sync::Arc<farm_runtime::http::Readiness>) {
//! let stop = tokio_util::sync::CancellationToken::new();
//! let sync = tokio::spawn(farm_runtime::watchdog::keep_lock_file(
//!     "/tmp/.lock".into(),
//!     readiness,
//!     stop.clone(),
//! ));
//! // ... serve; at exit:
//! stop.cancel();
//! let _ = sync.await;
//! # }
//! ```

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::http::Readiness;

/// How often the lock file is brought in line with readiness.
pub const SYNC_PERIOD: Duration = Duration::from_millis(200);

/// Makes `path` exist exactly while `ready`; returns whether it exists now.
fn sync_once(path: &Path, ready: bool) -> std::io::Result<bool> {
    match (ready, path.exists()) {
        (true, false) => {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)?;
            Ok(true)
        }
        (false, true) => match std::fs::remove_file(path) {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        (_, exists) => Ok(exists),
    }
}

/// Keeps `path` present exactly while the replica is ready, until `stop`;
/// then removes it (an exiting replica is not ready).
pub async fn keep_lock_file(path: PathBuf, readiness: Arc<Readiness>, stop: CancellationToken) {
    let mut shown: Option<bool> = None;
    let mut failing = false;
    let mut tick = tokio::time::interval(SYNC_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        match sync_once(&path, readiness.ready()) {
            Ok(present) => {
                failing = false;
                if shown != Some(present) {
                    info!(lock = %path.display(), ready = present, "watchdog lock file follows readiness");
                    shown = Some(present);
                }
            }
            Err(e) => {
                if !failing {
                    warn!(lock = %path.display(), error = %e, "cannot update the watchdog lock file; probes through the watchdog do not follow readiness");
                }
                failing = true;
            }
        }
    }
    if let Err(e) = sync_once(&path, false) {
        warn!(lock = %path.display(), error = %e, "cannot remove the watchdog lock file on exit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_exists_exactly_while_ready() {
        let dir = std::env::temp_dir().join(format!("farm-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lock = dir.join(".lock");
        assert!(!sync_once(&lock, false).unwrap());
        assert!(sync_once(&lock, true).unwrap());
        assert!(lock.exists());
        assert!(sync_once(&lock, true).unwrap());
        assert!(!sync_once(&lock, false).unwrap());
        assert!(!lock.exists());
        let missing = dir.join("no/such/dir/.lock");
        assert!(sync_once(&missing, true).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
