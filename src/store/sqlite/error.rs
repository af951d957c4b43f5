//! How SQLite's failures become [`StoreError`]s: busy or locked databases
//! are `Unavailable` (they may clear up), a full disk is `Full` (writes
//! fail until space is freed; reads still answer), everything else is
//! `Internal`. Error texts name tables and columns, never bound values.

use rusqlite::{Connection, ErrorCode};

use crate::store::StoreError;

/// What a failed SQLite call says about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Busy,
    Full,
    Other,
}

fn classify(e: &rusqlite::Error) -> Failure {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Failure::Busy,
        Some(ErrorCode::DiskFull) => Failure::Full,
        _ => Failure::Other,
    }
}

fn store_error(failure: Failure, cause: crate::store::BoxError) -> StoreError {
    match failure {
        Failure::Busy => StoreError::Unavailable(cause),
        Failure::Full => StoreError::Full(cause),
        Failure::Other => StoreError::Internal(cause),
    }
}

/// SQLite failures as store errors (see the module's header).
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        store_error(classify(&e), Box::new(e))
    }
}

/// Why a whole batch failed, told to each of its writes.
#[derive(Debug, thiserror::Error)]
#[error("the write batch did not commit: {0}")]
struct BatchFailed(String);

/// How a batch that did not commit failed. SQLite answers `SQLITE_FULL`
/// for most writes a full disk refuses, but an I/O error for some (growing
/// the WAL index, for one): the operating system's error, which `conn`
/// still holds right after the failure, tells those apart.
pub(super) fn batch_failure(conn: &Connection, e: &rusqlite::Error) -> BatchFailure {
    let failure = match classify(e) {
        Failure::Other if e.sqlite_error_code() == Some(ErrorCode::SystemIoFailure) && no_space_left(conn) => {
            Failure::Full
        }
        failure => failure,
    };
    BatchFailure { failure, message: e.to_string() }
}

/// Whether the last system call SQLite made on `conn` failed for want of
/// disk space.
fn no_space_left(conn: &Connection) -> bool {
    // SAFETY: the handle is only read by `sqlite3_system_errno`, on the
    // thread that owns `conn`, which stays open for the call.
    let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
    std::io::Error::from_raw_os_error(errno).kind() == std::io::ErrorKind::StorageFull
}

/// A batch's failure, kept to answer each of its writes.
#[derive(Debug, Clone)]
pub(super) struct BatchFailure {
    failure: Failure,
    message: String,
}

impl BatchFailure {
    /// What failed the batch, in a word: what tells its log lines apart.
    pub(super) fn kind(&self) -> &'static str {
        match self.failure {
            Failure::Busy => "busy",
            Failure::Full => "full",
            Failure::Other => "internal",
        }
    }

    /// The error each write of the batch is answered.
    pub(super) fn for_each_write(&self) -> StoreError {
        store_error(self.failure, Box::new(BatchFailed(self.message.clone())))
    }
}

pub(super) use crate::store::sql::internal;
