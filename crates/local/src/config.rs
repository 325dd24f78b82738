//! Provider configuration: a pure parse from key/value strings (the process
//! environment in `main`, a map in tests) to a validated [`Config`],
//! collecting every problem instead of stopping at the first.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `port` | `8081` | TCP port of the `farm-local` binary (library users bind their own listener) |
//! | `FARM_LOCAL_IMAGE_STORE` | `.farm/images` | directory of built functions, see [`crate::image`] |
//! | `FARM_LOCAL_STATE_DIR` | a temporary directory | per-replica working files (secrets) |
//! | `FARM_LOCAL_SECRETS_DIR` | `.farm/secrets` | where the value of secret `S` is read from: `<dir>/S` |
//! | `basic_auth` | `false` | protect `/system/*` with HTTP basic auth, as the OpenFaaS gateway does |
//! | `secret_mount_path` | `/var/openfaas/secrets` | directory holding `basic-auth-user` and `basic-auth-password` |
//! | `FARM_LOCAL_PORT_ENV` | `PORT,FARM_HTTP_PORT` | comma-separated names of the env vars that carry a replica's port (`FARM_HTTP_PORT` is the rust-farm runtime's key) |
//! | `FARM_LOCAL_HEALTH_PATH` | `/_/health` | a replica is available while this answers 200 |
//! | `FARM_LOCAL_STARTUP_PROBE` | `50ms` | health poll period while a replica starts |
//! | `FARM_LOCAL_READINESS_PERIOD` | `1s` | health poll period once a replica is available |
//! | `FARM_LOCAL_TERMINATION_GRACE` | `30s` | SIGTERM -> SIGKILL grace period (Kubernetes' default) |
//! | `FARM_LOCAL_RESTART_BACKOFF` | `500ms` | first restart delay of a crashed replica, doubled per crash |
//! | `FARM_LOCAL_RESTART_BACKOFF_MAX` | `30s` | cap of the restart delay |
//! | `FARM_LOCAL_SCALE_FROM_ZERO_TIMEOUT` | `30s` | how long an invocation waits for a replica |
//! | `FARM_LOCAL_MAX_REPLICAS` | `64` | largest replica count a scale request may ask for |
//! | `FARM_LOCAL_START_DELAY` | `none` | emulated pod start delay, see [`StartDelay`] |
//! | `FARM_LOCAL_START_DELAY_SEED` | random | seed of the start-delay sampler |
//! | `FARM_LOCAL_SERVICE_ALIASES` | none | `HOST:PORT=HOST:PORT,...`: cluster service addresses in replicas' env values that resolve to local ones, see [`ServiceAliases`] |
//!
//! Durations are a number with a unit (`250ms`, `2s`, `1.5s`, `1m`) or a bare
//! number of seconds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Normal};

/// A start-up delay distribution that emulates the time a cluster takes to
/// schedule and start a pod (image pull, sandbox, probes). It is emulation
/// only, added before a replica's process is spawned; off by default.
///
/// Syntax: `none`, `fixed:S`, `uniform:A,B`, `normal:MEAN,SD` (seconds;
/// normal samples are clamped at zero). The reference cluster measured +1
/// worker in 5-9 s, i.e. `uniform:5,9`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum StartDelay {
    /// No added delay.
    #[default]
    None,
    /// Always this delay.
    Fixed(Duration),
    /// Uniform between the two bounds.
    Uniform(Duration, Duration),
    /// Normal with this mean and standard deviation, clamped at zero.
    Normal(Duration, Duration),
}

