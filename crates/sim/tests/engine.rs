//! Hand-computed runs of the engine on tiny workloads.

mod common;

use common::{Fixed, Recorder, Script, platform, workload};
use farm_model::scenario::{DelaySequence, Dist};
use farm_model::signals::Signals;
use farm_sim::{SimError, SimOptions, simulate_workload, simulate_workload_replay};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn one_replica_serves_spaced_tasks_on_time() {
    let w = workload(&[(0.5, 1.0, 2.0), (2.0, 1.0, 2.0), (4.0, 1.5, 3.0)], 10.0);
    let p = platform(5.0, 1, 4, 1, 3.0, 1.0);
    let m = simulate_workload(&w, &p, 1, &mut Fixed(1), &SimOptions::default()).unwrap();
    assert_eq!(
        (m.tasks, m.completed, m.unfinished, m.on_time),
        (3, 3, 0, 3)
    );
    assert_eq!(m.qos, 1.0);
    // The run lasts the arrival window (all work done before 10 s) with one replica.
    assert!(close(m.end_s, 10.0), "{}", m.end_s);
    assert!(close(m.replica_seconds, 10.0));
    assert_eq!(m.scaling_actions, 0);
    assert!(close(m.latency_p99_s, 1.5));
    assert!(close(m.drain_time_s, 1.5));
    assert_eq!(m.timeline.len(), 2);
}

#[test]
fn fifo_queue_makes_the_second_task_late() {
    // Two tasks at once, one replica: the second waits 1 s and finishes at 2 > 1.5.
    let w = workload(&[(0.0, 1.0, 1.5), (0.0, 1.0, 1.5)], 1.0);
    let p = platform(5.0, 1, 1, 1, 3.0, 1.0);
    let m = simulate_workload(&w, &p, 1, &mut Fixed(1), &SimOptions::default()).unwrap();
    assert_eq!(m.on_time, 1);
    assert!(close(m.qos, 0.5));
    assert!(close(m.latency_p50_s, 1.0));
    assert!(close(m.latency_p99_s, 2.0));
    // Work ends at 2 s, after the 1 s arrival window: the run ends with it.
    assert!(close(m.end_s, 2.0));
    assert!(close(m.drain_time_s, 2.0));
}

#[test]
fn shedding_drops_tasks_already_past_their_deadline_and_serves_the_rest() {
    // One replica, four tasks at 0 with a 1.5 s deadline and 1 s service:
    // FIFO runs them all (finishing at 1, 2, 3, 4; one on time). Shedding,
    // at t = 1 the second task (waited 1 s) still starts and is late (2 >
    // 1.5); at t = 2 the third and fourth have waited 2 s > 1.5 s and are
    // dropped unstarted. A fifth task arriving at 2.2 then starts at once.
    let w = workload(
        &[
            (0.0, 1.0, 1.5),
            (0.0, 1.0, 1.5),
            (0.0, 1.0, 1.5),
            (0.0, 1.0, 1.5),
            (2.2, 1.0, 1.5),
        ],
        3.0,
    );
    let p = platform(5.0, 1, 1, 1, 3.0, 1.0);
    let fifo = simulate_workload(&w, &p, 1, &mut Fixed(1), &SimOptions::default()).unwrap();
    assert_eq!((fifo.completed, fifo.shed, fifo.on_time), (5, 0, 1));
    let opts = SimOptions {
        shed_expired: true,
        ..SimOptions::default()
    };
    let m = simulate_workload(&w, &p, 1, &mut Fixed(1), &opts).unwrap();
    assert_eq!(
        (m.tasks, m.completed, m.shed, m.unfinished, m.on_time),
        (5, 3, 2, 0, 2)
    );
    assert!(close(m.qos, 0.4));
    // The last task ran 2.2 .. 3.2: the run ends with it.
    assert!(close(m.end_s, 3.2), "{}", m.end_s);
}

