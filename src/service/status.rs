//! Every error becomes a gRPC status in this one place. Client mistakes are
//! INVALID_ARGUMENT with the offending field named in the message and as a
//! `google.rpc.BadRequest` field violation; unknown sessions are NOT_FOUND; limits and a
//! full compute queue are RESOURCE_EXHAUSTED; a state directory that cannot be written is
//! UNAVAILABLE.
//!
//! Every status is built as a [`Refusal`], which adds the details beyond the message: a
//! `google.rpc.ErrorInfo` with the [`Reason`] (always), a `QuotaFailure` naming the
//! limit's flag with the numbers (on a limit), and a `RetryInfo` (when the same call may
//! succeed later). Quota descriptions give the call's own need and the configured cap,
//! never what is free of a shared budget: that would let one tenant watch another's
//! activity. (Statuses the gRPC machinery makes get their ErrorInfo on the way out, in
//! `server::error_info`.)
use std::collections::HashMap;
use std::time::Duration;

use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

pub use super::reason::{DOMAIN, Reason};
use crate::checkpoint::CheckpointError;
use crate::dataset::DatasetError;
use crate::engine::EngineError;
use crate::session::{PoolError, StoreError};

/// How long a refused call should wait before trying again (`RetryInfo.retry_delay`):
/// a compute job takes milliseconds to a few hundred.
pub const RETRY_QUEUE: Duration = Duration::from_millis(200);
/// The calls ahead on one model run one after another, each up to a compute job.
pub const RETRY_WAITERS: Duration = Duration::from_millis(500);
/// Calls in flight give back their share of the memory budget as they answer.
pub const RETRY_MEMORY: Duration = Duration::from_secs(1);
/// A state directory recovers when space is freed or it is remounted, and a session's
/// own save is retried in the background: not within milliseconds.
pub const RETRY_DURABLE: Duration = Duration::from_secs(5);

/// A status on its way out: its reason (which fixes the code), its message, and the
/// details it will carry.
#[must_use = "a refusal does nothing until it becomes a Status"]
pub struct Refusal {
    reason: Reason,
    message: String,
    details: ErrorDetails,
    metadata: HashMap<String, String>,
}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self::with_details(reason, message, ErrorDetails::new())
    }

    /// A refusal that keeps `details` it already has (a status made elsewhere, given its
    /// reason on the way out).
    pub fn with_details(reason: Reason, message: impl Into<String>, details: ErrorDetails) -> Self {
        Refusal {
            reason,
            message: message.into(),
            details,
            metadata: HashMap::new(),
        }
    }

    /// Names the offending request field: a BadRequest field violation, and `field` in
    /// the ErrorInfo's metadata.
    pub fn field(mut self, field: impl Into<String>, problem: impl Into<String>) -> Self {
        let field = field.into();
        self.metadata.insert("field".into(), field.clone());
        self.details.add_bad_request_violation(field, problem);
        self
    }

    /// Names the limit the call ran into: a QuotaFailure violation whose subject is the
    /// limit's flag, and `limit` in the ErrorInfo's metadata. `description` gives the
    /// numbers (the call's need and the cap).
    pub fn limit(mut self, flag: &str, description: impl Into<String>) -> Self {
        self.metadata.insert("limit".into(), flag.into());
        self.details.add_quota_failure_violation(flag, description);
        self
    }

    /// Adds `key: value` to the ErrorInfo's metadata.
    pub fn meta(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The same call may succeed after `delay`: a RetryInfo.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.details.set_retry_info(Some(delay));
        self
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Self {
        let Refusal {
            reason,
            message,
            mut details,
            metadata,
        } = r;
        details.set_error_info(reason.as_str(), DOMAIN, metadata);
        Status::with_error_details(reason.code(), message, details)
    }
}

/// INVALID_ARGUMENT naming `field`.
pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Status {
    invalid_because(Reason::InvalidArgument, field, problem).into()
}

/// A refusal with an INVALID_ARGUMENT `reason` naming `field`, its message
/// `"{field}: {problem}"`.
pub fn invalid_because(
    reason: Reason,
    field: impl Into<String>,
    problem: impl Into<String>,
) -> Refusal {
    let (field, problem) = (field.into(), problem.into());
    Refusal::new(reason, format!("{field}: {problem}")).field(field, problem)
}

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        engine_refusal(Reason::InvalidArgument, e).into()
    }
}

