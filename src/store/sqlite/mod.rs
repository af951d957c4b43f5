//! The embedded store: one SQLite file, journalled with WAL and written by a
//! single thread that commits all queued writes together (group commit).
//!
//! Writes are closures queued for the writer thread, which commits each
//! batch in one transaction, every write in its own savepoint; callers are
//! answered once the batch is on disk. Reads run on a small pool of their own
//! connections on tokio's blocking threads and see every committed batch
//! without waiting for the writer.
//!
//! - `schema`: migrations and the pragmas of every connection;
//! - `writer`: the writer thread and its group commit;
//! - `pool`: the read connections;
//! - `reads` and `writes`: the SQL of each operation;
//! - `rows`: row ↔ domain mapping;
//! - `error`: SQLite failures as [`StoreError`]s.

use std::fmt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::mpsc;

use self::pool::ReadPool;
use self::reads::query_all;
use self::rows::{event_from_row, record_from_row, session_from_row, to_json};
use self::writer::WriteQueue;
use super::log_sql;
use super::{
    Coordination, EndOutcome, Ending, EventLog, LogLimits, NewRequest, Once, PageRequest, Purged, RequestRecord,
    SessionFilter, SessionLogs, SessionRecords, SessionStorage, StoreError, StoreResult,
};
use crate::clock::UnixMillis;
use crate::domain::{
    EncodedStorage, Event, EventFilter, Grants, LogEntry, LogLevel, LogPage, LogQuery, NewEvent, RequestKey, Session,
    SessionEnd, SessionId, TenantId, TokenHash, VersionedStorage,
};

mod error;
mod lock;
mod messages;
mod pool;
mod reads;
mod rows;
mod schema;
mod writer;
mod writes;

/// How long a read or write may wait on the database (a stalled disk)
/// before it is answered unavailable. A write answered so may still commit
/// later, like any write whose answer was lost; one not begun by then is
/// never applied.
pub const STALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn stalled() -> StoreError {
    StoreError::Unavailable("the embedded store did not answer in time".into())
}

/// The database file [`SqliteStore::open_in`] opens in a data directory.
pub const FILE_NAME: &str = "sessiond.db";

pub use lock::{LOCK_FILE_NAME, LockError};
pub use messages::SqliteMessages;
pub use schema::SCHEMA_VERSION;

/// The store of a single sessiond: a SQLite database file.
pub struct SqliteStore {
    path: PathBuf,
    writes: WriteQueue,
    writer: Option<JoinHandle<()>>,
    readers: ReadPool,
    /// Keeps other processes out of the directory while the store is open.
    _lock: lock::DirectoryLock,
    /// Entries a session's log and a tenant may hold.
    log_limits: LogLimits,
    /// Open sessions one tenant may hold (zero: no limit).
    max_open_sessions: u64,
}

