//! A scenario by name or file, as every subcommand takes it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use farm_model::scenario::Scenario;

/// A scenario file (YAML) if `spec` names one, else a built-in scenario.
pub fn load_scenario(spec: &str) -> Result<Scenario> {
    let path = Path::new(spec);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario file {spec}"))?;
        Scenario::from_yaml(&text).with_context(|| format!("scenario file {spec}"))
    } else {
        Scenario::builtin(spec)
            .with_context(|| format!("`{spec}` is neither a file nor a built-in scenario"))
    }
}

/// Checks a `--speedup` (time compression of a live run): finite and > 0.
pub fn check_speedup(k: f64) -> Result<()> {
    if !(k.is_finite() && k > 0.0) {
        bail!("--speedup must be a positive number, got {k}");
    }
    Ok(())
}
