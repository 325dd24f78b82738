//! ONNX policies through ONNX Runtime (`ort`, loaded at run time from the
//! shared library named by `ORT_DYLIB_PATH`).
//!
//! A model is validated when it is loaded, never at its first decision: its
//! graph and its custom metadata must agree with this build's observation
//! layout and with each other, or the load fails with an [`OnnxError`] that
//! names what is wrong.
//!
//! # Metadata keys (ONNX `metadata_props`, all strings)
//!
//! | key | value |
//! |---|---|
//! | `rust_farm.format` | `1` (version of this metadata scheme) |
//! | `rust_farm.obs_version` | the observation layout version the model was trained on: `1`, `2` or `3` (`farm_model::observation::Observer`) |
//! | `rust_farm.obs_names` | JSON array of the observation feature names, in order (must equal `observation::names_of(version)`) |
//! | `rust_farm.normalisation` | JSON: `{"kind":"none"}` or `{"kind":"standard","mean":[..],"std":[..],"clip":10.0}` (`clip` optional); applied to the observation before the graph: `clip((x - mean) / std)` |
//! | `rust_farm.action_meanings` | JSON array of action meanings (`hold`, `delta:+1`, `estimate:x1.25`, ...) |
//! | `rust_farm.input_name` | name of the graph input (float32, shape `[batch, dim_of(version)]`) |
//! | `rust_farm.input_shape` | JSON array, e.g. `[-1, 17]` (`-1` = dynamic); must match the graph |
//! | `rust_farm.output_name` | name of the graph output (float32, shape `[batch, n_actions]`) |
//! | `rust_farm.output_shape` | JSON array, e.g. `[-1, 3]`; must match the graph |
//! | `rust_farm.output_kind` | optional: `q_values` or `logits` (both decided greedily: argmax) |
//!
//! The greedy action is the argmax of the output row; the action space
//! (`farm_model::action::ActionSpace::from_meanings`) turns it into a
//! desired replica count.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use farm_model::action::ActionSpace;
use farm_model::observation::{OBS_VERSION_LATEST, dim_of, names_of};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};

/// Metadata key: scheme version.
pub const META_FORMAT: &str = "rust_farm.format";
/// Metadata key: observation layout version.
pub const META_OBS_VERSION: &str = "rust_farm.obs_version";
/// Metadata key: observation feature names.
pub const META_OBS_NAMES: &str = "rust_farm.obs_names";
/// Metadata key: normalisation.
pub const META_NORMALISATION: &str = "rust_farm.normalisation";
/// Metadata key: action meanings.
pub const META_ACTION_MEANINGS: &str = "rust_farm.action_meanings";
/// Metadata key: graph input name.
pub const META_INPUT_NAME: &str = "rust_farm.input_name";
/// Metadata key: graph input shape.
pub const META_INPUT_SHAPE: &str = "rust_farm.input_shape";
/// Metadata key: graph output name.
pub const META_OUTPUT_NAME: &str = "rust_farm.output_name";
/// Metadata key: graph output shape.
pub const META_OUTPUT_SHAPE: &str = "rust_farm.output_shape";
/// The metadata scheme version this build reads.
pub const FORMAT_VERSION: &str = "1";

/// Why a model could not be loaded or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnnxError {
    /// No ONNX Runtime library was configured.
    #[error(
        "ONNX Runtime library not configured: set ORT_DYLIB_PATH to libonnxruntime.so (e.g. from the onnxruntime 1.31.1 wheel: .venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1)"
    )]
    RuntimeNotConfigured,
    /// The ONNX Runtime library could not be loaded.
    #[error("cannot load the ONNX Runtime library {path}: {message}")]
    Runtime {
        /// The library path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The model file could not be read or is not a valid ONNX model.
    #[error("cannot load ONNX model {path}: {message}")]
    Load {
        /// The model path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A required metadata key is absent.
    #[error("ONNX model {path}: metadata key {key} is missing (the exporter must write it)")]
    MissingMetadata {
        /// The model path.
        path: PathBuf,
        /// The key.
        key: &'static str,
    },
    /// A metadata value is malformed.
    #[error("ONNX model {path}: metadata {key}={value:?} is invalid: {message}")]
    BadMetadata {
        /// The model path.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// The model was trained on another observation layout.
    #[error("ONNX model {path}: observation layout mismatch: {message}")]
    Observation {
        /// The model path.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// The graph's input does not take an observation of this build.
    #[error(
        "ONNX model {path}: input {name:?} has shape {found:?}, expected [batch, {expected}] float32 (the feature count of the model's observation version)"
    )]
    InputShape {
        /// The model path.
        path: PathBuf,
        /// Input name.
        name: String,
        /// Shape found in the graph (-1 = dynamic).
        found: Vec<i64>,
        /// Features expected.
        expected: usize,
    },
    /// The graph's output does not have one value per action.
    #[error(
        "ONNX model {path}: output {name:?} has shape {found:?}, expected [batch, {expected}] float32 (one value per action)"
    )]
    OutputShape {
        /// The model path.
        path: PathBuf,
        /// Output name.
        name: String,
        /// Shape found in the graph.
        found: Vec<i64>,
        /// Number of actions.
        expected: usize,
    },
    /// A name or shape in the metadata disagrees with the graph.
    #[error("ONNX model {path}: metadata disagrees with the graph: {message}")]
    GraphMismatch {
        /// The model path.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// Running the model failed or produced non-finite outputs.
    #[error("ONNX inference failed: {0}")]
    Inference(String),
    /// The observation given has the length of another layout version.
    #[error(
        "observation has {found} features, the model takes {expected} (observation v{version})"
    )]
    ObservationLength {
        /// Features given.
        found: usize,
        /// Features the model takes.
        expected: usize,
        /// The model's observation version.
        version: u32,
    },
}

