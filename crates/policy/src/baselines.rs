//! The built-in baseline policies.
//!
//! Built-ins (reactive rules from the reference paper, OpenFaaS CE, HPA, KEDA,
//! Knative KPA, OpenFaaS Pro queue mode, fixed, queueing-theory, the causal
//! model-predictive controller) implement [`Policy`] directly; a learned
//! policy (`crate::learned`) implements it by building the observation
//! vector, choosing a discrete action and applying the action space.
//!
//! Get one by name with [`builtin`]; [`builtin_names`] lists the names.
//! Every built-in reads only [`Signals`] and the [`Platform`] it was built
//! for, so it behaves the same in the simulator and live. Time windows are
//! measured in `now_s`; where a rule's window is shorter than the control
//! interval (Knative's 6 s panic window against an 8 s interval) the policy
//! documents how it approximates it from one `Signals` per interval.

mod fixed;
mod hpa;
mod keda;
mod kpa;
mod mpc;
mod openfaas;
mod reactive;
mod staffing;

pub use farm_model::planner::MpcConfig;
pub use fixed::Fixed;
pub use hpa::{Hpa, HpaBehavior, HpaConfig};
pub use keda::{Keda, KedaConfig};
pub use kpa::{Kpa, KpaConfig};
pub use mpc::Mpc;
pub use openfaas::{OpenFaasCe, OpenFaasCeConfig, OpenFaasProQueue, OpenFaasProQueueConfig};
pub use reactive::{Reactive, ReactiveConfig, ReactiveVariant};
pub use staffing::{Staffing, StaffingConfig};

use farm_model::scenario::Platform;
use farm_model::signals::Signals;

use crate::{Decision, Policy};

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// No built-in policy has that name.
    #[error("unknown policy `{0}` (built-ins: {names})", names = builtin_names().join(", "))]
    Unknown(String),
    /// The name is known but its parameter is malformed.
    #[error("policy `{name}`: {message}")]
    BadParameter {
        /// The name as given.
        name: String,
        /// What was expected.
        message: String,
    },
}

const NAMES: &[&str] = &[
    "reactive-average",
    "reactive-maximum",
    "openfaas-ce",
    "hpa",
    "keda",
    "kpa",
    "openfaas-pro-queue",
    "fixed:8",
    "queueing",
    "mpc",
];

/// Names of the built-in policies. `fixed:8` stands for the family
/// `fixed:N` (any N >= 0; `fixed-N` is accepted too). `openfaas-ce:tick`
/// is the CE rule evaluating the alert from each tick's signals, for hosts
/// that do not deliver alerts through [`Policy::on_alert`].
pub fn builtin_names() -> &'static [&'static str] {
    NAMES
}

/// Build a built-in policy with its published defaults for `platform`.
pub fn builtin(name: &str, platform: &Platform) -> Result<Box<dyn Policy>, PolicyError> {
    let n = name.trim();
    if let Some(arg) = n
        .strip_prefix("fixed:")
        .or_else(|| n.strip_prefix("fixed-"))
    {
        let replicas = arg.parse::<u32>().map_err(|_| PolicyError::BadParameter {
            name: n.into(),
            message: format!("expected `fixed:N` with N a replica count, got `{arg}`"),
        })?;
        return Ok(Box::new(Fixed::new(replicas, platform)));
    }
    Ok(match n {
        "reactive-average" => Box::new(Reactive::new(ReactiveVariant::Average, platform)),
        "reactive-maximum" => Box::new(Reactive::new(ReactiveVariant::Maximum, platform)),
        "openfaas-ce" => Box::new(OpenFaasCe::new(OpenFaasCeConfig::default(), platform)),
        "openfaas-ce:tick" => Box::new(OpenFaasCe::new(
            OpenFaasCeConfig {
                alerts_from_ticks: true,
                ..Default::default()
            },
            platform,
        )),
        "hpa" => Box::new(Hpa::new(HpaConfig::default(), platform)),
        "keda" => Box::new(Keda::new(KedaConfig::default(), platform)),
        "kpa" => Box::new(Kpa::new(KpaConfig::default(), platform)),
        "openfaas-pro-queue" => Box::new(OpenFaasProQueue::new(
            OpenFaasProQueueConfig::default(),
            platform,
        )),
        "queueing" => Box::new(Staffing::new(StaffingConfig::default(), platform)),
        "mpc" => Box::new(Mpc::new(MpcConfig::default(), platform)),
        _ => return Err(PolicyError::Unknown(n.into())),
    })
}

/// Replica bounds for a decision: the signals' bounds when the host filled
/// them in (live limits can change), else the platform's.
pub(crate) fn bounds(s: &Signals, platform: &Platform) -> (u32, u32) {
    let (lo, hi) = if s.max_replicas >= 1.0 {
        (s.min_replicas.max(0.0) as u32, s.max_replicas as u32)
    } else {
        (platform.min_replicas, platform.max_replicas)
    };
    (lo, hi.max(lo))
}

/// Clamp a real-valued target into the bounds and round up to replicas.
pub(crate) fn clamp_ceil(x: f64, lo: u32, hi: u32) -> u32 {
    if !x.is_finite() {
        return if x > 0.0 { hi } else { lo };
    }
    let c = x.ceil().clamp(f64::from(lo), f64::from(hi));
    c as u32
}

/// The desired count the host last applied, as an integer.
pub(crate) fn current(s: &Signals) -> u32 {
    s.replicas_desired.max(0.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_model::scenario::Scenario;

    #[test]
    fn every_listed_name_builds_and_reports_its_name() {
        let p = Scenario::builtin("paper-4phase").unwrap().platform;
        for name in builtin_names() {
            let pol = builtin(name, &p).unwrap();
            assert_eq!(pol.name(), *name);
        }
        assert_eq!(builtin("fixed-3", &p).unwrap().name(), "fixed:3");
        assert_eq!(
            builtin("openfaas-ce:tick", &p).unwrap().name(),
            "openfaas-ce:tick"
        );
    }

    #[test]
    fn bad_names_are_typed_errors() {
        let p = Scenario::builtin("paper-4phase").unwrap().platform;
        assert!(matches!(builtin("hpaa", &p), Err(PolicyError::Unknown(n)) if n == "hpaa"));
        assert!(matches!(
            builtin("fixed:x", &p),
            Err(PolicyError::BadParameter { .. })
        ));
    }
}
