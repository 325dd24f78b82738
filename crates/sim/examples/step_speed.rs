//! CPU cost of one environment step on the path `farmctl sim serve` takes
//! for a `StepBatch` with auto-reset: many [`Env`]s stepped in turn with
//! random actions, each starting its next episode (a fresh workload of the
//! scenario, seed + episodes) as soon as one ends. Prints the thread's CPU
//! time per env step (from `/proc/thread-self/schedstat`, so other
//! processes on a shared machine do not inflate it) and a fingerprint of
//! every observation, reward, flag and end-of-episode metric, which must
//! not change when the simulator is made faster.
//!
//! ```text
//! cargo run --release -p farm-sim --example step_speed -- [envs] [steps per env] [scenario] [repeats]
//! ```
//! Defaults: 1024 envs, 300 steps each, `paper-4phase`, 3 repeats (the
//! fastest repeat is the figure; the fingerprint is the same every repeat).

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;

use farm_model::action::ActionSpace;
use farm_model::reward::RewardWeights;
use farm_model::scenario::Scenario;
use farm_sim::{Env, RunMetrics, StepInfo};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// CPU time of this thread so far, nanoseconds (Linux).
fn thread_cpu_ns() -> Result<u64, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let first = text.split_whitespace().next().ok_or("empty schedstat")?;
    Ok(first.parse()?)
}

fn hash_metrics(h: &mut DefaultHasher, m: &RunMetrics) {
    for x in [
        m.qos,
        m.latency_p50_s,
        m.latency_p95_s,
        m.latency_p99_s,
        m.replica_seconds,
        m.mean_replicas,
        m.drain_time_s,
        m.end_s,
    ] {
        h.write_u64(x.to_bits());
    }
    for x in [
        m.tasks,
        m.completed,
        m.unfinished,
        m.on_time,
        m.redeliveries,
        m.failures,
        m.events,
    ] {
        h.write_u64(x);
    }
    for x in [m.max_replicas, m.scaling_actions, m.reversals] {
        h.write_u32(x);
    }
    h.write_usize(m.timeline.len());
    for p in &m.timeline {
        h.write_u64(p.t_s.to_bits());
        for x in [
            p.desired,
            p.ready,
            p.starting,
            p.alive,
            p.backlog,
            p.arrivals,
            p.completions,
        ] {
            h.write_u32(x);
        }
        h.write_u64(p.window_qos.map_or(u64::MAX, f64::to_bits));
    }
}

fn hash_info(h: &mut DefaultHasher, info: &StepInfo) {
    h.write_u64(info.time_s.to_bits());
    h.write_u32(info.step);
    h.write_u32(info.desired);
    // Debug text of the signals: every field, exact (shortest round-trip).
    h.write(format!("{:?}", info.signals).as_bytes());
    if let Some(m) = &info.metrics {
        hash_metrics(h, m);
    }
}

/// One run over every env; `(CPU ns, fingerprint)` (the fingerprint only
/// when `hash`, whose cost would otherwise be timed too).
fn run(
    scenario: &Scenario,
    n_envs: usize,
    steps: usize,
    hash: bool,
) -> Result<(u64, u64, u64), Box<dyn std::error::Error>> {
    let mut h = DefaultHasher::new();
    let mut rng = Pcg64Mcg::seed_from_u64(42);
    let mut envs: Vec<(Env, u64, u64)> = Vec::with_capacity(n_envs);
    let mut episodes = 0u64;
    let mut sink = 0.0f64;
    let start = thread_cpu_ns()?;
    for i in 0..n_envs {
        let mut env = Env::new(ActionSpace::default(), RewardWeights::default());
        let seed = 1000 + i as u64;
        // The server clones the scenario for every episode it starts.
        let (obs, info) = env.reset(&scenario.clone(), seed)?;
        if hash {
            for x in obs.as_slice() {
                h.write_u32(x.to_bits());
            }
            hash_info(&mut h, &info);
        }
        envs.push((env, seed, 1));
    }
    for _ in 0..steps {
        for (env, seed, done) in &mut envs {
            let action = rng.random_range(0..env.action_space().len());
            let out = env.step(action)?;
            sink += out.reward;
            if hash {
                for x in out.obs.as_slice() {
                    h.write_u32(x.to_bits());
                }
                h.write_u64(out.reward.to_bits());
                h.write_u8(u8::from(out.terminated) | (u8::from(out.truncated) << 1));
                hash_info(&mut h, &out.info);
            }
            if out.terminated || out.truncated {
                let next = seed.wrapping_add(*done);
                *done += 1;
                episodes += 1;
                let (obs, info) = env.reset(&scenario.clone(), next)?;
                if hash {
                    for x in obs.as_slice() {
                        h.write_u32(x.to_bits());
                    }
                    hash_info(&mut h, &info);
                }
            }
        }
    }
    let cpu = thread_cpu_ns()? - start;
    std::hint::black_box(sink);
    Ok((cpu, h.finish(), episodes))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n_envs: usize = args.first().map_or(Ok(1024), |s| s.parse())?;
    let steps: usize = args.get(1).map_or(Ok(300), |s| s.parse())?;
    let name = args.get(2).map_or("paper-4phase", String::as_str);
    let repeats: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    let scenario = Scenario::builtin(name)?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let (cpu, _, episodes) = run(&scenario, n_envs, steps, false)?;
        let per_step = cpu as f64 / (n_envs * steps) as f64;
        best = best.min(per_step);
        println!(
            "{name}: {n_envs} envs x {steps} steps, {episodes} auto-resets: {per_step:.0} ns CPU per env step"
        );
    }
    let (_, fingerprint, _) = run(&scenario, n_envs, steps, true)?;
    println!(
        "best {best:.0} ns CPU per env step ({:.3} us); fingerprint {fingerprint:016x}",
        best / 1000.0
    );
    Ok(())
}