static ENVIRONMENT: OnceLock<Result<Environment, OnnxError>> = OnceLock::new();

/// Loads ONNX Runtime from `path` once per process. Later calls return the
/// first result (the library cannot be swapped inside a process).
pub fn init_runtime(path: Option<&Path>) -> Result<&'static Environment, OnnxError> {
    let r = ENVIRONMENT.get_or_init(|| {
        let path = path.ok_or(OnnxError::RuntimeNotConfigured)?;
        if !path.is_file() {
            return Err(OnnxError::Runtime {
                path: path.to_owned(),
                message: "no such file".into(),
            });
        }
        let builder = ort::init_from(path).map_err(|e| OnnxError::Runtime {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        builder
            .with_name("rust-farm")
            .build()
            .map_err(|e| OnnxError::Runtime {
                path: path.to_owned(),
                message: e.to_string(),
            })
    });
    r.as_ref().map_err(Clone::clone)
}

/// How observations are normalised before the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalisation {
    /// Fed as built by farm-model.
    None,
    /// `clip((x - mean) / std, -clip, clip)`.
    Standard {
        /// Per-feature mean.
        mean: Vec<f32>,
        /// Per-feature standard deviation (> 0).
        std: Vec<f32>,
        /// Symmetric clip bound.
        clip: f32,
    },
}

impl Normalisation {
    /// `obs` and `out` have the model's feature count (checked by `infer`).
    fn apply(&self, obs: &[f32], out: &mut [f32]) {
        match self {
            Normalisation::None => out.copy_from_slice(obs),
            Normalisation::Standard { mean, std, clip } => {
                for i in 0..obs.len() {
                    out[i] = ((obs[i] - mean[i]) / std[i]).clamp(-clip, *clip);
                }
            }
        }
    }
}

/// A loaded, validated ONNX policy model.
pub struct OnnxModel {
    path: PathBuf,
    session: Session,
    input: String,
    output: String,
    normalisation: Normalisation,
    actions: ActionSpace,
    obs_version: u32,
    buf: Vec<f32>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("input", &self.input)
            .field("output", &self.output)
            .field("actions", &self.actions.meanings())
            .finish()
    }
}

/// What one inference produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// The greedy action (argmax).
    pub action: usize,
    /// The raw output row.
    pub outputs: Vec<f32>,
}

fn tensor_shape(v: &ValueType) -> Option<Vec<i64>> {
    match v {
        ValueType::Tensor { ty, shape, .. } if *ty == ort::value::TensorElementType::Float32 => {
            Some(shape.iter().copied().collect())
        }
        _ => None,
    }
}

fn dims_agree(meta: &[i64], graph: &[i64]) -> bool {
    meta.len() == graph.len()
        && meta
            .iter()
            .zip(graph)
            .all(|(m, g)| *m == *g || *m < 0 && *g < 0)
}

