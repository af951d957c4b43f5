//! The embedded store: one SQLite file, journalled with WAL and written by a
//! single thread that commits all queued writes together (group commit).
//!
//! Each write is a closure sent to the writer thread. The writer takes every
//! write waiting (up to `MAX_BATCH`), opens one transaction and runs each
//! inside its own `SAVEPOINT`: a write that fails (an ended session, a
//! version conflict) is rolled back alone and answered its error while the
//! rest of the batch commits. Callers are answered after the `COMMIT`, which
//! with `synchronous=FULL` means the change is on disk. Reads run on a small
//! pool of their own connections on tokio's blocking threads; WAL lets them
//! see every committed batch without waiting for the writer.
//!
//! Events take their sequence from an `AUTOINCREMENT` key. With one writer,
//! and a rolled-back savepoint taking its increment with it, the numbers are
//! gapless and ordered, and a purge never makes them start over.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{Type, Value};
use rusqlite::{Connection, ErrorCode, OptionalExtension as _, Row, named_params, params, params_from_iter};
use tokio::sync::{mpsc, oneshot};

use super::{BoxError, EndOutcome, PageRequest, Purged, SessionFilter, Store, StoreError, StoreResult};
use crate::clock::UnixMillis;
use crate::domain::{
    EndReason, Event, EventType, Grants, Labels, LogEntry, LogId, LogLevel, LogQuery, LogRecord, NewEvent, Session,
    SessionEnd, SessionId, SessionKind, StorageMap, TokenHash, VersionedStorage,
};

/// The database file [`SqliteStore::open_in`] opens in a data directory.
pub const FILE_NAME: &str = "sessiond.db";
/// Most writes committed by one transaction.
const MAX_BATCH: usize = 512;
/// Writes that may wait for the writer before callers wait to queue more.
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;
/// Read connections; reads beyond this many wait for one to be free.
const READERS: usize = 4;
/// How long a statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one step per entry, applied in order in one transaction;
/// `PRAGMA user_version` counts the steps a database has. Append new steps,
/// never edit applied ones.
const MIGRATIONS: &[&str] = &["
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    user_id TEXT,
    endpoint TEXT NOT NULL,
    method TEXT NOT NULL,
    future_call TEXT NOT NULL,
    client_address TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    idle_ms INTEGER,
    lifetime_ms INTEGER,
    -- min(created_at + lifetime_ms, last_active_at + idle_ms); NULL when neither.
    expires_at INTEGER,
    trusted INTEGER NOT NULL,
    grants TEXT NOT NULL,
    grants_version INTEGER NOT NULL,
    storage TEXT NOT NULL,
    storage_version INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT,
    end_error TEXT,
    end_stack_trace TEXT,
    log_id TEXT,
    slow INTEGER NOT NULL DEFAULT 0,
    log_count INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);
CREATE INDEX sessions_by_creation ON sessions (created_at, id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at) WHERE ended_at IS NULL;
CREATE INDEX sessions_by_end ON sessions (ended_at);

CREATE TABLE log_entries (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    sequence INTEGER NOT NULL,
    level INTEGER NOT NULL,
    message TEXT NOT NULL,
    exception TEXT,
    stack_trace TEXT,
    client_time INTEGER,
    logged_at INTEGER NOT NULL
) STRICT;
CREATE INDEX log_entries_by_session ON log_entries (session_id, sequence);

CREATE TABLE events (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    session_id TEXT NOT NULL,
    user_id TEXT,
    kind TEXT NOT NULL,
    end_reason TEXT,
    at INTEGER NOT NULL
) STRICT;
CREATE INDEX events_by_time ON events (at);
"];

/// The columns [`session_from_row`] reads, as a literal for `concat!`.
macro_rules! session_columns {
    () => {
        "id, token_hash, kind, user_id, endpoint, method, future_call, client_address, user_agent, created_at, \
         last_active_at, idle_ms, lifetime_ms, trusted, grants, grants_version, ended_at, end_reason, end_error, \
         end_stack_trace, log_id, slow"
    };
}

/// The store of a single sessiond: a SQLite database file.
pub struct SqliteStore {
    path: PathBuf,
    writes: mpsc::Sender<Box<dyn WriteOp>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<ReadPool>,
}

