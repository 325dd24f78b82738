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
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::names::{FarmNameError, FarmNames};

mod nats;
pub use nats::{NatsAuth, NatsConfig, Secret, TlsConfig};

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required key is absent or empty.
    #[error("{key} is required but not set")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A value is not a whole number.
    #[error("{key}={value:?} is not a whole number")]
    InvalidNumber {
        /// The key.
        key: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A number lies outside its accepted range.
    #[error("{key}={value} is out of range; expected {min}..={max}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The rejected value.
        value: i64,
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// A duration does not parse.
    #[error(
        "{key}={value:?} is not a duration; expected a whole number with unit ms, s, m or h (e.g. 30s)"
    )]
    InvalidDuration {
        /// The key.
        key: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A duration lies outside its accepted range.
    #[error("{key}={value:?} is out of range; expected {min:?}..={max:?}")]
    DurationOutOfRange {
        /// The key.
        key: &'static str,
        /// The rejected value.
        value: String,
        /// Shortest accepted duration.
        min: Duration,
        /// Longest accepted duration.
        max: Duration,
    },
    /// A boolean is not `true`/`false`/`1`/`0`/`yes`/`no`.
    #[error("{key}={value:?} is not a boolean; expected true or false")]
    InvalidBool {
        /// The key.
        key: &'static str,
        /// The rejected value.
        value: String,
    },
    /// The farm name is invalid.
    #[error("FARM_NAME: {0}")]
    InvalidFarmName(#[source] FarmNameError),
    /// A NATS URL does not parse.
    #[error(
        "NATS_URL entry {value:?} is not a NATS URL ({reason}); expected e.g. nats://host:4222"
    )]
    InvalidUrl {
        /// The rejected entry.
        value: String,
        /// What the URL parser said.
        reason: String,
    },
    /// More than one authentication method is configured.
    #[error(
        "conflicting NATS authentication: {keys:?} are all set; choose one of token, creds file, or user+password"
    )]
    ConflictingAuth {
        /// The keys that are set.
        keys: Vec<&'static str>,
    },
    /// A key is set that only makes sense together with another one.
    #[error("{key} is set but {requires} is not; set both or neither")]
    Incomplete {
        /// The key that is set.
        key: &'static str,
        /// The missing companion key.
        requires: &'static str,
    },
    /// An enumerated value is not one of the accepted choices.
    #[error("{key}={value:?} is not accepted; expected one of {expected}")]
    InvalidChoice {
        /// The key.
        key: &'static str,
        /// The rejected value.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// An IP address does not parse.
    #[error("{key}={value:?} is not an IP address")]
    InvalidAddr {
        /// The key.
        key: &'static str,
        /// The rejected value.
        value: String,
    },
    /// of-watchdog would exit (ending the container) before a drain of
    /// `FARM_DRAIN_GRACE` could finish.
    #[error(
        "FARM_DRAIN_GRACE={grace:?} does not fit in of-watchdog's {key}={interval:?}: the watchdog exits that long after SIGTERM and takes the draining worker with it; set {key} to at least FARM_DRAIN_GRACE + {margin:?} (and the pod's terminationGracePeriodSeconds above {key}), or lower FARM_DRAIN_GRACE"
    )]
    DrainOutlastsWatchdog {
        /// The watchdog key that set the interval (`healthcheck_interval` or `write_timeout`).
        key: &'static str,
        /// The watchdog's shutdown delay.
        interval: Duration,
        /// The runtime's drain grace.
        grace: Duration,
        /// The margin the runtime needs beyond the grace.
        margin: Duration,
    },
}

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

/// All problems found in one parse, in key order of discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problems):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// JetStream topology settings (see [`crate::topology::ensure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyConfig {
    /// Task stream message limit, -1 for none.
    pub tasks_max_msgs: i64,
    /// Task stream byte limit, -1 for none.
    pub tasks_max_bytes: i64,
    /// De-duplication window of the task and result streams.
    pub duplicate_window: Duration,
    /// Maximum age of results.
    pub results_max_age: Duration,
    /// Maximum age of dead letters.
    pub dlq_max_age: Duration,
    /// Stream replicas asked for (`FARM_STREAM_REPLICAS`); `None` lets
    /// [`crate::replicas::for_new_stream`] choose from the cluster.
    pub replicas: Option<usize>,
    /// Consumer ack wait.
    pub ack_wait: Duration,
    /// Consumer max deliveries; the worker dead-letters a task at this count.
    pub max_deliver: u32,
    /// Consumer max ack pending over all replicas.
    pub max_ack_pending: i64,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            tasks_max_msgs: -1,
            tasks_max_bytes: -1,
            duplicate_window: Duration::from_secs(120),
            results_max_age: Duration::from_secs(24 * 3600),
            dlq_max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 10_000,
        }
    }
}

