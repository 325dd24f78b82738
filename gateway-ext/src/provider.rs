//! The OpenFaaS provider API as gateway-ext uses it: a [`Provider`] trait,
//! the HTTP client ([`HttpProvider`]) and an in-memory double
//! ([`MemProvider`]) for unit tests of the actuator and the loop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

use crate::types::{
    DeleteFunctionRequest, FunctionDeployment, FunctionStatus, ScaleServiceRequest,
};

/// The body type of every outgoing request (proxied or our own).
pub type OutBody = BoxBody<Bytes, hyper::Error>;

/// A pooled HTTP/1 client with `TCP_NODELAY`, shared by the proxy and the
/// provider client.
pub type HttpClient = Client<HttpConnector, OutBody>;

/// Builds the shared HTTP client.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector)
}

/// A whole body as an [`OutBody`].
pub fn full_body(b: impl Into<Bytes>) -> OutBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached (connection refused, reset, ...).
    #[error("{method} {url}: provider unreachable: {message}")]
    Transport {
        /// Method of the call.
        method: String,
        /// URL called.
        url: String,
        /// What the HTTP client reported.
        message: String,
    },
    /// The provider did not answer within the configured timeout.
    #[error("{method} {url}: no answer within {timeout:?}")]
    Timeout {
        /// Method of the call.
        method: String,
        /// URL called.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The provider answered with an unexpected status.
    #[error("{method} {url}: provider answered {status}: {body}")]
    Status {
        /// Method of the call.
        method: String,
        /// URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The provider's answer is not the JSON expected.
    #[error("{url}: cannot decode the provider's answer: {message}")]
    Decode {
        /// URL called.
        url: String,
        /// The JSON error.
        message: String,
    },
    /// The in-memory provider was told to fail (unit tests).
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

impl ProviderError {
    /// Whether repeating the same (idempotent) call may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Transport { .. }
            | ProviderError::Timeout { .. }
            | ProviderError::Unavailable(_) => true,
            ProviderError::Status { status, .. } => *status >= 500 || *status == 429,
            ProviderError::Decode { .. } => false,
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Transport { .. } => "transport",
            ProviderError::Timeout { .. } => "timeout",
            ProviderError::Status { .. } => "status",
            ProviderError::Decode { .. } => "decode",
            ProviderError::Unavailable(_) => "unavailable",
        }
    }
}

/// The provider calls gateway-ext makes. Every call is idempotent, so the
/// actuator may retry any of them.
pub trait Provider: Send + Sync + 'static {
    /// `GET /system/functions`.
    fn list(&self) -> BoxFuture<'_, Result<Vec<FunctionStatus>, ProviderError>>;
    /// `GET /system/function/{name}`; `None` when the provider answers 404.
    fn get<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<FunctionStatus>, ProviderError>>;
    /// `POST /system/scale-function/{name}`.
    fn scale<'a>(
        &'a self,
        name: &'a str,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
    /// `POST /system/functions`; a function that already exists is not an error.
    fn deploy<'a>(
        &'a self,
        dep: &'a FunctionDeployment,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
    /// `DELETE /system/functions`; a function that does not exist is not an error.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>>;
}

/// The provider API over HTTP.
#[derive(Clone)]
pub struct HttpProvider {
    client: HttpClient,
    base: String,
    authorization: Option<String>,
    timeout: Duration,
}

impl HttpProvider {
    /// A client of the provider (or gateway) at `base` (`http://host:port`),
    /// sending `authorization` (a full `Authorization` header value) when set.
    pub fn new(
        client: HttpClient,
        base: &str,
        authorization: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            authorization,
            timeout,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ProviderError> {
        let url = format!("{}{}", self.base, path);
        let err_transport = |message: String| ProviderError::Transport {
            method: method.to_string(),
            url: url.clone(),
            message,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| err_transport(e.to_string()))?;
        let mut req = Request::builder().method(method.clone()).uri(uri);
        if let Some(a) = &self.authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(full_body(body.unwrap_or_default()))
            .map_err(|e| err_transport(e.to_string()))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| err_transport(error_chain(&e)))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| err_transport(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Timeout {
                method: method.to_string(),
                url,
                timeout: self.timeout,
            }),
        }
    }

    fn status_error(
        &self,
        method: Method,
        path: &str,
        status: StatusCode,
        body: &[u8],
    ) -> ProviderError {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_owned();
        ProviderError::Status {
            method: method.to_string(),
            url: format!("{}{}", self.base, path),
            status: status.as_u16(),
            body: text,
        }
    }
}

