//! The built-in scenarios: the reference workload and the public suite.
//!
//! All suite scenarios keep the reference's service model (clipped
//! Gamma(4, 0.375), mean ~1.47 s) unless they exist to vary it, an 8 s
//! control interval, 1..32 replicas, and loads needing roughly 2-25 replicas,
//! over a few minutes of simulated time.
//!
//! Initial pools: `paper-4phase` starts from 1 replica, as the reference's
//! episodes do (its first phase needs about 2.2). The suite scenarios start
//! with a pool sized for their initial load, so they measure how a policy
//! follows change rather than one cold warm-up.

use super::{Arrivals, Clip, DeadlineRule, Dist, Phase, Platform, Process, Scenario, ServiceTime};

/// Built-in names, the reference first.
pub(super) const NAMES: &[&str] = &[
    "paper-4phase",
    "steady",
    "ramp",
    "spike",
    "diurnal",
    "bursty",
    "heavy-tail",
    "cold-start",
    "ce-capped",
];

pub(super) fn by_name(name: &str) -> Option<Scenario> {
    Some(match name {
        "paper-4phase" => paper_4phase(),
        "steady" => steady(),
        "ramp" => ramp(),
        "spike" => spike(),
        "diurnal" => diurnal(),
        "bursty" => bursty(),
        "heavy-tail" => heavy_tail(),
        "cold-start" => cold_start(),
        "ce-capped" => ce_capped(),
        _ => return None,
    })
}

/// The reference service model: Gamma(4, 0.375) clipped to [0.0465, 2.8704] s.
fn paper_service() -> ServiceTime {
    ServiceTime {
        dist: Dist::Gamma {
            shape: 4.0,
            scale: 0.375,
        },
        clip: Some(Clip {
            min: 0.0465,
            max: 2.8704,
        }),
    }
}

/// The reference deadline: clamp(2 * service, 0.1 s, 30 s).
fn paper_deadline() -> DeadlineRule {
    DeadlineRule::Factor {
        factor: 2.0,
        floor_s: 0.1,
        cap_s: 30.0,
    }
}

/// The reference platform for a workload of `duration_s` seconds: 8 s steps
/// (enough to cover the workload), 1..32 replicas starting from 1 (the
/// paper's episodes begin from the minimum pool), 5-9 s start-up, 2-3 s
/// scale-down.
fn paper_platform(duration_s: f64) -> Platform {
    let interval = 8.0;
    Platform {
        control_interval_s: interval,
        episode_steps: (duration_s / interval).ceil() as u32,
        min_replicas: 1,
        max_replicas: 32,
        initial_replicas: 1,
        per_function_cap: None,
        startup_delay: Dist::Uniform { min: 5.0, max: 9.0 },
        scale_down_delay: Dist::Uniform { min: 2.0, max: 3.0 },
        scale_api_latency_s: 0.0,
        failure_rate_per_hour: 0.0,
    }
}

/// The reference platform starting from `initial` ready replicas.
fn platform_from(duration_s: f64, initial: u32) -> Platform {
    Platform {
        initial_replicas: initial,
        ..paper_platform(duration_s)
    }
}

fn phases(base_rate: f64, phases: Vec<Phase>) -> Arrivals {
    Arrivals::Phases {
        process: Process::Poisson,
        base_rate,
        phases,
    }
}

fn constant(duration_s: f64, level: f64) -> Phase {
    Phase::Constant { duration_s, level }
}

fn paper_4phase() -> Scenario {
    Scenario {
        name: "paper-4phase".into(),
        description: "Reference workload (Li et al. 2026): 60 s each at 0.3x, 1.5x, a slow \
                      0.5-1.5x sine (one cycle) and a fast 0.3-1.7x sine (four cycles) of 5 \
                      tasks/s; expected 90/450/300/300 tasks."
            .into(),
        seed: 0,
        arrivals: phases(
            5.0,
            vec![
                constant(60.0, 0.3),
                constant(60.0, 1.5),
                Phase::Sine {
                    duration_s: 60.0,
                    min: 0.5,
                    max: 1.5,
                    period_s: 60.0,
                    offset: 0.0,
                },
                Phase::Sine {
                    duration_s: 60.0,
                    min: 0.3,
                    max: 1.7,
                    period_s: 15.0,
                    offset: 0.0,
                },
            ],
        ),
        service: paper_service(),
        deadline: paper_deadline(),
        platform: paper_platform(240.0),
    }
}

fn steady() -> Scenario {
    Scenario {
        name: "steady".into(),
        description: "Constant Poisson load of 6 tasks/s for 240 s (about 9 busy replicas).".into(),
        seed: 0,
        arrivals: phases(6.0, vec![constant(240.0, 1.0)]),
        service: paper_service(),
        deadline: paper_deadline(),
        platform: platform_from(240.0, 9),
    }
}

