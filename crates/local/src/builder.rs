//! Building a function from its handler folder, the way
//! `faas-cli build --shrinkwrap` assembles a build context, then `cargo build`
//! instead of `docker build`.
//!
//! 1. remove `<build_root>/<name>/` and copy the template folder there
//!    (skipping `target/` and `.git/`);
//! 2. copy the handler folder over `<build_root>/<name>/function/` (faas-cli
//!    overlays the handler on the template's skeleton; `build/`, `template/`,
//!    `target/` and `.git/` of the handler are skipped);
//! 3. `cargo build --release` on the context's root `Cargo.toml`, run from
//!    the context's root (so the template's `.cargo/config.toml` applies, as
//!    from the Dockerfile's WORKDIR: it maps the handler's `farm-runtime`
//!    to the context's `runtime/`), with a shared `CARGO_TARGET_DIR` so
//!    dependencies compile once for all functions. A template without a root manifest but with `main/Cargo.toml`
//!    gets a small workspace manifest written at the root
//!    ([`CONTEXT_WORKSPACE`]): otherwise a context under a repository that is
//!    a Cargo workspace (like `build/` here) would be claimed by that
//!    workspace and refused;
//! 4. copy the built executable to `<build_root>/<name>/<name>` — every
//!    function built from one template produces the same binary name in the
//!    shared target directory, so it must be taken out before the next build.
//!
//! The executable is found from cargo's JSON messages (the one bin artifact
//! of a package inside the build context), so the template may name its main
//! crate as it likes. This is blocking work: call it from
//! `tokio::task::spawn_blocking` in async code.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Root manifest written into a context that has none (see [`build_function`]).
pub const CONTEXT_WORKSPACE: &str = "# Written by farm-local: makes this build context its own workspace.\n\
[workspace]\nmembers = [\"main\"]\nresolver = \"3\"\n";

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// Function name (the stack.yml key); names the build context.
    pub name: String,
    /// The handler folder (stack.yml `handler`).
    pub handler_dir: PathBuf,
    /// The template folder, e.g. `template/rust-farm`.
    pub template_dir: PathBuf,
    /// Where build contexts go (`build/` like faas-cli).
    pub build_root: PathBuf,
    /// Shared cargo target directory; `None` uses the context's own `target/`.
    pub target_dir: Option<PathBuf>,
    /// Extra arguments for `cargo build` (e.g. `--offline`).
    pub cargo_args: Vec<String>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The function name cannot name a folder.
    #[error("invalid function name {0:?}: expected [-a-zA-Z_0-9.]+ not starting with '.'")]
    InvalidName(String),
    /// The handler or template folder does not exist.
    #[error("{what} folder {path} does not exist")]
    MissingFolder {
        /// `handler` or `template`.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The build context has no Cargo manifest where one is expected.
    #[error("no Cargo.toml in {0} or its main/ folder: is this a rust-farm template?")]
    NoManifest(PathBuf),
    /// Copying files failed.
    #[error("copying {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// cargo could not be started.
    #[error("running cargo: {0}")]
    Spawn(#[source] std::io::Error),
    /// cargo failed; `output` holds its rendered diagnostics (tail).
    #[error("cargo build of {name} failed ({status}):\n{output}")]
    Cargo {
        /// Function name.
        name: String,
        /// cargo's exit status.
        status: String,
        /// The end of cargo's diagnostics.
        output: String,
    },
    /// cargo succeeded but did not produce exactly one executable of the context.
    #[error("cargo built {count} executables in {context}; expected exactly one")]
    Executables {
        /// The build context.
        context: PathBuf,
        /// How many were found.
        count: usize,
    },
}

/// A built function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltFunction {
    /// The build context, `<build_root>/<name>/`.
    pub context: PathBuf,
    /// The executable, copied to `<build_root>/<name>/<name>`.
    pub binary: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Copies `src` into `dst` recursively, skipping top-level names in `skip`
/// and every `target`/`.git` folder. Symlinks are followed (a context must be
/// self-contained, as a Docker context is).
fn copy_tree(src: &Path, dst: &Path, skip: &[&str]) -> Result<(), BuildError> {
    fs::create_dir_all(dst).map_err(io_err(dst))?;
    for entry in fs::read_dir(src).map_err(io_err(src))? {
        let entry = entry.map_err(io_err(src))?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if skip.contains(&name_s.as_ref()) || name_s == "target" || name_s == ".git" {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        if from.is_dir() {
            copy_tree(&from, &to, &[])?;
        } else {
            fs::copy(&from, &to).map_err(io_err(&from))?;
        }
    }
    Ok(())
}

/// Assembles the build context of one function (steps 1-2), without building.
pub fn assemble_context(spec: &BuildSpec) -> Result<PathBuf, BuildError> {
    let valid = !spec.name.is_empty()
        && !spec.name.starts_with('.')
        && spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(BuildError::InvalidName(spec.name.clone()));
    }
    for (what, path) in [
        ("handler", &spec.handler_dir),
        ("template", &spec.template_dir),
    ] {
        if !path.is_dir() {
            return Err(BuildError::MissingFolder {
                what,
                path: path.clone(),
            });
        }
    }
    let context = spec.build_root.join(&spec.name);
    if context.exists() {
        fs::remove_dir_all(&context).map_err(io_err(&context))?;
    }
    copy_tree(&spec.template_dir, &context, &[])?;
    copy_tree(
        &spec.handler_dir,
        &context.join("function"),
        &["build", "template"],
    )?;
    Ok(context)
}

/// Assembles the context and builds the function (see the module docs).
pub fn build_function(spec: &BuildSpec) -> Result<BuiltFunction, BuildError> {
    let context = assemble_context(spec)?;
    let manifest = context.join("Cargo.toml");
    if !manifest.is_file() {
        if !context.join("main").join("Cargo.toml").is_file() {
            return Err(BuildError::NoManifest(context));
        }
        // A context under a repository that is itself a Cargo workspace
        // (build/ in this one) would be claimed by that workspace and
        // refused; a root manifest makes the context its own workspace, as
        // it is inside a Docker build.
        fs::write(&manifest, CONTEXT_WORKSPACE).map_err(io_err(&manifest))?;
    }
    let context_abs = std::path::absolute(&context).map_err(io_err(&context))?;

    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("build")
        .arg("--release")
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(&spec.cargo_args)
        .current_dir(&context)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = &spec.target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    tracing::info!(function = %spec.name, context = %context.display(), "building function");
    let mut child = cmd.spawn().map_err(BuildError::Spawn)?;

    // stderr is drained on its own thread so a chatty build cannot fill the
    // pipe and stall cargo while stdout is read here.
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut tail = std::collections::VecDeque::new();
        if let Some(e) = stderr {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                if tail.len() == 60 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        tail.into_iter().collect::<Vec<_>>().join("\n")
    });
    let mut executables = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(exe) = context_executable(&line, &context_abs) {
                executables.push(exe);
            }
        }
    }
    let status = child.wait().map_err(BuildError::Spawn)?;
    let stderr_tail = err_thread.join().unwrap_or_default();
    if !status.success() {
        return Err(BuildError::Cargo {
            name: spec.name.clone(),
            status: status.to_string(),
            output: stderr_tail,
        });
    }
    executables.dedup();
    let [exe] = executables.as_slice() else {
        return Err(BuildError::Executables {
            context,
            count: executables.len(),
        });
    };
    let binary = context.join(&spec.name);
    let tmp = context.join(format!(".{}.tmp", spec.name));
    fs::copy(exe, &tmp).map_err(io_err(exe))?;
    fs::rename(&tmp, &binary).map_err(io_err(&binary))?;
    tracing::info!(function = %spec.name, binary = %binary.display(), "built function");
    Ok(BuiltFunction { context, binary })
}

