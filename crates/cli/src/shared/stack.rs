//! `stack.yml`: the faas-cli stack file, read the way faas-cli reads it
//! (`version`, `provider`, `functions`, `configuration.templates`), plus
//! what farmctl needs on top: which functions form a farm, and how each
//! function is built locally.
//!
//! Unknown keys are ignored, as faas-cli ignores them. Environment values may
//! be YAML scalars of any type (`FARM_CONCURRENCY: 1`) and are kept as text.
//!
//! A farm is found from the functions' metadata:
//! - the worker carries the annotation `com.rust-farm.farm: <farm>` (the
//!   declaration gateway-ext discovers);
//! - the emitter and the collector carry the label
//!   `com.rust-farm.role: emitter|collector` and `FARM_NAME=<farm>` in their
//!   environment. They may carry `com.rust-farm.farm: <farm>` too (the root
//!   stack.yml does, so that gateway-ext routes the CE alert on the emitter
//!   to the farm's policy): the role label wins, and a companion never
//!   declares a farm.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use farm_local::FunctionDeployment;
use farm_runtime::config::{SHED_EXPIRED, parse_bool};
use serde::Deserialize;

/// Annotation of the worker function that declares a farm (gateway-ext's).
pub const FARM_ANNOTATION: &str = "com.rust-farm.farm";
/// Label naming a function's role in its farm.
pub const ROLE_LABEL: &str = "com.rust-farm.role";
/// OpenFaaS label of the minimum replica count.
pub const LABEL_SCALE_MIN: &str = "com.openfaas.scale.min";
/// OpenFaaS label of the maximum replica count.
pub const LABEL_SCALE_MAX: &str = "com.openfaas.scale.max";

/// Why a stack file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not YAML of the stack shape.
    #[error("{path}: not a valid stack file: {message}")]
    Parse {
        /// The file (or `<text>`).
        path: String,
        /// The YAML error.
        message: String,
    },
    /// A field holds a value farmctl (or faas-cli) cannot use.
    #[error("{field}: {message}")]
    Invalid {
        /// Dotted path of the field, e.g. `functions.w.image`.
        field: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// No farm (or not the asked one) is declared.
    #[error("{0}")]
    Farm(String),
}

/// `provider:` of a stack file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ProviderSpec {
    /// `openfaas`.
    #[serde(default)]
    pub name: String,
    /// The gateway URL faas-cli talks to.
    #[serde(default)]
    pub gateway: String,
}

/// One `configuration.templates` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TemplateSource {
    /// Template name.
    #[serde(default)]
    pub name: String,
    /// Where faas-cli fetches it from (a URL or a local folder).
    #[serde(default)]
    pub source: String,
}

/// `configuration:` of a stack file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Configuration {
    /// Templates `faas-cli template pull stack` fetches.
    #[serde(default)]
    pub templates: Vec<TemplateSource>,
}

/// `limits:` / `requests:` of a function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Resources {
    /// Memory, e.g. `128Mi`.
    #[serde(default)]
    pub memory: Option<String>,
    /// CPU, e.g. `100m`.
    #[serde(default)]
    pub cpu: Option<String>,
}

/// One function of a stack file (the faas-cli fields farmctl uses).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FunctionSpec {
    /// Template language (`rust-farm`, `dockerfile`, ...).
    #[serde(default)]
    pub lang: String,
    /// Handler folder, relative to the stack file.
    #[serde(default)]
    pub handler: String,
    /// Image name; names the binary in the local image store.
    #[serde(default)]
    pub image: String,
    /// Process to run (`fprocess`), empty for the image's entrypoint.
    #[serde(default)]
    pub fprocess: Option<String>,
    /// Environment; scalar values of any YAML type.
    #[serde(default)]
    pub environment: BTreeMap<String, serde_yaml::Value>,
    /// YAML files with an `environment:` map, relative to the stack file.
    #[serde(default)]
    pub environment_file: Vec<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, serde_yaml::Value>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, serde_yaml::Value>,
    /// Secret names.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Option<Resources>,
    /// Resource requests.
    #[serde(default)]
    pub requests: Option<Resources>,
    /// Build arguments (Docker); unused locally.
    #[serde(default)]
    pub build_args: BTreeMap<String, serde_yaml::Value>,
    /// faas-cli deploys the image without building it.
    #[serde(default)]
    pub skip_build: bool,
}

#[derive(Debug, Deserialize)]
struct RawStack {
    version: Option<serde_yaml::Value>,
    #[serde(default)]
    provider: ProviderSpec,
    #[serde(default)]
    functions: BTreeMap<String, FunctionSpec>,
    #[serde(default)]
    configuration: Configuration,
}

