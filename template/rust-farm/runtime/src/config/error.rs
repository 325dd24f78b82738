//! The configuration's errors: one [`ConfigError`] per problem, all of a
//! parse together in [`ConfigErrors`].

use std::fmt;
use std::time::Duration;

use crate::names::FarmNameError;

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
