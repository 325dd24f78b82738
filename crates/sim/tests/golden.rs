//! Golden runs: each `tests/golden/*.yaml` scenario is simulated with a few
//! test-local policies and the oracle, and the metrics must equal
//! `tests/golden/*.expected.json` exactly (floats included: the simulator is
//! bit-for-bit deterministic). After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p farm-sim --test golden` and review the diff.
//!
//! The workloads come from `farm-model`'s generator, so a change there
//! changes these files too.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{Fixed, Recorder, Script};
use farm_model::scenario::Scenario;
use farm_policy::Policy;
use farm_sim::oracle::{DEFAULT_TARGET_QOS, lower_bound, plan};
use farm_sim::{SimOptions, simulate_workload};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

fn outcome(scenario: &Scenario) -> serde_json::Value {
    let seed = scenario.seed;
    let w = scenario.generate(seed);
    let opts = SimOptions::default();
    let mut policies: Vec<(&str, Box<dyn Policy>)> = vec![
        ("fixed-2", Box::new(Fixed(2))),
        ("backlog-plus-in-flight", Box::new(Recorder::default())),
        ("script", Box::new(Script(vec![1, 4, 6, 2, 8, 1, 3], 0))),
    ];
    let mut out = BTreeMap::new();
    for (name, p) in &mut policies {
        let m = simulate_workload(&w, &scenario.platform, seed, p.as_mut(), &opts).unwrap();
        out.insert(name.to_string(), serde_json::to_value(&m).unwrap());
    }
    let lb = lower_bound(&w, &scenario.platform, DEFAULT_TARGET_QOS);
    out.insert("oracle-bound".into(), serde_json::to_value(&lb).unwrap());
    let pl = plan(&w, &scenario.platform, seed, DEFAULT_TARGET_QOS, &opts).unwrap();
    out.insert("oracle-plan".into(), serde_json::to_value(&pl).unwrap());
    serde_json::to_value(out).unwrap()
}

#[test]
fn golden_scenarios() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "golden scenarios missing");
    let mut mismatches = Vec::new();
    for yaml in files {
        let scenario = Scenario::from_yaml(&std::fs::read_to_string(&yaml).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", yaml.display()));
        let got = serde_json::to_string_pretty(&outcome(&scenario)).unwrap() + "\n";
        let expected_path = yaml.with_extension("expected.json");
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} missing: run with UPDATE_GOLDEN=1",
                expected_path.display()
            )
        });
        if got != expected {
            mismatches.push(expected_path.display().to_string());
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 to regenerate, then review): {mismatches:?}"
    );
}
