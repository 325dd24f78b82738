//! The whole-run API: a scenario, a seed and a policy in, [`RunMetrics`] out.

use farm_model::scenario::{DelaySequence, Platform, Scenario, Workload};
use farm_policy::Policy;

use crate::engine::{Engine, Pause, SimOptions};
use crate::metrics::RunMetrics;

/// Why a simulation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A platform parameter is out of range.
    #[error("platform `{field}`: {message}")]
    Platform {
        /// The field of [`Platform`].
        field: &'static str,
        /// What was expected.
        message: String,
    },
    /// The workload is not sorted by arrival or has a negative/NaN time.
    #[error("workload task {index}: {message}")]
    Workload {
        /// Index of the first bad task.
        index: usize,
        /// What was wrong.
        message: String,
    },
}

/// Check what the engine relies on: a positive control interval, sane
/// replica bounds, and a workload sorted by arrival with finite,
/// non-negative times.
pub fn validate(workload: &Workload, platform: &Platform) -> Result<(), SimError> {
    let bad = |field: &'static str, message: &str| SimError::Platform {
        field,
        message: message.to_string(),
    };
    if !(platform.control_interval_s.is_finite() && platform.control_interval_s > 0.0) {
        return Err(bad(
            "control_interval_s",
            "expected a positive number of seconds",
        ));
    }
    if platform.max_replicas == 0 || platform.min_replicas > platform.max_replicas {
        return Err(bad(
            "max_replicas",
            "expected 1 <= max_replicas and min_replicas <= max_replicas",
        ));
    }
    if !(platform.scale_api_latency_s.is_finite() && platform.scale_api_latency_s >= 0.0) {
        return Err(bad(
            "scale_api_latency_s",
            "expected a non-negative number of seconds",
        ));
    }
    if !(platform.failure_rate_per_hour.is_finite() && platform.failure_rate_per_hour >= 0.0) {
        return Err(bad("failure_rate_per_hour", "expected a non-negative rate"));
    }
    let mut prev = 0.0;
    for (index, t) in workload.tasks.iter().enumerate() {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        if !(ok(t.arrival_s) && ok(t.service_s) && ok(t.deadline_s)) {
            return Err(SimError::Workload {
                index,
                message: "times must be finite and non-negative".into(),
            });
        }
        if t.arrival_s < prev {
            return Err(SimError::Workload {
                index,
                message: "tasks must be sorted by arrival".into(),
            });
        }
        prev = t.arrival_s;
    }
    Ok(())
}

/// Run `scenario` for `seed` under `policy` with default [`SimOptions`].
///
/// The workload is `scenario.generate(seed)`; the platform's random delays
/// and failures use streams derived from the same seed. The policy is reset
/// first, called at every control tick (and on Alertmanager notifications),
/// and the run continues after the arrival window until every task is done
/// or [`SimOptions::max_drain_s`] has passed.
pub fn simulate(
    scenario: &Scenario,
    seed: u64,
    policy: &mut dyn Policy,
) -> Result<RunMetrics, SimError> {
    let workload = scenario.generate(seed);
    simulate_workload(
        &workload,
        &scenario.platform,
        seed,
        policy,
        &SimOptions::default(),
    )
}

/// [`simulate`] for an explicit workload and options.
pub fn simulate_workload(
    workload: &Workload,
    platform: &Platform,
    seed: u64,
    policy: &mut dyn Policy,
    opts: &SimOptions,
) -> Result<RunMetrics, SimError> {
    run_engine(workload, platform, seed, policy, opts, None).map(|(m, _)| m)
}

/// [`simulate_workload`] with the start-up delays taken from `replay` in
/// start order (then its fallback) instead of `platform.startup_delay`:
/// `farmctl compare` replays the delays a live run saw. Returns the
/// sequence too, whose counters say how many delays it supplied.
pub fn simulate_workload_replay(
    workload: &Workload,
    platform: &Platform,
    seed: u64,
    policy: &mut dyn Policy,
    opts: &SimOptions,
    replay: DelaySequence,
) -> Result<(RunMetrics, DelaySequence), SimError> {
    let (m, seq) = run_engine(workload, platform, seed, policy, opts, Some(replay))?;
    let seq = seq.ok_or_else(|| SimError::Platform {
        field: "startup_delay",
        message: "the replayed sequence went missing".into(),
    })?;
    Ok((m, seq))
}

/// One engine run to the end, optionally replaying start-up delays.
fn run_engine(
    workload: &Workload,
    platform: &Platform,
    seed: u64,
    policy: &mut dyn Policy,
    opts: &SimOptions,
    replay: Option<DelaySequence>,
) -> Result<(RunMetrics, Option<DelaySequence>), SimError> {
    validate(workload, platform)?;
    let mut engine = Engine::new(
        workload.tasks.clone(),
        workload.duration_s,
        platform,
        seed,
        opts.clone(),
    );
    if let Some(seq) = replay {
        engine.replay_startup(seq);
    }
    drive(&mut engine, policy);
    Ok((engine.metrics(), engine.startup_replay().cloned()))
}

/// Run an engine to the end under a policy.
pub fn drive(engine: &mut Engine, policy: &mut dyn Policy) {
    policy.reset();
    loop {
        match engine.run() {
            Pause::Tick(signals) => {
                let d = policy.decide(engine.now(), &signals);
                engine.set_desired(d.desired);
            }
            Pause::Alert { firing, signals } => {
                if let Some(d) = policy.on_alert(engine.now(), firing, &signals) {
                    engine.set_desired(d.desired);
                }
            }
            Pause::Finished => break,
        }
    }
}
