//! Golden tests: every built-in policy's decisions on hand-made signal
//! sequences equal values computed by hand from its formula (the arithmetic
//! is in the comments).

use farm_model::scenario::{Platform, Scenario};
use farm_model::signals::Signals;
use farm_policy::{Policy, builtin};

fn platform() -> Platform {
    // 1..32 replicas, 8 s interval, start-up Uniform(5, 9) (mean 7 s).
    Scenario::builtin("paper-4phase").unwrap().platform
}

fn policy(name: &str) -> Box<dyn Policy> {
    builtin(name, &platform()).unwrap()
}

/// An 8 s window with `desired` replicas, all ready, nothing else.
fn sig(desired: f64) -> Signals {
    Signals {
        interval_s: 8.0,
        replicas_desired: desired,
        replicas_ready: desired,
        min_replicas: 1.0,
        max_replicas: 32.0,
        ..Default::default()
    }
}

#[test]
fn reactive_average() {
    let mut p = policy("reactive-average");
    // lambda = 60 / 8 = 7.5, S = 2.0, H = max(8, 2, 1) = 8, q = 16, workers 4,
    // in flight 4: target = 7.5 * 2 + 16 / 8 * 2 = 19;
    // busy = min(4, 4) / 8 * 2 * 0.5 = 0.5; delta = 19 - (4 - 0.5) = 15.5 -> +1.
    let s = Signals {
        arrivals: 60.0,
        backlog: 16.0,
        in_flight: 4.0,
        latency_mean_s: Some(2.0),
        latency_max_s: Some(5.0),
        ..sig(4.0)
    };
    let d = p.decide(8.0, &s);
    assert_eq!((d.desired, d.action), (5, Some(2)));
    // lambda = 3, S = 1, q = 0, workers 3, in flight 2: target 3;
    // busy = 2 / 8 * 1 * 0.5 = 0.125; delta = 3 - 2.875 = 0.125 -> hold.
    let s = Signals {
        arrivals: 24.0,
        in_flight: 2.0,
        latency_mean_s: Some(1.0),
        ..sig(3.0)
    };
    assert_eq!(p.decide(16.0, &s).desired, 3);
    // lambda = 0.5, S = 1, workers 4, in flight 1: target 0.5;
    // busy = 1 / 8 * 0.5 = 0.0625; delta = 0.5 - 3.9375 = -3.4375 -> -1.
    let s = Signals {
        arrivals: 4.0,
        in_flight: 1.0,
        latency_mean_s: Some(1.0),
        ..sig(4.0)
    };
    assert_eq!(
        p.decide(24.0, &s),
        farm_policy::Decision {
            desired: 3,
            action: Some(0)
        }
    );
    // Empty window: S = 0.1, target 0, delta = -1 -> -1, clamped at min 1.
    assert_eq!(p.decide(32.0, &sig(1.0)).desired, 1);
}

#[test]
fn reactive_maximum() {
    let mut p = policy("reactive-maximum");
    // S = max(5, 2, 0.1) = 5, H = 8: target = 7.5 * 5 + 16 / 8 * 5 = 47.5;
    // busy = 4 / 8 * 5 * 0.5 = 1.25; delta = 47.5 - 2.75 -> +1.
    let s = Signals {
        arrivals: 60.0,
        backlog: 16.0,
        in_flight: 4.0,
        latency_mean_s: Some(2.0),
        latency_max_s: Some(5.0),
        ..sig(4.0)
    };
    assert_eq!(p.decide(8.0, &s).desired, 5);
    // Where Average holds, Maximum may not: lambda = 3, mean 1, max 1.2:
    // S = 1.2, target = 3.6, busy = 2 / 8 * 1.2 * 0.5 = 0.15;
    // delta = 3.6 - (3 - 0.15) = 0.75 -> +1 (Average: 0.125 -> hold).
    let s = Signals {
        arrivals: 24.0,
        in_flight: 2.0,
        latency_mean_s: Some(1.0),
        latency_max_s: Some(1.2),
        ..sig(3.0)
    };
    assert_eq!(p.decide(16.0, &s).desired, 4);
    // S = max(H) case: max 10 s -> H = 10; lambda = 1, q = 10, workers 8:
    // target = 10 + 10 / 10 * 10 = 20 -> +1.
    let s = Signals {
        arrivals: 8.0,
        backlog: 10.0,
        latency_mean_s: Some(3.0),
        latency_max_s: Some(10.0),
        ..sig(8.0)
    };
    assert_eq!(p.decide(24.0, &s).desired, 9);
}