impl SqliteStore {
    /// Opens (creating it and its directory when missing) the database at
    /// `path`, brings its schema up to date and starts the writer thread.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Internal(Box::new(e)))?;
        }
        let mut writer = connect(path)?;
        let mode: String = writer.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(internal(format!("the database refused WAL journalling (journal mode {mode})")));
        }
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let conn = connect(path)?;
                conn.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(conn))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer, queue))
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        tracing::debug!(path = %path.display(), "opened sqlite store");
        Ok(SqliteStore {
            path: path.to_owned(),
            writes,
            writer: Some(thread),
            readers: Arc::new(ReadPool { conns: readers, next: AtomicUsize::new(0) }),
        })
    }

    /// Opens [`FILE_NAME`] in the data directory `dir`.
    pub fn open_in(dir: &Path) -> StoreResult<SqliteStore> {
        Self::open(&dir.join(FILE_NAME))
    }

    /// Queues `op` for the writer and waits until its batch committed.
    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Pending { op: Some(op), result: None, reply });
        self.writes.send(pending).await.map_err(|_| internal("the sqlite writer has stopped"))?;
        answer.await.map_err(|_| internal("the sqlite writer has stopped"))?
    }

    /// Runs `read` on a pooled read connection on a blocking thread.
    async fn read<T, F>(&self, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || read(&readers.connection()))
            .await
            .map_err(|e| StoreError::Internal(Box::new(e)))?
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
        if let Some(thread) = self.writer.take() {
            if thread.join().is_err() {
                tracing::error!("the sqlite writer thread panicked");
            }
        }
    }
}

/// Opens one connection with the settings every connection needs.
fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// Applies the [`MIGRATIONS`] the database does not have yet.
fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: usize = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(internal(format!(
            "the database has schema version {applied}, newer than this sessiond's {}",
            MIGRATIONS.len()
        )));
    }
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step + 1)?;
        tracing::info!(version = step + 1, "migrated the sqlite schema");
    }
    tx.commit()?;
    Ok(())
}

/// One queued write: run on the writer thread, answered after its batch.
trait WriteOp: Send {
    /// Runs the write; `false` when it failed and must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: its own result, or why its batch did not commit.
    fn answer(self: Box<Self>, batch_failure: Option<&rusqlite::Error>);
}

/// A write closure, then its result until the batch is over.
struct Pending<T, F> {
    op: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> WriteOp for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else { return false };
        // A panicking write fails alone instead of taking the writer down.
        let result = catch_unwind(AssertUnwindSafe(|| op(conn))).unwrap_or_else(|_| Err(internal("a write panicked")));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, batch_failure: Option<&rusqlite::Error>) {
        let result = match (batch_failure, self.result) {
            (Some(e), _) => Err(batch_error(e)),
            (None, Some(result)) => result,
            (None, None) => Err(internal("the write was never run")),
        };
        // The caller may have stopped waiting; then no one needs the answer.
        let _ = self.reply.send(result);
    }
}

/// The writer thread: commits queued writes in batches until the store is
/// dropped and the queue is empty.
fn run_writer(conn: Connection, mut queue: mpsc::Receiver<Box<dyn WriteOp>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        let outcome = run_batch(&conn, &mut batch).and_then(|()| conn.execute_batch("COMMIT"));
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes = batch.len(), "a sqlite write batch did not commit");
            if !conn.is_autocommit() {
                // Failing to roll back leaves nothing more to do: the next
                // BEGIN fails and answers that batch its error.
                let _ = conn.execute_batch("ROLLBACK");
            }
        } else {
            tracing::trace!(writes = batch.len(), "committed a sqlite write batch");
        }
        for op in batch.drain(..) {
            op.answer(outcome.as_ref().err());
        }
    }
}

/// Runs a batch in one open transaction, each write in its own savepoint.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn WriteOp>]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for op in batch {
        conn.prepare_cached("SAVEPOINT write")?.execute([])?;
        if !op.run(conn) {
            conn.prepare_cached("ROLLBACK TO write")?.execute([])?;
        }
        conn.prepare_cached("RELEASE write")?.execute([])?;
    }
    Ok(())
}

