//! The set of managed farms: those of the farms file (static) and those
//! declared by annotations on worker functions (rediscovered periodically
//! from `GET /system/functions`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use farm_model::action::ActionSpace;
use farm_openfaas::metric_name;
use farm_policy::platform;
use tracing::{error, info, warn};

use crate::config::{
    FarmDefaults, FarmSource, FarmSpec, ROLE_LABEL, alert_farm, farm_from_function,
};
use crate::farm::{self, FarmDeps, FarmHandle};
use crate::policy::{FarmPolicy, PolicyLoadError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A farm's policy could not be built (unknown built-in, bad ONNX model,
    /// missing ONNX Runtime).
    #[error("farm {farm}: policy {policy}: {source}")]
    Policy {
        /// The farm.
        farm: String,
        /// The configured policy.
        policy: String,
        /// Why.
        #[source]
        source: PolicyLoadError,
    },
    /// The basic-auth secret files could not be read.
    #[error("basic auth is on but {path} cannot be read: {message}")]
    AuthSecret {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A listener failed.
    #[error("cannot serve: {0}")]
    Io(String),
}

/// The managed farms.
pub struct Manager {
    farms: RwLock<BTreeMap<String, Arc<FarmHandle>>>,
    discovery_errors: RwLock<BTreeMap<String, String>>,
    deps: Arc<FarmDeps>,
    defaults: FarmDefaults,
    ort: Option<PathBuf>,
}

fn action_space(name: &str) -> ActionSpace {
    if name == "paper" {
        ActionSpace::paper()
    } else {
        ActionSpace::default()
    }
}

/// The platform a farm's policy is built for: its bounds, and its control
/// interval on the run's clock (the wall-clock interval times the farm's
/// time scale), as the simulator would give it.
fn policy_platform(spec: &FarmSpec) -> farm_model::scenario::Platform {
    platform(
        spec.interval.mul_f64(spec.time_scale),
        spec.min,
        spec.max,
        spec.per_function_cap,
    )
}

impl Manager {
    /// An empty manager.
    pub fn new(deps: Arc<FarmDeps>, defaults: FarmDefaults, ort: Option<PathBuf>) -> Self {
        Self {
            farms: RwLock::new(BTreeMap::new()),
            discovery_errors: RwLock::new(BTreeMap::new()),
            deps,
            defaults,
            ort,
        }
    }

    /// Shared services of the farm loops.
    pub fn deps(&self) -> &Arc<FarmDeps> {
        &self.deps
    }

    fn build_policy(&self, spec: &FarmSpec) -> Result<FarmPolicy, PolicyLoadError> {
        let plat = policy_platform(spec);
        FarmPolicy::new(
            &spec.policy,
            &spec.fallback,
            &plat,
            self.ort.as_deref(),
            action_space(&spec.action_space),
        )
    }

    /// Starts a farm. With `strict`, a policy that cannot be built is an
    /// error (startup); otherwise the farm runs on its fallback and reports
    /// why (a farm discovered later must not take the service down).
    // StartError is large but only built on the (rare) error path.
    #[allow(clippy::result_large_err)]
    pub fn start_farm(&self, spec: FarmSpec, strict: bool) -> Result<(), StartError> {
        let policy = match self.build_policy(&spec) {
            Ok(p) => p,
            Err(e) if strict => {
                return Err(StartError::Policy {
                    farm: spec.farm.clone(),
                    policy: spec.policy.to_string(),
                    source: e,
                });
            }
            Err(e) => {
                error!(farm = %spec.farm, policy = %spec.policy, error = %e, fallback = %spec.fallback, "policy unusable; the fallback decides");
                let plat = policy_platform(&spec);
                FarmPolicy::degraded(
                    &spec.policy,
                    &spec.fallback,
                    &plat,
                    self.ort.as_deref(),
                    format!("policy failed to load: {e}"),
                    action_space(&spec.action_space),
                )
                .map_err(|source| StartError::Policy {
                    farm: spec.farm.clone(),
                    policy: spec.fallback.clone(),
                    source,
                })?
            }
        };
        let name = spec.farm.clone();
        let handle = farm::start(spec, policy, self.deps.clone());
        let old = self.write().insert(name, handle);
        if let Some(old) = old {
            old.stop();
        }
        Ok(())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<FarmHandle>>> {
        self.farms
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<FarmHandle>>> {
        self.farms
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A farm by name.
    pub fn farm(&self, name: &str) -> Option<Arc<FarmHandle>> {
        self.read().get(name).cloned()
    }

    /// The farm whose worker (or shard) is `function`.
    pub fn by_function(&self, function: &str) -> Option<Arc<FarmHandle>> {
        self.read().values().find(|f| f.owns(function)).cloned()
    }

    /// Every farm.
    pub fn farms(&self) -> Vec<Arc<FarmHandle>> {
        self.read().values().cloned().collect()
    }

    /// Problems found in annotations at the last discovery, by function.
    pub fn discovery_errors(&self) -> BTreeMap<String, String> {
        self.discovery_errors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads `/system/functions` and starts, restarts or stops
    /// annotation-declared farms to match. `strict` makes a policy that
    /// cannot be built an error (the first discovery at startup).
    pub async fn discover(&self, strict: bool) -> Result<(), StartError> {
        let list = match self.deps.provider.list().await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "discovery: cannot list functions");
                self.deps.metrics.inc(
                    "gateway_ext_errors_total",
                    &[("farm", ""), ("kind", "discovery")],
                    1.0,
                );
                return Ok(());
            }
        };
        let mut wanted: BTreeMap<String, FarmSpec> = BTreeMap::new();
        let mut errors = BTreeMap::new();
        // Every farm function by (metric name, farm, role), for the
        // `gateway_ext_farm_function` series the farm-load alert rule joins
        // on (deploy/prometheus/alert.rules.yml).
        let mut members: Vec<(String, String, String)> = Vec::new();
        for f in &list {
            if let Some(farm) = alert_farm(&f.annotations, &f.labels) {
                let role = f.labels.get(ROLE_LABEL).map_or("", |r| r.trim());
                members.push((metric_name(&f.name), farm, role.to_owned()));
            }
            match farm_from_function(&f.name, &f.annotations, &f.labels, &self.defaults) {
                None => {}
                Some(Err(errs)) => {
                    let msg = errs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    warn!(function = %f.name, error = %msg, "invalid farm annotations; not managed");
                    errors.insert(f.name.clone(), msg);
                }
                Some(Ok(spec)) => {
                    members.push((metric_name(&f.name), spec.farm.clone(), "worker".to_owned()));
                    if let Some(other) = wanted.get(&spec.farm) {
                        let msg = format!(
                            "farm {} is already declared by {}",
                            spec.farm, other.function
                        );
                        errors.insert(f.name.clone(), msg);
                        continue;
                    }
                    wanted.insert(spec.farm.clone(), spec);
                }
            }
        }
        let series: Vec<Vec<(&str, &str)>> = members
            .iter()
            .map(|(function, farm, role)| {
                vec![
                    ("function_name", function.as_str()),
                    ("farm", farm.as_str()),
                    ("role", role.as_str()),
                ]
            })
            .collect();
        self.deps
            .metrics
            .replace_all("gateway_ext_farm_function", &series, 1.0);
        *self
            .discovery_errors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = errors;
        let current: Vec<(String, FarmSpec)> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.spec().clone()))
            .collect();
        for (name, spec) in &current {
            if spec.source == FarmSource::Annotations && wanted.get(name) != Some(spec) {
                info!(farm = %name, "farm no longer declared (or changed); stopping its loop");
                if let Some(h) = self.write().remove(name) {
                    h.stop();
                }
            }
        }
        for (name, spec) in wanted {
            let existing = self.farm(&name).map(|h| h.spec().clone());
            match existing {
                Some(s) if s.source == FarmSource::File => {
                    warn!(farm = %name, function = %spec.function, "farm declared by annotations is already in the farms file; the file wins");
                }
                Some(_) => {}
                None => {
                    info!(farm = %name, function = %spec.function, policy = %spec.policy, "discovered farm");
                    self.start_farm(spec, strict)?;
                }
            }
        }
        Ok(())
    }

    /// Reloads every ONNX policy (SIGHUP).
    pub async fn reload_all(&self) {
        for f in self.farms() {
            match f.reload().await {
                Ok(Ok(true)) => info!(farm = %f.spec().farm, "policy reloaded"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => warn!(farm = %f.spec().farm, error = %e, "reload refused"),
                Err(e) => warn!(error = %e, "reload"),
            }
        }
    }

    /// Stops every farm loop.
    pub fn stop_all(&self) {
        for (_, f) in std::mem::take(&mut *self.write()) {
            f.stop();
        }
    }
}