/// The executable named by one cargo JSON message, if it is a bin artifact
/// of a package whose manifest lies inside the build context.
fn context_executable(line: &str, context: &Path) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let exe = v.get("executable")?.as_str()?;
    let manifest = Path::new(v.get("manifest_path")?.as_str()?);
    let is_bin = v
        .get("target")?
        .get("kind")?
        .as_array()?
        .iter()
        .any(|k| k.as_str() == Some("bin"));
    (is_bin && manifest.starts_with(context)).then(|| PathBuf::from(exe))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: &Path, name: &str) -> BuildSpec {
        BuildSpec {
            name: name.into(),
            handler_dir: root.join("handler"),
            template_dir: root.join("template"),
            build_root: root.join("build"),
            target_dir: None,
            cargo_args: Vec::new(),
        }
    }

    #[test]
    fn context_overlays_handler_on_template() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::create_dir_all(r.join("template/function/src")).unwrap();
        fs::create_dir_all(r.join("template/main/src")).unwrap();
        fs::create_dir_all(r.join("template/target/release")).unwrap();
        fs::write(r.join("template/template.yml"), "language: rust-farm\n").unwrap();
        fs::write(r.join("template/function/src/lib.rs"), "// skeleton\n").unwrap();
        fs::write(r.join("template/function/README.md"), "skeleton readme\n").unwrap();
        fs::write(r.join("template/main/src/main.rs"), "fn main() {}\n").unwrap();
        fs::create_dir_all(r.join("handler/src")).unwrap();
        fs::create_dir_all(r.join("handler/build")).unwrap();
        fs::write(r.join("handler/src/lib.rs"), "// mine\n").unwrap();
        fs::write(r.join("handler/Cargo.toml"), "[package]\n").unwrap();

        // A stale context is replaced, not merged.
        fs::create_dir_all(r.join("build/f1")).unwrap();
        fs::write(r.join("build/f1/stale"), "x").unwrap();

        let ctx = assemble_context(&spec(r, "f1")).unwrap();
        assert_eq!(ctx, r.join("build/f1"));
        assert!(!ctx.join("stale").exists());
        assert!(!ctx.join("target").exists());
        assert!(!ctx.join("function/build").exists());
        assert_eq!(
            fs::read_to_string(ctx.join("function/src/lib.rs")).unwrap(),
            "// mine\n"
        );
        assert!(ctx.join("function/Cargo.toml").is_file());
        assert!(ctx.join("function/README.md").is_file());
        assert!(ctx.join("main/src/main.rs").is_file());
        assert!(ctx.join("template.yml").is_file());
    }

    #[test]
    fn bad_inputs_are_typed() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        assert!(matches!(
            assemble_context(&spec(r, "../x")),
            Err(BuildError::InvalidName(_))
        ));
        assert!(matches!(
            assemble_context(&spec(r, "f")),
            Err(BuildError::MissingFolder {
                what: "handler",
                ..
            })
        ));
        fs::create_dir_all(r.join("handler")).unwrap();
        fs::create_dir_all(r.join("template")).unwrap();
        assert!(matches!(
            build_function(&spec(r, "f")),
            Err(BuildError::NoManifest(_))
        ));
    }

    #[test]
    fn picks_bin_artifacts_of_the_context_only() {
        let ctx = Path::new("/b/f");
        let mine = r#"{"reason":"compiler-artifact","manifest_path":"/b/f/main/Cargo.toml","target":{"kind":["bin"]},"executable":"/t/release/main"}"#;
        let lib = r#"{"reason":"compiler-artifact","manifest_path":"/b/f/runtime/Cargo.toml","target":{"kind":["lib"]},"executable":null}"#;
        let dep = r#"{"reason":"compiler-artifact","manifest_path":"/reg/x/Cargo.toml","target":{"kind":["bin"]},"executable":"/t/release/x"}"#;
        assert_eq!(
            context_executable(mine, ctx),
            Some(PathBuf::from("/t/release/main"))
        );
        assert_eq!(context_executable(lib, ctx), None);
        assert_eq!(context_executable(dep, ctx), None);
        assert_eq!(context_executable("not json", ctx), None);
    }
}