/// The read connections, each behind its own lock.
struct ReadPool {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl ReadPool {
    /// A free connection if there is one, else waits for the next in turn.
    fn connection(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.conns.len();
        let ring = (0..count).map(|i| &self.conns[(start + i) % count]);
        for conn in ring {
            match conn.try_lock() {
                Ok(guard) => return guard,
                // A reader that panicked leaves no half-done state behind:
                // its statements were reset when they were dropped.
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.conns[start % count].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

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

fn batch_error(e: &rusqlite::Error) -> StoreError {
    let cause = Box::new(BatchFailed(e.to_string()));
    if is_busy(e) { StoreError::Unavailable(cause) } else { StoreError::Internal(cause) }
}

fn internal(message: impl Into<String>) -> StoreError {
    StoreError::Internal(message.into().into())
}

/// Serializes grants or storage. The error deliberately drops serde's text,
/// which may quote a value.
fn to_json(value: &impl serde::Serialize, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|_| internal(format!("cannot encode {what} as JSON")))
}

fn from_json<T: serde::de::DeserializeOwned>(row: &Row<'_>, column: &str) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|_| bad_value(row, column, "not the JSON expected".into()))
}

/// A stored value that does not convert back, as rusqlite reports it.
fn bad_value(row: &Row<'_>, column: &str, cause: BoxError) -> rusqlite::Error {
    match row.as_ref().column_index(column) {
        Ok(index) => rusqlite::Error::FromSqlConversionFailure(index, Type::Text, cause),
        Err(e) => e,
    }
}

/// Reads a column holding one of the domain's stable names.
fn parse_name<T>(row: &Row<'_>, column: &str, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    parse(&text).ok_or_else(|| bad_value(row, column, format!("unknown name {text:?}").into()))
}

fn millis(duration: Option<Duration>) -> Option<i64> {
    duration.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration(millis: Option<i64>) -> Option<Duration> {
    millis.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// A `LIMIT` for SQLite, which counts in `i64`.
fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: SessionId::from_stored(row.get("id")?),
        token_hash: TokenHash(row.get("token_hash")?),
        kind: parse_name(row, "kind", SessionKind::from_name)?,
        user_id: row.get("user_id")?,
        labels: Labels {
            endpoint: row.get("endpoint")?,
            method: row.get("method")?,
            future_call: row.get("future_call")?,
            client_address: row.get("client_address")?,
            user_agent: row.get("user_agent")?,
        },
        created_at: UnixMillis(row.get("created_at")?),
        last_active_at: UnixMillis(row.get("last_active_at")?),
        idle_timeout: duration(row.get("idle_ms")?),
        lifetime: duration(row.get("lifetime_ms")?),
        trusted: row.get("trusted")?,
        grants: from_json::<Grants>(row, "grants")?,
        grants_version: row.get("grants_version")?,
        end: end_from_row(row)?,
    })
}

fn end_from_row(row: &Row<'_>) -> rusqlite::Result<Option<SessionEnd>> {
    let Some(at) = row.get::<_, Option<i64>>("ended_at")? else { return Ok(None) };
    Ok(Some(SessionEnd {
        reason: parse_name(row, "end_reason", EndReason::from_name)?,
        at: UnixMillis(at),
        error: row.get("end_error")?,
        stack_trace: row.get("end_stack_trace")?,
        log_id: row.get::<_, Option<String>>("log_id")?.map(LogId::from_stored),
        slow: row.get("slow")?,
    }))
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let end_reason = match row.get::<_, Option<String>>("end_reason")? {
        None => None,
        Some(_) => Some(parse_name(row, "end_reason", EndReason::from_name)?),
    };
    Ok(Event {
        sequence: row.get("sequence")?,
        event: NewEvent {
            event_type: parse_name(row, "event_type", EventType::from_name)?,
            session_id: SessionId::from_stored(row.get("session_id")?),
            user_id: row.get("user_id")?,
            kind: parse_name(row, "kind", SessionKind::from_name)?,
            end_reason,
            at: UnixMillis(row.get("at")?),
        },
    })
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<LogRecord> {
    let level = row.get::<_, i64>("level")?;
    Ok(LogRecord {
        entry_id: row.get("entry_id")?,
        sequence: row.get("sequence")?,
        log_id: row.get::<_, Option<String>>("log_id")?.map(LogId::from_stored),
        session_id: SessionId::from_stored(row.get("session_id")?),
        user_id: row.get("user_id")?,
        kind: parse_name(row, "kind", SessionKind::from_name)?,
        entry: LogEntry {
            level: LogLevel::from_number(level)
                .ok_or_else(|| bad_value(row, "level", format!("level {level}").into()))?,
            message: row.get("message")?,
            exception: row.get("exception")?,
            stack_trace: row.get("stack_trace")?,
            client_time: row.get::<_, Option<i64>>("client_time")?.map(UnixMillis),
            logged_at: UnixMillis(row.get("logged_at")?),
        },
    })
}

/// A `WHERE` clause built from optional filters, with its `?` parameters in
/// order.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Where {
    fn and(&mut self, clause: impl Into<String>, params: impl IntoIterator<Item = Value>) {
        self.clauses.push(clause.into());
        self.params.extend(params);
    }

    fn and_in(&mut self, column: &str, values: Vec<Value>) {
        let marks = vec!["?"; values.len()].join(", ");
        self.and(format!("{column} IN ({marks})"), values);
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) }
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

/// The counters of an open session a write builds on; fails with
/// `NotFound` or `Ended` for any other.
struct OpenSession {
    grants_version: u64,
    storage_version: u64,
    log_count: u64,
}

fn open_session(conn: &Connection, id: &str) -> StoreResult<OpenSession> {
    let found = conn
        .prepare_cached("SELECT end_reason, grants_version, storage_version, log_count FROM sessions WHERE id = ?1")?
        .query_row([id], |row| {
            let reason = match row.get::<_, Option<String>>("end_reason")? {
                None => None,
                Some(_) => Some(parse_name(row, "end_reason", EndReason::from_name)?),
            };
            let counters = OpenSession {
                grants_version: row.get("grants_version")?,
                storage_version: row.get("storage_version")?,
                log_count: row.get("log_count")?,
            };
            Ok((reason, counters))
        })
        .optional()?;
    match found {
        None => Err(StoreError::NotFound),
        Some((Some(reason), _)) => Err(StoreError::Ended(reason)),
        Some((None, counters)) => Ok(counters),
    }
}

fn insert_event(conn: &Connection, event: &NewEvent) -> StoreResult<Event> {
    let sequence = conn
        .prepare_cached(
            "INSERT INTO events (event_type, session_id, user_id, kind, end_reason, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING sequence",
        )?
        .query_row(
            params![
                event.event_type.as_str(),
                event.session_id.as_str(),
                event.user_id,
                event.kind.as_str(),
                event.end_reason.map(EndReason::as_str),
                event.at.0,
            ],
            |row| row.get(0),
        )?;
    Ok(Event { sequence, event: event.clone() })
}

fn insert_session(
    conn: &Connection,
    s: &Session,
    grants: &str,
    storage: &str,
    storage_version: u64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
         user_agent, created_at, last_active_at, idle_ms, lifetime_ms, expires_at, trusted, grants, grants_version, \
         storage, storage_version) \
         VALUES (:id, :token_hash, :kind, :user_id, :endpoint, :method, :future_call, :client_address, \
         :user_agent, :created_at, :last_active_at, :idle_ms, :lifetime_ms, :expires_at, :trusted, :grants, \
         :grants_version, :storage, :storage_version)",
    )?
    .execute(named_params! {
        ":id": s.id.as_str(),
        ":token_hash": s.token_hash.0,
        ":kind": s.kind.as_str(),
        ":user_id": s.user_id,
        ":endpoint": s.labels.endpoint,
        ":method": s.labels.method,
        ":future_call": s.labels.future_call,
        ":client_address": s.labels.client_address,
        ":user_agent": s.labels.user_agent,
        ":created_at": s.created_at.0,
        ":last_active_at": s.last_active_at.0,
        ":idle_ms": millis(s.idle_timeout),
        ":lifetime_ms": millis(s.lifetime),
        ":expires_at": s.expires_at(s.last_active_at).map(|at| at.0),
        ":trusted": s.trusted,
        ":grants": grants,
        ":grants_version": s.grants_version,
        ":storage": storage,
        ":storage_version": storage_version,
    })?;
    Ok(())
}

fn record_activity(conn: &Connection, id: &str, at: UnixMillis) -> StoreResult<()> {
    let session = conn
        .prepare_cached(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = ?1 AND ended_at IS NULL AND last_active_at < ?2"
        ))?
        .query_row(params![id, at.0], session_from_row)
        .optional()?;
    if let Some(session) = session {
        conn.prepare_cached("UPDATE sessions SET last_active_at = ?2, expires_at = ?3 WHERE id = ?1")?
            .execute(params![id, at.0, session.expires_at(at).map(|t| t.0)])?;
    }
    Ok(())
}