impl TopologyConfig {
    /// Parses only the topology keys (for the emitter, collector and tools).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut p = Parser::new(map);
        let t = p.topology();
        p.finish(t)
    }
}

/// Pull-loop settings of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Tasks run at once.
    pub concurrency: usize,
    /// Most tasks requested in one pull.
    pub fetch_batch: usize,
    /// Expiry of one pull request.
    pub fetch_expires: Duration,
    /// Redelivery delay after the first failure (doubles per delivery).
    pub nak_delay: Duration,
    /// Cap of the redelivery delay.
    pub nak_delay_max: Duration,
    /// Time allowed to drain on SIGTERM.
    pub drain_grace: Duration,
    /// Dead-letter tasks already past their deadline instead of running them.
    pub shed_expired: bool,
    /// Instance name written into results and dead letters.
    pub instance: String,
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

/// HTTP server settings (the of-watchdog upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Bind address.
    pub addr: IpAddr,
    /// Port, 0 for any free port.
    pub port: u16,
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

/// The process environment as a map (non-UTF-8 entries are skipped).
pub fn env_map() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Parses a duration such as `500ms`, `30s`, `2m`, `24h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }?;
    Some(Duration::from_millis(ms))
}

/// Typed reads of configuration keys from a map, collecting every problem
/// instead of stopping at the first: the one parsing logic of every rust-farm
/// process (workers here; the emitter, collector and tools for their own
/// keys).
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
/// use farm_runtime::config::Parser;
///
/// let map = HashMap::from([("BATCH".to_owned(), "64".to_owned())]);
/// let mut p = Parser::new(&map);
/// let batch = p.int("BATCH", 16, 1, 1024);
/// let wait = p.duration("WAIT", Duration::from_secs(1), Duration::ZERO, Duration::from_secs(60));
/// assert_eq!(p.finish((batch, wait)).unwrap(), (64, Duration::from_secs(1)));
/// ```
#[derive(Debug)]
pub struct Parser<'a> {
    map: &'a HashMap<String, String>,
    errors: Vec<ConfigError>,
}

impl<'a> Parser<'a> {
    /// A parser over `map` with no errors yet.
    pub fn new(map: &'a HashMap<String, String>) -> Self {
        Self {
            map,
            errors: Vec::new(),
        }
    }

