//! The one mapping from service errors to gRPC statuses, with
//! `google.rpc` details: BadRequest for invalid fields, ErrorInfo with a
//! reason for everything a client may act on, QuotaFailure for limits.
//! Internal causes are logged with their chain and answered as a plain
//! INTERNAL: their text never reaches a client. Repeated causes are logged
//! once per interval with a count (`telemetry::throttle`).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

use crate::service::Error;
use crate::telemetry::throttle::{self, Admitted, Cause};

/// The `google.rpc.ErrorInfo` domain of every sessiond reason.
pub const ERROR_DOMAIN: &str = "sessiond.dev";

const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
const STORE_FULL: &str = "STORE_FULL";

fn info(code: Code, message: impl Into<String>, reason: &str, metadata: HashMap<String, String>) -> Status {
    Status::with_error_details(code, message, ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata))
}

/// UNAUTHENTICATED with an ErrorInfo `reason`.
pub fn unauthenticated(message: impl Into<String>, reason: &str, metadata: HashMap<String, String>) -> Status {
    info(Code::Unauthenticated, message, reason, metadata)
}

/// Authenticate's one answer for a user's token that cannot be used: a
/// session unknown or ended is UNAUTHENTICATED, whatever made it so, with
/// the reason other calls answer under their own codes.
pub fn sign_in_again(err: Error) -> Status {
    match err {
        Error::SessionNotFound => session_not_found(Code::Unauthenticated),
        Error::SessionEnded(reason) => session_ended(Code::Unauthenticated, reason),
        other => other.into(),
    }
}

/// An unknown session (or another tenant's), answered with `code`.
fn session_not_found(code: Code) -> Status {
    info(code, "session not found", "SESSION_NOT_FOUND", HashMap::new())
}

/// A session that ended for `reason`, answered with `code`.
fn session_ended(code: Code, reason: crate::domain::EndReason) -> Status {
    let metadata = HashMap::from([("end_reason".to_owned(), reason.as_str().to_owned())]);
    info(code, format!("session has ended: {reason}"), reason.error_reason(), metadata)
}

