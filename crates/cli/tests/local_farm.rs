//! End to end with real processes: `farmctl up` on the root stack.yml
//! (nats-server, the local provider, emitter, sleep workers, collector),
//! `farmctl status`, a redeploy of the worker with the stack's cluster NATS
//! address (as faas-cli sends it), `farmctl run` of a 40 s scenario compressed 4 times
//! with farmctl's own control loop, then `farmctl down`. Checks that every
//! task is accounted for in the report and that nothing keeps running.
//!
//! The functions are built with the `dev` profile so the test reuses the
//! workspace's debug artifacts instead of a release build.

mod common;

use std::path::Path;

use common::{Down, farmctl, processes_under, run, up};
use farm_testsupport::alive;
use serde_json::Value;

/// Redeploys `name` as `faas-cli deploy -f stack.yml` does, with the
/// stack's cluster address `NATS_URL=nats://nats.openfaas:4222`, and waits
/// until the rolled-over replica is the only one and available. A replica
/// that cannot reach NATS exits and restarts with back-off, so the count
/// would stay at 2 replicas, 1 available.
fn redeploy_with_cluster_nats(provider: &str, name: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let status_url = format!("{provider}/system/function/{name}");
        let status = || async {
            let s: farm_local::FunctionStatus = http
                .get(&status_url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            s
        };
        let s = status().await;
        let mut env_vars = s.env_vars.clone();
        env_vars.insert("NATS_URL".into(), "nats://nats.openfaas:4222".into());
        let d = farm_local::FunctionDeployment {
            service: s.name.clone(),
            image: s.image.clone(),
            env_process: s.env_process.clone(),
            env_vars,
            labels: s.labels.clone(),
            annotations: s.annotations.clone(),
            secrets: s.secrets.clone(),
            ..Default::default()
        };
        let r = http
            .put(format!("{provider}/system/functions"))
            .json(&d)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        // The rollover starts a new replica at once.
        assert_eq!(status().await.replicas, 2);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let s = status().await;
            if (s.replicas, s.available_replicas) == (1, 1) {
                assert_eq!(s.env_vars["NATS_URL"], "nats://nats.openfaas:4222");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} did not roll over to a replica on the cluster NATS address: {} replicas, {} available",
                s.replicas,
                s.available_replicas
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn up_run_down_accounts_for_every_task() {
    let root = farm_testsupport::workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("farm");
    let _guard = Down(state.clone());

    let out = run(up(&root.join("stack.yml"), &state), "farmctl up");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("farm is up") && text.contains("nats-server") && text.contains("demo-worker"),
        "{text}"
    );

    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).unwrap()).unwrap();
    let supervisor = st["supervisor_pid"].as_u64().unwrap();
    let nats = st["nats"]["pid"].as_u64().unwrap();
    assert!(alive(supervisor) && alive(nats));
    let images = state.join("images");
    assert!(
        processes_under(&images).len() >= 3,
        "one replica per function"
    );

    let mut status = farmctl();
    status
        .arg("status")
        .arg("--state")
        .arg(&state)
        .arg("--json");
    let out = run(status, "farmctl status");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let functions = s["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 3, "{s}");
    assert!(
        functions.iter().all(|f| f["available"].as_u64() >= Some(1)),
        "{s}"
    );
    assert_eq!(s["farms"][0]["farm"], "demo");

    redeploy_with_cluster_nats(st["provider_url"].as_str().unwrap(), "demo-worker");

    let report = tmp.path().join("report");
    let mut r = farmctl();
    r.arg("run")
        .arg("--state")
        .arg(&state)
        .arg("--scenario")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/steady-short.yaml"))
        .args([
            "--speedup",
            "4",
            "--policy",
            "reactive-average",
            "--drain-timeout",
            "60",
        ])
        .arg("--out")
        .arg(&report);
    let out = run(r, "farmctl run");
    let text = String::from_utf8_lossy(&out.stdout);
    // The same table as `farmctl sim eval`.
    assert!(
        text.contains("replica-s")
            && text.contains("steady-short")
            && text.contains("reactive-average"),
        "{text}"
    );

    let rep: Value =
        serde_json::from_str(&std::fs::read_to_string(report.with_extension("json")).unwrap())
            .unwrap();
    let acc = &rep["accounting"];
    let n = |k: &str| {
        acc[k]
            .as_u64()
            .unwrap_or_else(|| panic!("accounting.{k} in {rep}"))
    };
    assert!(n("tasks") > 100, "{acc}");
    assert_eq!(n("accepted"), n("tasks"), "{acc}");
    assert_eq!(n("lost"), 0, "{acc}");
    assert_eq!(
        n("completed") + n("dead_lettered") + n("unfinished"),
        n("tasks"),
        "{acc}"
    );
    assert_eq!(
        n("unfinished"),
        0,
        "the farm finished within the drain timeout: {acc}"
    );
    assert!(n("on_time") <= n("completed"), "{acc}");
    let m = &rep["summary"]["runs"][0]["metrics"];
    assert_eq!(m["completed"].as_u64(), Some(n("completed")), "{m}");
    assert!(
        m["timeline"].as_array().is_some_and(|t| t.len() >= 4),
        "one point per control interval: {m}"
    );
    assert!(
        m["replica_seconds"].as_f64().is_some_and(|r| r > 0.0),
        "{m}"
    );
    let png = std::fs::metadata(report.with_extension("png"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(png > 1000, "timeline PNG written ({png} bytes):\n{text}");

    let mut down = farmctl();
    down.arg("down").arg("--state").arg(&state);
    run(down, "farmctl down");
    assert!(!alive(supervisor), "supervisor {supervisor} still running");
    assert!(!alive(nats), "nats-server {nats} still running");
    assert_eq!(
        processes_under(&images),
        Vec::<u64>::new(),
        "replicas left running"
    );
    assert!(!state.join("state.json").exists());
    assert!(!state.join("nats").exists(), "NATS store removed");
}
