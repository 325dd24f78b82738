//! The HTTP surface: gateway-ext's own routes, and a reverse proxy of
//! everything else to the upstream gateway or provider.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | 200 `OK` |
//! | `GET /metrics` | Prometheus text |
//! | `GET /system/autoscaler` | JSON status of every farm (auth) |
//! | `POST /system/autoscaler/restart/{farm}` | restart the farm's control clock: next tick one interval from now, policy time 0 (a replay's start), the policy's history forgotten; 204, 404 for an unknown farm (auth) |
//! | `POST /system/autoscaler/hold/{farm}` | suspend the farm's tick decisions until its next restart (a replay setting up its initial replicas); 204, 404 for an unknown farm (auth) |
//! | `GET /system/autoscaler/decisions` | JSON: per farm, every decision kept (`RECORD_CAPACITY`), oldest first (auth) |
//! | `POST /system/alert` | AlertManager payload: managed functions (workers, shards, and companions such as the emitter labelled `com.rust-farm.role` and annotated `com.rust-farm.farm`) decide at once; every other alert (unmanaged, unknown, another namespace, no `function_name`) is forwarded unchanged (auth) |
//! | `POST /system/scale-function/{name}` | managed: the count becomes a floor for `SCALE_FLOOR_HOLD`; others forwarded (auth) |
//!
//! A function name in an alert's `function_name` label or a scale path may
//! carry the default namespace, `NAME.openfaas-fn`, as the CE gateway's
//! metrics (and so its alert rule) name functions.
//! | other `/system/*` | proxied (auth; credentials forwarded) |
//! | `/function/{name}...` | proxied, counted as `gateway_function_invocation_total` / `gateway_functions_seconds` (`function_name` = `NAME.openfaas-fn`, as the CE gateway labels it) |
//! | anything else | proxied |
//!
//! Methods, headers (minus hop-by-hop ones), status codes and bodies pass
//! unchanged; bodies stream in both directions (chunked stays chunked).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use serde::Serialize;
use tracing::{debug, warn};

use crate::auth::{CHALLENGE, Credentials};
use crate::config::alert_farm;
use crate::farm::{FarmError, FarmHandle, FarmStatus};
use crate::manager::Manager;
use crate::metrics::{DEFAULT_BUCKETS, Metrics};
use crate::provider::{HttpClient, OutBody, Provider, error_chain, full_body};
use crate::types::{AlertPayload, ScaleServiceRequest};
use farm_openfaas::{DEFAULT_NAMESPACE, metric_name, split_namespace};

/// Largest body gateway-ext reads itself (alerts, scale requests).
const MAX_CONTROL_BODY: usize = 1 << 20;

