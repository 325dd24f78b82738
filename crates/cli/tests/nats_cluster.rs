//! `farmctl up --nats-cluster 3` with real processes: three nats-servers on
//! loopback in one JetStream cluster under the root stack.yml's farm. The
//! state lists every node, the farm's streams have 3 replicas, tasks posted
//! to the emitter reach OUTPUT before and after a node is killed, `status`
//! shows the dead node, and `down` leaves no nats-server running. Also: 0
//! and 2 nodes are refused before anything starts.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Down, farmctl, processes_under, run, up};
use farm_runtime::names::FarmNames;
use farm_testsupport::alive;
use serde_json::Value;

/// Bound of an election after a node is lost, and of a batch's processing.
const WAIT: Duration = Duration::from_secs(60);

/// Posts tasks `{prefix}-0..n` (20 ms sleeps) to the emitter until it
/// accepts all of them; re-posting is safe, JetStream de-duplicates by id.
async fn submit(http: &reqwest::Client, emitter: &str, prefix: &str, n: usize) {
    let body: String = (0..n)
        .map(|i| format!("{{\"id\":\"{prefix}-{i}\",\"payload\":{{\"sleep_ms\":20}}}}\n"))
        .collect();
    let deadline = Instant::now() + WAIT;
    let mut answers = Vec::new();
    loop {
        let r = http
            .post(emitter)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 202 => return,
            Ok(r) => answers.push(r.status().as_u16()),
            Err(_) => answers.push(0),
        }
        assert!(
            Instant::now() < deadline,
            "batch {prefix} never accepted; answers {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until OUTPUT holds `n` results, asking through `js`.
async fn wait_output(js: &async_nats::jetstream::Context, stream: &str, n: u64) {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        if let Ok(mut s) = js.get_stream(stream).await
            && let Ok(info) = s.info().await
        {
            last = Some(info.state.messages);
            if info.state.messages >= n {
                assert_eq!(info.state.messages, n, "every task exactly once in OUTPUT");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "OUTPUT has {last:?} of {n} results after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_three_node_cluster_serves_the_farm_and_survives_a_node() {
    let root = farm_testsupport::workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("farm");
    let _guard = Down(state.clone());

    let mut c = up(&root.join("stack.yml"), &state);
    c.args(["--nats-cluster", "3"]);
    let out = run(c, "farmctl up --nats-cluster 3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("  nats-server   ").count(), 3, "{text}");

    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).unwrap()).unwrap();
    let nodes = st["nats_nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{st}");
    let pids: Vec<u64> = nodes.iter().map(|n| n["pid"].as_u64().unwrap()).collect();
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| n["url"].as_str().unwrap().to_owned())
        .collect();
    assert!(pids.iter().all(|p| alive(*p)), "{st}");
    assert_eq!(st["nats"], nodes[0], "`nats` is the first node: {st}");
    for d in ["n1", "n2", "n3"] {
        assert!(state.join("nats").join(d).join("store").is_dir(), "{d}");
        assert!(state.join(format!("logs/nats-{d}.log")).is_file(), "{d}");
    }
    let supervisor = st["supervisor_pid"].as_u64().unwrap();
    let provider = st["provider_url"].as_str().unwrap().to_owned();
    let emitter = format!("{provider}/function/demo-emitter");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Only node 1, as a replica given `nats.openfaas:4222` gets it: the
        // server tells the client where the other two are.
        let client = async_nats::connect(urls[0].as_str()).await.unwrap();
        let mut learned = client.server_info().connect_urls.clone();
        learned.sort();
        let mut all: Vec<String> = urls
            .iter()
            .map(|u| u.trim_start_matches("nats://").to_owned())
            .collect();
        all.sort();
        assert_eq!(learned, all, "INFO connect_urls of node 1");

        let js = async_nats::jetstream::new(client.clone());
        let names = FarmNames::new("demo").unwrap();
        for stream in [names.tasks_stream(), names.output_stream()] {
            let info = js
                .get_stream(&stream)
                .await
                .unwrap()
                .info()
                .await
                .unwrap()
                .clone();
            assert_eq!(info.config.num_replicas, 3, "{stream}");
            let cluster = info.cluster.expect("a clustered stream");
            assert_eq!(cluster.replicas.len(), 2, "{stream}: two followers");
        }

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        submit(&http, &emitter, "before", 10).await;
        wait_output(&js, &names.output_stream(), 10).await;

        // Node 3 crashes; node 1 (this client's) stays.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pids[2]).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = Instant::now() + WAIT;
        while alive(pids[2]) {
            assert!(Instant::now() < deadline, "node 3 did not die");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        submit(&http, &emitter, "after", 10).await;
        wait_output(&js, &names.output_stream(), 20).await;
        client.flush().await.ok();
    });

    assert!(alive(supervisor), "the farm goes on with 2 of 3 nodes");
    let mut status = farmctl();
    status.arg("status").arg("--state").arg(&state);
    let out = run(status, "farmctl status");
    let text = String::from_utf8_lossy(&out.stdout);
    for (i, url) in urls.iter().enumerate() {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("nats-server {url} ")))
            .unwrap_or_else(|| panic!("no line for {url}:\n{text}"));
        let want = if i == 2 { "down" } else { "running" };
        assert!(line.contains(want), "{line}");
    }

    let mut down = farmctl();
    down.arg("down").arg("--state").arg(&state);
    run(down, "farmctl down");
    assert!(!alive(supervisor), "supervisor {supervisor} still running");
    for p in &pids {
        assert!(!alive(*p), "nats-server {p} still running");
    }
    assert_eq!(
        processes_under(&state.join("images")),
        Vec::<u64>::new(),
        "replicas left running"
    );
    assert!(!state.join("nats").exists(), "NATS stores removed");
}

#[test]
fn zero_or_two_nats_servers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("farm");
    let stack = farm_testsupport::workspace_root().join("stack.yml");
    for (n, why) in [("0", "at least one"), ("2", "quorum")] {
        let mut c = up(Path::new(&stack), &state);
        c.args(["--nats-cluster", n]);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--nats-cluster {n} accepted");
        assert!(
            err.contains("--nats-cluster") && err.contains(&format!("'{n}'")) && err.contains(why),
            "--nats-cluster {n}: {err}"
        );
        assert!(!state.exists(), "nothing started for --nats-cluster {n}");
    }
}