impl OnnxModel {
    /// Loads and validates `path` with ONNX Runtime from `runtime`.
    pub fn load(runtime: Option<&Path>, path: &Path) -> Result<OnnxModel, OnnxError> {
        let env = init_runtime(runtime)?;
        let load_err = |message: String| OnnxError::Load {
            path: path.to_owned(),
            message,
        };
        if !path.is_file() {
            return Err(load_err("no such file".into()));
        }
        let session = Session::builder(env)
            .map_err(|e| load_err(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| load_err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| load_err(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| load_err(e.to_string()))?;
        let meta = session.metadata().map_err(|e| load_err(e.to_string()))?;
        let get = |key: &'static str| {
            meta.custom(key).ok_or_else(|| OnnxError::MissingMetadata {
                path: path.to_owned(),
                key,
            })
        };
        let bad = |key: &'static str, value: &str, message: String| OnnxError::BadMetadata {
            path: path.to_owned(),
            key,
            value: value.to_owned(),
            message,
        };
        let format = get(META_FORMAT)?;
        if format.trim() != FORMAT_VERSION {
            return Err(bad(
                META_FORMAT,
                &format,
                format!("this build reads format {FORMAT_VERSION}"),
            ));
        }
        let v = get(META_OBS_VERSION)?;
        let version: u32 = v
            .trim()
            .parse()
            .map_err(|_| bad(META_OBS_VERSION, &v, "not an integer".into()))?;
        let (Ok(obs_dim), Ok(want)) = (dim_of(version), names_of(version)) else {
            return Err(OnnxError::Observation {
                path: path.to_owned(),
                message: format!(
                    "model trained on observation v{version}, this build computes v1 to v{OBS_VERSION_LATEST}"
                ),
            });
        };
        let n = get(META_OBS_NAMES)?;
        let obs_names: Vec<String> = serde_json::from_str(&n).map_err(|e| {
            bad(
                META_OBS_NAMES,
                &n,
                format!("not a JSON array of strings: {e}"),
            )
        })?;
        if obs_names != want {
            return Err(OnnxError::Observation {
                path: path.to_owned(),
                message: format!("feature names {obs_names:?} differ from {want:?}"),
            });
        }
        let nm = get(META_NORMALISATION)?;
        let normalisation =
            parse_normalisation(&nm, obs_dim).map_err(|m| bad(META_NORMALISATION, &nm, m))?;
        let am = get(META_ACTION_MEANINGS)?;
        let meanings: Vec<String> = serde_json::from_str(&am).map_err(|e| {
            bad(
                META_ACTION_MEANINGS,
                &am,
                format!("not a JSON array of strings: {e}"),
            )
        })?;
        let actions = ActionSpace::from_meanings(&meanings)
            .map_err(|e| bad(META_ACTION_MEANINGS, &am, e.to_string()))?;
        let input = get(META_INPUT_NAME)?;
        let output = get(META_OUTPUT_NAME)?;
        let shape_meta = |key: &'static str| -> Result<Vec<i64>, OnnxError> {
            let s = get(key)?;
            serde_json::from_str(&s)
                .map_err(|e| bad(key, &s, format!("not a JSON array of integers: {e}")))
        };
        let input_shape_meta = shape_meta(META_INPUT_SHAPE)?;
        let output_shape_meta = shape_meta(META_OUTPUT_SHAPE)?;
        drop(meta);

        let graph_in = session
            .inputs()
            .iter()
            .find(|o| o.name() == input)
            .ok_or_else(|| OnnxError::GraphMismatch {
                path: path.to_owned(),
                message: format!(
                    "input {input:?} named in metadata is not a graph input (graph inputs: {:?})",
                    session
                        .inputs()
                        .iter()
                        .map(|o| o.name().to_owned())
                        .collect::<Vec<_>>()
                ),
            })?;
        let in_shape = tensor_shape(graph_in.dtype()).unwrap_or_default();
        if in_shape.len() != 2 || in_shape[1] != obs_dim as i64 {
            return Err(OnnxError::InputShape {
                path: path.to_owned(),
                name: input,
                found: in_shape,
                expected: obs_dim,
            });
        }
        let graph_out = session.outputs().iter().find(|o| o.name() == output).ok_or_else(|| OnnxError::GraphMismatch {
            path: path.to_owned(),
            message: format!(
                "output {output:?} named in metadata is not a graph output (graph outputs: {:?})",
                session.outputs().iter().map(|o| o.name().to_owned()).collect::<Vec<_>>()
            ),
        })?;
        let out_shape = tensor_shape(graph_out.dtype()).unwrap_or_default();
        if out_shape.len() != 2 || out_shape[1] != actions.len() as i64 {
            return Err(OnnxError::OutputShape {
                path: path.to_owned(),
                name: output,
                found: out_shape,
                expected: actions.len(),
            });
        }
        if !dims_agree(&input_shape_meta, &in_shape) || !dims_agree(&output_shape_meta, &out_shape)
        {
            return Err(OnnxError::GraphMismatch {
                path: path.to_owned(),
                message: format!(
                    "metadata shapes in {input_shape_meta:?} / out {output_shape_meta:?}, graph in {in_shape:?} / out {out_shape:?}"
                ),
            });
        }
        Ok(OnnxModel {
            path: path.to_owned(),
            session,
            input,
            output,
            normalisation,
            actions,
            obs_version: version,
            buf: vec![0.0; obs_dim],
        })
    }

    /// The observation layout version the model takes (build its
    /// observations with `farm_model::observation::Observer::new(version)`).
    pub fn obs_version(&self) -> u32 {
        self.obs_version
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's action space.
    pub fn actions(&self) -> &ActionSpace {
        &self.actions
    }

    /// Runs the model on one observation; returns the greedy action and the
    /// raw outputs. Blocking: call it off the async reactor.
    pub fn infer(&mut self, obs: &[f32]) -> Result<Inference, OnnxError> {
        let dim = self.buf.len();
        if obs.len() != dim {
            return Err(OnnxError::ObservationLength {
                found: obs.len(),
                expected: dim,
                version: self.obs_version,
            });
        }
        self.normalisation.apply(obs, &mut self.buf);
        let tensor = TensorRef::from_array_view(([1usize, dim], &self.buf[..]))
            .map_err(|e| OnnxError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| OnnxError::Inference(e.to_string()))?;
        let value = outputs
            .get(&self.output)
            .ok_or_else(|| OnnxError::Inference(format!("output {:?} missing", self.output)))?;
        let (_, row) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| OnnxError::Inference(e.to_string()))?;
        if row.len() != self.actions.len() {
            return Err(OnnxError::Inference(format!(
                "output has {} values, expected {}",
                row.len(),
                self.actions.len()
            )));
        }
        if row.iter().any(|x| !x.is_finite()) {
            return Err(OnnxError::Inference(format!("non-finite output {row:?}")));
        }
        let action = argmax(row);
        Ok(Inference {
            action,
            outputs: row.to_vec(),
        })
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best
}