/// What the HTTP handlers share.
pub struct HttpState {
    /// The farms.
    pub manager: Arc<Manager>,
    /// Pooled client to the upstream.
    pub client: HttpClient,
    /// Upstream base, `http://host:port`.
    pub upstream: String,
    /// Basic-auth credentials, when `/system/*` is protected.
    pub auth: Option<Credentials>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// The provider (existence checks of alerted functions).
    pub provider: Arc<dyn Provider>,
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<OutBody> {
    let mut r = Response::new(full_body(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<OutBody> {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => {
            let mut r = Response::new(full_body(b));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Routes one request.
pub async fn handle(
    state: Arc<HttpState>,
    req: Request<Incoming>,
) -> Result<Response<OutBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path == "/healthz" && (method == Method::GET || method == Method::HEAD) {
        return Ok(text(StatusCode::OK, "OK"));
    }
    if path == "/metrics" && method == Method::GET {
        let mut r = text(StatusCode::OK, state.metrics.render());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return Ok(r);
    }
    if let Some(rest) = path.strip_prefix("/system/") {
        if let Some(creds) = &state.auth {
            let h = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if !creds.accepts(h) {
                let mut r = text(StatusCode::UNAUTHORIZED, "invalid credentials");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE),
                );
                return Ok(r);
            }
        }
        if rest == "autoscaler" && method == Method::GET {
            return Ok(status(&state));
        }
        if rest == "autoscaler/decisions" && method == Method::GET {
            return Ok(decisions(&state));
        }
        if let Some(farm) = rest.strip_prefix("autoscaler/restart/")
            && method == Method::POST
        {
            let f = state.manager.farm(farm);
            return Ok(clock_command(farm, f.as_deref().map(FarmHandle::restart_clock)).await);
        }
        if let Some(farm) = rest.strip_prefix("autoscaler/hold/")
            && method == Method::POST
        {
            let f = state.manager.farm(farm);
            return Ok(clock_command(farm, f.as_deref().map(FarmHandle::hold)).await);
        }
        if rest == "alert" && method == Method::POST {
            return Ok(alert(&state, req).await);
        }
        if let Some(name) = rest.strip_prefix("scale-function/")
            && method == Method::POST
            && !name.is_empty()
            && !name.contains('/')
        {
            let name = name.to_owned();
            return Ok(scale(&state, req, &name).await);
        }
        return Ok(proxy(&state, req).await);
    }
    if let Some(rest) = path.strip_prefix("/function/") {
        // One series per function however the client names it (faas-cli
        // invokes NAME.openfaas-fn, curl often NAME): labelled NAME.NAMESPACE
        // as the CE gateway labels it, so the gateway's `/system/functions`
        // finds the invocation counts, and as `gateway_ext_farm_function`
        // is, so the alert rules can join them.
        let raw = rest.split('/').next().unwrap_or_default();
        let name = (!raw.is_empty()).then(|| metric_name(raw));
        let started = Instant::now();
        let resp = proxy(&state, req).await;
        if let Some(name) = name {
            let code = resp.status().as_u16().to_string();
            let l = [("function_name", name.as_str()), ("code", code.as_str())];
            state
                .metrics
                .inc("gateway_function_invocation_total", &l, 1.0);
            state.metrics.observe(
                "gateway_functions_seconds",
                &l,
                DEFAULT_BUCKETS,
                started.elapsed().as_secs_f64(),
            );
        }
        return Ok(resp);
    }
    Ok(proxy(&state, req).await)
}

#[derive(Serialize)]
struct Status {
    farms: Vec<FarmStatus>,
    discovery_errors: std::collections::BTreeMap<String, String>,
}

fn status(state: &HttpState) -> Response<OutBody> {
    let farms = state.manager.farms().iter().map(|f| f.status()).collect();
    json(
        StatusCode::OK,
        &Status {
            farms,
            discovery_errors: state.manager.discovery_errors(),
        },
    )
}

/// The reply to a command on a farm's control clock (restart, hold):
/// 204 once the loop took it, 503 if the loop has stopped, 404 when no
/// farm is named `farm` (`sent` is `None`).
async fn clock_command(
    farm: &str,
    sent: Option<impl Future<Output = Result<(), FarmError>>>,
) -> Response<OutBody> {
    match sent {
        Some(reply) => match reply.await {
            Ok(()) => text(StatusCode::NO_CONTENT, ""),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
        None => text(StatusCode::NOT_FOUND, format!("no farm named {farm}")),
    }
}

/// Every decision each farm still holds (up to `RECORD_CAPACITY`), oldest
/// first, keyed by farm: what `farmctl compare --driver gateway-ext`
/// reports as the live ticks.
fn decisions(state: &HttpState) -> Response<OutBody> {
    let all: std::collections::BTreeMap<String, Vec<crate::farm::DecisionRecord>> = state
        .manager
        .farms()
        .iter()
        .map(|f| {
            let records = f
                .history(usize::MAX)
                .iter()
                .map(|r| (**r).clone())
                .collect();
            (f.spec().farm.clone(), records)
        })
        .collect();
    json(StatusCode::OK, &all)
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// Forwards a request to the upstream with its body streamed.
pub async fn proxy(state: &HttpState, req: Request<Incoming>) -> Response<OutBody> {
    let (parts, body) = req.into_parts();
    forward(state, parts, body.boxed()).await
}

async fn forward(
    state: &HttpState,
    mut parts: hyper::http::request::Parts,
    body: OutBody,
) -> Response<OutBody> {
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri: Uri = match format!("{}{}", state.upstream, pq).parse() {
        Ok(u) => u,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad request URI: {e}")),
    };
    if let Some(host) = parts.headers.remove(header::HOST) {
        parts
            .headers
            .insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    strip_hop_by_hop(&mut parts.headers);
    parts.uri = uri;
    parts.version = hyper::Version::HTTP_11;
    let req = Request::from_parts(parts, body);
    match state.client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => {
            let msg = error_chain(&e);
            warn!(upstream = %state.upstream, error = %msg, "upstream unreachable");
            text(
                StatusCode::BAD_GATEWAY,
                format!("upstream {} unreachable: {msg}", state.upstream),
            )
        }
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, Response<OutBody>> {
    match Limited::new(body, MAX_CONTROL_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
}

#[derive(Serialize)]
struct AlertDecision {
    function: String,
    farm: String,
    firing: bool,
    policy: String,
    previous: u32,
    desired: u32,
    applied: bool,
    note: String,
}

#[derive(Serialize)]
struct AlertReply {
    decisions: Vec<AlertDecision>,
    forwarded: usize,
    upstream_status: Option<u16>,
}

async fn alert(state: &HttpState, req: Request<Incoming>) -> Response<OutBody> {
    let (parts, body) = req.into_parts();
    let raw = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let payload: AlertPayload = match serde_json::from_slice(&raw) {
        Ok(p) => p,
        Err(e) => {
            debug!(error = %e, "bad alert payload");
            state.metrics.inc(
                "gateway_ext_errors_total",
                &[("farm", ""), ("kind", "alert")],
                1.0,
            );
            return text(
                StatusCode::BAD_REQUEST,
                format!("Unable to parse alert, bad format: {e}"),
            );
        }
    };
    let mut decisions = Vec::new();
    let mut errors = Vec::new();
    let mut forward_alerts = Vec::new();
    for a in &payload.alerts {
        // Anything gateway-ext does not manage goes to the gateway as it
        // came, which answers for it as it would without gateway-ext: an
        // alert without a function, for an unknown function or for another
        // namespace included.
        let Some(fname) = a.function_name() else {
            debug!("alert without a function_name label; forwarded");
            forward_alerts.push(a.clone());
            continue;
        };
        let Some(local) = default_namespace_name(fname) else {
            debug!(function = %fname, "alert for another namespace; forwarded");
            forward_alerts.push(a.clone());
            continue;
        };
        let (farm, via) = match managed_farm(state, fname) {
            Some(f) => (f, None),
            None => match state.provider.get(local).await {
                // A companion of a farm (its emitter): the alert drives the
                // farm's decision instead of a CE step on the companion.
                Ok(Some(st)) => match alert_farm(&st.annotations, &st.labels) {
                    Some(name) => match state.manager.farm(&name) {
                        Some(f) => (f, Some(local)),
                        None => {
                            warn!(function = %fname, farm = %name, "alert for a companion of a farm gateway-ext does not manage; forwarded");
                            forward_alerts.push(a.clone());
                            continue;
                        }
                    },
                    None => {
                        forward_alerts.push(a.clone());
                        continue;
                    }
                },
                Ok(None) => {
                    debug!(function = %fname, "alert for a function the provider does not have; forwarded");
                    forward_alerts.push(a.clone());
                    continue;
                }
                Err(e) => {
                    warn!(function = %fname, error = %e, "cannot check whether the alerted function is a farm's companion; forwarded");
                    forward_alerts.push(a.clone());
                    continue;
                }
            },
        };
        match farm.alert_via(a.firing(), via).await {
            Ok(rec) => decisions.push(AlertDecision {
                function: fname.to_owned(),
                farm: rec.farm.clone(),
                firing: a.firing(),
                policy: rec.policy.clone(),
                previous: rec.previous,
                desired: rec.desired,
                applied: rec.applied,
                note: rec.note.clone(),
            }),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for e in &errors {
        warn!(error = %e, "alert");
        state.metrics.inc(
            "gateway_ext_errors_total",
            &[("farm", ""), ("kind", "alert")],
            1.0,
        );
    }
    let forwarded = forward_alerts.len();
    let mut upstream_status = None;
    if forwarded > 0 {
        let only_forwarded = decisions.is_empty() && errors.is_empty();
        let body = if only_forwarded {
            // Untouched, byte for byte.
            raw.clone()
        } else {
            let part = AlertPayload {
                alerts: forward_alerts,
                ..payload.clone()
            };
            Bytes::from(serde_json::to_vec(&part).unwrap_or_default())
        };
        let mut parts = parts;
        parts.headers.remove(header::CONTENT_LENGTH);
        let resp = forward(state, parts, full_body(body)).await;
        if only_forwarded {
            return resp;
        }
        upstream_status = Some(resp.status().as_u16());
    }
    if !errors.is_empty() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, errors.join("\n"));
    }
    json(
        StatusCode::OK,
        &AlertReply {
            decisions,
            forwarded,
            upstream_status,
        },
    )
}

/// The name of a function as the provider lists it, from a name as the
/// gateway writes it in metrics and alerts (`NAME.openfaas-fn`) or as a
/// client sends it (`NAME`); `None` for another namespace, which gateway-ext
/// does not manage.
fn default_namespace_name(name: &str) -> Option<&str> {
    match split_namespace(name) {
        (_, None) => Some(name),
        (base, Some(DEFAULT_NAMESPACE)) => Some(base),
        (_, Some(_)) => None,
    }
}

/// The farm that owns a function named `NAME` or `NAME.openfaas-fn` (a
/// managed function whose own name has a dot is found by that name first).
fn managed_farm(state: &HttpState, name: &str) -> Option<Arc<FarmHandle>> {
    state
        .manager
        .by_function(name)
        .or_else(|| default_namespace_name(name).and_then(|n| state.manager.by_function(n)))
}

async fn scale(state: &HttpState, req: Request<Incoming>, name: &str) -> Response<OutBody> {
    let Some(farm) = managed_farm(state, name) else {
        return proxy(state, req).await;
    };
    let raw = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r: ScaleServiceRequest = match serde_json::from_slice(&raw) {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot parse the scale request: {e}"),
            );
        }
    };
    let replicas = u32::try_from(r.replicas).unwrap_or(u32::MAX);
    match farm.scale_request(replicas).await {
        Ok(rec) => {
            debug!(farm = %rec.farm, replicas, desired = rec.desired, "scale request honoured as a floor");
            text(StatusCode::ACCEPTED, "")
        }
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