#[test]
fn scale_up_pays_the_startup_and_scale_down_pays_the_delay() {
    // Ticks at 5, 10, 15: ask 3, then 1, then 1. Start-up 2 s, scale-down 1 s.
    let w = workload(&[], 20.0);
    let p = platform(5.0, 1, 4, 1, 2.0, 1.0);
    let m = simulate_workload(
        &w,
        &p,
        1,
        &mut Script(vec![3, 1], 0),
        &SimOptions::default(),
    )
    .unwrap();
    // 1 replica for 20 s + 2 replicas from 5 s to 10 s + 1 s leaving each.
    assert!(
        close(m.replica_seconds, 20.0 + 2.0 * 5.0 + 2.0),
        "{}",
        m.replica_seconds
    );
    assert_eq!(m.scaling_actions, 2);
    assert_eq!(m.reversals, 1);
    assert_eq!(m.max_replicas, 3);
    let t = &m.timeline;
    assert_eq!((t[0].desired, t[0].ready, t[0].starting), (1, 1, 0));
    assert_eq!((t[1].desired, t[1].ready, t[1].alive), (3, 3, 3));
    assert_eq!((t[2].desired, t[2].ready, t[2].alive), (1, 1, 1));
}

#[test]
fn scale_down_removes_starting_then_idle_then_drains_busy() {
    // One long task keeps replica 0 busy from 0 to 12. At 5 s ask 3 (ready at
    // 9 s with a 4 s start-up); at 10 s ask 1: both idle new ones leave, the
    // busy one stays. At 15 s nothing changes.
    let w = workload(&[(0.0, 12.0, 20.0)], 16.0);
    let p = platform(5.0, 1, 4, 1, 4.0, 1.0);
    let m = simulate_workload(
        &w,
        &p,
        1,
        &mut Script(vec![3, 1], 0),
        &SimOptions::default(),
    )
    .unwrap();
    assert_eq!(m.on_time, 1);
    // replica 0: 0..16; two new: 5..11 each (start-up 4 s, idle 1 s, leaving 1 s).
    assert!(
        close(m.replica_seconds, 16.0 + 2.0 * 6.0),
        "{}",
        m.replica_seconds
    );
    // Now ask 0 extra while a task runs: scale from 2 to 1 with both busy:
    // the newest drains, finishing its task, then leaves after 1 s.
    let w = workload(&[(6.0, 6.0, 20.0), (6.0, 2.0, 20.0)], 16.0);
    let p = platform(5.0, 1, 4, 2, 4.0, 1.0);
    let m = simulate_workload(
        &w,
        &p,
        1,
        &mut Script(vec![2, 1], 0),
        &SimOptions::default(),
    )
    .unwrap();
    // Replica 1 (newest) takes the first task? The idle stack is LIFO, so
    // replica 1 takes the 6 s task and replica 0 the 2 s one. At 10 s
    // replica 0 is idle (done at 8): it leaves at 11. Replica 1 keeps going.
    assert_eq!(m.on_time, 2);
    assert!(
        close(m.replica_seconds, 16.0 + 11.0),
        "{}",
        m.replica_seconds
    );
}

#[test]
fn starting_replicas_are_cancelled_first() {
    // Ask 4 at 5 s (start-up 10 s), back to 1 at 10 s: the three starting
    // replicas are gone at once at 10 s without ever being ready.
    let w = workload(&[], 20.0);
    let p = platform(5.0, 1, 4, 1, 10.0, 1.0);
    let m = simulate_workload(
        &w,
        &p,
        1,
        &mut Script(vec![4, 1], 0),
        &SimOptions::default(),
    )
    .unwrap();
    assert!(
        close(m.replica_seconds, 20.0 + 3.0 * 5.0),
        "{}",
        m.replica_seconds
    );
}

#[test]
fn api_latency_delays_the_platform() {
    let w = workload(&[], 20.0);
    let mut p = platform(5.0, 1, 4, 1, 2.0, 1.0);
    p.scale_api_latency_s = 0.5;
    let m = simulate_workload(&w, &p, 1, &mut Script(vec![2], 0), &SimOptions::default()).unwrap();
    // The second replica exists from 5.5 s to 20 s.
    assert!(
        close(m.replica_seconds, 20.0 + 14.5),
        "{}",
        m.replica_seconds
    );
}

