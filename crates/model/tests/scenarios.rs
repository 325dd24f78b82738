//! Scenario generation: the reference workload's statistics, the arrival
//! processes, YAML round trips, the example files and bad input.

use farm_model::scenario::{Arrivals, DeadlineRule, Dist, Scenario, ScenarioError};

fn paper() -> Scenario {
    Scenario::builtin("paper-4phase").unwrap()
}

/// Counts of arrivals in consecutive windows of `width` seconds.
fn window_counts(times: &[f64], width: f64, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n];
    for &t in times {
        let k = (t / width) as usize;
        if k < n {
            c[k] += 1.0;
        }
    }
    c
}

#[test]
fn paper_phase_counts_average_90_450_300_300() {
    let s = paper();
    // Expected counts from the integrated rate are exact: 5/s x 60 s x level.
    let expected = [90.0, 450.0, 300.0, 300.0];
    for (i, e) in expected.iter().enumerate() {
        let t0 = 60.0 * i as f64;
        assert!((s.arrivals.expected_count(t0, t0 + 60.0) - e).abs() < 1e-9);
    }
    let seeds = 400;
    let mut sums = [0.0; 4];
    for seed in 0..seeds {
        let w = s.generate(seed);
        let c = window_counts(
            &w.tasks.iter().map(|t| t.arrival_s).collect::<Vec<_>>(),
            60.0,
            4,
        );
        for i in 0..4 {
            sums[i] += c[i];
        }
    }
    for i in 0..4 {
        let mean = sums[i] / seeds as f64;
        // Standard error of the mean is sqrt(e / 400) <= 1.1 tasks; 3 %
        // is more than 5 standard errors for every phase.
        assert!(
            (mean - expected[i]).abs() <= 0.03 * expected[i],
            "phase {i}: mean {mean}"
        );
    }
}

/// Regularised lower incomplete gamma P(k, x/theta) for integer shape k.
fn gamma_cdf_int(k: u32, theta: f64, x: f64) -> f64 {
    let y = x / theta;
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 1..k {
        term *= y / f64::from(n);
        sum += term;
    }
    1.0 - (-y).exp() * sum
}

#[test]
fn paper_service_times_match_the_clipped_gamma() {
    let s = paper();
    let (k, theta, a, b) = (4u32, 0.375, 0.0465, 2.8704);
    // E[clip(X, a, b)] = a F4(a) + k theta (F5(b) - F5(a)) + b (1 - F4(b)),
    // using x f_k(x) = k theta f_{k+1}(x) for the Gamma density.
    let f4 = |x| gamma_cdf_int(k, theta, x);
    let f5 = |x| gamma_cdf_int(k + 1, theta, x);
    let mean = a * f4(a) + f64::from(k) * theta * (f5(b) - f5(a)) + b * (1.0 - f4(b));
    let at_cap = 1.0 - f4(b);
    // The published figures: mean ~1.47 s, ~5 % at the cap.
    assert!((mean - 1.47).abs() < 0.01, "analytic mean {mean}");
    assert!(
        (at_cap - 0.053).abs() < 0.002,
        "analytic cap share {at_cap}"
    );

    let mut n = 0usize;
    let (mut sum, mut capped) = (0.0, 0usize);
    for seed in 0..200 {
        for t in s.generate(seed).tasks {
            n += 1;
            sum += t.service_s;
            if t.service_s >= b {
                capped += 1;
            }
        }
    }
    let sample_mean = sum / n as f64;
    let share = capped as f64 / n as f64;
    // n is about 228,000; SE of the mean ~0.0013 s, of the share ~0.0005.
    assert!(
        (sample_mean - mean).abs() < 0.007,
        "sample mean {sample_mean} vs {mean}"
    );
    assert!(
        (share - at_cap).abs() < 0.003,
        "cap share {share} vs {at_cap}"
    );
}

