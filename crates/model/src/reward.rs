//! The reward of one control step, with configurable weights.
//!
//! ```text
//! r = w.qos     * q
//!   - w.cost    * desired / max_replicas
//!   - w.backlog * min(backlog / (max_replicas * 10), 1)
//!   - w.churn   * |desired - prev_desired| / max_replicas
//! ```
//!
//! - `q` is the window QoS (on-time / completed). An empty window is not
//!   perfect: `q = 0` if work is waiting or running but nothing completed,
//!   and `q = 1` only when the farm is idle (nothing arrived, nothing queued,
//!   nothing in flight), where there was nothing to miss.
//! - Cost is the replicas asked for, as a fraction of the farm's maximum, so
//!   rewards compare across farm sizes.
//! - The backlog term punishes a queue growing beyond ten tasks per possible
//!   replica before QoS (measured on completions) catches up with it.
//! - Churn charges each replica added or removed (start-up and drain are
//!   not free on a real platform).

use crate::signals::Signals;

/// Weights of the reward terms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RewardWeights {
    /// Weight of the window QoS (reward).
    pub qos: f64,
    /// Weight of the replica cost (penalty).
    pub cost: f64,
    /// Weight of the backlog (penalty).
    pub backlog: f64,
    /// Weight of scaling churn (penalty).
    pub churn: f64,
}

impl Default for RewardWeights {
    /// `qos 1.0, cost 0.5, backlog 0.5, churn 0.1`: a full-QoS step at half
    /// the maximum replicas earns 0.75; losing 25 % QoS costs as much as
    /// keeping every replica of the farm running; a change of 4 replicas on a
    /// 32-replica farm costs about 0.0125.
    fn default() -> Self {
        RewardWeights {
            qos: 1.0,
            cost: 0.5,
            backlog: 0.5,
            churn: 0.1,
        }
    }
}

/// The QoS term `q` described in the module docs.
pub fn qos_term(s: &Signals) -> f64 {
    match s.window_qos() {
        Some(q) => q,
        None => {
            let idle = s.arrivals <= 0.0 && s.backlog <= 0.0 && s.in_flight <= 0.0;
            if idle { 1.0 } else { 0.0 }
        }
    }
}

/// Reward for the step that observed `s` and moved the desired count from
/// `prev_desired` to `desired`.
pub fn reward(w: &RewardWeights, s: &Signals, prev_desired: u32, desired: u32) -> f64 {
    let max_r = s.max_replicas.max(1.0);
    let cost = f64::from(desired) / max_r;
    let backlog = (s.backlog.max(0.0) / (max_r * 10.0)).min(1.0);
    let churn = f64::from(desired.abs_diff(prev_desired)) / max_r;
    w.qos * qos_term(s) - w.cost * cost - w.backlog * backlog - w.churn * churn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_by_hand() {
        let s = Signals {
            completions: 10.0,
            completions_on_time: 8.0,
            backlog: 32.0,
            max_replicas: 32.0,
            ..Default::default()
        };
        // 1.0 * 0.8 - 0.5 * 16/32 - 0.5 * 32/320 - 0.1 * 4/32
        // = 0.8 - 0.25 - 0.05 - 0.0125 = 0.4875
        let r = reward(&RewardWeights::default(), &s, 12, 16);
        assert!((r - 0.4875).abs() < 1e-12, "{r}");
    }

    #[test]
    fn empty_window_with_work_is_not_perfect() {
        let busy = Signals {
            backlog: 5.0,
            max_replicas: 32.0,
            ..Default::default()
        };
        assert_eq!(qos_term(&busy), 0.0);
        let idle = Signals {
            max_replicas: 32.0,
            ..Default::default()
        };
        assert_eq!(qos_term(&idle), 1.0);
    }
}
