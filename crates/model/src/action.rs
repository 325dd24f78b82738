//! Discrete action spaces declared as data.
//!
//! A learned policy outputs an index; the [`ActionSpace`] says what each
//! index means, as a stable string stored in ONNX metadata, so gateway-ext
//! can refuse a model trained for a different space
//! ([`ActionSpace::from_meanings`]).
//!
//! Meanings: `hold`, `delta:-4` / `delta:+2` (change the desired replica
//! count), `estimate:x1.25` (set it to 1.25 x the queueing model's staffing
//! estimate, [`crate::queueing::staffing_estimate`]), `smoothed:x1.2` /
//! `peak:x1.2` (1.2 x the EWMA / the recent peak of that estimate, as the
//! [`crate::observation::Observer`] keeps them: [`Estimates`]),
//! `drain:x0.9` (0.9 x that EWMA, but never below the load of this
//! interval plus the servers that drain its backlog within the deadline:
//! [`Action::ScaleToSmoothedDrain`]).
//!
//! The `smoothed`, `peak` and `drain` actions need the history of the intervals
//! before: decode them with [`ActionSpace::apply_with`] and the observer's
//! [`crate::observation::Observer::estimates`]. A decoder without that
//! history ([`ActionSpace::apply`]) treats the current interval as the only
//! one, i.e. decodes them like `estimate:xM`. Spaces that use neither are
//! decoded exactly as before, and a build that does not know them refuses
//! such a model's meanings with [`ActionError::BadMeaning`].

use crate::queueing::{DEFAULT_EPS, backlog_drain_servers, staffing_estimate};
use crate::signals::Signals;

/// One discrete action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Add this many replicas to the current desired count (negative removes).
    Delta(i32),
    /// Keep the desired count.
    Hold,
    /// Set the desired count to `ceil(multiplier * estimate)`, where the
    /// estimate is the queueing model's staffing for the current signals;
    /// holds when no estimate is available (no service-time sample yet).
    ScaleToEstimate(f64),
    /// Set the desired count to `ceil(multiplier * smoothed)`, the EWMA of
    /// the staffing estimate over the non-empty windows so far
    /// ([`Estimates::smoothed`]): follows the level without chasing one
    /// window's Poisson noise down.
    ScaleToSmoothed(f64),
    /// Set the desired count to `ceil(multiplier * peak)`, the largest
    /// staffing estimate of the last few non-empty windows
    /// ([`Estimates::peak`]): releases replicas only once the load stayed
    /// low for that long.
    ScaleToPeak(f64),
    /// Set the desired count to the larger of `ceil(multiplier * smoothed)`
    /// ([`Estimates::smoothed`]) and the backlog floor of this interval,
    /// `ceil(lambda * S) + backlog_drain_servers(backlog, S, D)`
    /// ([`crate::queueing::backlog_drain_servers`], with the measured
    /// arrival rate, mean service time and mean deadline). A multiple below
    /// 1 follows the level cheaply; the floor adds replicas at once when a
    /// queue builds up, which the smoothed level alone would notice late.
    /// Without a smoothed estimate yet it holds, raised to the floor.
    ScaleToSmoothedDrain(f64),
    /// Set the desired count to `ceil(multiplier * plan)`, the causal
    /// model-predictive planner's decision ([`Estimates::plan`],
    /// [`crate::planner::Planner`], kept by observation layout v3): a
    /// learned policy chooses how much headroom to keep over the plan, or
    /// how much leaner to run. Holds without a plan.
    ScaleToPlan(f64),
}

/// The staffing history the `smoothed` and `peak` actions follow, in
/// replicas (`None` before the first non-empty window); built by
/// [`crate::observation::Observer::estimates`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimates {
    /// EWMA of the staffing estimate.
    pub smoothed: Option<f64>,
    /// Peak of the staffing estimate over the last few non-empty windows.
    pub peak: Option<f64>,
    /// The model-predictive planner's decision, replicas (observation
    /// layout v3 keeps a planner; `None` before it or for older layouts).
    pub plan: Option<f64>,
}