fn ramp() -> Scenario {
    Scenario {
        name: "ramp".into(),
        description: "Linear ramp from 1 to 14 tasks/s over 300 s (2 to 21 replicas), with a \
                      fixed 5 s deadline."
            .into(),
        seed: 0,
        arrivals: phases(
            5.0,
            vec![Phase::Ramp {
                duration_s: 300.0,
                from: 0.2,
                to: 2.8,
            }],
        ),
        service: paper_service(),
        deadline: DeadlineRule::Fixed { seconds: 5.0 },
        platform: platform_from(300.0, 2),
    }
}

fn spike() -> Scenario {
    Scenario {
        name: "spike".into(),
        description: "Flash crowd: 4 tasks/s with a 30 s spike to 16 tasks/s at t = 90 s \
                      (6 to 24 replicas)."
            .into(),
        seed: 0,
        arrivals: phases(
            4.0,
            vec![Phase::Spike {
                duration_s: 240.0,
                level: 1.0,
                peak: 4.0,
                start_s: 90.0,
                length_s: 30.0,
            }],
        ),
        service: paper_service(),
        deadline: paper_deadline(),
        platform: platform_from(240.0, 6),
    }
}

fn diurnal() -> Scenario {
    Scenario {
        name: "diurnal".into(),
        description: "A day compressed into 360 s: a sine from 3 to 10.2 tasks/s starting at \
                      the trough, over a constant base as in the Azure traces."
            .into(),
        seed: 0,
        arrivals: phases(
            6.0,
            vec![Phase::Sine {
                duration_s: 360.0,
                min: 0.5,
                max: 1.7,
                period_s: 360.0,
                offset: 0.75,
            }],
        ),
        service: paper_service(),
        deadline: paper_deadline(),
        platform: platform_from(360.0, 5),
    }
}

fn bursty() -> Scenario {
    Scenario {
        name: "bursty".into(),
        description: "Two-state MMPP: 3 tasks/s (mean 40 s) alternating with bursts of 14 \
                      tasks/s (mean 12 s), 300 s."
            .into(),
        seed: 0,
        arrivals: Arrivals::Mmpp {
            rates: [3.0, 14.0],
            mean_sojourn_s: [40.0, 12.0],
            duration_s: 300.0,
        },
        service: paper_service(),
        deadline: paper_deadline(),
        platform: platform_from(300.0, 5),
    }
}

fn heavy_tail() -> Scenario {
    // mu = ln(1.5) - sigma^2 / 2 gives an unclipped mean of 1.5 s.
    let sigma: f64 = 1.5;
    let mu = 1.5f64.ln() - sigma * sigma / 2.0;
    Scenario {
        name: "heavy-tail".into(),
        description: "5 tasks/s with log-normal service times (sigma 1.5, mean 1.5 s, clipped \
                      to [0.01, 60] s): most tasks short, a few very long."
            .into(),
        seed: 0,
        arrivals: phases(5.0, vec![constant(240.0, 1.0)]),
        service: ServiceTime {
            dist: Dist::LogNormal { mu, sigma },
            clip: Some(Clip {
                min: 0.01,
                max: 60.0,
            }),
        },
        deadline: paper_deadline(),
        platform: platform_from(240.0, 8),
    }
}

fn cold_start() -> Scenario {
    let mut platform = platform_from(240.0, 3);
    platform.startup_delay = Dist::Uniform {
        min: 28.0,
        max: 32.0,
    };
    Scenario {
        name: "cold-start".into(),
        description: "Slow cold starts (28-32 s): 2 tasks/s, a jump to 8 tasks/s for 90 s, \
                      then 3 tasks/s."
            .into(),
        seed: 0,
        arrivals: phases(
            5.0,
            vec![
                constant(60.0, 0.4),
                constant(90.0, 1.6),
                constant(90.0, 0.6),
            ],
        ),
        service: paper_service(),
        deadline: paper_deadline(),
        platform,
    }
}

fn ce_capped() -> Scenario {
    let mut platform = platform_from(240.0, 5);
    platform.per_function_cap = Some(5);
    Scenario {
        name: "ce-capped".into(),
        description: "OpenFaaS CE platform (5 replicas per function): 3 tasks/s ramping to \
                      8 tasks/s (12 replicas), so the farm must shard."
            .into(),
        seed: 0,
        arrivals: phases(
            5.0,
            vec![
                constant(60.0, 0.6),
                Phase::Ramp {
                    duration_s: 60.0,
                    from: 0.6,
                    to: 1.6,
                },
                constant(120.0, 1.6),
            ],
        ),
        service: paper_service(),
        deadline: paper_deadline(),
        platform,
    }
}
