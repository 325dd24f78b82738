//! `build_function` on the real rust-farm template: assemble the context
//! like `faas-cli build --shrinkwrap`, cargo-build it, install it in an image
//! store, deploy it on the provider and see its replica become available
//! against a real nats-server.
//!
//! It builds in release mode, as the Dockerfile does, into the target
//! directory `target/template-build` that the template's own build-context
//! test (functions/sleep/tests/template_build.rs) fills with the same
//! dependencies, same profile, same features: whichever of the two runs
//! second compiles only the three crates of the context (runtime, handler,
//! main), not their dependencies.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::TestProvider;
use farm_local::{BuildSpec, FunctionDeployment, ImageStore, build_function};
use farm_testsupport::NatsServer;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_the_template_skeleton_and_runs_it() {
    let root = workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let spec = BuildSpec {
        name: "skeleton".into(),
        // The handler skeleton `faas-cli new --lang rust-farm` would copy.
        handler_dir: root.join("template/rust-farm/function"),
        template_dir: root.join("template/rust-farm"),
        build_root: tmp.path().join("build"),
        // Shared with the template's build-context test (see the module docs).
        target_dir: Some(root.join("target/template-build")),
        cargo_args: Vec::new(),
    };
    let built = tokio::task::spawn_blocking(move || build_function(&spec))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(built.binary, tmp.path().join("build/skeleton/skeleton"));
    assert!(built.binary.is_file());

    let nats = NatsServer::start().unwrap();
    let p = TestProvider::start(|_, _| {}).await;
    ImageStore::new(p.tmp.path().join("images"))
        .install("skeleton:latest", &built.binary)
        .unwrap();
    let d = FunctionDeployment {
        service: "skeleton".into(),
        image: "skeleton:latest".into(),
        env_vars: BTreeMap::from([
            ("FARM_NAME".to_string(), "skeleton".to_string()),
            ("NATS_URL".to_string(), nats.url()),
        ]),
        ..Default::default()
    };
    assert_eq!(p.deploy(&d).await.status(), 202);
    p.wait_counts("skeleton", 1, 1).await;
    p.shutdown().await;
}
