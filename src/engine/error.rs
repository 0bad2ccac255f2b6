//! Typed engine errors. Every problem a caller's data can cause is one of these, never a
//! panic; each names the offending field so the service can put it in its status.
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum EngineError {
    /// A tensor's shape does not fit where it is used.
    #[error("{field}: expected shape {expected}, got {got}")]
    Shape {
        field: String,
        expected: String,
        got: String,
    },
    /// A label is outside `[0, classes)`.
    #[error("{field}[{index}]: label {label} is out of range [0, {classes})")]
    Label {
        field: String,
        index: usize,
        label: u64,
        classes: usize,
    },
    /// Labels count differs from the batch size.
    #[error("{field}: expected {expected} labels (one per row), got {got}")]
    LabelCount {
        field: String,
        expected: usize,
        got: usize,
    },
    /// A NaN or infinity in caller data.
    #[error("{field}: value at flat index {index} is not finite ({value})")]
    NonFinite {
        field: String,
        index: usize,
        value: f64,
    },
    /// A batch with no rows.
    #[error("{field}: the batch is empty (N = 0)")]
    EmptyBatch { field: String },
    /// A model spec value that is missing, out of range or inconsistent.
    #[error("{field}: {reason}")]
    InvalidSpec { field: String, reason: String },
    /// An optimizer update would have produced a non-finite value; nothing was changed.
    #[error(
        "{field}: update rejected, the {what} is not finite at flat index {index}; the model is unchanged"
    )]
    NonFiniteUpdate {
        field: String,
        what: &'static str,
        index: usize,
    },
    /// A named tensor does not match any parameter, or one is missing or repeated.
    #[error("{field}: {reason}")]
    Parameter { field: String, reason: String },
}

impl EngineError {
    /// The request field (or parameter name) the error is about.
    pub fn field(&self) -> &str {
        match self {
            EngineError::Shape { field, .. }
            | EngineError::Label { field, .. }
            | EngineError::LabelCount { field, .. }
            | EngineError::NonFinite { field, .. }
            | EngineError::EmptyBatch { field }
            | EngineError::InvalidSpec { field, .. }
            | EngineError::NonFiniteUpdate { field, .. }
            | EngineError::Parameter { field, .. } => field,
        }
    }

    pub(crate) fn shape(
        field: impl Into<String>,
        expected: impl Into<String>,
        got: &[usize],
    ) -> Self {
        EngineError::Shape {
            field: field.into(),
            expected: expected.into(),
            got: format!("{got:?}"),
        }
    }

    pub(crate) fn spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EngineError::InvalidSpec {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
