//! `rustfarm_native`: the native gRPC transport of the `rustfarm_gym` Python
//! package (gym/), a pyo3 extension module.
//!
//! grpcio costs a Python process 100-200 us of CPU per message on the
//! 2-core machine of BENCHMARKS.md ("Gymnasium"), more than a simulated
//! control interval. This module makes the same `FarmControl` calls with
//! farm-proto's tonic client instead, on a single-threaded tokio runtime
//! owned by each [`Client`], with the GIL released while it waits for the
//! server; Python only pays for one extension call per step. The wire
//! protocol is the one of proto/control.proto, unchanged.
//!
//! `rustfarm_gym.client.FarmClient` picks this transport when the module
//! imports (`transport="auto"`), or on request (`"native"` / `"grpcio"`,
//! or the `RUSTFARM_TRANSPORT` environment variable). Cold calls
//! (`get_spec`, `reset`, `step`) return the encoded protobuf reply, which
//! Python decodes with its own generated classes, so both transports hand
//! the package the same messages. The hot paths return Python values
//! directly: [`Client::step_env`] the `FarmEnv.step` tuple, and
//! [`BatchStepper::step`] numpy arrays of a packed `StepBatch`.
//!
//! Failures raise the package's own exceptions (`rustfarm_gym.errors`) with
//! the server's message, as the grpcio path does: `UNAVAILABLE` ->
//! `ServerUnreachableError`, `INVALID_ARGUMENT` -> `InvalidArgumentError`,
//! any other status -> `FarmRpcError`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use farm_proto::control::farm_control_client::FarmControlClient;
use farm_proto::control::farm_control_stream_client::FarmControlStreamClient;
use farm_proto::control::{
    ResetRequest, RunSummary, SpecRequest, StepBatchReply, StepBatchRequest, StepInfo, StepReply,
    StepRequest,
};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use prost::Message;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Largest gRPC message sent or received (a `StepBatch` over thousands of
/// envs); the same limit as the server's and the grpcio client's.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// HTTP/2 receive window of a stream and of the connection.
const RECV_WINDOW_BYTES: u32 = 16 << 20;

/// Pause between two connection attempts while waiting for a server.
const CONNECT_RETRY: Duration = Duration::from_millis(50);

/// Columns of `PackedSteps.info` (proto/control.proto).
const PACKED_INFO_WIDTH: usize = 9;

/// Why a call failed; turned into a Python exception once the GIL is held
/// again (see [`CallError::into_py_err`]).
#[derive(Debug)]
enum CallError {
    /// No connection to the server could be made before the deadline.
    Unreachable(String),
    /// The server (or the channel) ended the call with this status.
    Status {
        method: &'static str,
        status: Status,
    },
    /// The reply broke the contract (e.g. inconsistent packed arrays).
    BadReply {
        method: &'static str,
        message: String,
    },
    /// `close()` was called before.
    Closed,
}

impl CallError {
    /// The `rustfarm_gym.errors` exception for this failure.
    fn into_py_err(self, py: Python<'_>, address: &str) -> PyErr {
        let errors = match py.import("rustfarm_gym.errors") {
            Ok(m) => m,
            Err(e) => return e,
        };
        let built = match self {
            CallError::Unreachable(message) => errors
                .getattr("ServerUnreachableError")
                .and_then(|cls| cls.call1((message,))),
            CallError::Status { method, status } => {
                let message = status.message().to_string();
                match status.code() {
                    Code::Unavailable => errors.getattr("ServerUnreachableError").and_then(|cls| {
                        cls.call1((format!(
                            "FarmControl server at {address} unavailable: {message}"
                        ),))
                    }),
                    code => {
                        let class = if code == Code::InvalidArgument {
                            "InvalidArgumentError"
                        } else {
                            "FarmRpcError"
                        };
                        errors
                            .getattr(class)
                            .and_then(|cls| cls.call1((method, code_name(code), message)))
                    }
                }
            }
            CallError::BadReply { method, message } => errors
                .getattr("FarmRpcError")
                .and_then(|cls| cls.call1((method, "DATA_LOSS", message))),
            CallError::Closed => errors.getattr("FarmError").and_then(|cls| {
                cls.call1((format!("the FarmControl client of {address} is closed"),))
            }),
        };
        match built {
            Ok(exc) => PyErr::from_value(exc),
            Err(e) => e,
        }
    }
}

/// The gRPC name of a status code, as grpcio spells it (`StatusCode.name`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// An open `FarmControlStream.StepStream`: requests go in through `tx`,
/// replies come back in order on `replies`.
struct OpenStream {
    tx: mpsc::Sender<StepRequest>,
    replies: tonic::Streaming<StepReply>,
}

/// Everything a call needs, behind the [`Client`]'s lock.
struct Inner {
    /// Single-threaded: the calling thread drives the connection while it
    /// waits in `block_on`, so a step needs no cross-thread wake-up.
    rt: Runtime,
    unary: FarmControlClient<Channel>,
    streaming: FarmControlStreamClient<Channel>,
    /// The lockstep stream, opened on the first streamed step and dropped
    /// when it fails (the next streamed step opens a new one).
    stream: Option<OpenStream>,
    /// False once the server answered `StepStream` with UNIMPLEMENTED
    /// (gateway-ext serves no stream): streamed steps are then unary.
    stream_available: bool,
}

/// Waits for one unary call on `rt`; its reply, or the status named after
/// `method`.
fn unary<T>(
    rt: &Runtime,
    method: &'static str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CallError> {
    rt.block_on(call)
        .map(tonic::Response::into_inner)
        .map_err(|status| CallError::Status { method, status })
}

impl Inner {
    fn unary_step(&mut self, req: StepRequest) -> Result<StepReply, CallError> {
        unary(&self.rt, "Step", self.unary.step(req))
    }

    /// One lockstep step over the stream, opening it if needed; falls back
    /// to [`Inner::unary_step`] for good on UNIMPLEMENTED.
    fn stream_step(&mut self, req: StepRequest) -> Result<StepReply, CallError> {
        if !self.stream_available {
            return self.unary_step(req);
        }
        let fresh = self.stream.is_none();
        let Inner {
            rt,
            streaming,
            stream,
            ..
        } = self;
        let result: Result<StepReply, Status> = rt.block_on(async {
            if let Some(open) = stream.as_mut() {
                if open.tx.send(req.clone()).await.is_err() {
                    return Err(Status::unknown("the step stream's request side was closed"));
                }
            } else {
                // Queue the first request before the call: the call's
                // future resolves on the server's response headers.
                let (tx, rx) = mpsc::channel::<StepRequest>(1);
                if tx.try_send(req.clone()).is_err() {
                    return Err(Status::internal("a new step stream's queue is full"));
                }
                let requests = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|r| (r, rx))
                });
                let replies = streaming.step_stream(requests).await?.into_inner();
                *stream = Some(OpenStream { tx, replies });
            }
            let Some(open) = stream.as_mut() else {
                return Err(Status::internal("no step stream"));
            };
            match open.replies.message().await? {
                Some(reply) => Ok(reply),
                None => Err(Status::unknown(
                    "the server ended the step stream without a reply",
                )),
            }
        });
        match result {
            Ok(reply) => Ok(reply),
            Err(status) => {
                // The stream ended with this status; the next step opens a
                // new one.
                self.stream = None;
                if fresh && status.code() == Code::Unimplemented {
                    // The whole call was refused, so the step was not applied.
                    self.stream_available = false;
                    return self.unary_step(req);
                }
                Err(CallError::Status {
                    method: "StepStream",
                    status,
                })
            }
        }
    }
}

