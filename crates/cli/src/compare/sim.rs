//! The simulated side of a comparison: the platform the local farm really
//! is, in scenario seconds, and the simulator's runs with every tick
//! recorded so they can be laid beside the live ones.

use anyhow::Result;
use farm_model::scenario::{DelaySequence, Dist, Platform, Workload};
use farm_model::signals::Signals;
use farm_policy::{Decision, Policy};
use farm_sim::{RunMetrics, SimOptions, simulate_workload, simulate_workload_replay};

use crate::calibrate::Measured;
use crate::run::Tick;

/// The provider's start-delay emulation for `d` compressed `k` times
/// (`farm_local::StartDelay` syntax), and the distribution the simulator
/// must use for it in scenario seconds. The provider knows fixed, uniform
/// and normal delays: other shapes are emulated by their mean, and the
/// simulator is told so.
pub fn start_emulation(d: &Dist, k: f64) -> (String, Dist) {
    match d {
        Dist::Constant(c) => (format!("fixed:{}", c / k), Dist::Constant(*c)),
        Dist::Uniform { min, max } => (
            format!("uniform:{},{}", min / k, max / k),
            Dist::Uniform {
                min: *min,
                max: *max,
            },
        ),
        other => {
            let m = other.mean();
            (format!("fixed:{}", m / k), Dist::Constant(m))
        }
    }
}

/// `d` delayed by `c` seconds.
fn shift(d: &Dist, c: f64) -> Dist {
    match d {
        Dist::Constant(v) => Dist::Constant(v + c),
        Dist::Uniform { min, max } => Dist::Uniform {
            min: min + c,
            max: max + c,
        },
        Dist::Empirical { values } => Dist::Empirical {
            values: values.iter().map(|v| v + c).collect(),
        },
        // start_emulation only produces the shapes above.
        other => other.clone(),
    }
}

/// The simulator's platform and workload for a live run at speedup `k`:
/// what the local farm really does, in scenario seconds.
pub fn calibrated(
    scenario: &Platform,
    workload: &Workload,
    m: &Measured,
    k: f64,
    bounds: (u32, u32),
) -> (Platform, Workload) {
    let (_, emulated) = start_emulation(&scenario.startup_delay, k);
    let mut p = scenario.clone();
    p.startup_delay = shift(&emulated, m.start_s * k);
    p.scale_down_delay = Dist::Constant(m.drain_s * k);
    p.scale_api_latency_s = m.scale_call_s * k;
    p.min_replicas = bounds.0;
    p.max_replicas = bounds.1.max(bounds.0);
    p.initial_replicas = p.initial_replicas.clamp(p.min_replicas, p.max_replicas);
    let mut w = workload.clone();
    for t in &mut w.tasks {
        t.service_s += m.task_overhead_s * k;
    }
    (p, w)
}

/// A policy that records what it was shown and what it decided, so the
/// simulator's ticks can be laid beside the live ones.
struct Recording<'a> {
    inner: &'a mut dyn Policy,
    ticks: Vec<Tick>,
}

impl Policy for Recording<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn reset(&mut self) {
        self.ticks.clear();
        self.inner.reset();
    }

    fn decide(&mut self, now_s: f64, s: &Signals) -> Decision {
        let d = self.inner.decide(now_s, s);
        let (lo, hi) = (s.min_replicas as u32, (s.max_replicas as u32).max(1));
        self.ticks.push(Tick {
            t_s: now_s,
            signals: s.clone(),
            desired: d.desired.clamp(lo, hi.max(lo)),
            sampled_s: None,
        });
        d
    }

    fn on_alert(&mut self, now_s: f64, firing: bool, s: &Signals) -> Option<Decision> {
        self.inner.on_alert(now_s, firing, s)
    }
}

/// The simulated run of `pol` under `opts`, with its ticks (`opts` carries
/// what the live run mirrors: how long after the arrival window it ends,
/// early decisions on backlog jumps, shedding of expired tasks).
pub fn simulate_recorded(
    workload: &Workload,
    platform: &Platform,
    seed: u64,
    pol: &mut dyn Policy,
    opts: &SimOptions,
) -> Result<(RunMetrics, Vec<Tick>)> {
    recorded(pol, |rec| {
        simulate_workload(workload, platform, seed, rec, opts)
    })
}

