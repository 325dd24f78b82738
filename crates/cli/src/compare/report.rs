//! The comparison's outputs: the rows of the JSON report, the fidelity of
//! each policy's live run against the simulator's, the table, the replica
//! timelines and the ticks side by side.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use farm_model::scenario::Platform;
use farm_sim::RunMetrics;
use plotters::prelude::*;
use serde::Serialize;

use super::Driver;
use crate::calibrate::Measured;
use crate::run::{Accounting, Tick};
use crate::shared::plot;

/// Target fidelity: live QoS within this many points of the simulator's.
pub const QOS_TOLERANCE_PTS: f64 = 3.0;
/// Target fidelity: live replica-seconds within this fraction of the simulator's.
pub const REPLICA_S_TOLERANCE: f64 = 0.10;

/// One policy's live side.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSide {
    /// Where every task ended.
    pub accounting: Accounting,
    /// Metrics in scenario seconds.
    pub metrics: RunMetrics,
    /// Every control tick: the signals the policy saw and its decision.
    pub ticks: Vec<Tick>,
    /// Who decided the ticks: `farmctl` or `gateway-ext`.
    pub driver: String,
    /// The policies gateway-ext reported for its decisions (empty with
    /// farmctl): a fallback to a built-in would show here.
    pub decided_by: Vec<String>,
}

/// How the `sim-replay` run used the live start-up delays.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayInfo {
    /// The live delays, scenario seconds, in start order: asked for ->
    /// serving (its first task, or its health route answering if earlier).
    pub live_delays_s: Vec<f64>,
    /// The same replicas' asked for -> health route answering, scenario
    /// seconds (what the replay used before 2026-11-27, FI3).
    pub healthy_delays_s: Vec<f64>,
    /// Median live dispatch gap per task ([`super::replay::dispatch_gap_s`]), real seconds.
    pub dispatch_gap_s: Option<f64>,
    /// Mean time a completed task held its replica, scenario seconds: live
    /// (handler + dispatch gap, what `sim-replay` used) and the calibrated
    /// model's (nominal + `task_overhead_s`, what `sim` used).
    pub occupancy_live_s: f64,
    /// See `occupancy_live_s`.
    pub occupancy_model_s: f64,
    /// Delays the simulator took from them.
    pub replayed: usize,
    /// Delays it drew from the fallback after they ran out.
    pub fallbacks: usize,
}

/// Live and simulated ticks side by side, one line per control interval
/// (tab-separated): what each policy saw and what it asked for.
pub fn ticks_side_by_side(live: &[Tick], sim: &[Tick]) -> String {
    let cols = [
        "arr", "backlog", "inflight", "compl", "ontime", "lat_mean", "lat_max", "svc_mean",
        "dl_min", "dl_mean", "ready", "start", "desired",
    ];
    // `live_sampled_s`: when the live queue was really read (the simulator
    // reads its own at `t_s`).
    let mut out = String::from("t_s\tlive_sampled_s");
    for side in ["live", "sim"] {
        for c in cols {
            let _ = write!(out, "\t{side}_{c}");
        }
    }
    out.push('\n');
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    let cells = |t: Option<&Tick>| -> String {
        let Some(t) = t else {
            return "\t".repeat(cols.len());
        };
        let s = &t.signals;
        format!(
            "\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s.arrivals,
            s.backlog,
            s.in_flight,
            s.completions,
            s.completions_on_time,
            f(s.latency_mean_s),
            f(s.latency_max_s),
            f(s.service_mean_s),
            f(s.deadline_min_s),
            f(s.deadline_mean_s),
            s.replicas_ready,
            s.replicas_starting,
            t.desired
        )
    };
    for i in 0..live.len().max(sim.len()) {
        let (l, s) = (live.get(i), sim.get(i));
        let t = l.or(s).map_or(0.0, |t| t.t_s);
        let sampled = f(l.and_then(|t| t.sampled_s.or(Some(t.t_s))));
        let _ = writeln!(out, "{t:.1}\t{sampled}{}{}", cells(l), cells(s));
    }
    out
}

