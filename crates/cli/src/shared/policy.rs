//! Policies by name for farmctl: a built-in of farm-policy or
//! `onnx:<path>`, with ONNX Runtime found through `ORT_DYLIB_PATH` or in the
//! repository's `.venv`.

use std::path::{Path, PathBuf};

use farm_model::scenario::Platform;
use farm_policy::learned::OnnxPolicy;
use farm_policy::onnx::OnnxError;
use farm_policy::{Policy, PolicyError};

/// Why a policy named on the command line cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicySpecError {
    /// A built-in name is unknown or malformed.
    #[error(transparent)]
    Builtin(#[from] PolicyError),
    /// `onnx:` names a file that does not exist.
    #[error("ONNX model {0} does not exist (train one with gym/, or drop it from --policies)")]
    ModelMissing(PathBuf),
    /// No ONNX Runtime shared library was found.
    #[error(
        "ONNX Runtime not found: set ORT_DYLIB_PATH to libonnxruntime.so, or run scripts/setup.sh (installs onnxruntime into .venv; searched {searched})"
    )]
    RuntimeNotFound {
        /// Where it was looked for.
        searched: String,
    },
    /// The model or the runtime failed to load.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH` when set, else
/// `.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`
/// under the current directory, the farmctl executable or one of their
/// ancestors (the repository's venv made by scripts/setup.sh).
pub fn ort_library() -> Result<PathBuf, PolicySpecError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(p));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.dedup();
    for root in &roots {
        if let Some(lib) = find_in_venv(&root.join(".venv")) {
            return Ok(lib);
        }
    }
    Err(PolicySpecError::RuntimeNotFound {
        searched: "ORT_DYLIB_PATH and .venv/ above the current directory and farmctl".into(),
    })
}

fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    pythons.into_iter().rev().find_map(|py| {
        let capi = py.join("site-packages/onnxruntime/capi");
        let mut libs: Vec<PathBuf> = std::fs::read_dir(&capi)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
            })
            .collect();
        // The versioned file (libonnxruntime.so.1.31.1) sorts last.
        libs.sort();
        libs.pop()
    })
}

/// A policy by name: a built-in of farm-policy or `onnx:<path>` (the model
/// file is checked before ONNX Runtime is looked for).
pub fn make_policy(spec: &str, platform: &Platform) -> Result<Box<dyn Policy>, PolicySpecError> {
    let spec = spec.trim();
    match spec.strip_prefix("onnx:") {
        Some(path) => {
            let path = Path::new(path);
            if !path.is_file() {
                return Err(PolicySpecError::ModelMissing(path.to_path_buf()));
            }
            let lib = ort_library()?;
            Ok(Box::new(OnnxPolicy::load(spec, Some(&lib), path)?))
        }
        None => Ok(farm_policy::builtin(spec, platform)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_model::scenario::Scenario;

    #[test]
    fn policy_specs_give_typed_errors() {
        let p = Scenario::builtin("steady").unwrap().platform;
        assert!(make_policy("queueing", &p).is_ok());
        assert!(matches!(
            make_policy("no-such-policy", &p),
            Err(PolicySpecError::Builtin(PolicyError::Unknown(_)))
        ));
        assert!(matches!(
            make_policy("onnx:/nonexistent/model.onnx", &p),
            Err(PolicySpecError::ModelMissing(_))
        ));
    }
}