fn end_session(conn: &Connection, id: &str, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
    let found = conn
        .prepare_cached(
            "SELECT ended_at, end_reason, end_error, end_stack_trace, log_id, slow FROM sessions WHERE id = ?1",
        )?
        .query_row([id], end_from_row)
        .optional()?;
    match found {
        None => return Err(StoreError::NotFound),
        Some(Some(existing)) => return Ok(EndOutcome::AlreadyEnded(existing)),
        Some(None) => {}
    }
    conn.prepare_cached(
        "UPDATE sessions SET ended_at = ?2, end_reason = ?3, end_error = ?4, end_stack_trace = ?5, log_id = ?6, \
         slow = ?7 WHERE id = ?1",
    )?
    .execute(params![
        id,
        end.at.0,
        end.reason.as_str(),
        end.error,
        end.stack_trace,
        end.log_id.as_ref().map(LogId::as_str),
        end.slow,
    ])?;
    if end.log_id.is_none() {
        conn.prepare_cached("DELETE FROM log_entries WHERE session_id = ?1")?.execute([id])?;
    }
    Ok(EndOutcome::Ended(insert_event(conn, event)?))
}

fn append_logs(conn: &Connection, id: &str, entries: &[LogEntry]) -> StoreResult<()> {
    let first = open_session(conn, id)?.log_count + 1;
    let mut insert = conn.prepare_cached(
        "INSERT INTO log_entries (session_id, sequence, level, message, exception, stack_trace, client_time, \
         logged_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (sequence, entry) in (first..).zip(entries) {
        insert.execute(params![
            id,
            sequence,
            entry.level as i64,
            entry.message,
            entry.exception,
            entry.stack_trace,
            entry.client_time.map(|t| t.0),
            entry.logged_at.0,
        ])?;
    }
    conn.prepare_cached("UPDATE sessions SET log_count = log_count + ?2 WHERE id = ?1")?
        .execute(params![id, entries.len() as u64])?;
    Ok(())
}

