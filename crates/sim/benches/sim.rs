//! Simulation speed, printed (not asserted): `cargo bench -p farm-sim`.
//!
//! - events/s on a long steady workload (one core);
//! - full `paper-4phase` episodes per second with a simple built-in policy,
//!   with and without workload generation;
//! - the oracle's lower bound and plan search on `paper-4phase`.

use std::hint::black_box;
use std::time::Instant;

use farm_model::scenario::Scenario;
use farm_sim::oracle::{DEFAULT_TARGET_QOS, lower_bound, plan};
use farm_sim::{Engine, SimOptions, drive, simulate_workload};

fn main() {
    let paper = Scenario::builtin("paper-4phase").expect("built-in paper-4phase");
    let opts = SimOptions {
        timeline: false,
        alerts: false,
        ..SimOptions::default()
    };

    // 1. Raw event throughput: steady 40 tasks/s for ~7 hours on 64 replicas.
    let steady = Scenario::builtin("steady").expect("built-in steady");
    let mut long = steady.generate(1);
    let reps = 100;
    let base: Vec<_> = long.tasks.clone();
    long.tasks.clear();
    for r in 0..reps {
        let shift = f64::from(r) * long.duration_s;
        long.tasks
            .extend(base.iter().map(|t| farm_model::scenario::TaskSpec {
                arrival_s: t.arrival_s + shift,
                ..*t
            }));
    }
    long.duration_s *= f64::from(reps);
    let mut fixed = farm_policy::builtin("fixed:12", &steady.platform).expect("fixed policy");
    let t = Instant::now();
    let m = simulate_workload(&long, &steady.platform, 1, fixed.as_mut(), &opts).expect("run");
    let dt = t.elapsed().as_secs_f64();
    println!(
        "events/s (steady x{reps}, {} tasks, fixed:12): {:.2} M events/s ({} events in {:.3} s)",
        long.tasks.len(),
        m.events as f64 / dt / 1e6,
        m.events,
        dt
    );

    // 2. paper-4phase episodes.
    for name in ["reactive-average", "queueing"] {
        let mut p = farm_policy::builtin(name, &paper.platform).expect("policy");
        let n = 2000u64;
        let workloads: Vec<_> = (0..n).map(|s| paper.generate(s)).collect();
        let mut events = 0u64;
        let t = Instant::now();
        for (s, w) in workloads.iter().enumerate() {
            let mut e = Engine::new(
                w.tasks.clone(),
                w.duration_s,
                &paper.platform,
                s as u64,
                opts.clone(),
            );
            drive(&mut e, p.as_mut());
            events += e.events();
            black_box(e.metrics());
        }
        let sim = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for s in 0..n {
            black_box(paper.generate(s));
        }
        let gen_t = t.elapsed().as_secs_f64();
        println!(
            "paper-4phase with {name}: {:.1} us/episode simulate only ({:.0} episodes/s, {:.2} M events/s, {:.0} events/episode); \
             + generation {:.1} us/episode -> {:.0} episodes/s end to end",
            sim / n as f64 * 1e6,
            n as f64 / sim,
            events as f64 / sim / 1e6,
            events as f64 / n as f64,
            gen_t / n as f64 * 1e6,
            n as f64 / (sim + gen_t),
        );
    }

    // 3. Oracle.
    let w = paper.generate(0);
    let t = Instant::now();
    let lb = lower_bound(&w, &paper.platform, DEFAULT_TARGET_QOS);
    let lb_t = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let pl = plan(
        &w,
        &paper.platform,
        0,
        DEFAULT_TARGET_QOS,
        &SimOptions::default(),
    )
    .expect("plan");
    let pl_t = t.elapsed().as_secs_f64();
    println!(
        "oracle on paper-4phase seed 0: bound {:.0} replica-s in {:.1} ms; plan {:.0} replica-s (QoS {:.2} %) in {:.1} ms ({} simulations)",
        lb.replica_seconds,
        lb_t * 1e3,
        pl.metrics.replica_seconds,
        pl.metrics.qos * 100.0,
        pl_t * 1e3,
        pl.simulations
    );
}
