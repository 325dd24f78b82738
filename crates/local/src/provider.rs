//! The provider: the function registry, its in-process API
//! ([`ProviderHandle`]) and the server lifecycle ([`Provider::run`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::Credentials;
use crate::config::Config;
use crate::error::{ApiError, ProviderError};
use crate::function::{Counts, Ctx, Function, Prepared, min_scale};
use crate::image::ImageStore;
use crate::logs::LogStore;
use crate::types::{FunctionDeployment, FunctionStatus};
use crate::{DEFAULT_NAMESPACE, split_namespace, valid_name};

/// Shared state behind the HTTP routes and the in-process handle.
pub(crate) struct Registry {
    pub ctx: Arc<Ctx>,
    pub images: ImageStore,
    pub auth: Option<Credentials>,
    pub shutdown: CancellationToken,
    functions: Mutex<BTreeMap<String, Arc<Function>>>,
}

impl Registry {
    fn functions(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Function>>> {
        self.functions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, name: &str) -> Result<Arc<Function>, ApiError> {
        let name = self.resolve(name)?;
        self.functions()
            .get(&name)
            .cloned()
            .ok_or(ApiError::NotFound(name))
    }

    /// The function a provider API name refers to: the name itself when a
    /// function has it (a name may contain dots), else `NAME.NAMESPACE`
    /// split at the last dot, the namespace being the default one.
    pub(crate) fn resolve(&self, name: &str) -> Result<String, ApiError> {
        if self.functions().contains_key(name) {
            return Ok(name.to_string());
        }
        match split_namespace(name) {
            (base, Some(ns)) => {
                check_namespace(ns).map_err(|_| ApiError::InvalidFunctionNamespace {
                    name: name.to_string(),
                    namespace: ns.to_string(),
                })?;
                Ok(base.to_string())
            }
            (base, None) => Ok(base.to_string()),
        }
    }

    /// Validates a deployment and resolves its image and secrets.
    fn prepare(&self, spec: FunctionDeployment) -> Result<Prepared, ApiError> {
        if !valid_name(&spec.service) {
            return Err(ApiError::InvalidName(spec.service));
        }
        check_namespace(&spec.namespace)?;
        if let Some(v) = spec.labels.get("com.openfaas.scale.min")
            && min_scale(&spec).is_none()
        {
            return Err(ApiError::InvalidLabel {
                key: "com.openfaas.scale.min".into(),
                value: v.clone(),
            });
        }
        let launch = self.images.resolve(&spec.image, &spec.env_process)?;
        let mut secrets = Vec::new();
        for name in &spec.secrets {
            let path = self.ctx.config.secrets_dir.join(name);
            if !valid_name(name) || !path.is_file() {
                return Err(ApiError::MissingSecret {
                    name: name.clone(),
                    path,
                });
            }
            secrets.push((name.clone(), path));
        }
        Ok(Prepared {
            spec,
            launch,
            secrets,
        })
    }
}

/// Accepts the empty namespace and the default one.
pub(crate) fn check_namespace(ns: &str) -> Result<(), ApiError> {
    if ns.is_empty() || ns == DEFAULT_NAMESPACE {
        Ok(())
    } else {
        Err(ApiError::InvalidNamespace(ns.to_string()))
    }
}

/// In-process access to the provider: what the HTTP routes do, callable
/// from the program that embeds the provider (farmctl). Cheap to clone.
#[derive(Clone)]
pub struct ProviderHandle {
    pub(crate) registry: Arc<Registry>,
}

impl ProviderHandle {
    /// Deploys a new function and starts `com.openfaas.scale.min` replicas
    /// (default 1). Must be called inside a tokio runtime.
    pub fn deploy(&self, spec: FunctionDeployment) -> Result<(), ApiError> {
        if self.registry.shutdown.is_cancelled() {
            return Err(ApiError::ShuttingDown);
        }
        let mut functions = self.registry.functions();
        if functions.contains_key(&spec.service) {
            return Err(ApiError::AlreadyExists(spec.service));
        }
        let prepared = self.registry.prepare(spec)?;
        let initial = min_scale(&prepared.spec).unwrap_or(1);
        let name = prepared.spec.service.clone();
        info!(function = %name, image = %prepared.spec.image, replicas = initial, "deploy");
        let f = Function::start(self.registry.ctx.clone(), prepared, initial);
        functions.insert(name, f);
        Ok(())
    }

    /// Updates a deployed function; its replicas roll over to the new spec
    /// and keep their count.
    pub fn update(&self, spec: FunctionDeployment) -> Result<(), ApiError> {
        let f = self.registry.get(&spec.service)?;
        let prepared = self.registry.prepare(spec)?;
        f.update(prepared);
        Ok(())
    }

    /// Deploys, or updates if the function exists.
    pub fn apply(&self, spec: FunctionDeployment) -> Result<(), ApiError> {
        match self.update(spec.clone()) {
            Err(ApiError::NotFound(_)) => self.deploy(spec),
            other => other,
        }
    }

    /// The function `name` refers to (`NAME` or `NAME.openfaas-fn`, see
    /// [`crate::split_namespace`]), whether or not it is deployed.
    pub fn resolve(&self, name: &str) -> Result<String, ApiError> {
        self.registry.resolve(name)
    }

    /// Sets a function's desired replica count.
    pub fn scale(&self, name: &str, replicas: u64) -> Result<(), ApiError> {
        let max = self.registry.ctx.config.max_replicas;
        let f = self.registry.get(name)?;
        if replicas > max {
            return Err(ApiError::TooManyReplicas {
                requested: replicas,
                max,
            });
        }
        f.scale(replicas);
        Ok(())
    }