/// Logs an error's cause chain, throttled by the code and reason it is
/// answered with; the caller answers without it.
fn log_chain(err: &Error, code: Code, reason: &str) {
    const LINE: &str = "call failed";
    let cause = Cause::with_reason(tracing::Level::ERROR, LINE, super::observe::code_name(code), reason);
    let Some(Admitted { repeated }) = throttle::admit(cause) else { return };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %err, causes = ?causes, cause = %cause, repeated, "{LINE}");
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument(violations) => {
                let message = err_message(&violations);
                let violations: Vec<FieldViolation> =
                    violations.into_iter().map(|v| FieldViolation::new(v.field, v.description)).collect();
                Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request(violations))
            }
            Error::PermissionDenied(why) => info(Code::PermissionDenied, why, "ADMIN_ROLE_REQUIRED", HashMap::new()),
            Error::PermissionRequired(permission) => info(
                Code::PermissionDenied,
                format!("this API key is not allowed {permission}; an admin may add it to the key's allow list"),
                "PERMISSION_REQUIRED",
                HashMap::from([("permission".to_owned(), permission.to_owned())]),
            ),
            Error::SessionNotFound => session_not_found(Code::NotFound),
            Error::SessionEnded(reason) => session_ended(Code::FailedPrecondition, reason),
            Error::NotFound { what, name } => {
                let reason = format!("{}_NOT_FOUND", what.to_uppercase());
                info(
                    Code::NotFound,
                    format!("{what} {name} not found"),
                    &reason,
                    HashMap::from([(what.to_owned(), name)]),
                )
            }
            Error::VersionConflict { current } => {
                let metadata = HashMap::from([("current_version".to_owned(), current.to_string())]);
                info(
                    Code::Aborted,
                    format!("storage changed concurrently; current version is {current}"),
                    "VERSION_CONFLICT",
                    metadata,
                )
            }
            Error::Contended => {
                info(Code::Aborted, "the session kept changing concurrently; retry", "CONTENDED", HashMap::new())
            }
            Error::RequestIdReused => info(
                Code::FailedPrecondition,
                "request_id was already used for a different request",
                "REQUEST_ID_REUSED",
                HashMap::new(),
            ),
            Error::QuotaExceeded { subject, description } => Status::with_error_details(
                Code::ResourceExhausted,
                format!("{subject}: {description}"),
                ErrorDetails::with_quota_failure_violation(subject, description),
            ),
            Error::SessionLogQuota { limit } => quota_full(
                "session-log-entries".to_owned(),
                format!("a session's log holds at most {limit} entries"),
                "SESSION_LOG_QUOTA",
                ("max_entries", limit),
            ),
            Error::TenantSessionQuota { tenant, limit } => quota_full(
                format!("tenant:{tenant}"),
                format!("at most {limit} open sessions per tenant; end some to open more"),
                "TENANT_SESSION_QUOTA",
                ("max_open_sessions", limit),
            ),
            Error::TenantLogQuota { tenant, limit } => quota_full(
                format!("tenant:{tenant}"),
                format!(
                    "a tenant's sessions hold at most {limit} log entries; end sessions or let kept logs be purged"
                ),
                "TENANT_LOG_QUOTA",
                ("max_entries", limit),
            ),
            Error::CursorOutOfRange { expired, oldest, latest } => {
                let metadata = HashMap::from([
                    ("oldest_sequence".to_owned(), oldest.to_string()),
                    ("latest_sequence".to_owned(), latest.to_string()),
                ]);
                let (reason, message) = if expired {
                    (
                        "CURSOR_EXPIRED",
                        format!("events after that sequence are no longer kept; the oldest kept is {oldest}"),
                    )
                } else {
                    ("CURSOR_AHEAD", format!("no event has that sequence yet; the latest is {latest}"))
                };
                info(Code::OutOfRange, message, reason, metadata)
            }
            Error::ChannelCursorOutOfRange { channel, expired, oldest, latest } => {
                let metadata = HashMap::from([
                    ("channel".to_owned(), channel),
                    ("oldest_sequence".to_owned(), oldest.to_string()),
                    ("latest_sequence".to_owned(), latest.to_string()),
                ]);
                let (reason, message) = if expired {
                    (
                        "CURSOR_EXPIRED",
                        format!("messages after that sequence are no longer kept; the oldest kept is {oldest}"),
                    )
                } else {
                    (
                        "CURSOR_AHEAD",
                        format!("the channel has no message with that sequence yet; the latest is {latest}"),
                    )
                };
                info(Code::OutOfRange, message, reason, metadata)
            }
            Error::SubscriberTooSlow { max_behind } => info(
                Code::ResourceExhausted,
                format!(
                    "the subscriber fell {max_behind} messages behind and was cut off; resume from the last sequence received"
                ),
                "SUBSCRIBER_TOO_SLOW",
                HashMap::from([("max_behind".to_owned(), max_behind.to_string())]),
            ),
            Error::FollowerTooSlow { waited } => {
                let waited = format!("{}s", waited.as_secs());
                let mut details = ErrorDetails::with_quota_failure_violation(
                    "follow-logs",
                    format!("records sent were not read for {waited}"),
                );
                details.set_error_info(
                    "FOLLOWER_TOO_SLOW",
                    ERROR_DOMAIN,
                    HashMap::from([("waited".to_owned(), waited)]),
                );
                Status::with_error_details(
                    Code::ResourceExhausted,
                    "the follower did not keep up with the log; follow again from the last cursor",
                    details,
                )
            }
            ref unavailable @ Error::Unavailable(_) => {
                log_chain(unavailable, Code::Unavailable, STORE_UNAVAILABLE);
                info(
                    Code::Unavailable,
                    "the session store is unavailable; retry later",
                    STORE_UNAVAILABLE,
                    HashMap::new(),
                )
            }
            ref full @ Error::StoreFull(_) => {
                log_chain(full, Code::ResourceExhausted, STORE_FULL);
                info(
                    Code::ResourceExhausted,
                    "the session store is out of disk space; retry later",
                    STORE_FULL,
                    HashMap::new(),
                )
            }
            ref internal @ Error::Internal(_) => {
                log_chain(internal, Code::Internal, "");
                Status::internal("internal error")
            }
        }
    }
}