/// A connection to one FarmControl server (the simulator or gateway-ext).
///
/// Thread-safe: calls from several Python threads take turns.
#[pyclass(module = "rustfarm_native", frozen)]
struct Client {
    address: String,
    /// None once closed.
    inner: Mutex<Option<Inner>>,
}

impl Client {
    fn lock(&self) -> MutexGuard<'_, Option<Inner>> {
        // A panic while holding the lock cannot leave the stream half
        // written in a way the next call would misread: a failed step
        // always drops the stream, so the state is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with the GIL released and turns its error into the
    /// package's exception.
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Inner) -> Result<T, CallError> + Send,
    ) -> PyResult<T> {
        py.detach(|| match self.lock().as_mut() {
            Some(inner) => f(inner),
            None => Err(CallError::Closed),
        })
        .map_err(|e| e.into_py_err(py, &self.address))
    }
}

/// A `StepInfo` as the dict `rustfarm_gym.env.info_dict` builds.
fn info_dict<'py>(py: Python<'py>, i: &StepInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "time_s"), i.time_s)?;
    d.set_item(intern!(py, "desired"), i.desired)?;
    d.set_item(intern!(py, "ready"), i.ready)?;
    d.set_item(intern!(py, "starting"), i.starting)?;
    d.set_item(intern!(py, "backlog"), i.backlog)?;
    d.set_item(intern!(py, "in_flight"), i.in_flight)?;
    d.set_item(intern!(py, "window_qos"), i.window_qos)?;
    d.set_item(intern!(py, "arrivals"), i.arrivals)?;
    d.set_item(intern!(py, "completions"), i.completions)?;
    if let Some(s) = &i.summary {
        d.set_item(intern!(py, "summary"), summary_dict(py, s)?)?;
    }
    Ok(d)
}

