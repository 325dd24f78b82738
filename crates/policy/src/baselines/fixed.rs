//! A fixed pool size: the cost/QoS reference point for a static farm.

use super::{Decision, Policy, bounds};
use farm_model::scenario::Platform;
use farm_model::signals::Signals;

/// Always asks for the same number of replicas (clamped to the bounds).
#[derive(Debug, Clone)]
pub struct Fixed {
    name: String,
    replicas: u32,
    platform: Platform,
}

impl Fixed {
    /// `fixed:<replicas>`.
    pub fn new(replicas: u32, platform: &Platform) -> Self {
        Fixed {
            name: format!("fixed:{replicas}"),
            replicas,
            platform: platform.clone(),
        }
    }
}

impl Policy for Fixed {
    fn name(&self) -> &str {
        &self.name
    }

    fn decide(&mut self, _now_s: f64, s: &Signals) -> Decision {
        let (lo, hi) = bounds(s, &self.platform);
        Decision::to(self.replicas.clamp(lo, hi))
    }
}
