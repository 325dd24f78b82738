//! Shared helpers of the integration tests: a real local provider
//! (farm-local) with the real sleep worker, a real nats-server, real ONNX
//! Runtime from the workspace venv, and gateway-ext itself on dynamic ports.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use farm_local::{FunctionDeployment, Provider as LocalProvider, ProviderHandle};
use gateway_ext::config::{Config, FarmSpec};
use gateway_ext::provider::Provider;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The workspace root, from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway-ext lives in the workspace root")
        .to_path_buf()
}

/// libonnxruntime from the onnxruntime wheel in the workspace venv.
pub fn ort_dylib() -> PathBuf {
    let capi = workspace_root().join(".venv/lib/python3.11/site-packages/onnxruntime/capi");
    std::fs::read_dir(&capi)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", capi.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .unwrap_or_else(|| panic!("no libonnxruntime.so.* in {}", capi.display()))
}

/// The venv's python.
pub fn python() -> PathBuf {
    workspace_root().join(".venv/bin/python")
}

/// Writes a tiny ONNX model with the Python `onnx` package: a linear layer
/// `y = x @ W + b` with `W` zero (so `y` is the bias), input
/// `[batch, in_dim]`, output `[batch, actions.len()]` (bias given as JSON,
/// `NaN` allowed), and the rust-farm
/// metadata (see farm_policy::onnx).
pub fn write_linear_model(path: &Path, in_dim: usize, actions: &[&str], bias_json: &str) {
    let names: Vec<&str> = farm_model::observation::names().to_vec();
    let meta = serde_json::json!({
        "rust_farm.format": "1",
        "rust_farm.obs_version": farm_model::observation::OBS_VERSION.to_string(),
        "rust_farm.obs_names": serde_json::to_string(&names).unwrap(),
        "rust_farm.normalisation": "{\"kind\":\"none\"}",
        "rust_farm.action_meanings": serde_json::to_string(actions).unwrap(),
        "rust_farm.input_name": "obs",
        "rust_farm.input_shape": format!("[-1, {in_dim}]"),
        "rust_farm.output_name": "q",
        "rust_farm.output_shape": format!("[-1, {}]", actions.len()),
        "rust_farm.output_kind": "q_values",
    });
    let script = r#"
import json, sys
import numpy as np
import onnx
from onnx import helper, TensorProto, numpy_helper
path, in_dim, bias, meta = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
n = len(bias)
W = numpy_helper.from_array(np.zeros((in_dim, n), dtype=np.float32), "W")
B = numpy_helper.from_array(np.array(bias, dtype=np.float32), "B")
x = helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", in_dim])
y = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["batch", n])
mm = helper.make_node("MatMul", ["obs", "W"], ["h"])
add = helper.make_node("Add", ["h", "B"], ["q"])
g = helper.make_graph([mm, add], "linear", [x], [y], [W, B])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
m.ir_version = 8
for k, v in meta.items():
    p = m.metadata_props.add(); p.key = k; p.value = v
onnx.checker.check_model(m)
tmp = path + ".tmp"
onnx.save(m, tmp)
import os; os.replace(tmp, path)
"#;
    run_python(
        script,
        &[
            path.to_str().unwrap(),
            &in_dim.to_string(),
            bias_json,
            &meta.to_string(),
        ],
    );
}