fn purge(conn: &Connection, ended_before: UnixMillis, events_before: UnixMillis) -> StoreResult<Purged> {
    // Log entries go with their sessions: the foreign key cascades.
    let sessions = conn.prepare_cached("DELETE FROM sessions WHERE ended_at < ?1")?.execute([ended_before.0])?;
    let events = conn.prepare_cached("DELETE FROM events WHERE at < ?1")?.execute([events_before.0])?;
    Ok(Purged { sessions: sessions as u64, events: events as u64 })
}

fn list_query(filter: &SessionFilter, page: &PageRequest) -> (String, Vec<Value>) {
    let mut w = Where::default();
    if let Some(user) = &filter.user_id {
        w.and("user_id = ?", [text(user)]);
    }
    if !filter.kinds.is_empty() {
        w.and_in("kind", filter.kinds.iter().map(|k| text(k.as_str())).collect());
    }
    match filter.open {
        Some(true) => w.and("ended_at IS NULL", []),
        Some(false) => w.and("ended_at IS NOT NULL", []),
        None => {}
    }
    if !filter.ids.is_empty() {
        w.and_in("id", filter.ids.iter().map(|id| text(id.as_str())).collect());
    }
    if let Some((created_at, id)) = &page.after {
        let at = Value::Integer(created_at.0);
        w.and("(created_at < ? OR (created_at = ? AND id < ?))", [at.clone(), at, text(id.as_str())]);
    }
    w.params.push(Value::Integer(sql_limit(page.limit)));
    let sql = format!(
        concat!("SELECT ", session_columns!(), " FROM sessions{} ORDER BY created_at DESC, id DESC LIMIT ?"),
        w.sql()
    );
    (sql, w.params)
}

