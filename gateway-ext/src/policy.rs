//! A farm's policy as the loop runs it: a built-in of farm-policy, an ONNX
//! model (inference off the reactor), or an external controller, always
//! with a built-in fallback kept warm beside it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use farm_model::action::{ActionSpace, Estimates};
use farm_model::scenario::Platform;
use farm_model::signals::Signals;
use farm_policy::onnx::{OnnxError, OnnxModel};
use farm_policy::{Policy, PolicyError, PolicySpec, builtin};
use tracing::{info, warn};

/// Why a farm's policy could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyLoadError {
    /// A built-in name is unknown or malformed.
    #[error(transparent)]
    Builtin(#[from] PolicyError),
    /// The ONNX model or runtime is unusable.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

enum Active {
    Builtin(Box<dyn Policy>),
    Onnx(Arc<Mutex<OnnxModel>>),
    External,
}

/// What the policy proposed at one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// Desired replicas before the shield.
    pub proposed: u32,
    /// Discrete action, when the policy has an action space.
    pub action: Option<usize>,
    /// Raw outputs (ONNX Q-values or logits).
    pub outputs: Vec<f32>,
    /// The policy that actually decided (the fallback's name when it stood in).
    pub policy: String,
    /// Why the fallback decided, or why an external farm held.
    pub note: Option<String>,
    /// Inference time of an ONNX model.
    pub inference: Option<Duration>,
    /// An inference error (the fallback decided instead).
    pub error: Option<String>,
}

