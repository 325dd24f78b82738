//! How much of a policy's result is the platform's luck: one workload (a
//! scenario and its workload seed, held fixed), simulated under many
//! platform seeds, so only the start-up and scale-down delays drawn differ.
//! Prints QoS and replica-seconds per policy: mean, standard deviation,
//! min and max over the platform seeds.
//!
//! A live run draws its replica start-up delays independently of the
//! simulator's, so a live/simulated difference smaller than this spread is
//! not evidence of a modelling error.
//!
//! ```text
//! cargo run --release -p farm-sim --example delay_spread -- paper-4phase 0 20 keda,queueing
//! ```
//! Arguments: scenario name, workload seed, number of platform seeds,
//! comma-separated built-in policies.

use farm_model::scenario::Scenario;
use farm_sim::{SimOptions, simulate_workload};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("paper-4phase", String::as_str);
    let seed: u64 = args.get(1).map_or(Ok(0), |s| s.parse())?;
    let runs: u64 = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let policies = args.get(3).map_or("keda,queueing", String::as_str);
    let scenario = Scenario::builtin(name)?;
    let workload = scenario.generate(seed);
    println!(
        "{name}, workload seed {seed} ({} tasks), {runs} platform seeds",
        workload.tasks.len()
    );
    println!("policy            QoS % mean   sd    min    max   replica-s mean   sd    min    max");
    for p in policies.split(',') {
        let mut qos = Vec::new();
        let mut rep = Vec::new();
        for s in 0..runs {
            let mut pol = farm_policy::builtin(p, &scenario.platform)?;
            // Any seed but the workload's: only the platform's draws change.
            let m = simulate_workload(
                &workload,
                &scenario.platform,
                seed.wrapping_add(1000 + s),
                pol.as_mut(),
                &SimOptions::default(),
            )?;
            qos.push(m.qos * 100.0);
            rep.push(m.replica_seconds);
        }
        let (qm, qs, qlo, qhi) = stats(&qos);
        let (rm, rs, rlo, rhi) = stats(&rep);
        println!(
            "{p:<16} {qm:>8.2} {qs:>6.2} {qlo:>6.2} {qhi:>6.2}   {rm:>12.0} {rs:>6.0} {rlo:>6.0} {rhi:>6.0}"
        );
    }
    Ok(())
}

/// Mean, standard deviation, min, max.
fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), lo, hi)
}