/// The error and its sources on one line (hyper's top-level message alone
/// says only "client error (Connect)").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn encode_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs of strings and maps cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Provider for HttpProvider {
    fn list(&self) -> BoxFuture<'_, Result<Vec<FunctionStatus>, ProviderError>> {
        Box::pin(async move {
            let path = "/system/functions";
            let (status, body) = self.call(Method::GET, path, None).await?;
            if !status.is_success() {
                return Err(self.status_error(Method::GET, path, status, &body));
            }
            serde_json::from_slice(&body).map_err(|e| ProviderError::Decode {
                url: format!("{}{}", self.base, path),
                message: e.to_string(),
            })
        })
    }

    fn get<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<FunctionStatus>, ProviderError>> {
        Box::pin(async move {
            let path = format!("/system/function/{name}");
            let (status, body) = self.call(Method::GET, &path, None).await?;
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(self.status_error(Method::GET, &path, status, &body));
            }
            serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| ProviderError::Decode {
                    url: format!("{}{}", self.base, path),
                    message: e.to_string(),
                })
        })
    }

    fn scale<'a>(
        &'a self,
        name: &'a str,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let path = format!("/system/scale-function/{name}");
            let body = encode_json(&ScaleServiceRequest {
                service_name: name.to_owned(),
                replicas: u64::from(replicas),
                namespace: String::new(),
            });
            let (status, resp) = self.call(Method::POST, &path, Some(body)).await?;
            if !status.is_success() {
                return Err(self.status_error(Method::POST, &path, status, &resp));
            }
            Ok(())
        })
    }

    fn deploy<'a>(
        &'a self,
        dep: &'a FunctionDeployment,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let path = "/system/functions";
            let (status, resp) = self
                .call(Method::POST, path, Some(encode_json(dep)))
                .await?;
            // 409: it exists already (a retried create, or another gateway-ext).
            if status.is_success() || status == StatusCode::CONFLICT {
                return Ok(());
            }
            Err(self.status_error(Method::POST, path, status, &resp))
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let path = "/system/functions";
            let body = encode_json(&DeleteFunctionRequest {
                function_name: name.to_owned(),
                ..Default::default()
            });
            let (status, resp) = self.call(Method::DELETE, path, Some(body)).await?;
            if status.is_success() || status == StatusCode::NOT_FOUND {
                return Ok(());
            }
            Err(self.status_error(Method::DELETE, path, status, &resp))
        })
    }
}

/// An in-memory provider: functions are records, scaling makes replicas
/// available at once. It can be switched "down" to test error handling, and
/// it logs every mutating call.
#[derive(Clone, Default)]
pub struct MemProvider {
    inner: Arc<Mutex<MemState>>,
}

#[derive(Default)]
struct MemState {
    functions: BTreeMap<String, FunctionStatus>,
    down: bool,
    calls: Vec<String>,
}

impl MemProvider {
    /// An empty provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a function.
    pub fn insert(&self, f: FunctionStatus) {
        let mut st = self.lock();
        st.functions.insert(f.name.clone(), f);
    }

    /// Makes every call fail (`true`) or succeed again (`false`).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// A function's record.
    pub fn function(&self, name: &str) -> Option<FunctionStatus> {
        self.lock().functions.get(name).cloned()
    }

    /// Names of all functions.
    pub fn names(&self) -> Vec<String> {
        self.lock().functions.keys().cloned().collect()
    }

    /// Mutating calls so far, e.g. `scale w 3`, `deploy w-shard-1`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        // A poisoned lock only means a test panicked; the data is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check(&self) -> Result<std::sync::MutexGuard<'_, MemState>, ProviderError> {
        let st = self.lock();
        if st.down {
            return Err(ProviderError::Unavailable("MemProvider is down".into()));
        }
        Ok(st)
    }
}

impl Provider for MemProvider {
    fn list(&self) -> BoxFuture<'_, Result<Vec<FunctionStatus>, ProviderError>> {
        let r = self
            .check()
            .map(|st| st.functions.values().cloned().collect());
        Box::pin(async move { r })
    }

    fn get<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<FunctionStatus>, ProviderError>> {
        let r = self.check().map(|st| st.functions.get(name).cloned());
        Box::pin(async move { r })
    }

    fn scale<'a>(
        &'a self,
        name: &'a str,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        let r = self.check().and_then(|mut st| {
            st.calls.push(format!("scale {name} {replicas}"));
            match st.functions.get_mut(name) {
                Some(f) => {
                    f.replicas = u64::from(replicas);
                    f.available_replicas = u64::from(replicas);
                    Ok(())
                }
                None => Err(ProviderError::Status {
                    method: "POST".into(),
                    url: format!("/system/scale-function/{name}"),
                    status: 404,
                    body: "not found".into(),
                }),
            }
        });
        Box::pin(async move { r })
    }

    fn deploy<'a>(
        &'a self,
        dep: &'a FunctionDeployment,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        let r = self.check().map(|mut st| {
            st.calls.push(format!("deploy {}", dep.service));
            st.functions
                .entry(dep.service.clone())
                .or_insert_with(|| FunctionStatus {
                    name: dep.service.clone(),
                    image: dep.image.clone(),
                    namespace: dep.namespace.clone(),
                    env_process: dep.env_process.clone(),
                    env_vars: dep.env_vars.clone(),
                    constraints: dep.constraints.clone(),
                    secrets: dep.secrets.clone(),
                    labels: dep.labels.clone(),
                    annotations: dep.annotations.clone(),
                    limits: dep.limits.clone(),
                    requests: dep.requests.clone(),
                    read_only_root_filesystem: dep.read_only_root_filesystem,
                    replicas: 1,
                    available_replicas: 1,
                    ..Default::default()
                });
        });
        Box::pin(async move { r })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        let r = self.check().map(|mut st| {
            st.calls.push(format!("delete {name}"));
            st.functions.remove(name);
        });
        Box::pin(async move { r })
    }
}