/// One policy, live and simulated.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The policy as given.
    pub policy: String,
    /// `ok`, `skipped: ...` or `failed: ...`.
    pub status: String,
    /// The live run.
    pub live: Option<LiveSide>,
    /// The simulated run.
    pub sim: Option<RunMetrics>,
    /// Live QoS minus simulated QoS, percentage points.
    pub qos_diff_pts: Option<f64>,
    /// Live replica-seconds relative to the simulator's, percent.
    pub replica_s_diff_pct: Option<f64>,
    /// Both differences within the targets.
    pub within_target: Option<bool>,
    /// The simulated run replaying the live start-up delays.
    pub sim_replay: Option<RunMetrics>,
    /// How the replay used the live delays.
    pub replay: Option<ReplayInfo>,
    /// Live QoS minus `sim-replay` QoS, percentage points.
    pub replay_qos_diff_pts: Option<f64>,
    /// Live replica-seconds relative to `sim-replay`'s, percent.
    pub replay_replica_s_diff_pct: Option<f64>,
    /// Both `sim-replay` differences within the targets.
    pub replay_within_target: Option<bool>,
}

impl Row {
    /// A policy with `status` and no runs (yet).
    pub(super) fn no_runs(policy: String, status: String) -> Row {
        Row {
            policy,
            status,
            live: None,
            sim: None,
            qos_diff_pts: None,
            replica_s_diff_pct: None,
            within_target: None,
            sim_replay: None,
            replay: None,
            replay_qos_diff_pts: None,
            replay_replica_s_diff_pct: None,
            replay_within_target: None,
        }
    }
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Workload seed.
    pub seed: u64,
    /// Time compression of the live runs.
    pub speedup: f64,
    /// Tasks in the workload.
    pub tasks: usize,
    /// The provider's start-delay emulation (wall clock).
    pub start_delay_emulation: String,
    /// The live platform figures used.
    pub calibration: Measured,
    /// The simulator's platform (scenario seconds).
    pub sim_platform: Platform,
    /// Targets: QoS points and replica-seconds fraction.
    pub tolerance: (f64, f64),
    /// Who ran the policies live.
    pub driver: Driver,
    /// One per policy.
    pub rows: Vec<Row>,
}

pub(super) fn fidelity(live: &RunMetrics, sim: &RunMetrics) -> (f64, f64, bool) {
    let dq = (live.qos - sim.qos) * 100.0;
    let dr = if sim.replica_seconds > 0.0 {
        (live.replica_seconds / sim.replica_seconds - 1.0) * 100.0
    } else {
        f64::NAN
    };
    let ok = dq.abs() <= QOS_TOLERANCE_PTS && dr.abs() <= REPLICA_S_TOLERANCE * 100.0;
    (dq, dr, ok)
}

