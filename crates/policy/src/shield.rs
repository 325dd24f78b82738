//! The shield: what a policy proposes is made safe before it reaches the
//! provider.
//!
//! Order, each step able to override the ones before it:
//! 1. observations with NaN or infinity -> hold the previous count (the
//!    proposal was computed from garbage);
//! 2. max step per decision (rate limit), relative to the previous count;
//! 3. floors: the queueing floor (replicas enough to drain the current
//!    backlog within the tightest deadline) and a pending scale request's
//!    count; a floor beats the rate limit, because falling behind a deadline
//!    costs more than a large step;
//! 4. min/max of the farm, last, because they are hard limits of the platform.

use farm_model::queueing::backlog_drain_servers;
use farm_model::signals::Signals;

/// Per-farm shield settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShieldConfig {
    /// Minimum replicas.
    pub min: u32,
    /// Maximum replicas.
    pub max: u32,
    /// Largest change per decision (`None` = no limit).
    pub max_step: Option<u32>,
    /// Whether the queueing floor applies.
    pub queueing_floor: bool,
}

/// Why the shield changed a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intervention {
    /// The observation was not finite; the previous count was kept.
    NonFiniteHold,
    /// The change was limited to `max_step`.
    StepLimited,
    /// Raised to the queueing floor.
    QueueingFloor,
    /// Raised to the count of a recent scale request.
    RequestFloor,
    /// Raised to the minimum.
    Min,
    /// Lowered to the maximum.
    Max,
}

impl Intervention {
    /// Stable label for metrics and notes.
    pub fn label(self) -> &'static str {
        match self {
            Intervention::NonFiniteHold => "non-finite-hold",
            Intervention::StepLimited => "max-step",
            Intervention::QueueingFloor => "queueing-floor",
            Intervention::RequestFloor => "request-floor",
            Intervention::Min => "min",
            Intervention::Max => "max",
        }
    }
}

/// The shield's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shielded {
    /// Replicas to ask for.
    pub desired: u32,
    /// What changed the proposal, in order.
    pub interventions: Vec<Intervention>,
}

/// The queueing floor: replicas that serve the current backlog (queued and
/// in flight) within the tightest deadline seen, given the measured mean
/// service time. 0 when either is unknown (nothing to base a floor on).
pub fn queueing_floor(s: &Signals) -> u32 {
    let (Some(mean), Some(deadline)) = (s.service_mean_s, s.deadline_min_s) else {
        return 0;
    };
    if !(mean.is_finite() && deadline.is_finite()) || mean <= 0.0 || deadline <= 0.0 {
        return 0;
    }
    backlog_drain_servers(s.backlog.max(0.0) + s.in_flight.max(0.0), mean, deadline)
}

/// Applies the shield to `proposed`, given the `previous` desired count, the
/// signals and observation the proposal was made from, and an optional
/// floor from a recent scale request.
pub fn shield(
    cfg: &ShieldConfig,
    proposed: u32,
    previous: u32,
    signals: &Signals,
    observation: &[f32],
    request_floor: Option<u32>,
) -> Shielded {
    let mut iv = Vec::new();
    let mut d = proposed;
    if observation.iter().any(|x| !x.is_finite()) {
        iv.push(Intervention::NonFiniteHold);
        d = previous;
    } else {
        if let Some(step) = cfg.max_step {
            let lo = previous.saturating_sub(step);
            let hi = previous.saturating_add(step);
            if d < lo || d > hi {
                iv.push(Intervention::StepLimited);
                d = d.clamp(lo, hi);
            }
        }
        if cfg.queueing_floor {
            let f = queueing_floor(signals);
            if d < f {
                iv.push(Intervention::QueueingFloor);
                d = f;
            }
        }
    }
    if let Some(f) = request_floor
        && d < f
    {
        iv.push(Intervention::RequestFloor);
        d = f;
    }
    if d < cfg.min {
        iv.push(Intervention::Min);
        d = cfg.min;
    }
    if d > cfg.max {
        iv.push(Intervention::Max);
        d = cfg.max;
    }
    Shielded {
        desired: d,
        interventions: iv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: ShieldConfig = ShieldConfig {
        min: 1,
        max: 10,
        max_step: Some(2),
        queueing_floor: true,
    };

    fn obs() -> Vec<f32> {
        vec![0.0; 4]
    }

    #[test]
    fn passes_a_safe_proposal() {
        let s = shield(&CFG, 4, 3, &Signals::default(), &obs(), None);
        assert_eq!(
            s,
            Shielded {
                desired: 4,
                interventions: vec![]
            }
        );
    }

    #[test]
    fn limits_step_and_bounds() {
        assert_eq!(
            shield(&CFG, 9, 3, &Signals::default(), &obs(), None).desired,
            5
        );
        assert_eq!(
            shield(&CFG, 0, 3, &Signals::default(), &obs(), None).desired,
            1
        );
        let s = shield(&CFG, 0, 2, &Signals::default(), &obs(), None);
        assert_eq!(s.desired, 1);
        assert_eq!(s.interventions, vec![Intervention::Min]);
        let s = shield(&CFG, 0, 5, &Signals::default(), &obs(), None);
        assert_eq!(
            (s.desired, s.interventions),
            (3, vec![Intervention::StepLimited])
        );
        let big = ShieldConfig {
            max_step: None,
            ..CFG
        };
        let s = shield(&big, 50, 3, &Signals::default(), &obs(), None);
        assert_eq!((s.desired, s.interventions), (10, vec![Intervention::Max]));
    }

    #[test]
    fn holds_on_non_finite_observation() {
        let mut o = obs();
        o[2] = f32::NAN;
        let s = shield(&CFG, 9, 3, &Signals::default(), &o, None);
        assert_eq!(
            (s.desired, s.interventions),
            (3, vec![Intervention::NonFiniteHold])
        );
        o[2] = f32::INFINITY;
        assert_eq!(shield(&CFG, 1, 4, &Signals::default(), &o, None).desired, 4);
    }

    #[test]
    fn queueing_floor_raises_and_can_be_switched_off() {
        // 40 tasks of 1 s with a 5 s deadline: 40 * 1 / (5 - 1) = 10 servers.
        let s = Signals {
            backlog: 36.0,
            in_flight: 4.0,
            service_mean_s: Some(1.0),
            deadline_min_s: Some(5.0),
            ..Default::default()
        };
        assert_eq!(queueing_floor(&s), 10);
        let no_step = ShieldConfig {
            max_step: None,
            ..CFG
        };
        let r = shield(&no_step, 2, 2, &s, &obs(), None);
        assert_eq!(
            (r.desired, r.interventions),
            (10, vec![Intervention::QueueingFloor])
        );
        let off = ShieldConfig {
            queueing_floor: false,
            ..no_step
        };
        assert_eq!(shield(&off, 2, 2, &s, &obs(), None).desired, 2);
        // No service time measured yet: no floor.
        assert_eq!(
            queueing_floor(&Signals {
                backlog: 100.0,
                ..Default::default()
            }),
            0
        );
    }

    #[test]
    fn request_floor_beats_step_but_not_max() {
        let r = shield(&CFG, 1, 1, &Signals::default(), &obs(), Some(7));
        assert_eq!(r.desired, 7);
        assert_eq!(r.interventions, vec![Intervention::RequestFloor]);
        assert_eq!(
            shield(&CFG, 1, 1, &Signals::default(), &obs(), Some(70)).desired,
            10
        );
    }
}
