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

/// Violations a `BadRequest` lists; past that, it counts the rest, so a
/// request of thousands of bad items is answered with a bounded status.
const MAX_LISTED: usize = 100;

/// Every violation of one request, collected in one pass over all its
/// fields, so that one `BadRequest` names them all.
#[derive(Debug, Default)]
pub struct Violations {
    listed: Vec<InvalidInput>,
    unlisted: usize,
}

impl Violations {
    pub fn push(&mut self, violation: InvalidInput) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(violation);
        } else {
            self.unlisted += 1;
        }
    }

    /// The parsed value, or `None` with the reason recorded.
    pub fn check<T>(&mut self, parsed: Result<T, InvalidInput>) -> Option<T> {
        parsed.map_err(|v| self.push(v)).ok()
    }

    /// Records a free-text field over `max_bytes` or holding a NUL.
    pub fn text(&mut self, value: &str, field: &str, max_bytes: usize) {
        if let Some(violation) = InvalidInput::check_text(value, field, max_bytes) {
            self.push(violation);
        }
    }

    /// Records a list-shaped field with more than `max` items; every such
    /// field is limited, and the limit is the same in every call. Answers
    /// whether the list is within it (its items are worth checking).
    pub fn count(&mut self, len: usize, field: &str, max: usize) -> bool {
        if len > max {
            self.push(InvalidInput::new(field, format!("must have at most {max} items, not {len}")));
        }
        len <= max
    }

    /// The parsed request when nothing was found wrong, otherwise one
    /// error naming every violation. `parsed` is `None` only when a
    /// violation was recorded.
    pub fn finish<T>(mut self, parsed: Option<T>) -> Result<T, Error> {
        match parsed {
            Some(value) if self.listed.is_empty() => Ok(value),
            _ if self.listed.is_empty() => Err(Error::InvalidArgument(vec![InvalidInput::new("", "invalid request")])),
            _ => {
                if self.unlisted > 0 {
                    let more = format!("and {} more invalid fields, not listed", self.unlisted);
                    self.listed.push(InvalidInput::new("", more));
                }
                Err(Error::InvalidArgument(self.listed))
            }
        }
    }
}

/// Runs `parse`, which builds a request from parsed parts with `?`:
/// `all(|| Some(Request { a: a?, b: b? }))`.
pub fn all<T>(parse: impl FnOnce() -> Option<T>) -> Option<T> {
    parse()
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
    /// The caller's API key is not allowed this (its entry's `allow:`
    /// does not name the permission).
    #[error("permission denied: the API key is not allowed {0}")]
    PermissionRequired(&'static str),
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
    /// The session's log holds as many entries as a session's log may.
    #[error("the session's log holds its limit of {limit} entries")]
    SessionLogQuota { limit: u64 },
    /// The caller's tenant holds its limit of open sessions.
    #[error("the tenant holds its limit of {limit} open sessions")]
    TenantSessionQuota { tenant: super::TenantId, limit: u64 },
    /// A watch resumed from a sequence the store no longer keeps events
    /// after (`expired`), or from one not recorded yet.
    #[error("the cursor is out of range")]
    CursorOutOfRange { expired: bool, oldest: u64, latest: u64 },
    /// A subscription resumed a channel from a sequence whose next
    /// message is no longer kept (`expired`), or from one not posted yet.
    #[error("the channel cursor is out of range")]
    ChannelCursorOutOfRange { channel: String, expired: bool, oldest: u64, latest: u64 },
    /// A subscriber fell more than its buffer behind and was cut off.
    #[error("the subscriber fell {max_behind} messages behind")]
    SubscriberTooSlow { max_behind: usize },
    /// A FollowLogs client did not take what it was sent for longer than
    /// the given time: the stream is ended rather than buffered.
    #[error("the follower fell behind")]
    FollowerTooSlow { waited: std::time::Duration },
    #[error("the store is unavailable")]
    Unavailable(#[source] StoreError),
    /// The store's disk is full; writes may succeed once space is freed.
    #[error("the store is full")]
    StoreFull(#[source] StoreError),
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
            StoreError::LogFull { max } => Error::SessionLogQuota { limit: max },
            err @ StoreError::Unavailable(_) => Error::Unavailable(err),
            err @ StoreError::Full(_) => Error::StoreFull(err),
            err @ StoreError::Internal(_) => Error::Internal(err),
        }
    }
}