#[test]
fn openfaas_ce_alert_rule() {
    let mut p = policy("openfaas-ce");
    // step = ceil(min(32, 5) / 100 * 10) = ceil(0.5) = 1.
    let d = p.on_alert(5.0, true, &sig(3.0)).unwrap();
    assert_eq!(d.desired, 4);
    // Ticks do nothing in CE.
    let busy = Signals {
        arrivals: 80.0,
        ..sig(4.0)
    };
    assert_eq!(p.decide(8.0, &busy).desired, 4);
    // Resolved -> min replicas (1).
    assert_eq!(p.on_alert(20.0, false, &sig(7.0)).unwrap().desired, 1);
    // Never beyond max: 32 + 1 -> 32.
    assert_eq!(p.on_alert(30.0, true, &sig(32.0)).unwrap().desired, 32);

    // The tick-evaluated variant: 7.5/s > 5/s over an 8 s interval fires.
    let mut t = policy("openfaas-ce:tick");
    assert_eq!(
        t.decide(
            8.0,
            &Signals {
                arrivals: 60.0,
                ..sig(2.0)
            }
        )
        .desired,
        3
    );
    assert_eq!(
        t.decide(
            16.0,
            &Signals {
                arrivals: 60.0,
                ..sig(3.0)
            }
        )
        .desired,
        4
    );
    // 2/s: resolved -> min.
    assert_eq!(
        t.decide(
            24.0,
            &Signals {
                arrivals: 16.0,
                ..sig(4.0)
            }
        )
        .desired,
        1
    );
    // Still quiet: nothing to resolve, hold.
    assert_eq!(
        t.decide(
            32.0,
            &Signals {
                arrivals: 16.0,
                ..sig(2.0)
            }
        )
        .desired,
        2
    );
}

#[test]
fn hpa_utilisation_with_default_behaviour() {
    let mut p = policy("hpa");
    // t = 0: 4 ready, 4 busy: util 1.0, ratio 1 / 0.8 = 1.25 > 1.1;
    // ceil(1.25 * 4) = 5; up limit from 4: max(4 + 4, 4 * 2) = 8 -> 5.
    let s = Signals {
        replicas_busy: 4.0,
        ..sig(4.0)
    };
    assert_eq!(p.decide(0.0, &s).desired, 5);
    // t = 8: desired 5, 4 ready + 1 starting, 4 busy. ratio 1.25; with the
    // starting pod at 0 %: 4 / 5 / 0.8 = 1.0 <= 1.1 -> keep 5.
    let s = Signals {
        replicas_busy: 4.0,
        replicas_ready: 4.0,
        replicas_starting: 1.0,
        ..sig(5.0)
    };
    assert_eq!(p.decide(8.0, &s).desired, 5);
    // t = 16: 5 ready, 5 busy: ceil(1.25 * 5) = 7; the +1 at t = 0 is out of
    // the 15 s period, limit max(5 + 4, 10) -> 7.
    let s = Signals {
        replicas_busy: 5.0,
        ..sig(5.0)
    };
    assert_eq!(p.decide(16.0, &s).desired, 7);
    // t = 24: 7 ready, 2 busy: ratio 2 / 7 / 0.8 = 0.357, ceil(0.357 * 7) = 3,
    // but the 300 s stabilisation keeps the window's max recommendation, 7.
    let s = Signals {
        replicas_busy: 2.0,
        ..sig(7.0)
    };
    assert_eq!(p.decide(24.0, &s).desired, 7);
    // t = 320: the 7 from t = 16 left the window [20, 320]; recommendations
    // there are 3 (t = 24) and 3 -> 3 (down policy 100 % / 15 s: no limit).
    assert_eq!(p.decide(320.0, &s).desired, 3);
    // Within tolerance: 10 ready, 8.5 busy on average: 0.85 / 0.8 = 1.0625
    // <= 1.1 -> keep 10.
    let mut q = policy("hpa");
    assert_eq!(
        q.decide(
            0.0,
            &Signals {
                replicas_busy: 8.5,
                ..sig(10.0)
            }
        )
        .desired,
        10
    );
    // No ready pod: no metric, keep the count.
    let s = Signals {
        replicas_ready: 0.0,
        replicas_starting: 2.0,
        backlog: 50.0,
        ..sig(2.0)
    };
    assert_eq!(q.decide(8.0, &s).desired, 2);
}

