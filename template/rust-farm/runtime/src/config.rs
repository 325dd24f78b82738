//! Worker configuration: a pure parse from key/value strings.
//!
//! [`Config::from_map`] takes any map (tests pass a `HashMap`, `main` passes
//! the process environment through [`Config::from_env`]) and returns either a
//! validated [`Config`] or **every** problem at once in [`ConfigErrors`], so a
//! misconfigured deployment is fixed in one round.
//!
//! Durations are written like OpenFaaS timeouts: a whole number followed by a
//! unit, `ms`, `s`, `m` or `h` (`500ms`, `30s`, `2m`, `24h`).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `FARM_NAME` | **required** | farm name, `[a-z][a-z0-9-]*`, at most 32 characters; selects streams `FARM_<F>_*` |
//! | `NATS_URL` | `nats://127.0.0.1:4222` | NATS server URL(s), comma-separated (`nats://`, `tls://`, `host:port`) |
//! | `NATS_TOKEN` | — | token authentication |
//! | `NATS_TOKEN_FILE` | — | file holding the token (OpenFaaS secret mount) |
//! | `NATS_CREDS` | — | NATS `.creds` file (JWT + nkey seed) |
//! | `NATS_USER`, `NATS_PASSWORD` | — | user/password authentication; both or neither |
//! | `NATS_PASSWORD_FILE` | — | file holding the password, instead of `NATS_PASSWORD` |
//! | `NATS_TLS_CA` | — | PEM file of CA certificates to trust; implies TLS |
//! | `NATS_TLS_CERT`, `NATS_TLS_KEY` | — | client certificate and key (PEM); both or neither; imply TLS |
//! | `NATS_TLS_REQUIRED` | `false` (`true` if any TLS file is set or the URL is `tls://`) | refuse plain-text connections |
//! | `FARM_CONCURRENCY` | `1` | tasks one replica runs at once (1..=4096) |
//! | `FARM_FETCH_BATCH` | `FARM_CONCURRENCY` | most tasks requested in one pull (1..=concurrency) |
//! | `FARM_FETCH_EXPIRES` | `1s` | how long one pull request waits for tasks (10ms..=60s); also bounds how fast a drain stops pulling |
//! | `FARM_ACK_WAIT` | `30s` | consumer ack wait (100ms..=12h); in-progress acks are sent every third of it |
//! | `FARM_MAX_DELIVER` | `5` | deliveries before a failing task goes to the DLQ (1..=1000) |
//! | `FARM_MAX_ACK_PENDING` | `10000` | consumer limit of unacknowledged tasks over all replicas (1..=1000000) |
//! | `FARM_NAK_DELAY` | `1s` | redelivery delay after the first failure; doubles per delivery |
//! | `FARM_NAK_DELAY_MAX` | `30s` | cap of the redelivery delay |
//! | `FARM_DRAIN_GRACE` | `25s` | on SIGTERM, time to finish held tasks before giving up (exit 1) |
//! | `FARM_SHED_EXPIRED` | `false` | dead-letter a task whose deadline passed before a replica started it instead of running it (it is a QoS miss either way; the replica takes the next one) |
//! | `FARM_TASKS_MAX_MSGS` | `-1` (no limit) | task stream message limit; a full stream rejects new tasks |
//! | `FARM_TASKS_MAX_BYTES` | `-1` (no limit) | task stream byte limit; a full stream rejects new tasks |
//! | `FARM_DUPLICATE_WINDOW` | `2m` | de-duplication window of task and result message ids |
//! | `FARM_RESULTS_MAX_AGE` | `24h` | how long results are kept |
//! | `FARM_DLQ_MAX_AGE` | `168h` | how long dead letters are kept |
//! | `FARM_STREAM_REPLICAS` | 1 on a single server, min(3, cluster size) on a cluster | replicas of a new stream (1..=5), checked against the cluster ([`crate::replicas`]) |
//! | `FARM_INSTANCE` | `HOSTNAME`, else a random id | worker instance name written into results |
//! | `FARM_HTTP_ADDR` | `127.0.0.1` | address of the HTTP server (of-watchdog upstream) |
//! | `FARM_HTTP_PORT` | `3000` | port of the HTTP server; `0` picks a free port |
//! | `FARM_WATCHDOG_LOCK` | — | of-watchdog's lock file (the template's Dockerfile: `/tmp/.lock`); the runtime keeps it present exactly while it is ready, so the watchdog's `/_/health` and an exec probe `cat /tmp/.lock` report the runtime's readiness ([`crate::watchdog`]) |
//! | `LOG_FORMAT` | `text` | `text` or `json` |
//! | `RUST_LOG` | `info` | tracing filter (read by the subscriber, not here) |
//!
//! # Under of-watchdog
//!
//! The watchdog is the container's PID 1 and forwards SIGTERM to the
//! runtime; it then waits `healthcheck_interval` (the watchdog's
//! `write_timeout` when unset) before it shuts down and exits, and its exit
//! ends the container, a draining runtime included. So a drain can only
//! finish if the watchdog waits long enough: when the watchdog's keys are in
//! the environment (the runtime inherits them; the template's Dockerfile
//! sets them), the parse requires
//! `healthcheck_interval >= FARM_DRAIN_GRACE + `[`WATCHDOG_DRAIN_MARGIN`] and
//! refuses the combination otherwise ([`ConfigError::DrainOutlastsWatchdog`]).
//! The watchdog's values are read as it reads them: a whole number of
//! seconds or a duration such as `25s`; a form only Go parses (`1m30s`)
//! skips the check.
//!
//! Every process of one farm (emitter, workers, collector) must share the
//! topology keys (`FARM_TASKS_*`, `FARM_DUPLICATE_WINDOW`, `FARM_RESULTS_MAX_AGE`,
//! `FARM_DLQ_MAX_AGE`, `FARM_STREAM_REPLICAS`, `FARM_ACK_WAIT`,
//! `FARM_MAX_DELIVER`, `FARM_MAX_ACK_PENDING`): a stream or consumer that
//! already exists with other values is refused by [`crate::topology::ensure`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::names::FarmNames;

