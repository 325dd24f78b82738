//! Building a function from its handler folder, the way
//! `faas-cli build --shrinkwrap` assembles a build context, then `cargo build`
//! instead of `docker build`.
//!
//! 1. assemble the context: the template folder (skipping `target/` and
//!    `.git/`) with the handler folder copied over its `function/` (faas-cli
//!    overlays the handler on the template's skeleton; `build/`, `template/`,
//!    `target/` and `.git/` of the handler are skipped). Where it goes:
//!    - with a shared target directory ([`BuildSpec::target_dir`]), at a
//!      content-addressed path, `<target_dir>/contexts/<name>-<hash>`
//!      ([`cached_context`]), the hash covering every file's relative path
//!      and contents. Cargo fingerprints path crates by their path and their
//!      files' modification times, so a context at a fresh path (each
//!      `farmctl up` has a fresh state directory) recompiled the three
//!      context crates every time; at a stable path, with the sources'
//!      modification times kept, unchanged inputs make `cargo build` a
//!      no-op. A context is written into a temporary sibling and renamed
//!      into place, and an existing one is reused, so concurrent builds of
//!      the same inputs (parallel tests) never see a half-written context;
//!    - without one, at `<build_root>/<name>/`, replaced on every build,
//!      exactly faas-cli's `build/<name>` layout ([`assemble_context`]).
//!
//!    A template without a root manifest but with `main/Cargo.toml` gets a
//!    small workspace manifest written at the root ([`CONTEXT_WORKSPACE`]):
//!    otherwise a context under a repository that is a Cargo workspace (like
//!    `build/` here) would be claimed by that workspace and refused;
//! 2. `cargo build --release` on the context's root `Cargo.toml`, run from
//!    the context's root (so the template's `.cargo/config.toml` applies, as
//!    from the Dockerfile's WORKDIR: it maps the handler's `farm-runtime`
//!    to the context's `runtime/`), with the shared `CARGO_TARGET_DIR` so
//!    dependencies compile once for all functions;
//! 3. copy the built executable to `<build_root>/<name>/<name>` — every
//!    function built from one template produces the same binary name in the
//!    shared target directory, so it must be taken out before the next
//!    build; a lock file in the target directory is held from `cargo build`
//!    to that copy, so a concurrent build of another function cannot
//!    overwrite the executable in between.
//!
//! The executable is found from cargo's JSON messages (the one bin artifact
//! of a package inside the build context), so the template may name its main
//! crate as it likes. This is blocking work: call it from
//! `tokio::task::spawn_blocking` in async code.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Root manifest written into a context that has none (see [`build_function`]).
///
/// Only `main` is a member, as in the Dockerfile (which builds
/// `main/Cargo.toml` as its own root): `function/` is excluded, or cargo
/// would make that path dependency a member too, resolve its
/// dev-dependencies (which may point outside the context, like
/// functions/sleep's test support) and build its own binaries.
pub const CONTEXT_WORKSPACE: &str = "# Written by farm-local: makes this build context its own workspace.\n\
[workspace]\nmembers = [\"main\"]\nexclude = [\"function\"]\nresolver = \"3\"\n";

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// Function name (the stack.yml key); names the build context.
    pub name: String,
    /// The handler folder (stack.yml `handler`).
    pub handler_dir: PathBuf,
    /// The template folder, e.g. `template/rust-farm`.
    pub template_dir: PathBuf,
    /// Where the executable goes (`<build_root>/<name>/<name>`), and the
    /// build context too when `target_dir` is `None` (`build/` like faas-cli).
    pub build_root: PathBuf,
    /// Shared cargo target directory; `None` uses the context's own
    /// `target/`. When set, the context is assembled once per distinct
    /// input under `<target_dir>/contexts/` (see the module docs).
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
    /// The build context: `<target_dir>/contexts/<name>-<hash>/` with a
    /// shared target directory, else `<build_root>/<name>/`.
    pub context: PathBuf,
    /// The executable, copied to `<build_root>/<name>/<name>`.
    pub binary: PathBuf,
    /// The executable's own file name as cargo built it (the template's
    /// bin target, `farm-function` for rust-farm): the name the Dockerfile
    /// copies it under and template.yml's `fprocess` runs, so install it
    /// with [`crate::ImageStore::install_as`] under this name.
    pub program: String,
    /// The folders (relative to the context) of the context's packages that
    /// cargo compiled rather than found fresh, e.g. `["runtime", "function",
    /// "main"]`; empty when the build was a no-op.
    pub compiled: Vec<String>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lists `src` recursively into `files` under the relative prefix `rel`,