#[test]
fn keda_lag_through_hpa_behaviour() {
    let mut p = policy("keda");
    // t = 0: lag 95 + 2 = 97, 2 replicas: ratio 97 / 20 = 4.85;
    // raw ceil(97 / 10) = 10; up limit max(2 + 4, 2 * 2) = 6 -> 6.
    let s = Signals {
        backlog: 95.0,
        in_flight: 2.0,
        ..sig(2.0)
    };
    assert_eq!(p.decide(0.0, &s).desired, 6);
    // t = 8: raw 10; the +4 at t = 0 is inside the 15 s period, so the
    // period started at 6 - 4 = 2: limit max(6, 4) = 6 -> 6.
    let s = Signals {
        backlog: 90.0,
        in_flight: 7.0,
        ..sig(6.0)
    };
    assert_eq!(p.decide(8.0, &s).desired, 6);
    // t = 16: the event left the period: limit max(6 + 4, 12) = 12 -> 10.
    assert_eq!(p.decide(16.0, &s).desired, 10);
    // t = 24: lag 20 -> raw 2, stabilised at the 300 s max, 10.
    let s = Signals {
        backlog: 10.0,
        in_flight: 10.0,
        ..sig(10.0)
    };
    assert_eq!(p.decide(24.0, &s).desired, 10);
    // Tolerance: lag 105 on 10 replicas, ratio 1.05 -> keep 10.
    let s = Signals {
        backlog: 95.0,
        in_flight: 10.0,
        ..sig(10.0)
    };
    assert_eq!(p.decide(32.0, &s).desired, 10);
}

#[test]
fn keda_activation_polls_and_cools_down() {
    let mut plat = platform();
    plat.min_replicas = 0;
    let mut p = builtin("keda", &plat).unwrap();
    let z = |desired: f64, backlog: f64| Signals {
        backlog,
        min_replicas: 0.0,
        ..sig(desired)
    };
    // t = 0: poll, nothing queued -> 0; next poll at 30.
    assert_eq!(p.decide(0.0, &z(0.0, 0.0)).desired, 0);
    // t = 8: work appears, but KEDA only looks at t = 30.
    assert_eq!(p.decide(8.0, &z(0.0, 5.0)).desired, 0);
    // t = 32: polled -> activate to 1.
    assert_eq!(p.decide(32.0, &z(0.0, 5.0)).desired, 1);
    // t = 40: idle since 32 for 8 s < 300 s cooldown: the HPA keeps >= 1.
    assert_eq!(p.decide(40.0, &z(1.0, 0.0)).desired, 1);
    // t = 340: idle for 308 s >= 300 -> scale to zero.
    assert_eq!(p.decide(340.0, &z(1.0, 0.0)).desired, 0);
}

