//! Emitter configuration: the farm-wide keys of
//! [`farm_runtime::config`] (farm name, NATS, topology, HTTP port, log
//! format) plus the emitter's own limits. A pure parse from a map; every
//! problem is reported at once.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `EMITTER_MAX_BATCH` | `10000` | most tasks one request may carry (1..=1000000) |
//! | `EMITTER_MAX_BODY` | `67108864` (64 MiB) | largest request body, bytes (1..=1073741824) |
//! | `EMITTER_ACK_TIMEOUT` | `5s` | how long to wait for JetStream to acknowledge a task (100ms..=60s) |
//!
//! The HTTP port is `FARM_HTTP_PORT` (default 3000, the of-watchdog upstream
//! port); worker-only keys are accepted and ignored.

use std::collections::HashMap;
use std::time::Duration;

use farm_runtime::config::{Config, ConfigErrors, Parser};

/// The validated emitter configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmitterConfig {
    /// Farm-wide settings (names, NATS, topology, HTTP, logs).
    pub farm: Config,
    /// Most tasks per request.
    pub max_batch: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Publish-ack timeout.
    pub ack_timeout: Duration,
}

impl EmitterConfig {
    /// Parses `map` (the environment in production), collecting every error.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut p = Parser::new(map);
        let farm = p.nested(Config::from_map(map));
        let max_batch = p.count("EMITTER_MAX_BATCH", 10_000, 1, 1_000_000);
        let max_body_bytes = p.count("EMITTER_MAX_BODY", 64 << 20, 1, 1 << 30);
        let ack_timeout = p.duration(
            "EMITTER_ACK_TIMEOUT",
            Duration::from_secs(5),
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        let cfg = farm.map(|farm| Self {
            farm,
            max_batch,
            max_body_bytes,
            ack_timeout,
        });
        p.finish_some(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_runtime::config::ConfigError;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = EmitterConfig::from_map(&map(&[("FARM_NAME", "demo")])).expect("valid");
        assert_eq!(c.max_batch, 10_000);
        assert_eq!(c.max_body_bytes, 64 << 20);
        assert_eq!(c.ack_timeout, Duration::from_secs(5));
        assert_eq!(c.farm.http.port, 3000);
        assert_eq!(c.farm.names.farm(), "demo");
    }

    #[test]
    fn collects_every_error() {
        let errs = EmitterConfig::from_map(&map(&[
            ("EMITTER_MAX_BATCH", "0"),
            ("EMITTER_MAX_BODY", "lots"),
            ("EMITTER_ACK_TIMEOUT", "5 parsecs"),
        ]))
        .expect_err("invalid");
        let e = errs.errors();
        assert!(e.contains(&ConfigError::Missing { key: "FARM_NAME" }));
        assert!(e.iter().any(|e| matches!(
            e,
            ConfigError::OutOfRange {
                key: "EMITTER_MAX_BATCH",
                ..
            }
        )));
        assert!(e.iter().any(|e| matches!(
            e,
            ConfigError::InvalidNumber {
                key: "EMITTER_MAX_BODY",
                ..
            }
        )));
        assert!(e.iter().any(|e| matches!(
            e,
            ConfigError::InvalidDuration {
                key: "EMITTER_ACK_TIMEOUT",
                ..
            }
        )));
    }
}
