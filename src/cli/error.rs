//! What can go wrong in a client subcommand, each case worded for the person at the
//! terminal. Data-file errors read `file:line:col: message`, like a compiler's, so editors
//! and grep can jump to them; everything else is prefixed with `backprop:`.
use std::fmt;

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Data(#[from] DataError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {address}: {detail}")]
    Connect { address: String, detail: String },
    /// The server (or the transport under it) answered a call with an error status.
    #[error("{call} failed: {}: {}", code_name(*.code), .message)]
    Rpc {
        call: &'static str,
        code: Code,
        message: String,
    },
    /// Flags that parse but make no sense together (e.g. 3 activations for 2 layers).
    #[error("{0}")]
    Usage(String),
    #[error("no answer from {address} within {timeout:?}")]
    NoAnswer {
        address: String,
        timeout: std::time::Duration,
    },
    /// The health check answered, but not SERVING.
    #[error("{service}: {status}")]
    Unhealthy { service: String, status: String },
    /// The reader of our output went away (`| head`): stop, say nothing, exit 0.
    #[error("output closed")]
    Quiet,
}

impl CliError {
    /// The line to print on stderr.
    pub fn report(&self) -> String {
        match self {
            CliError::Data(e) => e.to_string(),
            other => format!("backprop: {other}"),
        }
    }

    /// Turns a failed call's status into an error naming the call.
    pub fn rpc(call: &'static str) -> impl FnOnce(Status) -> CliError {
        move |status| {
            let mut message = status.message().to_string();
            // Transport failures carry their cause (e.g. "connection reset") only as a source.
            if let Some(source) = std::error::Error::source(&status) {
                let cause = causes(source);
                if !cause.is_empty() && !message.contains(&cause) {
                    message = if message.is_empty() {
                        cause
                    } else {
                        format!("{message}: {cause}")
                    };
                }
            }
            CliError::Rpc {
                call,
                code: status.code(),
                message,
            }
        }
    }
}

/// A problem in a data file, at a line and column when there is one (both 1-based; the
/// column counts comma-separated fields).
#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    pub path: String,
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.col {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for DataError {}

/// An error and its sources joined by ": ", skipping wrappers that add no words
/// (tonic's bare "transport error") and repeats.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if text != "transport error" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// The canonical gRPC name of a status code, as grpcurl and the spec spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
