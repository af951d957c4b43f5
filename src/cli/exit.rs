//! Exit codes scripts can trust, and how a failure is told on standard
//! error: the API's own status, message and details, never more.

use tonic::Code;
use tonic_types::StatusExt as _;

/// The admin commands' exit codes (README, "Operating sessiond").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Done; for `health`, SERVING.
    Ok = 0,
    /// Anything not below: INTERNAL, UNKNOWN, an unreadable key file, a
    /// broken standard output.
    Failed = 1,
    /// The command line or the request is wrong: clap's usage errors,
    /// INVALID_ARGUMENT, OUT_OF_RANGE.
    Usage = 2,
    /// NOT_FOUND: no such session (or another tenant's).
    NotFound = 3,
    /// sessiond cannot be reached or cannot answer: no connection, TLS
    /// refused, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (shed),
    /// `health` not SERVING.
    Unavailable = 4,
    /// UNAUTHENTICATED or PERMISSION_DENIED: no key, a wrong key, or a
    /// service key where an admin key is needed.
    Denied = 5,
    /// FAILED_PRECONDITION or ABORTED: the session has ended, a conflict.
    Refused = 6,
}

impl ExitCode {
    /// The code for a status sessiond answered.
    pub fn of(code: Code) -> Self {
        match code {
            Code::Ok => Self::Ok,
            Code::InvalidArgument | Code::OutOfRange => Self::Usage,
            Code::NotFound => Self::NotFound,
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => Self::Unavailable,
            Code::Unauthenticated | Code::PermissionDenied => Self::Denied,
            Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => Self::Refused,
            _ => Self::Failed,
        }
    }
}

/// Why an admin command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// sessiond answered a status other than OK.
    #[error("{}", describe(.0))]
    Status(tonic::Status),
    /// No connection could be made (or TLS was refused).
    #[error("cannot connect to {address}: {cause}")]
    Connect { address: String, cause: String },
    /// A flag's value or a combination of flags is wrong.
    #[error("{0}")]
    Usage(String),
    /// `health`: sessiond answered, but not SERVING.
    #[error("{address}: {status}")]
    NotServing { address: String, status: &'static str },
    /// Anything else: a key file that cannot be read, standard output gone.
    #[error("{0}")]
    Other(String),
}

impl From<tonic::Status> for Failure {
    /// A status the server sent; or one tonic made of a connection that
    /// broke or was refused during the call (it carries the transport
    /// error as its source, which no answer of sessiond does).
    fn from(status: tonic::Status) -> Self {
        match std::error::Error::source(&status) {
            Some(cause) => Self::Connect { address: "sessiond".into(), cause: error_chain(cause) },
            _ => Self::Status(status),
        }
    }
}

/// An error with its causes on one line: tonic's transport errors say
/// little without them.
pub(super) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Failure {
    pub fn code(&self) -> ExitCode {
        match self {
            Self::Status(status) => ExitCode::of(status.code()),
            Self::Connect { .. } | Self::NotServing { .. } => ExitCode::Unavailable,
            Self::Usage(_) => ExitCode::Usage,
            Self::Other(_) => ExitCode::Failed,
        }
    }

    /// Tells the failure on standard error, one line, then one line per
    /// invalid field the server named.
    pub fn report(&self) {
        eprintln!("sessiond: {self}");
        if let Self::Status(status) = self
            && let Some(bad_request) = status.get_details_bad_request()
        {
            for violation in bad_request.field_violations {
                eprintln!("  {}: {}", violation.field, violation.description);
            }
        }
    }
}

/// `CODE_NAME: message (REASON)`, as the API answered it.
fn describe(status: &tonic::Status) -> String {
    let name = crate::grpc::observe::code_name(status.code());
    let reason = status.get_details_error_info().map(|info| format!(" ({})", info.reason)).unwrap_or_default();
    format!("{name}: {}{reason}", status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_the_exit_code_of_its_kind() {
        assert_eq!(ExitCode::of(Code::InvalidArgument), ExitCode::Usage);
        assert_eq!(ExitCode::of(Code::NotFound), ExitCode::NotFound);
        assert_eq!(ExitCode::of(Code::Unavailable), ExitCode::Unavailable);
        assert_eq!(ExitCode::of(Code::ResourceExhausted), ExitCode::Unavailable);
        assert_eq!(ExitCode::of(Code::PermissionDenied), ExitCode::Denied);
        assert_eq!(ExitCode::of(Code::Unauthenticated), ExitCode::Denied);
        assert_eq!(ExitCode::of(Code::FailedPrecondition), ExitCode::Refused);
        assert_eq!(ExitCode::of(Code::Internal), ExitCode::Failed);
    }
}