/// A parsed and validated stack file.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The folder of the stack file; relative paths resolve against it.
    pub dir: PathBuf,
    /// `version` (faas-cli accepts 1.0).
    pub version: String,
    /// `provider`.
    pub provider: ProviderSpec,
    /// Functions by name.
    pub functions: BTreeMap<String, FunctionSpec>,
    /// `configuration`.
    pub configuration: Configuration,
}

/// A function's role in a farm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts tasks over HTTP.
    Emitter,
    /// Pulls tasks from the work queue.
    Worker,
    /// Writes the output and publishes metrics.
    Collector,
}

/// The functions forming one farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Farm {
    /// Farm name (`FARM_NAME`).
    pub name: String,
    /// The emitter function.
    pub emitter: String,
    /// The worker function (the one gateway-ext manages).
    pub worker: String,
    /// The collector function.
    pub collector: String,
}

/// How farmctl builds a function locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildPlan {
    /// A `lang: dockerfile` function: its handler folder is the Docker
    /// context of an image built elsewhere (`skip_build`); locally it is the
    /// package of the surrounding cargo workspace that image holds:
    /// `cargo build -p <package>`, binary `<package>`.
    Workspace {
        /// The workspace root (where cargo runs).
        workspace: PathBuf,
        /// The package (and binary) name.
        package: String,
    },
    /// A function on a template language (`lang: rust-farm`): the handler is
    /// assembled with the template like `faas-cli build --shrinkwrap` does
    /// and built there ([`farm_local::build_function`]).
    Template {
        /// The handler folder.
        handler: PathBuf,
        /// The template folder (`<templates>/<lang>`).
        template: PathBuf,
        /// The cargo target directory to share, when the handler lies in a
        /// cargo workspace: `<workspace>/target/template-build`, where the
        /// repository's own build-context tests compile the template's
        /// dependencies too, so they compile once; the build context itself
        /// is kept there, content-addressed (`contexts/<name>-<hash>`), so
        /// rebuilding an unchanged function (every `farmctl up`) compiles
        /// nothing. `None`: the caller's choice.
        target_dir: Option<PathBuf>,
    },
}

/// `lang` of functions whose handler folder is a Docker context, not a
/// template handler (faas-cli's built-in).
pub const LANG_DOCKERFILE: &str = "dockerfile";

/// Target directory, under a workspace's `target/`, shared by every
/// template build of that workspace (see [`BuildPlan::Template`]).
pub const TEMPLATE_TARGET_DIR: &str = "target/template-build";

fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Null => Some(String::new()),
        _ => None,
    }
}

fn text_map(
    field: &str,
    m: &BTreeMap<String, serde_yaml::Value>,
) -> Result<BTreeMap<String, String>, StackError> {
    m.iter()
        .map(|(k, v)| {
            scalar_text(v)
                .map(|t| (k.clone(), t))
                .ok_or_else(|| StackError::Invalid {
                    field: format!("{field}.{k}"),
                    message: "expected a scalar (text, number or boolean)".into(),
                })
        })
        .collect()
}