    /// Records a problem found outside the typed reads.
    pub fn push(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// Takes the outcome of a nested parse (e.g. [`Config::from_map`] inside
    /// a service's own configuration): its value, or `None` with its errors
    /// recorded here.
    pub fn nested<T>(&mut self, parsed: Result<T, ConfigErrors>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.extend(e.0);
                None
            }
        }
    }

    /// Like [`Parser::finish`] for a value that could not be built (`None`)
    /// because of problems already recorded.
    pub fn finish_some<T>(self, value: Option<T>) -> Result<T, ConfigErrors> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(ConfigErrors(self.errors)),
        }
    }

    /// `value` if no problem was found, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// The trimmed value of `key`; empty counts as unset (Kubernetes and
    /// stack.yml often render unset variables as empty strings).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.map
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The whole number under `key` within `min..=max`, `default` when unset;
    /// on a bad value the problem is recorded and `default` returned.
    pub fn int(&mut self, key: &'static str, default: i64, min: i64, max: i64) -> i64 {
        let Some(raw) = self.get(key) else {
            return default;
        };
        match raw.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => v,
            Ok(v) => {
                self.errors.push(ConfigError::OutOfRange {
                    key,
                    value: v,
                    min,
                    max,
                });
                default
            }
            Err(_) => {
                self.errors.push(ConfigError::InvalidNumber {
                    key,
                    value: raw.to_owned(),
                });
                default
            }
        }
    }

    /// Like [`Parser::int`] for a count or size (`min` at least 0).
    pub fn count(&mut self, key: &'static str, default: usize, min: usize, max: usize) -> usize {
        let wide = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let v = self.int(key, wide(default), wide(min), wide(max));
        // In range `min..=max`, so non-negative (or `default`).
        usize::try_from(v).unwrap_or(default)
    }

    /// The duration under `key` (see [`parse_duration`]) within `min..=max`,
    /// `default` when unset; on a bad value the problem is recorded and
    /// `default` returned.
    pub fn duration(
        &mut self,
        key: &'static str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some(raw) = self.get(key) else {
            return default;
        };
        match parse_duration(raw) {
            Some(d) if d >= min && d <= max => d,
            Some(_) => {
                self.errors.push(ConfigError::DurationOutOfRange {
                    key,
                    value: raw.to_owned(),
                    min,
                    max,
                });
                default
            }
            None => {
                self.errors.push(ConfigError::InvalidDuration {
                    key,
                    value: raw.to_owned(),
                });
                default
            }
        }
    }

    /// The boolean under `key` (`true`/`false`, `1`/`0`, `yes`/`no`,
    /// `on`/`off`, any case); `None` when unset or invalid (recorded).
    pub fn boolean(&mut self, key: &'static str) -> Option<bool> {
        let raw = self.get(key)?;
        let b = parse_bool(raw);
        if b.is_none() {
            self.errors.push(ConfigError::InvalidBool {
                key,
                value: raw.to_owned(),
            });
        }
        b
    }

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

    fn topology(&mut self) -> TopologyConfig {
        let d = TopologyConfig::default();
        let ms = Duration::from_millis;
        let h = |n: u64| Duration::from_secs(n * 3600);
        TopologyConfig {
            tasks_max_msgs: self.int("FARM_TASKS_MAX_MSGS", d.tasks_max_msgs, -1, i64::MAX),
            tasks_max_bytes: self.int("FARM_TASKS_MAX_BYTES", d.tasks_max_bytes, -1, i64::MAX),
            duplicate_window: self.duration(
                "FARM_DUPLICATE_WINDOW",
                d.duplicate_window,
                ms(100),
                h(24 * 7),
            ),
            results_max_age: self.duration(
                "FARM_RESULTS_MAX_AGE",
                d.results_max_age,
                Duration::from_secs(1),
                h(24 * 365),
            ),
            dlq_max_age: self.duration(
                "FARM_DLQ_MAX_AGE",
                d.dlq_max_age,
                Duration::from_secs(1),
                h(24 * 365),
            ),
            replicas: self
                .get("FARM_STREAM_REPLICAS")
                .is_some()
                .then(|| self.int("FARM_STREAM_REPLICAS", 1, 1, 5) as usize),
            ack_wait: self.duration("FARM_ACK_WAIT", d.ack_wait, ms(100), h(12)),
            max_deliver: self.int("FARM_MAX_DELIVER", i64::from(d.max_deliver), 1, 1000) as u32,
            max_ack_pending: self.int("FARM_MAX_ACK_PENDING", d.max_ack_pending, 1, 1_000_000),
        }
    }

    fn worker(&mut self) -> WorkerConfig {
        let ms = Duration::from_millis;
        let concurrency = self.int("FARM_CONCURRENCY", 1, 1, 4096) as usize;
        let fetch_batch = self.int(
            "FARM_FETCH_BATCH",
            concurrency as i64,
            1,
            concurrency as i64,
        ) as usize;
        let fetch_expires = self.duration(
            "FARM_FETCH_EXPIRES",
            ms(1000),
            ms(10),
            Duration::from_secs(60),
        );
        let nak_delay = self.duration(
            "FARM_NAK_DELAY",
            Duration::from_secs(1),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let nak_delay_max = self.duration(
            "FARM_NAK_DELAY_MAX",
            Duration::from_secs(30),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let drain_grace = self.duration(
            "FARM_DRAIN_GRACE",
            Duration::from_secs(25),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let shed_expired = self.boolean(SHED_EXPIRED).unwrap_or(false);
        let instance = self
            .get("FARM_INSTANCE")
            .or_else(|| self.get("HOSTNAME"))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let id = uuid::Uuid::new_v4().simple().to_string();
                format!("worker-{}", &id[..8])
            });
        WorkerConfig {
            concurrency,
            fetch_batch,
            fetch_expires,
            nak_delay,
            nak_delay_max: nak_delay_max.max(nak_delay),
            drain_grace,
            shed_expired,
            instance,
        }
    }

    fn http(&mut self) -> HttpConfig {
        let addr = match self.get("FARM_HTTP_ADDR") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(raw) => match raw.parse::<IpAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.errors.push(ConfigError::InvalidAddr {
                        key: "FARM_HTTP_ADDR",
                        value: raw.to_owned(),
                    });
                    IpAddr::from([127, 0, 0, 1])
                }
            },
        };
        let port = self.int("FARM_HTTP_PORT", 3000, 0, 65535) as u16;
        HttpConfig { addr, port }
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

