//! Property tests of workload generation: determinism per seed, sorted
//! arrivals inside the window, service times inside the clip, deadlines
//! inside the rule's bounds.

use farm_model::scenario::{
    Arrivals, Clip, DeadlineRule, Dist, Phase, Process, Scenario, ServiceTime,
};
use proptest::prelude::*;

fn phase() -> impl Strategy<Value = Phase> {
    let d = 1.0..40.0f64;
    prop_oneof![
        (d.clone(), 0.0..3.0f64)
            .prop_map(|(duration_s, level)| Phase::Constant { duration_s, level }),
        (d.clone(), 0.0..3.0f64, 0.0..3.0f64).prop_map(|(duration_s, from, to)| Phase::Ramp {
            duration_s,
            from,
            to
        }),
        (
            d.clone(),
            0.0..1.5f64,
            0.0..1.5f64,
            1.0..30.0f64,
            0.0..0.99f64
        )
            .prop_map(|(duration_s, a, w, period_s, offset)| {
                Phase::Sine {
                    duration_s,
                    min: a,
                    max: a + w,
                    period_s,
                    offset,
                }
            }),
        (
            d.clone(),
            0.0..3.0f64,
            0.0..3.0f64,
            1.0..30.0f64,
            0.05..0.95f64
        )
            .prop_map(|(duration_s, low, high, period_s, duty)| Phase::Square {
                duration_s,
                low,
                high,
                period_s,
                duty
            }),
        (d, 0.0..2.0f64, 0.0..6.0f64, 0.0..30.0f64, 0.5..10.0f64).prop_map(
            |(duration_s, level, peak, start_s, length_s)| Phase::Spike {
                duration_s,
                level,
                peak,
                start_s,
                length_s
            }
        ),
    ]
}

fn arrivals() -> impl Strategy<Value = Arrivals> {
    prop_oneof![
        (
            prop::bool::ANY,
            0.0..8.0f64,
            prop::collection::vec(phase(), 1..5)
        )
            .prop_map(|(det, base_rate, phases)| {
                Arrivals::Phases {
                    process: if det {
                        Process::Deterministic
                    } else {
                        Process::Poisson
                    },
                    base_rate,
                    phases,
                }
            }),
        (
            0.0..5.0f64,
            0.0..15.0f64,
            1.0..30.0f64,
            1.0..30.0f64,
            10.0..120.0f64
        )
            .prop_map(|(r0, r1, s0, s1, d)| {
                Arrivals::Mmpp {
                    rates: [r0, r1],
                    mean_sojourn_s: [s0, s1],
                    duration_s: d,
                }
            }),
        prop::collection::vec(0u32..12, 1..60).prop_map(|counts| Arrivals::Trace { counts }),
    ]
}

fn service() -> impl Strategy<Value = ServiceTime> {
    let dist = prop_oneof![
        (0.01..3.0f64).prop_map(Dist::Constant),
        (0.1..3.0f64).prop_map(|mean| Dist::Exponential { mean }),
        (0.5..6.0f64, 0.05..1.0f64).prop_map(|(shape, scale)| Dist::Gamma { shape, scale }),
        (-2.0..1.0f64, 0.0..2.0f64).prop_map(|(mu, sigma)| Dist::LogNormal { mu, sigma }),
        prop::collection::vec(0.01..5.0f64, 1..8).prop_map(|values| Dist::Empirical { values }),
    ];
    (dist, prop::option::of((0.0..0.5f64, 0.5..5.0f64))).prop_map(|(dist, clip)| ServiceTime {
        dist,
        clip: clip.map(|(min, max)| Clip { min, max }),
    })
}

fn deadline() -> impl Strategy<Value = DeadlineRule> {
    prop_oneof![
        (1.0..4.0f64, 0.05..1.0f64, 1.0..40.0f64).prop_map(|(factor, floor_s, cap_s)| {
            DeadlineRule::Factor {
                factor,
                floor_s,
                cap_s,
            }
        }),
        (0.1..10.0f64).prop_map(|seconds| DeadlineRule::Fixed { seconds }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (arrivals(), service(), deadline()).prop_map(|(arrivals, service, deadline)| {
        let mut s = Scenario::builtin("paper-4phase").unwrap();
        s.name = "prop".into();
        s.arrivals = arrivals;
        s.service = service;
        s.deadline = deadline;
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn generated_workloads_are_well_formed(s in scenario(), seed in any::<u64>()) {
        prop_assert!(s.validate().is_ok());
        let w = s.generate(seed);
        // Deterministic, bit for bit.
        prop_assert!(w == s.generate(seed));
        prop_assert_eq!(w.duration_s, s.duration_s());
        let mut prev = 0.0;
        for t in &w.tasks {
            prop_assert!(t.arrival_s >= prev, "unsorted: {} after {}", t.arrival_s, prev);
            prop_assert!(t.arrival_s >= 0.0 && t.arrival_s < w.duration_s, "{} outside [0, {})", t.arrival_s, w.duration_s);
            prev = t.arrival_s;
            prop_assert!(t.service_s.is_finite() && t.service_s >= 0.0);
            if let Some(c) = s.service.clip {
                prop_assert!(t.service_s >= c.min && t.service_s <= c.max);
            }
            match s.deadline {
                DeadlineRule::Factor { floor_s, cap_s, .. } => {
                    prop_assert!(t.deadline_s >= floor_s && t.deadline_s <= cap_s)
                }
                DeadlineRule::Fixed { seconds } => prop_assert_eq!(t.deadline_s, seconds),
            }
        }
        // The YAML form describes the same scenario.
        prop_assert_eq!(Scenario::from_yaml(&s.to_yaml()).unwrap(), s);
    }

    #[test]
    fn builtins_are_deterministic_per_seed(i in 0usize..9, seed in any::<u64>()) {
        let s = Scenario::builtin(Scenario::builtin_names()[i]).unwrap();
        let a = s.generate(seed);
        prop_assert!(a == s.generate(seed));
        let w = &a.tasks;
        prop_assert!(w.windows(2).all(|p| p[0].arrival_s <= p[1].arrival_s));
    }
}
