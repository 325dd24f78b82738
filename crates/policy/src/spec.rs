//! A farm's policy as configured: a spec string (`queueing`, `kpa`,
//! `fixed:N`, `onnx:<path>`, `external`, ...) parsed into a
//! [`PolicySpec`], and the platform description live hosts build the
//! built-ins with.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use farm_model::scenario::{Dist, Platform};

use crate::baselines::{PolicyError, builtin};

/// Which policy sizes a farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySpec {
    /// A built-in policy of farm-policy, by name.
    Builtin(String),
    /// An ONNX model file.
    Onnx(PathBuf),
    /// Decisions arrive over gRPC `Step`.
    External,
}

/// Why a spec string names no policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// `onnx:` without a path.
    #[error("`onnx:` names no model file")]
    EmptyOnnxPath,
    /// Neither `onnx:<path>` nor `external`, and not a built-in.
    #[error(transparent)]
    Builtin(#[from] PolicyError),
}

impl PolicySpec {
    /// Parses `onnx:<path>`, `external` or a built-in name (surrounding
    /// blanks ignored). A built-in name is checked by building it, so this
    /// accepts exactly what a host builds later (parameterised names such as
    /// `fixed:4` included).
    pub fn parse(value: &str) -> Result<Self, SpecError> {
        let v = value.trim();
        if let Some(path) = v.strip_prefix("onnx:") {
            if path.is_empty() {
                return Err(SpecError::EmptyOnnxPath);
            }
            return Ok(PolicySpec::Onnx(PathBuf::from(path)));
        }
        if v == "external" {
            return Ok(PolicySpec::External);
        }
        check_builtin(v)?;
        Ok(PolicySpec::Builtin(v.to_owned()))
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySpec::Builtin(n) => f.write_str(n),
            PolicySpec::Onnx(p) => write!(f, "onnx:{}", p.display()),
            PolicySpec::External => f.write_str("external"),
        }
    }
}

/// Whether `name` is a built-in, built with a neutral platform.
pub fn check_builtin(name: &str) -> Result<(), PolicyError> {
    builtin(name, &platform(Duration::from_secs(8), 1, 32, None)).map(drop)
}

/// The platform description built-in policies are constructed with, from a
/// farm's live settings. Delays are unknown live and set to 0; the built-ins
/// read bounds from the signals of each tick anyway.
pub fn platform(interval: Duration, min: u32, max: u32, cap: Option<u32>) -> Platform {
    Platform {
        control_interval_s: interval.as_secs_f64(),
        episode_steps: 1,
        min_replicas: min,
        max_replicas: max,
        initial_replicas: min.max(1),
        per_function_cap: cap,
        startup_delay: Dist::Constant(0.0),
        scale_down_delay: Dist::Constant(0.0),
        scale_api_latency_s: 0.0,
        failure_rate_per_hour: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for text in ["queueing", "fixed:4", "onnx:models/a.onnx", "external"] {
            assert_eq!(PolicySpec::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            PolicySpec::parse(" kpa ").unwrap(),
            PolicySpec::Builtin("kpa".into())
        );
        assert_eq!(PolicySpec::parse("onnx:"), Err(SpecError::EmptyOnnxPath));
        assert!(matches!(
            PolicySpec::parse("fixed:x"),
            Err(SpecError::Builtin(PolicyError::BadParameter { .. }))
        ));
        assert!(matches!(
            PolicySpec::parse("hpaa"),
            Err(SpecError::Builtin(PolicyError::Unknown(_)))
        ));
    }
}