#[test]
fn per_function_cap_clamps_unless_sharded() {
    let w = workload(&[], 20.0);
    let mut p = platform(5.0, 1, 32, 1, 1.0, 1.0);
    p.per_function_cap = Some(5);
    let one = SimOptions {
        shards: 1,
        ..SimOptions::default()
    };
    let m = simulate_workload(&w, &p, 1, &mut Fixed(20), &one).unwrap();
    assert_eq!(m.max_replicas, 5);
    // Automatic (the default): ceil(32 / 5) = 7 shards hold all 20.
    let m = simulate_workload(&w, &p, 1, &mut Fixed(20), &SimOptions::default()).unwrap();
    assert_eq!(m.max_replicas, 20);
    assert_eq!(farm_sim::shards_for(&p, 0), 7);
    p.per_function_cap = None;
    assert_eq!(farm_sim::shards_for(&p, 0), 1);
    p.per_function_cap = Some(5);
    let opts = SimOptions {
        shards: 3,
        ..SimOptions::default()
    };
    let m = simulate_workload(&w, &p, 1, &mut Fixed(20), &opts).unwrap();
    assert_eq!(m.max_replicas, 15);
}

#[test]
fn failures_redeliver_and_conserve_tasks() {
    let tasks: Vec<(f64, f64, f64)> = (0..400).map(|i| (f64::from(i) * 0.25, 1.0, 5.0)).collect();
    let w = workload(&tasks, 100.0);
    let mut p = platform(5.0, 1, 8, 6, 2.0, 1.0);
    p.failure_rate_per_hour = 200.0; // a failure every ~18 s per replica
    let m = simulate_workload(&w, &p, 3, &mut Fixed(6), &SimOptions::default()).unwrap();
    assert!(m.failures > 0);
    assert!(m.redeliveries > 0 && m.redeliveries <= m.failures);
    assert_eq!(m.completed + m.unfinished, m.tasks);
    assert_eq!(m.completed, 400);
}

#[test]
fn signals_describe_the_interval() {
    // 10 tasks in the first interval at 0.5 s spacing, service 2 s, one replica.
    let tasks: Vec<(f64, f64, f64)> = (0..10).map(|i| (f64::from(i) * 0.5, 2.0, 4.0)).collect();
    let w = workload(&tasks, 5.0);
    let p = platform(5.0, 1, 1, 1, 2.0, 1.0);
    let mut rec = Recorder::default();
    let opts = SimOptions {
        alerts: false,
        ..SimOptions::default()
    };
    let m = simulate_workload(&w, &p, 1, &mut rec, &opts).unwrap();
    let (t, s) = &rec.ticks[0];
    assert!(close(*t, 5.0));
    assert!(close(s.interval_s, 5.0));
    assert_eq!(s.arrivals, 10.0);
    // Completions at 2 and 4 s; the third task runs from 4 to 6.
    assert_eq!(s.completions, 2.0);
    assert_eq!(s.completions_on_time, 2.0); // latencies 2.0 and 3.5 <= 4
    assert_eq!(s.in_flight, 1.0);
    assert_eq!(s.backlog, 7.0);
    assert_eq!(s.service_mean_s, Some(2.0));
    assert_eq!(s.latency_max_s, Some(3.5));
    assert_eq!(s.latency_mean_s, Some(2.75));
    assert_eq!(s.deadline_min_s, Some(4.0));
    assert_eq!(
        (s.replicas_ready, s.replicas_busy, s.replicas_starting),
        (1.0, 1.0, 0.0)
    );
    assert!(close(s.since_last_scale_s, 5.0));
    assert_eq!(m.completed, 10);
    // The second interval has no arrivals; an empty-window statistic is None
    // only when nothing completed.
    assert_eq!(rec.ticks[1].1.arrivals, 0.0);
}

#[test]
fn a_sliding_window_spans_several_decisions() {
    // One task a second (service 0.5 s), decisions every 2 s over an 8 s window.
    let tasks: Vec<(f64, f64, f64)> = (0..20).map(|i| (f64::from(i) + 0.25, 0.5, 1.0)).collect();
    let w = workload(&tasks, 20.0);
    let p = platform(2.0, 1, 1, 1, 2.0, 1.0);
    let mut rec = Recorder::default();
    let opts = SimOptions {
        alerts: false,
        window_s: Some(8.0),
        ..SimOptions::default()
    };
    simulate_workload(&w, &p, 1, &mut rec, &opts).unwrap();
    // The first decisions see what there is: 2, 4, 6 s.
    let (t, s) = &rec.ticks[0];
    assert!(close(*t, 2.0) && close(s.interval_s, 2.0) && close(s.step_s, 2.0));
    assert_eq!((s.arrivals, s.completions), (2.0, 2.0));
    // From 8 s on, every decision 2 s apart covers the last 8 s.
    for (t, s) in &rec.ticks[3..9] {
        assert!(close(s.interval_s, 8.0), "{t}: {}", s.interval_s);
        assert!(close(s.step_s, 2.0));
        assert_eq!(s.arrivals, 8.0, "{t}");
        assert_eq!(s.completions, 8.0, "{t}");
        assert!(close(s.arrival_rate(), 1.0));
        assert_eq!(s.service_mean_s, Some(0.5));
    }
    // The same run with tumbling windows sees 2 s at a time.
    let mut tumbling = Recorder::default();
    let opts = SimOptions {
        alerts: false,
        ..SimOptions::default()
    };
    simulate_workload(&w, &p, 1, &mut tumbling, &opts).unwrap();
    assert_eq!(tumbling.ticks[5].1.arrivals, 2.0);
    assert!(close(tumbling.ticks[5].1.interval_s, 2.0));
}

