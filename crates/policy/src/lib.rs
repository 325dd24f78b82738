//! `farm-policy`: everything between an observation and a decision, the
//! same code in the simulator (`farm-sim`'s runners), in farmctl's live
//! loop and in gateway-ext.
//!
//! - [`Policy`] and [`Decision`]: what sizes a farm's worker pool once per
//!   control interval, from the [`Signals`] of the last interval.
//! - [`baselines`]: the built-in baselines (reactive rules of the reference
//!   paper, OpenFaaS CE, HPA, KEDA, Knative KPA, OpenFaaS Pro queue mode,
//!   fixed, queueing-theory staffing), built by name with [`builtin`].
//! - [`spec`]: a policy as configured, parsed from its spec string
//!   (`queueing`, `kpa`, `fixed:N`, `onnx:<path>`, `external`, ...), and the
//!   platform live hosts build built-ins with.
//! - [`onnx`] (cargo feature `onnx`, on by default): the ONNX Runtime loader
//!   of learned policies with its metadata checks; [`learned`] runs such a
//!   model as a [`Policy`].
//! - [`shield`]: what makes a proposal safe before it reaches the platform.
//!
//! Pure but for the ONNX loader (which reads the model file and loads ONNX
//! Runtime): no async runtime, no sockets, no wall clock. The data the
//! policies read (signals, observation, action space, scenarios, queueing
//! formulas) is `farm-model`'s.
//!
//! ```
//! use farm_model::scenario::Scenario;
//! use farm_model::signals::Signals;
//! use farm_policy::Policy;
//!
//! let scenario = Scenario::builtin("paper-4phase")?;
//! let mut hpa = farm_policy::builtin("hpa", &scenario.platform)?;
//! // The measurements of one 8 s interval: 4 replicas, all busy.
//! let signals = Signals {
//!     interval_s: 8.0,
//!     arrivals: 60.0,
//!     completions: 20.0,
//!     completions_on_time: 18.0,
//!     service_mean_s: Some(1.5),
//!     backlog: 30.0,
//!     in_flight: 4.0,
//!     replicas_desired: 4.0,
//!     replicas_ready: 4.0,
//!     replicas_busy: 4.0,
//!     min_replicas: 1.0,
//!     max_replicas: 32.0,
//!     ..Default::default()
//! };
//! let decision = hpa.decide(8.0, &signals);
//! assert_eq!(decision.desired, 5); // ceil(4 x 100 % / 80 %)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod baselines;
#[cfg(feature = "onnx")]
pub mod learned;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod shield;
pub mod spec;

pub use baselines::{PolicyError, builtin, builtin_names};
pub use spec::{PolicySpec, SpecError, platform};

use farm_model::signals::Signals;

/// What a policy decided at one control tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Replicas wanted, before the shield clamps it.
    pub desired: u32,
    /// Index into the action space for policies that choose discrete actions.
    pub action: Option<usize>,
}

impl Decision {
    /// A decision with no discrete action attached.
    pub fn to(desired: u32) -> Self {
        Decision {
            desired,
            action: None,
        }
    }
}

/// Sizes a farm's worker pool once per control interval.
///
/// Implementations hold their own state (stabilisation windows, panic mode,
/// eligibility traces); [`Policy::reset`] clears it between episodes. They
/// must be deterministic given the same sequence of signals.
pub trait Policy: Send {
    /// Stable name, e.g. `"hpa"`, `"reactive-average"`.
    fn name(&self) -> &str;
    /// Forget all state, as at the start of an episode.
    fn reset(&mut self) {}
    /// Decide the desired replica count from the signals of the last
    /// interval. `now_s` is the controller's logical time in seconds, for
    /// policies with time windows.
    fn decide(&mut self, now_s: f64, signals: &Signals) -> Decision;
    /// An out-of-band event such as an Alertmanager alert (`firing` true or
    /// false). Returns a decision to apply at once, or `None` to wait for the
    /// next tick. Only alert-driven policies (OpenFaaS CE) act on it.
    fn on_alert(&mut self, _now_s: f64, _firing: bool, _signals: &Signals) -> Option<Decision> {
        None
    }
}
