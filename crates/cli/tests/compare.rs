//! `farmctl compare` end to end with real processes: the 40 s steady-short
//! scenario compressed 4 times, live on a fresh local farm per policy
//! (nats-server, the local provider, emitter, sleep workers, collector) and
//! in the simulator, for two policies: the shipped ONNX policy when
//! models/farm-policy.onnx exists (else `reactive-average`) and `queueing`.
//!
//! Checks accounting and outputs only (every task accounted for, the table
//! printed, the JSON parsable, the PNG written), never timings or QoS.
//! Functions are built with the `dev` profile so the workspace's debug
//! artifacts are reused.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn compare_runs_two_policies_live_and_simulated_and_loses_nothing() {
    let root = farm_testsupport::workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let model = root.join("models/farm-policy.onnx");
    let first = if model.is_file() {
        format!("onnx:{}", model.display())
    } else {
        "reactive-average".to_string()
    };
    let policies = format!("{first},queueing");
    let t0 = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_farmctl"))
        .env(
            "NATS_SERVER",
            farm_testsupport::nats_server_binary()
                .expect("nats-server >= 2.10 (run scripts/setup.sh)"),
        )
        .env_remove("RUST_LOG")
        .current_dir(tmp.path())
        .arg("compare")
        .arg("-f")
        .arg(root.join("stack.yml"))
        .arg("--scenario")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/steady-short.yaml"))
        .args(["--policies", &policies, "--speedup", "4"])
        .args(["--cargo-profile", "dev", "--drain-timeout", "60"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    eprintln!("farmctl compare: {:.1}s", t0.elapsed().as_secs_f64());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "farmctl compare failed ({}):\nstdout:\n{text}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // One table, one line per policy, live / sim in each cell.
    assert!(text.contains("QoS % live/sim"), "{text}");
    for p in [first.as_str(), "queueing"] {
        assert!(
            text.lines().any(|l| l.starts_with(p) && l.contains(" / ")),
            "no table row for {p}:\n{text}"
        );
    }

    let rep: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let tasks = rep["tasks"].as_u64().unwrap();
    assert!(tasks > 100, "{rep}");
    let rows = rep["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rep}");
    for row in rows {
        assert_eq!(row["status"], "ok", "{row}");
        let acc = &row["live"]["accounting"];
        let n = |k: &str| acc[k].as_u64().unwrap_or_else(|| panic!("{k} in {acc}"));
        assert_eq!(n("tasks"), tasks, "{acc}");
        assert_eq!(n("accepted"), tasks, "{acc}");
        assert_eq!(n("lost"), 0, "{acc}");
        assert_eq!(
            n("completed") + n("dead_lettered") + n("unfinished"),
            tasks,
            "{acc}"
        );
        let live = &row["live"]["metrics"];
        let sim = &row["sim"];
        assert_eq!(live["tasks"].as_u64(), Some(tasks), "{row}");
        assert_eq!(sim["tasks"].as_u64(), Some(tasks), "same workload: {row}");
        assert_eq!(sim["unfinished"].as_u64(), Some(0), "{row}");
        for m in [live, sim] {
            let q = m["qos"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&q), "{m}");
            assert!(m["replica_seconds"].as_f64().unwrap() > 0.0, "{m}");
            assert!(!m["timeline"].as_array().unwrap().is_empty(), "{m}");
        }
        assert!(row["qos_diff_pts"].as_f64().is_some(), "{row}");
    }
    let png = std::fs::metadata(out.join("compare.png"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(png > 1000, "timeline PNG written ({png} bytes):\n{text}");
    // Every farm was brought down.
    assert!(!out.join("farm/state.json").exists());
}
