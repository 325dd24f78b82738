//! How a deployment's `image` becomes a process on this machine.
//!
//! A container platform pulls `image` from a registry; here a function is a
//! binary built from its handler, and the *image store* is a directory that
//! maps image references to built binaries:
//!
//! ```text
//! <store>/<key>/entrypoint      what a replica runs when `envProcess` is empty
//! <store>/<key>/<program>       the executable under its own name (e.g.
//!                               `farm-function`), when installed with
//!                               [`ImageStore::install_as`]; `entrypoint` is
//!                               then a symlink to it
//! <store>/<key>/...             anything else the build put beside it
//! ```
//!
//! `<key>` is the image reference normalised like Docker does (a missing tag
//! means `:latest`) with every character outside `[A-Za-z0-9._-]` replaced by
//! `_`: `ghcr.io/me/sleep-worker` -> `ghcr.io_me_sleep-worker_latest`.
//! farmctl fills the store with [`ImageStore::install_as`] after
//! [`crate::build_function`] (under the program name the build gave it, as a
//! Dockerfile copies it into its image); the provider only reads it, at
//! deploy time.
//!
//! A deployment's `envProcess` (OpenFaaS `fprocess`), when set, replaces the
//! entrypoint, resolved as in the container, whose working directory is the
//! image directory: it is split on whitespace; its first word is looked up
//! relative to the image directory (so `./farm-function`, which faas-cli sends
//! from the rust-farm template's `fprocess`, and `farm-function` both name the
//! installed program), then, for a bare name, on `PATH`. It may not be an
//! absolute path or climb out with `..`, so a deployment can only run what the
//! store or the system `PATH` provides; a program found in neither is refused
//! at deploy time ([`ImageError::ProgramNotFound`], a 400) rather than left to
//! fail as a crash loop. Replicas run with the image directory as their
//! working directory.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// File name of the executable inside an image directory.
pub const ENTRYPOINT: &str = "entrypoint";

/// Why an image could not be resolved or installed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image reference is empty or normalises to a reserved name.
    #[error("invalid image reference {0:?}: expected e.g. `sleep-worker:latest`")]
    InvalidReference(String),
    /// The store holds no entrypoint for this image.
    #[error(
        "image {image:?} is not in the local image store: {path} does not exist (build the function first)"
    )]
    NotFound {
        /// The image reference.
        image: String,
        /// The path that was looked up.
        path: PathBuf,
    },
    /// `envProcess` is empty after trimming or escapes the image directory.
    #[error(
        "invalid envProcess {0:?}: expected a command inside the image or on PATH, without an absolute path or `..`"
    )]
    InvalidProcess(String),
    /// `envProcess` names a program that is neither in the image nor on `PATH`.
    #[error(
        "envProcess {process:?}: image {image:?} has no program {program:?} (it holds {available}){path_note}"
    )]
    ProgramNotFound {
        /// The deployment's `envProcess`.
        process: String,
        /// The image reference.
        image: String,
        /// The program looked for (the first word of `envProcess`).
        program: String,
        /// The programs the image directory does hold, for the message.
        available: String,
        /// Whether `PATH` was searched too, for the message.
        path_note: &'static str,
    },
    /// The program name given to [`ImageStore::install_as`] is not a plain
    /// file name.
    #[error("invalid program name {0:?}: expected a file name without '/' not starting with '.'")]
    InvalidProgram(String),
    /// Reading or writing the store failed.
    #[error("image store I/O on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A resolved command line for a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Program to execute (a path inside the image, or a bare name for `PATH`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory: the image directory.
    pub workdir: PathBuf,
}

