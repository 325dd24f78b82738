//! The rust-farm template builds from a faas-cli build context alone.
//!
//! Assembles exactly what `faas-cli build` does — `template/rust-farm/`
//! copied to `build/NAME/`, the handler copied into `build/NAME/function/` —
//! in a temporary directory outside the workspace (so any path reaching
//! outside the context fails), then runs `cargo build` there, as the
//! Dockerfile does. The second test starts from a `faas-cli new` project:
//! the template pulled to `./template/rust-farm/`, `function/` copied to
//! `./NAME/`; it runs the developer's `cargo test` in `./NAME/` (offline) and
//! then builds `./NAME/` the faas-cli way.
//!
//! Slow on the first run only: the target directory `target/template-build`
//! is shared, and the context lives at a stable path under the system temp
//! dir whose files are rewritten only when their content changed, so cargo's
//! fingerprints stay valid and later runs rebuild nothing that did not change.

use std::fs;
use std::path::{Path, PathBuf};

fn template_dir() -> PathBuf {
    farm_testsupport::workspace_root().join("template/rust-farm")
}

/// Makes `to` an exact copy of `from` (minus build outputs), writing only
/// files whose content differs, so unchanged files keep their mtimes.
fn sync_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    let mut wanted = std::collections::HashSet::new();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        // faas-cli copies everything; local build outputs are not part of
        // the template (and would not exist in a fresh clone).
        if name == "target" || name == "Cargo.lock" {
            continue;
        }
        wanted.insert(name.clone());
        let ty = entry.file_type().unwrap();
        assert!(
            !ty.is_symlink(),
            "symlink {:?} in the template would not survive faas-cli",
            entry.path()
        );
        let dest = to.join(&name);
        if ty.is_dir() {
            if dest.is_file() {
                fs::remove_file(&dest).unwrap();
            }
            sync_dir(&entry.path(), &dest);
        } else {
            let new = fs::read(entry.path()).unwrap();
            if fs::read(&dest).ok().as_deref() != Some(&new[..]) {
                if dest.is_dir() {
                    fs::remove_dir_all(&dest).unwrap();
                }
                fs::write(&dest, &new).unwrap();
            }
        }
    }
    // Files removed from the template must disappear from the context too
    // (cargo's own outputs are kept).
    for entry in fs::read_dir(to).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if wanted.contains(&name) || name == "target" || name == "Cargo.lock" {
            continue;
        }
        let p = entry.path();
        if p.is_dir() {
            fs::remove_dir_all(p).unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
    }
}

/// A stable project directory for `test`, outside the workspace (so a path
/// reaching outside the build context cannot resolve) and per checkout.
fn project_dir(test: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    farm_testsupport::workspace_root().hash(&mut h);
    let dir = std::env::temp_dir()
        .join(format!("rust-farm-template-{:016x}", h.finish()))
        .join(test);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// `faas-cli build` for a function NAME whose handler lives in `handler`.
fn assemble(project: &Path, name: &str, handler: &Path) -> PathBuf {
    let ctx = project.join("build").join(name);
    sync_dir(&template_dir(), &ctx);
    // handler_folder "function" is replaced by the user's handler (synced
    // over the template's copy: the result is exactly the handler's files).
    sync_dir(handler, &ctx.join("function"));
    ctx
}

fn cargo(ctx: &Path, args: &[&str]) {
    let target = farm_testsupport::workspace_root().join("target/template-build");
    // The test's own cargo environment must not leak into the nested build
    // (it would invalidate the shared target directory's build scripts).
    let out = farm_local::cargo_command()
        .args(args)
        .current_dir(ctx)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} failed in {}:\n{}",
        ctx.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_context_files(ctx: &Path) {
    // Everything the Dockerfile COPYs and template.yml names must exist.
    let dockerfile = fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = line.split_whitespace().nth(1).unwrap();
        assert!(ctx.join(src).exists(), "Dockerfile copies missing {src}");
    }
    let yml = fs::read_to_string(ctx.join("template.yml")).unwrap();
    assert!(yml.contains("language: rust-farm"));
    assert!(yml.contains("handler_folder: function"));
    let fprocess = yml
        .lines()
        .find_map(|l| l.strip_prefix("fprocess: "))
        .unwrap()
        .trim();
    let bin = fprocess.trim_start_matches("./");
    let main_toml = fs::read_to_string(ctx.join("main/Cargo.toml")).unwrap();
    assert!(
        main_toml.contains(&format!("name = \"{bin}\"")),
        "fprocess {fprocess} is not the main binary"
    );
    assert!(dockerfile.contains(&format!("release/{bin}")));
    for toml in [
        "runtime/Cargo.toml",
        "main/Cargo.toml",
        "function/Cargo.toml",
    ] {
        let text = fs::read_to_string(ctx.join(toml)).unwrap();
        assert!(
            !text.contains("workspace = true"),
            "{toml} inherits from a workspace the context does not have"
        );
    }
}

fn build_release_binary(ctx: &Path) {
    check_context_files(ctx);
    // The Dockerfile's command (release, like the image).
    cargo(
        ctx,
        &["build", "--release", "--manifest-path", "main/Cargo.toml"],
    );
    // The handler's unit tests run inside the context too.
    cargo(ctx, &["test", "--manifest-path", "function/Cargo.toml"]);
}

#[test]
fn template_builds_from_a_faas_cli_build_context() {
    let project = project_dir("build-context");
    let ctx = assemble(&project, "demo", &template_dir().join("function"));
    build_release_binary(&ctx);
}

#[test]
fn faas_cli_new_copy_builds() {
    let project = project_dir("faas-cli-new");
    // faas-cli template pull: the template lives at ./template/rust-farm/.
    let pulled = project.join("template/rust-farm");
    sync_dir(&template_dir(), &pulled);
    // faas-cli new: template/rust-farm/function/* -> ./NAME/ (dotfiles too).
    let handler = project.join("my-fn");
    sync_dir(&pulled.join("function"), &handler);
    assert!(handler.join("Cargo.toml").is_file() && handler.join("src/lib.rs").is_file());
    assert!(handler.join(".cargo/config.toml").is_file());
    // faas-cli build: the template to build/NAME, ./NAME/* to build/NAME/function
    let ctx = assemble(&project, "my-fn", &handler);
    build_release_binary(&ctx);
    // The developer's first step after `faas-cli new`: `cargo test` inside
    // ./NAME/, where the runtime resolves to ./template/rust-farm/runtime.
    // Offline: the build above has fetched every crate it needs, and a
    // developer's loop must not need the network either.
    cargo(&handler, &["test", "--offline"]);
}

/// `faas-cli new NAME --lang rust-farm` prints template.yml's welcome
/// message verbatim and copies `function/` to `./NAME/`: the message must
/// send the developer to `./NAME/src/lib.rs`, not to the template's folder.
#[test]
fn welcome_message_names_where_faas_cli_puts_the_handler() {
    let yml = fs::read_to_string(template_dir().join("template.yml")).unwrap();
    let folder = yml
        .lines()
        .find_map(|l| l.strip_prefix("handler_folder: "))
        .unwrap()
        .trim();
    // The block scalar: every indented line after the key.
    let welcome: String = yml
        .lines()
        .skip_while(|l| !l.starts_with("welcome_message:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(welcome.contains("./NAME/src/lib.rs"), "{welcome}");
    assert!(!welcome.contains(&format!("{folder}/src")), "{welcome}");
    assert!(template_dir().join(folder).join("src/lib.rs").is_file());
}