impl StartDelay {
    /// Draws one delay.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        match *self {
            StartDelay::None => Duration::ZERO,
            StartDelay::Fixed(d) => d,
            StartDelay::Uniform(lo, hi) => {
                if hi <= lo {
                    lo
                } else {
                    Duration::from_secs_f64(rng.random_range(lo.as_secs_f64()..hi.as_secs_f64()))
                }
            }
            StartDelay::Normal(mean, sd) => match Normal::new(mean.as_secs_f64(), sd.as_secs_f64())
            {
                Ok(n) => Duration::from_secs_f64(n.sample(rng).max(0.0)),
                // sd is a valid Duration, hence finite and >= 0: unreachable,
                // but the mean is the honest fallback.
                Err(_) => mean,
            },
        }
    }

    /// Parses the `FARM_LOCAL_START_DELAY` syntax.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(StartDelay::None);
        }
        let (kind, args) = s
            .split_once(':')
            .ok_or_else(|| "expected none, fixed:S, uniform:A,B or normal:MEAN,SD".to_string())?;
        let nums: Vec<Duration> = args
            .split(',')
            .map(|a| {
                parse_seconds(a.trim())
                    .ok_or_else(|| format!("`{a}` is not a number of seconds >= 0"))
            })
            .collect::<Result<_, _>>()?;
        match (kind.trim(), nums.as_slice()) {
            ("fixed", [d]) => Ok(StartDelay::Fixed(*d)),
            ("uniform", [a, b]) if a <= b => Ok(StartDelay::Uniform(*a, *b)),
            ("uniform", [_, _]) => Err("uniform:A,B needs A <= B".into()),
            ("normal", [m, sd]) => Ok(StartDelay::Normal(*m, *sd)),
            (k, n) => Err(format!(
                "`{k}` with {} argument(s) is not a known distribution",
                n.len()
            )),
        }
    }
}

/// Cluster service addresses that resolve to local ones inside a replica's
/// environment, as a cluster's DNS resolves `SERVICE.NAMESPACE` for a pod.
///
/// A stack written for OpenFaaS says `NATS_URL: nats://nats.openfaas:4222`;
/// deployed on one machine (e.g. by `faas-cli deploy`), the alias
/// `nats.openfaas:4222=127.0.0.1:4222` makes the replica start with
/// `nats://127.0.0.1:4222`. The deployment itself keeps what was sent, so
/// `faas-cli describe` shows the stack's value.
///
/// An alias replaces `HOST:PORT` where it stands as a whole address: after
/// the start, `/`, `@`, `,` or white space, and before the end, `/`, `?`, `#`,
/// `,` or white space. `nats.openfaas:42220` and `xnats.openfaas:4222` are left
/// alone. Host names match case-insensitively, as DNS does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceAliases(Vec<(String, String)>);

impl ServiceAliases {
    /// Parses `HOST:PORT=HOST:PORT[,HOST:PORT=HOST:PORT...]`; empty is none.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out: Vec<(String, String)> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (from, to) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected HOST:PORT=HOST:PORT"))?;
            let from = address(from).map_err(|e| format!("`{item}`: {e}"))?;
            let to = address(to).map_err(|e| format!("`{item}`: {e}"))?;
            if out.iter().any(|(f, _)| *f == from) {
                return Err(format!("`{from}` is aliased twice"));
            }
            out.push((from, to));
        }
        Ok(ServiceAliases(out))
    }

    /// Adds one alias `from` -> `to` (both `HOST:PORT`), replacing an
    /// earlier alias of `from`.
    pub fn insert(&mut self, from: &str, to: &str) -> Result<(), String> {
        let (from, to) = (address(from)?, address(to)?);
        self.0.retain(|(f, _)| *f != from);
        self.0.push((from, to));
        Ok(())
    }

    /// `value` with every aliased address replaced.
    pub fn apply(&self, value: &str) -> String {
        let mut out = value.to_string();
        for (from, to) in &self.0 {
            // ASCII lower-casing keeps byte offsets, so matches in `lower`
            // index `out` too.
            let lower = out.to_ascii_lowercase();
            let mut next = String::with_capacity(out.len());
            let mut copied = 0;
            for (start, _) in lower.match_indices(from.as_str()) {
                let end = start + from.len();
                let before = out[..start].chars().next_back();
                let after = out[end..].chars().next();
                let opens =
                    before.is_none_or(|c| matches!(c, '/' | '@' | ',') || c.is_whitespace());
                let closes =
                    after.is_none_or(|c| matches!(c, '/' | '?' | '#' | ',') || c.is_whitespace());
                if opens && closes {
                    next.push_str(&out[copied..start]);
                    next.push_str(to);
                    copied = end;
                }
            }
            next.push_str(&out[copied..]);
            out = next;
        }
        out
    }
}

