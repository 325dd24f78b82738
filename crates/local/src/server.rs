//! The HTTP routes of the provider API (faas-provider's route table):
//!
//! | route | success | errors |
//! |---|---|---|
//! | `GET /system/functions` | 200 `[FunctionStatus]` | |
//! | `POST /system/functions` | 202 | 400 bad JSON/name/image/secret/label, 409 exists |
//! | `PUT /system/functions` | 202 | 400, 404 |
//! | `DELETE /system/functions` | 202 | 400, 404 |
//! | `GET /system/function/{name}` | 200 `FunctionStatus` | 404 |
//! | `GET /system/function/{name}/starts` | 200 `[ReplicaStart]` (farm-local extension) | 404 |
//! | `POST /system/scale-function/{name}` | 202 | 400 bad JSON / negative / non-numeric / too many, 404 |
//! | `GET /system/info` | 200 `{provider, version, orchestration}` | |
//! | `GET /system/namespaces` | 200 `["openfaas-fn"]` | |
//! | `GET /system/logs?name&instance&tail&follow&since` | 200 NDJSON | 404, 422 |
//! | `GET/POST/PUT/DELETE /system/secrets` | | 501 with how to provide secrets instead |
//! | `GET /healthz` | 200 `OK` | |
//! | `ANY /function/{name}[/path]` | the replica's answer | 404, 502, 503 |
//!
//! A function name in a path, a scale or delete body or the logs query may
//! be `NAME.openfaas-fn` (see the crate docs).
//! `/system/*` takes basic auth when enabled (401 + `WWW-Authenticate`).
//! Error bodies are plain text, as Go's `http.Error` writes them. A
//! `?namespace=` query naming another namespace than `openfaas-fn` is a 400.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tracing::debug;

use crate::auth::unauthorized;
use crate::clock::parse_rfc3339;
use crate::error::ApiError;
use crate::logs::LogRecord;
use crate::provider::{ProviderHandle, Registry, check_namespace};
use crate::types::{
    DeleteFunctionRequest, FunctionDeployment, LogMessage, ProviderInfo, ProviderVersion,
    ScaleServiceRequest,
};
use crate::{DEFAULT_NAMESPACE, valid_name};

type AppState = Arc<Registry>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status(),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// Builds the router over a registry.
pub(crate) fn router(reg: Arc<Registry>) -> Router {
    let system = Router::new()
        .route(
            "/system/functions",
            get(list).post(deploy).put(update).delete(delete),
        )
        .route("/system/function/{name}", get(status))
        .route("/system/function/{name}/starts", get(starts))
        .route("/system/scale-function/{name}", post(scale))
        .route("/system/info", get(info))
        .route("/system/namespaces", get(namespaces))
        .route("/system/logs", get(logs))
        .route(
            "/system/secrets",
            get(secrets_unsupported)
                .post(secrets_unsupported)
                .put(secrets_unsupported)
                .delete(secrets_unsupported),
        )
        .route_layer(middleware::from_fn_with_state(reg.clone(), basic_auth));
    Router::new()
        .merge(system)
        .route("/healthz", get(|| async { "OK" }))
        .route("/function/{name}", any(proxy_root))
        .route("/function/{name}/", any(proxy_root))
        .route("/function/{name}/{*rest}", any(proxy_path))
        .with_state(reg)
}

async fn basic_auth(State(reg): State<AppState>, req: Request, next: Next) -> Response {
    match &reg.auth {
        Some(c) if !c.check(req.headers()) => unauthorized(),
        _ => next.run(req).await,
    }
}

fn handle(reg: &AppState) -> ProviderHandle {
    ProviderHandle {
        registry: reg.clone(),
    }
}

/// Parses a JSON body; the error text is serde's, naming line, column and
/// what was expected.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::InvalidBody("expected a JSON body".into()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidBody(format!("invalid JSON body: {e}")))
}

