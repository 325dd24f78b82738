//! Configuration: a pure parse from key/value strings (the process
//! environment in `main`, a map in tests) to a validated [`Config`],
//! collecting every error instead of stopping at the first.
//!
//! # Service keys
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `UPSTREAM_URL` | required | the OpenFaaS gateway or provider everything else is proxied to (`http://host:port`) |
//! | `PROVIDER_URL` | `UPSTREAM_URL` | where scale, deploy and list calls go |
//! | `GATEWAY_EXT_HTTP_ADDR` | `0.0.0.0:8080` | HTTP listen address |
//! | `GATEWAY_EXT_GRPC_ADDR` | `0.0.0.0:50051` | `FarmControl` gRPC listen address, `off` to disable |
//! | `BASIC_AUTH` | `false` | protect `/system/*` with basic auth, like the gateway |
//! | `SECRET_MOUNT_PATH` | `/var/openfaas/secrets` | folder of `basic-auth-user` / `basic-auth-password` |
//! | `NATS_*` | see farm-runtime | NATS connection (JetStream consumer info, metrics snapshots) |
//! | `FARMS_FILE` | — | YAML file declaring farms (see [`parse_farms_yaml`]) |
//! | `DISCOVERY_INTERVAL` | `5s` | how often `/system/functions` is read for annotated workers; `off` disables |
//! | `DEFAULT_POLICY` | `reactive-average` | policy of a farm that names none |
//! | `FALLBACK_POLICY` | `reactive-average` | built-in used when an ONNX model fails |
//! | `CONTROL_INTERVAL` | `2s` | default control interval (the reference paper's is `8s`) |
//! | `CONTROL_WINDOW` | `8s` | default sliding window of the signals (`0s`: since the previous decision; never shorter than the interval) |
//! | `CONTROL_EVENTS` | `on` | default early decisions between ticks when the work queue's backlog jumps: `off`, `on`, or `share=X,jump=N,gap=S` (see `farm_model::cadence`; `farmctl sim --events` is the same trigger) |
//! | `MIN_REPLICAS` / `MAX_REPLICAS` | `1` / `32` | default bounds when neither labels nor farm keys set them |
//! | `MAX_REPLICAS_PER_FUNCTION` | `0` (no cap) | replicas one function may have (CE: 5); above it, shards are used |
//! | `MAX_STEP` | `0` (no limit) | default largest change of desired replicas per decision |
//! | `QUEUEING_FLOOR` | `true` | default for the shield's queueing floor |
//! | `SCALE_FLOOR_HOLD` | `30s` | how long a `/system/scale-function` count is honoured as a floor |
//! | `ORT_DYLIB_PATH` | — | the ONNX Runtime shared library (needed by `onnx:` policies) |
//! | `PROVIDER_TIMEOUT` | `5s` | timeout of one provider call |
//! | `OBSERVE_TIMEOUT` | `2s` | timeout of one JetStream request of the control loop (consumer info) |
//! | `TIME_SCALE` | `1` | default time scale K of farms: the run is compressed K times (`farmctl run --speedup K`), so every duration the policy sees (interval, since-last-scale, latencies, service times, deadlines, its own windows) is the wall-clock figure times K; see the README |
//! | `SCALE_RETRIES` | `3` | retries of a failed provider call, with doubling backoff |
//! | `SCALE_BACKOFF` | `100ms` | first retry delay |
//! | `RECORD_CAPACITY` | `1024` | decisions kept per farm for status and training |
//! | `LOG_FORMAT` | `plain` | `plain` or `json` |
//!
//! # Farm keys
//!
//! Per-farm settings (annotations on a worker, or the farms file) and their
//! parse are in [`farm`]; this module gives them their defaults.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use farm_model::cadence::BacklogJump;
use farm_policy::{PolicyError, PolicySpec, SpecError};
use farm_runtime::config::{NatsConfig, parse_bool, parse_duration};