/// An engine error as an INVALID_ARGUMENT `reason`, its message the error's own.
fn engine_refusal(reason: Reason, e: EngineError) -> Refusal {
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
    Refusal::new(reason, message).field(field, problem)
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        let refusal = match e {
            StoreError::Elsewhere {
                field,
                id,
                owner,
                here,
            } => {
                return super::route::wrong_replica(
                    &format!("{field} {id}"),
                    owner.as_deref(),
                    here,
                );
            }
            StoreError::About(e) => return invalid(e.field, e.reason),
            StoreError::NotFound(_) => Refusal::new(Reason::ModelNotFound, message),
            StoreError::DatasetNotFound(_) => Refusal::new(Reason::DatasetNotFound, message),
            StoreError::FitRunning { .. } => Refusal::new(Reason::FitRunning, message),
            StoreError::OverDatasetShare { need, cap } => {
                let refusal = Refusal::new(Reason::DatasetLimit, message).limit(
                    "--max-dataset-memory",
                    format!(
                        "this dataset needs {need} bytes of the {cap} bytes datasets may \
                         hold together"
                    ),
                );
                if need <= cap {
                    refusal.retry_after(RETRY_MEMORY)
                } else {
                    refusal
                }
            }
            StoreError::TooManySessions(max) => Refusal::new(Reason::SessionLimit, message).limit(
                "--max-sessions",
                format!("one more session than the {max} this server holds at most"),
            ),
            StoreError::TenantSessions { limit, .. } => {
                Refusal::new(Reason::TenantSessionLimit, message).limit(
                    "max_sessions",
                    format!(
                        "one more session than the {limit} this tenant may hold \
                         (max_sessions in --auth-tokens)"
                    ),
                )
            }
            StoreError::TenantDatasets { limit, need, .. } => {
                Refusal::new(Reason::TenantDatasetLimit, message).limit(
                    "max_dataset_bytes",
                    format!(
                        "this dataset needs {need} bytes of the {limit} this tenant's \
                         datasets may hold together (max_dataset_bytes in --auth-tokens)"
                    ),
                )
            }
            StoreError::TooManyParameters { got, limit } => {
                Refusal::new(Reason::ParameterLimit, message).limit(
                    "--max-parameters",
                    format!("{got} parameters, more than the {limit} a model may have"),
                )
            }
            StoreError::OverMemoryBudget {
                need, budget, what, ..
            } => {
                let refusal = Refusal::new(Reason::MemoryBudget, message).limit(
                    "--max-memory",
                    format!(
                        "{what} needs {need} bytes of the {budget}-byte memory budget, \
                         which every session and call in flight share"
                    ),
                );
                // More than the whole budget never fits, however long the caller waits.
                if need <= budget {
                    refusal.retry_after(RETRY_MEMORY)
                } else {
                    refusal
                }
            }
            StoreError::OverUploadShare { need, cap } => {
                let refusal = Refusal::new(Reason::UploadShare, message).limit(
                    "--max-upload-memory",
                    format!(
                        "this upload needs {need} bytes of the {cap} bytes uploads in \
                         flight may hold together"
                    ),
                );
                if need <= cap {
                    refusal.retry_after(RETRY_MEMORY)
                } else {
                    refusal
                }
            }
            // The disk may recover (space freed, remounted): the same call can succeed later.
            StoreError::Persist(_) | StoreError::Unsaved { .. } => {
                Refusal::new(Reason::NotDurable, message).retry_after(RETRY_DURABLE)
            }
            StoreError::Random(_) => Refusal::new(Reason::Internal, message),
        };
        refusal.into()
    }
}

impl From<PoolError> for Status {
    fn from(e: PoolError) -> Self {
        let message = e.to_string();
        match e {
            PoolError::Busy(depth) => Refusal::new(Reason::QueueFull, message)
                .limit(
                    "--queue-depth",
                    format!("one more job than the {depth} the compute queue holds"),
                )
                .retry_after(RETRY_QUEUE),
            PoolError::Panicked(_) => Refusal::new(Reason::Internal, message),
            PoolError::Closed => Refusal::new(Reason::ShuttingDown, message),
        }
        .into()
    }
}

impl From<DatasetError> for Status {
    fn from(e: DatasetError) -> Self {
        invalid(e.field, e.reason)
    }
}

impl From<CheckpointError> for Status {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Model(e) => engine_refusal(Reason::InvalidCheckpoint, e).into(),
            CheckpointError::Tensor { ref name, .. } => invalid_because(
                Reason::InvalidCheckpoint,
                format!("checkpoint.{name}"),
                e.to_string(),
            )
            .into(),
            CheckpointError::Metadata { .. } | CheckpointError::Format(_) => {
                invalid_because(Reason::InvalidCheckpoint, "checkpoint", e.to_string()).into()
            }
        }
    }
}