/// A `RunSummary` as the dict `rustfarm_gym.env.summary_dict` builds.
fn summary_dict<'py>(py: Python<'py>, s: &RunSummary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "tasks"), s.tasks)?;
    d.set_item(intern!(py, "completed"), s.completed)?;
    d.set_item(intern!(py, "unfinished"), s.unfinished)?;
    d.set_item(intern!(py, "qos"), s.qos)?;
    d.set_item(intern!(py, "latency_p50_s"), s.latency_p50_s)?;
    d.set_item(intern!(py, "latency_p95_s"), s.latency_p95_s)?;
    d.set_item(intern!(py, "latency_p99_s"), s.latency_p99_s)?;
    d.set_item(intern!(py, "replica_seconds"), s.replica_seconds)?;
    d.set_item(intern!(py, "mean_replicas"), s.mean_replicas)?;
    d.set_item(intern!(py, "max_replicas"), s.max_replicas)?;
    d.set_item(intern!(py, "scaling_actions"), s.scaling_actions)?;
    d.set_item(intern!(py, "reversals"), s.reversals)?;
    d.set_item(intern!(py, "drain_s"), s.drain_s)?;
    Ok(d)
}

#[pymethods]
impl Client {
    /// Connect to `address` (`HOST:PORT`), retrying for up to
    /// `connect_timeout_s` while nothing listens there yet.
    ///
    /// Raises `rustfarm_gym.errors.ServerUnreachableError` with the last
    /// connection error when no server answered in time.
    #[new]
    #[pyo3(signature = (address, connect_timeout_s = 10.0))]
    fn new(py: Python<'_>, address: String, connect_timeout_s: f64) -> PyResult<Self> {
        let timeout = Duration::try_from_secs_f64(connect_timeout_s.max(0.0))
            .unwrap_or(Duration::from_secs(10));
        let connected = py.detach(|| connect(&address, timeout));
        let inner = connected.map_err(|e| e.into_py_err(py, &address))?;
        Ok(Client {
            address,
            inner: Mutex::new(Some(inner)),
        })
    }

    /// The server's address, as given.
    #[getter]
    fn address(&self) -> &str {
        &self.address
    }

    /// False once the server answered `StepStream` with UNIMPLEMENTED.
    #[getter]
    fn stream_available(&self) -> bool {
        self.lock().as_ref().is_some_and(|i| i.stream_available)
    }