pub mod farm;
pub use farm::*;

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required key is absent.
    #[error("{key} is required ({hint})")]
    Missing {
        /// The key.
        key: String,
        /// What it should hold.
        hint: &'static str,
    },
    /// A value does not parse or is out of range.
    #[error("{key}={value:?} is not valid: expected {expected}")]
    Invalid {
        /// The key.
        key: String,
        /// The rejected value.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// Two values contradict each other.
    #[error("{0}")]
    Conflict(String),
    /// The NATS settings are wrong (from farm-runtime's parser).
    #[error("NATS: {0}")]
    Nats(String),
    /// The farms file is not valid YAML of the expected shape.
    #[error("farms file: {0}")]
    FarmsFile(String),
}

/// Every problem of one parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid gateway-ext configuration ({} problems):",
            self.0.len()
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Parses a policy spec ([`PolicySpec::parse`]) given under `key`.
fn parse_policy(key: &str, value: &str) -> Result<PolicySpec, ConfigError> {
    PolicySpec::parse(value).map_err(|e| match e {
        SpecError::EmptyOnnxPath => invalid(key, value, "onnx:<path of a .onnx file>"),
        SpecError::Builtin(e) => builtin_invalid(key, value.trim(), &e),
    })
}

fn check_builtin(key: &str, name: &str) -> Result<(), ConfigError> {
    farm_policy::spec::check_builtin(name).map_err(|e| builtin_invalid(key, name, &e))
}

fn builtin_invalid(key: &str, name: &str, e: &PolicyError) -> ConfigError {
    invalid(
        key,
        name,
        &format!("a built-in policy, onnx:<path> or external ({e})"),
    )
}

/// `CONTROL_EVENTS` or a farm's `events` key.
fn parse_events(key: &str, value: &str) -> Result<Option<BacklogJump>, ConfigError> {
    BacklogJump::parse(value).map_err(|e| {
        invalid(
            key,
            value,
            &format!("off, on or share=X,jump=N,gap=S ({e})"),
        )
    })
}

fn invalid(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

/// Command-line flags of the binary, folded into the key/value map before
/// [`Config::from_map`] parses it (a flag wins over the environment):
/// `--time-scale K` (or `--time-scale=K`) sets `TIME_SCALE`. Anything else
/// is an error naming the flags that exist.
pub fn apply_args(
    map: &mut HashMap<String, String>,
    args: impl IntoIterator<Item = String>,
) -> Result<(), ConfigError> {
    const FLAGS: &[(&str, &str)] = &[("--time-scale", "TIME_SCALE")];
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let Some((_, key)) = FLAGS.iter().find(|(f, _)| *f == flag) else {
            return Err(invalid(
                "arguments",
                &arg,
                "--time-scale K (every other setting is an environment variable)",
            ));
        };
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => {
                return Err(ConfigError::Missing {
                    key: flag,
                    hint: "a value, e.g. --time-scale 4",
                });
            }
        };
        map.insert((*key).to_owned(), value);
    }
    Ok(())
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Upstream of the reverse proxy.
    pub upstream_url: String,
    /// Provider API base URL.
    pub provider_url: String,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// gRPC listen address, `None` when disabled.
    pub grpc_addr: Option<SocketAddr>,
    /// Whether `/system/*` requires basic auth.
    pub basic_auth: bool,
    /// Folder of the basic-auth secret files.
    pub secret_mount_path: PathBuf,
    /// NATS connection.
    pub nats: NatsConfig,
    /// Farms file, read by [`Config::load_farms_file`].
    pub farms_file: Option<PathBuf>,
    /// Farms declared in the farms file (filled by `load_farms_file`, or by tests).
    pub farms: Vec<FarmSpec>,
    /// Discovery period, `None` when disabled.
    pub discovery_interval: Option<Duration>,
    /// Defaults for farms.
    pub defaults: FarmDefaults,
    /// How long a scale-function request acts as a floor.
    pub scale_floor_hold: Duration,
    /// ONNX Runtime shared library.
    pub ort_dylib_path: Option<PathBuf>,
    /// Timeout of one provider call.
    pub provider_timeout: Duration,
    /// Timeout of one JetStream request of the control loop.
    pub observe_timeout: Duration,
    /// Retries of a failed provider call.
    pub scale_retries: u32,
    /// First retry delay.
    pub scale_backoff: Duration,
    /// Decisions kept per farm.
    pub record_capacity: usize,
    /// Log format.
    pub log_format: LogFormat,
}