#[test]
fn paper_oscillations_are_realised() {
    let s = paper();
    // Phase 3 (slow sine, period 60 s) in 10 s windows and phase 4 (fast
    // sine, period 15 s) in 3.75 s windows (quarter periods).
    for (start, width, n) in [(120.0, 10.0, 6usize), (180.0, 3.75, 16usize)] {
        let expected: Vec<f64> = (0..n)
            .map(|k| {
                s.arrivals
                    .expected_count(start + width * k as f64, start + width * (k + 1) as f64)
            })
            .collect();
        let hi = expected.iter().copied().fold(0.0, f64::max);
        let lo = expected.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(hi / lo > 1.5, "expected counts barely vary: {expected:?}");
        let seeds = 300;
        let mut avg = vec![0.0; n];
        for seed in 0..seeds {
            let times: Vec<f64> = s
                .generate(seed)
                .tasks
                .iter()
                .map(|t| t.arrival_s - start)
                .filter(|t| *t >= 0.0)
                .collect();
            for (k, c) in window_counts(&times, width, n).iter().enumerate() {
                avg[k] += c / seeds as f64;
            }
        }
        for k in 0..n {
            // SE <= sqrt(65 / 300) ~ 0.47; allow 5 % + 1.5 tasks.
            assert!(
                (avg[k] - expected[k]).abs() < 0.05 * expected[k] + 1.5,
                "window {k} from {start}: realised {} vs expected {}",
                avg[k],
                expected[k]
            );
        }
        // And a single run oscillates too: its busiest window clearly beats its quietest.
        let one = window_counts(
            &s.generate(7)
                .tasks
                .iter()
                .map(|t| t.arrival_s - start)
                .filter(|t| *t >= 0.0)
                .collect::<Vec<_>>(),
            width,
            n,
        );
        let (mx, mn) = (
            one.iter().copied().fold(0.0, f64::max),
            one.iter().copied().fold(f64::INFINITY, f64::min),
        );
        assert!(mx > mn + 5.0, "{one:?}");
    }
}

#[test]
fn per_second_counts_are_poisson() {
    // A flat 5/s: counts per 1 s window have mean 5 and variance 5.
    let s = Scenario::from_yaml(
        "name: flat\narrivals: {kind: phases, base_rate: 5, phases: [{shape: constant, duration_s: 1000, level: 1}]}\n\
         service: {dist: {kind: constant, value: 1}}\ndeadline: {kind: fixed, seconds: 2}\n\
         platform: {control_interval_s: 8, episode_steps: 10, min_replicas: 1, max_replicas: 4, initial_replicas: 1,\n\
         startup_delay: {kind: constant, value: 5}, scale_down_delay: {kind: constant, value: 2}}\n",
    )
    .unwrap();
    let times: Vec<f64> = s.generate(3).tasks.iter().map(|t| t.arrival_s).collect();
    let c = window_counts(&times, 1.0, 1000);
    let mean = c.iter().sum::<f64>() / 1000.0;
    let var = c.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 999.0;
    assert!((mean - 5.0).abs() < 0.3, "{mean}");
    assert!((var / mean - 1.0).abs() < 0.2, "dispersion {}", var / mean);
    // Gaps inside windows are exponential: the share of gaps below the mean
    // gap 0.2 s is 1 - e^-1 = 0.632.
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let short = gaps.iter().filter(|g| **g < 0.2).count() as f64 / gaps.len() as f64;
    assert!((short - 0.632).abs() < 0.03, "{short}");
}

#[test]
fn deterministic_process_spreads_evenly() {
    let mut s = paper();
    if let Arrivals::Phases { process, .. } = &mut s.arrivals {
        *process = farm_model::scenario::Process::Deterministic;
    }
    let arrivals = |seed| {
        s.generate(seed)
            .tasks
            .iter()
            .map(|t| t.arrival_s)
            .collect::<Vec<_>>()
    };
    let times = arrivals(1);
    assert!(
        times == arrivals(99),
        "deterministic arrivals must not depend on the seed"
    );
    assert_eq!(
        window_counts(&times, 60.0, 4),
        vec![90.0, 450.0, 300.0, 300.0]
    );
    // Phase 1: a task every 1/1.5 s, the first at 0.5 / 1.5 s.
    assert!((times[0] - 1.0 / 3.0).abs() < 1e-9);
    assert!((times[1] - times[0] - 2.0 / 3.0).abs() < 1e-9);
}

#[test]
fn mmpp_is_bursty_with_the_stationary_mean() {
    let s = Scenario::builtin("bursty").unwrap();
    // Stationary rate (3 x 40 + 14 x 12) / 52 = 5.538/s.
    let per_run = s.arrivals.expected_count(0.0, 300.0);
    assert!((per_run - 300.0 * 288.0 / 52.0).abs() < 1e-9);
    let seeds = 300;
    let mut total = 0.0;
    let mut dispersion = 0.0;
    for seed in 0..seeds {
        let times: Vec<f64> = s.generate(seed).tasks.iter().map(|t| t.arrival_s).collect();
        total += times.len() as f64;
        let c = window_counts(&times, 10.0, 30);
        let m = c.iter().sum::<f64>() / 30.0;
        let v = c.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 29.0;
        dispersion += v / m.max(1e-9) / seeds as f64;
    }
    let mean = total / seeds as f64;
    // Starting in the low state biases a 300 s run slightly low; 8 % band.
    assert!(
        (mean - per_run).abs() < 0.08 * per_run,
        "{mean} vs {per_run}"
    );
    assert!(
        dispersion > 3.0,
        "10 s counts should be over-dispersed, got {dispersion}"
    );
}