/// The comparison table: one line per policy, `live / sim / sim-replay`
/// in each cell (`sim`: independent start-up delay draws; `sim-replay`:
/// the live run's delays replayed, `-` when they could not be read), and
/// the live-minus-simulated differences against each.
pub fn table(rows: &[Row]) -> String {
    let head = [
        "policy",
        "QoS % live/sim/sim-replay",
        "p50 s",
        "p99 s",
        "replica-s",
        "mean rep",
        "max rep",
        "actions",
        "reversals",
        "lost",
        "dQoS pts sim",
        "d rep-s % sim",
        "dQoS pts replay",
        "d rep-s % replay",
    ];
    let mut body: Vec<Vec<String>> = Vec::new();
    for r in rows {
        match (&r.live, &r.sim) {
            (Some(l), Some(s)) => {
                let m = &l.metrics;
                let rp = r.sim_replay.as_ref();
                let three = |f: fn(&RunMetrics) -> f64, d: usize| {
                    let third = rp.map_or("-".to_string(), |x| format!("{:.d$}", f(x)));
                    format!("{:.d$} / {:.d$} / {third}", f(m), f(s))
                };
                let count = |f: fn(&RunMetrics) -> u32| {
                    let third = rp.map_or("-".to_string(), |x| f(x).to_string());
                    format!("{} / {} / {third}", f(m), f(s))
                };
                let pts = |d: Option<f64>| d.map_or("-".into(), |d| format!("{d:+.2}"));
                let pct = |d: Option<f64>| d.map_or("-".into(), |d| format!("{d:+.1}"));
                body.push(vec![
                    r.policy.clone(),
                    three(|x| x.qos * 100.0, 2),
                    three(|x| x.latency_p50_s, 2),
                    three(|x| x.latency_p99_s, 2),
                    three(|x| x.replica_seconds, 0),
                    three(|x| x.mean_replicas, 2),
                    count(|x| x.max_replicas),
                    count(|x| x.scaling_actions),
                    count(|x| x.reversals),
                    l.accounting.lost.to_string(),
                    pts(r.qos_diff_pts),
                    pct(r.replica_s_diff_pct),
                    pts(r.replay_qos_diff_pts),
                    pct(r.replay_replica_s_diff_pct),
                ]);
            }
            _ => {
                let mut v = vec![r.policy.clone(), r.status.clone()];
                v.resize(head.len(), String::new());
                body.push(v);
            }
        }
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            body.iter()
                .filter(|b| b.len() == head.len() && !b[2].is_empty())
                .map(|b| b[i].chars().count())
                .chain([head[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(l, "{c:<w$}", w = widths[0]);
            } else {
                let _ = write!(l, "  {c:>w$}", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(&head.map(String::from), &mut out);
    for b in &body {
        if b[2].is_empty() {
            let _ = writeln!(out, "{:<w$}  {}", b[0], b[1], w = widths[0]);
        } else {
            line(b, &mut out);
        }
    }
    out
}

/// One PNG, one panel per policy: replicas over scenario time, live and
/// simulated.
pub(super) fn timelines(path: &Path, title: &str, rows: &[Row]) -> Result<()> {
    plot::ensure_font()?;
    let shown: Vec<(&Row, &LiveSide, &RunMetrics)> = rows
        .iter()
        .filter_map(|r| Some((r, r.live.as_ref()?, r.sim.as_ref()?)))
        .collect();
    if shown.is_empty() {
        bail!("no policy ran both live and simulated");
    }
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let h = 60 + 260 * u32::try_from(shown.len()).unwrap_or(1);
    let root = BitMapBackend::new(path, (1100, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 24))
        .map_err(|e| err(&e))?;
    let panels = root.split_evenly((shown.len(), 1));
    let orange = RGBColor(255, 140, 0);
    for ((row, live, sim), panel) in shown.iter().zip(&panels) {
        let lt = &live.metrics.timeline;
        let st = &sim.timeline;
        let t_max = live
            .metrics
            .end_s
            .max(sim.end_s)
            .max(row.sim_replay.as_ref().map_or(0.0, |m| m.end_s))
            .max(lt.last().map_or(0.0, |p| p.t_s))
            .max(1.0);
        let y_max = lt
            .iter()
            .chain(st)
            .chain(row.sim_replay.iter().flat_map(|m| &m.timeline))
            .map(|p| p.alive.max(p.desired))
            .max()
            .unwrap_or(1)
            .max(1);
        let steps = |tl: &[farm_sim::TimelinePoint], f: fn(&farm_sim::TimelinePoint) -> u32| {
            let mut v = Vec::with_capacity(tl.len() * 2);
            for (i, p) in tl.iter().enumerate() {
                let next = tl.get(i + 1).map_or(t_max, |q| q.t_s);
                v.push((p.t_s, f64::from(f(p))));
                v.push((next, f64::from(f(p))));
            }
            v
        };
        let rt: &[farm_sim::TimelinePoint] = row.sim_replay.as_ref().map_or(&[], |m| &m.timeline);
        let replay_caption = row.sim_replay.as_ref().map_or(String::new(), |m| {
            format!(
                "; sim-replay {:.1} %, {:.0} replica-s",
                m.qos * 100.0,
                m.replica_seconds
            )
        });
        let caption = format!(
            "{}: QoS live {:.1} % / sim {:.1} %, replica-s {:.0} / {:.0}{replay_caption}",
            row.policy,
            live.metrics.qos * 100.0,
            sim.qos * 100.0,
            live.metrics.replica_seconds,
            sim.replica_seconds
        );
        let mut c = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..t_max, 0f64..f64::from(y_max) * 1.15)
            .map_err(|e| err(&e))?;
        c.configure_mesh()
            .x_desc("scenario time (s)")
            .y_desc("replicas")
            .draw()
            .map_err(|e| err(&e))?;
        let mut series: Vec<plot::Line> = vec![
            ("live existing", RED, 4, steps(lt, |p| p.alive)),
            ("sim existing", orange, 2, steps(st, |p| p.alive)),
            ("live desired", BLUE, 1, steps(lt, |p| p.desired)),
            ("sim desired", CYAN, 1, steps(st, |p| p.desired)),
        ];
        if !rt.is_empty() {
            series.push(("sim-replay existing", GREEN, 2, steps(rt, |p| p.alive)));
        }
        plot::draw_lines(&mut c, series, 12).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use farm_model::signals::Signals;

    use super::*;

    fn metrics(qos: f64, replica_seconds: f64) -> RunMetrics {
        RunMetrics {
            tasks: 0,
            completed: 0,
            shed: 0,
            unfinished: 0,
            on_time: 0,
            qos,
            latency_p50_s: 0.0,
            latency_p95_s: 0.0,
            latency_p99_s: 0.0,
            replica_seconds,
            mean_replicas: 0.0,
            max_replicas: 0,
            scaling_actions: 0,
            reversals: 0,
            drain_time_s: 0.0,
            end_s: 0.0,
            redeliveries: 0,
            failures: 0,
            events: 0,
            early_decisions: 0,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn fidelity_flags_large_differences() {
        let m = metrics;
        let (dq, dr, ok) = fidelity(&m(0.95, 105.0), &m(0.97, 100.0));
        assert!((dq + 2.0).abs() < 1e-9 && (dr - 5.0).abs() < 1e-9 && ok);
        assert!(!fidelity(&m(0.90, 100.0), &m(0.97, 100.0)).2);
        assert!(!fidelity(&m(0.97, 120.0), &m(0.97, 100.0)).2);
    }

    #[test]
    fn the_table_has_one_line_per_policy() {
        let skipped = Row::no_runs(
            "onnx:x.onnx".into(),
            "skipped: model x.onnx not found".into(),
        );
        let ok = Row {
            policy: "queueing".into(),
            status: "ok".into(),
            live: Some(LiveSide {
                accounting: Accounting::default(),
                metrics: metrics(0.9, 0.0),
                ticks: Vec::new(),
                driver: "farmctl".into(),
                decided_by: Vec::new(),
            }),
            sim: Some(metrics(0.92, 0.0)),
            qos_diff_pts: Some(-2.0),
            replica_s_diff_pct: Some(1.0),
            within_target: Some(true),
            sim_replay: None,
            replay: None,
            replay_qos_diff_pts: None,
            replay_replica_s_diff_pct: None,
            replay_within_target: None,
        };
        let replayed = Row {
            policy: "keda".into(),
            sim_replay: Some(metrics(0.89, 0.0)),
            replay_qos_diff_pts: Some(1.0),
            replay_replica_s_diff_pct: Some(-0.5),
            replay_within_target: Some(true),
            ..ok.clone()
        };
        let t = table(&[ok, replayed, skipped]);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.contains("live/sim/sim-replay"), "{t}");
        assert!(
            t.contains("90.00 / 92.00 / -") && t.contains("skipped"),
            "{t}"
        );
        assert!(t.contains("90.00 / 92.00 / 89.00"), "{t}");
        assert!(t.contains("+1.00") && t.contains("-0.5"), "{t}");
    }

    #[test]
    fn ticks_file_shows_when_the_live_queue_was_read() {
        let tick = |t_s: f64, sampled_s: Option<f64>| Tick {
            t_s,
            signals: Signals::default(),
            desired: 1,
            sampled_s,
        };
        let text = ticks_side_by_side(&[tick(8.0, Some(8.04))], &[tick(8.0, None)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("t_s\tlive_sampled_s\tlive_arr"),
            "{text}"
        );
        assert!(lines[1].starts_with("8.0\t8.04\t"), "{text}");
        let cols = |l: &str| l.split('\t').count();
        assert_eq!(cols(lines[0]), cols(lines[1]), "{text}");
    }
}
