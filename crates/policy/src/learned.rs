//! A learned policy: an ONNX model ([`crate::onnx`]) as a [`Policy`], so the
//! simulator and farmctl's live loop run the very same decision code:
//! observation vector -> greedy action -> action space.

use std::path::Path;

use farm_model::action::ActionSpace;
use farm_model::observation::Observer;
use farm_model::signals::Signals;
use tracing::warn;

use crate::onnx::{OnnxError, OnnxModel};
use crate::{Decision, Policy};

/// An ONNX model deciding greedily, holding the current count when an
/// inference fails.
pub struct OnnxPolicy {
    name: String,
    model: OnnxModel,
    actions: ActionSpace,
    errors: u64,
    /// The model's observation layout; one policy value drives one run, so
    /// its history (layout 2) is that run's.
    observer: Observer,
}

impl OnnxPolicy {
    /// Loads and validates `path` with ONNX Runtime from `runtime`; `name`
    /// is the name the policy reports (its spec, `onnx:<path>`).
    pub fn load(name: &str, runtime: Option<&Path>, path: &Path) -> Result<OnnxPolicy, OnnxError> {
        let model = OnnxModel::load(runtime, path)?;
        let actions = model.actions().clone();
        // The loader accepted the version, so the observer exists for it.
        let observer = Observer::new(model.obs_version()).unwrap_or_else(|_| Observer::v1());
        Ok(OnnxPolicy {
            name: name.to_string(),
            model,
            actions,
            errors: 0,
            observer,
        })
    }
}

impl Policy for OnnxPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn reset(&mut self) {
        self.observer.reset();
    }

    fn decide(&mut self, _now_s: f64, s: &Signals) -> Decision {
        match self.model.infer(&self.observer.observe(s)) {
            Ok(inf) => Decision {
                desired: self
                    .actions
                    .apply_with(inf.action, s, &self.observer.estimates()),
                action: Some(inf.action),
            },
            Err(e) => {
                // Holding is the safe choice; the count shows in the logs.
                self.errors += 1;
                warn!(policy = %self.name, error = %e, errors = self.errors, "inference failed; holding");
                Decision::to(s.replicas_desired.max(0.0).round() as u32)
            }
        }
    }
}
