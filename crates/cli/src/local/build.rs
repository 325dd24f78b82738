//! Building the stack's functions: workspace packages with one `cargo
//! build`, template handlers through the template, each installed into the
//! image store.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use farm_local::ImageStore;

use crate::shared::stack::{BuildPlan, Stack};

/// Builds every function of `stack` and installs it into `images`.
pub(super) fn build_all(
    stack: &Stack,
    images: &ImageStore,
    state: &Path,
    profile: &str,
) -> Result<()> {
    let mut by_workspace: BTreeMap<PathBuf, Vec<(String, String)>> = BTreeMap::new();
    for name in stack.functions.keys() {
        match stack.build_plan(name)? {
            BuildPlan::Workspace { workspace, package } => {
                by_workspace
                    .entry(workspace)
                    .or_default()
                    .push((name.clone(), package));
            }
            BuildPlan::Template {
                handler,
                template,
                target_dir,
            } => {
                println!(
                    "building {name} (template {}, handler {})",
                    template.display(),
                    handler.display()
                );
                let built = farm_local::build_function(&farm_local::BuildSpec {
                    name: name.clone(),
                    handler_dir: handler,
                    template_dir: template,
                    build_root: state.join("build"),
                    target_dir: Some(target_dir.unwrap_or_else(|| state.join("build/target"))),
                    cargo_args: Vec::new(),
                })?;
                let image = &stack.function(name)?.image;
                images.install_as(image, &built.binary, &built.program)?;
            }
        }
    }
    for (workspace, funcs) in by_workspace {
        let packages: Vec<&str> = funcs.iter().map(|(_, p)| p.as_str()).collect();
        println!(
            "building {} in {} (cargo profile {profile})",
            packages.join(", "),
            workspace.display()
        );
        let exes = cargo_build(&workspace, &packages, profile)?;
        for (name, package) in &funcs {
            let exe = exes.get(package).ok_or_else(|| {
                anyhow!("cargo built no binary named {package} (function {name})")
            })?;
            // Under its own name too, as a Dockerfile copies it, so an
            // `fprocess` naming it runs it.
            match exe.file_name().and_then(|n| n.to_str()) {
                Some(program) => images.install_as(&stack.function(name)?.image, exe, program)?,
                None => images.install(&stack.function(name)?.image, exe)?,
            };
        }
    }
    Ok(())
}

/// `cargo build --profile P -p a -p b`; the executables built, by target name.
fn cargo_build(
    workspace: &Path,
    packages: &[&str],
    profile: &str,
) -> Result<BTreeMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--profile")
        .arg(profile)
        .arg("--message-format=json-render-diagnostics");
    for p in packages {
        cmd.arg("-p").arg(p);
        // Only the package's own binary: its examples and other bins are not functions.
        cmd.arg("--bin").arg(p);
    }
    cmd.current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("running cargo (is it on PATH?)")?;
    let mut exes = BTreeMap::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["reason"] == "compiler-artifact"
                && let (Some(name), Some(exe)) =
                    (v["target"]["name"].as_str(), v["executable"].as_str())
            {
                exes.insert(name.to_string(), PathBuf::from(exe));
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build of {} failed ({status})", packages.join(", "));
    }
    Ok(exes)
}