impl Action {
    /// The stable string for this action (`delta:-4`, `delta:+1`, `hold`,
    /// `estimate:x1.25`).
    pub fn meaning(&self) -> String {
        match *self {
            Action::Delta(d) if d > 0 => format!("delta:+{d}"),
            Action::Delta(d) => format!("delta:{d}"),
            Action::Hold => "hold".into(),
            Action::ScaleToEstimate(m) => format!("estimate:x{m}"),
            Action::ScaleToSmoothed(m) => format!("smoothed:x{m}"),
            Action::ScaleToPeak(m) => format!("peak:x{m}"),
            Action::ScaleToSmoothedDrain(m) => format!("drain:x{m}"),
            Action::ScaleToPlan(m) => format!("mpc:x{m}"),
        }
    }

    /// Parse a meaning string (`delta:1` is accepted for `delta:+1`).
    pub fn parse(text: &str) -> Result<Action, ActionError> {
        let bad = || ActionError::BadMeaning(text.to_string());
        let t = text.trim();
        if t == "hold" {
            return Ok(Action::Hold);
        }
        if let Some(d) = t.strip_prefix("delta:") {
            let d = d.strip_prefix('+').unwrap_or(d);
            return d.parse::<i32>().map(Action::Delta).map_err(|_| bad());
        }
        type Make = fn(f64) -> Action;
        let scaled: [(&str, Make); 5] = [
            ("mpc:x", Action::ScaleToPlan),
            ("estimate:x", Action::ScaleToEstimate),
            ("smoothed:x", Action::ScaleToSmoothed),
            ("peak:x", Action::ScaleToPeak),
            ("drain:x", Action::ScaleToSmoothedDrain),
        ];
        for (prefix, make) in scaled {
            if let Some(m) = t.strip_prefix(prefix) {
                let m: f64 = m.parse().map_err(|_| bad())?;
                if m.is_finite() && m > 0.0 {
                    return Ok(make(m));
                }
                return Err(bad());
            }
        }
        Err(bad())
    }
}

/// Why an action space or index was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// A meaning string is not one of `hold`, `delta:<int>`, `estimate:x<number>`,
    /// `smoothed:x<number>`, `peak:x<number>`, `drain:x<number>`, `mpc:x<number>`
    /// (numbers finite and positive).
    #[error(
        "unknown action meaning `{0}` (expected `hold`, `delta:<int>`, `estimate:x<number>`, \
         `smoothed:x<number>`, `peak:x<number>`, `drain:x<number>` or `mpc:x<number>`)"
    )]
    BadMeaning(String),
    /// An action space must have at least one action.
    #[error("empty action space")]
    Empty,
    /// The index is outside the action space.
    #[error("action index {index} out of range (the space has {len} actions)")]
    OutOfRange {
        /// The index asked for.
        index: usize,
        /// Number of actions.
        len: usize,
    },
}

/// An ordered list of discrete actions.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSpace {
    actions: Vec<Action>,
}

impl Default for ActionSpace {
    /// Deltas {-4, -2, -1, 0, +1, +2, +4}: symmetric, lets a policy react to a
    /// load jump of a quarter of the reference's 1..32 range within two steps,
    /// yet still fine-tune by one replica. Index 3 is "no change".
    fn default() -> Self {
        Self::deltas(&[-4, -2, -1, 0, 1, 2, 4])
    }
}

impl ActionSpace {
    /// The reference paper's space: {-1, 0, +1}.
    pub fn paper() -> Self {
        Self::deltas(&[-1, 0, 1])
    }

    /// A space of replica-count changes.
    pub fn deltas(deltas: &[i32]) -> Self {
        ActionSpace {
            actions: deltas.iter().map(|&d| Action::Delta(d)).collect(),
        }
    }

