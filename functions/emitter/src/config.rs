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

use farm_runtime::config::{Config, ConfigError, ConfigErrors, parse_duration};

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

fn int_key(
    map: &HashMap<String, String>,
    key: &'static str,
    default: i64,
    (min, max): (i64, i64),
    errors: &mut Vec<ConfigError>,
) -> i64 {
    let Some(raw) = map.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
        return default;
    };
    match raw.parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => v,
        Ok(v) => {
            errors.push(ConfigError::OutOfRange {
                key,
                value: v,
                min,
                max,
            });
            default
        }
        Err(_) => {
            errors.push(ConfigError::InvalidNumber {
                key,
                value: raw.to_owned(),
            });
            default
        }
    }
}

impl EmitterConfig {
    /// Parses `map` (the environment in production), collecting every error.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let farm = Config::from_map(map).map_err(|e| errors.extend(e.0));
        let max_batch = int_key(
            map,
            "EMITTER_MAX_BATCH",
            10_000,
            (1, 1_000_000),
            &mut errors,
        );
        let max_body = int_key(map, "EMITTER_MAX_BODY", 64 << 20, (1, 1 << 30), &mut errors);
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(60));
        let ack_timeout = match map
            .get("EMITTER_ACK_TIMEOUT")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None => Duration::from_secs(5),
            Some(raw) => match parse_duration(raw) {
                Some(d) if d >= min && d <= max => d,
                Some(_) => {
                    errors.push(ConfigError::DurationOutOfRange {
                        key: "EMITTER_ACK_TIMEOUT",
                        value: raw.to_owned(),
                        min,
                        max,
                    });
                    min
                }
                None => {
                    errors.push(ConfigError::InvalidDuration {
                        key: "EMITTER_ACK_TIMEOUT",
                        value: raw.to_owned(),
                    });
                    min
                }
            },
        };
        match farm {
            Ok(farm) if errors.is_empty() => Ok(Self {
                farm,
                // Both were range-checked to positive values above.
                max_batch: usize::try_from(max_batch).unwrap_or(1),
                max_body_bytes: usize::try_from(max_body).unwrap_or(1),
                ack_timeout,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
