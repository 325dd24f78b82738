//! Data-plane benchmark of rust-farm (prints figures; never fails on them).
//!
//! In one run, on one nats-server (and at the end on a 3-node cluster):
//!
//! 1. **raw**: JetStream work-queue throughput without farm code: a client
//!    publishes `N` messages asynchronously (acks pipelined) into a
//!    work-queue stream shaped like `FARM_<F>_TASKS` (file storage, message
//!    ids), while a pull consumer fetches and acks them;
//! 2. **two-hop**: the farm's guarantees without farm code (see
//!    [`two_hop_throughput`]): task publish with a message id -> pull ->
//!    result publish with a message id -> ack the task -> pull -> ack the
//!    result, on three connections. The farm's throughput target is against
//!    this one (farm / two-hop >= 0.85): it pays for the same two stores;
//!    the farm adds the OUTPUT store and HTTP intake on top;
//! 3. **farm**: end-to-end throughput of emitter -> 2 `sleep-worker`
//!    replicas (no-op handler) -> collector: `N` tasks submitted over HTTP as
//!    NDJSON batches, timed until the collector has written all of them to
//!    OUTPUT;
//! 4. **latency** at about half the measured farm capacity: paced
//!    submissions, end to end (HTTP submit -> the output entry published on
//!    `farm.<f>.output.<task>`, observed by a core-NATS subscriber to
//!    `farm.<f>.output.>`), and the raw path
//!    at the same rate (publish -> delivered to the pull consumer), so the
//!    latency the farm adds is visible; the farm's latency is also split
//!    into stages from timestamps on the one host clock (see `Stages`).
//!
//! 5. **cluster**: two-hop and farm throughput again on a real 3-node
//!    JetStream cluster with R3 streams (`BENCH_CLUSTER=0` skips it).
//!
//! Run (release binaries are required; the bench uses `target/release`):
//!
//! ```text
//! cargo build --release --bins -p emitter -p collector -p handler  # handler: functions/sleep, binary sleep-worker
//! cargo bench -p farm-e2e --bench dataplane
//! ```
//!
//! `BENCH_TASKS` (default 20000), `BENCH_LATENCY_SECS` (default 5) and
//! `BENCH_WORKER_CONCURRENCY` (default 64) tune the run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, pull},
    message::PublishMessage,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use bytes::Bytes;