#[test]
fn the_queue_head_age_is_the_longest_wait() {
    // Five tasks at 0 s on one replica of 4 s service: at the 5 s tick the
    // second task (arrived at 0) has waited 5 s.
    let tasks: Vec<(f64, f64, f64)> = (0..5).map(|_| (0.0, 4.0, 30.0)).collect();
    let w = workload(&tasks, 5.0);
    let p = platform(5.0, 1, 1, 1, 2.0, 1.0);
    let mut rec = Recorder::default();
    let opts = SimOptions {
        alerts: false,
        ..SimOptions::default()
    };
    simulate_workload(&w, &p, 1, &mut rec, &opts).unwrap();
    let s = &rec.ticks[0].1;
    assert_eq!(s.backlog, 3.0);
    assert!(close(s.oldest_age_s, 5.0), "{}", s.oldest_age_s);
    // At 15 s the last task, still queued, has waited 15 s; nothing queued
    // means age 0.
    let (t, s) = rec.ticks.last().unwrap();
    assert!(close(*t, 15.0) && s.backlog == 1.0 && close(s.oldest_age_s, 15.0));
    assert_eq!(Signals::default().oldest_age_s, 0.0);
}

#[test]
fn alertmanager_fires_and_resolves() {
    // 10 tasks/s for 30 s, then nothing; the rule needs rate > 5/s for 5 s.
    let tasks: Vec<(f64, f64, f64)> = (0..300).map(|i| (f64::from(i) * 0.1, 0.05, 1.0)).collect();
    let w = workload(&tasks, 60.0);
    let p = platform(8.0, 1, 10, 1, 1.0, 1.0);
    let mut rec = Recorder::default();
    simulate_workload(&w, &p, 1, &mut rec, &SimOptions::default()).unwrap();
    // Evaluations every 5 s from counter samples (0 before time 0): at 5 s
    // 51 arrivals (0.0..=5.0) / 10 s = 5.1/s > 5 -> pending; at 10 s the
    // condition has held 5 s -> firing. At 35 s the last 10 s saw 49
    // arrivals (4.9/s) -> resolved. No repeat: firing lasted < 30 s.
    assert_eq!(rec.alerts, vec![(10.0, true), (35.0, false)]);
}

#[test]
fn invalid_inputs_get_typed_errors() {
    let w = workload(&[(1.0, 1.0, 1.0), (0.5, 1.0, 1.0)], 5.0);
    let p = platform(5.0, 1, 4, 1, 1.0, 1.0);
    let e = simulate_workload(&w, &p, 0, &mut Fixed(1), &SimOptions::default()).unwrap_err();
    assert!(matches!(e, SimError::Workload { index: 1, .. }));
    let w = workload(&[], 5.0);
    let p = platform(0.0, 1, 4, 1, 1.0, 1.0);
    let e = simulate_workload(&w, &p, 0, &mut Fixed(1), &SimOptions::default()).unwrap_err();
    assert!(matches!(
        e,
        SimError::Platform {
            field: "control_interval_s",
            ..
        }
    ));
    let mut p = platform(1.0, 1, 4, 1, 1.0, 1.0);
    p.startup_delay = Dist::Uniform { min: 1.0, max: 2.0 };
    p.min_replicas = 5;
    let e = simulate_workload(&w, &p, 0, &mut Fixed(1), &SimOptions::default()).unwrap_err();
    assert!(matches!(
        e,
        SimError::Platform {
            field: "max_replicas",
            ..
        }
    ));
}