/// skipping top-level names in `skip` and every `target`/`.git` folder.
/// Symlinks are followed (a context must be self-contained, as a Docker
/// context is). Folders are listed too (value `None`) so empty ones are
/// recreated; a later entry for the same relative path replaces an earlier
/// one, which is how the handler overlays the template.
fn list_tree(
    src: &Path,
    rel: &Path,
    skip: &[&str],
    files: &mut BTreeMap<PathBuf, Option<PathBuf>>,
) -> Result<(), BuildError> {
    files.insert(rel.to_path_buf(), None);
    for entry in fs::read_dir(src).map_err(io_err(src))? {
        let entry = entry.map_err(io_err(src))?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if skip.contains(&name_s.as_ref()) || name_s == "target" || name_s == ".git" {
            continue;
        }
        let from = entry.path();
        let to = rel.join(&name);
        if from.is_dir() {
            list_tree(&from, &to, &[], files)?;
        } else {
            files.insert(to, Some(from));
        }
    }
    Ok(())
}

/// The files of the context of `spec` (relative path → source file, `None`
/// for a folder), after checking the name and folders.
fn context_files(spec: &BuildSpec) -> Result<BTreeMap<PathBuf, Option<PathBuf>>, BuildError> {
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
    let mut files = BTreeMap::new();
    list_tree(&spec.template_dir, Path::new(""), &[], &mut files)?;
    list_tree(
        &spec.handler_dir,
        Path::new("function"),
        &["build", "template"],
        &mut files,
    )?;
    Ok(files)
}

/// Copies the listed files into `dst`, keeping each file's modification
/// time: cargo compares sources' times against its last build, so a copy
/// stamped "now" would look changed.
fn write_files(files: &BTreeMap<PathBuf, Option<PathBuf>>, dst: &Path) -> Result<(), BuildError> {
    // BTreeMap order lists a folder before anything inside it.
    for (rel, src) in files {
        let to = dst.join(rel);
        match src {
            None => fs::create_dir_all(&to).map_err(io_err(&to))?,
            Some(from) => {
                fs::copy(from, &to).map_err(io_err(from))?;
                let modified = fs::metadata(from)
                    .and_then(|m| m.modified())
                    .map_err(io_err(from))?;
                fs::File::options()
                    .write(true)
                    .open(&to)
                    .and_then(|f| f.set_modified(modified))
                    .map_err(io_err(&to))?;
            }
        }
    }
    Ok(())
}

/// Writes [`CONTEXT_WORKSPACE`] as the context's root manifest when the
/// template has none (see the module docs).
fn ensure_manifest(context: &Path) -> Result<(), BuildError> {
    let manifest = context.join("Cargo.toml");
    if manifest.is_file() {
        return Ok(());
    }
    if !context.join("main").join("Cargo.toml").is_file() {
        return Err(BuildError::NoManifest(context.to_path_buf()));
    }
    // A context under a repository that is itself a Cargo workspace
    // (build/ in this one) would be claimed by that workspace and refused;
    // a root manifest makes the context its own workspace, as it is inside
    // a Docker build.
    fs::write(&manifest, CONTEXT_WORKSPACE).map_err(io_err(&manifest))
}

/// FNV-1a, 128 bits: a stable content key with no dependency (`std`'s
/// hasher may change between Rust releases; a key only needs to be stable
/// and collision-free in practice, not cryptographic).
struct Fnv128(u128);