/// A checked `HOST:PORT`, host lower-cased.
fn address(s: &str) -> Result<String, String> {
    let s = s.trim();
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` has no :PORT"))?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
    {
        return Err(format!(
            "`{s}`: `{host}` is not a host name or IPv4 address"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{}:{p}", host.to_ascii_lowercase())),
        _ => Err(format!("`{s}`: `{port}` is not a port in 1..=65535")),
    }
}

fn parse_seconds(s: &str) -> Option<Duration> {
    let v: f64 = s.parse().ok()?;
    if (0.0..1e9).contains(&v) {
        Some(Duration::from_secs_f64(v))
    } else {
        None
    }
}

/// Parses `250ms`, `2s`, `1.5s`, `1m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    let secs = v * scale;
    if (0.0..1e9).contains(&secs) {
        Some(Duration::from_secs_f64(secs))
    } else {
        None
    }
}

/// Validated provider configuration. Fields are public so an embedding
/// program (farmctl) can build one directly from [`Config::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// TCP port the `farm-local` binary binds on 127.0.0.1.
    pub port: u16,
    /// Directory of built functions (see [`crate::image`]).
    pub image_store: PathBuf,
    /// Directory for per-replica files; `None` means a temporary directory
    /// owned by the provider and removed when it stops.
    pub state_dir: Option<PathBuf>,
    /// Directory holding secret values, one file per secret name.
    pub secrets_dir: PathBuf,
    /// Whether `/system/*` requires basic auth.
    pub basic_auth: bool,
    /// Directory holding `basic-auth-user` and `basic-auth-password`.
    pub secret_mount_path: PathBuf,
    /// Env var names that carry a replica's port (all get the same value).
    pub port_env: Vec<String>,
    /// Health route of a replica.
    pub health_path: String,
    /// Health poll period while a replica starts.
    pub startup_probe: Duration,
    /// Health poll period of an available replica.
    pub readiness_period: Duration,
    /// SIGTERM -> SIGKILL grace period.
    pub termination_grace: Duration,
    /// First restart delay of a crashed replica.
    pub restart_backoff: Duration,
    /// Cap of the restart delay.
    pub restart_backoff_max: Duration,
    /// How long an invocation waits for an available replica.
    pub scale_from_zero_timeout: Duration,
    /// Largest replica count accepted by a scale request.
    pub max_replicas: u64,
    /// Emulated pod start delay.
    pub start_delay: StartDelay,
    /// Seed of the start-delay sampler; `None` draws one from the OS.
    pub start_delay_seed: Option<u64>,
    /// Cluster service addresses resolved to local ones in replicas' env.
    pub service_aliases: ServiceAliases,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 8081,
            image_store: PathBuf::from(".farm/images"),
            state_dir: None,
            secrets_dir: PathBuf::from(".farm/secrets"),
            basic_auth: false,
            secret_mount_path: PathBuf::from("/var/openfaas/secrets"),
            port_env: vec!["PORT".to_string(), "FARM_HTTP_PORT".to_string()],
            health_path: "/_/health".to_string(),
            startup_probe: Duration::from_millis(50),
            readiness_period: Duration::from_secs(1),
            termination_grace: Duration::from_secs(30),
            restart_backoff: Duration::from_millis(500),
            restart_backoff_max: Duration::from_secs(30),
            scale_from_zero_timeout: Duration::from_secs(30),
            max_replicas: 64,
            start_delay: StartDelay::None,
            start_delay_seed: None,
            service_aliases: ServiceAliases::default(),
        }
    }
}