struct Parser<'a> {
    map: &'a HashMap<String, String>,
    errors: Vec<ConfigError>,
}

impl<'a> Parser<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.map
            .get(key)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    fn parse_or<T>(
        &mut self,
        key: &str,
        default: T,
        expected: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> T {
        match self.get(key) {
            None => default,
            Some(v) => match f(v) {
                Some(x) => x,
                None => {
                    self.errors.push(invalid(key, v, expected));
                    default
                }
            },
        }
    }
}

fn parse_url(v: &str) -> Option<String> {
    let rest = v.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then(|| v.trim_end_matches('/').to_owned())
}

fn nonzero_cap(v: &str) -> Option<Option<u32>> {
    v.parse::<u32>().ok().map(|n| (n > 0).then_some(n))
}

fn positive_duration(v: &str) -> Option<Duration> {
    parse_duration(v).filter(|d| !d.is_zero())
}

/// A time scale: a finite number > 0 (`4`, `0.5`).
fn time_scale(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|k| k.is_finite() && *k > 0.0)
}

const TIME_SCALE_EXPECTED: &str = "a number > 0 (4 = a run compressed 4 times)";

impl Config {
    /// Parses the service keys (see the module docs). Farms of the farms
    /// file are read separately by [`Config::load_farms_file`].
    pub fn from_map(map: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        let mut p = Parser {
            map,
            errors: Vec::new(),
        };
        let upstream_url = match p.get("UPSTREAM_URL") {
            None => {
                p.errors.push(ConfigError::Missing {
                    key: "UPSTREAM_URL".into(),
                    hint: "the gateway or provider to proxy to, e.g. http://127.0.0.1:8081",
                });
                String::new()
            }
            Some(v) => parse_url(v).unwrap_or_else(|| {
                p.errors
                    .push(invalid("UPSTREAM_URL", v, "an http://host:port URL"));
                String::new()
            }),
        };
        let provider_url = p.parse_or(
            "PROVIDER_URL",
            upstream_url.clone(),
            "an http://host:port URL",
            parse_url,
        );
        let http_addr = p.parse_or(
            "GATEWAY_EXT_HTTP_ADDR",
            SocketAddr::from(([0, 0, 0, 0], 8080)),
            "host:port",
            |v| v.parse().ok(),
        );
        let grpc_addr = p.parse_or(
            "GATEWAY_EXT_GRPC_ADDR",
            Some(SocketAddr::from(([0, 0, 0, 0], 50051))),
            "host:port or off",
            |v| {
                if v == "off" {
                    Some(None)
                } else {
                    v.parse().ok().map(Some)
                }
            },
        );
        let basic_auth = p.parse_or("BASIC_AUTH", false, "true or false", parse_bool);
        let secret_mount_path = PathBuf::from(
            p.get("SECRET_MOUNT_PATH")
                .unwrap_or("/var/openfaas/secrets"),
        );
        let nats = match NatsConfig::from_map(map) {
            Ok(n) => n,
            Err(errs) => {
                p.errors
                    .extend(errs.0.iter().map(|e| ConfigError::Nats(e.to_string())));
                NatsConfig::plain("nats://127.0.0.1:4222")
            }
        };
        let farms_file = p.get("FARMS_FILE").map(PathBuf::from);
        let discovery_interval = p.parse_or(
            "DISCOVERY_INTERVAL",
            Some(Duration::from_secs(5)),
            "a duration such as 5s, or off",
            |v| {
                if v == "off" {
                    Some(None)
                } else {
                    positive_duration(v).map(Some)
                }
            },
        );
        let default_policy = match p.get("DEFAULT_POLICY") {
            None => PolicySpec::Builtin("reactive-average".into()),
            Some(v) => parse_policy("DEFAULT_POLICY", v).unwrap_or_else(|e| {
                p.errors.push(e);
                PolicySpec::Builtin("reactive-average".into())
            }),
        };
        let fallback = match p.get("FALLBACK_POLICY") {
            None => "reactive-average".to_owned(),
            Some(v) => {
                if let Err(e) = check_builtin("FALLBACK_POLICY", v) {
                    p.errors.push(e);
                }
                v.to_owned()
            }
        };
        let interval = p.parse_or(
            "CONTROL_INTERVAL",
            Duration::from_secs(2),
            "a duration such as 8s",
            positive_duration,
        );
        let window = p.parse_or(
            "CONTROL_WINDOW",
            Duration::from_secs(8),
            "a duration such as 8s (0s: the interval)",
            parse_duration,
        );
        let events = match p.get("CONTROL_EVENTS") {
            None => Some(BacklogJump::default()),
            Some(v) => parse_events("CONTROL_EVENTS", v).unwrap_or_else(|e| {
                p.errors.push(e);
                None
            }),
        };
        let min = p.parse_or("MIN_REPLICAS", 1, "an integer >= 0", |v| v.parse().ok());
        let max = p.parse_or("MAX_REPLICAS", 32, "an integer >= 1", |v| {
            v.parse().ok().filter(|n| *n >= 1)
        });
        if min > max {
            p.errors.push(ConfigError::Conflict(format!(
                "MIN_REPLICAS ({min}) is larger than MAX_REPLICAS ({max})"
            )));
        }
        let per_function_cap = p.parse_or(
            "MAX_REPLICAS_PER_FUNCTION",
            None,
            "an integer (0 = no cap)",
            nonzero_cap,
        );
        let max_step = p.parse_or("MAX_STEP", None, "an integer (0 = no limit)", nonzero_cap);
        let queueing_floor = p.parse_or("QUEUEING_FLOOR", true, "true or false", parse_bool);
        let scale_floor_hold = p.parse_or(
            "SCALE_FLOOR_HOLD",
            Duration::from_secs(30),
            "a duration such as 30s",
            parse_duration,
        );
        let ort_dylib_path = p.get("ORT_DYLIB_PATH").map(PathBuf::from);
        let provider_timeout = p.parse_or(
            "PROVIDER_TIMEOUT",
            Duration::from_secs(5),
            "a duration such as 5s",
            positive_duration,
        );
        let observe_timeout = p.parse_or(
            "OBSERVE_TIMEOUT",
            farm_observe::DEFAULT_OBSERVE_TIMEOUT,
            "a duration such as 2s",
            positive_duration,
        );
        let time_scale = p.parse_or("TIME_SCALE", 1.0, TIME_SCALE_EXPECTED, time_scale);
        let scale_retries = p.parse_or("SCALE_RETRIES", 3, "an integer", |v| v.parse().ok());
        let scale_backoff = p.parse_or(
            "SCALE_BACKOFF",
            Duration::from_millis(100),
            "a duration such as 100ms",
            parse_duration,
        );
        let record_capacity = p.parse_or("RECORD_CAPACITY", 1024, "an integer >= 1", |v| {
            v.parse().ok().filter(|n| *n >= 1)
        });
        let log_format = p.parse_or(
            "LOG_FORMAT",
            LogFormat::Plain,
            "plain or json",
            |v| match v {
                "plain" => Some(LogFormat::Plain),
                "json" => Some(LogFormat::Json),
                _ => None,
            },
        );
        if !p.errors.is_empty() {
            return Err(ConfigErrors(p.errors));
        }
        Ok(Config {
            upstream_url,
            provider_url,
            http_addr,
            grpc_addr,
            basic_auth,
            secret_mount_path,
            nats,
            farms_file,
            farms: Vec::new(),
            discovery_interval,
            defaults: FarmDefaults {
                policy: default_policy,
                fallback,
                interval,
                window,
                events,
                min,
                max,
                per_function_cap,
                max_step,
                queueing_floor,
                time_scale,
            },
            scale_floor_hold,
            ort_dylib_path,
            provider_timeout,
            observe_timeout,
            scale_retries,
            scale_backoff,
            record_capacity,
            log_format,
        })
    }