#[test]
fn kpa_stable_and_panic_windows() {
    let mut p = policy("kpa");
    // t = 8: concurrency 10 + 4 = 14 (first sample: flat history).
    // stable = panic = 14; 14 / 0.7 = 20 -> want 20 (limits [2, 4000]);
    // panic: 20 / 4 ready = 5 >= 2 -> panicking -> 20.
    let s = Signals {
        backlog: 10.0,
        in_flight: 4.0,
        ..sig(4.0)
    };
    assert_eq!(p.decide(8.0, &s).desired, 20);
    // t = 16: concurrency 7, 7 ready. panic window [10, 16] on the line
    // 14 -> 7 over [8, 16]: (12.25 + 7) / 2 = 9.625 -> 13.75 -> want 14;
    // 13.75 / 7 = 1.96 < 2 but the panic (since 8) lasts 60 s and never
    // scales down: max(20, 14) = 20.
    let s = Signals {
        in_flight: 7.0,
        ..sig(7.0)
    };
    assert_eq!(p.decide(16.0, &s).desired, 20);
    // t = 72: concurrency 2, 20 ready; panic over (72 >= 8 + 60).
    // stable over [12, 72]: (10.5 + 7) / 2 * 4 + (7 + 2) / 2 * 56 = 287,
    // / 60 = 4.783 -> / 0.7 = 6.83 -> 7, raised to the scale-down limit
    // floor(20 / 2) = 10 -> 10.
    let s = Signals {
        in_flight: 2.0,
        ..sig(20.0)
    };
    assert_eq!(p.decide(72.0, &s).desired, 10);
}

#[test]
fn openfaas_pro_queue() {
    let mut p = policy("openfaas-pro-queue");
    // queued 8 + 1 = 9; ceil(9 / (1 * 0.9)) = 10.
    assert_eq!(
        p.decide(
            8.0,
            &Signals {
                backlog: 8.0,
                in_flight: 1.0,
                ..sig(3.0)
            }
        )
        .desired,
        10
    );
    // 100 queued -> 112, clamped to 32.
    assert_eq!(
        p.decide(
            16.0,
            &Signals {
                backlog: 100.0,
                ..sig(3.0)
            }
        )
        .desired,
        32
    );
    // Nothing queued -> 0, clamped to min 1.
    assert_eq!(p.decide(24.0, &sig(3.0)).desired, 1);
}

#[test]
fn fixed() {
    let mut p = policy("fixed:8");
    assert_eq!(p.decide(8.0, &sig(1.0)).desired, 8);
    // Clamped to the signals' bounds.
    assert_eq!(
        p.decide(
            16.0,
            &Signals {
                max_replicas: 5.0,
                ..sig(1.0)
            }
        )
        .desired,
        5
    );
}

#[test]
fn queueing_staffing_drain_and_stabilisation() {
    let mut p = policy("queueing");
    // lambda = 40 / 8 = 5/s, S = 1, p95 = 1 -> Cs^2 = 0, k = 0.5; mean
    // deadline 2 -> slack 1. theta = (c - 5) / 0.5. P(miss) = C(c, 5) / (1 + 2 (c - 5)):
    // c = 8: 0.16727 / 7 = 0.0239 > 0.01; c = 9: 0.08051 / 9 = 0.00895 -> 9.
    // Drain: 6 ready serve 6/s > 5/s, no backlog: 5 * 1 = 5 < 9. -> 9.
    let base = Signals {
        arrivals: 40.0,
        completions: 40.0,
        completions_on_time: 40.0,
        service_mean_s: Some(1.0),
        service_p95_s: Some(1.0),
        deadline_mean_s: Some(2.0),
        ..sig(6.0)
    };
    assert_eq!(p.decide(8.0, &base).desired, 9);
    // Backlog 80 with 9 ready: H = max(slack 1, interval 8) = 8;
    // c_d = 5 * 1 + 80 * 1 / 8 = 15 -> 15 (the rate is flat: level 5, trend 0).
    let s = Signals {
        backlog: 80.0,
        ..base.clone()
    };
    let s = Signals {
        replicas_desired: 9.0,
        replicas_ready: 9.0,
        ..s
    };
    assert_eq!(p.decide(16.0, &s).desired, 15);
    // Backlog gone: raw 9, but scale-down keeps the max over the last
    // 2 x (7 + 8) = 30 s: {15 @ 16, 9 @ 24} -> 15, and at t = 40 still 15.
    let calm = Signals {
        replicas_desired: 15.0,
        replicas_ready: 15.0,
        ..base.clone()
    };
    assert_eq!(p.decide(24.0, &calm).desired, 15);
    assert_eq!(p.decide(40.0, &calm).desired, 15);
    // t = 48: window [18, 48] holds {9 @ 24, 9 @ 40, 9 @ 48} -> 9.
    assert_eq!(p.decide(48.0, &calm).desired, 9);
}