    /// Deletes a function; its replicas drain in the background.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        let name = &self.registry.resolve(name)?;
        let f = self
            .registry
            .functions()
            .remove(name)
            .ok_or_else(|| ApiError::NotFound(name.to_string()))?;
        info!(function = %name, "delete");
        f.delete();
        Ok(())
    }

    /// The status of one function.
    pub fn status(&self, name: &str) -> Result<FunctionStatus, ApiError> {
        Ok(self.registry.get(name)?.status())
    }

    /// The replica starts of one function, oldest first
    /// ([`crate::ReplicaStart`]).
    pub fn starts(&self, name: &str) -> Result<Vec<crate::ReplicaStart>, ApiError> {
        Ok(self.registry.get(name)?.starts())
    }

    /// The status of every function, by name.
    pub fn list(&self) -> Vec<FunctionStatus> {
        let fs: Vec<Arc<Function>> = self.registry.functions().values().cloned().collect();
        fs.iter().map(|f| f.status()).collect()
    }

    /// Waits until `name` has at least `available` available replicas.
    /// Returns the counts then, or [`ApiError::Unavailable`] after `wait`.
    pub async fn wait_available(
        &self,
        name: &str,
        available: u64,
        wait: Duration,
    ) -> Result<(u64, u64), ApiError> {
        let f = self.registry.get(name)?;
        let mut rx = f.subscribe();
        let res =
            tokio::time::timeout(wait, rx.wait_for(|c: &Counts| c.available >= available)).await;
        match res {
            Ok(Ok(c)) => Ok((c.replicas, c.available)),
            _ => Err(ApiError::Unavailable {
                name: name.to_string(),
                waited: wait,
            }),
        }
    }

    /// The image store deployments are resolved in.
    pub fn images(&self) -> &ImageStore {
        &self.registry.images
    }
}

/// The local provider. Create it with [`Provider::new`], take
/// [`Provider::handle`]s for in-process use, then [`Provider::run`] it.
pub struct Provider {
    registry: Arc<Registry>,
    // Owned temporary state directory, removed when the provider is dropped.
    _state_tmp: Option<tempfile::TempDir>,
}

impl Provider {
    /// Builds a provider from a validated configuration: reads the basic-auth
    /// credentials (if enabled) and creates the state directory.
    pub fn new(config: Config) -> Result<Provider, ProviderError> {
        let auth = if config.basic_auth {
            Some(Credentials::read(&config.secret_mount_path)?)
        } else {
            None
        };
        let (state_dir, state_tmp): (PathBuf, _) = match &config.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| ProviderError::StateDir {
                    path: dir.clone(),
                    source,
                })?;
                (
                    std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
                    None,
                )
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("farm-local-")
                    .tempdir()
                    .map_err(|source| ProviderError::StateDir {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let images = ImageStore::new(config.image_store.clone());
        let ctx = Arc::new(Ctx::new(
            config,
            LogStore::new(DEFAULT_NAMESPACE),
            state_dir,
        ));
        let registry = Arc::new(Registry {
            ctx,
            images,
            auth,
            shutdown: CancellationToken::new(),
            functions: Mutex::new(BTreeMap::new()),
        });
        Ok(Provider {
            registry,
            _state_tmp: state_tmp,
        })
    }

    /// An in-process handle (deploy, scale, status, ...).
    pub fn handle(&self) -> ProviderHandle {
        ProviderHandle {
            registry: self.registry.clone(),
        }
    }

    /// Serves the provider API on `listener` until `shutdown` resolves, then
    /// stops: in-flight requests get the termination grace period to finish,
    /// every replica is sent SIGTERM and given the same grace to drain before
    /// SIGKILL, and `run` returns once every process has exited.
    pub async fn run<F>(self, listener: TcpListener, shutdown: F) -> Result<(), ProviderError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.registry.shutdown.clone();
        let grace = self.registry.ctx.config.termination_grace;
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "farm-local provider listening");
        }
        let app = crate::server::router(self.registry.clone());
        let serve_token = token.clone();
        let mut server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { serve_token.cancelled().await })
                .await
        });
        let served = tokio::select! {
            r = &mut server => Some(r),
            _ = shutdown => None,
        };
        token.cancel();
        let result = match served {
            Some(r) => r,
            None => match tokio::time::timeout(grace, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    warn!(
                        "in-flight requests did not finish within the grace period; closing them"
                    );
                    server.abort();
                    Ok(Ok(()))
                }
            },
        };
        self.stop_all().await;
        match result {
            Ok(r) => r.map_err(ProviderError::Serve),
            Err(join) => Err(ProviderError::Serve(std::io::Error::other(join))),
        }
    }

    /// Deletes every function and waits for all replicas to exit.
    async fn stop_all(&self) {
        let names: Vec<String> = self.registry.functions().keys().cloned().collect();
        let handle = self.handle();
        for name in names {
            let _ = handle.delete(&name);
        }
        let tracker = &self.registry.ctx.tracker;
        tracker.close();
        // Every replica is SIGKILLed at the grace period, so this bound is
        // only hit if a process cannot be reaped at all.
        let bound = self.registry.ctx.config.termination_grace + Duration::from_secs(10);
        if tokio::time::timeout(bound, tracker.wait()).await.is_err() {
            warn!("some replica tasks did not finish");
        }
        info!("farm-local provider stopped");
    }
}
