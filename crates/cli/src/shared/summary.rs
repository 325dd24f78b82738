//! The simulator-style summary of a policy on a scenario over seeds, and
//! its table (`farmctl sim eval / compare`, `farmctl run`).

use std::fmt::Write as _;

use farm_sim::RunMetrics;
use serde::Serialize;

/// One run of one policy on one seed, with the oracle bounds of that workload.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub seed: u64,
    pub metrics: RunMetrics,
    /// Oracle lower bound at the target QoS.
    pub bound_target: f64,
    /// Oracle lower bound at the QoS this run reached.
    pub bound_at_qos: f64,
}

/// Summary of a policy on a scenario over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    scenario: String,
    policy: String,
    seeds: usize,
    qos_mean: f64,
    qos_sd: f64,
    seeds_meeting_target: usize,
    p99_s: f64,
    replica_seconds: f64,
    ratio_to_oracle_bound: f64,
    ratio_to_bound_at_own_qos: f64,
    mean_replicas: f64,
    max_replicas: f64,
    scaling_actions: f64,
    reversals: f64,
    unfinished: f64,
    /// The runs summarised.
    pub runs: Vec<Run>,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { s / n as f64 }
}

pub fn summarise(scenario: &str, policy: &str, runs: Vec<Run>, target: f64) -> Row {
    let q: Vec<f64> = runs.iter().map(|r| r.metrics.qos).collect();
    let qm = mean(q.iter().copied());
    let sd = if q.len() > 1 {
        (q.iter().map(|x| (x - qm).powi(2)).sum::<f64>() / (q.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { f64::NAN };
    Row {
        scenario: scenario.to_string(),
        policy: policy.to_string(),
        seeds: runs.len(),
        qos_mean: qm,
        qos_sd: sd,
        seeds_meeting_target: runs
            .iter()
            .filter(|r| r.metrics.qos + 1e-12 >= target)
            .count(),
        p99_s: mean(runs.iter().map(|r| r.metrics.latency_p99_s)),
        replica_seconds: mean(runs.iter().map(|r| r.metrics.replica_seconds)),
        ratio_to_oracle_bound: mean(
            runs.iter()
                .map(|r| ratio(r.metrics.replica_seconds, r.bound_target)),
        ),
        ratio_to_bound_at_own_qos: mean(
            runs.iter()
                .map(|r| ratio(r.metrics.replica_seconds, r.bound_at_qos)),
        ),
        mean_replicas: mean(runs.iter().map(|r| r.metrics.mean_replicas)),
        max_replicas: mean(runs.iter().map(|r| f64::from(r.metrics.max_replicas))),
        scaling_actions: mean(runs.iter().map(|r| f64::from(r.metrics.scaling_actions))),
        reversals: mean(runs.iter().map(|r| f64::from(r.metrics.reversals))),
        unfinished: mean(runs.iter().map(|r| r.metrics.unfinished as f64)),
        runs,
    }
}

/// The rows as an aligned text table, or a Markdown table.
pub fn table(rows: &[Row], markdown: bool) -> String {
    let head = [
        "scenario",
        "policy",
        "QoS %",
        "met",
        "p99 s",
        "replica-s",
        "/oracle",
        "/bound@qos",
        "mean rep",
        "max rep",
        "actions",
        "reversals",
    ];
    let body: Vec<[String; 12]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                r.policy.clone(),
                format!("{:.2} ± {:.2}", r.qos_mean * 100.0, r.qos_sd * 100.0),
                format!("{}/{}", r.seeds_meeting_target, r.seeds),
                format!("{:.2}", r.p99_s),
                format!("{:.0}", r.replica_seconds),
                format!("{:.2}", r.ratio_to_oracle_bound),
                format!("{:.2}", r.ratio_to_bound_at_own_qos),
                format!("{:.2}", r.mean_replicas),
                format!("{:.1}", r.max_replicas),
                format!("{:.1}", r.scaling_actions),
                format!("{:.1}", r.reversals),
            ]
        })
        .collect();
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
        for b in &body {
            let _ = writeln!(out, "| {} |", b.join(" | "));
        }
        return out;
    }
    let mut width = head.map(|h| h.chars().count());
    for b in &body {
        for (w, cell) in width.iter_mut().zip(b) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&width).enumerate() {
            let pad = w - cell.chars().count();
            if i < 2 {
                let _ = write!(l, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(l, "{}{cell}  ", " ".repeat(pad));
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&head.map(String::from)));
    for b in &body {
        let _ = writeln!(out, "{}", line(b));
    }
    out
}