use farm_e2e::{Farm, Nats};
use farm_runtime::proto::Task;
use farm_testsupport::NatsCluster;
use futures::StreamExt;
use hdrhistogram::Histogram;
use prost::Message as _;

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A no-op task payload, the same bytes the farm's tasks carry.
fn task_bytes(id: &str, seq: u64) -> Bytes {
    Bytes::from(
        Task {
            id: id.to_owned(),
            seq,
            payload: Bytes::from_static(b"{}"),
            content_type: "application/json".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// CPU time (user + system, seconds) of this process and of each of its
/// child processes (nats-server, emitter, collector, workers), by name, from
/// `/proc` (Linux; empty elsewhere). Differences between two samples say
/// where a phase's CPU went, whatever else the machine was running.
fn cpu_sample() -> HashMap<String, f64> {
    // USER_HZ, the unit of /proc/<pid>/stat times, is 100 on Linux.
    const TICKS_PER_S: f64 = 100.0;
    let me = std::process::id();
    let read = |pid: &str| -> Option<(String, u32, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_owned();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((name, ppid, ticks / TICKS_PER_S))
    };
    let mut out = HashMap::new();
    if let Some((_, _, t)) = read("self") {
        out.insert("bench (client)".to_owned(), t);
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some((name, ppid, t)) = read(&pid)
            && ppid == me
        {
            *out.entry(name).or_default() += t;
        }
    }
    out
}

/// Prints the CPU each process spent per task between two samples, and the
/// throughput those costs would allow if the machine's CPUs did nothing else.
fn print_cpu(label: &str, before: &HashMap<String, f64>, after: &HashMap<String, f64>, tasks: u64) {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    if rows.is_empty() || tasks == 0 {
        return;
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let per = |d: f64| d * 1e6 / tasks as f64;
    let total: f64 = rows.iter().map(|(_, d)| d).sum();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let parts: Vec<String> = rows
        .iter()
        .map(|(k, d)| format!("{k} {:.1}", per(*d)))
        .collect();
    println!(
        "  {label} CPU per task (us): {}; total {:.1} us -> at most {:.0} tasks/s on {cpus} CPUs",
        parts.join(", "),
        per(total),
        cpus * 1e6 / per(total)
    );
}

/// The raw work-queue stream, shaped like TASKS.
async fn raw_stream(js: &jetstream::Context, name: &str, replicas: usize) -> stream::Stream {
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{}.tasks", name.to_lowercase())],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        discard: DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .expect("create raw stream")
}

async fn raw_consumer(s: &stream::Stream) -> jetstream::consumer::PullConsumer {
    s.create_consumer(pull::Config {
        durable_name: Some("raw".into()),
        ack_policy: AckPolicy::Explicit,
        max_ack_pending: 10_000,
        ..Default::default()
    })
    .await
    .expect("raw consumer")
}

/// (a) Raw throughput: tasks/s from the first publish to the last ack.
async fn raw_throughput(url: &str, n: u64) -> f64 {
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let s = raw_stream(&js, "RAWTPUT", 1).await;
    let consumer = raw_consumer(&s).await;
    let t0 = Instant::now();
    let publisher = publish_tasks(js, "rawtput.tasks", "raw", n);
    drain_acked(consumer, n).await;
    let elapsed = t0.elapsed();
    publisher.await.expect("publisher");
    client.flush().await.expect("flush");
    n as f64 / elapsed.as_secs_f64()
}

/// Publishes `n` tasks `PREFIX-i` with message ids to `subject`, the acks
/// pipelined (up to 1,024 in flight), on a task of its own; it ends once
/// every publish is acknowledged.
fn publish_tasks(
    js: jetstream::Context,
    subject: &'static str,
    prefix: &'static str,
    n: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let send = async {
            for i in 0..n {
                let id = format!("{prefix}-{i}");
                let msg = PublishMessage::build()
                    .message_id(&id)
                    .payload(task_bytes(&id, i));
                let ack = js.send_publish(subject, msg).await.expect("publish");
                if tx.send(ack).await.is_err() {
                    break;
                }
            }
            drop(tx);
        };
        let recv = async {
            while let Some(ack) = rx.recv().await {
                ack.await.expect("publish ack");
            }
        };
        tokio::join!(send, recv);
    })
}

/// A continuous pull of `consumer`, 256 messages per batch.
async fn pull_messages(consumer: &jetstream::consumer::PullConsumer) -> pull::Stream {
    consumer
        .stream()
        .max_messages_per_batch(256)
        .messages()
        .await
        .expect("messages")
}

/// Pulls `n` messages from `consumer`, acking each as it arrives; returns
/// when the last ack is sent.
async fn drain_acked(consumer: jetstream::consumer::PullConsumer, n: u64) {
    let mut msgs = pull_messages(&consumer).await;
    for _ in 0..n {
        let m = msgs.next().await.expect("open").expect("message");
        m.ack().await.expect("ack");
    }
}

/// (a2) Two-hop throughput: the farm's guarantees without farm code, on three
/// clients as the farm has three processes. A publisher puts `n` tasks into
/// a work-queue stream with message ids; a worker pulls each one, publishes
/// a result with its own message id into a second work-queue stream and acks
/// the task only once that publish is acknowledged (so a crash in between
/// redelivers the task and the result is de-duplicated); a reader pulls and
/// acks the results. Tasks/s from the first publish to the last result ack.
async fn two_hop_throughput(url: &str, n: u64, replicas: usize) -> f64 {
    let connect = || async { async_nats::connect(url).await.expect("connect") };
    let (pub_client, worker_client, reader_client) =
        (connect().await, connect().await, connect().await);
    let js = jetstream::new(pub_client.clone());
    raw_stream(&js, "HOPTASKS", replicas).await;
    raw_stream(&js, "HOPRESULTS", replicas).await;
    // Each hop on its own connection, as each farm stage is its own process.
    let worker_js = jetstream::new(worker_client.clone());
    let tasks = raw_consumer(&worker_js.get_stream("HOPTASKS").await.expect("task stream")).await;
    let reader_js = jetstream::new(reader_client.clone());
    let results = raw_consumer(
        &reader_js
            .get_stream("HOPRESULTS")
            .await
            .expect("result stream"),
    )
    .await;
    let t0 = Instant::now();
    let publisher = publish_tasks(js, "hoptasks.tasks", "hop", n);
    let worker = tokio::spawn(async move {
        let mut msgs = pull_messages(&tasks).await;
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let take = async {
            for _ in 0..n {
                let m = msgs.next().await.expect("open").expect("message");
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| format!("res-{}", v.as_str()))
                    .expect("task message id");
                let msg = PublishMessage::build()
                    .message_id(&id)
                    .payload(m.payload.clone());
                let ack = worker_js
                    .send_publish("hopresults.tasks", msg)
                    .await
                    .expect("publish result");
                if tx.send((ack, m)).await.is_err() {
                    break;
                }
            }
            drop(tx);
        };
        let settle = async {
            while let Some((ack, m)) = rx.recv().await {
                ack.await.expect("result publish ack");
                m.ack().await.expect("task ack");
            }
        };
        tokio::join!(take, settle);
    });
    drain_acked(results, n).await;
    let elapsed = t0.elapsed();
    publisher.await.expect("publisher");
    worker.await.expect("worker");
    for c in [pub_client, worker_client, reader_client] {
        c.flush().await.expect("flush");
    }
    n as f64 / elapsed.as_secs_f64()
}

/// (b) Farm throughput: tasks/s from the first HTTP submit until the
/// collector reports all of them completed.
async fn farm_throughput<N: Nats>(farm: &Farm<N>, n: u64, prefix: &str) -> f64 {
    let base = farm
        .snapshot()
        .await
        .and_then(|s| s["completed"].as_u64())
        .unwrap_or(0);
    let batch = 1000;
    let bodies: Vec<String> = (0..n)
        .step_by(batch)
        .map(|start| {
            farm_e2e::noop_batch(
                prefix,
                start as usize..((start + batch as u64).min(n)) as usize,
                |_| 0,
            )
        })
        .collect();
    let t0 = Instant::now();
    let answers: Vec<(u16, serde_json::Value)> = futures::stream::iter(bodies.iter())
        .map(|b| farm.submit_ndjson(b))
        .buffer_unordered(4)
        .collect()
        .await;
    let submitted = t0.elapsed();
    for (status, answer) in &answers {
        assert_eq!(*status, 202, "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = farm
            .snapshot()
            .await
            .and_then(|s| s["completed"].as_u64())
            .unwrap_or(0);
        if done >= base + n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "farm did not finish\n{}",
            farm.logs()
        );
        // Each poll computes a snapshot in the collector (percentiles over
        // its window), CPU taken from the farm being measured: poll gently.
        // The end time is late by at most one period (about 1 % of a run).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    println!(
        "  farm: {n} tasks submitted in {:.2} s ({:.0}/s accepted), all collected after {:.2} s",
        submitted.as_secs_f64(),
        n as f64 / submitted.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    n as f64 / elapsed.as_secs_f64()
}

/// Ticks per second of the paced latency runs: each tick sends rate/TICKS
/// tasks (one HTTP request for the farm, back-to-back publishes for raw).
const TICKS: f64 = 200.0;

/// Where the farm's latency goes, per task, from timestamps taken on the one
/// host clock: the bench's submit time, the server's stored times of the
/// task (`task_stored_us`) and of the result (`Farm-Latency-Us` after it),
/// the worker's handler start and end, and the bench's receive time.
struct Stages {
    /// HTTP submit -> task stored in TASKS (bench, emitter, JetStream).
    submit_to_stored: Histogram<u64>,
    /// Task stored -> handler started (delivery to a worker, decode).
    stored_to_started: Histogram<u64>,
    /// Handler started -> finished.
    handler: Histogram<u64>,
    /// Handler finished -> result stored in RESULTS.
    finished_to_result: Histogram<u64>,
    /// Result stored -> output entry seen (collector, JetStream, delivery).
    result_to_output: Histogram<u64>,
}

impl Stages {
    fn new() -> Self {
        Self {
            submit_to_stored: hist(),
            stored_to_started: hist(),
            handler: hist(),
            finished_to_result: hist(),
            result_to_output: hist(),
        }
    }

    /// Records one task; `submit_us` and `seen_us` are Unix microseconds.
    fn record(&mut self, submit_us: i64, seen_us: i64, m: &async_nats::Message) {
        let Ok(r) = farm_runtime::proto::TaskResult::decode(m.payload.clone()) else {
            return;
        };
        let Some(lat) = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Farm-Latency-Us"))
            .and_then(|v| v.as_str().parse::<i64>().ok())
        else {
            return;
        };
        let result_us = r.task_stored_us + lat;
        let d = |a: i64, b: i64| u64::try_from(b - a).unwrap_or(0);
        self.submit_to_stored
            .saturating_record(d(submit_us, r.task_stored_us));
        self.stored_to_started
            .saturating_record(d(r.task_stored_us, r.started_us));
        self.handler
            .saturating_record(d(r.started_us, r.finished_us));
        self.finished_to_result
            .saturating_record(d(r.finished_us, result_us));
        self.result_to_output
            .saturating_record(d(result_us, seen_us));
    }

    fn print(&self) {
        println!("  farm stages (p50 / p99, one host clock):");
        for (label, h) in [
            ("HTTP submit -> task stored", &self.submit_to_stored),
            ("task stored -> handler start", &self.stored_to_started),
            ("handler", &self.handler),
            ("handler end -> result stored", &self.finished_to_result),
            ("result stored -> output seen", &self.result_to_output),
        ] {
            println!(
                "    {label}: {:.2} / {:.2} ms",
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99))
            );
        }
    }
}

