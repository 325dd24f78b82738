//! The causal model-predictive controller (`mpc`) as a policy: the
//! [`crate::planner::Planner`] within the platform's bounds.

use super::{Decision, Policy, bounds};
use crate::planner::{MpcConfig, Planner};
use crate::scenario::Platform;
use crate::signals::Signals;

/// The model-predictive controller.
#[derive(Debug, Clone)]
pub struct Mpc {
    planner: Planner,
    platform: Platform,
}

impl Mpc {
    /// The controller with explicit knobs.
    pub fn new(config: MpcConfig, platform: &Platform) -> Self {
        Mpc {
            planner: Planner::new(
                config,
                platform.startup_delay.mean(),
                platform.control_interval_s,
            ),
            platform: platform.clone(),
        }
    }

    /// The planner and its estimates.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }
}

impl Policy for Mpc {
    fn name(&self) -> &str {
        "mpc"
    }

    fn reset(&mut self) {
        self.planner.reset();
    }

    fn decide(&mut self, now_s: f64, s: &Signals) -> Decision {
        let (lo, hi) = bounds(s, &self.platform);
        Decision::to(self.planner.decide(now_s, s, lo, hi))
    }
}