/// [`simulate_recorded`] with the start-up delays replayed from `replay`
/// (then its fallback); also returns the sequence, whose counters say how
/// many delays were replayed.
pub fn simulate_replayed(
    workload: &Workload,
    platform: &Platform,
    seed: u64,
    pol: &mut dyn Policy,
    opts: &SimOptions,
    replay: DelaySequence,
) -> Result<(RunMetrics, Vec<Tick>, DelaySequence)> {
    let ((m, seq), ticks) = recorded(pol, |rec| {
        simulate_workload_replay(workload, platform, seed, rec, opts, replay)
    })?;
    Ok((m, ticks, seq))
}

/// Runs `sim` with `pol` wrapped so every tick is recorded.
fn recorded<T>(
    pol: &mut dyn Policy,
    sim: impl FnOnce(&mut dyn Policy) -> Result<T, farm_sim::SimError>,
) -> Result<(T, Vec<Tick>)> {
    let mut rec = Recording {
        inner: pol,
        ticks: Vec::new(),
    };
    let out = sim(&mut rec)?;
    Ok((out, rec.ticks))
}

#[cfg(test)]
mod tests {
    use farm_model::scenario::Scenario;

    use super::*;
    use crate::shared::policy::make_policy;

    #[test]
    fn start_emulation_compresses_the_scenario_delay() {
        let (s, d) = start_emulation(&Dist::Uniform { min: 5.0, max: 9.0 }, 4.0);
        assert_eq!(s, "uniform:1.25,2.25");
        assert_eq!(d, Dist::Uniform { min: 5.0, max: 9.0 });
        assert!(farm_local::StartDelay::parse(&s).is_ok());
        let (s, d) = start_emulation(&Dist::Exponential { mean: 2.0 }, 2.0);
        assert_eq!((s.as_str(), d), ("fixed:1", Dist::Constant(2.0)));
    }

    #[test]
    fn calibration_adds_live_overheads_in_scenario_seconds() {
        let s = Scenario::builtin("steady").unwrap();
        let w = s.generate(1);
        let m = Measured {
            start_s: 0.1,
            drain_s: 0.05,
            scale_call_s: 0.001,
            task_overhead_s: 0.01,
            source: String::new(),
        };
        let (p, w2) = calibrated(&s.platform, &w, &m, 4.0, (1, 16));
        assert_eq!(p.scale_down_delay, Dist::Constant(0.2));
        assert!((p.scale_api_latency_s - 0.004).abs() < 1e-12);
        assert_eq!(p.startup_delay, shift(&s.platform.startup_delay, 0.4));
        assert_eq!(p.max_replicas, 16);
        assert_eq!(w2.tasks.len(), w.tasks.len());
        assert!((w2.tasks[0].service_s - w.tasks[0].service_s - 0.04).abs() < 1e-12);
        assert_eq!(w2.tasks[0].deadline_s, w.tasks[0].deadline_s);
    }

    #[test]
    fn replaying_the_simulator_s_own_draws_reproduces_its_run() {
        // A replay of delays equal to the platform's constant must give the
        // run the plain simulator gives, and different delays a different one.
        // paper-4phase starts at one replica and must scale up.
        let s = Scenario::builtin("paper-4phase").unwrap();
        let w = s.generate(3);
        let mut p = s.platform.clone();
        p.startup_delay = Dist::Constant(6.0);
        let mut pol = make_policy("queueing", &p).unwrap();
        let opts = SimOptions {
            max_drain_s: 60.0,
            ..SimOptions::default()
        };
        let (plain, _) = simulate_recorded(&w, &p, 3, pol.as_mut(), &opts).unwrap();
        let seq = DelaySequence::new(vec![6.0; 4], Dist::Constant(6.0)).unwrap();
        let (same, _, seq) = simulate_replayed(&w, &p, 3, pol.as_mut(), &opts, seq).unwrap();
        assert_eq!(plain.qos, same.qos);
        assert_eq!(plain.replica_seconds, same.replica_seconds);
        // The fallback only after every value was used.
        assert!(seq.fallbacks() == 0 || seq.replayed() == 4, "{seq:?}");
        assert!(seq.replayed() > 0, "the run started no replica");
        let slow = DelaySequence::new(vec![60.0; 64], Dist::Constant(60.0)).unwrap();
        let (other, _, _) = simulate_replayed(&w, &p, 3, pol.as_mut(), &opts, slow).unwrap();
        assert_ne!(
            (plain.qos, plain.replica_seconds),
            (other.qos, other.replica_seconds)
        );
    }
}
