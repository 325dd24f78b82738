//! Helpers of the rust-farm end-to-end tests and data-plane benchmark: a real
//! nats-server, the real `emitter`, `collector` and `sleep-worker` binaries
//! as child processes (killed on drop), and readers of the farm's streams.
//!
//! The binaries are located with [`farm_testsupport::bin_path`], so build
//! them first: `cargo build --workspace --bins` (or `--release` for the
//! benchmark).
//!
//! ```no_run
//! # async fn demo() {
//! let mut farm = farm_e2e::Farm::start("demo", &[]);
//! farm.start_collector();
//! farm.start_emitter();
//! farm.start_workers(2, &[]);
//! farm.wait_ready().await;
//! let (status, _) = farm.submit_ndjson("{\"payload\": {}}\n").await;
//! assert_eq!(status, 202);
//! # }
//! ```

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use farm_runtime::names::FarmNames;
use farm_runtime::proto::{DeadLetter, TaskResult};
use farm_testsupport::{ChildGuard, NatsCluster, NatsServer, bin_path, eventually, free_port};
use futures::StreamExt;
use prost::Message as _;
use serde_json::Value;

/// Generous bound for waits in tests.
pub const WAIT: Duration = Duration::from_secs(120);

/// What a [`Farm`] runs on: one nats-server or a JetStream cluster.
pub trait Nats {
    /// `NATS_URL` for the farm's processes (a comma list on a cluster).
    fn nats_url(&self) -> String;
    /// The addresses for a test's own client.
    fn addrs(&self) -> Vec<async_nats::ServerAddr>;
    /// The server logs, for failure messages.
    fn logs(&self) -> String;
}

impl Nats for NatsServer {
    fn nats_url(&self) -> String {
        self.url()
    }
    fn addrs(&self) -> Vec<async_nats::ServerAddr> {
        self.url().parse().into_iter().collect()
    }
    fn logs(&self) -> String {
        format!("--- nats-server ---\n{}\n", self.log_tail())
    }
}

impl Nats for NatsCluster {
    fn nats_url(&self) -> String {
        self.urls()
    }
    fn addrs(&self) -> Vec<async_nats::ServerAddr> {
        self.server_addrs()
    }
    fn logs(&self) -> String {
        NatsCluster::logs(self)
    }
}

/// A farm of real processes around a real nats-server (or cluster).
#[derive(Debug)]
pub struct Farm<N: Nats = NatsServer> {
    /// The server (restartable on the same port and store) or cluster.
    pub nats: N,
    /// Names of the farm's streams and subjects.
    pub names: FarmNames,
    /// Environment shared by every process of the farm.
    pub env: Vec<(String, String)>,
    /// The emitter process, once started.
    pub emitter: Option<ChildGuard>,
    /// The collector process, once started.
    pub collector: Option<ChildGuard>,
    /// Worker processes.
    pub workers: Vec<ChildGuard>,
    emitter_port: u16,
    collector_port: u16,
    http: reqwest::Client,
}

fn spawn(bin: &str, label: &str, env: &[(String, String)], extra: &[(&str, &str)]) -> ChildGuard {
    let path =
        bin_path(bin).unwrap_or_else(|e| panic!("{e}; run `cargo build --workspace --bins` first"));
    let mut cmd = Command::new(path);
    cmd.env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    ChildGuard::spawn(label, cmd).unwrap_or_else(|e| panic!("spawn {label}: {e}"))
}

/// One entry of the OUTPUT stream.
#[derive(Debug, Clone)]
pub struct OutputEntry {
    /// The `Farm-*` headers.
    pub headers: HashMap<String, String>,
    /// The decoded result.
    pub result: TaskResult,
}

impl OutputEntry {
    /// A numeric header (panics if absent: the collector always writes them).
    pub fn num(&self, key: &str) -> u64 {
        self.headers
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("header {key} missing or not a number: {:?}", self.headers))
    }
}

