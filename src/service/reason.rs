//! The reasons an error status gives, machine-readable: every error the Trainer answers
//! carries a `google.rpc.ErrorInfo` with one of these as its `reason` and [`DOMAIN`] as
//! its `domain`, so a client can branch on the cause without parsing the message (whose
//! words may change). The strings are part of the wire contract: a reason is never
//! renamed or reused for another cause; new causes get new reasons.
//!
//! Each reason fixes its gRPC code here, once, so a status built from a reason cannot
//! disagree with it. Statuses made by the gRPC machinery itself (an undecodable body, an
//! unknown method) are [`Reason::Transport`], named after their code.
use tonic::Code;

/// `ErrorInfo.domain` of every error this server answers.
pub const DOMAIN: &str = "backprop";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A request field is wrong; the `google.rpc.BadRequest` detail names it.
    InvalidArgument,
    /// ImportModel's file does not decode as a checkpoint this server can load.
    InvalidCheckpoint,
    /// The answer would exceed the message limit (`--max-message-mib`): it can never be
    /// sent, whatever the load; the message says how to get under.
    AnswerTooLarge,
    /// The call's estimated peak exceeds what one call may take (`--max-call-memory` or
    /// `--max-memory`): it can never succeed here.
    CallMemory,
    /// No such model for this caller (never created, deleted, reaped, or another
    /// tenant's).
    ModelNotFound,
    /// No such dataset for this caller (never uploaded, deleted, reaped, or another
    /// tenant's).
    DatasetNotFound,
    /// Datasets together cannot hold this one (`--max-dataset-memory`).
    DatasetLimit,
    /// A fit is training the model: only it may change the model until it ends.
    FitRunning,
    /// WatchFit on a model no fit has run on.
    NoFit,
    /// The call names a session (or its routing header a replica) of another replica
    /// than the one it reached: the proxy in front does not route on the header. The
    /// ErrorInfo's metadata names the `owner` and this `replica`.
    WrongReplica,
    /// The server holds its maximum of sessions (`--max-sessions`).
    SessionLimit,
    /// The caller's tenant holds its maximum of sessions (`max_sessions` in
    /// `--auth-tokens`).
    TenantSessionLimit,
    /// The caller's tenant cannot hold this dataset beside its others
    /// (`max_dataset_bytes` in `--auth-tokens`).
    TenantDatasetLimit,
    /// The model has more parameters than the server allows (`--max-parameters`).
    ParameterLimit,
    /// A request tensor has more elements than the server allows (`--max-batch-elements`).
    TensorLimit,
    /// An upload declares a checkpoint larger than the server accepts.
    CheckpointSize,
    /// The memory budget (`--max-memory`) cannot hold this now.
    MemoryBudget,
    /// Uploads in flight together cannot hold this one now (`--max-upload-memory`).
    UploadShare,
    /// A message over the size limit (`--max-message-mib`).
    MessageLimit,
    /// The compute queue is full (`--queue-depth`).
    QueueFull,
    /// Too many calls already wait for this model (`--max-session-waiters`).
    SessionWaiters,
    /// The state directory cannot be written: the change was not made (or the session
    /// takes no changes until a save succeeds).
    NotDurable,
    /// The server is shutting down.
    ShuttingDown,
    /// An upload sent no chunk for `--upload-stall-secs` and was cut off.
    UploadStalled,
    /// A call without a deadline ran past `--default-deadline-secs`.
    DefaultDeadline,
    /// No known bearer token.
    Unauthenticated,
    /// A fault of the server's (a panic in the math, the OS's random generator).
    Internal,
    /// A status the gRPC machinery made, not the service (e.g. an undecodable request is
    /// INTERNAL, an unknown method UNIMPLEMENTED): the reason is the code's name.
    Transport(Code),
}

