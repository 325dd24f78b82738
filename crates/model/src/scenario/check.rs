//! Small field validators shared by the scenario types.

use super::ScenarioError;

/// `v` must be finite and >= 0.
pub(crate) fn finite_nonneg(field: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(ScenarioError::Invalid {
            field: field.into(),
            message: format!("must be a finite number >= 0, got {v}"),
        })
    }
}

/// `v` must be finite and > 0.
pub(crate) fn positive(field: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ScenarioError::Invalid {
            field: field.into(),
            message: format!("must be a finite number > 0, got {v}"),
        })
    }
}