fn logs_query(query: &LogQuery) -> (String, Vec<Value>) {
    let mut w = Where::default();
    w.and("s.log_id IS NOT NULL AND e.entry_id > ?", [Value::Integer(query.after_entry)]);
    if let Some(id) = &query.session_id {
        w.and("s.id = ?", [text(id.as_str())]);
    }
    if let Some(user) = &query.user_id {
        w.and("s.user_id = ?", [text(user)]);
    }
    if let Some(kind) = query.kind {
        w.and("s.kind = ?", [text(kind.as_str())]);
    }
    if let Some(from) = query.from {
        w.and("e.logged_at >= ?", [Value::Integer(from.0)]);
    }
    if let Some(to) = query.to {
        w.and("e.logged_at < ?", [Value::Integer(to.0)]);
    }
    if let Some(level) = query.min_level {
        w.and("e.level >= ?", [Value::Integer(level as i64)]);
    }
    if query.failed_only {
        w.and("s.end_reason = ?", [text(EndReason::Failed.as_str())]);
    }
    if query.slow_only {
        w.and("s.slow = 1", []);
    }
    w.params.push(Value::Integer(sql_limit(query.limit)));
    let sql = format!(
        "SELECT e.entry_id, e.sequence, e.level, e.message, e.exception, e.stack_trace, e.client_time, e.logged_at, \
         s.log_id, s.id AS session_id, s.user_id, s.kind \
         FROM log_entries e JOIN sessions s ON s.id = e.session_id{} ORDER BY e.entry_id LIMIT ?",
        w.sql()
    );
    (sql, w.params)
}

/// Runs a built query and converts each row.
fn query_all<T>(
    conn: &Connection,
    (sql, params): (String, Vec<Value>),
    convert: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(params), convert)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[async_trait]