#[test]
fn unfinished_tasks_after_the_drain_bound() {
    // 100 tasks of 10 s on one replica: 1000 s of work, bound 60 s after 10 s.
    let tasks: Vec<(f64, f64, f64)> = (0..100).map(|i| (f64::from(i) * 0.1, 10.0, 20.0)).collect();
    let w = workload(&tasks, 10.0);
    let p = platform(5.0, 1, 1, 1, 1.0, 1.0);
    let opts = SimOptions {
        max_drain_s: 60.0,
        ..SimOptions::default()
    };
    let m = simulate_workload(&w, &p, 0, &mut Fixed(1), &opts).unwrap();
    assert!(close(m.end_s, 70.0));
    assert_eq!(m.completed, 7);
    assert_eq!(m.unfinished, 93);
    assert!(close(m.replica_seconds, 70.0));
}

#[test]
fn replayed_startup_delays_are_used_in_start_order_then_the_fallback() {
    // Tick 5 asks 3: two replicas start. The platform says 2 s (both ready
    // by tick 10); the replay says 1 s then 7 s, so at tick 10 one of them
    // is still starting.
    let w = workload(&[], 20.0);
    let p = platform(5.0, 1, 4, 1, 2.0, 1.0);
    let run = |seq: DelaySequence| {
        simulate_workload_replay(
            &w,
            &p,
            1,
            &mut Script(vec![3, 3], 0),
            &SimOptions::default(),
            seq,
        )
        .unwrap()
    };
    let (m, seq) = run(DelaySequence::new(vec![1.0, 7.0], Dist::Constant(2.0)).unwrap());
    let t = &m.timeline;
    assert_eq!((t[1].desired, t[1].ready, t[1].starting), (3, 2, 1));
    assert_eq!((seq.replayed(), seq.fallbacks()), (2, 0));
    // One value, then the fallback (7 s) for the second start: the same run.
    let (m2, seq) = run(DelaySequence::new(vec![1.0], Dist::Constant(7.0)).unwrap());
    assert_eq!((seq.replayed(), seq.fallbacks()), (1, 1));
    assert_eq!(
        (m2.timeline[1].ready, m2.timeline[1].starting),
        (t[1].ready, t[1].starting)
    );
    // The plain run draws 2 s for both: all ready at tick 10.
    let plain = simulate_workload(
        &w,
        &p,
        1,
        &mut Script(vec![3, 3], 0),
        &SimOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (plain.timeline[1].ready, plain.timeline[1].starting),
        (3, 0)
    );
}

#[test]
fn a_backlog_jump_decides_early_and_the_ticks_restart_from_it() {
    // One quiet task, then a burst of 10 at 0.1 s spacing from t = 3 on one
    // replica: the backlog reaches the trigger's floor of 4 at t = 3.4.
    let mut tasks = vec![(1.0, 1.0, 4.0)];
    tasks.extend((0..10).map(|i| (3.0 + f64::from(i) * 0.1, 1.0, 4.0)));
    let w = workload(&tasks, 20.0);
    let p = platform(8.0, 1, 8, 1, 2.0, 1.0);
    let off = SimOptions {
        alerts: false,
        ..SimOptions::default()
    };
    let mut rec = Recorder::default();
    let m = simulate_workload(&w, &p, 1, &mut rec, &off).unwrap();
    assert!(close(rec.ticks[0].0, 8.0));
    assert_eq!(m.early_decisions, 0);

    let on = SimOptions {
        events: Some(farm_model::cadence::BacklogJump::default()),
        ..off
    };
    let mut rec = Recorder::default();
    let m = simulate_workload(&w, &p, 1, &mut rec, &on).unwrap();
    let times: Vec<f64> = rec.ticks.iter().map(|(t, _)| *t).collect();
    assert!(close(times[0], 3.4), "{times:?}");
    assert_eq!(rec.ticks[0].1.backlog, 4.0);
    // Re-armed for the 5 replicas asked for, the rest of the burst is no
    // jump: the next decisions are regular ticks from 3.4.
    assert!(close(times[1], 11.4) && close(times[2], 19.4), "{times:?}");
    assert_eq!(m.early_decisions, 1);
    assert!(close(rec.ticks[1].1.step(), 8.0));
    // Deciding 4.6 s sooner serves the burst on time.
    assert!(m.qos > 0.9, "{}", m.qos);
}
