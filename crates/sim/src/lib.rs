//! Seeded discrete-event simulator of a rust-farm on a serverless platform,
//! with a clairvoyant oracle.
//!
//! Pure: no async runtime, no I/O, no wall clock. Logical time is in
//! seconds; the same scenario and seed give bit-identical results.
//!
//! - [`simulate`]: the whole-run API (scenario, seed, policy -> [`RunMetrics`]).
//! - [`Env`]: the step API for reinforcement learning (reset / step with the
//!   observation, action space and reward of `farm-model`).
//! - [`Engine`]: the event-driven core both are built on.
//! - [`oracle`]: a provable lower bound on replica-seconds at a QoS target,
//!   and an achievable clairvoyant replica plan.
//!
//! ```
//! use farm_policy::{Decision, Policy};
//! use farm_model::scenario::{Dist, Platform, TaskSpec, Workload};
//! use farm_model::signals::Signals;
//! use farm_sim::{SimOptions, simulate_workload};
//!
//! /// Always three replicas.
//! struct Three;
//! impl Policy for Three {
//!     fn name(&self) -> &str { "three" }
//!     fn decide(&mut self, _now: f64, _s: &Signals) -> Decision {
//!         Decision { desired: 3, action: None }
//!     }
//! }
//!
//! let tasks = (0..100)
//!     .map(|i| TaskSpec { arrival_s: f64::from(i) * 0.5, service_s: 1.0, deadline_s: 2.0 })
//!     .collect();
//! let workload = Workload { tasks, duration_s: 50.0 };
//! let platform = Platform {
//!     control_interval_s: 5.0, episode_steps: 10, min_replicas: 1, max_replicas: 8,
//!     initial_replicas: 1, per_function_cap: None,
//!     startup_delay: Dist::Constant(2.0), scale_down_delay: Dist::Constant(1.0),
//!     scale_api_latency_s: 0.0, failure_rate_per_hour: 0.0,
//! };
//! let m = simulate_workload(&workload, &platform, 7, &mut Three, &SimOptions::default()).unwrap();
//! assert_eq!(m.completed + m.unfinished, m.tasks);
//! assert!(m.qos > 0.8);
//! ```

pub mod engine;
pub mod env;
pub mod metrics;
pub mod oracle;
pub mod run;

pub use engine::{Engine, Pause, SimOptions, shards_for};
pub use env::{Env, EnvError, StepInfo, StepOut};
pub use metrics::{RunMetrics, TimelinePoint};
pub use run::{SimError, drive, simulate, simulate_workload, simulate_workload_replay, validate};