impl Farm {
    /// Starts nats-server; `env` is added to every process's environment
    /// (farm-wide keys such as `FARM_TASKS_MAX_MSGS`).
    pub fn start(farm: &str, env: &[(&str, &str)]) -> Self {
        Self::on(NatsServer::start().expect("start nats-server"), farm, env)
    }
}

impl<N: Nats> Farm<N> {
    /// A farm on `nats`; `env` is added to every process's environment.
    pub fn on(nats: N, farm: &str, env: &[(&str, &str)]) -> Self {
        let names = FarmNames::new(farm).expect("valid farm name");
        let mut all = vec![
            ("NATS_URL".to_owned(), nats.nats_url()),
            ("FARM_NAME".to_owned(), farm.to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Self {
            nats,
            names,
            env: all,
            emitter: None,
            collector: None,
            workers: Vec::new(),
            emitter_port: 0,
            collector_port: 0,
            http: reqwest::Client::new(),
        }
    }

    /// Starts the emitter on a free port.
    pub fn start_emitter(&mut self) {
        self.emitter_port = free_port().expect("free port");
        let port = self.emitter_port.to_string();
        self.emitter = Some(spawn(
            "emitter",
            "emitter",
            &self.env,
            &[("FARM_HTTP_PORT", &port)],
        ));
    }

    /// Starts the collector on a free port, with extra environment.
    pub fn start_collector_with(&mut self, extra: &[(&str, &str)]) {
        self.collector_port = free_port().expect("free port");
        let port = self.collector_port.to_string();
        let mut all = vec![("FARM_HTTP_PORT", port.as_str())];
        all.extend_from_slice(extra);
        self.collector = Some(spawn("collector", "collector", &self.env, &all));
    }

    /// Starts the collector on a free port.
    pub fn start_collector(&mut self) {
        self.start_collector_with(&[]);
    }

    /// Starts `n` sleep-worker processes with extra environment.
    pub fn start_workers(&mut self, n: usize, extra: &[(&str, &str)]) {
        for _ in 0..n {
            let i = self.workers.len();
            let label = format!("worker-{i}");
            let mut all = vec![("FARM_HTTP_PORT", "0"), ("FARM_INSTANCE", label.as_str())];
            all.extend_from_slice(extra);
            self.workers
                .push(spawn("sleep-worker", &label, &self.env, &all));
        }
    }

    /// `http://127.0.0.1:<emitter port>`.
    pub fn emitter_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.emitter_port)
    }

