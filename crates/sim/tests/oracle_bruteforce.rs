//! The oracle against brute force on tiny cases: every per-tick plan with
//! min..=3 replicas is simulated; the lower bound must not exceed the cheapest
//! plan meeting the target, and the oracle's own plan (one of those plans)
//! must not be cheaper than it.

mod common;

use common::{platform, workload};
use farm_sim::oracle::{PlanPolicy, lower_bound, plan};
use farm_sim::{SimOptions, simulate_workload};
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone)]
struct Case {
    tasks: Vec<(f64, f64, f64)>,
    startup: f64,
    down: f64,
    min: u32,
}

fn case() -> impl Strategy<Value = Case> {
    let task = (0.0..4.0f64, 0.2..2.5f64, 1.0..3.0f64).prop_map(|(a, s, f)| (a, s, s * f));
    (
        prop::collection::vec(task, 1..=6),
        prop::sample::select(vec![0.5, 1.0, 2.0]),
        prop::sample::select(vec![0.0, 0.5]),
        0u32..=1,
    )
        .prop_map(|(mut tasks, startup, down, min)| {
            tasks.sort_by(|a, b| a.0.total_cmp(&b.0));
            Case {
                tasks,
                startup,
                down,
                min,
            }
        })
}

/// Cheapest replica-seconds over all plans of `len` ticks meeting `target`.
/// Along the way, checks the bound against every plan at the QoS that plan
/// reached (the bound must hold for any run, not only optimal ones).
fn brute_force(c: &Case, len: usize, target: f64) -> Option<f64> {
    let w = workload(&c.tasks, 4.0);
    let p = platform(2.0, c.min, 3, c.min.max(1), c.startup, c.down);
    let opts = SimOptions {
        alerts: false,
        timeline: false,
        ..SimOptions::default()
    };
    let mut best: Option<f64> = None;
    let mut bounds: HashMap<u64, f64> = HashMap::new();
    // Every plan with values in [min, 3].
    let base = (4 - c.min) as usize;
    let combos = base.pow(len as u32);
    for code in 0..combos {
        let mut x = code;
        let plan: Vec<u32> = (0..len)
            .map(|_| {
                let v = (x % base) as u32 + c.min;
                x /= base;
                v
            })
            .collect();
        let m =
            simulate_workload(&w, &p, 0, &mut PlanPolicy::new(plan, 2.0, c.min), &opts).unwrap();
        let lb = *bounds
            .entry(m.qos.to_bits())
            .or_insert_with(|| lower_bound(&w, &p, m.qos).replica_seconds);
        assert!(
            lb <= m.replica_seconds + 1e-9,
            "bound {lb} > run {} at qos {} for {c:?}",
            m.replica_seconds,
            m.qos
        );
        if m.qos + 1e-12 >= target {
            best = Some(best.map_or(m.replica_seconds, |b: f64| b.min(m.replica_seconds)));
        }
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn bound_below_brute_force_below_plan(c in case(), target in prop::sample::select(vec![1.0, 0.8, 0.5])) {
        let w = workload(&c.tasks, 4.0);
        let p = platform(2.0, c.min, 3, c.min.max(1), c.startup, c.down);
        let lb = lower_bound(&w, &p, target);
        let pl = plan(&w, &p, 0, target, &SimOptions::default()).unwrap();
        prop_assert!(pl.plan.len() <= 7, "plan too long for brute force: {}", pl.plan.len());
        match brute_force(&c, pl.plan.len(), target) {
            Some(bf) => {
                prop_assert!(lb.replica_seconds <= bf + 1e-9, "bound {} > brute force {}", lb.replica_seconds, bf);
                if pl.meets_target {
                    prop_assert!(pl.metrics.replica_seconds + 1e-9 >= bf, "plan {} < brute force {}", pl.metrics.replica_seconds, bf);
                }
            }
            None => prop_assert!(!pl.meets_target),
        }
    }
}

/// How tight the bound is on tiny cases (printed; asserted only loosely).
#[test]
fn bound_tightness_on_fixed_cases() {
    let cases = [
        Case {
            tasks: vec![
                (0.5, 2.0, 4.0),
                (3.5, 1.0, 2.0),
                (3.6, 1.0, 2.0),
                (3.7, 1.0, 2.0),
            ],
            startup: 1.0,
            down: 0.5,
            min: 1,
        },
        Case {
            tasks: vec![(3.0, 2.0, 3.0), (3.2, 2.0, 3.0), (3.5, 0.5, 1.0)],
            startup: 2.0,
            down: 0.0,
            min: 1,
        },
        Case {
            tasks: vec![(2.5, 1.0, 1.2), (2.6, 1.0, 1.2), (2.7, 1.0, 1.2)],
            startup: 0.5,
            down: 0.5,
            min: 1,
        },
    ];
    let mut ratios = Vec::new();
    for c in &cases {
        let w = workload(&c.tasks, 4.0);
        let p = platform(2.0, 1, 3, 1, c.startup, c.down);
        let lb = lower_bound(&w, &p, 1.0);
        let pl = plan(&w, &p, 0, 1.0, &SimOptions::default()).unwrap();
        let bf = brute_force(c, pl.plan.len(), 1.0).expect("feasible case");
        println!(
            "bound {:.3}  brute force {:.3}  plan {:.3}",
            lb.replica_seconds, bf, pl.metrics.replica_seconds
        );
        assert!(lb.replica_seconds <= bf + 1e-9);
        ratios.push(lb.replica_seconds / bf);
    }
    assert!(ratios.iter().all(|r| *r > 0.5), "{ratios:?}");
}