    /// `GetSpec`; the encoded `EnvSpec`.
    #[pyo3(signature = (farm = String::new(), action_space = String::new(), obs_version = 0))]
    fn get_spec<'py>(
        &self,
        py: Python<'py>,
        farm: String,
        action_space: String,
        obs_version: u32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let req = SpecRequest {
            farm,
            action_space,
            obs_version,
        };
        let spec = self.call(py, |inner| {
            unary(&inner.rt, "GetSpec", inner.unary.get_spec(req))
        })?;
        Ok(PyBytes::new(py, &spec.encode_to_vec()))
    }

    /// `Reset`; the encoded `StepReply`.
    #[pyo3(signature = (env_id, seed, scenario = String::new(), scenario_yaml = String::new(),
                        options = HashMap::new()))]
    fn reset<'py>(
        &self,
        py: Python<'py>,
        env_id: String,
        seed: u64,
        scenario: String,
        scenario_yaml: String,
        options: HashMap<String, String>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let req = ResetRequest {
            env_id,
            seed,
            scenario,
            scenario_yaml,
            options,
        };
        let reply = self.call(py, |inner| {
            unary(&inner.rt, "Reset", inner.unary.reset(req))
        })?;
        Ok(PyBytes::new(py, &reply.encode_to_vec()))
    }

    /// One unary `Step`; the encoded `StepReply`.
    fn step<'py>(
        &self,
        py: Python<'py>,
        env_id: String,
        action: u32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let reply = self.call(py, |inner| inner.unary_step(StepRequest { env_id, action }))?;
        Ok(PyBytes::new(py, &reply.encode_to_vec()))
    }

    /// One `Step` over the lockstep stream (unary when the server has none);
    /// the encoded `StepReply`.
    fn step_streamed<'py>(
        &self,
        py: Python<'py>,
        env_id: String,
        action: u32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let reply = self.call(py, |inner| {
            inner.stream_step(StepRequest { env_id, action })
        })?;
        Ok(PyBytes::new(py, &reply.encode_to_vec()))
    }

    /// One step as `FarmEnv.step` returns it: `(observation float32 array,
    /// reward, terminated, truncated, info)`. `info` is the dict of
    /// `rustfarm_gym.env.info_dict` with `step_info`, else `{}` (or
    /// `{"summary": ...}` when the episode ended). `streamed`: over the
    /// lockstep stream, else a unary `Step`.
    #[pyo3(signature = (env_id, action, step_info = true, streamed = true))]
    fn step_env<'py>(
        &self,
        py: Python<'py>,
        env_id: String,
        action: u32,
        step_info: bool,
        streamed: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let req = StepRequest { env_id, action };
        let reply = self.call(py, |inner| {
            if streamed {
                inner.stream_step(req)
            } else {
                inner.unary_step(req)
            }
        })?;
        let info = reply.info.unwrap_or_default();
        let ended = reply.terminated || reply.truncated;
        let info_obj = if step_info {
            info_dict(py, &info)?
        } else {
            let d = PyDict::new(py);
            if ended {
                let summary = info.summary.unwrap_or_default();
                d.set_item(intern!(py, "summary"), summary_dict(py, &summary)?)?;
            }
            d
        };
        let obs = PyArray1::from_vec(py, reply.observation);
        (
            obs,
            reply.reward,
            reply.terminated,
            reply.truncated,
            info_obj,
        )
            .into_pyobject(py)
    }

    /// `StepBatch` with one `StepReply` per environment (not packed); the
    /// encoded replies, in request order.
    #[pyo3(signature = (env_ids, actions, auto_reset = true))]
    fn step_batch<'py>(
        &self,
        py: Python<'py>,
        env_ids: Vec<String>,
        actions: Vec<u32>,
        auto_reset: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let req = StepBatchRequest {
            env_ids,
            actions,
            auto_reset,
            ..Default::default()
        };
        let reply = self.call(py, |inner| batch_call(inner, vec![req]))?;
        let encoded: Vec<Bound<'py, PyBytes>> = reply
            .into_iter()
            .flat_map(|r| r.replies)
            .map(|r| PyBytes::new(py, &r.encode_to_vec()))
            .collect();
        PyList::new(py, encoded)
    }

    /// A [`BatchStepper`] for these environments (packed replies; `info`
    /// adds the per-step diagnostics; `parts`: calls per step, all in
    /// flight at once).
    #[pyo3(signature = (env_ids, auto_reset = true, info = false, parts = 1))]
    fn batch_stepper(
        slf: Py<Self>,
        env_ids: Vec<String>,
        auto_reset: bool,
        info: bool,
        parts: usize,
    ) -> BatchStepper {
        let n = env_ids.len();
        let parts = parts.clamp(1, n.max(1));
        let cuts: Vec<usize> = (0..=parts).map(|k| n * k / parts).collect();
        let groups = cuts
            .windows(2)
            .map(|w| {
                (
                    w[0],
                    StepBatchRequest {
                        env_ids: env_ids[w[0]..w[1]].to_vec(),
                        auto_reset,
                        packed: true,
                        packed_info: info,
                        ..Default::default()
                    },
                )
            })
            .collect();
        BatchStepper {
            client: slf,
            n,
            info,
            groups,
        }
    }

    /// Close the step stream and the connection (idempotent); later calls
    /// raise `FarmError`.
    fn close(&self, py: Python<'_>) {
        // Dropping the runtime ends the connection's tasks; no GIL needed.
        py.detach(|| drop(self.lock().take()));
    }
}

