//! When to decide besides the regular tick: an early decision when the
//! backlog jumps.
//!
//! A controller that decides every 8 s sees a burst up to 8 s late, and
//! every one of those seconds is spent from the burst's deadlines. The
//! simulator and gateway-ext both arm a [`BacklogJump`] trigger after each
//! decision from that decision's [`Signals`], watch the work queue's
//! backlog between ticks, and decide at once when it has grown by more than
//! the farm can absorb: a share of what the current replicas serve within
//! one deadline. The regular ticks restart from the early decision.
//!
//! ```
//! use farm_model::cadence::BacklogJump;
//! use farm_model::signals::Signals;
//!
//! let trigger = BacklogJump::default();
//! // 4 replicas, 1 s tasks, 4 s deadlines: 4 * 4 / 1 = 16 tasks per deadline,
//! // half of which (8) is the jump that triggers an early decision.
//! let s = Signals {
//!     backlog: 2.0,
//!     replicas_desired: 4.0,
//!     replicas_ready: 4.0,
//!     service_mean_s: Some(1.0),
//!     deadline_mean_s: Some(4.0),
//!     ..Default::default()
//! };
//! let armed = trigger.arm(&s, 10.0);
//! assert_eq!(armed.jump(), 8.0);
//! assert!(!armed.fires(9.0, 12.0)); // grew by 7
//! assert!(armed.fires(10.0, 12.0)); // grew by 8
//! assert!(!armed.fires(50.0, 10.5)); // too soon after the decision
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::signals::Signals;

/// The backlog-jump trigger's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BacklogJump {
    /// Share of one deadline's service capacity of the current replicas
    /// that the backlog must grow by, (0, 10].
    pub deadline_share: f64,
    /// Smallest jump that fires, tasks (>= 1): the floor, and the whole
    /// threshold while service time or deadline are unknown.
    pub min_jump: f64,
    /// Shortest time between a decision and an early one, seconds (>= 0).
    pub min_gap_s: f64,
}

impl Default for BacklogJump {
    fn default() -> Self {
        BacklogJump {
            deadline_share: 0.5,
            min_jump: 4.0,
            min_gap_s: 1.0,
        }
    }
}

/// A setting of [`BacklogJump`] out of its range.
#[derive(Debug, Clone, PartialEq)]
pub struct CadenceError(String);

impl fmt::Display for CadenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CadenceError {}

impl BacklogJump {
    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), CadenceError> {
        let bad = |what: &str, v: f64, range: &str| {
            Err(CadenceError(format!(
                "backlog-jump trigger: {what} = {v} is out of range ({range})"
            )))
        };
        if !(self.deadline_share > 0.0 && self.deadline_share <= 10.0) {
            return bad("share", self.deadline_share, "0 < share <= 10");
        }
        if !(self.min_jump >= 1.0 && self.min_jump.is_finite()) {
            return bad("jump", self.min_jump, "a finite number of tasks >= 1");
        }
        if !(self.min_gap_s >= 0.0 && self.min_gap_s.is_finite()) {
            return bad("gap", self.min_gap_s, "finite seconds >= 0");
        }
        Ok(())
    }

    /// Parses a command-line or environment setting: `off` (or `none`) for
    /// no early decisions, `on` (or `default`) for the defaults, or
    /// comma-separated `share=X`, `jump=N`, `gap=S` overriding them.
    pub fn parse(text: &str) -> Result<Option<BacklogJump>, CadenceError> {
        let text = text.trim();
        match text {
            "off" | "none" => return Ok(None),
            "on" | "default" => return Ok(Some(BacklogJump::default())),
            _ => {}
        }
        let mut t = BacklogJump::default();
        for part in text.split(',') {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                CadenceError(format!(
                    "backlog-jump trigger {text:?}: expected on, off or key=value pairs \
                     (share=, jump=, gap=), got {part:?}"
                ))
            })?;
            let v: f64 = value.trim().parse().map_err(|_| {
                CadenceError(format!(
                    "backlog-jump trigger {text:?}: {key} = {value:?} is not a number"
                ))
            })?;
            match key.trim() {
                "share" => t.deadline_share = v,
                "jump" => t.min_jump = v,
                "gap" => t.min_gap_s = v,
                other => {
                    return Err(CadenceError(format!(
                        "backlog-jump trigger {text:?}: unknown key {other:?} \
                         (known: share, jump, gap)"
                    )));
                }
            }
        }
        t.validate()?;
        Ok(Some(t))
    }

    /// The trigger armed by a decision taken at `now_s` on `signals`, for
    /// the replicas the signals report; once the decision is known, give
    /// its replica count to [`Armed::set_replicas`].
    pub fn arm(&self, signals: &Signals, now_s: f64) -> Armed {
        let deadline = signals.deadline_mean_s.or(signals.deadline_min_s);
        let per_replica = match (signals.service_mean_s, deadline) {
            (Some(s), Some(d)) if s > 0.0 && d > 0.0 => self.deadline_share * d / s,
            _ => 0.0,
        };
        let mut armed = Armed {
            at_s: now_s,
            backlog: signals.backlog,
            per_replica,
            min_jump: self.min_jump,
            gap_s: self.min_gap_s,
            replicas: 1.0,
        };
        armed.set_replicas(signals.replicas_desired.max(signals.replicas_ready));
        armed
    }
}