/// A refused StreamLog's status: its own, with how much of the stream was
/// committed before the refusal in `google.rpc.ErrorInfo` metadata
/// (`committed_messages`, `committed_entries`), added to the refusal's own
/// ErrorInfo or, when it has none, to one of reason `STREAM_REFUSED`.
pub fn with_stream_progress(status: Status, messages: usize, entries: usize) -> Status {
    let mut details = status.get_error_details();
    let (reason, mut metadata) = match details.error_info() {
        Some(info) => (info.reason.clone(), info.metadata.clone()),
        None => ("STREAM_REFUSED".to_owned(), HashMap::new()),
    };
    metadata.insert("committed_messages".to_owned(), messages.to_string());
    metadata.insert("committed_entries".to_owned(), entries.to_string());
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(status.code(), status.message(), details)
}

impl From<crate::domain::InvalidInput> for Status {
    fn from(value: crate::domain::InvalidInput) -> Self {
        Error::from(value).into()
    }
}

impl From<crate::domain::InvalidRequest> for Status {
    fn from(value: crate::domain::InvalidRequest) -> Self {
        Error::from(value).into()
    }
}

/// A call refused because `--max-concurrent-calls` are in progress: the
/// client may retry, later or elsewhere.
pub fn overloaded(max_concurrent_calls: usize) -> Status {
    let limit = max_concurrent_calls.to_string();
    let mut details = ErrorDetails::with_quota_failure_violation(
        "max-concurrent-calls",
        format!("at most {limit} calls are in progress at once"),
    );
    details.set_error_info("OVERLOADED", ERROR_DOMAIN, HashMap::from([("max_concurrent_calls".to_owned(), limit)]));
    Status::with_error_details(Code::ResourceExhausted, "too many calls in progress; retry later", details)
}

/// A call refused because its API key (`subject`: `api-key:<name>`) has
/// `limit` calls in progress: `--max-concurrent-calls-per-key` or the key
/// entry's own `max_concurrent_calls`.
pub fn key_overloaded(subject: &str, limit: usize) -> Status {
    share_overloaded("KEY_OVERLOADED", subject, limit, "too many calls of this API key in progress; retry later")
}

/// A call refused because its tenant (`subject`: `tenant:<id>`) has
/// `--max-concurrent-calls-per-tenant` calls in progress.
pub fn tenant_overloaded(subject: &str, limit: usize) -> Status {
    share_overloaded("TENANT_OVERLOADED", subject, limit, "too many calls of this tenant in progress; retry later")
}

/// A stream (WatchSessions, FollowLogs, Subscribe) refused because its API
/// key (`subject`: `api-key:<name>`) has `limit` streams open:
/// `--max-streams-per-key` or the key entry's own `max_streams`.
pub fn key_stream_quota(subject: &str, limit: usize) -> Status {
    let limit = limit.to_string();
    let mut details = ErrorDetails::with_quota_failure_violation(
        subject,
        format!("at most {limit} streams of {subject} are open at once"),
    );
    details.set_error_info("KEY_STREAM_QUOTA", ERROR_DOMAIN, HashMap::from([("max_streams".to_owned(), limit)]));
    Status::with_error_details(
        Code::ResourceExhausted,
        "too many streams of this API key are open; end one first",
        details,
    )
}

/// A write refused because `subject` holds what a stored quota allows:
/// a QuotaFailure on `subject` saying `description`, and an ErrorInfo of
/// `reason` with the limit under `key`.
fn quota_full(subject: String, description: String, reason: &str, (key, limit): (&str, u64)) -> Status {
    let mut details = ErrorDetails::with_quota_failure_violation(subject, &description);
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::from([(key.to_owned(), limit.to_string())]));
    Status::with_error_details(Code::ResourceExhausted, description, details)
}

fn share_overloaded(reason: &str, subject: &str, limit: usize, message: &str) -> Status {
    let limit = limit.to_string();
    let mut details = ErrorDetails::with_quota_failure_violation(
        subject,
        format!("at most {limit} calls of {subject} are in progress at once"),
    );
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::from([("max_concurrent_calls".to_owned(), limit)]));
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// A call refused because its API key or tenant (`subject`) started
/// `calls_per_second` calls in the last second (`--rate-limit-per-key`,
/// `--rate-limit-per-tenant`); `retry_after` is when the next is allowed.
pub fn rate_limited(subject: &str, calls_per_second: u32, retry_after: std::time::Duration) -> Status {
    let rate = calls_per_second.to_string();
    let mut details = ErrorDetails::with_quota_failure_violation(
        subject,
        format!("at most {rate} calls of {subject} start per second"),
    );
    details.set_error_info(
        "RATE_LIMITED",
        ERROR_DOMAIN,
        HashMap::from([("calls_per_second".to_owned(), rate), ("subject".to_owned(), subject.to_owned())]),
    );
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(Code::ResourceExhausted, "too many calls; retry after the delay given", details)
}