/// A farm's policy and its fallback.
pub struct FarmPolicy {
    spec: PolicySpec,
    active: Active,
    fallback: Box<dyn Policy>,
    fallback_name: String,
    fallback_reason: Option<String>,
    runtime: Option<PathBuf>,
    model_mtime: Option<SystemTime>,
    model_loads: u64,
    external_actions: ActionSpace,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl FarmPolicy {
    /// Builds the policy. An ONNX model is loaded and validated here, so a
    /// bad model is an error at startup, never a wrong decision later.
    pub fn new(
        spec: &PolicySpec,
        fallback: &str,
        platform: &Platform,
        runtime: Option<&Path>,
        external_actions: ActionSpace,
    ) -> Result<FarmPolicy, PolicyLoadError> {
        let fb = builtin(fallback, platform)?;
        let (active, model_mtime) = match spec {
            PolicySpec::Builtin(name) => (Active::Builtin(builtin(name, platform)?), None),
            PolicySpec::Onnx(path) => {
                let m = OnnxModel::load(runtime, path)?;
                (Active::Onnx(Arc::new(Mutex::new(m))), mtime(path))
            }
            PolicySpec::External => (Active::External, None),
        };
        Ok(FarmPolicy {
            spec: spec.clone(),
            active,
            fallback: fb,
            fallback_name: fallback.to_owned(),
            fallback_reason: None,
            runtime: runtime.map(Path::to_owned),
            model_mtime,
            model_loads: u64::from(matches!(spec, PolicySpec::Onnx(_))),
            external_actions,
        })
    }

    /// A farm whose configured policy failed to load: the fallback decides
    /// and the reason is reported until a reload succeeds.
    pub fn degraded(
        spec: &PolicySpec,
        fallback: &str,
        platform: &Platform,
        runtime: Option<&Path>,
        reason: String,
        external_actions: ActionSpace,
    ) -> Result<FarmPolicy, PolicyLoadError> {
        let fb = builtin(fallback, platform)?;
        Ok(FarmPolicy {
            spec: spec.clone(),
            active: Active::Builtin(builtin(fallback, platform)?),
            fallback: fb,
            fallback_name: fallback.to_owned(),
            fallback_reason: Some(reason),
            runtime: runtime.map(Path::to_owned),
            model_mtime: None,
            model_loads: 0,
            external_actions,
        })
    }

    /// Forgets the built-in policies' history (smoothing, stabilisation
    /// windows), as the simulator resets a policy at an episode's start;
    /// an ONNX or external policy holds none here.
    pub fn reset(&mut self) {
        if let Active::Builtin(p) = &mut self.active {
            p.reset();
        }
        self.fallback.reset();
    }

    /// The configured policy.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// How many times an ONNX model was loaded successfully (at start and
    /// by reloads); 0 for other policies.
    pub fn model_loads(&self) -> u64 {
        self.model_loads
    }

    /// Why the fallback is deciding, if it is.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The fallback's name.
    pub fn fallback_name(&self) -> &str {
        &self.fallback_name
    }

    /// The observation layout version the policy takes: the ONNX model's
    /// (1 or 2), else 1 (what external controllers see in `GetSpec`).
    pub fn obs_version(&self) -> u32 {
        match &self.active {
            Active::Onnx(m) => m
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .obs_version(),
            Active::Builtin(_) | Active::External => farm_model::observation::OBS_VERSION,
        }
    }

    /// The action space of the policy (ONNX metadata, or the external
    /// controller's), `None` for built-ins.
    pub fn action_space(&self) -> Option<ActionSpace> {
        match &self.active {
            Active::Onnx(m) => Some(
                m.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .actions()
                    .clone(),
            ),
            Active::External => Some(self.external_actions.clone()),
            Active::Builtin(_) => None,
        }
    }

    /// Whether decisions come over gRPC.
    pub fn is_external(&self) -> bool {
        matches!(self.active, Active::External)
    }

    /// Decides from one interval. `obs` and `estimates` come from the farm's
    /// observer that has just seen `signals` (the staffing history decodes
    /// the `smoothed` / `peak` actions exactly as the simulator does);
    /// `external` is the pending action of an external controller.
    pub async fn decide(
        &mut self,
        now_s: f64,
        signals: &Signals,
        obs: &[f32],
        estimates: &Estimates,
        external: Option<u32>,
    ) -> Proposal {
        // The fallback sees every tick so its windows are warm when it must
        // stand in.
        let fb = self.fallback.decide(now_s, signals);
        let fallback_proposal = |reason: String, error: Option<String>, name: &str| Proposal {
            proposed: fb.desired,
            action: fb.action,
            outputs: Vec::new(),
            policy: name.to_owned(),
            note: Some(reason),
            inference: None,
            error,
        };
        match &mut self.active {
            Active::Builtin(p) => {
                let d = p.decide(now_s, signals);
                Proposal {
                    proposed: d.desired,
                    action: d.action,
                    outputs: Vec::new(),
                    policy: p.name().to_owned(),
                    note: self
                        .fallback_reason
                        .as_ref()
                        .map(|r| format!("fallback: {r}")),
                    inference: None,
                    error: None,
                }
            }
            Active::External => {
                let (proposed, action, note) = match external {
                    Some(a) => (
                        self.external_actions
                            .apply_with(a as usize, signals, estimates),
                        Some(a as usize),
                        None,
                    ),
                    None => (
                        signals.replicas_desired.max(0.0) as u32,
                        None,
                        Some("external: no action received; holding".to_owned()),
                    ),
                };
                Proposal {
                    proposed,
                    action,
                    outputs: Vec::new(),
                    policy: "external".into(),
                    note,
                    inference: None,
                    error: None,
                }
            }
            Active::Onnx(model) => {
                let model = model.clone();
                let obs = obs.to_vec();
                let started = Instant::now();
                let r = tokio::task::spawn_blocking(move || {
                    model
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .infer(&obs)
                })
                .await;
                let took = started.elapsed();
                match r {
                    Ok(Ok(inf)) => {
                        if self.fallback_reason.take().is_some() {
                            info!("ONNX policy recovered; fallback no longer used");
                        }
                        let actions = self.action_space().unwrap_or_default();
                        Proposal {
                            proposed: actions.apply_with(inf.action, signals, estimates),
                            action: Some(inf.action),
                            outputs: inf.outputs,
                            policy: self.spec.to_string(),
                            note: None,
                            inference: Some(took),
                            error: None,
                        }
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, fallback = %self.fallback_name, "ONNX inference failed; fallback decides");
                        let reason = format!("inference error: {e}");
                        self.fallback_reason = Some(reason.clone());
                        fallback_proposal(
                            format!("fallback: {reason}"),
                            Some(e.to_string()),
                            &self.fallback_name,
                        )
                    }
                    Err(join) => {
                        let reason = format!("inference task failed: {join}");
                        self.fallback_reason = Some(reason.clone());
                        fallback_proposal(
                            format!("fallback: {reason}"),
                            Some(reason),
                            &self.fallback_name,
                        )
                    }
                }
            }
        }
    }

    /// An alert for the farm; `Some` when the policy acts on alerts.
    pub fn on_alert(&mut self, now_s: f64, firing: bool, signals: &Signals) -> Option<Proposal> {
        let Active::Builtin(p) = &mut self.active else {
            return None;
        };
        let d = p.on_alert(now_s, firing, signals)?;
        Some(Proposal {
            proposed: d.desired,
            action: d.action,
            outputs: Vec::new(),
            policy: p.name().to_owned(),
            note: Some(format!(
                "alert ({})",
                if firing { "firing" } else { "resolved" }
            )),
            inference: None,
            error: None,
        })
    }

    /// Whether the model file changed since it was loaded.
    pub fn model_changed(&self) -> bool {
        match &self.spec {
            PolicySpec::Onnx(path) => mtime(path) != self.model_mtime,
            _ => false,
        }
    }