impl Stack {
    /// Reads and validates a stack file.
    pub fn load(path: &Path) -> Result<Stack, StackError> {
        let text = std::fs::read_to_string(path).map_err(|source| StackError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self::parse(&text, &dir).map_err(|e| match e {
            StackError::Parse { message, .. } => StackError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses stack-file text whose relative paths resolve against `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Stack, StackError> {
        let raw: RawStack = serde_yaml::from_str(text).map_err(|e| StackError::Parse {
            path: "<text>".into(),
            message: e.to_string(),
        })?;
        let version = raw
            .version
            .as_ref()
            .and_then(scalar_text)
            .unwrap_or_default();
        if version.is_empty() {
            return Err(StackError::Invalid {
                field: "version".into(),
                message: "missing; expected 1.0".into(),
            });
        }
        if !version.starts_with('1') {
            return Err(StackError::Invalid {
                field: "version".into(),
                message: format!("{version} is not supported; expected 1.0"),
            });
        }
        if raw.functions.is_empty() {
            return Err(StackError::Invalid {
                field: "functions".into(),
                message: "no function is declared".into(),
            });
        }
        for (name, f) in &raw.functions {
            let field = |k: &str| format!("functions.{name}.{k}");
            if !farm_local::valid_name(name) {
                return Err(StackError::Invalid {
                    field: format!("functions.{name}"),
                    message: "a function name must match [-a-zA-Z_0-9.]+ and not start with '.'"
                        .into(),
                });
            }
            if f.image.trim().is_empty() {
                return Err(StackError::Invalid {
                    field: field("image"),
                    message: "missing; every function needs an image".into(),
                });
            }
            if f.lang.trim().is_empty() {
                return Err(StackError::Invalid {
                    field: field("lang"),
                    message: "missing (e.g. rust-farm)".into(),
                });
            }
            if f.handler.trim().is_empty() {
                return Err(StackError::Invalid {
                    field: field("handler"),
                    message: "missing (a folder, e.g. ./worker)".into(),
                });
            }
            text_map(&field("environment"), &f.environment)?;
            text_map(&field("labels"), &f.labels)?;
            text_map(&field("annotations"), &f.annotations)?;
            for key in [LABEL_SCALE_MIN, LABEL_SCALE_MAX] {
                if let Some(v) = f.labels.get(key).and_then(scalar_text)
                    && v.trim().parse::<u32>().is_err()
                {
                    return Err(StackError::Invalid {
                        field: format!("{}.{key}", field("labels")),
                        message: format!("{v:?} is not a replica count"),
                    });
                }
            }
        }
        Ok(Stack {
            dir: dir.to_path_buf(),
            version,
            provider: raw.provider,
            functions: raw.functions,
            configuration: raw.configuration,
        })
    }

    /// The function `name`.
    pub fn function(&self, name: &str) -> Result<&FunctionSpec, StackError> {
        self.functions
            .get(name)
            .ok_or_else(|| StackError::Farm(format!("no function {name} in the stack file")))
    }

    /// The environment of `name`: its `environment_file`s, then its
    /// `environment` (which wins), as faas-cli merges them.
    pub fn environment(&self, name: &str) -> Result<BTreeMap<String, String>, StackError> {
        let f = self.function(name)?;
        let mut env = BTreeMap::new();
        for file in &f.environment_file {
            let path = self.dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|source| StackError::Read {
                path: path.clone(),
                source,
            })?;
            #[derive(Deserialize)]
            struct EnvFile {
                #[serde(default)]
                environment: BTreeMap<String, serde_yaml::Value>,
            }
            let ef: EnvFile = serde_yaml::from_str(&text).map_err(|e| StackError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            env.extend(text_map(
                &format!("{}.environment", path.display()),
                &ef.environment,
            )?);
        }
        env.extend(text_map(
            &format!("functions.{name}.environment"),
            &f.environment,
        )?);
        Ok(env)
    }

    /// Whether the worker `name` sheds tasks already past their deadline
    /// unrun (`FARM_SHED_EXPIRED` in its environment, read as the runtime
    /// reads it), so a simulated twin of the farm can do the same.
    pub fn sheds_expired(&self, name: &str) -> Result<bool, StackError> {
        let Some(raw) = self.environment(name)?.remove(SHED_EXPIRED) else {
            return Ok(false);
        };
        parse_bool(&raw).ok_or_else(|| StackError::Invalid {
            field: format!("functions.{name}.environment.{SHED_EXPIRED}"),
            message: format!("{raw:?} is not a boolean (true or false)"),
        })
    }

    /// The role of `name` in its farm, if it has one.
    ///
    /// The `com.rust-farm.role` label decides; without one, a function
    /// annotated `com.rust-farm.farm` is a worker.
    pub fn role(&self, name: &str) -> Option<Role> {
        let f = self.functions.get(name)?;
        match f
            .labels
            .get(ROLE_LABEL)
            .and_then(scalar_text)
            .as_deref()
            .map(str::trim)
        {
            Some("emitter") => Some(Role::Emitter),
            Some("collector") => Some(Role::Collector),
            Some("worker") => Some(Role::Worker),
            _ if f.annotations.contains_key(FARM_ANNOTATION) => Some(Role::Worker),
            _ => None,
        }
    }

    /// Every farm declared by the stack, by name.
    pub fn farms(&self) -> Result<BTreeMap<String, Farm>, StackError> {
        let mut farms = BTreeMap::new();
        for (name, f) in &self.functions {
            // Companions name their farm for gateway-ext's alert routing;
            // only a worker declares one.
            if self.role(name) != Some(Role::Worker) {
                continue;
            }
            let Some(farm) = f.annotations.get(FARM_ANNOTATION).and_then(scalar_text) else {
                continue;
            };
            let find = |role: Role| -> Result<String, StackError> {
                let found: Vec<&String> = self
                    .functions
                    .keys()
                    .filter(|n| self.role(n) == Some(role))
                    .filter(|n| {
                        self.environment(n)
                            .is_ok_and(|e| e.get("FARM_NAME") == Some(&farm))
                    })
                    .collect();
                match found.as_slice() {
                    [one] => Ok((*one).clone()),
                    [] => Err(StackError::Farm(format!(
                        "farm {farm}: no function with label {ROLE_LABEL}: {role:?} and FARM_NAME={farm}",
                        role = format!("{role:?}").to_lowercase()
                    ))),
                    many => Err(StackError::Farm(format!(
                        "farm {farm}: several {role:?} functions: {many:?}"
                    ))),
                }
            };
            let env = self.environment(name)?;
            if env.get("FARM_NAME") != Some(&farm) {
                return Err(StackError::Invalid {
                    field: format!("functions.{name}.environment.FARM_NAME"),
                    message: format!("must equal the {FARM_ANNOTATION} annotation ({farm})"),
                });
            }
            let entry = Farm {
                name: farm.clone(),
                emitter: find(Role::Emitter)?,
                worker: name.clone(),
                collector: find(Role::Collector)?,
            };
            if farms.insert(farm.clone(), entry).is_some() {
                return Err(StackError::Farm(format!(
                    "farm {farm} is declared by two workers"
                )));
            }
        }
        Ok(farms)
    }

    /// The farm called `name`, or the only farm when `name` is `None`.
    pub fn farm(&self, name: Option<&str>) -> Result<Farm, StackError> {
        let farms = self.farms()?;
        match name {
            Some(n) => farms.get(n).cloned().ok_or_else(|| {
                StackError::Farm(format!(
                    "no farm {n} in the stack file (farms: {:?})",
                    farms.keys().collect::<Vec<_>>()
                ))
            }),
            None => {
                let mut it = farms.into_values();
                match (it.next(), it.next()) {
                    (Some(f), None) => Ok(f),
                    (None, _) => Err(StackError::Farm(format!(
                        "the stack file declares no farm (a worker with the annotation {FARM_ANNOTATION})"
                    ))),
                    (Some(_), Some(_)) => Err(StackError::Farm(
                        "the stack file declares several farms; pick one with --farm".into(),
                    )),
                }
            }
        }
    }

    /// Where templates live: the local `source` of the `configuration.templates`
    /// entry named `lang` (a folder holding `<lang>/` or the template itself),
    /// else `<stack dir>/template`, as faas-cli lays them out.
    pub fn template_dir(&self, lang: &str) -> PathBuf {
        for t in &self.configuration.templates {
            if t.name == lang && !t.source.contains("://") && !t.source.is_empty() {
                let base = self.dir.join(&t.source);
                let nested = base.join(lang);
                return if nested.is_dir() { nested } else { base };
            }
        }
        self.dir.join("template").join(lang)
    }

    /// How farmctl builds `name`, following its `lang` as faas-cli does: a
    /// `lang: dockerfile` function is the cargo workspace package in its
    /// handler folder; any other language is a template, and the handler is
    /// built through it exactly as `faas-cli build --shrinkwrap` assembles it.
    pub fn build_plan(&self, name: &str) -> Result<BuildPlan, StackError> {
        let f = self.function(name)?;
        let handler = self.dir.join(&f.handler);
        let manifest = handler.join("Cargo.toml");
        if f.lang.trim() == LANG_DOCKERFILE {
            let text = std::fs::read_to_string(&manifest).map_err(|source| StackError::Read {
                path: manifest.clone(),
                source,
            })?;
            let package = package_name(&text).ok_or_else(|| StackError::Invalid {
                field: format!("functions.{name}.handler"),
                message: format!("{} has no [package] name", manifest.display()),
            })?;
            let workspace = find_workspace(&handler).ok_or_else(|| StackError::Invalid {
                field: format!("functions.{name}.handler"),
                message: format!(
                    "{} is built as a workspace package (lang: {LANG_DOCKERFILE}), but no enclosing workspace Cargo.toml was found",
                    manifest.display()
                ),
            })?;
            return Ok(BuildPlan::Workspace { workspace, package });
        }
        let template = self.template_dir(&f.lang);
        if !template.join("template.yml").is_file() {
            return Err(StackError::Invalid {
                field: format!("functions.{name}.lang"),
                message: format!(
                    "no template {} at {} (run faas-cli template pull stack?)",
                    f.lang,
                    template.display()
                ),
            });
        }
        let text = std::fs::read_to_string(&manifest).map_err(|source| StackError::Read {
            path: manifest.clone(),
            source,
        })?;
        // The template's main names the handler package it links: a handler
        // named otherwise fails deep inside cargo; say so here instead.
        if let Some(want) = function_dependency(&template)
            && package_name(&text).as_deref() != Some(want.as_str())
        {
            return Err(StackError::Invalid {
                field: format!("functions.{name}.handler"),
                message: format!(
                    "{} must be a package named {want:?}: the {} template's main depends on `{want} = {{ path = \"../function\" }}` (as `faas-cli new --lang {}` creates it)",
                    manifest.display(),
                    f.lang,
                    f.lang
                ),
            });
        }
        let target_dir = find_workspace(&handler).map(|w| w.join(TEMPLATE_TARGET_DIR));
        Ok(BuildPlan::Template {
            handler,
            template,
            target_dir,
        })
    }

    /// The deployment farmctl sends to the provider for `name`, with `extra`
    /// environment (e.g. the local NATS_URL) overriding the stack's.
    pub fn deployment(
        &self,
        name: &str,
        extra: &BTreeMap<String, String>,
    ) -> Result<FunctionDeployment, StackError> {
        let f = self.function(name)?;
        let mut env = self.environment(name)?;
        env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        let res = |r: &Option<Resources>| {
            r.as_ref().map(|r| farm_local::FunctionResources {
                memory: r.memory.clone().unwrap_or_default(),
                cpu: r.cpu.clone().unwrap_or_default(),
            })
        };
        Ok(FunctionDeployment {
            service: name.to_string(),
            image: f.image.clone(),
            env_process: f.fprocess.clone().unwrap_or_default(),
            env_vars: env.into_iter().collect(),
            labels: text_map("labels", &f.labels)?.into_iter().collect(),
            annotations: text_map("annotations", &f.annotations)?
                .into_iter()
                .collect(),
            secrets: f.secrets.clone(),
            limits: res(&f.limits),
            requests: res(&f.requests),
            ..Default::default()
        })
    }

    /// `com.openfaas.scale.min` / `.max` of `name` (defaults 1 and 20, as OpenFaaS).
    pub fn scale_bounds(&self, name: &str) -> (u32, u32) {
        let get = |k: &str| {
            self.functions
                .get(name)
                .and_then(|f| f.labels.get(k))
                .and_then(scalar_text)
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        (
            get(LABEL_SCALE_MIN).unwrap_or(1),
            get(LABEL_SCALE_MAX).unwrap_or(20),
        )
    }
}

/// `[package] name` of a Cargo manifest (a line scan: enough for the
/// `name = "..."` form cargo itself writes).
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_package = l == "[package]";
            continue;
        }
        if in_package && let Some(rest) = l.strip_prefix("name") {
            let v = rest
                .trim_start()
                .strip_prefix('=')?
                .trim()
                .trim_matches('"');
            return Some(v.to_string());
        }
    }
    None
}

