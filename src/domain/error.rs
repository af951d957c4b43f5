//! The errors the domain service answers. The gRPC layer maps each variant
//! to a status exactly once (`grpc::status`).

use crate::store::StoreError;

use super::kind::EndReason;

/// One invalid request field: which one (as a proto field path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidInput {
    pub field: String,
    pub description: String,
}

impl InvalidInput {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }

    /// Checks a free-text field: at most `max_bytes`, and no NUL character
    /// (which no store can keep as text).
    pub fn check_text(value: &str, field: &str, max_bytes: usize) -> Option<Self> {
        if value.len() > max_bytes {
            Some(Self::new(field, format!("must be at most {max_bytes} bytes")))
        } else if value.contains('\0') {
            Some(Self::new(field, "must not contain NUL characters"))
        } else {
            None
        }
    }
}

/// What a call on the service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<InvalidInput>),
    #[error("session not found")]
    SessionNotFound,
    /// The caller's role may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    #[error("session has ended ({0:?})")]
    SessionEnded(EndReason),
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error("storage was changed concurrently; current version is {current}")]
    VersionConflict { current: u64 },
    /// A change kept losing compare-and-set races with other writers; the
    /// caller may retry.
    #[error("the session kept changing concurrently")]
    Contended,
    /// A request id came again with a different request.
    #[error("the request id was already used for a different request")]
    RequestIdReused,
    #[error("{subject}: {description}")]
    QuotaExceeded { subject: String, description: String },
    #[error("the store is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

fn describe(violations: &[InvalidInput]) -> String {
    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

impl From<InvalidInput> for Error {
    fn from(value: InvalidInput) -> Self {
        Error::InvalidArgument(vec![value])
    }
}

impl From<StoreError> for Error {
    fn from(value: StoreError) -> Self {
        match value {
            StoreError::NotFound => Error::SessionNotFound,
            StoreError::Ended(reason) => Error::SessionEnded(reason),
            StoreError::Conflict { current } => Error::VersionConflict { current },
            err @ StoreError::Unavailable(_) => Error::Unavailable(err),
            err @ StoreError::Internal(_) => Error::Internal(err),
        }
    }
}
