//! The simulator's step results as `FarmControl` replies.

use farm_proto::control::{RunSummary, StepReply};
use farm_sim::{RunMetrics, StepInfo};

fn summary(m: &RunMetrics) -> RunSummary {
    RunSummary {
        tasks: m.tasks,
        completed: m.completed,
        unfinished: m.unfinished,
        qos: m.qos,
        latency_p50_s: m.latency_p50_s,
        latency_p95_s: m.latency_p95_s,
        latency_p99_s: m.latency_p99_s,
        replica_seconds: m.replica_seconds,
        mean_replicas: m.mean_replicas,
        max_replicas: m.max_replicas,
        scaling_actions: m.scaling_actions,
        reversals: m.reversals,
        drain_s: m.drain_time_s,
    }
}

pub(super) fn reply(
    env_id: &str,
    obs: &[f32],
    reward: f64,
    terminated: bool,
    truncated: bool,
    info: &StepInfo,
) -> StepReply {
    StepReply {
        env_id: env_id.to_string(),
        observation: obs.to_vec(),
        reward,
        terminated,
        truncated,
        info: Some(step_info(info)),
        final_observation: Vec::new(),
    }
}

pub(super) fn step_info(info: &StepInfo) -> farm_proto::control::StepInfo {
    let s = &info.signals;
    let count = |x: f64| {
        if x.is_finite() && x > 0.0 {
            x.round() as u32
        } else {
            0
        }
    };
    farm_proto::control::StepInfo {
        time_s: info.time_s,
        desired: info.desired,
        ready: count(s.replicas_ready),
        starting: count(s.replicas_starting),
        backlog: s.backlog,
        in_flight: s.in_flight,
        window_qos: s.window_qos(),
        arrivals: s.arrivals,
        completions: s.completions,
        summary: info.metrics.as_ref().map(summary),
    }
}
