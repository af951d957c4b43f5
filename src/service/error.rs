//! The errors the domain service answers. The gRPC layer maps each variant
//! to a status exactly once (`grpc::status`). Pure request faults
//! ([`InvalidInput`], [`InvalidRequest`], [`QuotaExceeded`]) are the
//! domain's; store faults become [`Error`] here, so the domain knows no
//! store.

use crate::domain::{EndReason, InvalidInput, InvalidRequest, QuotaExceeded, TenantId};
use crate::store::StoreError;

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
    TenantSessionQuota { tenant: TenantId, limit: u64 },
    /// The caller's tenant holds its limit of log entries.
    #[error("the tenant holds its limit of {limit} log entries")]
    TenantLogQuota { tenant: TenantId, limit: u64 },
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

/// A store error of a write for `tenant`, its tenant quotas named: the
/// store refuses a create when the tenant holds
/// `--max-open-sessions-per-tenant` open sessions, and an append that would
/// take it past `--max-log-entries-per-tenant` entries, each against the
/// count committed when the write begins, after the call began (writes of
/// one tenant at that same moment, on any replica, do not see each other).
pub(super) fn tenant_quota(err: StoreError, tenant: &TenantId) -> Error {
    let (reason, quota) = match err {
        StoreError::TenantFull { max } => {
            ("TENANT_SESSION_QUOTA", Error::TenantSessionQuota { tenant: tenant.clone(), limit: max })
        }
        StoreError::TenantLogFull { max } => {
            ("TENANT_LOG_QUOTA", Error::TenantLogQuota { tenant: tenant.clone(), limit: max })
        }
        err => return err.into(),
    };
    crate::telemetry::metrics::call_shed(reason);
    quota
}

fn describe(violations: &[InvalidInput]) -> String {
    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

impl From<InvalidInput> for Error {
    fn from(value: InvalidInput) -> Self {
        Error::InvalidArgument(vec![value])
    }
}

impl From<InvalidRequest> for Error {
    fn from(value: InvalidRequest) -> Self {
        Error::InvalidArgument(value.0)
    }
}

impl From<QuotaExceeded> for Error {
    fn from(QuotaExceeded { subject, description }: QuotaExceeded) -> Self {
        Error::QuotaExceeded { subject, description }
    }
}

impl From<StoreError> for Error {
    fn from(value: StoreError) -> Self {
        match value {
            StoreError::NotFound => Error::SessionNotFound,
            StoreError::Ended(reason) => Error::SessionEnded(reason),
            StoreError::Conflict { current } => Error::VersionConflict { current },
            StoreError::LogFull { max } => Error::SessionLogQuota { limit: max },
            // A create or an append refused for its tenant names the tenant
            // (`tenant_quota`).
            err @ (StoreError::TenantFull { .. } | StoreError::TenantLogFull { .. }) => Error::Internal(err),
            err @ StoreError::Unavailable(_) => Error::Unavailable(err),
            err @ StoreError::Full(_) => Error::StoreFull(err),
            err @ StoreError::Internal(_) => Error::Internal(err),
        }
    }
}
