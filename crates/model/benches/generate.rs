//! Workload generation speed, printed (not asserted):
//! `cargo bench -p farm-model --bench generate`.
//!
//! For each built-in scenario: microseconds per `Scenario::generate` call
//! (best of three passes over the seeds, the machine is shared) and a
//! fingerprint of every generated bit, so an optimisation can show it left
//! the output unchanged. `FARM_BENCH_SEEDS` sets the seeds per pass (default
//! 200; a small value suits `valgrind --tool=callgrind`).

use std::hint::black_box;
use std::time::Instant;

use farm_model::scenario::{Scenario, Workload};

/// FNV-1a over the bits of every task field and the duration.
fn fingerprint(w: &Workload, mut h: u64) -> u64 {
    let mut eat = |x: f64| {
        for b in x.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(w.duration_s);
    for t in &w.tasks {
        eat(t.arrival_s);
        eat(t.service_s);
        eat(t.deadline_s);
    }
    h
}

fn main() {
    let seeds: u64 = std::env::var("FARM_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let only = std::env::var("FARM_BENCH_SCENARIO").ok();
    println!("seeds per pass: {seeds}");
    for name in Scenario::builtin_names() {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let s = Scenario::builtin(name).expect("built-in scenario");
        let (mut tasks, mut fp) = (0usize, 0xcbf2_9ce4_8422_2325u64);
        for seed in 0..seeds {
            let w = s.generate(seed);
            tasks += w.tasks.len();
            fp = fingerprint(&w, fp);
        }
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            for seed in 0..seeds {
                black_box(s.generate(black_box(seed)));
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let per = best / seeds.max(1) as f64;
        println!(
            "{name:>12}: {:8.1} us/episode, {:6.1} ns/task ({:.0} tasks/episode), fingerprint {fp:016x}",
            per * 1e6,
            per * 1e9 / (tasks as f64 / seeds.max(1) as f64),
            tasks as f64 / seeds.max(1) as f64,
        );
    }
}