#[test]
fn trace_csv_parses_and_generates_exact_counts() {
    let a = Arrivals::trace_from_csv("second,count\n0,3\n1,0\n2,5\n").unwrap();
    assert_eq!(
        a,
        Arrivals::Trace {
            counts: vec![3, 0, 5]
        }
    );
    assert_eq!(
        Arrivals::trace_from_csv("# comment\n4\n\n2\n").unwrap(),
        Arrivals::Trace { counts: vec![4, 2] }
    );
    let err = Arrivals::trace_from_csv("0,3\n2,5\n").unwrap_err();
    assert!(
        matches!(&err, ScenarioError::Invalid { field, .. } if field == "trace line 2"),
        "{err}"
    );
    let err = Arrivals::trace_from_csv("0,3\n1,-5\n").unwrap_err();
    assert!(
        matches!(&err, ScenarioError::Invalid { field, .. } if field == "trace line 2"),
        "{err}"
    );
    assert!(matches!(
        Arrivals::trace_from_csv("count\n"),
        Err(ScenarioError::Invalid { .. })
    ));

    let mut s = paper();
    s.arrivals = a;
    let w = s.generate(5);
    assert_eq!(w.duration_s, 3.0);
    let times: Vec<f64> = w.tasks.iter().map(|t| t.arrival_s).collect();
    assert_eq!(window_counts(&times, 1.0, 3), vec![3.0, 0.0, 5.0]);
}

#[test]
fn builtins_round_trip_through_yaml() {
    assert_eq!(Scenario::builtin_names()[0], "paper-4phase");
    for name in Scenario::builtin_names() {
        let s = Scenario::builtin(name).unwrap();
        assert_eq!(&s.name, name);
        s.validate().unwrap();
        assert_eq!(Scenario::from_yaml(&s.to_yaml()).unwrap(), s, "{name}");
    }
    assert!(matches!(Scenario::builtin("nope"), Err(ScenarioError::Unknown(n)) if n == "nope"));
}

#[test]
fn suite_loads_need_2_to_25_replicas() {
    for name in Scenario::builtin_names() {
        let s = Scenario::builtin(name).unwrap();
        let d = s.duration_s();
        assert!((120.0..=600.0).contains(&d), "{name}: {d} s");
        assert!(
            s.platform.episode_s() >= d,
            "{name}: episode shorter than the workload"
        );
        // Peak offered load over 10 s windows, with a sample service mean.
        let w = s.generate(1);
        let mean_s = w.tasks.iter().map(|t| t.service_s).sum::<f64>() / w.tasks.len() as f64;
        let mut peak: f64 = 0.0;
        let mut t = 0.0;
        while t < d {
            peak = peak.max(s.arrivals.expected_count(t, t + 10.0) / 10.0 * mean_s);
            t += 10.0;
        }
        assert!(
            (2.0..=25.0).contains(&peak),
            "{name}: peak load {peak} replicas"
        );
    }
}

/// The files in `scenarios/` are the built-ins' `to_yaml()`. Set
/// `FARM_UPDATE_SCENARIOS=1` to rewrite them after changing a built-in.
#[test]
fn scenario_files_match_the_builtins() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let update = std::env::var_os("FARM_UPDATE_SCENARIOS").is_some();
    for name in Scenario::builtin_names() {
        let path = dir.join(format!("{name}.yaml"));
        let yaml = Scenario::builtin(name).unwrap().to_yaml();
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &yaml).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (run with FARM_UPDATE_SCENARIOS=1)", path.display())
        });
        assert_eq!(text, yaml, "{} drifted from the built-in", path.display());
        assert_eq!(
            Scenario::from_yaml(&text).unwrap(),
            Scenario::builtin(name).unwrap()
        );
    }
}

// ---- bad input ----

fn field_of(text: &str) -> (String, ScenarioError) {
    let e = Scenario::from_yaml(text).unwrap_err();
    (e.field().unwrap_or("<none>").to_string(), e)
}

