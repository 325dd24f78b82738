//! Shared helpers for the simulator's integration tests.
#![allow(dead_code)]

use farm_model::scenario::{Dist, Platform, TaskSpec, Workload};
use farm_model::signals::Signals;
use farm_policy::{Decision, Policy};

/// A platform with constant delays and no failures.
pub fn platform(
    interval: f64,
    min: u32,
    max: u32,
    initial: u32,
    startup: f64,
    down: f64,
) -> Platform {
    Platform {
        control_interval_s: interval,
        episode_steps: 30,
        min_replicas: min,
        max_replicas: max,
        initial_replicas: initial,
        per_function_cap: None,
        startup_delay: Dist::Constant(startup),
        scale_down_delay: Dist::Constant(down),
        scale_api_latency_s: 0.0,
        failure_rate_per_hour: 0.0,
    }
}

/// A workload from `(arrival, service, deadline)` triples.
pub fn workload(tasks: &[(f64, f64, f64)], duration_s: f64) -> Workload {
    Workload {
        tasks: tasks
            .iter()
            .map(|&(a, s, d)| TaskSpec {
                arrival_s: a,
                service_s: s,
                deadline_s: d,
            })
            .collect(),
        duration_s,
    }
}

/// Asks for the same count at every tick.
pub struct Fixed(pub u32);

impl Policy for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }
    fn decide(&mut self, _now_s: f64, _signals: &Signals) -> Decision {
        Decision {
            desired: self.0,
            action: None,
        }
    }
}

/// Replays a list of desired counts, then repeats the last one.
pub struct Script(pub Vec<u32>, pub usize);

impl Policy for Script {
    fn name(&self) -> &str {
        "script"
    }
    fn reset(&mut self) {
        self.1 = 0;
    }
    fn decide(&mut self, _now_s: f64, _signals: &Signals) -> Decision {
        let d = self.0.get(self.1).or(self.0.last()).copied().unwrap_or(1);
        self.1 += 1;
        Decision {
            desired: d,
            action: None,
        }
    }
}

/// Records every call; asks for `backlog + in_flight` replicas (a simple
/// reactive rule) and +2 on a firing alert.
#[derive(Default)]
pub struct Recorder {
    pub ticks: Vec<(f64, Signals)>,
    pub alerts: Vec<(f64, bool)>,
}

impl Policy for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn decide(&mut self, now_s: f64, signals: &Signals) -> Decision {
        self.ticks.push((now_s, signals.clone()));
        Decision {
            desired: (signals.backlog + signals.in_flight).ceil() as u32,
            action: None,
        }
    }
    fn on_alert(&mut self, now_s: f64, firing: bool, signals: &Signals) -> Option<Decision> {
        self.alerts.push((now_s, firing));
        firing.then(|| Decision {
            desired: signals.replicas_desired as u32 + 2,
            action: None,
        })
    }
}