mod error;
mod http;
mod nats;
mod parser;
mod topology;
mod worker;

pub use error::{ConfigError, ConfigErrors};
pub use http::HttpConfig;
pub use nats::{NatsAuth, NatsConfig, Secret, TlsConfig};
pub use parser::{Parser, env_map, parse_bool, parse_duration};
pub use topology::TopologyConfig;
pub use worker::{SHED_EXPIRED, WorkerConfig};

/// What a drain may take beyond `FARM_DRAIN_GRACE`: the naks of aborted
/// tasks (2 s) and the final flush (3 s).
pub const WATCHDOG_DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// of-watchdog's delay between SIGTERM and its exit, from its own keys
/// (`healthcheck_interval`, else `write_timeout`), with the key it came
/// from; `None` when neither is set (no watchdog) or the value is in a form
/// only Go parses.
pub fn watchdog_shutdown_delay(map: &HashMap<String, String>) -> Option<(&'static str, Duration)> {
    let read = |key: &'static str| {
        let raw = map.get(key)?.trim();
        let d = match raw.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => parse_duration(raw)?,
        };
        Some((key, d))
    };
    if map.contains_key("healthcheck_interval") {
        read("healthcheck_interval")
    } else {
        read("write_timeout")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration of a worker replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Farm names.
    pub names: FarmNames,
    /// NATS connection.
    pub nats: NatsConfig,
    /// JetStream topology.
    pub topology: TopologyConfig,
    /// Pull loop.
    pub worker: WorkerConfig,
    /// HTTP server.
    pub http: HttpConfig,
    /// Log format.
    pub log_format: LogFormat,
    /// of-watchdog's lock file to keep in step with readiness, if any.
    pub watchdog_lock: Option<PathBuf>,
}

impl Config {
    /// Parses a worker configuration from `map`, collecting every error.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut p = Parser::new(map);
        let names = p.farm_names();
        let nats = p.nats();
        let topology = p.topology();
        let worker = p.worker();
        let http = p.http();
        let log_format = p.log_format();
        let watchdog_lock = p.get("FARM_WATCHDOG_LOCK").map(PathBuf::from);
        if let Some((key, interval)) = watchdog_shutdown_delay(map)
            && interval < worker.drain_grace + WATCHDOG_DRAIN_MARGIN
        {
            p.errors.push(ConfigError::DrainOutlastsWatchdog {
                key,
                interval,
                grace: worker.drain_grace,
                margin: WATCHDOG_DRAIN_MARGIN,
            });
        }
        let cfg = match names {
            Some(names) => {
                let mut nats = nats;
                nats.name = Some(format!("farm-{}-{}", names.farm(), worker.instance));
                Some(Config {
                    names,
                    nats,
                    topology,
                    worker,
                    http,
                    log_format,
                    watchdog_lock,
                })
            }
            None => None,
        };
        p.finish_some(cfg)
    }

    /// Parses the process environment (see [`Config::from_map`]).
    pub fn from_env() -> Result<Self, ConfigErrors> {
        Self::from_map(&env_map())
    }
}