/// The worker setting that sheds tasks already past their deadline unrun.
pub const SHED_EXPIRED: &str = "FARM_SHED_EXPIRED";

/// A boolean setting as every rust-farm service reads one: `true`/`false`,
/// `1`/`0`, `yes`/`no`, `on`/`off`, any case, surrounding blanks ignored;
/// `None` for anything else.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// `FARM_SHED_EXPIRED` is off by default, read as a boolean, and a
    /// value that is not one is refused naming the key and the value.
    #[test]
    fn shedding_expired_tasks_is_an_opt_in_boolean() {
        let with = |v: Option<&str>| {
            let mut m = map(&[("FARM_NAME", "demo")]);
            m.extend(v.map(|v| ("FARM_SHED_EXPIRED".to_owned(), v.to_owned())));
            Config::from_map(&m)
        };
        assert!(!with(None).unwrap().worker.shed_expired);
        assert!(with(Some("on")).unwrap().worker.shed_expired);
        assert!(!with(Some("0")).unwrap().worker.shed_expired);
        let e = with(Some("sometimes")).unwrap_err().to_string();
        assert!(
            e.contains("FARM_SHED_EXPIRED") && e.contains("sometimes"),
            "{e}"
        );
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
    fn fetch_batch_is_bounded_by_concurrency() {
        let e = Config::from_map(&map(&[
            ("FARM_NAME", "f"),
            ("FARM_CONCURRENCY", "2"),
            ("FARM_FETCH_BATCH", "3"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.0,
            vec![ConfigError::OutOfRange {
                key: "FARM_FETCH_BATCH",
                value: 3,
                min: 1,
                max: 2
            }]
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }

    #[test]
    fn public_parser_collects_every_problem() {
        let m = map(&[
            ("N", "7"),
            ("BIG", "99"),
            ("D", "250ms"),
            ("B", "on"),
            ("X", "nope"),
        ]);
        let mut p = Parser::new(&m);
        assert_eq!(p.count("N", 1, 1, 10), 7);
        assert_eq!(p.count("BIG", 3, 1, 10), 3);
        assert_eq!(p.count("UNSET", 4, 1, 10), 4);
        let (zero, minute) = (Duration::ZERO, Duration::from_secs(60));
        assert_eq!(
            p.duration("D", minute, zero, minute),
            Duration::from_millis(250)
        );
        assert_eq!(p.boolean("B"), Some(true));
        assert_eq!(p.boolean("X"), None);
        let nested = p.nested(TopologyConfig::from_map(&map(&[("FARM_MAX_DELIVER", "0")])));
        assert!(nested.is_none());
        let e = p.finish_some(Some(())).unwrap_err();
        assert_eq!(
            e.0,
            vec![
                ConfigError::OutOfRange {
                    key: "BIG",
                    value: 99,
                    min: 1,
                    max: 10
                },
                ConfigError::InvalidBool {
                    key: "X",
                    value: "nope".into()
                },
                ConfigError::OutOfRange {
                    key: "FARM_MAX_DELIVER",
                    value: 0,
                    min: 1,
                    max: 1000
                },
            ]
        );
        assert_eq!(Parser::new(&m).finish_some(Some(5)), Ok(5));
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