impl Reason {
    /// The `ErrorInfo.reason`: UPPER_SNAKE_CASE, stable.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidArgument => "INVALID_ARGUMENT",
            Reason::InvalidCheckpoint => "INVALID_CHECKPOINT",
            Reason::AnswerTooLarge => "ANSWER_TOO_LARGE",
            Reason::CallMemory => "CALL_MEMORY",
            Reason::ModelNotFound => "MODEL_NOT_FOUND",
            Reason::DatasetNotFound => "DATASET_NOT_FOUND",
            Reason::DatasetLimit => "DATASET_LIMIT",
            Reason::FitRunning => "FIT_RUNNING",
            Reason::NoFit => "NO_FIT",
            Reason::WrongReplica => "WRONG_REPLICA",
            Reason::SessionLimit => "SESSION_LIMIT",
            Reason::TenantSessionLimit => "TENANT_SESSION_LIMIT",
            Reason::TenantDatasetLimit => "TENANT_DATASET_LIMIT",
            Reason::ParameterLimit => "PARAMETER_LIMIT",
            Reason::TensorLimit => "TENSOR_LIMIT",
            Reason::CheckpointSize => "CHECKPOINT_SIZE",
            Reason::MemoryBudget => "MEMORY_BUDGET",
            Reason::UploadShare => "UPLOAD_SHARE",
            Reason::MessageLimit => "MESSAGE_LIMIT",
            Reason::QueueFull => "QUEUE_FULL",
            Reason::SessionWaiters => "SESSION_WAITERS",
            Reason::NotDurable => "NOT_DURABLE",
            Reason::ShuttingDown => "SHUTTING_DOWN",
            Reason::UploadStalled => "UPLOAD_STALLED",
            Reason::DefaultDeadline => "DEFAULT_DEADLINE",
            Reason::Unauthenticated => "UNAUTHENTICATED",
            Reason::Internal => "INTERNAL",
            Reason::Transport(code) => code_name(code),
        }
    }

    /// The gRPC code a status with this reason has.
    pub fn code(self) -> Code {
        match self {
            Reason::InvalidArgument
            | Reason::InvalidCheckpoint
            | Reason::AnswerTooLarge
            | Reason::CallMemory => Code::InvalidArgument,
            Reason::ModelNotFound | Reason::DatasetNotFound => Code::NotFound,
            Reason::FitRunning | Reason::NoFit | Reason::WrongReplica => Code::FailedPrecondition,
            Reason::SessionLimit
            | Reason::TenantSessionLimit
            | Reason::TenantDatasetLimit
            | Reason::ParameterLimit
            | Reason::TensorLimit
            | Reason::CheckpointSize
            | Reason::MemoryBudget
            | Reason::UploadShare
            | Reason::MessageLimit
            | Reason::QueueFull
            | Reason::SessionWaiters
            | Reason::DatasetLimit => Code::ResourceExhausted,
            Reason::NotDurable | Reason::ShuttingDown => Code::Unavailable,
            Reason::UploadStalled | Reason::DefaultDeadline => Code::DeadlineExceeded,
            Reason::Unauthenticated => Code::Unauthenticated,
            Reason::Internal => Code::Internal,
            Reason::Transport(code) => code,
        }
    }
}

/// The canonical name of a gRPC status code, as the gRPC spec spells it (also the
/// metrics' `code` label).
pub fn code_name(code: Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_upper_snake_and_distinct() {
        let all = [
            Reason::InvalidArgument,
            Reason::InvalidCheckpoint,
            Reason::AnswerTooLarge,
            Reason::CallMemory,
            Reason::ModelNotFound,
            Reason::DatasetNotFound,
            Reason::DatasetLimit,
            Reason::FitRunning,
            Reason::NoFit,
            Reason::WrongReplica,
            Reason::SessionLimit,
            Reason::TenantSessionLimit,
            Reason::TenantDatasetLimit,
            Reason::ParameterLimit,
            Reason::TensorLimit,
            Reason::CheckpointSize,
            Reason::MemoryBudget,
            Reason::UploadShare,
            Reason::MessageLimit,
            Reason::QueueFull,
            Reason::SessionWaiters,
            Reason::NotDurable,
            Reason::ShuttingDown,
            Reason::UploadStalled,
            Reason::DefaultDeadline,
            Reason::Unauthenticated,
            Reason::Internal,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), all.len(), "two causes share a reason");
        for r in all {
            let s = r.as_str();
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{s}"
            );
            assert_ne!(r.code(), Code::Ok, "{s}");
        }
        assert_eq!(
            Reason::Transport(Code::Unimplemented).as_str(),
            "UNIMPLEMENTED"
        );
    }
}