#[test]
fn queueing_looks_ahead_on_a_rising_rate() {
    let mut p = policy("queueing");
    let at = |arrivals: f64| Signals {
        arrivals,
        completions: 10.0,
        completions_on_time: 10.0,
        service_mean_s: Some(1.0),
        service_p95_s: Some(1.0),
        deadline_mean_s: Some(2.0),
        ..sig(20.0)
    };
    // Rates 2, 4, 6 /s. Holt (alpha 0.5, beta 0.3):
    // t1: level 2, trend 0. t2: level = 0.5 * 4 + 0.5 * 2 = 3, trend = 0.3.
    // t3: level = 0.5 * 6 + 0.5 * 3.3 = 4.65, trend = 0.3 * 1.65 + 0.7 * 0.3 = 0.705.
    // Ahead (7 + 4) / 8 = 1.375 intervals: 4.65 + 0.969 = 5.62 < 6 -> the
    // current rate 6 is used; the staffing equals the flat-6/s staffing.
    p.decide(8.0, &at(16.0));
    p.decide(16.0, &at(32.0));
    let rising = p.decide(24.0, &at(48.0)).desired;
    let mut flat = policy("queueing");
    let steady = flat.decide(8.0, &at(48.0)).desired;
    assert_eq!(rising, steady);
    // A steeper rise: 2, 8, 14 /s. t2: level 5, trend 0.9; t3: level =
    // 0.5 * 14 + 0.5 * 5.9 = 9.95, trend = 0.3 * 4.95 + 0.7 * 0.9 = 2.115;
    // forecast 9.95 + 2.115 * 1.375 = 12.86 < 14: still the current rate.
    // The forecast leads when the rate is observed to have levelled but the
    // trend persists: 2, 8, 14, 14 -> level = 7 + 0.5 * 12.065 = 13.03,
    // trend = 0.3 * 3.08 + 0.7 * 2.115 = 2.405, forecast 16.34 > 14.
    let mut q = policy("queueing");
    for (t, a) in [(8.0, 16.0), (16.0, 64.0), (24.0, 112.0)] {
        q.decide(t, &at(a));
    }
    let ahead = q.decide(32.0, &at(112.0)).desired;
    let mut r = policy("queueing");
    let now_only = r.decide(8.0, &at(112.0)).desired;
    assert!(ahead > now_only, "{ahead} vs {now_only}");
    let mut exact = policy("queueing");
    // 16.34/s flat gives the same staffing as the forecast.
    let f = exact.decide(8.0, &at(16.34 * 8.0)).desired;
    assert_eq!(ahead, f);
}

#[test]
fn reset_forgets_state() {
    let mut p = policy("hpa");
    let s = Signals {
        replicas_busy: 5.0,
        ..sig(5.0)
    };
    p.decide(0.0, &s);
    p.reset();
    // After reset, a low recommendation is not held by old history.
    let low = Signals {
        replicas_busy: 1.0,
        ..sig(5.0)
    };
    // ratio 1 / 5 / 0.8 = 0.25 -> ceil(1.25) = 2.
    assert_eq!(p.decide(0.0, &low).desired, 2);
}