impl Store for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %session.id))]
    async fn create_session(&self, session: &Session, storage: &StorageMap, event: &NewEvent) -> StoreResult<Event> {
        let grants = to_json(&session.grants, "grants")?;
        let values = to_json(storage, "storage")?;
        let version = u64::from(!storage.is_empty());
        let (session, event) = (session.clone(), event.clone());
        self.write(move |conn| {
            insert_session(conn, &session, &grants, &values, version)?;
            insert_event(conn, &event)
        })
        .await
    }

    async fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        let hash = *hash;
        self.read(move |conn| {
            let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE token_hash = ?1");
            Ok(conn.prepare_cached(sql)?.query_row([hash.0], session_from_row).optional()?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        let id = id.clone();
        self.read(move |conn| {
            let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = ?1");
            Ok(conn.prepare_cached(sql)?.query_row([id.as_str()], session_from_row).optional()?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn record_activity(&self, id: &SessionId, at: UnixMillis) -> StoreResult<()> {
        let id = id.clone();
        self.write(move |conn| record_activity(conn, id.as_str(), at)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id, reason = %end.reason))]
    async fn end_session(&self, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
        let (id, end, event) = (id.clone(), end.clone(), event.clone());
        self.write(move |conn| end_session(conn, id.as_str(), &end, &event)).await
    }

    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> StoreResult<Vec<Session>> {
        let query = list_query(filter, page);
        self.read(move |conn| query_all(conn, query, session_from_row)).await
    }

    async fn due_sessions(&self, now: UnixMillis, limit: usize) -> StoreResult<Vec<Session>> {
        let query = (
            concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE ended_at IS NULL AND expires_at <= ? ORDER BY expires_at, id LIMIT ?"
            )
            .to_owned(),
            vec![Value::Integer(now.0), Value::Integer(sql_limit(limit))],
        );
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
        self.write(move |conn| {
            let current = open_session(conn, id.as_str())?.grants_version;
            if current != expected_version {
                return Err(StoreError::Conflict { current });
            }
            conn.prepare_cached("UPDATE sessions SET grants = ?2, grants_version = ?3 WHERE id = ?1")?
                .execute(params![id.as_str(), grants, current + 1])?;
            Ok((current + 1, insert_event(conn, &event)?))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn storage(&self, id: &SessionId) -> StoreResult<VersionedStorage> {
        let id = id.clone();
        self.read(move |conn| {
            conn.prepare_cached("SELECT storage, storage_version FROM sessions WHERE id = ?1")?
                .query_row([id.as_str()], |row| {
                    Ok(VersionedStorage { version: row.get("storage_version")?, values: from_json(row, "storage")? })
                })
                .optional()?
                .ok_or(StoreError::NotFound)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn replace_storage(
        &self,
        id: &SessionId,
        expected_version: u64,
        values: &StorageMap,
        event: &NewEvent,
    ) -> StoreResult<(u64, Event)> {
        let values = to_json(values, "storage")?;
        let (id, event) = (id.clone(), event.clone());
        self.write(move |conn| {
            let current = open_session(conn, id.as_str())?.storage_version;
            if current != expected_version {
                return Err(StoreError::Conflict { current });
            }
            conn.prepare_cached("UPDATE sessions SET storage = ?2, storage_version = ?3 WHERE id = ?1")?
                .execute(params![id.as_str(), values, current + 1])?;
            Ok((current + 1, insert_event(conn, &event)?))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id, entries = entries.len()))]
    async fn append_logs(&self, id: &SessionId, entries: &[LogEntry]) -> StoreResult<()> {
        let (id, entries) = (id.clone(), entries.to_vec());
        self.write(move |conn| append_logs(conn, id.as_str(), &entries)).await
    }

    async fn query_logs(&self, query: &LogQuery) -> StoreResult<Vec<LogRecord>> {
        let query = logs_query(query);
        self.read(move |conn| query_all(conn, query, record_from_row)).await
    }

    async fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<Event>> {
        let query = (
            "SELECT sequence, event_type, session_id, user_id, kind, end_reason, at FROM events \
             WHERE sequence > ? ORDER BY sequence LIMIT ?"
                .to_owned(),
            vec![Value::Integer(i64::try_from(after).unwrap_or(i64::MAX)), Value::Integer(sql_limit(limit))],
        );
        self.read(move |conn| query_all(conn, query, event_from_row)).await
    }

    async fn last_event_sequence(&self) -> StoreResult<u64> {
        // The AUTOINCREMENT counter, not max(sequence): it survives purges.
        self.read(|conn| {
            let last = conn
                .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?
                .query_row([], |row| row.get::<_, u64>(0))
                .optional()?;
            Ok(last.unwrap_or(0))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge(&self, ended_before: UnixMillis, events_before: UnixMillis) -> StoreResult<Purged> {
        let purged = self.write(move |conn| purge(conn, ended_before, events_before)).await?;
        tracing::debug!(sessions = purged.sessions, events = purged.events, "purged the sqlite store");
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_version(conn: &Connection) -> usize {
        conn.pragma_query_value(None, "user_version", |row| row.get(0)).expect("user_version is always readable")
    }

    #[test]
    fn migrations_bring_a_new_database_to_the_latest_version_once() {
        let mut conn = Connection::open_in_memory().expect("an in-memory database opens");
        migrate(&mut conn).expect("a new database migrates");
        assert_eq!(user_version(&conn), MIGRATIONS.len());
        migrate(&mut conn).expect("migrating again is a no-op");
        assert_eq!(user_version(&conn), MIGRATIONS.len());
    }

    #[test]
    fn a_database_newer_than_this_code_is_refused() {
        let mut conn = Connection::open_in_memory().expect("an in-memory database opens");
        conn.pragma_update(None, "user_version", MIGRATIONS.len() + 1).expect("user_version is writable");
        assert!(matches!(migrate(&mut conn), Err(StoreError::Internal(_))));
    }

    #[test]
    fn list_queries_bind_one_parameter_per_placeholder() {
        let filter = SessionFilter {
            user_id: Some("u".into()),
            kinds: vec![SessionKind::WebUser, SessionKind::Internal],
            open: Some(false),
            ids: vec![SessionId::generate()],
        };
        let page = PageRequest { after: Some((UnixMillis(5), SessionId::generate())), limit: 10 };
        let (sql, params) = list_query(&filter, &page);
        assert_eq!(sql.matches('?').count(), params.len());
        let (sql, params) =
            logs_query(&LogQuery { from: Some(UnixMillis(1)), failed_only: true, ..LogQuery::default() });
        assert_eq!(sql.matches('?').count(), params.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_is_rolled_back_alone_and_the_others_commit() {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let store = SqliteStore::open_in(dir.path()).expect("a fresh database opens");
        store
            .write(|conn| Ok(conn.execute("CREATE TABLE scratch (n INTEGER)", [])?))
            .await
            .expect("a table is created");
        let failed = store.write(|conn| {
            conn.execute("INSERT INTO scratch VALUES (1)", [])?;
            Err::<(), _>(StoreError::NotFound)
        });
        let kept = store.write(|conn| Ok(conn.execute("INSERT INTO scratch VALUES (2)", [])?));
        let (failed, kept) = tokio::join!(failed, kept);
        assert!(matches!(failed, Err(StoreError::NotFound)));
        kept.expect("a write beside a failed one commits");
        let rows: Vec<i64> = store
            .read(|conn| {
                Ok(conn.prepare("SELECT n FROM scratch")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
            })
            .await
            .expect("the scratch table is readable");
        assert_eq!(rows, [2]);
    }
}