/// A [`BacklogJump`] armed by one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Armed {
    at_s: f64,
    backlog: f64,
    /// Jump per replica, tasks: the share of one deadline's service.
    per_replica: f64,
    min_jump: f64,
    gap_s: f64,
    replicas: f64,
}

impl Armed {
    /// The replicas the decision asked for (at least 1 counts).
    pub fn set_replicas(&mut self, replicas: f64) {
        self.replicas = replicas.max(1.0);
    }

    /// The same trigger for `replicas` asked for: how a host arms it once
    /// the decision is known.
    pub fn for_replicas(mut self, replicas: f64) -> Armed {
        self.set_replicas(replicas);
        self
    }

    /// Growth of the backlog that fires, tasks.
    pub fn jump(&self) -> f64 {
        (self.per_replica * self.replicas).max(self.min_jump)
    }

    /// Whether a backlog of `backlog` at `now_s` calls for a decision now.
    pub fn fires(&self, backlog: f64, now_s: f64) -> bool {
        now_s - self.at_s >= self.gap_s - 1e-9 && backlog - self.backlog >= self.jump()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_on_off_and_overrides() {
        assert_eq!(BacklogJump::parse("off").unwrap(), None);
        assert_eq!(BacklogJump::parse("none").unwrap(), None);
        assert_eq!(
            BacklogJump::parse("on").unwrap(),
            Some(BacklogJump::default())
        );
        let t = BacklogJump::parse("share=0.25, gap=2").unwrap().unwrap();
        assert_eq!(t.deadline_share, 0.25);
        assert_eq!(t.min_gap_s, 2.0);
        assert_eq!(t.min_jump, BacklogJump::default().min_jump);
    }

    #[test]
    fn parse_refuses_bad_input_naming_it() {
        let e = BacklogJump::parse("share=x").unwrap_err().to_string();
        assert!(e.contains("share") && e.contains("not a number"), "{e}");
        let e = BacklogJump::parse("depth=3").unwrap_err().to_string();
        assert!(e.contains("unknown key \"depth\""), "{e}");
        let e = BacklogJump::parse("sometimes").unwrap_err().to_string();
        assert!(e.contains("expected on, off"), "{e}");
        let e = BacklogJump::parse("share=0").unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        let e = BacklogJump::parse("jump=0.5").unwrap_err().to_string();
        assert!(e.contains("jump = 0.5"), "{e}");
        let e = BacklogJump::parse("gap=-1").unwrap_err().to_string();
        assert!(e.contains("gap"), "{e}");
    }

    #[test]
    fn unknown_service_time_uses_the_floor() {
        let s = Signals {
            backlog: 3.0,
            ..Default::default()
        };
        let a = BacklogJump::default().arm(&s, 0.0);
        assert_eq!(a.jump(), 4.0);
        assert!(!a.fires(6.9, 5.0));
        assert!(a.fires(7.0, 5.0));
    }

    #[test]
    fn the_tightest_deadline_stands_in_for_the_mean() {
        let s = Signals {
            replicas_ready: 10.0,
            service_mean_s: Some(2.0),
            deadline_min_s: Some(4.0),
            ..Default::default()
        };
        // 10 replicas * 4 s / 2 s = 20 per deadline, half = 10.
        let mut a = BacklogJump::default().arm(&s, 0.0);
        assert_eq!(a.jump(), 10.0);
        // The decision asked for 30: three times the jump.
        a.set_replicas(30.0);
        assert_eq!(a.jump(), 30.0);
        a.set_replicas(0.0);
        assert_eq!(a.jump(), 4.0);
        assert_eq!(a.for_replicas(30.0).jump(), 30.0);
    }
}