/// Writes a 2x64 MLP (random weights, fixed seed) with rust-farm metadata.
pub fn write_mlp_model(path: &Path, actions: &[&str]) {
    let names: Vec<&str> = farm_model::observation::names().to_vec();
    let in_dim = farm_model::observation::OBS_DIM;
    let meta = serde_json::json!({
        "rust_farm.format": "1",
        "rust_farm.obs_version": farm_model::observation::OBS_VERSION.to_string(),
        "rust_farm.obs_names": serde_json::to_string(&names).unwrap(),
        "rust_farm.normalisation": "{\"kind\":\"none\"}",
        "rust_farm.action_meanings": serde_json::to_string(actions).unwrap(),
        "rust_farm.input_name": "obs",
        "rust_farm.input_shape": format!("[-1, {in_dim}]"),
        "rust_farm.output_name": "q",
        "rust_farm.output_shape": format!("[-1, {}]", actions.len()),
    });
    let script = r#"
import json, sys
import numpy as np
import onnx
from onnx import helper, TensorProto, numpy_helper
path, in_dim, n, meta = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
rng = np.random.default_rng(7)
def t(name, shape): return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)
inits = [t("W1", (in_dim, 64)), t("B1", (64,)), t("W2", (64, 64)), t("B2", (64,)), t("W3", (64, n)), t("B3", (n,))]
x = helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", in_dim])
y = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["batch", n])
nodes = [
  helper.make_node("Gemm", ["obs", "W1", "B1"], ["h1"]), helper.make_node("Relu", ["h1"], ["r1"]),
  helper.make_node("Gemm", ["r1", "W2", "B2"], ["h2"]), helper.make_node("Relu", ["h2"], ["r2"]),
  helper.make_node("Gemm", ["r2", "W3", "B3"], ["q"]),
]
g = helper.make_graph(nodes, "mlp", [x], [y], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
m.ir_version = 8
for k, v in meta.items():
    p = m.metadata_props.add(); p.key = k; p.value = v
onnx.checker.check_model(m)
onnx.save(m, path)
"#;
    run_python(
        script,
        &[
            path.to_str().unwrap(),
            &in_dim.to_string(),
            &actions.len().to_string(),
            &meta.to_string(),
        ],
    );
}

fn run_python(script: &str, args: &[&str]) {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run the venv python (scripts/setup.sh installs it, with onnx)");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a `rustfarm_gym` script with the venv python in gym/, its arguments
/// as one JSON object in `sys.argv[1]`.
pub fn gym_python(script: &str, args: &serde_json::Value) {
    let status = Command::new(python())
        .current_dir(workspace_root().join("gym"))
        .args(["-c", script, &args.to_string()])
        .status()
        .expect("run the venv python (scripts/setup.sh installs rustfarm_gym)");
    assert!(status.success(), "python export/inference failed: {status}");
}

/// Runs a `rustfarm_gym` script that writes `{"obs": [[...]], "actions":
/// [...]}` (a batch of observations and ONNX Runtime's greedy actions) to
/// `args["out"]`, which this sets to a temporary file, and returns both.
pub fn python_greedy_batch(
    script: &str,
    mut args: serde_json::Value,
) -> (Vec<Vec<f32>>, Vec<usize>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("greedy.json");
    args["out"] = serde_json::json!(out);
    gym_python(script, &args);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("greedy.json")).expect("json");
    let obs = v["obs"]
        .as_array()
        .expect("obs")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        })
        .collect();
    let actions = v["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a.as_u64().expect("action") as usize)
        .collect();
    (obs, actions)
}