    /// Reloads an ONNX model (on SIGHUP or a file change). The new file is
    /// validated first; on failure the current model keeps deciding (or the
    /// fallback, if none was ever loaded) and the error is returned.
    pub fn reload(&mut self) -> Result<bool, OnnxError> {
        let PolicySpec::Onnx(path) = &self.spec else {
            return Ok(false);
        };
        let path = path.clone();
        self.model_mtime = mtime(&path);
        match OnnxModel::load(self.runtime.as_deref(), &path) {
            Ok(m) => {
                self.active = Active::Onnx(Arc::new(Mutex::new(m)));
                self.fallback_reason = None;
                self.model_loads += 1;
                info!(model = %path.display(), loads = self.model_loads, "ONNX model reloaded");
                Ok(true)
            }
            Err(e) => {
                if !matches!(self.active, Active::Onnx(_)) {
                    self.fallback_reason = Some(format!("model failed to load: {e}"));
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_policy::platform;

    fn plat() -> Platform {
        platform(Duration::from_secs(8), 1, 32, None)
    }

    #[tokio::test]
    async fn builtin_policies_decide_like_farm_policy() {
        let s = Signals {
            interval_s: 8.0,
            arrivals: 80.0,
            completions: 40.0,
            completions_on_time: 40.0,
            backlog: 50.0,
            service_mean_s: Some(1.5),
            latency_mean_s: Some(3.0),
            latency_max_s: Some(6.0),
            replicas_desired: 2.0,
            replicas_ready: 2.0,
            replicas_busy: 2.0,
            min_replicas: 1.0,
            max_replicas: 32.0,
            ..Default::default()
        };
        let obs = farm_model::observation::observe(&s);
        for name in farm_policy::builtin_names() {
            let mut ours = FarmPolicy::new(
                &PolicySpec::Builtin((*name).to_owned()),
                "reactive-average",
                &plat(),
                None,
                ActionSpace::default(),
            )
            .unwrap();
            let mut theirs = builtin(name, &plat()).unwrap();
            let p = ours
                .decide(8.0, &s, &obs, &Estimates::default(), None)
                .await;
            assert_eq!(p.proposed, theirs.decide(8.0, &s).desired, "{name}");
            assert_eq!(p.policy, theirs.name());
        }
    }

    #[tokio::test]
    async fn external_applies_the_action_or_holds() {
        let s = Signals {
            replicas_desired: 4.0,
            min_replicas: 1.0,
            max_replicas: 10.0,
            ..Default::default()
        };
        let obs = farm_model::observation::observe(&s);
        let space = ActionSpace::paper();
        let mut p = FarmPolicy::new(
            &PolicySpec::External,
            "reactive-average",
            &plat(),
            None,
            space.clone(),
        )
        .unwrap();
        assert!(p.is_external());
        let held = p.decide(0.0, &s, &obs, &Estimates::default(), None).await;
        assert_eq!(held.proposed, 4);
        assert!(held.note.is_some());
        for a in 0..space.len() {
            let d = p
                .decide(0.0, &s, &obs, &Estimates::default(), Some(a as u32))
                .await;
            assert_eq!(d.proposed, space.apply(a, &s));
            assert_eq!(d.action, Some(a));
        }
    }

    #[tokio::test]
    async fn history_actions_follow_the_observers_estimates() {
        let s = Signals {
            replicas_desired: 4.0,
            min_replicas: 1.0,
            max_replicas: 32.0,
            ..Default::default()
        };
        let obs = farm_model::observation::observe(&s);
        let space =
            ActionSpace::from_meanings(&["hold".into(), "smoothed:x1".into(), "peak:x1.5".into()])
                .unwrap();
        let mut p = FarmPolicy::new(
            &PolicySpec::External,
            "reactive-average",
            &plat(),
            None,
            space,
        )
        .unwrap();
        let history = Estimates {
            smoothed: Some(6.2),
            peak: Some(9.0),
            plan: None,
        };
        let smoothed = p.decide(0.0, &s, &obs, &history, Some(1)).await;
        assert_eq!(smoothed.proposed, 7, "ceil(1 x 6.2)");
        let peak = p.decide(0.0, &s, &obs, &history, Some(2)).await;
        assert_eq!(peak.proposed, 14, "ceil(1.5 x 9)");
        // No history yet (an empty window has no estimate): hold.
        let none = p
            .decide(0.0, &s, &obs, &Estimates::default(), Some(1))
            .await;
        assert_eq!(none.proposed, 4);
    }

    #[test]
    fn unknown_builtin_is_refused() {
        let e = FarmPolicy::new(
            &PolicySpec::Builtin("nope".into()),
            "reactive-average",
            &plat(),
            None,
            ActionSpace::default(),
        )
        .err()
        .unwrap();
        assert!(matches!(
            e,
            PolicyLoadError::Builtin(PolicyError::Unknown(_))
        ));
    }
}
