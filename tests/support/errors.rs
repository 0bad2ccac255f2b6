//! What an error status must say and carry: its code, the field it names (message and
//! `google.rpc.BadRequest`), and the machine-readable details every error of the
//! server's has (`ErrorInfo`) or a limit's refusal adds (`QuotaFailure`, `RetryInfo`).
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The `reason` of the status's `google.rpc.ErrorInfo` if it has one from this server
/// (domain `backprop`) with an UPPER_SNAKE_CASE reason; otherwise what is wrong.
pub fn checked_reason(status: &Status) -> Result<String, String> {
    let info = status
        .get_details_error_info()
        .ok_or_else(|| format!("no ErrorInfo detail in {status:?}"))?;
    if info.domain != "backprop" {
        return Err(format!(
            "ErrorInfo domain {:?}, not \"backprop\": {status:?}",
            info.domain
        ));
    }
    let snake = !info.reason.is_empty()
        && info
            .reason
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_');
    if !snake {
        return Err(format!("reason {:?} is not UPPER_SNAKE_CASE", info.reason));
    }
    Ok(info.reason)
}

/// The `reason` of the status's `google.rpc.ErrorInfo`, after asserting that it has one
/// from this server (domain `backprop`) and that the reason is UPPER_SNAKE_CASE.
#[track_caller]
pub fn reason(status: &Status) -> String {
    checked_reason(status).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts the status's ErrorInfo reason (see [`reason`]) and code.
#[track_caller]
pub fn assert_reason(status: &Status, code: Code, want: &str) {
    assert_eq!(
        status.code(),
        code,
        "expected {code:?} {want}, got {status:?}"
    );
    assert_eq!(reason(status), want, "{status:?}");
}

/// The one `google.rpc.QuotaFailure` violation of a limit's refusal: its subject (the
/// limit's flag) and description (the numbers).
#[track_caller]
pub fn quota(status: &Status) -> (String, String) {
    let q = status
        .get_details_quota_failure()
        .unwrap_or_else(|| panic!("no QuotaFailure detail in {status:?}"));
    assert_eq!(q.violations.len(), 1, "{q:?}");
    let v = &q.violations[0];
    (v.subject.clone(), v.description.clone())
}

/// The `google.rpc.RetryInfo` delay of a refusal that may succeed later.
#[track_caller]
pub fn retry_delay(status: &Status) -> Duration {
    status
        .get_details_retry_info()
        .unwrap_or_else(|| panic!("no RetryInfo detail in {status:?}"))
        .retry_delay
        .unwrap_or_else(|| panic!("a RetryInfo without a delay in {status:?}"))
}

/// Asserts an INVALID_ARGUMENT whose message names `field` and that carries a
/// `google.rpc.BadRequest` field violation for it, and an ErrorInfo naming it too.
#[track_caller]
pub fn assert_invalid(status: &Status, field: &str) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "expected INVALID_ARGUMENT naming {field:?}, got {status:?}"
    );
    assert!(
        status.message().contains(field),
        "message {:?} does not name {field:?}",
        status.message()
    );
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest detail in {status:?}"));
    assert!(
        bad.field_violations.iter().any(|v| v.field == field),
        "no field violation for {field:?} in {:?}",
        bad.field_violations
    );
    assert!(
        bad.field_violations
            .iter()
            .all(|v| !v.description.is_empty()),
        "a field violation without a description: {:?}",
        bad.field_violations
    );
    reason(status);
    let info = status.get_details_error_info().expect("checked by reason");
    assert_eq!(
        info.metadata.get("field").map(String::as_str),
        Some(field),
        "ErrorInfo.metadata of {status:?}"
    );
}

/// Asserts a status code; the message must contain `needle`.
#[track_caller]
pub fn assert_code(status: &Status, code: Code, needle: &str) {
    assert_eq!(status.code(), code, "expected {code:?}, got {status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} does not contain {needle:?}",
        status.message()
    );
}
