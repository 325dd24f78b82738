//! Pure model of a rust-farm: what a farm on a serverless platform looks like
//! to a controller, shared by the simulator (`farm-sim`), the policies
//! (`farm-policy`) and the live autoscaler (`gateway-ext`) so a policy sees
//! the same features in both.
//!
//! Nothing here touches async runtimes, sockets, files or the wall clock.
//!
//! - [`scenario`]: workloads and platform models (YAML and built-ins) and the
//!   task list they generate for a seed.
//! - [`signals`]: the raw measurements of one control interval.
//! - [`observation`]: the versioned, normalised feature vector built from
//!   [`signals::Signals`].
//! - [`action`]: discrete action spaces declared as data.
//! - [`reward`]: the configurable reward.
//! - [`queueing`]: Erlang-C / M/G/c formulas.
//! - [`cadence`]: early decisions between ticks (the backlog-jump trigger).
//!
//! The policies that read these (the `Policy` trait, the built-in
//! baselines, ONNX models, the shield) are `farm-policy`'s.
//!
//! The main loop, as a host drives it (the simulator fills [`signals::Signals`]
//! from its state, gateway-ext from JetStream and the provider):
//!
//! ```
//! use farm_model::{action::ActionSpace, observation, reward};
//! use farm_model::scenario::Scenario;
//! use farm_model::signals::Signals;
//!
//! let scenario = Scenario::builtin("paper-4phase")?;
//! let workload = scenario.generate(42);
//! assert!(workload.tasks.len() > 1000); // ~1140 expected
//!
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
//! // A learned policy sees the observation and picks an action index.
//! let obs = observation::observe(&signals);
//! assert_eq!(obs.len(), observation::OBS_DIM);
//! let space = ActionSpace::default();
//! let desired = space.apply(6, &signals); // "delta:+4"
//! assert_eq!(desired, 8);
//! let r = reward::reward(&reward::RewardWeights::default(), &signals, 4, desired);
//! assert!(r < 1.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod action;
pub mod cadence;
pub mod estimate;
pub mod observation;
pub mod planner;
pub mod queueing;
pub mod reward;
pub mod scenario;
pub mod signals;
