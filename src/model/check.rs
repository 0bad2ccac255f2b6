//! The range checks a spec's numbers go through, shared by [`spec`](super::spec) and the
//! optimizer rules; each error names the wire field.
use crate::engine::error::{EngineError, Result};

/// A learning rate, ε, a margin or a scale: finite and > 0.
pub(crate) fn positive(field: &str, v: f64) -> Result<()> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(EngineError::spec(
            field,
            format!("must be finite and > 0, got {v}"),
        ))
    }
}

/// A decay rate, a momentum or a β: in [0, 1).
pub(crate) fn unit(field: &str, v: f64) -> Result<()> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(EngineError::spec(
            field,
            format!("must be in [0, 1), got {v}"),
        ))
    }
}

/// A weight decay: finite and ≥ 0 (0 turns it off).
pub(crate) fn non_negative(field: &str, v: f64) -> Result<()> {
    if v >= 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(EngineError::spec(
            field,
            format!("must be finite and ≥ 0, got {v}"),
        ))
    }
}