/// The sleep-worker binary (package `handler`, functions/sleep), built on demand.
pub fn sleep_worker_bin() -> PathBuf {
    if let Ok(p) = farm_testsupport::bin_path("sleep-worker") {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-p", "handler", "--bin", "sleep-worker"])
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build -p handler --bin sleep-worker");
    assert!(
        st.success(),
        "cargo build -p handler --bin sleep-worker failed"
    );
    farm_testsupport::bin_path("sleep-worker").expect("sleep-worker built")
}

/// The collector binary (functions/collector), built on demand.
pub fn collector_bin() -> PathBuf {
    if let Ok(p) = farm_testsupport::bin_path("collector") {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-p", "collector"])
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build -p collector");
    assert!(st.success(), "cargo build -p collector failed");
    farm_testsupport::bin_path("collector").expect("collector built")
}

/// The emitter binary (functions/emitter), built on demand.
pub fn emitter_bin() -> PathBuf {
    if let Ok(p) = farm_testsupport::bin_path("emitter") {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-p", "emitter"])
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build -p emitter");
    assert!(st.success(), "cargo build -p emitter failed");
    farm_testsupport::bin_path("emitter").expect("emitter built")
}

/// Starts the real collector of `farm` as a process (snapshots every
/// `snapshot_every`), and waits until it answers `/_/health`.
pub async fn start_collector(
    nats: &str,
    farm: &str,
    snapshot_every: &str,
) -> farm_testsupport::ChildGuard {
    let port = farm_testsupport::free_port().unwrap();
    let mut cmd = Command::new(collector_bin());
    cmd.env_clear()
        .env("NATS_URL", nats)
        .env("FARM_NAME", farm)
        .env("FARM_HTTP_PORT", port.to_string())
        .env("COLLECTOR_SNAPSHOT_INTERVAL", snapshot_every)
        .env("RUST_LOG", "info");
    let mut child = farm_testsupport::ChildGuard::spawn("collector", cmd).unwrap();
    let health = format!("http://127.0.0.1:{port}/_/health");
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(&health).await
            && r.status().is_success()
        {
            return child;
        }
        assert!(
            child.is_running() && start.elapsed() < Duration::from_secs(30),
            "the collector did not become healthy\n{}",
            child.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running farm-local provider.
pub struct Local {
    /// Provider base URL.
    pub url: String,
    /// Its port.
    pub addr: SocketAddr,
    /// In-process handle.
    pub handle: ProviderHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Local {
    /// Starts a provider with the sleep worker installed as `sleep-worker:latest`,
    /// on `port` (0 = any).
    pub async fn start(port: u16) -> Local {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("images");
        farm_local::ImageStore::new(&store)
            .install("sleep-worker:latest", &sleep_worker_bin())
            .unwrap();
        let config = farm_local::Config {
            image_store: store,
            secrets_dir: dir.path().join("secrets"),
            readiness_period: Duration::from_millis(100),
            termination_grace: Duration::from_secs(5),
            ..Default::default()
        };
        let provider = LocalProvider::new(config).unwrap();
        let handle = provider.handle();
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            provider
                .run(listener, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Local {
            url: format!("http://{addr}"),
            addr,
            handle,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops it (replicas drain) and waits.
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
    }

    /// Deploys the real emitter of `farm` as `name`, labelled and annotated
    /// as the root stack.yml's emitter (role label, farm annotation).
    pub fn deploy_emitter(&self, name: &str, farm: &str, nats: &str) {
        self.handle
            .images()
            .install_as("emitter:latest", &emitter_bin(), "emitter")
            .unwrap();
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        self.handle
            .apply(FunctionDeployment {
                service: name.into(),
                image: "emitter:latest".into(),
                env_vars: map(&[("FARM_NAME", farm), ("NATS_URL", nats)]),
                labels: map(&[
                    ("com.rust-farm.role", "emitter"),
                    ("com.openfaas.scale.min", "1"),
                    ("com.openfaas.scale.max", "1"),
                ]),
                annotations: map(&[("com.rust-farm.farm", farm)]),
                ..Default::default()
            })
            .unwrap();
    }

    /// Deploys a sleep-worker function for `farm`.
    pub fn deploy_worker(
        &self,
        name: &str,
        farm: &str,
        nats: &str,
        annotations: &[(&str, &str)],
        labels: &[(&str, &str)],
    ) {
        let env: BTreeMap<String, String> = [
            ("FARM_NAME", farm),
            ("NATS_URL", nats),
            ("FARM_DRAIN_GRACE", "3s"),
            ("FARM_FETCH_EXPIRES", "200ms"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        self.handle
            .apply(FunctionDeployment {
                service: name.into(),
                image: "sleep-worker:latest".into(),
                env_vars: env,
                annotations: map(annotations),
                labels: map(labels),
                ..Default::default()
            })
            .unwrap();
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A running gateway-ext.
pub struct Gateway {
    /// HTTP base URL.
    pub url: String,
    /// gRPC address.
    pub grpc: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), gateway_ext::StartError>>>,
}

/// Logs of the code under test, filtered by `RUST_LOG` (off by default),
/// captured per test by the test harness.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The config of a test gateway: `UPSTREAM_URL` plus `extra`.
pub fn config(upstream: &str, extra: &[(&str, &str)]) -> Config {
    let mut m: HashMap<String, String> = HashMap::new();
    m.insert("UPSTREAM_URL".into(), upstream.into());
    m.insert("SCALE_BACKOFF".into(), "20ms".into());
    m.insert("SCALE_RETRIES".into(), "2".into());
    m.insert("PROVIDER_TIMEOUT".into(), "2s".into());
    for (k, v) in extra {
        m.insert((*k).into(), (*v).into());
    }
    Config::from_map(&m).unwrap()
}

impl Gateway {
    /// Starts gateway-ext with `cfg` (and `farms`, as if from a farms file),
    /// optionally over another provider.
    pub async fn start(
        mut cfg: Config,
        farms: Vec<FarmSpec>,
        provider: Option<Arc<dyn Provider>>,
    ) -> Result<Gateway, gateway_ext::StartError> {
        init_tracing();
        cfg.farms = farms;
        let service = gateway_ext::Service::start_with_provider(cfg, provider).await?;
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", http.local_addr().unwrap());
        let grpc_addr = grpc.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(http, Some(grpc), async move {
            let _ = rx.await;
        }));
        Ok(Gateway {
            url,
            grpc: grpc_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// gateway-ext over `upstream` with the one farm `spec` and discovery
    /// off, once the farm's loop has made its first decision.
    pub async fn with_farm(upstream: &str, spec: FarmSpec) -> Gateway {
        let farm = spec.farm.clone();
        let gw = Gateway::start(
            config(upstream, &[("DISCOVERY_INTERVAL", "off")]),
            vec![spec],
            None,
        )
        .await
        .unwrap();
        eventually(Duration::from_secs(20), "first decision", || async {
            gw.farm(&farm)
                .await
                .filter(|f| f["decisions"].as_u64().unwrap_or(0) >= 1)
        })
        .await;
        gw
    }

    /// POSTs an empty body to `path` (e.g. `/system/autoscaler/hold/f`);
    /// the status.
    pub async fn post(&self, path: &str) -> reqwest::StatusCode {
        reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Stops it and checks it stopped cleanly.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("gateway-ext stops")
                .unwrap()
                .unwrap();
        }
    }

    /// `GET /system/autoscaler` (with optional auth header).
    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("{}/system/autoscaler", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The status of one farm.
    pub async fn farm(&self, farm: &str) -> Option<serde_json::Value> {
        let s = self.status().await;
        s["farms"]
            .as_array()?
            .iter()
            .find(|f| f["farm"] == farm)
            .cloned()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// One farm's entry in `GET {url}/system/autoscaler`, with basic auth when
/// `auth` is given; `None` while gateway-ext does not answer or does not
/// list the farm.
pub async fn farm_status(
    url: &str,
    auth: Option<(&str, &str)>,
    farm: &str,
) -> Option<serde_json::Value> {
    let mut req = reqwest::Client::new().get(format!("{url}/system/autoscaler"));
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, Some(password));
    }
    let v: serde_json::Value = req.send().await.ok()?.json().await.ok()?;
    v["farms"]
        .as_array()?
        .iter()
        .find(|f| f["farm"] == farm)
        .cloned()
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `limit`
/// with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A farm spec for the farms file.
pub fn farm_spec(farm: &str, function: &str, policy: &str, extra: &[(&str, &str)]) -> FarmSpec {
    let mut yaml =
        format!("farms:\n  - farm: {farm}\n    function: {function}\n    policy: \"{policy}\"\n");
    for (k, v) in extra {
        yaml.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    let defaults = config("http://127.0.0.1:1", &[]).defaults;
    gateway_ext::config::parse_farms_yaml(&yaml, &defaults)
        .unwrap()
        .remove(0)
}

/// Waits (up to 30 s) until the farm's worker consumer exists, as a started
/// worker declares it; returns a JetStream context on `nats`.
pub async fn wait_consumer(nats: &str, farm: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(nats).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let names = farm_runtime::names::FarmNames::new(farm).unwrap();
    eventually(Duration::from_secs(30), "the worker's consumer", || {
        let js = js.clone();
        let names = names.clone();
        async move {
            let s = js.get_stream(names.tasks_stream()).await.ok()?;
            s.consumer_info(names.workers_consumer())
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
    js
}
