//! How SQLite's failures become [`StoreError`]s: busy or locked databases
//! are `Unavailable` (they may clear up), everything else is `Internal`.
//! Error texts name tables and columns, never bound values.

use rusqlite::ErrorCode;

use crate::store::StoreError;

/// SQLite failures: busy or locked databases may clear up, the rest is
/// internal. Error texts name tables and columns, never bound values.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if is_busy(&e) { StoreError::Unavailable(Box::new(e)) } else { StoreError::Internal(Box::new(e)) }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// Why a whole batch failed, told to each of its writes.
#[derive(Debug, thiserror::Error)]
#[error("the write batch did not commit: {0}")]
struct BatchFailed(String);

/// The error each write of a batch that did not commit is answered.
pub(super) fn batch_error(e: &rusqlite::Error) -> StoreError {
    let cause = Box::new(BatchFailed(e.to_string()));
    if is_busy(e) { StoreError::Unavailable(cause) } else { StoreError::Internal(cause) }
}

/// An internal failure told in our own words.
pub(super) fn internal(message: impl Into<String>) -> StoreError {
    StoreError::Internal(message.into().into())
}