    /// Model-guided space: `hold`, deltas -1/+1, and the queueing estimate
    /// scaled by 0.8, 1.0, 1.25 and 1.5, so a policy can jump straight to the
    /// level the model suggests and learn how much margin to keep.
    pub fn with_estimates() -> Self {
        ActionSpace {
            actions: vec![
                Action::Hold,
                Action::Delta(-1),
                Action::Delta(1),
                Action::ScaleToEstimate(0.8),
                Action::ScaleToEstimate(1.0),
                Action::ScaleToEstimate(1.25),
                Action::ScaleToEstimate(1.5),
            ],
        }
    }

    /// A space from explicit actions.
    pub fn new(actions: Vec<Action>) -> Result<Self, ActionError> {
        if actions.is_empty() {
            return Err(ActionError::Empty);
        }
        Ok(ActionSpace { actions })
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether the space has no action (never true for a built space).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The actions, in index order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// The action at `index`.
    pub fn get(&self, index: usize) -> Result<Action, ActionError> {
        self.actions
            .get(index)
            .copied()
            .ok_or(ActionError::OutOfRange {
                index,
                len: self.actions.len(),
            })
    }

    /// Index of the action that keeps the desired count, if any.
    pub fn noop_index(&self) -> Option<usize> {
        self.actions
            .iter()
            .position(|a| matches!(a, Action::Hold | Action::Delta(0)))
    }

    /// Stable meaning strings, in index order.
    pub fn meanings(&self) -> Vec<String> {
        self.actions.iter().map(Action::meaning).collect()
    }

    /// Rebuild a space from meaning strings (e.g. ONNX metadata).
    pub fn from_meanings(meanings: &[String]) -> Result<Self, ActionError> {
        let actions = meanings
            .iter()
            .map(|m| Action::parse(m))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(actions)
    }

    /// Whether some action needs the staffing history ([`ActionSpace::apply_with`]).
    pub fn uses_history(&self) -> bool {
        self.actions.iter().any(|a| {
            matches!(
                a,
                Action::ScaleToSmoothed(_)
                    | Action::ScaleToPeak(_)
                    | Action::ScaleToSmoothedDrain(_)
                    | Action::ScaleToPlan(_)
            )
        })
    }

    /// The desired replica count after action `index`, from the current
    /// desired count in `signals`, clamped to `[min_replicas, max_replicas]`
    /// of the signals. An out-of-range index holds. Without a history, the
    /// `smoothed` and `peak` actions follow this interval's estimate; use
    /// [`ActionSpace::apply_with`] where the history is kept.
    pub fn apply(&self, index: usize, signals: &Signals) -> u32 {
        let now = staffing_estimate(signals, DEFAULT_EPS);
        self.apply_with(
            index,
            signals,
            &Estimates {
                smoothed: now,
                peak: now,
                plan: None,
            },
        )
    }

    /// As [`ActionSpace::apply`], with the staffing history `estimates`
    /// (from the [`crate::observation::Observer`] that has just observed
    /// `signals`) for the `smoothed` and `peak` actions; they hold when the
    /// history has no estimate yet, as `estimate:xM` does without a service
    /// sample.
    pub fn apply_with(&self, index: usize, signals: &Signals, estimates: &Estimates) -> u32 {
        let lo = signals.min_replicas.max(0.0);
        let hi = signals.max_replicas.max(lo);
        let current = signals.replicas_desired;
        let scaled = |m: f64, e: Option<f64>| e.map_or(current, |e| (m * e).ceil());
        let target = match self.actions.get(index) {
            Some(Action::Delta(d)) => current + f64::from(*d),
            Some(Action::ScaleToEstimate(m)) => scaled(*m, staffing_estimate(signals, DEFAULT_EPS)),
            Some(Action::ScaleToSmoothed(m)) => scaled(*m, estimates.smoothed),
            Some(Action::ScaleToPeak(m)) => scaled(*m, estimates.peak),
            Some(Action::ScaleToSmoothedDrain(m)) => {
                scaled(*m, estimates.smoothed).max(backlog_floor(signals).unwrap_or(0.0))
            }
            Some(Action::ScaleToPlan(m)) => scaled(*m, estimates.plan),
            Some(Action::Hold) | None => current,
        };
        let v = target.clamp(lo, hi);
        if v.is_finite() {
            v.round() as u32
        } else {
            lo as u32
        }
    }
}

/// The replicas that keep up with this interval's arrivals and drain its
/// backlog within the mean deadline: `ceil(lambda * S) +
/// backlog_drain_servers(backlog, S, D)`; `None` without a service-time or
/// deadline measurement.
pub fn backlog_floor(signals: &Signals) -> Option<f64> {
    let mean = signals.service_mean_s.filter(|m| *m > 0.0)?;
    let deadline = signals.deadline_mean_s.or(signals.deadline_min_s)?;
    let load = (signals.arrival_rate().max(0.0) * mean).ceil();
    let drain = backlog_drain_servers(signals.backlog, mean, deadline);
    let v = load + f64::from(drain);
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(desired: f64) -> Signals {
        Signals {
            replicas_desired: desired,
            min_replicas: 1.0,
            max_replicas: 32.0,
            ..Default::default()
        }
    }

    #[test]
    fn default_and_paper_meanings() {
        let d = ActionSpace::default();
        assert_eq!(d.len(), 7);
        assert_eq!(
            d.meanings(),
            [
                "delta:-4", "delta:-2", "delta:-1", "delta:0", "delta:+1", "delta:+2", "delta:+4"
            ]
        );
        assert_eq!(d.noop_index(), Some(3));
        assert_eq!(
            ActionSpace::paper().meanings(),
            ["delta:-1", "delta:0", "delta:+1"]
        );
    }

    #[test]
    fn meanings_round_trip() {
        for space in [
            ActionSpace::default(),
            ActionSpace::paper(),
            ActionSpace::with_estimates(),
        ] {
            assert_eq!(ActionSpace::from_meanings(&space.meanings()), Ok(space));
        }
        assert_eq!(Action::parse("delta:3"), Ok(Action::Delta(3)));
    }

    #[test]
    fn bad_meanings_are_refused() {
        assert_eq!(
            ActionSpace::from_meanings(&["delta:+1".into(), "jump".into()]),
            Err(ActionError::BadMeaning("jump".into()))
        );
        assert_eq!(ActionSpace::from_meanings(&[]), Err(ActionError::Empty));
        assert!(matches!(
            Action::parse("estimate:x-1"),
            Err(ActionError::BadMeaning(_))
        ));
        assert!(matches!(
            Action::parse("delta:+x"),
            Err(ActionError::BadMeaning(_))
        ));
    }

    #[test]
    fn apply_clamps() {
        let d = ActionSpace::default();
        assert_eq!(d.apply(0, &sig(3.0)), 1); // 3 - 4 -> clamp to 1
        assert_eq!(d.apply(6, &sig(30.0)), 32); // 30 + 4 -> clamp to 32
        assert_eq!(d.apply(4, &sig(10.0)), 11);
        assert_eq!(d.apply(99, &sig(10.0)), 10); // out of range holds
    }

    #[test]
    fn estimate_uses_queueing_model() {
        let s = Signals {
            interval_s: 8.0,
            arrivals: 40.0, // 5/s
            completions: 40.0,
            completions_on_time: 40.0,
            service_mean_s: Some(1.0),
            service_p95_s: Some(1.0), // Cs^2 = 0 (deterministic-looking)
            deadline_mean_s: Some(2.0),
            ..sig(3.0)
        };
        let e = staffing_estimate(&s, DEFAULT_EPS).unwrap();
        let space = ActionSpace::with_estimates();
        assert_eq!(space.apply(4, &s), e.ceil() as u32);
        assert_eq!(space.apply(6, &s), (1.5 * e).ceil() as u32);
        assert!(e > 5.0); // more than the offered load of 5 replicas
        // No service measurement: hold.
        assert_eq!(space.apply(4, &sig(3.0)), 3);
    }

    fn history_space() -> ActionSpace {
        ActionSpace::from_meanings(&[
            "hold".into(),
            "smoothed:x1.2".into(),
            "peak:x1".into(),
            "estimate:x1".into(),
        ])
        .unwrap()
    }

    #[test]
    fn history_meanings_parse_and_round_trip() {
        let space = history_space();
        assert_eq!(
            space.actions(),
            [
                Action::Hold,
                Action::ScaleToSmoothed(1.2),
                Action::ScaleToPeak(1.0),
                Action::ScaleToEstimate(1.0)
            ]
        );
        assert_eq!(
            space.meanings(),
            ["hold", "smoothed:x1.2", "peak:x1", "estimate:x1"]
        );
        assert!(space.uses_history());
        assert!(!ActionSpace::with_estimates().uses_history());
        for bad in [
            "smoothed:x0",
            "peak:x-2",
            "peak:xnan",
            "smoothed:1",
            "peak:xinf",
        ] {
            assert_eq!(
                Action::parse(bad),
                Err(ActionError::BadMeaning(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn history_actions_follow_the_given_estimates() {
        let space = history_space();
        let s = sig(3.0);
        let est = Estimates {
            smoothed: Some(10.0),
            peak: Some(14.2),
            plan: None,
        };
        // ceil(1.2 * 10) = 12; ceil(14.2) = 15.
        assert_eq!(space.apply_with(1, &s, &est), 12);
        assert_eq!(space.apply_with(2, &s, &est), 15);
        // Clamped to max_replicas.
        let big = Estimates {
            smoothed: Some(100.0),
            peak: Some(100.0),
            plan: None,
        };
        assert_eq!(space.apply_with(1, &s, &big), 32);
        // No history yet: hold.
        assert_eq!(space.apply_with(1, &s, &Estimates::default()), 3);
        assert_eq!(space.apply_with(2, &s, &Estimates::default()), 3);
        // The other actions ignore the history.
        assert_eq!(space.apply_with(0, &s, &est), 3);
        assert_eq!(space.apply_with(3, &s, &est), 3); // no service sample: hold
    }

    #[test]
    fn without_history_they_follow_this_interval() {
        let s = Signals {
            interval_s: 8.0,
            arrivals: 40.0,
            completions: 40.0,
            completions_on_time: 40.0,
            service_mean_s: Some(1.0),
            service_p95_s: Some(1.0),
            deadline_mean_s: Some(2.0),
            ..sig(3.0)
        };
        let e = staffing_estimate(&s, DEFAULT_EPS).unwrap();
        let space = history_space();
        assert_eq!(space.apply(1, &s), (1.2 * e).ceil() as u32);
        assert_eq!(space.apply(2, &s), space.apply(3, &s));
    }

    #[test]
    fn drain_follows_smoothed_above_the_backlog_floor() {
        let plan = ActionSpace::from_meanings(&["hold".into(), "mpc:x1.3".into()]).unwrap();
        assert_eq!(plan.meanings(), ["hold", "mpc:x1.3"]);
        assert!(plan.uses_history());
        let est = Estimates {
            plan: Some(10.0),
            ..Estimates::default()
        };
        assert_eq!(plan.apply_with(1, &sig(4.0), &est), 13);
        // Without a plan it holds.
        assert_eq!(plan.apply_with(1, &sig(4.0), &Estimates::default()), 4);
        assert!(ActionSpace::from_meanings(&["mpc:x0".into()]).is_err());
        let space = ActionSpace::from_meanings(&["hold".into(), "drain:x0.8".into()]).unwrap();
        assert_eq!(space.meanings(), ["hold", "drain:x0.8"]);
        assert_eq!(space.actions()[1], Action::ScaleToSmoothedDrain(0.8));
        assert!(space.uses_history());
        for bad in ["drain:x0", "drain:x-1", "drain:1", "drain:xnan"] {
            assert_eq!(Action::parse(bad), Err(ActionError::BadMeaning(bad.into())));
        }
        // 2.5 tasks/s of 2 s tasks (load 5), deadline 3 s, no backlog.
        let calm = Signals {
            interval_s: 8.0,
            arrivals: 20.0,
            completions: 20.0,
            completions_on_time: 20.0,
            service_mean_s: Some(2.0),
            service_p95_s: Some(2.0),
            deadline_mean_s: Some(3.0),
            ..sig(3.0)
        };
        assert_eq!(backlog_floor(&calm), Some(5.0));
        let est = Estimates {
            smoothed: Some(10.0),
            peak: Some(12.0),
            plan: None,
        };
        // ceil(0.8 * 10) = 8 is above the floor of 5.
        assert_eq!(space.apply_with(1, &calm, &est), 8);
        // A backlog of 7: horizon max(3 - 2, 2) = 2 s, ceil(7 * 2 / 2) = 7
        // more servers -> floor 12 beats 8.
        let queued = Signals {
            backlog: 7.0,
            ..calm
        };
        assert_eq!(backlog_floor(&queued), Some(12.0));
        assert_eq!(space.apply_with(1, &queued, &est), 12);
        // Clamped to max_replicas.
        let flood = Signals {
            backlog: 100.0,
            ..calm
        };
        assert_eq!(space.apply_with(1, &flood, &est), 32);
        // No smoothed estimate yet: the floor still applies, never below the
        // current count (hold).
        assert_eq!(space.apply_with(1, &queued, &Estimates::default()), 12);
        assert_eq!(space.apply_with(1, &calm, &Estimates::default()), 5);
        assert_eq!(space.apply_with(1, &sig(3.0), &Estimates::default()), 3);
        // Without a history (`apply`): the smoothed level is this interval's
        // estimate.
        let e = staffing_estimate(&queued, DEFAULT_EPS).unwrap();
        assert_eq!(space.apply(1, &queued), (0.8 * e).ceil().max(12.0) as u32);
    }

    #[test]
    fn observer_history_drives_smoothed_and_peak() {
        use crate::observation::Observer;
        let window = |arrivals: f64| Signals {
            interval_s: 8.0,
            arrivals,
            completions: arrivals,
            completions_on_time: arrivals,
            service_mean_s: Some(1.0),
            service_p95_s: Some(1.0),
            deadline_mean_s: Some(2.0),
            ..sig(3.0)
        };
        let (high, low) = (window(160.0), window(40.0));
        let (e_high, e_low) = (
            staffing_estimate(&high, DEFAULT_EPS).unwrap(),
            staffing_estimate(&low, DEFAULT_EPS).unwrap(),
        );
        // A v1 observer keeps the history too (its vectors do not show it).
        let mut obs = Observer::v1();
        assert_eq!(obs.estimates(), Estimates::default());
        obs.observe(&high);
        obs.observe(&low);
        let est = obs.estimates();
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
        assert!(close(est.smoothed, 0.5 * e_low + 0.5 * e_high));
        assert!(close(est.peak, e_high));
        let space = history_space();
        assert_eq!(
            space.apply_with(1, &low, &est),
            (1.2 * (0.5 * e_low + 0.5 * e_high)).ceil() as u32
        );
        assert_eq!(space.apply_with(2, &low, &est), e_high.ceil() as u32);
        // The one-window decode would have dropped to the low estimate.
        assert_eq!(space.apply(2, &low), e_low.ceil() as u32);
        obs.reset();
        assert_eq!(obs.estimates(), Estimates::default());
    }
}
