//! Invariants of the engine on random workloads, platforms and policies.

mod common;

use common::Script;
use farm_model::scenario::{Dist, Platform, TaskSpec, Workload};
use farm_sim::oracle::lower_bound;
use farm_sim::{SimOptions, simulate_workload};
use proptest::prelude::*;

fn workload() -> impl Strategy<Value = Workload> {
    let task = (0.0..60.0f64, 0.01..5.0f64, 0.5..4.0f64);
    prop::collection::vec(task, 0..250).prop_map(|v| {
        let mut tasks: Vec<TaskSpec> = v
            .into_iter()
            .map(|(a, s, f)| TaskSpec {
                arrival_s: a,
                service_s: s,
                deadline_s: s * f,
            })
            .collect();
        tasks.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
        Workload {
            tasks,
            duration_s: 60.0,
        }
    })
}

fn platform() -> impl Strategy<Value = Platform> {
    (
        prop::sample::select(vec![1.0, 2.5, 8.0]),
        0u32..3,
        1u32..12,
        0.0..10.0f64,
        0.0..3.0f64,
        prop::sample::select(vec![0.0, 0.3]),
        prop::sample::select(vec![0.0, 0.0, 120.0]),
        prop::option::of(1u32..6),
    )
        .prop_map(
            |(interval, min, extra, up, down, lat, fail, cap)| Platform {
                control_interval_s: interval,
                episode_steps: 10,
                min_replicas: min,
                max_replicas: min + extra,
                initial_replicas: min + extra / 2,
                per_function_cap: cap,
                startup_delay: Dist::Uniform {
                    min: up,
                    max: up * 1.5,
                },
                scale_down_delay: Dist::Uniform {
                    min: down,
                    max: down + 1.0,
                },
                scale_api_latency_s: lat,
                failure_rate_per_hour: fail,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn invariants(w in workload(), p in platform(), plan in prop::collection::vec(0u32..14, 1..40), seed in 0u64..1000) {
        let opts = SimOptions { max_drain_s: 120.0, ..SimOptions::default() };
        let m = simulate_workload(&w, &p, seed, &mut Script(plan.clone(), 0), &opts).unwrap();
        // Tasks are conserved.
        prop_assert_eq!(m.tasks, w.tasks.len() as u64);
        prop_assert_eq!(m.completed + m.unfinished, m.tasks);
        prop_assert!(m.on_time <= m.completed);
        // QoS in [0, 1].
        prop_assert!((0.0..=1.0).contains(&m.qos));
        // Time never decreases (the engine also debug-asserts it per event).
        prop_assert!(m.timeline.windows(2).all(|x| x[0].t_s < x[1].t_s));
        prop_assert!(m.timeline.last().is_none_or(|t| t.t_s <= m.end_s));
        prop_assert!(m.end_s >= w.duration_s);
        // Replicas never go below the floor, so neither does their integral.
        prop_assert!(m.replica_seconds + 1e-9 >= f64::from(p.min_replicas) * m.end_s);
        // Same seed, same run, bit for bit.
        let again = simulate_workload(&w, &p, seed, &mut Script(plan, 0), &opts).unwrap();
        prop_assert_eq!(&m, &again);
        // No policy beats the oracle's bound at the QoS it reached.
        let lb = lower_bound(&w, &p, m.qos);
        prop_assert!(lb.replica_seconds <= m.replica_seconds + 1e-6,
            "bound {} > run {} at qos {}", lb.replica_seconds, m.replica_seconds, m.qos);
    }
}