/// (c) Farm latency at `rate` tasks/s for `secs`: submit -> output published.
async fn farm_latency(farm: &Farm, rate: f64, secs: f64) -> (Histogram<u64>, Stages) {
    let (client, _js) = farm.js().await;
    let mut sub = client
        .subscribe(farm.names.output_filter())
        .await
        .expect("subscribe output");
    client.flush().await.expect("flush");
    let sent: Arc<Mutex<HashMap<String, (Instant, i64)>>> = Arc::default();
    let total = (rate * secs) as u64;
    let collector = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut h = hist();
            let mut stages = Stages::new();
            let mut seen = 0;
            let deadline = Instant::now() + Duration::from_secs(600);
            while seen < total && Instant::now() < deadline {
                let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(30), sub.next()).await
                else {
                    break;
                };
                let now = Instant::now();
                let now_us = farm_runtime::worker::now_us();
                let Some(id) = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Farm-Task-Id"))
                    .map(|v| v.as_str().to_owned())
                else {
                    continue;
                };
                let t = sent.lock().expect("lock").remove(&id);
                if let Some((t, t_us)) = t {
                    h.saturating_record(u64::try_from((now - t).as_micros()).unwrap_or(u64::MAX));
                    stages.record(t_us, now_us, &m);
                    seen += 1;
                }
            }
            (h, stages)
        })
    };
    let t0 = Instant::now();
    let mut next = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / TICKS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = futures::stream::FuturesUnordered::new();
    while next < total {
        tokio::select! {
            _ = tick.tick() => {
                let due = ((t0.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
                if due <= next { continue; }
                let body = farm_e2e::noop_batch("lat", next as usize..due as usize, |_| 0);
                {
                    let now = (Instant::now(), farm_runtime::worker::now_us());
                    let mut s = sent.lock().expect("lock");
                    for i in next..due {
                        s.insert(format!("lat-{i}"), now);
                    }
                }
                next = due;
                inflight.push(async move { farm.submit_ndjson(&body).await });
            }
            Some((status, answer)) = inflight.next(), if !inflight.is_empty() => {
                assert_eq!(status, 202, "{answer}");
            }
        }
    }
    while let Some((status, answer)) = inflight.next().await {
        assert_eq!(status, 202, "{answer}");
    }
    let measured = collector.await.expect("latency collector");
    client.flush().await.expect("flush");
    measured
}

/// (c') Raw latency at `rate` tasks/s for `secs`: publish -> delivered.
async fn raw_latency(url: &str, rate: f64, secs: f64) -> Histogram<u64> {
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let s = raw_stream(&js, "RAWLAT", 1).await;
    let consumer = raw_consumer(&s).await;
    let total = (rate * secs) as u64;
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let reader = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut msgs = consumer
                .stream()
                .max_messages_per_batch(256)
                .messages()
                .await
                .expect("messages");
            let mut h = hist();
            for _ in 0..total {
                let Ok(Some(Ok(m))) =
                    tokio::time::timeout(Duration::from_secs(30), msgs.next()).await
                else {
                    break;
                };
                let now = Instant::now();
                m.ack().await.expect("ack");
                let seq = Task::decode(m.payload.clone()).expect("task").seq;
                if let Some(t) = sent.lock().expect("lock").remove(&seq) {
                    h.saturating_record(u64::try_from((now - t).as_micros()).unwrap_or(u64::MAX));
                }
            }
            h
        })
    };
    let t0 = Instant::now();
    let mut next = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / TICKS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut acks = Vec::new();
    while next < total {
        tick.tick().await;
        let due = ((t0.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        let now = Instant::now();
        for i in next..due {
            sent.lock().expect("lock").insert(i, now);
            let id = format!("rl-{i}");
            let msg = PublishMessage::build()
                .message_id(&id)
                .payload(task_bytes(&id, i));
            acks.push(js.send_publish("rawlat.tasks", msg).await.expect("publish"));
        }
        next = due;
        if acks.len() > 1000 {
            for a in acks.drain(..) {
                a.await.expect("publish ack");
            }
        }
    }
    for a in acks {
        a.await.expect("publish ack");
    }
    let h = reader.await.expect("reader");
    client.flush().await.expect("flush");
    h
}

fn line(label: &str, h: &Histogram<u64>) {
    println!(
        "  {label}: n={} p50={:.2} ms p95={:.2} ms p99={:.2} ms max={:.2} ms",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` the
    // binary runs without it and must not start a minutes-long benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("dataplane benchmark: run it with `cargo bench -p farm-e2e --bench dataplane`");
        return;
    }
    let n = env_num("BENCH_TASKS", 20_000);
    let secs = env_num("BENCH_LATENCY_SECS", 5) as f64;
    let conc = env_num("BENCH_WORKER_CONCURRENCY", 64).to_string();

    let mut farm = Farm::start("bench", &[("RUST_LOG", "warn")]);
    println!(
        "rust-farm data-plane benchmark: {n} tasks, one nats-server at {}",
        farm.nats.url()
    );

    println!("(a) raw JetStream work queue (async publish + pull + ack)");
    let _ = raw_throughput(&farm.nats.url(), n / 10).await; // warm-up
    let cpu0 = cpu_sample();
    let raw = raw_throughput(&farm.nats.url(), n).await;
    let cpu1 = cpu_sample();
    println!("  raw: {raw:.0} tasks/s");
    print_cpu("raw", &cpu0, &cpu1, n);

    println!(
        "(a2) two hops: task publish (msg id) -> pull -> result publish (msg id) -> ack task -> pull -> ack result"
    );
    let _ = two_hop_throughput(&farm.nats.url(), n / 10, 1).await; // warm-up
    let cpu0 = cpu_sample();
    let two_hop = two_hop_throughput(&farm.nats.url(), n, 1).await;
    let cpu1 = cpu_sample();
    println!("  two-hop: {two_hop:.0} tasks/s");
    print_cpu("two-hop", &cpu0, &cpu1, n);

    println!("(b) farm: emitter -> 2 workers (no-op, concurrency {conc}) -> collector");
    farm.start_collector();
    farm.start_emitter();
    farm.start_workers(2, &[("FARM_CONCURRENCY", conc.as_str())]);
    farm.wait_ready().await;
    let _ = farm_throughput(&farm, n / 10, "warm").await;
    let cpu0 = cpu_sample();
    let farm_tput = farm_throughput(&farm, n, "tput").await;
    let cpu1 = cpu_sample();
    println!("  farm: {farm_tput:.0} tasks/s");
    print_cpu("farm", &cpu0, &cpu1, n);
    println!("  ratio farm/raw = {:.2}", farm_tput / raw);
    println!(
        "  ratio farm/two-hop = {:.2} (target >= 0.85)",
        farm_tput / two_hop
    );

    let rate = (farm_tput / 2.0).max(1.0);
    println!("(c) latency at {rate:.0} tasks/s (half the farm capacity) for {secs} s");
    let raw_h = raw_latency(&farm.nats.url(), rate, secs).await;
    line("raw  (publish -> delivered)", &raw_h);
    let (farm_h, stages) = farm_latency(&farm, rate, secs).await;
    line("farm (HTTP submit -> output stored)", &farm_h);
    stages.print();
    println!(
        "  added p50 = {:.2} ms (target <= 2 ms), added p99 = {:.2} ms",
        ms(farm_h.value_at_quantile(0.5)) - ms(raw_h.value_at_quantile(0.5)),
        ms(farm_h.value_at_quantile(0.99)) - ms(raw_h.value_at_quantile(0.99)),
    );
    if let Some(s) = farm.snapshot().await {
        println!(
            "  collector (server clock, task stored -> result stored): p50={:.2} ms p99={:.2} ms",
            s["latency_p50_s"].as_f64().unwrap_or(0.0) * 1e3,
            s["latency_p99_s"].as_f64().unwrap_or(0.0) * 1e3
        );
    }

    if env_num("BENCH_CLUSTER", 1) != 0 {
        cluster_throughput(n, &conc).await;
    }
}

/// (d) Two-hop and farm throughput on a 3-node JetStream cluster with R3
/// streams (the farm's default there), measured in the same run.
async fn cluster_throughput(n: u64, conc: &str) {
    let cluster = NatsCluster::start(3).expect("start a 3-node cluster");
    let first = cluster
        .nats_url()
        .split(',')
        .next()
        .unwrap_or_default()
        .to_owned();
    println!(
        "(d) 3-node JetStream cluster, R3 streams ({})",
        cluster.nats_url()
    );
    let _ = two_hop_throughput(&first, n / 10, 3).await; // warm-up
    let two_hop = two_hop_throughput(&first, n, 3).await;
    println!("  two-hop: {two_hop:.0} tasks/s");
    let mut farm = Farm::on(cluster, "benchc", &[("RUST_LOG", "warn")]);
    farm.start_collector();
    farm.start_emitter();
    farm.start_workers(2, &[("FARM_CONCURRENCY", conc)]);
    farm.wait_ready().await;
    let _ = farm_throughput(&farm, n / 10, "warm").await;
    let farm_tput = farm_throughput(&farm, n, "tput").await;
    println!("  farm: {farm_tput:.0} tasks/s");
    println!(
        "  ratio farm/two-hop = {:.2} on the cluster",
        farm_tput / two_hop
    );
}