fn parse_normalisation(text: &str, obs_dim: usize) -> Result<Normalisation, String> {
    #[derive(serde::Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
    enum Raw {
        None,
        Standard {
            mean: Vec<f32>,
            std: Vec<f32>,
            #[serde(default)]
            clip: Option<f32>,
        },
    }
    let raw: Raw = serde_json::from_str(text).map_err(|e| format!("expected {{\"kind\":\"none\"}} or {{\"kind\":\"standard\",\"mean\":[..],\"std\":[..]}}: {e}"))?;
    match raw {
        Raw::None => Ok(Normalisation::None),
        Raw::Standard { mean, std, clip } => {
            if mean.len() != obs_dim || std.len() != obs_dim {
                return Err(format!(
                    "mean has {} and std {} values, expected {obs_dim} each",
                    mean.len(),
                    std.len()
                ));
            }
            if std.iter().any(|s| !(s.is_finite() && *s > 0.0))
                || mean.iter().any(|m| !m.is_finite())
            {
                return Err("every std must be finite and > 0 and every mean finite".into());
            }
            let clip = clip.unwrap_or(f32::MAX);
            if clip.is_nan() || clip <= 0.0 {
                return Err("clip must be > 0".into());
            }
            Ok(Normalisation::Standard { mean, std, clip })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_model::observation::OBS_DIM;

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.9, 0.9, -1.0]), 1);
        assert_eq!(argmax(&[3.0]), 0);
    }

    #[test]
    fn normalisation_parses_and_applies() {
        assert_eq!(
            parse_normalisation(r#"{"kind":"none"}"#, OBS_DIM).unwrap(),
            Normalisation::None
        );
        let mean = vec![1.0; OBS_DIM];
        let std = vec![2.0; OBS_DIM];
        let text =
            serde_json::json!({"kind":"standard","mean":mean,"std":std,"clip":0.4}).to_string();
        let n = parse_normalisation(&text, OBS_DIM).unwrap();
        let mut out = [0.0; OBS_DIM];
        let mut obs = [3.0; OBS_DIM];
        obs[1] = 1.5;
        n.apply(&obs, &mut out);
        assert_eq!(out[0], 0.4, "clipped");
        assert_eq!(out[1], 0.25);
        assert!(
            parse_normalisation(r#"{"kind":"standard","mean":[1],"std":[1]}"#, OBS_DIM).is_err()
        );
        assert!(parse_normalisation(r#"{"kind":"minmax"}"#, OBS_DIM).is_err());
    }

    #[test]
    fn runtime_missing_is_a_clear_error() {
        // No unit test of this crate loads ONNX Runtime, so this is the first
        // (and only) initialisation in the process.
        assert_eq!(
            init_runtime(None).unwrap_err(),
            OnnxError::RuntimeNotConfigured
        );
        let e = OnnxModel::load(None, Path::new("x.onnx")).unwrap_err();
        assert_eq!(e, OnnxError::RuntimeNotConfigured);
    }
}