/// One problem found while parsing the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A duration key holds something other than a duration.
    #[error("{key}={value:?}: expected a duration such as 250ms, 2s or 1m")]
    InvalidDuration {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// A numeric key holds something other than a non-negative integer in range.
    #[error("{key}={value:?}: expected an integer in {min}..={max}")]
    InvalidNumber {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A boolean key holds something other than true/false/1/0.
    #[error("{key}={value:?}: expected true or false")]
    InvalidBool {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// The service aliases do not parse.
    #[error("FARM_LOCAL_SERVICE_ALIASES={value:?}: {reason}")]
    InvalidServiceAliases {
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The start-delay distribution does not parse.
    #[error("FARM_LOCAL_START_DELAY={value:?}: {reason}")]
    InvalidStartDelay {
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A text key holds a value that cannot work (empty list, path without `/`).
    #[error("{key}={value:?}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The restart backoff cap is below the first delay.
    #[error("FARM_LOCAL_RESTART_BACKOFF_MAX must be >= FARM_LOCAL_RESTART_BACKOFF")]
    BackoffOrder,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl Config {
    /// Parses a configuration from key/value pairs (e.g. `std::env::vars()`);
    /// unknown keys are ignored, missing keys take their defaults.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut errs = Vec::new();
        let mut c = Config::default();
        let get = |k: &str| {
            map.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let duration = |key: &str, slot: &mut Duration, errs: &mut Vec<ConfigError>| {
            if let Some(v) = get(key) {
                match parse_duration(&v) {
                    Some(d) => *slot = d,
                    None => errs.push(ConfigError::InvalidDuration {
                        key: key.into(),
                        value: v,
                    }),
                }
            }
        };
        duration("FARM_LOCAL_STARTUP_PROBE", &mut c.startup_probe, &mut errs);
        duration(
            "FARM_LOCAL_READINESS_PERIOD",
            &mut c.readiness_period,
            &mut errs,
        );
        duration(
            "FARM_LOCAL_TERMINATION_GRACE",
            &mut c.termination_grace,
            &mut errs,
        );
        duration(
            "FARM_LOCAL_RESTART_BACKOFF",
            &mut c.restart_backoff,
            &mut errs,
        );
        duration(
            "FARM_LOCAL_RESTART_BACKOFF_MAX",
            &mut c.restart_backoff_max,
            &mut errs,
        );
        duration(
            "FARM_LOCAL_SCALE_FROM_ZERO_TIMEOUT",
            &mut c.scale_from_zero_timeout,
            &mut errs,
        );
        for (key, d) in [
            ("FARM_LOCAL_STARTUP_PROBE", c.startup_probe),
            ("FARM_LOCAL_READINESS_PERIOD", c.readiness_period),
        ] {
            if d.is_zero() {
                errs.push(ConfigError::InvalidDuration {
                    key: key.into(),
                    value: "0".into(),
                });
            }
        }
        if c.restart_backoff_max < c.restart_backoff {
            errs.push(ConfigError::BackoffOrder);
        }

        let number = |key: &str, min: u64, max: u64, errs: &mut Vec<ConfigError>| -> Option<u64> {
            let v = get(key)?;
            match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Some(n),
                _ => {
                    errs.push(ConfigError::InvalidNumber {
                        key: key.into(),
                        value: v,
                        min,
                        max,
                    });
                    None
                }
            }
        };
        if let Some(p) = number("port", 1, u64::from(u16::MAX), &mut errs) {
            c.port = p as u16;
        }
        if let Some(n) = number("FARM_LOCAL_MAX_REPLICAS", 1, 10_000, &mut errs) {
            c.max_replicas = n;
        }
        c.start_delay_seed = number("FARM_LOCAL_START_DELAY_SEED", 0, u64::MAX, &mut errs);

        if let Some(v) = get("basic_auth") {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" => c.basic_auth = true,
                "false" | "0" => c.basic_auth = false,
                _ => errs.push(ConfigError::InvalidBool {
                    key: "basic_auth".into(),
                    value: v,
                }),
            }
        }
        if let Some(v) = get("FARM_LOCAL_START_DELAY") {
            match StartDelay::parse(&v) {
                Ok(d) => c.start_delay = d,
                Err(reason) => errs.push(ConfigError::InvalidStartDelay { value: v, reason }),
            }
        }
        if let Some(v) = get("FARM_LOCAL_SERVICE_ALIASES") {
            match ServiceAliases::parse(&v) {
                Ok(a) => c.service_aliases = a,
                Err(reason) => errs.push(ConfigError::InvalidServiceAliases { value: v, reason }),
            }
        }
        if let Some(v) = get("FARM_LOCAL_PORT_ENV") {
            let names: Vec<String> = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if names.is_empty() || names.iter().any(|n| n.contains('=')) {
                errs.push(ConfigError::InvalidValue {
                    key: "FARM_LOCAL_PORT_ENV".into(),
                    value: v,
                    reason: "expected comma-separated environment variable names".into(),
                });
            } else {
                c.port_env = names;
            }
        }
        if let Some(v) = get("FARM_LOCAL_HEALTH_PATH") {
            if v.starts_with('/') {
                c.health_path = v;
            } else {
                errs.push(ConfigError::InvalidValue {
                    key: "FARM_LOCAL_HEALTH_PATH".into(),
                    value: v,
                    reason: "expected a path starting with /".into(),
                });
            }
        }
        if let Some(v) = get("FARM_LOCAL_IMAGE_STORE") {
            c.image_store = PathBuf::from(v);
        }
        c.state_dir = get("FARM_LOCAL_STATE_DIR").map(PathBuf::from);
        if let Some(v) = get("FARM_LOCAL_SECRETS_DIR") {
            c.secrets_dir = PathBuf::from(v);
        }
        if let Some(v) = get("secret_mount_path") {
            c.secret_mount_path = PathBuf::from(v);
        }

        if errs.is_empty() {
            Ok(c)
        } else {
            Err(ConfigErrors(errs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn empty_input_gives_defaults() {
        let c = Config::from_pairs(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn parses_every_key() {
        let c = Config::from_pairs([
            ("port", "9000"),
            ("FARM_LOCAL_IMAGE_STORE", "/x/images"),
            ("FARM_LOCAL_STATE_DIR", "/x/state"),
            ("basic_auth", "true"),
            ("FARM_LOCAL_PORT_ENV", "PORT, FARM_HTTP_PORT"),
            ("FARM_LOCAL_TERMINATION_GRACE", "2s"),
            ("FARM_LOCAL_STARTUP_PROBE", "10ms"),
            ("FARM_LOCAL_RESTART_BACKOFF_MAX", "1m"),
            ("FARM_LOCAL_START_DELAY", "uniform:5,9"),
            ("FARM_LOCAL_START_DELAY_SEED", "7"),
            ("FARM_LOCAL_MAX_REPLICAS", "32"),
            (
                "FARM_LOCAL_SERVICE_ALIASES",
                "nats.openfaas:4222=127.0.0.1:4333",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.service_aliases.apply("nats://nats.openfaas:4222"),
            "nats://127.0.0.1:4333"
        );
        assert_eq!(c.port, 9000);
        assert_eq!(c.image_store, PathBuf::from("/x/images"));
        assert_eq!(c.state_dir, Some(PathBuf::from("/x/state")));
        assert!(c.basic_auth);
        assert_eq!(
            c.port_env,
            vec!["PORT".to_string(), "FARM_HTTP_PORT".to_string()]
        );
        assert_eq!(c.termination_grace, Duration::from_secs(2));
        assert_eq!(c.startup_probe, Duration::from_millis(10));
        assert_eq!(c.restart_backoff_max, Duration::from_secs(60));
        assert_eq!(
            c.start_delay,
            StartDelay::Uniform(Duration::from_secs(5), Duration::from_secs(9))
        );
        assert_eq!(c.start_delay_seed, Some(7));
        assert_eq!(c.max_replicas, 32);
    }

    #[test]
    fn collects_every_error() {
        let err = Config::from_pairs([
            ("port", "0"),
            ("basic_auth", "maybe"),
            ("FARM_LOCAL_TERMINATION_GRACE", "soon"),
            ("FARM_LOCAL_START_DELAY", "gamma:1,2"),
            ("FARM_LOCAL_HEALTH_PATH", "health"),
            ("FARM_LOCAL_RESTART_BACKOFF", "10s"),
            ("FARM_LOCAL_RESTART_BACKOFF_MAX", "1s"),
            ("FARM_LOCAL_STARTUP_PROBE", "0"),
            ("FARM_LOCAL_SERVICE_ALIASES", "nats.openfaas=127.0.0.1:4222"),
        ])
        .unwrap_err();
        let e = &err.0;
        assert_eq!(e.len(), 8, "{e:?}");
        assert!(e.iter().any(|x| matches!(x, ConfigError::InvalidServiceAliases { reason, .. } if reason.contains("no :PORT"))));
        assert!(
            e.iter()
                .any(|x| matches!(x, ConfigError::InvalidNumber { key, .. } if key == "port"))
        );
        assert!(
            e.iter()
                .any(|x| matches!(x, ConfigError::InvalidBool { .. }))
        );
        assert!(e.iter().any(|x| matches!(x, ConfigError::InvalidDuration { key, .. } if key == "FARM_LOCAL_TERMINATION_GRACE")));
        assert!(e.iter().any(|x| matches!(x, ConfigError::InvalidDuration { key, .. } if key == "FARM_LOCAL_STARTUP_PROBE")));
        assert!(
            e.iter()
                .any(|x| matches!(x, ConfigError::InvalidStartDelay { .. }))
        );
        assert!(e.iter().any(|x| matches!(x, ConfigError::InvalidValue { key, .. } if key == "FARM_LOCAL_HEALTH_PATH")));
        assert!(e.contains(&ConfigError::BackoffOrder));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("NaN"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn start_delay_samples_stay_in_range() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let u = StartDelay::parse("uniform:5,9").unwrap();
        for _ in 0..1000 {
            let d = u.sample(&mut rng).as_secs_f64();
            assert!((5.0..9.0).contains(&d), "{d}");
        }
        let n = StartDelay::parse("normal:0.1,5").unwrap();
        assert!((0..1000).all(|_| n.sample(&mut rng) >= Duration::ZERO));
        assert_eq!(
            StartDelay::parse("fixed:2").unwrap().sample(&mut rng),
            Duration::from_secs(2)
        );
        assert_eq!(
            StartDelay::parse("none").unwrap().sample(&mut rng),
            Duration::ZERO
        );
        assert!(StartDelay::parse("uniform:9,5").is_err());
        assert!(StartDelay::parse("fixed:-1").is_err());
        assert!(StartDelay::parse("fixed").is_err());
    }

    #[test]
    fn service_aliases_replace_whole_addresses_only() {
        let a = ServiceAliases::parse(
            "nats.openfaas:4222=127.0.0.1:4333, gateway.openfaas:8080=127.0.0.1:8090",
        )
        .unwrap();
        for (value, want) in [
            ("nats://nats.openfaas:4222", "nats://127.0.0.1:4333"),
            ("nats://NATS.openfaas:4222/", "nats://127.0.0.1:4333/"),
            ("nats://u:p@nats.openfaas:4222", "nats://u:p@127.0.0.1:4333"),
            (
                "nats://nats.openfaas:4222,nats://nats.openfaas:4222",
                "nats://127.0.0.1:4333,nats://127.0.0.1:4333",
            ),
            ("nats.openfaas:4222", "127.0.0.1:4333"),
            (
                "http://gateway.openfaas:8080/function/x?y=1",
                "http://127.0.0.1:8090/function/x?y=1",
            ),
            // Not the aliased address: another port, a longer host name.
            ("nats://nats.openfaas:42220", "nats://nats.openfaas:42220"),
            ("nats://xnats.openfaas:4222", "nats://xnats.openfaas:4222"),
            ("nats://nats.openfaas", "nats://nats.openfaas"),
            ("plain text", "plain text"),
        ] {
            assert_eq!(a.apply(value), want, "{value}");
        }
        assert_eq!(
            ServiceAliases::parse("").unwrap(),
            ServiceAliases::default()
        );
    }

    #[test]
    fn service_aliases_reject_bad_input() {
        for (bad, says) in [
            ("nats.openfaas:4222", "expected HOST:PORT=HOST:PORT"),
            ("nats.openfaas=127.0.0.1:4222", "no :PORT"),
            ("nats.openfaas:0=127.0.0.1:4222", "not a port"),
            ("nats.openfaas:4222=127.0.0.1:http", "not a port"),
            (":4222=127.0.0.1:4222", "not a host name"),
            ("a b:4222=127.0.0.1:4222", "not a host name"),
            ("a:1=b:1,A:1=c:1", "aliased twice"),
        ] {
            let e = ServiceAliases::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