    /// `http://127.0.0.1:<collector port>`.
    pub fn collector_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.collector_port)
    }

    /// Waits until the started emitter and collector answer `/_/health`.
    pub async fn wait_ready(&self) {
        let mut urls = Vec::new();
        if self.emitter.is_some() {
            urls.push(self.emitter_url());
        }
        if self.collector.is_some() {
            urls.push(self.collector_url());
        }
        for url in urls {
            let http = self.http.clone();
            let health = format!("{url}/_/health");
            let ok = eventually(&health, WAIT, Duration::from_millis(50), || {
                let http = http.clone();
                let health = health.clone();
                async move {
                    let r = http.get(&health).send().await.ok()?;
                    r.status().is_success().then_some(())
                }
            })
            .await;
            if let Err(e) = ok {
                panic!("{e}\n{}", self.logs());
            }
        }
    }

    /// Logs of every process, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (name, c) in [("emitter", &self.emitter), ("collector", &self.collector)] {
            if let Some(c) = c {
                s.push_str(&format!("--- {name} ---\n{}\n", c.log_tail()));
            }
        }
        for (i, w) in self.workers.iter().enumerate() {
            s.push_str(&format!("--- worker-{i} ---\n{}\n", w.log_tail()));
        }
        s.push_str(&self.nats.logs());
        s
    }

    /// POSTs an NDJSON batch to the emitter; returns the status and the
    /// JSON answer (`Value::Null` if the connection failed).
    pub async fn submit_ndjson(&self, body: &str) -> (u16, Value) {
        self.submit(body.to_owned(), "application/x-ndjson", &[])
            .await
    }

    /// POSTs `body` with a content type and headers to the emitter.
    pub async fn submit(
        &self,
        body: String,
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/", self.emitter_url()))
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// The collector's snapshot as JSON, if it answers.
    pub async fn snapshot(&self) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/metrics/snapshot", self.collector_url()))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until the snapshot's `completed` reaches `n`; returns it.
    pub async fn wait_completed(&self, n: u64, within: Duration) -> Value {
        let got = eventually(
            "collector completed count",
            within,
            Duration::from_millis(100),
            || async {
                let s = self.snapshot().await?;
                (s["completed"].as_u64()? >= n).then_some(s)
            },
        )
        .await;
        match got {
            Ok(s) => s,
            Err(e) => panic!(
                "{e}; last snapshot {:?}\n{}",
                self.snapshot().await,
                self.logs()
            ),
        }
    }

    /// A JetStream context on a fresh connection.
    pub async fn js(&self) -> (async_nats::Client, jetstream::Context) {
        let client = async_nats::connect(self.nats.addrs())
            .await
            .expect("connect");
        let js = jetstream::new(client.clone());
        (client, js)
    }

    /// Every entry of the OUTPUT stream, in stream order.
    pub async fn read_output(&self) -> Vec<OutputEntry> {
        let (client, js) = self.js().await;
        let out = read_output(&js, &self.names).await;
        client.flush().await.expect("flush");
        out
    }

    /// Every dead letter of the DLQ stream, in stream order.
    pub async fn read_dlq(&self) -> Vec<DeadLetter> {
        let (client, js) = self.js().await;
        let out = read_dlq(&js, &self.names).await;
        client.flush().await.expect("flush");
        out
    }
}

/// Every message of `stream` (none if it does not exist), in stream order.
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<jetstream::Message> {
    let Ok(mut stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut msgs = consumer.messages().await.expect("messages");
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), msgs.next()).await {
        let m = m.expect("stream message");
        let seq = m.info().expect("info").stream_sequence;
        out.push(m);
        if seq >= state.last_sequence {
            break;
        }
    }
    out
}

/// Every entry of the farm's OUTPUT stream, in stream order.
pub async fn read_output(js: &jetstream::Context, names: &FarmNames) -> Vec<OutputEntry> {
    read_stream(js, &names.output_stream())
        .await
        .into_iter()
        .map(|m| {
            let headers = m
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .filter_map(|(k, v)| Some((k.to_string(), v.first()?.as_str().to_owned())))
                .collect();
            let result = TaskResult::decode(m.payload.clone()).expect("OUTPUT holds TaskResults");
            OutputEntry { headers, result }
        })
        .collect()
}

/// Every dead letter of the farm's DLQ stream, in stream order.
pub async fn read_dlq(js: &jetstream::Context, names: &FarmNames) -> Vec<DeadLetter> {
    read_stream(js, &names.dlq_stream())
        .await
        .into_iter()
        .map(|m| DeadLetter::decode(m.payload.clone()).expect("DLQ holds DeadLetters"))
        .collect()
}

/// An NDJSON batch of no-op sleep tasks with ids `{prefix}-{i}` for `i` in
/// `range`, each with deadline `deadline_ms(i)` (0 = none).
pub fn noop_batch(
    prefix: &str,
    range: std::ops::Range<usize>,
    deadline_ms: impl Fn(usize) -> u64,
) -> String {
    let mut s = String::new();
    for i in range {
        let d = deadline_ms(i);
        s.push_str(&format!(
            "{{\"id\":\"{prefix}-{i}\",\"payload\":{{}},\"deadline_ms\":{d}}}\n"
        ));
    }
    s
}

/// The ids listed under `key` (`"ids"` of a 202, `"accepted"` of an error).
pub fn ids(answer: &Value, key: &str) -> Vec<String> {
    answer[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
