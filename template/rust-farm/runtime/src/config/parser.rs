//! [`Parser`]: typed reads of configuration keys that collect every problem,
//! and the value forms every rust-farm process shares (durations, booleans).

use std::collections::HashMap;
use std::time::Duration;

use super::{ConfigError, ConfigErrors};

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
    pub(super) errors: Vec<ConfigError>,
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

    /// Takes the outcome of a nested parse (e.g. [`super::Config::from_map`] inside
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
}

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
    use crate::config::TopologyConfig;
    use crate::config::tests::map;

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
}
