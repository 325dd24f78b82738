//! A replayed start-up delay sequence: given delays in start order, then a
//! fallback distribution once they run out.
//!
//! `farmctl compare` records the start-up delay every live replica really
//! had (scale call -> health answers, in scenario seconds) and gives the
//! sequence to the simulator, so the simulated run sees the same draws as
//! the live one instead of independent ones. With policies that keep their
//! last scale-up (keda, hpa) one different draw changes the whole run, so
//! independent draws hide the model's fidelity behind the platform's luck.
//!
//! YAML (a `platform.startup_delay`-shaped map, but not a [`Dist`] kind:
//! a [`Dist`] is stateless and matched exhaustively across the workspace,
//! a replay has a cursor):
//!
//! ```yaml
//! kind: replay
//! values: [5.2, 7.9, 6.1]          # seconds, in start order
//! fallback: {kind: uniform, min: 5, max: 9}
//! ```

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::check::finite_nonneg;
use super::{Dist, ScenarioError};

/// Start-up delays replayed in order, then drawn from `fallback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ReplayRepr", into = "ReplayRepr")]
pub struct DelaySequence {
    values: Vec<f64>,
    fallback: Dist,
    next: usize,
    fallbacks: usize,
}

/// The YAML shape: a map tagged `kind: replay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum ReplayRepr {
    Replay { values: Vec<f64>, fallback: Dist },
}

impl TryFrom<ReplayRepr> for DelaySequence {
    type Error = ScenarioError;
    fn try_from(r: ReplayRepr) -> Result<Self, ScenarioError> {
        let ReplayRepr::Replay { values, fallback } = r;
        DelaySequence::new(values, fallback)
    }
}

impl From<DelaySequence> for ReplayRepr {
    fn from(s: DelaySequence) -> ReplayRepr {
        ReplayRepr::Replay {
            values: s.values,
            fallback: s.fallback,
        }
    }
}

/// Field path used in errors.
const FIELD: &str = "startup_delay";

impl DelaySequence {
    /// `values` (seconds, in start order) then `fallback`. Every value must
    /// be finite and non-negative and the fallback valid
    /// ([`ScenarioError::Invalid`] naming the field otherwise). An empty
    /// list is allowed: the fallback alone.
    pub fn new(values: Vec<f64>, fallback: Dist) -> Result<DelaySequence, ScenarioError> {
        for (i, v) in values.iter().enumerate() {
            finite_nonneg(&format!("{FIELD}.values[{i}]"), *v)?;
        }
        fallback.validate(&format!("{FIELD}.fallback"))?;
        Ok(DelaySequence {
            values,
            fallback,
            next: 0,
            fallbacks: 0,
        })
    }

    /// Parse the YAML form (`kind: replay`, `values`, `fallback`):
    /// [`ScenarioError::Yaml`] for broken YAML, [`ScenarioError::Parse`]
    /// for a wrong shape, [`ScenarioError::Invalid`] for bad values.
    pub fn from_yaml(text: &str) -> Result<DelaySequence, ScenarioError> {
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ScenarioError::Yaml(e.to_string()))?;
        let repr: ReplayRepr = serde_yaml::from_value(value).map_err(|e| ScenarioError::Parse {
            field: FIELD.into(),
            message: format!(
                "{e} (expected {{kind: replay, values: [seconds..], fallback: {{kind: ..}}}})"
            ),
        })?;
        DelaySequence::try_from(repr)
    }

    /// The next start-up delay, seconds: the next recorded value, or a
    /// draw from the fallback once they are used up.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> f64 {
        match self.values.get(self.next) {
            Some(v) => {
                self.next += 1;
                *v
            }
            None => {
                self.fallbacks += 1;
                self.fallback.sample(rng)
            }
        }
    }

    /// The recorded values, seconds.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The distribution used after the values.
    pub fn fallback(&self) -> &Dist {
        &self.fallback
    }

    /// Values handed out so far.
    pub fn replayed(&self) -> usize {
        self.next
    }

    /// Fallback draws handed out so far.
    pub fn fallbacks(&self) -> usize {
        self.fallbacks
    }

    /// Back to the first value (counters cleared).
    pub fn rewind(&mut self) {
        self.next = 0;
        self.fallbacks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64;

    #[test]
    fn values_come_in_order_then_the_fallback() {
        let mut s = DelaySequence::new(vec![3.0, 1.5, 7.0], Dist::Constant(9.0)).unwrap();
        let mut rng = Pcg64::seed_from_u64(1);
        let got: Vec<f64> = (0..5).map(|_| s.next_delay(&mut rng)).collect();
        assert_eq!(got, [3.0, 1.5, 7.0, 9.0, 9.0]);
        assert_eq!((s.replayed(), s.fallbacks()), (3, 2));
        s.rewind();
        assert_eq!(s.next_delay(&mut rng), 3.0);
        assert_eq!((s.replayed(), s.fallbacks()), (1, 0));
    }

    #[test]
    fn an_empty_sequence_is_the_fallback_alone() {
        let d = Dist::Uniform { min: 5.0, max: 9.0 };
        let mut s = DelaySequence::new(Vec::new(), d.clone()).unwrap();
        let (mut a, mut b) = (Pcg64::seed_from_u64(7), Pcg64::seed_from_u64(7));
        for _ in 0..20 {
            assert_eq!(s.next_delay(&mut a), d.sample(&mut b));
        }
        assert_eq!(s.fallbacks(), 20);
    }

    #[test]
    fn yaml_round_trips() {
        let s = DelaySequence::from_yaml(
            "kind: replay\nvalues: [5.2, 7.9]\nfallback: {kind: uniform, min: 5, max: 9}\n",
        )
        .unwrap();
        assert_eq!(s.values(), [5.2, 7.9]);
        assert_eq!(s.fallback(), &Dist::Uniform { min: 5.0, max: 9.0 });
        let text = serde_yaml::to_string(&s).unwrap();
        assert!(text.contains("kind: replay"), "{text}");
        assert_eq!(DelaySequence::from_yaml(&text).unwrap(), s);
    }

    #[test]
    fn bad_input_gives_typed_errors() {
        let e = DelaySequence::from_yaml(
            "kind: replay\nvalues: [1, -2]\nfallback: {kind: constant, value: 1}",
        )
        .unwrap_err();
        assert!(
            matches!(&e, ScenarioError::Invalid { field, .. } if field == "startup_delay.values[1]"),
            "{e}"
        );
        let e = DelaySequence::from_yaml(
            "kind: replay\nvalues: [1]\nfallback: {kind: exponential, mean: 0}",
        )
        .unwrap_err();
        assert!(
            matches!(&e, ScenarioError::Invalid { field, .. } if field == "startup_delay.fallback.mean"),
            "{e}"
        );
        for bad in [
            "kind: replay\nvalues: [1]",     // no fallback
            "kind: uniform\nmin: 1\nmax: 2", // not a replay
            "kind: replay\nvalues: one\nfallback: {kind: constant, value: 1}", // not a list
            "kind: replay\nvalues: [1]\nfallback: {kind: constant, value: 1}\nextra: 2",
        ] {
            let e = DelaySequence::from_yaml(bad).unwrap_err();
            assert!(matches!(e, ScenarioError::Parse { .. }), "{bad}: {e}");
        }
        assert!(matches!(
            DelaySequence::from_yaml("kind: [replay"),
            Err(ScenarioError::Yaml(_))
        ));
        assert!(matches!(
            DelaySequence::new(vec![f64::NAN], Dist::Constant(1.0)),
            Err(ScenarioError::Invalid { .. })
        ));
    }
}
