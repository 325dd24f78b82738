//! `farmctl sim` end to end: the real binary on built-in scenarios.

use std::process::Command;

fn farmctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_farmctl"))
        .args(args)
        .output()
        .expect("run farmctl")
}

/// `farmctl sim compare` of `policies` on one seed of `steady`, `extra`
/// arguments appended; it must succeed.
fn steady_compare(policies: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "sim",
        "compare",
        "--scenarios",
        "steady",
        "--policies",
        policies,
        "--seeds",
        "1",
    ];
    args.extend_from_slice(extra);
    let out = farmctl(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn scenarios_lists_the_public_suite() {
    let out = farmctl(&["sim", "scenarios"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "paper-4phase",
        "steady",
        "ramp",
        "spike",
        "diurnal",
        "bursty",
        "heavy-tail",
        "cold-start",
        "ce-capped",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[test]
fn eval_writes_json_and_a_png() {
    let dir = std::env::temp_dir().join(format!("farmctl-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("eval.json");
    let png = dir.join("eval.png");
    let out = farmctl(&[
        "sim",
        "eval",
        "--scenario",
        "steady",
        "--policy",
        "queueing",
        "--seeds",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["policy"], "queueing");
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    let qos = v["qos_mean"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&qos));
    // /bound@qos is >= 1 by the oracle's theorem.
    assert!(v["ratio_to_bound_at_own_qos"].as_f64().unwrap() >= 1.0);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compare_includes_the_oracle() {
    let out = steady_compare("fixed:8,oracle", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fixed:8") && text.contains("oracle") && text.contains("/oracle"),
        "{text}"
    );
}

#[test]
fn unknown_names_fail_with_a_message() {
    let out = farmctl(&[
        "sim",
        "eval",
        "--scenario",
        "no-such-scenario",
        "--policy",
        "hpa",
        "--seeds",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-scenario"));
    let out = farmctl(&[
        "sim",
        "eval",
        "--scenario",
        "steady",
        "--policy",
        "no-such-policy",
        "--seeds",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-policy"));
}

#[test]
fn compare_runs_onnx_policies_and_names_a_missing_model() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/farm-policy.onnx");
    let spec = format!("onnx:{model}");
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("rows.json");
    steady_compare(
        &format!("{spec},queueing"),
        &["--json", json.to_str().expect("utf-8 temp path")],
    );
    let text = std::fs::read_to_string(&json).expect("the JSON file");
    let rows: serde_json::Value = serde_json::from_str(&text).expect("JSON rows");
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["policy"] == spec.as_str()))
        .unwrap_or_else(|| panic!("no row for {spec}: {rows}"));
    let qos = row["qos_mean"].as_f64().expect("qos_mean");
    assert!(qos > 0.9, "the shipped policy on steady: QoS {qos}");
    assert!(row["ratio_to_bound_at_own_qos"].as_f64().expect("bound") >= 1.0);

    let out = farmctl(&[
        "sim",
        "compare",
        "--scenarios",
        "steady",
        "--policies",
        "onnx:no-such-model.onnx",
        "--seeds",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-model.onnx") && err.contains("does not exist"),
        "{err}"
    );
}
