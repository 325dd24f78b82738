//! The causal model-predictive controller (`mpc`) as a policy: the
//! [`farm_model::planner::Planner`] within the platform's bounds.

use super::{Decision, Policy, bounds};
use farm_model::planner::{MpcConfig, Planner};
use farm_model::scenario::Platform;
use farm_model::signals::Signals;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;
    use farm_model::scenario::{Dist, Scenario};

    fn signals(dt: f64, arrivals: f64, ready: f64, starting: f64, backlog: f64) -> Signals {
        Signals {
            interval_s: dt,
            arrivals,
            completions: arrivals,
            completions_on_time: arrivals,
            service_mean_s: Some(1.5),
            service_p95_s: Some(2.5),
            deadline_mean_s: Some(3.0),
            deadline_min_s: Some(1.0),
            replicas_desired: ready + starting,
            replicas_ready: ready,
            replicas_starting: starting,
            backlog,
            min_replicas: 1.0,
            max_replicas: 32.0,
            ..Signals::default()
        }
    }

    fn platform() -> Platform {
        Scenario::builtin("steady").unwrap().platform
    }

    #[test]
    fn steady_load_is_staffed_above_the_offered_load() {
        let mut p = Mpc::new(MpcConfig::default(), &platform());
        let mut d = 0;
        for k in 0..20 {
            // 7.5 tasks/s of 1.5 s tasks: 11.25 replicas of load.
            d = p
                .decide(f64::from(k) * 8.0, &signals(8.0, 60.0, 12.0, 0.0, 0.0))
                .desired;
        }
        assert!((12..=20).contains(&d), "{d}");
    }

    #[test]
    fn the_plan_does_not_depend_on_the_cadence_at_a_steady_load() {
        let plan_at = |dt: f64| {
            let mut p = Mpc::new(MpcConfig::default(), &platform());
            let mut d = 0;
            let n = (160.0 / dt) as u32;
            for k in 0..n {
                d = p
                    .decide(f64::from(k) * dt, &signals(dt, 7.5 * dt, 12.0, 0.0, 0.0))
                    .desired;
            }
            d
        };
        assert_eq!(plan_at(2.0), plan_at(8.0));
    }

    #[test]
    fn a_backlog_scales_up_at_once_and_release_waits_for_the_hold() {
        let mut p = Mpc::new(MpcConfig::default(), &platform());
        let calm = p.decide(0.0, &signals(2.0, 8.0, 6.0, 0.0, 0.0)).desired;
        let burst = p.decide(2.0, &signals(2.0, 30.0, 6.0, 0.0, 60.0)).desired;
        assert!(burst > calm + 10, "{calm} -> {burst}");
        // Calm again: held for 2 x (start-up + step) = 18 s.
        let mut t = 4.0;
        while t < 18.0 {
            assert_eq!(
                p.decide(t, &signals(2.0, 8.0, 6.0, 0.0, 0.0)).desired,
                burst
            );
            t += 2.0;
        }
        let later = p.decide(30.0, &signals(2.0, 8.0, 6.0, 0.0, 0.0)).desired;
        assert!(later < burst, "{later}");
    }

    #[test]
    fn startup_is_learned_from_the_replicas_seen_starting() {
        let mut plat = platform();
        plat.startup_delay = Dist::Constant(0.0);
        let mut p = Mpc::new(MpcConfig::default(), &plat);
        assert!((p.planner().startup_estimate() - 7.0).abs() < 1e-9);
        // Four replicas start and become ready after 20 s, 10 times over.
        let mut t = 0.0;
        for _ in 0..10 {
            for _ in 0..10 {
                p.decide(t, &signals(2.0, 8.0, 4.0, 4.0, 0.0));
                t += 2.0;
            }
            p.decide(t, &signals(2.0, 8.0, 8.0, 0.0, 0.0));
            p.decide(t + 2.0, &signals(2.0, 8.0, 4.0, 0.0, 0.0));
            t += 4.0;
        }
        let d = p.planner().startup_estimate();
        assert!((17.0..=21.0).contains(&d), "{d}");
    }

    #[test]
    fn holds_before_any_service_time_and_reset_forgets() {
        let mut p = Mpc::new(MpcConfig::default(), &platform());
        let mut s = signals(8.0, 0.0, 3.0, 0.0, 0.0);
        s.service_mean_s = None;
        s.completions = 0.0;
        assert_eq!(p.decide(0.0, &s).desired, 3);
        p.decide(8.0, &signals(8.0, 200.0, 3.0, 0.0, 100.0));
        p.reset();
        assert_eq!(p.decide(0.0, &s).desired, 3);
    }
}