impl Parser<'_> {
    fn farm_names(&mut self) -> Option<FarmNames> {
        let Some(raw) = self.get("FARM_NAME") else {
            self.errors.push(ConfigError::Missing { key: "FARM_NAME" });
            return None;
        };
        match FarmNames::new(raw) {
            Ok(n) => Some(n),
            Err(e) => {
                self.errors.push(ConfigError::InvalidFarmName(e));
                None
            }
        }
    }

    fn log_format(&mut self) -> LogFormat {
        match self
            .get("LOG_FORMAT")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("text") | Some("plain") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.errors.push(ConfigError::InvalidChoice {
                    key: "LOG_FORMAT",
                    value: other.to_owned(),
                    expected: "text, json",
                });
                LogFormat::Text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::FarmNameError;

    pub(super) fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_drain_must_fit_in_the_watchdogs_shutdown_delay() {
        let with = |pairs: &[(&str, &str)]| {
            let mut m = map(&[("FARM_NAME", "demo")]);
            m.extend(map(pairs));
            Config::from_map(&m)
        };
        // No watchdog keys: nothing to agree with.
        assert!(with(&[("FARM_DRAIN_GRACE", "25s")]).is_ok());
        // The old template: a 5 s interval cut a 25 s drain short.
        let e = with(&[("FARM_DRAIN_GRACE", "25s"), ("healthcheck_interval", "5s")]).unwrap_err();
        assert!(
            matches!(
                e.0.as_slice(),
                [ConfigError::DrainOutlastsWatchdog {
                    key: "healthcheck_interval",
                    ..
                }]
            ),
            "{e}"
        );
        // Whole seconds, as the watchdog reads them; write_timeout when the
        // interval is unset (the watchdog's own fallback).
        assert!(with(&[("FARM_DRAIN_GRACE", "20s"), ("healthcheck_interval", "25")]).is_ok());
        assert!(with(&[("FARM_DRAIN_GRACE", "20s"), ("healthcheck_interval", "24s")]).is_err());
        let e = with(&[("FARM_DRAIN_GRACE", "20s"), ("write_timeout", "10s")]).unwrap_err();
        assert!(e.to_string().contains("write_timeout"), "{e}");
        assert!(
            with(&[
                ("FARM_DRAIN_GRACE", "20s"),
                ("write_timeout", "10s"),
                ("healthcheck_interval", "30s")
            ])
            .is_ok()
        );
        // A Go-only form is the watchdog's business: no check.
        assert!(
            with(&[
                ("FARM_DRAIN_GRACE", "20s"),
                ("healthcheck_interval", "1m30s")
            ])
            .is_ok()
        );
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = Config::from_map(&map(&[("FARM_NAME", "demo"), ("HOSTNAME", "pod-1")])).unwrap();
        assert_eq!(c.names.farm(), "demo");
        assert_eq!(c.nats.urls, vec!["nats://127.0.0.1:4222".to_owned()]);
        assert_eq!(c.nats.auth, NatsAuth::None);
        assert!(!c.nats.tls.required);
        assert_eq!(c.worker.concurrency, 1);
        assert_eq!(c.worker.fetch_batch, 1);
        assert_eq!(c.worker.instance, "pod-1");
        assert_eq!(c.topology, TopologyConfig::default());
        assert_eq!(c.http.port, 3000);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn full_config_parses() {
        let c = Config::from_map(&map(&[
            ("FARM_NAME", "thumbs"),
            ("NATS_URL", "nats://a:4222, tls://b:4222"),
            ("NATS_USER", "u"),
            ("NATS_PASSWORD_FILE", "/var/openfaas/secrets/pw"),
            ("NATS_TLS_CA", "/ca.pem"),
            ("FARM_CONCURRENCY", "8"),
            ("FARM_FETCH_BATCH", "4"),
            ("FARM_ACK_WAIT", "2m"),
            ("FARM_MAX_DELIVER", "3"),
            ("FARM_TASKS_MAX_MSGS", "1000"),
            ("FARM_DRAIN_GRACE", "500ms"),
            ("FARM_HTTP_PORT", "0"),
            ("LOG_FORMAT", "JSON"),
            ("FARM_INSTANCE", "w1"),
        ]))
        .unwrap();
        assert_eq!(c.nats.urls.len(), 2);
        assert_eq!(
            c.nats.auth,
            NatsAuth::UserPassword {
                user: "u".into(),
                password: Secret::File("/var/openfaas/secrets/pw".into())
            }
        );
        assert!(c.nats.tls.required);
        assert_eq!(c.worker.concurrency, 8);
        assert_eq!(c.worker.fetch_batch, 4);
        assert_eq!(c.topology.ack_wait, Duration::from_secs(120));
        assert_eq!(c.topology.max_deliver, 3);
        assert_eq!(c.topology.tasks_max_msgs, 1000);
        assert_eq!(c.worker.drain_grace, Duration::from_millis(500));
        assert_eq!(c.http.port, 0);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.nats.name.as_deref(), Some("farm-thumbs-w1"));
    }

    #[test]
    fn missing_farm_name() {
        let e = Config::from_map(&map(&[])).unwrap_err();
        assert_eq!(e.0, vec![ConfigError::Missing { key: "FARM_NAME" }]);
        // Empty counts as unset.
        let e = Config::from_map(&map(&[("FARM_NAME", "  ")])).unwrap_err();
        assert_eq!(e.0, vec![ConfigError::Missing { key: "FARM_NAME" }]);
    }

    #[test]
    fn invalid_farm_name() {
        let e = Config::from_map(&map(&[("FARM_NAME", "My.Farm")])).unwrap_err();
        assert!(matches!(
            e.0.as_slice(),
            [ConfigError::InvalidFarmName(FarmNameError::InvalidChar {
                ch: 'M',
                ..
            })]
        ));
    }

    #[test]
    fn collects_every_error() {
        let e = Config::from_map(&map(&[
            ("NATS_URL", "http://x:1:2:3"),
            ("NATS_TOKEN", "t"),
            ("NATS_CREDS", "/c.creds"),
            ("NATS_TLS_CERT", "/c.pem"),
            ("NATS_TLS_REQUIRED", "maybe"),
            ("FARM_CONCURRENCY", "lots"),
            ("FARM_ACK_WAIT", "30"),
            ("FARM_MAX_DELIVER", "0"),
            ("FARM_FETCH_EXPIRES", "2h"),
            ("FARM_HTTP_PORT", "70000"),
            ("FARM_HTTP_ADDR", "localhost"),
            ("LOG_FORMAT", "xml"),
        ]))
        .unwrap_err();
        let has = |pred: &dyn Fn(&ConfigError) -> bool| e.0.iter().any(pred);
        assert!(has(&|x| matches!(
            x,
            ConfigError::Missing { key: "FARM_NAME" }
        )));
        assert!(has(&|x| matches!(x, ConfigError::InvalidUrl { .. })));
        assert!(has(
            &|x| matches!(x, ConfigError::ConflictingAuth { keys } if keys == &vec!["NATS_TOKEN", "NATS_CREDS"])
        ));
        assert!(has(&|x| matches!(
            x,
            ConfigError::Incomplete {
                key: "NATS_TLS_CERT",
                requires: "NATS_TLS_KEY"
            }
        )));
        assert!(has(&|x| matches!(
            x,
            ConfigError::InvalidBool {
                key: "NATS_TLS_REQUIRED",
                ..
            }
        )));
        assert!(has(&|x| matches!(
            x,
            ConfigError::InvalidNumber {
                key: "FARM_CONCURRENCY",
                ..
            }
        )));
        assert!(has(&|x| matches!(
            x,
            ConfigError::InvalidDuration {
                key: "FARM_ACK_WAIT",
                ..
            }
        )));
        assert!(has(&|x| matches!(
            x,
            ConfigError::OutOfRange {
                key: "FARM_MAX_DELIVER",
                value: 0,
                ..
            }
        )));
        assert!(has(&|x| matches!(
            x,
            ConfigError::DurationOutOfRange {
                key: "FARM_FETCH_EXPIRES",
                ..
            }
        )));
        assert!(has(&|x| matches!(
            x,
            ConfigError::OutOfRange {
                key: "FARM_HTTP_PORT",
                ..
            }
        )));
        assert!(has(&|x| matches!(
            x,
            ConfigError::InvalidAddr {
                key: "FARM_HTTP_ADDR",
                ..
            }
        )));
        assert!(has(&|x| matches!(
            x,
            ConfigError::InvalidChoice {
                key: "LOG_FORMAT",
                ..
            }
        )));
        assert_eq!(e.0.len(), 12, "{e}");
    }

    #[test]
    fn partial_parsers() {
        let t = TopologyConfig::from_map(&map(&[("FARM_MAX_DELIVER", "2")])).unwrap();
        assert_eq!(t.max_deliver, 2);
        assert_eq!(t.replicas, None, "unset: chosen from the cluster");
        let t = TopologyConfig::from_map(&map(&[("FARM_STREAM_REPLICAS", "3")])).unwrap();
        assert_eq!(t.replicas, Some(3));
        let e = TopologyConfig::from_map(&map(&[("FARM_STREAM_REPLICAS", "7")])).unwrap_err();
        assert!(matches!(
            e.0[..],
            [ConfigError::OutOfRange {
                key: "FARM_STREAM_REPLICAS",
                value: 7,
                ..
            }]
        ));
        let e = NatsConfig::from_map(&map(&[("NATS_URL", "")])).unwrap();
        assert_eq!(e.urls, vec!["nats://127.0.0.1:4222".to_owned()]);
    }
}