    /// Reads and parses the farms file, if one is configured, into `farms`.
    pub fn load_farms_file(&mut self) -> Result<(), ConfigErrors> {
        let Some(path) = &self.farms_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::FarmsFile(format!(
                "cannot read {}: {e}",
                path.display()
            ))])
        })?;
        self.farms = parse_farms_yaml(&text, &self.defaults)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    pub(super) fn defaults() -> FarmDefaults {
        Config::from_map(&map(&[("UPSTREAM_URL", "http://127.0.0.1:1")]))
            .unwrap()
            .defaults
    }

    pub(super) fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = Config::from_map(&map(&[("UPSTREAM_URL", "http://127.0.0.1:8081")])).unwrap();
        assert_eq!(c.provider_url, "http://127.0.0.1:8081");
        // Decide every 2 s on the last 8 s, and at once on a backlog jump:
        // measured in the simulator, every policy does better so than at
        // the paper's 8 s step (BENCHMARKS.md, "Decision cadence").
        assert_eq!(c.defaults.interval, Duration::from_secs(2));
        assert_eq!(c.defaults.window, Duration::from_secs(8));
        assert_eq!(c.defaults.events, Some(BacklogJump::default()));
        assert_eq!(c.defaults.per_function_cap, None);
        assert!(c.defaults.queueing_floor);
        assert!(!c.basic_auth);
    }

    #[test]
    fn collects_every_error() {
        let errs = Config::from_map(&map(&[
            ("BASIC_AUTH", "maybe"),
            ("CONTROL_INTERVAL", "0s"),
            ("MIN_REPLICAS", "9"),
            ("MAX_REPLICAS", "3"),
            ("DEFAULT_POLICY", "no-such-policy"),
        ]))
        .unwrap_err();
        let e = &errs.0;
        assert!(
            e.iter()
                .any(|x| matches!(x, ConfigError::Missing { key, .. } if key == "UPSTREAM_URL"))
        );
        assert!(
            e.iter()
                .any(|x| matches!(x, ConfigError::Invalid { key, .. } if key == "BASIC_AUTH"))
        );
        assert!(
            e.iter().any(
                |x| matches!(x, ConfigError::Invalid { key, .. } if key == "CONTROL_INTERVAL")
            )
        );
        assert!(
            e.iter()
                .any(|x| matches!(x, ConfigError::Invalid { key, .. } if key == "DEFAULT_POLICY"))
        );
        assert!(e.iter().any(|x| matches!(x, ConfigError::Conflict(_))));
        assert_eq!(e.len(), 5);
    }

    #[test]
    fn policy_specs_parse() {
        assert_eq!(parse_policy("k", "external").unwrap(), PolicySpec::External);
        assert_eq!(
            parse_policy("k", "onnx:/m/a.onnx").unwrap(),
            PolicySpec::Onnx("/m/a.onnx".into())
        );
        assert!(matches!(
            parse_policy("k", "onnx:"),
            Err(ConfigError::Invalid { .. })
        ));
        for name in farm_policy::builtin_names() {
            assert_eq!(
                parse_policy("k", name).unwrap(),
                PolicySpec::Builtin((*name).to_owned())
            );
        }
        assert!(matches!(
            parse_policy("k", "fixed:x"),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn time_scale_from_the_environment_and_per_farm() {
        let c = Config::from_map(&map(&[
            ("UPSTREAM_URL", "http://127.0.0.1:1"),
            ("TIME_SCALE", "4"),
            ("OBSERVE_TIMEOUT", "750ms"),
        ]))
        .unwrap();
        assert_eq!(c.defaults.time_scale, 4.0);
        assert_eq!(c.observe_timeout, Duration::from_millis(750));
        assert_eq!(defaults().time_scale, 1.0);
        for bad in ["0", "-2", "fast", "inf", "NaN"] {
            let errs = Config::from_map(&map(&[
                ("UPSTREAM_URL", "http://127.0.0.1:1"),
                ("TIME_SCALE", bad),
            ]))
            .unwrap_err();
            assert!(
                matches!(&errs.0[..], [ConfigError::Invalid { key, .. }] if key == "TIME_SCALE"),
                "{bad}: {errs:?}"
            );
        }
        let ann = |scale: &str| -> BTreeMap<String, String> {
            [
                ("com.rust-farm.farm", "demo"),
                ("com.rust-farm.time-scale", scale),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
        };
        let d = c.defaults.clone();
        let f = farm_from_function("w", &ann("0.5"), &BTreeMap::new(), &d)
            .unwrap()
            .unwrap();
        assert_eq!(f.time_scale, 0.5);
        let f = farm_from_function(
            "w",
            &BTreeMap::from([("com.rust-farm.farm".to_owned(), "demo".to_owned())]),
            &BTreeMap::new(),
            &d,
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.time_scale, 4.0, "the TIME_SCALE default");
        let errs = farm_from_function("w", &ann("0"), &BTreeMap::new(), &d)
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&errs[..], [ConfigError::Invalid { key, .. }] if key == "com.rust-farm.time-scale"),
            "{errs:?}"
        );
    }

    #[test]
    fn time_scale_flag_overrides_the_environment() {
        let args = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut m = map(&[("TIME_SCALE", "2")]);
        apply_args(&mut m, args(&["--time-scale", "4"])).unwrap();
        assert_eq!(m["TIME_SCALE"], "4");
        apply_args(&mut m, args(&["--time-scale=8"])).unwrap();
        assert_eq!(m["TIME_SCALE"], "8");
        assert!(matches!(
            apply_args(&mut m, args(&["--time-scale"])),
            Err(ConfigError::Missing { .. })
        ));
        assert!(matches!(
            apply_args(&mut m, args(&["--speed", "4"])),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn events_parse_and_refuse_bad_settings() {
        let c = Config::from_map(&map(&[
            ("UPSTREAM_URL", "http://127.0.0.1:1"),
            ("CONTROL_EVENTS", "off"),
        ]))
        .unwrap();
        assert_eq!(c.defaults.events, None);
        let c = Config::from_map(&map(&[
            ("UPSTREAM_URL", "http://127.0.0.1:1"),
            ("CONTROL_EVENTS", "share=0.25,gap=2"),
        ]))
        .unwrap();
        let t = c.defaults.events.unwrap();
        assert_eq!((t.deadline_share, t.min_gap_s), (0.25, 2.0));
        let e = Config::from_map(&map(&[
            ("UPSTREAM_URL", "http://127.0.0.1:1"),
            ("CONTROL_EVENTS", "often"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("CONTROL_EVENTS=\"often\"") && e.contains("off, on"),
            "{e}"
        );
        let keys: BTreeMap<_, _> = [("farm", "f"), ("events", "share=0")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let e = farm_from_keys(
            &keys,
            "f-worker",
            &BTreeMap::new(),
            &defaults(),
            FarmSource::File,
            "",
        )
        .unwrap_err();
        let text = e
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        assert!(
            text.contains("events=\"share=0\"") && text.contains("out of range"),
            "{text}"
        );
    }
}
