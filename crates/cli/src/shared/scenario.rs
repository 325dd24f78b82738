//! A scenario by name or file, as every subcommand takes it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use farm_model::cadence::BacklogJump;
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

/// The scenario deciding every `interval` seconds instead of its
/// `control_interval_s` (`--interval`), its episode keeping its length in
/// seconds; `None` leaves it as it is.
pub fn with_interval(mut scenario: Scenario, interval: Option<f64>) -> Result<Scenario> {
    if let Some(dt) = interval {
        if !(dt.is_finite() && dt > 0.0) {
            bail!("--interval: expected a positive number of seconds, got {dt}");
        }
        scenario.platform.episode_steps =
            (scenario.platform.episode_s() / dt).round().max(1.0) as u32;
        scenario.platform.control_interval_s = dt;
    }
    Ok(scenario)
}

/// `--events`: the backlog-jump trigger of early decisions, or `None` for
/// `off` (clap's value type; parse with [`parse_events`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Events(pub Option<BacklogJump>);

/// Parses `--events`: `off`, `on` or `share=X,jump=N,gap=S`.
pub fn parse_events(text: &str) -> Result<Events, String> {
    BacklogJump::parse(text)
        .map(Events)
        .map_err(|e| e.to_string())
}

impl std::fmt::Display for Events {
    /// The setting as `--events` and gateway-ext's `events` key take it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(t) => write!(
                f,
                "share={},jump={},gap={}",
                t.deadline_share, t.min_jump, t.min_gap_s
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_they_parse() {
        for text in ["off", "on", "share=0.25,jump=6,gap=2"] {
            let e = parse_events(text).unwrap();
            assert_eq!(parse_events(&e.to_string()).unwrap(), e, "{text}");
        }
        assert!(
            parse_events("sometimes")
                .unwrap_err()
                .contains("expected on, off")
        );
    }

    #[test]
    fn an_interval_keeps_the_episode_length() {
        let s = Scenario::builtin("spike").unwrap();
        let len = s.platform.episode_s();
        let t = with_interval(s.clone(), Some(2.0)).unwrap();
        assert_eq!(t.platform.control_interval_s, 2.0);
        assert!((t.platform.episode_s() - len).abs() < 1e-9);
        assert_eq!(with_interval(s.clone(), None).unwrap(), s);
        assert!(with_interval(s, Some(0.0)).is_err());
    }
}
