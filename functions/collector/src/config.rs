//! Collector configuration: the farm-wide keys of [`farm_runtime::config`]
//! (farm name, NATS, topology, HTTP port, log format) plus the collector's
//! own. A pure parse from a map; every problem is reported at once.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `COLLECTOR_ORDERED` | `false` | output in `seq` order instead of completion order |
//! | `COLLECTOR_WINDOW` | `8s` | sliding window of window QoS, percentiles and rates (1s..=1h) |
//! | `COLLECTOR_SNAPSHOT_INTERVAL` | `1s` | how often a `MetricsSnapshot` is published (100ms..=1m) |
//! | `COLLECTOR_DEDUP_CAPACITY` | `200000` | completed task ids remembered for de-duplication (1..=100000000) |
//! | `COLLECTOR_REORDER_CAPACITY` | `10000` | results held back waiting for a missing `seq` (1..=1000000) |
//! | `COLLECTOR_GAP_TIMEOUT` | `5s` | how long the ordered output waits for a missing `seq` before skipping it (10ms..=10m) |
//! | `COLLECTOR_BATCH` | `256` | results pulled and written per round (1..=10000) |
//! | `COLLECTOR_ACK_WAIT` | `60s` | ack wait of the `collector` consumer (1s..=12h) |
//! | `COLLECTOR_OUTPUT_MAX_AGE` | `24h` | how long the OUTPUT stream keeps entries (1s..=8760h) |
//!
//! The HTTP port is `FARM_HTTP_PORT` (default 3000); worker-only keys are
//! accepted and ignored.

use std::collections::HashMap;
use std::time::Duration;

use farm_runtime::config::{Config, ConfigErrors, Parser};

/// The validated collector configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorConfig {
    /// Farm-wide settings (names, NATS, topology, HTTP, logs).
    pub farm: Config,
    /// Output in `seq` order.
    pub ordered: bool,
    /// Sliding window of the snapshot.
    pub window: Duration,
    /// Snapshot period.
    pub snapshot_interval: Duration,
    /// Ids remembered for de-duplication.
    pub dedup_capacity: usize,
    /// Results held by the reorder buffer.
    pub reorder_capacity: usize,
    /// Wait for a missing `seq`.
    pub gap_timeout: Duration,
    /// Results per round.
    pub batch: usize,
    /// Ack wait of the results consumer.
    pub ack_wait: Duration,
    /// Age limit of the OUTPUT stream.
    pub output_max_age: Duration,
}

const MS: fn(u64) -> Duration = Duration::from_millis;
const S: fn(u64) -> Duration = Duration::from_secs;

impl CollectorConfig {
    /// Parses `map` (the environment in production), collecting every error.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut k = Parser::new(map);
        let farm = k.nested(Config::from_map(map));
        let ordered = k.boolean("COLLECTOR_ORDERED").unwrap_or(false);
        let window = k.duration("COLLECTOR_WINDOW", S(8), S(1), S(3600));
        let snapshot_interval = k.duration("COLLECTOR_SNAPSHOT_INTERVAL", S(1), MS(100), S(60));
        let dedup_capacity = k.count("COLLECTOR_DEDUP_CAPACITY", 200_000, 1, 100_000_000);
        let reorder_capacity = k.count("COLLECTOR_REORDER_CAPACITY", 10_000, 1, 1_000_000);
        let gap_timeout = k.duration("COLLECTOR_GAP_TIMEOUT", S(5), MS(10), S(600));
        let batch = k.count("COLLECTOR_BATCH", 256, 1, 10_000);
        let ack_wait = k.duration("COLLECTOR_ACK_WAIT", S(60), S(1), S(12 * 3600));
        let output_max_age = k.duration(
            "COLLECTOR_OUTPUT_MAX_AGE",
            S(24 * 3600),
            S(1),
            S(8760 * 3600),
        );
        let cfg = farm.map(|farm| Self {
            farm,
            ordered,
            window,
            snapshot_interval,
            dedup_capacity,
            reorder_capacity,
            gap_timeout,
            batch,
            ack_wait,
            output_max_age,
        });
        k.finish_some(cfg)
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
        let c = CollectorConfig::from_map(&map(&[("FARM_NAME", "demo")])).expect("valid");
        assert!(!c.ordered);
        assert_eq!(c.window, S(8));
        assert_eq!(c.dedup_capacity, 200_000);
        assert_eq!(c.farm.http.port, 3000);
    }

    #[test]
    fn overrides_and_errors() {
        let c = CollectorConfig::from_map(&map(&[
            ("FARM_NAME", "demo"),
            ("COLLECTOR_ORDERED", "yes"),
            ("COLLECTOR_GAP_TIMEOUT", "250ms"),
        ]))
        .expect("valid");
        assert!(c.ordered);
        assert_eq!(c.gap_timeout, MS(250));

        let errs = CollectorConfig::from_map(&map(&[
            ("COLLECTOR_ORDERED", "maybe"),
            ("COLLECTOR_BATCH", "0"),
            ("COLLECTOR_WINDOW", "forever"),
        ]))
        .expect_err("invalid");
        let e = errs.errors();
        assert!(e.contains(&ConfigError::Missing { key: "FARM_NAME" }));
        assert!(e.iter().any(|e| matches!(
            e,
            ConfigError::InvalidBool {
                key: "COLLECTOR_ORDERED",
                ..
            }
        )));
        assert!(e.iter().any(|e| matches!(
            e,
            ConfigError::OutOfRange {
                key: "COLLECTOR_BATCH",
                ..
            }
        )));
        assert!(e.iter().any(|e| matches!(
            e,
            ConfigError::InvalidDuration {
                key: "COLLECTOR_WINDOW",
                ..
            }
        )));
    }
}