/// Connect with retries until `timeout` (a server that is still starting
/// gets the time grpcio's `channel_ready_future` would give it).
fn connect(address: &str, timeout: Duration) -> Result<Inner, CallError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CallError::Unreachable(format!("cannot start a tokio runtime: {e}")))?;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| {
            CallError::Unreachable(format!("invalid FarmControl address {address:?}: {e}"))
        })?
        .tcp_nodelay(true)
        // HTTP/2 flow control: with the default 64 KiB windows the server
        // would stall mid-reply on a large packed StepBatch (about 150 KB
        // for 1024 envs with info) until this side sends WINDOW_UPDATE.
        .initial_stream_window_size(Some(RECV_WINDOW_BYTES))
        .initial_connection_window_size(Some(RECV_WINDOW_BYTES))
        .connect_timeout(timeout.max(Duration::from_millis(1)));
    let deadline = Instant::now() + timeout;
    let channel = rt.block_on(async {
        loop {
            match endpoint.connect().await {
                Ok(ch) => return Ok(ch),
                Err(_) if Instant::now() + CONNECT_RETRY < deadline => {
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
                Err(e) => {
                    return Err(CallError::Unreachable(format!(
                        "no FarmControl server reachable at {address} within {:.3} s: {}",
                        timeout.as_secs_f64(),
                        error_chain(&e)
                    )));
                }
            }
        }
    })?;
    let unary = FarmControlClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let streaming = FarmControlStreamClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    Ok(Inner {
        rt,
        unary,
        streaming,
        stream: None,
        stream_available: true,
    })
}

/// An error with its sources, `outer: inner: ...` (tonic's transport error
/// alone says only "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Sends every request before awaiting any reply (they share the HTTP/2
/// connection); the replies in request order.
fn batch_call(
    inner: &mut Inner,
    requests: Vec<StepBatchRequest>,
) -> Result<Vec<StepBatchReply>, CallError> {
    let unary = inner.unary.clone();
    inner
        .rt
        .block_on(futures::future::try_join_all(requests.into_iter().map(
            |req| {
                let mut c = unary.clone();
                async move { c.step_batch(req).await.map(tonic::Response::into_inner) }
            },
        )))
        .map_err(|status| CallError::Status {
            method: "StepBatch",
            status,
        })
}

/// Steps a fixed list of environments with packed `StepBatch` calls and
/// returns numpy arrays; built by `Client.batch_stepper`.
#[pyclass(module = "rustfarm_native", frozen)]
struct BatchStepper {
    client: Py<Client>,
    n: usize,
    info: bool,
    /// `(index of the first env, request without actions)` per call.
    groups: Vec<(usize, StepBatchRequest)>,
}

/// The flat arrays of a packed step over all groups.
#[derive(Default)]
struct Packed {
    obs_dim: usize,
    observations: Vec<f32>,
    rewards: Vec<f64>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    info: Vec<f64>,
    ended: Vec<i64>,
    ended_replies: Vec<Vec<u8>>,
}