/// The package a template's `main/Cargo.toml` expects in the handler folder:
/// the dependency whose `path` is `../function` (a line scan of the
/// `name = { path = "../function" }` form), if the template has such a main.
fn function_dependency(template: &Path) -> Option<String> {
    let text = std::fs::read_to_string(template.join("main").join("Cargo.toml")).ok()?;
    text.lines().find_map(|line| {
        let (name, spec) = line.split_once('=')?;
        let spec: String = spec.chars().filter(|c| !c.is_whitespace()).collect();
        spec.contains("path=\"../function\"")
            .then(|| name.trim().to_string())
    })
}

/// The nearest folder above `from` whose Cargo.toml has a `[workspace]`.
fn find_workspace(from: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(from).ok()?;
    abs.ancestors()
        .skip(1)
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_root_stack_file_is_a_working_farm() {
        let stack = Stack::load(&root().join("stack.yml")).unwrap();
        assert_eq!(stack.version, "1.0");
        assert_eq!(stack.provider.name, "openfaas");
        let farm = stack.farm(None).unwrap();
        assert_eq!(
            farm,
            Farm {
                name: "demo".into(),
                emitter: "demo-emitter".into(),
                worker: "demo-worker".into(),
                collector: "demo-collector".into()
            }
        );
        assert_eq!(stack.function("demo-worker").unwrap().lang, "rust-farm");
        assert_eq!(stack.scale_bounds("demo-worker"), (1, 32));
        // The emitter and the collector (lang: dockerfile, prebuilt images)
        // build as workspace packages; the worker through its template.
        for (name, package) in [("demo-emitter", "emitter"), ("demo-collector", "collector")] {
            match stack.build_plan(name).unwrap() {
                BuildPlan::Workspace {
                    package: p,
                    workspace,
                } => {
                    assert_eq!(p, package);
                    assert!(workspace.join("Cargo.toml").is_file());
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        match stack.build_plan("demo-worker").unwrap() {
            BuildPlan::Template {
                handler,
                template,
                target_dir,
            } => {
                assert!(handler.ends_with("functions/sleep"), "{handler:?}");
                assert!(template.ends_with("template/rust-farm"), "{template:?}");
                let target_dir = target_dir.expect("the handler lies in this workspace");
                assert!(target_dir.ends_with(TEMPLATE_TARGET_DIR), "{target_dir:?}");
            }
            other => panic!("demo-worker: {other:?}"),
        }
        // The template the worker's lang names exists where configuration.templates says.
        assert!(
            stack
                .template_dir("rust-farm")
                .join("template.yml")
                .is_file()
        );
        // faas-cli 0.18 looks up every function's lang under template/ before
        // it builds a stack (skip_build ones too) and pulls what is missing
        // from the store: with each one shipped, `faas-cli build -f
        // stack.yml` runs offline.
        for (name, f) in &stack.functions {
            let t = stack
                .dir
                .join("template")
                .join(&f.lang)
                .join("template.yml");
            let text = std::fs::read_to_string(&t)
                .unwrap_or_else(|e| panic!("{name}: lang {} needs {}: {e}", f.lang, t.display()));
            assert!(
                text.lines()
                    .any(|l| l.trim() == format!("language: {}", f.lang)),
                "{}",
                t.display()
            );
        }
        // Numbers in the environment arrive as text; farmctl's values override.
        let extra = BTreeMap::from([("NATS_URL".to_string(), "nats://127.0.0.1:1".to_string())]);
        let d = stack.deployment("demo-worker", &extra).unwrap();
        assert_eq!(
            d.env_vars.get("FARM_CONCURRENCY").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            d.env_vars.get("NATS_URL").map(String::as_str),
            Some("nats://127.0.0.1:1")
        );
        let ann = d.annotations;
        assert_eq!(ann.get(FARM_ANNOTATION).map(String::as_str), Some("demo"));
        // The companions name the farm too, and keep their roles.
        for (name, role) in [
            ("demo-emitter", Role::Emitter),
            ("demo-collector", Role::Collector),
        ] {
            assert_eq!(stack.role(name), Some(role), "{name}");
            let d = stack.deployment(name, &extra).unwrap();
            assert_eq!(
                d.annotations.get(FARM_ANNOTATION).map(String::as_str),
                Some("demo"),
                "{name}"
            );
        }
        // That the worker's annotations are a farm gateway-ext accepts is
        // gateway-ext's own check (gateway-ext/tests/deploy.rs).
    }

    #[test]
    fn template_handlers_go_through_the_template() {
        let dir = tempfile::tempdir().unwrap();
        let handler = dir.path().join("w");
        std::fs::create_dir_all(&handler).unwrap();
        std::fs::write(
            handler.join("Cargo.toml"),
            "[package]\nname = \"handler\"\n",
        )
        .unwrap();
        let text = format!(
            "version: 1.0\nfunctions:\n  w:\n    lang: rust-farm\n    handler: ./w\n    image: w:1\nconfiguration:\n  templates:\n    - name: rust-farm\n      source: {}\n",
            root().join("template").display()
        );
        let stack = Stack::parse(&text, dir.path()).unwrap();
        match stack.build_plan("w").unwrap() {
            BuildPlan::Template { template, .. } => {
                assert!(template.ends_with("template/rust-farm"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_template_handler_must_be_the_package_main_links() {
        let dir = tempfile::tempdir().unwrap();
        let handler = dir.path().join("w");
        std::fs::create_dir_all(&handler).unwrap();
        std::fs::write(
            handler.join("Cargo.toml"),
            "[package]\nname = \"sleep-worker\"\n",
        )
        .unwrap();
        let text = format!(
            "version: 1.0\nfunctions:\n  w:\n    lang: rust-farm\n    handler: ./w\n    image: w:1\n  d:\n    lang: dockerfile\n    handler: ./w\n    image: d:1\nconfiguration:\n  templates:\n    - name: rust-farm\n      source: {}\n",
            root().join("template").display()
        );
        let stack = Stack::parse(&text, dir.path()).unwrap();
        match stack.build_plan("w") {
            Err(StackError::Invalid { field, .. }) => assert_eq!(field, "functions.w.handler"),
            other => panic!("{other:?}"),
        }
        // The same folder as a dockerfile function needs an enclosing workspace.
        match stack.build_plan("d") {
            Err(StackError::Invalid { field, .. }) => assert_eq!(field, "functions.d.handler"),
            other => panic!("{other:?}"),
        }
        // A handler folder without Cargo.toml cannot be read.
        std::fs::remove_file(handler.join("Cargo.toml")).unwrap();
        assert!(matches!(
            stack.build_plan("w"),
            Err(StackError::Read { .. })
        ));
        assert_eq!(
            function_dependency(&root().join("template/rust-farm")).as_deref(),
            Some("handler")
        );
    }

    #[test]
    fn bad_stacks_name_the_field() {
        let dir = Path::new(".");
        let cases = [
            (
                "functions:\n  a: {lang: x, handler: ., image: i}\n",
                "version",
            ),
            (
                "version: 2.0\nfunctions:\n  a: {lang: x, handler: ., image: i}\n",
                "version",
            ),
            ("version: 1.0\nfunctions: {}\n", "functions"),
            (
                "version: 1.0\nfunctions:\n  a: {lang: x, handler: .}\n",
                "functions.a.image",
            ),
            (
                "version: 1.0\nfunctions:\n  a: {handler: ., image: i}\n",
                "functions.a.lang",
            ),
            (
                "version: 1.0\nfunctions:\n  a: {lang: x, handler: ., image: i, environment: {K: [1]}}\n",
                "functions.a.environment.K",
            ),
            (
                "version: 1.0\nfunctions:\n  a: {lang: x, handler: ., image: i, labels: {com.openfaas.scale.max: many}}\n",
                "functions.a.labels.com.openfaas.scale.max",
            ),
            (
                "version: 1.0\nfunctions:\n  .a: {lang: x, handler: ., image: i}\n",
                "functions..a",
            ),
        ];
        for (text, want) in cases {
            match Stack::parse(text, dir) {
                Err(StackError::Invalid { field, .. }) => assert_eq!(field, want, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            Stack::parse("version: [", dir),
            Err(StackError::Parse { .. })
        ));
    }

    /// The root stack.yml's worker, built the way `farmctl up` builds it
    /// (its build plan, then the faas-cli build-context assembly of
    /// [`farm_local::build_function`]: the template copied, functions/sleep
    /// copied in as `function/`, cargo on the context), then run against a
    /// real nats-server: it becomes healthy (NATS connected, the workers
    /// consumer bound), and it is the sleep handler that answers, over HTTP
    /// and from the work queue.
    ///
    /// The build shares `target/template-build` with the template's other
    /// build-context tests (see [`BuildPlan::Template`]), so only the
    /// context's own crates compile once those have run, and nothing once
    /// this context has been built.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_worker_builds_through_the_template_and_serves() {
        use std::time::Duration;

        use farm_runtime::names::FarmNames;
        use farm_runtime::proto::{Status, Task, TaskResult};
        use farm_testsupport::{ChildGuard, NatsServer, eventually};
        use prost::Message as _;

        const WAIT: Duration = Duration::from_secs(30);

        let stack = Stack::load(&root().join("stack.yml")).unwrap();
        let BuildPlan::Template {
            handler,
            template,
            target_dir,
        } = stack.build_plan("demo-worker").unwrap()
        else {
            panic!("demo-worker is a template function");
        };
        let tmp = tempfile::tempdir().unwrap();
        let spec = farm_local::BuildSpec {
            name: "demo-worker".into(),
            handler_dir: handler.clone(),
            template_dir: template,
            build_root: tmp.path().join("build"),
            target_dir,
            cargo_args: Vec::new(),
        };
        let built = tokio::task::spawn_blocking(move || farm_local::build_function(&spec))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            built.binary,
            tmp.path().join("build/demo-worker/demo-worker")
        );
        // The context's function/ is the stack's handler folder.
        assert_eq!(
            std::fs::read(built.context.join("function/src/lib.rs")).unwrap(),
            std::fs::read(handler.join("src/lib.rs")).unwrap()
        );

        let nats = NatsServer::start().unwrap();
        let port = farm_testsupport::free_port().unwrap();
        let extra = BTreeMap::from([("NATS_URL".to_string(), nats.url())]);
        let d = stack.deployment("demo-worker", &extra).unwrap();
        let mut cmd = std::process::Command::new(&built.binary);
        cmd.env_clear()
            .envs(&d.env_vars)
            .env("FARM_INSTANCE", "demo-worker-0")
            .env("FARM_HTTP_ADDR", "127.0.0.1")
            .env("FARM_HTTP_PORT", port.to_string());
        let mut worker = ChildGuard::spawn("demo-worker", cmd).unwrap();

        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let healthy = eventually(
            "demo-worker healthy",
            WAIT,
            Duration::from_millis(100),
            || async {
                let r = http.get(format!("{base}/_/health")).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        assert!(healthy.is_ok(), "{healthy:?}\n{}", worker.log_tail());

        // Over HTTP (of-watchdog's path): the sleep handler's reply, not the
        // template skeleton's.
        let r = http
            .post(format!("{base}/"))
            .header("content-type", "application/json")
            .body(r#"{"sleep_ms": 5, "output": "http"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", worker.log_tail());
        let reply: serde_json::Value = r.json().await.unwrap();
        assert_eq!(reply["output"], "http", "{reply}");
        assert!(reply["slept_ms"].as_u64().unwrap() >= 5, "{reply}");

        // From the farm's work queue to its results stream.
        let names = FarmNames::new("demo").unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client.clone());
        let task = Task {
            id: "t-1".into(),
            seq: 1,
            payload: br#"{"sleep_ms": 5, "output": "queue"}"#.to_vec().into(),
            content_type: "application/json".into(),
            ..Default::default()
        };
        js.publish(names.tasks_subject(), task.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
        let result = eventually(
            "the task's result",
            WAIT,
            Duration::from_millis(100),
            || async {
                let mut s = js.get_stream(names.results_stream()).await.ok()?;
                let last = s.info().await.ok()?.state.last_sequence;
                let m = s.get_raw_message(last).await.ok()?;
                TaskResult::decode(m.payload).ok()
            },
        )
        .await
        .unwrap();
        assert_eq!(result.task_id, "t-1");
        assert_eq!(result.status, Status::Ok as i32, "{}", result.error);
        let out: serde_json::Value = serde_json::from_slice(&result.output).unwrap();
        assert_eq!(out["output"], "queue", "{out}");
        client.flush().await.unwrap();

        // SIGTERM drains and exits 0, as under of-watchdog.
        worker.terminate().unwrap();
        let status = worker.wait_timeout(WAIT).unwrap();
        assert!(status.success(), "{status:?}\n{}", worker.log_tail());
    }

    #[test]
    fn companions_annotated_with_the_farm_stay_companions() {
        let text = "version: 1.0\nfunctions:\n  e:\n    lang: x\n    handler: .\n    image: i\n    environment: {FARM_NAME: f}\n    labels: {com.rust-farm.role: emitter}\n    annotations: {com.rust-farm.farm: f}\n  w:\n    lang: x\n    handler: .\n    image: i\n    environment: {FARM_NAME: f}\n    annotations: {com.rust-farm.farm: f}\n  c:\n    lang: x\n    handler: .\n    image: i\n    environment: {FARM_NAME: f}\n    labels: {com.rust-farm.role: collector}\n    annotations: {com.rust-farm.farm: f}\n";
        let stack = Stack::parse(text, Path::new(".")).unwrap();
        assert_eq!(stack.role("e"), Some(Role::Emitter));
        assert_eq!(stack.role("w"), Some(Role::Worker));
        let farms = stack.farms().unwrap();
        assert_eq!(farms.len(), 1, "{farms:?}");
        assert_eq!(
            farms["f"],
            Farm {
                name: "f".into(),
                emitter: "e".into(),
                worker: "w".into(),
                collector: "c".into()
            }
        );
    }

    #[test]
    fn farms_need_all_three_roles() {
        let text = "version: 1.0\nfunctions:\n  w:\n    lang: x\n    handler: .\n    image: i\n    environment: {FARM_NAME: f}\n    annotations: {com.rust-farm.farm: f}\n";
        let stack = Stack::parse(text, Path::new(".")).unwrap();
        assert!(matches!(stack.farm(None), Err(StackError::Farm(_))));
        let none = "version: 1.0\nfunctions:\n  w: {lang: x, handler: ., image: i}\n";
        assert!(matches!(
            Stack::parse(none, Path::new(".")).unwrap().farm(None),
            Err(StackError::Farm(_))
        ));
    }

    #[test]
    fn a_worker_sheds_expired_tasks_only_when_its_environment_says_so() {
        let stack = |env: &str| {
            let text = format!(
                "version: 1.0\nfunctions:\n  w:\n    lang: x\n    handler: .\n    image: i\n    environment: {{FARM_NAME: f{env}}}\n"
            );
            Stack::parse(&text, Path::new(".")).unwrap()
        };
        assert!(!stack("").sheds_expired("w").unwrap());
        assert!(
            stack(", FARM_SHED_EXPIRED: 'true'")
                .sheds_expired("w")
                .unwrap()
        );
        assert!(
            stack(", FARM_SHED_EXPIRED: ' On '")
                .sheds_expired("w")
                .unwrap()
        );
        assert!(
            !stack(", FARM_SHED_EXPIRED: '0'")
                .sheds_expired("w")
                .unwrap()
        );
        let e = stack(", FARM_SHED_EXPIRED: sometimes")
            .sheds_expired("w")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("functions.w.environment.FARM_SHED_EXPIRED") && e.contains("sometimes"),
            "{e}"
        );
        assert!(stack("").sheds_expired("nope").is_err());
    }
}
