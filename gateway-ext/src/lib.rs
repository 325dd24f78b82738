//! `gateway-ext`: the rust-farm autoscaler that sits in front of (or
//! beside) the OpenFaaS gateway, so farm workers are sized by a policy
//! instead of the Community Edition's fixed alert step.
//!
//! - [`http`]: reverse proxy of everything to `UPSTREAM_URL`, with
//!   `/system/alert` and `/system/scale-function/{name}` intercepted for
//!   managed farms, basic auth like the gateway, `/system/autoscaler`,
//!   `/metrics`, `/healthz`.
//! - [`farm`]: one control loop per managed farm: observe (`farm-observe`:
//!   JetStream consumer info, the collector's `MetricsSnapshot`, replicas),
//!   build the farm-model observation, decide ([`policy`]: farm-policy's
//!   built-ins or ONNX models run off the reactor, or an external
//!   controller), shield (`farm_policy::shield`), act ([`actuator`], with
//!   shard functions where replicas per function are capped), record.
//! - [`grpc`]: `FarmControl` for external controllers and watchers.
//! - [`config`]: a pure parse of the environment; [`manager`]: the farms
//!   (farms file + annotation discovery).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::HashMap;
//! let env: HashMap<String, String> =
//!     [("UPSTREAM_URL".to_owned(), "http://127.0.0.1:8081".to_owned())].into_iter().collect();
//! let cfg = gateway_ext::config::Config::from_map(&env)?;
//! let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let service = gateway_ext::Service::start(cfg).await?;
//! let task = tokio::spawn(service.serve(http, Some(grpc), async move { let _ = stopped.await; }));
//! // ... every interval each managed farm is observed, decided, shielded, scaled.
//! let _ = stop.send(());
//! task.await??;
//! # Ok(()) }
//! ```

pub mod actuator;
pub mod auth;
pub mod config;
pub mod farm;
pub mod grpc;
pub mod http;
pub mod manager;
pub mod metrics;
pub mod policy;
pub mod provider;
pub mod types;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use farm_observe::SharedNats;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::actuator::Retry;
use crate::auth::Credentials;
use crate::config::Config;
use crate::farm::FarmDeps;
pub use crate::manager::{Manager, StartError};
use crate::metrics::Metrics;
use crate::provider::{HttpProvider, Provider, http_client};

/// Exit code of a configuration error (`EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// A started gateway-ext: farms running, not yet serving.
pub struct Service {
    cfg: Config,
    manager: Arc<Manager>,
    http: Arc<http::HttpState>,
    stop: CancellationToken,
}

impl Service {
    /// Loads credentials, connects (lazily) to NATS, and starts the farms of
    /// the farms file and of a first discovery. A policy that cannot be
    /// built (unknown built-in, invalid ONNX model, missing ONNX Runtime) is
    /// an error here, before anything is served.
    pub async fn start(cfg: Config) -> Result<Service, StartError> {
        Self::start_with_provider(cfg, None).await
    }

    /// As [`Service::start`], with a provider other than the HTTP one (tests).
    pub async fn start_with_provider(
        cfg: Config,
        provider: Option<Arc<dyn Provider>>,
    ) -> Result<Service, StartError> {
        let auth = if cfg.basic_auth {
            Some(Credentials::load(&cfg.secret_mount_path)?)
        } else {
            None
        };
        let client = http_client();
        let provider: Arc<dyn Provider> = match provider {
            Some(p) => p,
            None => Arc::new(HttpProvider::new(
                client.clone(),
                &cfg.provider_url,
                auth.as_ref().map(Credentials::header_value),
                cfg.provider_timeout,
            )),
        };
        let stop = CancellationToken::new();
        let nats: SharedNats = Arc::new(OnceCell::new());
        tokio::spawn(connect_nats(cfg.nats.clone(), nats.clone(), stop.clone()));
        let metrics = Arc::new(Metrics::default());
        let (decisions, _) = broadcast::channel(1024);
        let deps = Arc::new(FarmDeps {
            provider: provider.clone(),
            nats,
            metrics: metrics.clone(),
            decisions,
            retry: Retry {
                retries: cfg.scale_retries,
                backoff: cfg.scale_backoff,
            },
            record_capacity: cfg.record_capacity,
            floor_hold: cfg.scale_floor_hold,
            observe_timeout: cfg.observe_timeout,
        });
        let manager = Arc::new(Manager::new(
            deps,
            cfg.defaults.clone(),
            cfg.ort_dylib_path.clone(),
        ));
        for spec in &cfg.farms {
            manager.start_farm(spec.clone(), true)?;
        }
        if cfg.discovery_interval.is_some() {
            manager.discover(true).await?;
        }
        let http = Arc::new(http::HttpState {
            manager: manager.clone(),
            client,
            upstream: cfg.upstream_url.clone(),
            auth,
            metrics,
            provider,
        });
        Ok(Service {
            cfg,
            manager,
            http,
            stop,
        })
    }

