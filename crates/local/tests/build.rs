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
//!
//! The context is content-addressed under the target directory, so building
//! the same function again, from another build root (as each `farmctl up`
//! uses a fresh state directory), reuses it and cargo compiles nothing.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::TestProvider;
use farm_local::{BuildSpec, FunctionDeployment, ImageStore, build_function};
use farm_testsupport::NatsServer;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skeleton_spec(build_root: PathBuf) -> BuildSpec {
    let root = workspace_root();
    BuildSpec {
        name: "skeleton".into(),
        // The handler skeleton `faas-cli new --lang rust-farm` would copy.
        handler_dir: root.join("template/rust-farm/function"),
        template_dir: root.join("template/rust-farm"),
        build_root,
        // Shared with the template's build-context test (see the module docs).
        target_dir: Some(root.join("target/template-build")),
        cargo_args: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_the_template_skeleton_and_runs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = skeleton_spec(tmp.path().join("build"));
    let built = tokio::task::spawn_blocking(move || build_function(&spec))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(built.binary, tmp.path().join("build/skeleton/skeleton"));
    assert!(built.binary.is_file());
    assert!(
        built
            .context
            .starts_with(workspace_root().join("target/template-build/contexts")),
        "{:?}",
        built.context
    );

    // Again from a fresh build root, as the next `farmctl up` does: the
    // same context, and cargo finds all of its crates fresh. cargo keys a
    // path crate's fingerprint by its path relative to its workspace root,
    // the same in every context of this template, so another process
    // building another context into this shared target directory in between
    // (a parallel test) makes one rebuild legitimate; a second retry is not.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut again = None;
    for _ in 0..3 {
        let spec2 = skeleton_spec(tmp2.path().join("build"));
        let b = tokio::task::spawn_blocking(move || build_function(&spec2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.context, built.context);
        let fresh = b.compiled.is_empty();
        again = Some(b);
        if fresh {
            break;
        }
    }
    let again = again.unwrap();
    assert_eq!(again.compiled, Vec::<String>::new(), "nothing recompiled");
    assert_eq!(again.binary, tmp2.path().join("build/skeleton/skeleton"));
    assert_eq!(
        std::fs::read(&again.binary).unwrap(),
        std::fs::read(&built.binary).unwrap()
    );

    assert_eq!(built.program, "farm-function", "the template's bin target");

    let nats = NatsServer::start().unwrap();
    let p = TestProvider::start(|_, _| {}).await;
    ImageStore::new(p.tmp.path().join("images"))
        .install_as("skeleton:latest", &built.binary, &built.program)
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

    // `faas-cli deploy -f stack.yml` without `--read-template=false`: PUT,
    // then POST on 404, with template.yml's fprocess as `envProcess`.
    let template_yml =
        std::fs::read_to_string(workspace_root().join("template/rust-farm/template.yml")).unwrap();
    let fprocess = template_yml
        .lines()
        .find_map(|l| l.strip_prefix("fprocess:"))
        .map(str::trim)
        .unwrap();
    assert_eq!(fprocess, "./farm-function");
    let body = |name: &str, process: &str| {
        format!(
            r#"{{"service":"{name}","image":"skeleton:latest","namespace":"openfaas-fn","envProcess":"{process}","envVars":{{"FARM_NAME":"{name}","NATS_URL":"{}"}},"labels":{{"com.openfaas.scale.min":"1"}},"annotations":{{}}}}"#,
            nats.url()
        )
    };
    let put = p
        .http
        .put(p.url("/system/functions"))
        .body(body("skeleton-cli", fprocess))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 404);
    let post = p
        .post_json("/system/functions", &body("skeleton-cli", fprocess))
        .await;
    assert_eq!(post.status(), 202, "{}", post.text().await.unwrap());
    p.wait_counts("skeleton-cli", 1, 1).await;
    let r = p
        .http
        .post(p.url("/function/skeleton-cli"))
        .header("content-type", "application/json")
        .body(r#"{"name":"farm"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reply: serde_json::Value = r.json().await.unwrap();
    assert_eq!(reply["greeting"], "Hello, farm");

    // The bare program name runs it too; a program the image lacks is a 400
    // that names it and what the image holds.
    let post = p
        .post_json("/system/functions", &body("skeleton-bare", "farm-function"))
        .await;
    assert_eq!(post.status(), 202);
    p.wait_counts("skeleton-bare", 1, 1).await;
    let post = p
        .post_json("/system/functions", &body("skeleton-typo", "./farm-fn"))
        .await;
    assert_eq!(post.status(), 400);
    let text = post.text().await.unwrap();
    assert!(
        text.contains("\"./farm-fn\"") && text.contains("farm-function"),
        "{text}"
    );
    p.shutdown().await;
}