impl Fnv128 {
    fn new() -> Self {
        Self(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self
                .0
                .wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
    }
    /// Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }
}

/// The content key of a context: every relative path, whether it is a
/// folder or a file, each file's contents, and the manifest farm-local may
/// add.
fn content_key(files: &BTreeMap<PathBuf, Option<PathBuf>>) -> Result<String, BuildError> {
    let mut h = Fnv128::new();
    h.field(CONTEXT_WORKSPACE.as_bytes());
    let mut buf = Vec::new();
    for (rel, src) in files {
        h.field(rel.to_string_lossy().as_bytes());
        match src {
            None => h.field(b"dir"),
            Some(from) => {
                buf.clear();
                fs::File::open(from)
                    .and_then(|mut f| f.read_to_end(&mut buf))
                    .map_err(io_err(from))?;
                h.field(b"file");
                h.field(&buf);
            }
        }
    }
    // 96 bits in the name are plenty and keep paths short.
    Ok(format!("{:024x}", h.0 >> 32))
}

/// Assembles the build context of one function at `<build_root>/<name>/`,
/// faas-cli's `build/<name>` layout, replacing any previous one, without
/// building.
pub fn assemble_context(spec: &BuildSpec) -> Result<PathBuf, BuildError> {
    let files = context_files(spec)?;
    let context = spec.build_root.join(&spec.name);
    if context.exists() {
        fs::remove_dir_all(&context).map_err(io_err(&context))?;
    }
    write_files(&files, &context)?;
    Ok(context)
}

/// Tells temporary folders of concurrent assemblies in one process apart.
static ASSEMBLY: AtomicU64 = AtomicU64::new(0);

/// The build context of one function at a content-addressed path,
/// `<cache_root>/<name>-<hash>/` (see the module docs), assembled there
/// (root manifest included) unless it already exists, without building.
///
/// The same inputs give the same path, so cargo finds its previous build of
/// the context fresh; changed inputs give a new path. Safe to call
/// concurrently from threads and processes: a context is written into a
/// temporary sibling and renamed into place, and whoever renames second
/// drops its copy and uses the first.
pub fn cached_context(spec: &BuildSpec, cache_root: &Path) -> Result<PathBuf, BuildError> {
    let files = context_files(spec)?;
    let context = cache_root.join(format!("{}-{}", spec.name, content_key(&files)?));
    if context.is_dir() {
        return Ok(context);
    }
    fs::create_dir_all(cache_root).map_err(io_err(cache_root))?;
    let tmp = cache_root.join(format!(
        ".{}.tmp-{}-{}",
        spec.name,
        std::process::id(),
        ASSEMBLY.fetch_add(1, Ordering::Relaxed)
    ));
    if tmp.exists() {
        // Left by a crashed process whose id was reused.
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    let written = write_files(&files, &tmp).and_then(|()| ensure_manifest(&tmp));
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, &context) {
        let _ = fs::remove_dir_all(&tmp);
        // Renaming onto an existing non-empty folder fails: another build
        // of the same inputs got there first, and its context is complete.
        if !context.is_dir() {
            return Err(io_err(&context)(e));
        }
    }
    Ok(context)
}

/// Assembles the context and builds the function (see the module docs).
pub fn build_function(spec: &BuildSpec) -> Result<BuiltFunction, BuildError> {
    let context = match &spec.target_dir {
        Some(t) => cached_context(spec, &t.join("contexts"))?,
        None => {
            let c = assemble_context(spec)?;
            ensure_manifest(&c)?;
            c
        }
    };
    let manifest = context.join("Cargo.toml");
    // Held from cargo until the executable is copied out (module docs).
    let _lock = match &spec.target_dir {
        Some(t) => Some(lock_target(t)?),
        None => None,
    };
    // cargo reports canonical manifest paths: a target directory given as
    // `crate/../../target` must compare equal to them.
    let context_abs = fs::canonicalize(&context).map_err(io_err(&context))?;

    let mut cmd = cargo_command();
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
    let mut compiled = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let Some(artifact) = context_artifact(&line, &context_abs) else {
                continue;
            };
            if let Some(exe) = artifact.executable {
                executables.push(exe);
            }
            if !artifact.fresh && !compiled.contains(&artifact.package) {
                compiled.push(artifact.package);
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
    let program = exe
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(&spec.name)
        .to_string();
    let out_dir = spec.build_root.join(&spec.name);
    fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
    let binary = out_dir.join(&spec.name);
    let tmp = out_dir.join(format!(".{}.tmp", spec.name));
    fs::copy(exe, &tmp).map_err(io_err(exe))?;
    fs::rename(&tmp, &binary).map_err(io_err(&binary))?;
    tracing::info!(function = %spec.name, binary = %binary.display(), ?compiled, "built function");
    Ok(BuiltFunction {
        context,
        binary,
        program,
        compiled,
    })
}

/// Takes the exclusive build lock of a shared target directory, waiting for
/// other farm-local builds (threads or processes) to release it.
fn lock_target(target_dir: &Path) -> Result<fs::File, BuildError> {
    fs::create_dir_all(target_dir).map_err(io_err(target_dir))?;
    let path = target_dir.join(".farm-local-build.lock");
    let file = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    file.lock().map_err(io_err(&path))?;
    Ok(file)
}

/// Variables cargo sets for the crate it is building or testing (seen by a
/// build script, a test, or a process a test starts).
const PER_CRATE_ENV: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

/// `cargo` (`$CARGO`, else from `PATH`) for a nested build, without the
/// per-crate environment of whatever cargo run started this process.
///
/// Build scripts declare `rerun-if-env-changed` on such names (ring's on
/// `CARGO_MANIFEST_DIR` and `CARGO_PKG_NAME`), and cargo compares them
/// against its own environment: a nested build started from one crate's test
/// and then from another's would otherwise rebuild ring and the TLS stack
/// above it each time, although the shared target directory already holds
/// them.
pub fn cargo_command() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if PER_CRATE_ENV.contains(&k) || k.starts_with("CARGO_PKG_") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// A compiler artifact of a package inside the build context.
#[derive(Debug, PartialEq, Eq)]
struct ContextArtifact {
    /// The package's folder, relative to the context.
    package: String,
    /// The executable, for a bin target.
    executable: Option<PathBuf>,
    /// cargo did not need to compile it.
    fresh: bool,
}

/// The artifact named by one cargo JSON message, if it is one of a package
/// whose manifest lies inside the build context.
fn context_artifact(line: &str, context: &Path) -> Option<ContextArtifact> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let manifest = Path::new(v.get("manifest_path")?.as_str()?);
    if !manifest.starts_with(context) {
        return None;
    }
    let target = v.get("target")?;
    let is_bin = target
        .get("kind")?
        .as_array()?
        .iter()
        .any(|k| k.as_str() == Some("bin"));
    let executable = v
        .get("executable")
        .and_then(|e| e.as_str())
        .filter(|_| is_bin)
        .map(PathBuf::from);
    let package = manifest
        .parent()
        .and_then(|d| d.strip_prefix(context).ok())
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(ContextArtifact {
        package,
        executable,
        fresh: v.get("fresh").and_then(|f| f.as_bool()).unwrap_or(false),
    })
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
    fn nested_cargo_drops_the_callers_crate_environment() {
        // This unit test runs under cargo, which sets these for farm-local.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let cmd = cargo_command();
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for k in ["CARGO_PKG_NAME", "CARGO_MANIFEST_DIR"] {
            assert!(
                removed.iter().any(|r| r == k),
                "{k} not removed: {removed:?}"
            );
        }
        // What cargo needs to find itself and its home stays.
        assert!(!removed.iter().any(|r| r == "CARGO_HOME" || r == "PATH"));
    }

    #[test]
    fn picks_artifacts_of_the_context_only() {
        let ctx = Path::new("/b/f");
        let mine = r#"{"reason":"compiler-artifact","manifest_path":"/b/f/main/Cargo.toml","target":{"kind":["bin"]},"executable":"/t/release/main","fresh":true}"#;
        let lib = r#"{"reason":"compiler-artifact","manifest_path":"/b/f/runtime/Cargo.toml","target":{"kind":["lib"]},"executable":null,"fresh":false}"#;
        let dep = r#"{"reason":"compiler-artifact","manifest_path":"/reg/x/Cargo.toml","target":{"kind":["bin"]},"executable":"/t/release/x","fresh":false}"#;
        assert_eq!(
            context_artifact(mine, ctx),
            Some(ContextArtifact {
                package: "main".into(),
                executable: Some(PathBuf::from("/t/release/main")),
                fresh: true,
            })
        );
        assert_eq!(
            context_artifact(lib, ctx),
            Some(ContextArtifact {
                package: "runtime".into(),
                executable: None,
                fresh: false,
            })
        );
        assert_eq!(context_artifact(dep, ctx), None);
        assert_eq!(context_artifact("not json", ctx), None);
    }

    /// A template with a main crate and a handler, under `r`.
    fn template_and_handler(r: &Path) {
        fs::create_dir_all(r.join("template/main/src")).unwrap();
        fs::create_dir_all(r.join("template/function/src")).unwrap();
        fs::create_dir_all(r.join("template/target/release")).unwrap();
        fs::write(r.join("template/main/Cargo.toml"), "[package]\n").unwrap();
        fs::write(r.join("template/main/src/main.rs"), "fn main() {}\n").unwrap();
        fs::write(r.join("template/target/release/junk"), "x").unwrap();
        fs::create_dir_all(r.join("handler/src")).unwrap();
        fs::write(r.join("handler/src/lib.rs"), "// v1\n").unwrap();
    }

    #[test]
    fn cached_context_is_content_addressed_and_keeps_mtimes() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        template_and_handler(r);
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(r.join("handler/src/lib.rs"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let cache = r.join("cache");

        let a = cached_context(&spec(r, "f"), &cache).unwrap();
        assert!(a.starts_with(&cache));
        assert!(a.file_name().unwrap().to_string_lossy().starts_with("f-"));
        assert_eq!(
            fs::read_to_string(a.join("Cargo.toml")).unwrap(),
            CONTEXT_WORKSPACE
        );
        assert_eq!(
            fs::read_to_string(a.join("function/src/lib.rs")).unwrap(),
            "// v1\n"
        );
        assert!(!a.join("target").exists());
        assert_eq!(
            fs::metadata(a.join("function/src/lib.rs"))
                .unwrap()
                .modified()
                .unwrap(),
            old
        );

        // Same inputs: same folder, reused as it is (a file cargo would add,
        // like Cargo.lock, stays).
        fs::write(a.join("Cargo.lock"), "# built\n").unwrap();
        assert_eq!(cached_context(&spec(r, "f"), &cache).unwrap(), a);
        assert!(a.join("Cargo.lock").is_file());

        // Another name: another folder.
        let g = cached_context(&spec(r, "g"), &cache).unwrap();
        assert_ne!(g, a);

        // A changed handler file, or a new one: a new context; the old stays.
        fs::write(r.join("handler/src/lib.rs"), "// v2\n").unwrap();
        let b = cached_context(&spec(r, "f"), &cache).unwrap();
        assert_ne!(b, a);
        assert_eq!(
            fs::read_to_string(b.join("function/src/lib.rs")).unwrap(),
            "// v2\n"
        );
        fs::write(r.join("handler/src/extra.rs"), "").unwrap();
        let c = cached_context(&spec(r, "f"), &cache).unwrap();
        assert!(c != a && c != b);
        assert!(a.is_dir());

        // No temporary folder is left behind.
        let leftovers: Vec<_> = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn concurrent_assemblies_of_the_same_inputs_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path().to_path_buf();
        template_and_handler(&r);
        let cache = r.join("cache");
        let contexts: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| cached_context(&spec(&r, "f"), &cache).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(contexts.iter().all(|c| *c == contexts[0]));
        assert_eq!(
            fs::read_to_string(contexts[0].join("main/src/main.rs")).unwrap(),
            "fn main() {}\n"
        );
        let entries = fs::read_dir(&cache).unwrap().count();
        assert_eq!(entries, 1, "only the context, no temporary folders");
    }
}