    /// The farms.
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }

    /// Serves HTTP (and gRPC when a listener is given) until `shutdown`
    /// resolves; then stops accepting, lets open requests finish (up to 10
    /// s), and stops the farm loops.
    pub async fn serve(
        self,
        http_listener: TcpListener,
        grpc_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartError> {
        let stop = self.stop.clone();
        if let Some(every) = self.cfg.discovery_interval {
            tokio::spawn(discovery_loop(self.manager.clone(), every, stop.clone()));
        }
        // The handler is installed before anything is served: a SIGHUP that
        // arrives once /healthz answers must reload, never kill the process
        // (the default action of SIGHUP).
        tokio::spawn(reload_on_sighup(
            sighup_stream(),
            self.manager.clone(),
            stop.clone(),
        ));
        let grpc_task = grpc_listener.map(|l| {
            let local = l.local_addr().ok();
            info!(addr = ?local, "gRPC FarmControl listening");
            let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
            let svc = grpc::ControlService::new(self.manager.clone(), stop.clone()).into_server();
            let stop = stop.clone();
            tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                    .await
            })
        });
        info!(addr = ?http_listener.local_addr().ok(), upstream = %self.cfg.upstream_url, "HTTP listening");
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                r = http_listener.accept() => {
                    let (stream, _) = match r {
                        Ok(s) => s,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let state = self.http.clone();
                    let svc = service_fn(move |req| http::handle(state.clone(), req));
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
        info!("shutting down");
        drop(http_listener);
        stop.cancel();
        if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
            .await
            .is_err()
        {
            warn!("open connections did not finish within 10 s");
        }
        self.manager.stop_all();
        if let Some(t) = grpc_task {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(StartError::Io(e.to_string())),
                Err(e) => return Err(StartError::Io(e.to_string())),
            }
        }
        Ok(())
    }
}

/// Starts and serves until `shutdown`.
pub async fn run(
    cfg: Config,
    http_listener: TcpListener,
    grpc_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    Service::start(cfg)
        .await?
        .serve(http_listener, grpc_listener, shutdown)
        .await
}

async fn connect_nats(
    cfg: farm_runtime::config::NatsConfig,
    cell: SharedNats,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = tokio::select! {
            r = farm_runtime::nats::connect(&cfg) => r,
            () = stop.cancelled() => return,
        };
        match attempt {
            Ok(c) => {
                info!(server = %c.server_info().version, "connected to NATS");
                let _ = cell.set(c.clone());
                stop.cancelled().await;
                let _ = c.flush().await;
                return;
            }
            Err(e) => {
                if e.is_transient() {
                    warn!(error = %e, retry_in = ?delay, "NATS not reachable; farms run without JetStream signals");
                } else {
                    error!(error = %e, retry_in = ?delay, "NATS refused; farms run without JetStream signals");
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn discovery_loop(manager: Arc<Manager>, every: Duration, stop: CancellationToken) {
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = t.tick() => {
                if let Err(e) = manager.discover(false).await {
                    warn!(error = %e, "discovery");
                }
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn sighup_stream() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot install the SIGHUP handler; models reload on file change only");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

async fn reload_on_sighup(hup: Hangups, manager: Arc<Manager>, stop: CancellationToken) {
    #[cfg(unix)]
    {
        let Some(mut hup) = hup else {
            return;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                s = hup.recv() => {
                    if s.is_none() { return; }
                    info!("SIGHUP: reloading models");
                    manager.reload_all().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (hup, manager);
        stop.cancelled().await;
    }
}