/// A call whose deadline passed: the client's own (`grpc-timeout`) or
/// `--max-call-duration`, whichever came first.
pub fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("the call's deadline passed")
}

/// The one answer to a request body that does not decode, whatever is
/// wrong with it: never the decoder's own words.
pub fn malformed_request() -> Status {
    info(Code::InvalidArgument, MALFORMED_REQUEST, "MALFORMED_REQUEST", HashMap::new())
}

/// The message of [`malformed_request`].
pub const MALFORMED_REQUEST: &str = "the request body is not a valid message of this method";

/// A JSON request body that does not fit its method's request message
/// (the HTTP faces): the field it failed at (empty when the body is not
/// JSON at all) and why, never a value it held.
pub fn malformed_json(field: &str, description: &str) -> Status {
    let mut details = ErrorDetails::with_bad_request(vec![FieldViolation::new(field, description)]);
    details.set_error_info("MALFORMED_REQUEST", ERROR_DOMAIN, HashMap::new());
    let message = if field.is_empty() {
        format!("the request body is {description}")
    } else {
        format!("invalid {field}: {description}")
    };
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// A request header of the HTTP faces that does not parse: named, with
/// what it must be.
pub fn invalid_header(name: &str, description: &str) -> Status {
    let details = ErrorDetails::with_bad_request(vec![FieldViolation::new(name, description)]);
    Status::with_error_details(Code::InvalidArgument, format!("invalid {name} header: {description}"), details)
}

/// A request message over `--max-request-bytes`, refused before it is
/// read.
pub fn request_too_large(max_request_bytes: usize) -> Status {
    let metadata = HashMap::from([("max_request_bytes".to_owned(), max_request_bytes.to_string())]);
    info(Code::OutOfRange, "the request message is larger than the server accepts", "REQUEST_TOO_LARGE", metadata)
}

/// Names the first few invalid fields; the BadRequest detail has them all.
fn err_message(violations: &[crate::domain::InvalidInput]) -> String {
    const NAMED: usize = 10;
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).filter(|f| !f.is_empty()).take(NAMED).collect();
    let more = violations.len().saturating_sub(NAMED);
    if more > 0 { format!("invalid {} and more", fields.join(", ")) } else { format!("invalid {}", fields.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EndReason, InvalidInput};

    #[test]
    fn invalid_arguments_name_their_fields_in_a_bad_request() {
        let status =
            Status::from(Error::InvalidArgument(vec![InvalidInput::new("privileges[0]", "unknown privilege")]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("a BadRequest detail");
        assert_eq!(bad.field_violations[0].field, "privileges[0]");
    }

    #[test]
    fn an_ended_session_is_a_failed_precondition_with_a_reason() {
        let status = Status::from(Error::SessionEnded(EndReason::IdleTimeout));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        assert_eq!(details.error_info().expect("an ErrorInfo").reason, "SESSION_EXPIRED");
    }

    #[test]
    fn stream_progress_joins_a_refusal_s_own_error_info_or_comes_in_its_own() {
        let ended = with_stream_progress(Status::from(Error::SessionEnded(EndReason::Closed)), 2, 7);
        let info = ended.get_error_details().error_info().cloned().expect("an ErrorInfo");
        assert_eq!(info.reason, "SESSION_CLOSED");
        assert_eq!(info.metadata["end_reason"], "closed");
        assert_eq!(
            (info.metadata["committed_messages"].as_str(), info.metadata["committed_entries"].as_str()),
            ("2", "7")
        );

        let invalid =
            Status::from(Error::InvalidArgument(vec![InvalidInput::new("session", "a stream may not switch")]));
        let invalid = with_stream_progress(invalid, 1, 3);
        let details = invalid.get_error_details();
        assert_eq!(details.bad_request().expect("the BadRequest stays").field_violations[0].field, "session");
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!((info.reason.as_str(), info.metadata["committed_messages"].as_str()), ("STREAM_REFUSED", "1"));
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let cause = crate::store::StoreError::Internal("disk on fire at /var/secret".into());
        let status = Status::from(Error::Internal(cause));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }
}