/// The last value of a query parameter, as Go's `getValue` reads it.
fn query_value<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn query_namespace(q: &[(String, String)]) -> Result<(), ApiError> {
    check_namespace(query_value(q, "namespace").unwrap_or(""))
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            b,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn list(
    State(reg): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    query_namespace(&q)?;
    Ok(json(&handle(&reg).list()))
}

async fn deploy(State(reg): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    let spec: FunctionDeployment = parse(&body)?;
    handle(&reg).deploy(spec)?;
    Ok(StatusCode::ACCEPTED)
}

async fn update(State(reg): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    let spec: FunctionDeployment = parse(&body)?;
    handle(&reg).update(spec)?;
    Ok(StatusCode::ACCEPTED)
}

async fn delete(State(reg): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    let req: DeleteFunctionRequest = parse(&body)?;
    check_namespace(&req.namespace)?;
    if !valid_name(&req.function_name) {
        return Err(ApiError::InvalidName(req.function_name));
    }
    handle(&reg).delete(&req.function_name)?;
    Ok(StatusCode::ACCEPTED)
}

async fn status(
    State(reg): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    query_namespace(&q)?;
    Ok(json(&handle(&reg).status(&name)?))
}

/// Every replica start of the function (spawn -> available), so a client
/// can tell the start-up delays its replicas really had.
async fn starts(
    State(reg): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    query_namespace(&q)?;
    Ok(json(&handle(&reg).starts(&name)?))
}

async fn scale(
    State(reg): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    query_namespace(&q)?;
    let req: ScaleServiceRequest = parse(&body)?;
    check_namespace(&req.namespace)?;
    if !req.service_name.is_empty() && reg.resolve(&req.service_name)? != reg.resolve(&name)? {
        return Err(ApiError::NameMismatch {
            body: req.service_name,
            path: name,
        });
    }
    handle(&reg).scale(&name, req.replicas)?;
    Ok(StatusCode::ACCEPTED)
}

/// `faas-cli secret list|create|update|remove` would otherwise see a bare
/// 404; faas-cli prints this body after the status code.
async fn secrets_unsupported(State(reg): State<AppState>) -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "farm-local does not manage secrets through the API (/system/secrets): put each secret's value in a file named after it in {} (FARM_LOCAL_SECRETS_DIR); a deployment's `secrets` are copied from there into every replica's secrets directory\n",
            reg.ctx.config.secrets_dir.display()
        ),
    )
        .into_response()
}

async fn info() -> Response {
    json(&ProviderInfo {
        provider: "farm-local".into(),
        version: ProviderVersion {
            sha: option_env!("FARM_GIT_SHA").unwrap_or("unknown").into(),
            release: env!("CARGO_PKG_VERSION").into(),
        },
        orchestration: "process".into(),
    })
}

async fn namespaces() -> Response {
    json(&[DEFAULT_NAMESPACE])
}

/// A parsed logs query.
struct LogQuery {
    name: String,
    instance: Option<String>,
    tail: Option<usize>,
    follow: bool,
    since: Option<SystemTime>,
}

fn parse_log_query(q: &[(String, String)]) -> Result<LogQuery, ApiError> {
    let name = query_value(q, "name").unwrap_or("").to_string();
    if name.is_empty() {
        return Err(ApiError::InvalidLogQuery(
            "the `name` parameter is required".into(),
        ));
    }
    let tail = match query_value(q, "tail").filter(|s| !s.is_empty()) {
        None => None,
        Some(t) => {
            let n: i64 = t
                .parse()
                .map_err(|_| ApiError::InvalidLogQuery(format!("tail={t:?} is not an integer")))?;
            // faas-cli sends -1 for "everything".
            usize::try_from(n).ok()
        }
    };
    // Go's ParseBool; anything else reads as false there too.
    let follow = matches!(
        query_value(q, "follow"),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True")
    );
    let since = match query_value(q, "since").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_rfc3339(s).ok_or_else(|| {
            ApiError::InvalidLogQuery(format!("since={s:?} is not an RFC 3339 time"))
        })?),
    };
    let instance = query_value(q, "instance")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(LogQuery {
        name,
        instance,
        tail,
        follow,
        since,
    })
}