/// The local image store (see the module docs).
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// A store rooted at `root` (created on first install).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ImageStore { root: root.into() }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory name of an image reference.
    pub fn key(image: &str) -> Result<String, ImageError> {
        let image = image.trim();
        if image.is_empty() {
            return Err(ImageError::InvalidReference(image.to_string()));
        }
        let last = image.rsplit('/').next().unwrap_or(image);
        let normalised = if last.contains(':') || last.contains('@') {
            image.to_string()
        } else {
            format!("{image}:latest")
        };
        let key: String = normalised
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if key.starts_with('.') {
            return Err(ImageError::InvalidReference(image.to_string()));
        }
        Ok(key)
    }

    /// The directory of an image.
    pub fn dir(&self, image: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join(Self::key(image)?))
    }

    /// Copies a built binary into the store as `image`'s entrypoint
    /// (replacing an older one atomically) and returns its path.
    pub fn install(&self, image: &str, binary: &Path) -> Result<PathBuf, ImageError> {
        self.install_as(image, binary, ENTRYPOINT)
    }

    /// Copies a built binary into the store as `<image dir>/<program>`
    /// (replacing an older one atomically), makes `entrypoint` point to it,
    /// and returns its path: a deployment then runs it with an empty
    /// `envProcess`, `program` or `./program`, as a container whose
    /// Dockerfile copied it into its working directory would.
    pub fn install_as(
        &self,
        image: &str,
        binary: &Path,
        program: &str,
    ) -> Result<PathBuf, ImageError> {
        if program.is_empty() || program.starts_with('.') || program.contains('/') {
            return Err(ImageError::InvalidProgram(program.to_string()));
        }
        let dir = self.dir(image)?;
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let pid = std::process::id();
        let tmp = dir.join(format!(".{program}.{pid}"));
        fs::copy(binary, &tmp).map_err(io(binary))?;
        let dest = dir.join(program);
        // Rename rather than copy over: a replica may be executing the old
        // file, and writing into a running executable fails (ETXTBSY).
        fs::rename(&tmp, &dest).map_err(io(&dest))?;
        if program != ENTRYPOINT {
            let link = dir.join(format!(".{ENTRYPOINT}.{pid}"));
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(program, &link).map_err(io(&link))?;
            let entry = dir.join(ENTRYPOINT);
            fs::rename(&link, &entry).map_err(io(&entry))?;
        }
        Ok(dest)
    }

    /// The executables of an image directory, by file name (for messages).
    fn programs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Resolves what a replica of `image` runs, honouring `env_process`.
    pub fn resolve(&self, image: &str, env_process: &str) -> Result<Launch, ImageError> {
        let dir = self.dir(image)?;
        let entry = dir.join(ENTRYPOINT);
        if !entry.is_file() {
            return Err(ImageError::NotFound {
                image: image.to_string(),
                path: entry,
            });
        }
        let workdir = absolute(&dir)?;
        if env_process.trim().is_empty() {
            return Ok(Launch {
                program: workdir.join(ENTRYPOINT),
                args: Vec::new(),
                workdir,
            });
        }
        let mut words = env_process.split_whitespace().map(str::to_string);
        let first = words
            .next()
            .ok_or_else(|| ImageError::InvalidProcess(env_process.to_string()))?;
        let first_path = Path::new(&first);
        if first_path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(ImageError::InvalidProcess(env_process.to_string()));
        }
        let inside = workdir.join(first_path);
        let bare = !first.contains('/');
        let program = if inside.is_file() {
            inside
        } else if bare && on_path(&first) {
            PathBuf::from(first)
        } else {
            let available = Self::programs(&workdir);
            return Err(ImageError::ProgramNotFound {
                process: env_process.to_string(),
                image: image.to_string(),
                program: first,
                available: if available.is_empty() {
                    "nothing".to_string()
                } else {
                    available.join(", ")
                },
                path_note: if bare { " and it is not on PATH" } else { "" },
            });
        };
        Ok(Launch {
            program,
            args: words.collect(),
            workdir,
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + use<> {
    let path = path.to_path_buf();
    move |source| ImageError::Io { path, source }
}

/// Whether a bare program name is found on this process' `PATH` (the
/// replica inherits it, see the function module's inherited environment).
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
}

fn absolute(p: &Path) -> Result<PathBuf, ImageError> {
    std::path::absolute(p).map_err(|source| ImageError::Io {
        path: p.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise_tags_and_separators() {
        assert_eq!(
            ImageStore::key("sleep-worker").unwrap(),
            "sleep-worker_latest"
        );
        assert_eq!(
            ImageStore::key("ghcr.io/me/sleep-worker:0.1").unwrap(),
            "ghcr.io_me_sleep-worker_0.1"
        );
        assert_eq!(
            ImageStore::key("localhost:5000/w").unwrap(),
            "localhost_5000_w_latest"
        );
        assert!(matches!(
            ImageStore::key("  "),
            Err(ImageError::InvalidReference(_))
        ));
        assert!(matches!(
            ImageStore::key("..:x"),
            Err(ImageError::InvalidReference(_))
        ));
    }

    #[test]
    fn install_then_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path().join("images"));
        assert!(matches!(
            store.resolve("w", ""),
            Err(ImageError::NotFound { .. })
        ));
        let bin = tmp.path().join("bin");
        fs::write(&bin, b"#!/bin/sh\n").unwrap();
        let dest = store.install("w", &bin).unwrap();
        assert!(dest.ends_with("w_latest/entrypoint"));
        let l = store.resolve("w:latest", "").unwrap();
        assert_eq!(l.program, l.workdir.join(ENTRYPOINT));
        assert!(l.args.is_empty());
        let l = store.resolve("w", "entrypoint --fast 2").unwrap();
        assert_eq!(l.program, l.workdir.join(ENTRYPOINT));
        assert_eq!(l.args, vec!["--fast".to_string(), "2".to_string()]);
        let l = store.resolve("w", "sh -c true").unwrap();
        assert_eq!(l.program, PathBuf::from("sh"));
        for bad in ["/bin/sh", "../x", "a/../../x", "  "] {
            let r = store.resolve("w", bad);
            if bad.trim().is_empty() {
                assert!(r.is_ok());
            } else {
                assert!(
                    matches!(r, Err(ImageError::InvalidProcess(_))),
                    "{bad}: {r:?}"
                );
            }
        }
        for missing in ["sub/x", "./nope", "nope-not-on-path-either"] {
            let r = store.resolve("w", missing);
            assert!(
                matches!(r, Err(ImageError::ProgramNotFound { .. })),
                "{missing}: {r:?}"
            );
        }
    }

    #[test]
    fn install_as_keeps_the_program_name_like_a_container() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path().join("images"));
        let bin = tmp.path().join("built");
        fs::write(&bin, b"#!/bin/sh\n").unwrap();
        let dest = store.install_as("w", &bin, "farm-function").unwrap();
        assert!(dest.ends_with("w_latest/farm-function"));
        // What faas-cli sends from the template's fprocess, the bare name,
        // and no envProcess at all run the same installed program.
        for process in ["./farm-function", "farm-function", "./farm-function --x"] {
            let l = store.resolve("w", process).unwrap();
            assert_eq!(l.program, l.workdir.join("./farm-function"), "{process}");
        }
        let l = store.resolve("w", "").unwrap();
        assert_eq!(
            fs::canonicalize(&l.program).unwrap(),
            fs::canonicalize(&dest).unwrap()
        );
        // Reinstalling replaces both (no stale symlink error).
        store.install_as("w", &bin, "farm-function").unwrap();
        match store.resolve("w", "./farm-fn") {
            Err(ImageError::ProgramNotFound { available, .. }) => {
                assert_eq!(available, "entrypoint, farm-function");
            }
            other => panic!("{other:?}"),
        }
        for bad in ["", ".hidden", "a/b"] {
            assert!(matches!(
                store.install_as("w", &bin, bad),
                Err(ImageError::InvalidProgram(_))
            ));
        }
    }
}