#[test]
fn bad_values_name_the_field() {
    let y = paper().to_yaml();
    let cases = [
        (
            y.replace("max_replicas: 32", "max_replicas: 0"),
            "platform.max_replicas",
        ),
        (
            y.replace("min_replicas: 1", "min_replicas: 4"),
            "platform.initial_replicas",
        ),
        (
            y.replace("period_s: 15.0", "period_s: 0.0"),
            "arrivals.phases[3].period_s",
        ),
        (
            y.replace("base_rate: 5.0", "base_rate: -5.0"),
            "arrivals.base_rate",
        ),
        (y.replace("cap_s: 30.0", "cap_s: 0.05"), "deadline.cap_s"),
        (
            y.replace("scale: 0.375", "scale: 0.0"),
            "service.dist.scale",
        ),
        (y.replace("max: 2.8704", "max: 0.01"), "service.clip.max"),
        (
            y.replace("max: 9.0", "max: 1.0"),
            "platform.startup_delay.max",
        ),
    ];
    for (text, field) in cases {
        let (f, e) = field_of(&text);
        assert!(matches!(e, ScenarioError::Invalid { .. }), "{e}");
        assert_eq!(f, field, "{e}");
    }
    // The message says what was expected.
    let e = Scenario::from_yaml(
        &y.replace("max_replicas: 32", "max_replicas: 0")
            .replace("min_replicas: 1", "min_replicas: 0")
            .replace("initial_replicas: 1", "initial_replicas: 0"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "scenario field `platform.max_replicas`: must be >= 1"
    );
    let mut s = paper();
    s.platform.min_replicas = 4;
    s.platform.max_replicas = 2;
    let e = Scenario::from_yaml(&s.to_yaml()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "scenario field `platform.max_replicas`: must be >= min_replicas (4)"
    );
}

#[test]
fn bad_shapes_name_the_field() {
    let y = paper().to_yaml();
    let cases = [
        (
            y.replace("shape: sine", "shape: sinus"),
            "arrivals.phases[2].shape",
        ),
        (
            y.replace("period_s: 15.0", "periods: 15.0"),
            "arrivals.phases[3].periods",
        ),
        (y.replace("kind: gamma", "kind: gama"), "service.dist.kind"),
        (
            y.replace("base_rate: 5.0", "base_rate: fast"),
            "arrivals.base_rate",
        ),
        (
            y.replace("scale: 0.375", "scale: 0.375\n    extra: 1"),
            "service.dist.extra",
        ),
        (
            y.replace("min_replicas: 1", "min_replicas: -1"),
            "platform.min_replicas",
        ),
        (y.replace("seed: 0", "seed: 0\nfoo: 1"), "foo"),
        (
            y.replace("  episode_steps: 30\n", ""),
            "platform.episode_steps",
        ),
        (y.replace("kind: factor", "kind: relative"), "deadline.kind"),
        (y.replace("kind: phases", "kind: poisson"), "arrivals.kind"),
        (
            y.replace(
                "  kind: uniform\n    min: 5.0",
                "  kind: uniform\n    min: soon",
            ),
            "platform.startup_delay.min",
        ),
    ];
    for (text, field) in cases {
        let (f, e) = field_of(&text);
        assert!(matches!(e, ScenarioError::Parse { .. }), "{field}: {e}");
        assert_eq!(f, field, "{e}");
    }
    assert!(matches!(
        Scenario::from_yaml("name: [unclosed"),
        Err(ScenarioError::Yaml(_))
    ));
    assert!(matches!(
        Scenario::from_yaml("just a string"),
        Err(ScenarioError::Parse { .. })
    ));
}

#[test]
fn dist_means_and_samples_agree() {
    use rand::SeedableRng;
    let dists = [
        Dist::Constant(2.0),
        Dist::Uniform { min: 5.0, max: 9.0 },
        Dist::Exponential { mean: 1.5 },
        Dist::Gamma {
            shape: 4.0,
            scale: 0.375,
        },
        Dist::LogNormal {
            mu: -0.5,
            sigma: 0.5,
        },
        Dist::Empirical {
            values: vec![1.0, 2.0, 6.0],
        },
    ];
    let mut rng = rand_pcg::Pcg64::seed_from_u64(11);
    for d in dists {
        let n = 100_000;
        let m: f64 = (0..n).map(|_| d.sample(&mut rng)).sum::<f64>() / n as f64;
        let sd = (d.cv2() * d.mean() * d.mean()).sqrt();
        assert!(
            (m - d.mean()).abs() <= 5.0 * sd / (n as f64).sqrt() + 1e-12,
            "{d:?}: {m}"
        );
    }
    assert_eq!(
        DeadlineRule::Factor {
            factor: 2.0,
            floor_s: 0.1,
            cap_s: 30.0
        }
        .deadline_for(0.02),
        0.1
    );
}