fn ndjson_line(m: &LogMessage) -> Bytes {
    let mut v = serde_json::to_vec(m).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

async fn logs(
    State(reg): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    query_namespace(&q)?;
    let mut lq = parse_log_query(&q)?;
    lq.name = reg.resolve(&lq.name)?;
    if reg.get(&lq.name).is_err() && !reg.ctx.logs.has(&lq.name) {
        return Err(ApiError::NotFound(lq.name));
    }
    let (history, rx) = reg.ctx.logs.query(&lq.name, lq.since, lq.tail);
    let keep_instance = lq.instance.clone();
    let history: Vec<Result<Bytes, Infallible>> = history
        .iter()
        .filter(|m| keep_instance.as_ref().is_none_or(|i| &m.instance == i))
        .map(|m| Ok(ndjson_line(m)))
        .collect();
    let head = futures::stream::iter(history);
    let body = if lq.follow {
        let follow = futures::stream::unfold(
            (rx, reg.shutdown.clone(), lq.name, lq.instance),
            |(mut rx, token, name, instance)| async move {
                loop {
                    let rec: LogRecord = tokio::select! {
                        _ = token.cancelled() => return None,
                        r = rx.recv() => match r {
                            Ok(rec) => rec,
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                debug!(skipped = n, "log follower lagged");
                                continue;
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                    };
                    if rec.message.name == name
                        && instance.as_ref().is_none_or(|i| &rec.message.instance == i)
                    {
                        let line: Result<Bytes, Infallible> = Ok(ndjson_line(&rec.message));
                        return Some((line, (rx, token, name, instance)));
                    }
                }
            },
        );
        Body::from_stream(head.chain(follow))
    } else {
        Body::from_stream(head)
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

async fn proxy_root(
    State(reg): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    proxy(reg, name, String::new(), req).await
}

async fn proxy_path(
    State(reg): State<AppState>,
    Path((name, rest)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    proxy(reg, name, rest, req).await
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        h.remove(*name);
    }
}

/// Forwards an invocation to an available replica, round-robin, waiting
/// (bounded) for one when none is available — scaling from zero to the
/// minimum scale (at least 1) first, as the gateway does.
async fn proxy(
    reg: AppState,
    name: String,
    rest: String,
    req: Request,
) -> Result<Response, ApiError> {
    let f = reg.get(&name)?;
    let port = match f.pick_endpoint() {
        Some(p) => p,
        None => {
            if f.desired() == 0 {
                let min = f.min_scale();
                debug!(function = %name, replicas = min, "scale from zero");
                f.scale(min);
            }
            let wait = reg.ctx.config.scale_from_zero_timeout;
            let mut rx = f.subscribe();
            let got = tokio::select! {
                r = tokio::time::timeout(wait, rx.wait_for(|c| c.available > 0)) => r.is_ok_and(|r| r.is_ok()),
                _ = reg.shutdown.cancelled() => return Err(ApiError::ShuttingDown),
            };
            match (got, f.pick_endpoint()) {
                (true, Some(p)) => p,
                _ => return Err(ApiError::Unavailable { name, waited: wait }),
            }
        }
    };
    f.record_invocation();
    let (mut parts, body) = req.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let uri: Uri = format!("http://127.0.0.1:{port}{path_and_query}")
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| ApiError::InvalidBody(e.to_string()))?;
    strip_hop_by_hop(&mut parts.headers);
    if let Ok(v) = HeaderValue::from_str(&format!("127.0.0.1:{port}")) {
        parts.headers.insert(header::HOST, v);
    }
    parts.headers.insert(
        HeaderName::from_static("x-forwarded-uri"),
        header_value(&format!("/function/{name}{path_and_query}")),
    );
    parts.uri = uri;
    parts.version = axum::http::Version::HTTP_11;
    let upstream = hyper::Request::from_parts(parts, body);
    let resp = reg
        .ctx
        .http
        .request(upstream)
        .await
        .map_err(|e| ApiError::Upstream {
            name: name.clone(),
            reason: error_chain(&e),
        })?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("/"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn log_query_parses_like_faas_provider() {
        let lq = parse_log_query(&q(&[
            ("name", "f"),
            ("tail", "5"),
            ("follow", "true"),
            ("since", "2024-05-01T12:00:00Z"),
        ]))
        .unwrap();
        assert_eq!(lq.name, "f");
        assert_eq!(lq.tail, Some(5));
        assert!(lq.follow);
        assert!(lq.since.is_some());
        let lq = parse_log_query(&q(&[
            ("name", "a"),
            ("name", "f"),
            ("tail", "-1"),
            ("follow", "nope"),
        ]))
        .unwrap();
        assert_eq!(lq.name, "f");
        assert_eq!(lq.tail, None);
        assert!(!lq.follow);
        for bad in [
            q(&[]),
            q(&[("name", "f"), ("tail", "x")]),
            q(&[("name", "f"), ("since", "yesterday")]),
        ] {
            assert!(matches!(
                parse_log_query(&bad),
                Err(ApiError::InvalidLogQuery(_))
            ));
        }
    }
}