impl SqliteStore {
    /// Opens (creating it and its directory when missing) the database at
    /// `path`, brings its schema up to date and starts the writer thread.
    /// Fails with a [`LockError`] when another process has the directory
    /// open.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Internal(Box::new(e)))?;
        let lock = lock::DirectoryLock::acquire(dir).map_err(|e| StoreError::Internal(Box::new(e)))?;
        let mut conn = schema::connect(path)?;
        schema::use_wal(&conn)?;
        schema::migrate(&mut conn)?;
        let readers = ReadPool::open(path)?;
        let (writes, thread) = writer::start(conn)?;
        tracing::debug!(path = %path.display(), "opened sqlite store");
        Ok(SqliteStore {
            path: path.to_owned(),
            writes,
            writer: Some(thread),
            readers,
            _lock: lock,
            log_limits: LogLimits::default(),
            max_open_sessions: 0,
        })
    }

    /// Opens [`FILE_NAME`] in the data directory `dir`.
    pub fn open_in(dir: &Path) -> StoreResult<SqliteStore> {
        Self::open(&dir.join(FILE_NAME))
    }

    /// The store with a limit of `max` entries per session's log (zero:
    /// none, as opened).
    pub fn with_max_log_entries(mut self, max: u64) -> SqliteStore {
        self.log_limits.per_session = max;
        self
    }

    /// The store with a limit of `max` log entries per tenant (zero: none,
    /// as opened): an append past it is refused with
    /// [`StoreError::TenantLogFull`], counted in the append's own
    /// transaction.
    pub fn with_max_log_entries_per_tenant(mut self, max: u64) -> SqliteStore {
        self.log_limits.per_tenant = max;
        self
    }

    /// The store with a limit of `max` open sessions per tenant (zero:
    /// none, as opened): a create past it is refused with
    /// [`StoreError::TenantFull`], counted in the create's own transaction.
    pub fn with_max_open_sessions_per_tenant(mut self, max: u64) -> SqliteStore {
        self.max_open_sessions = max;
        self
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Drop for SqliteStore {
    /// Lets the writer commit what is queued, then waits for it to close the
    /// database, so the file is released when the store is gone.
    fn drop(&mut self) {
        // Replacing the only sender with a dead one closes the queue.
        drop(std::mem::replace(&mut self.writes, mpsc::channel(1).0));
        if let Some(thread) = self.writer.take()
            && thread.join().is_err()
        {
            tracing::error!("the sqlite writer thread panicked");
        }
    }
}

#[async_trait]
impl SessionRecords for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %session.id))]
    async fn create_session(&self, session: Session, storage: EncodedStorage, event: NewEvent) -> StoreResult<Event> {
        let grants = to_json(&session.grants, "grants")?;
        let version = u64::from(!storage.is_empty());
        let values = storage.into_json();
        let max_open = self.max_open_sessions;
        self.write(move |conn| writes::create_session(conn, &session, &grants, &values, version, &event, max_open))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %session.id))]
    async fn create_session_once(
        &self,
        session: Session,
        storage: EncodedStorage,
        event: NewEvent,
        request: NewRequest,
    ) -> StoreResult<Once<Event>> {
        let grants = to_json(&session.grants, "grants")?;
        let version = u64::from(!storage.is_empty());
        let values = storage.into_json();
        let max_open = self.max_open_sessions;
        self.write(move |conn| {
            writes::create_session_once(conn, &session, &grants, &values, version, &event, &request, max_open)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        let hash = *hash;
        self.read(move |conn| reads::session_by_token(conn, &hash)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        let id = id.clone();
        self.read(move |conn| reads::session_by_id(conn, &id)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn record_activity(&self, id: &SessionId, at: UnixMillis) -> StoreResult<()> {
        let activity = [(id.clone(), at)];
        self.write(move |conn| writes::record_activities(conn, &activity)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(sessions = activity.len()))]
    async fn move_expiries(&self, activity: &[(SessionId, UnixMillis)]) -> StoreResult<usize> {
        let activity = activity.to_vec();
        self.write(move |conn| writes::move_expiries(conn, &activity)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id, reason = %end.reason))]
    async fn end_session(&self, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
        let (id, end, event) = (id.clone(), end.clone(), event.clone());
        self.write(move |conn| writes::end_session(conn, id.as_str(), &end, &event)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(sessions = endings.len()))]
    async fn end_sessions(&self, endings: Vec<Ending>) -> StoreResult<Vec<(SessionId, EndOutcome)>> {
        self.write(move |conn| writes::end_sessions(conn, &endings)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(sessions = activity.len()))]
    async fn record_activities(&self, activity: &[(SessionId, UnixMillis)]) -> StoreResult<()> {
        let activity = activity.to_vec();
        self.write(move |conn| writes::record_activities(conn, &activity)).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> StoreResult<Vec<Session>> {
        let query = reads::list_query(filter, page);
        self.read(move |conn| query_all(conn, query, session_from_row)).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn due_sessions(&self, now: UnixMillis, limit: usize) -> StoreResult<Vec<Session>> {
        let query = reads::due_query(now, limit);
        self.read(move |conn| query_all(conn, query, session_from_row)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn update_grants(
        &self,
        id: &SessionId,
        expected_version: u64,
        grants: &Grants,
        event: &NewEvent,
    ) -> StoreResult<(u64, Event)> {
        let grants = to_json(grants, "grants")?;
        let (id, event) = (id.clone(), event.clone());
        self.write(move |conn| writes::update_grants(conn, id.as_str(), expected_version, &grants, &event)).await
    }

    async fn count_open_sessions(&self) -> StoreResult<Vec<(String, u64)>> {
        self.read(reads::count_open_sessions).await
    }

    async fn open_sessions_of(&self, tenant: &TenantId) -> StoreResult<u64> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |conn| reads::open_sessions_of(conn, &tenant)).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge(
        &self,
        ended_before: UnixMillis,
        events_before: UnixMillis,
        requests_before: UnixMillis,
    ) -> StoreResult<Purged> {
        let purged = self.write(move |conn| writes::purge(conn, ended_before, events_before, requests_before)).await?;
        tracing::debug!(sessions = purged.sessions, events = purged.events, "purged the sqlite store");
        Ok(purged)
    }
}

#[async_trait]
impl SessionStorage for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn storage(&self, id: &SessionId) -> StoreResult<VersionedStorage> {
        let id = id.clone();
        self.read(move |conn| reads::storage(conn, &id)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn replace_storage(
        &self,
        id: &SessionId,
        expected_version: u64,
        values: EncodedStorage,
        event: NewEvent,
    ) -> StoreResult<(u64, Event)> {
        let (id, values) = (id.clone(), values.into_json());
        self.write(move |conn| writes::replace_storage(conn, id.as_str(), expected_version, &values, &event)).await
    }
}

#[async_trait]
impl SessionLogs for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id, entries = entries.len()))]
    async fn append_logs(&self, id: &SessionId, entries: Vec<LogEntry>) -> StoreResult<()> {
        let (id, max) = (id.clone(), self.log_limits);
        self.write(move |conn| writes::append_logs(conn, id.as_str(), &entries, max)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id, entries = entries.len()))]
    async fn append_logs_once(
        &self,
        id: &SessionId,
        entries: Vec<LogEntry>,
        request: NewRequest,
    ) -> StoreResult<Once<()>> {
        let (id, max) = (id.clone(), self.log_limits);
        self.write(move |conn| writes::append_logs_once(conn, id.as_str(), &entries, &request, max)).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn query_logs(&self, query: &LogQuery) -> StoreResult<LogPage> {
        let query = query.clone();
        self.read(move |conn| {
            let horizon = reads::log_horizon(conn)?;
            let query = log_sql::from_floor(&query, reads::log_floor(conn, &query)?);
            let ceiling = reads::log_ceiling(conn, &query)?;
            let records = query_all(conn, reads::logs_query(&query, horizon, ceiling), record_from_row)?;
            Ok(LogPage { records, horizon })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn log_level_reached(&self, id: &SessionId, level: LogLevel) -> StoreResult<bool> {
        let id = id.clone();
        self.read(move |conn| reads::log_level_reached(conn, id.as_str(), level)).await
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<Event>> {
        let query = reads::events_query(after, limit);
        self.read(move |conn| query_all(conn, query, event_from_row)).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn matching_events(
        &self,
        filter: &EventFilter,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let query = reads::matching_events_query(filter, after, upto, limit);
        self.read(move |conn| query_all(conn, query, event_from_row)).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn last_event_sequence(&self) -> StoreResult<u64> {
        self.read(reads::last_event_sequence).await
    }
}

#[async_trait]
impl Coordination for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn request_record(&self, key: &RequestKey, since: UnixMillis) -> StoreResult<Option<RequestRecord>> {
        let key = *key;
        self.read(move |conn| reads::request_record(conn, &key, since)).await
    }
}
