//! Every error becomes a gRPC status in this one place. Client mistakes are
//! INVALID_ARGUMENT with the offending field named in the message and as a
//! `google.rpc.BadRequest` field violation; unknown sessions are NOT_FOUND; limits and a
//! full compute queue are RESOURCE_EXHAUSTED; a state directory that cannot be written is
//! UNAVAILABLE.
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::checkpoint::CheckpointError;
use crate::engine::EngineError;
use crate::session::{PoolError, StoreError};

/// INVALID_ARGUMENT naming `field`.
pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Status {
    let (field, problem) = (field.into(), problem.into());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {problem}"),
        ErrorDetails::with_bad_request_violation(field, problem),
    )
}

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        // A bad label names its element, `labels[i]`, as the message does.
        let field = match &e {
            EngineError::Label { field, index, .. } => format!("{field}[{index}]"),
            _ => e.field().to_string(),
        };
        let message = e.to_string();
        let problem = message
            .strip_prefix(&format!("{field}: "))
            .unwrap_or(&message)
            .to_string();
        Status::with_error_details(
            Code::InvalidArgument,
            message,
            ErrorDetails::with_bad_request_violation(field, problem),
        )
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Status::not_found(e.to_string()),
            StoreError::TooManySessions(_)
            | StoreError::TenantSessions { .. }
            | StoreError::TooManyParameters { .. }
            | StoreError::OverMemoryBudget { .. }
            | StoreError::OverUploadShare { .. } => Status::resource_exhausted(e.to_string()),
            // The disk may recover (space freed, remounted): the same call can succeed later.
            StoreError::Persist(_) | StoreError::Unsaved { .. } => {
                Status::unavailable(e.to_string())
            }
            StoreError::Random(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<PoolError> for Status {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Busy(_) => Status::resource_exhausted(e.to_string()),
            PoolError::Panicked(_) => Status::internal(e.to_string()),
            PoolError::Closed => Status::unavailable(e.to_string()),
        }
    }
}

impl From<CheckpointError> for Status {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Model(e) => e.into(),
            CheckpointError::Tensor { ref name, .. } => {
                invalid(format!("checkpoint.{name}"), e.to_string())
            }
            CheckpointError::Metadata { .. } | CheckpointError::Format(_) => {
                invalid("checkpoint", e.to_string())
            }
        }
    }
}