impl Packed {
    /// Appends one group's reply for `n` environments starting at `first`,
    /// after checking its array lengths.
    fn append(
        &mut self,
        reply: StepBatchReply,
        first: usize,
        n: usize,
        info: bool,
    ) -> Result<(), String> {
        let p = reply.packed.unwrap_or_default();
        let dim = p.obs_dim as usize;
        let info_len = if info { n * PACKED_INFO_WIDTH } else { 0 };
        if p.observations.len() != n * dim
            || p.rewards.len() != n
            || p.terminated.len() != n
            || p.truncated.len() != n
            || p.info.len() != info_len
            || p.ended.len() != p.ended_replies.len()
            || (first > 0 && dim != self.obs_dim)
        {
            return Err(format!(
                "packed reply for {n} environments has inconsistent array lengths (obs_dim {dim}, {} observations, {} rewards)",
                p.observations.len(),
                p.rewards.len()
            ));
        }
        self.obs_dim = dim;
        self.observations.extend(p.observations);
        self.rewards.extend(p.rewards);
        self.terminated.extend(p.terminated);
        self.truncated.extend(p.truncated);
        self.info.extend(p.info);
        self.ended
            .extend(p.ended.iter().map(|&i| i as i64 + first as i64));
        self.ended_replies
            .extend(p.ended_replies.iter().map(Message::encode_to_vec));
        Ok(())
    }
}

#[pymethods]
impl BatchStepper {
    /// Number of `StepBatch` calls per step.
    #[getter]
    fn parts(&self) -> usize {
        self.groups.len()
    }

    /// One action per environment (uint32, in the order of the env ids):
    /// `(observations (n, obs_dim) float32, rewards float64, terminated
    /// bool, truncated bool, info (n, 9) float64 or None, ended int64
    /// indices, encoded StepReply of each ended env)`.
    fn step<'py>(
        &self,
        py: Python<'py>,
        actions: PyReadonlyArray1<'py, u32>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let actions = actions.as_slice()?.to_vec();
        if actions.len() != self.n {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{} actions for {} environments",
                actions.len(),
                self.n
            )));
        }
        let client = self.client.get();
        let (info, n, groups) = (self.info, self.n, &self.groups);
        let packed = client.call(py, |inner| {
            let mut requests = Vec::with_capacity(groups.len());
            for (k, (first, template)) in groups.iter().enumerate() {
                let end = groups.get(k + 1).map_or(n, |g| g.0);
                let mut req = template.clone();
                req.actions = actions[*first..end].to_vec();
                requests.push(req);
            }
            let replies = batch_call(inner, requests)?;
            let mut packed = Packed {
                observations: Vec::with_capacity(n * 16),
                ..Default::default()
            };
            for (reply, (k, (first, _))) in replies.into_iter().zip(groups.iter().enumerate()) {
                let end = groups.get(k + 1).map_or(n, |g| g.0);
                packed
                    .append(reply, *first, end - first, info)
                    .map_err(|message| CallError::BadReply {
                        method: "StepBatch",
                        message,
                    })?;
            }
            Ok(packed)
        })?;
        let dim = packed.obs_dim;
        let obs = PyArray1::from_vec(py, packed.observations).reshape([n, dim])?;
        let info_arr = if info {
            PyArray1::from_vec(py, packed.info)
                .reshape([n, PACKED_INFO_WIDTH])?
                .into_any()
        } else {
            py.None().into_bound(py)
        };
        let ended_replies: Vec<Bound<'py, PyBytes>> = packed
            .ended_replies
            .iter()
            .map(|b| PyBytes::new(py, b))
            .collect();
        (
            obs,
            PyArray1::from_vec(py, packed.rewards),
            PyArray1::from_vec(py, packed.terminated),
            PyArray1::from_vec(py, packed.truncated),
            info_arr,
            PyArray1::from_vec(py, packed.ended),
            PyList::new(py, ended_replies)?,
        )
            .into_pyobject(py)
    }
}

/// The module: `Client` and `BatchStepper`.
#[pymodule]
fn rustfarm_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<BatchStepper>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
