//! The SQL of the reads: lookups by token or id, and the queries that
//! listings, expiry, log searches and the event feed build from their
//! filters, with one bound parameter per `?`.

use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::{Connection, OptionalExtension as _, ToSql, params_from_iter};

use super::rows::{all, from_json, one, session_columns, session_from_row};
use crate::clock::UnixMillis;
use crate::domain::{
    EventFilter, LogLevel, LogQuery, RequestDigest, RequestKey, Session, SessionId, TokenHash, VersionedStorage,
};
use crate::store::log_sql;
use crate::store::sql::{self, Dialect, Param};
use crate::store::{PageRequest, RequestRecord, SessionFilter, StoreError, StoreResult};

/// A query's SQL and its parameters in order.
pub(super) type Query = sql::Query;

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Int(n) => ToSqlOutput::Owned(Value::Integer(*n)),
            Param::Text(text) => ToSqlOutput::from(text.as_str()),
            // SQLite has no arrays: its dialect binds lists value by value.
            Param::Texts(_) => return Err(rusqlite::Error::ToSqlConversionFailure("a list bound as one value".into())),
        })
    }
}

/// The session, open or ended, whose token hashes to `hash`.
pub(super) fn session_by_token(conn: &Connection, hash: &TokenHash) -> StoreResult<Option<Session>> {
    let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE token_hash = ?1");
    one(conn, sql, [hash.0], session_from_row)
}

/// The session, open or ended, with this id.
pub(super) fn session_by_id(conn: &Connection, id: &SessionId) -> StoreResult<Option<Session>> {
    let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = ?1");
    one(conn, sql, [id.as_str()], session_from_row)
}

/// A session's storage and its version.
pub(super) fn storage(conn: &Connection, id: &SessionId) -> StoreResult<VersionedStorage> {
    one(conn, "SELECT storage, storage_version FROM sessions WHERE id = ?1", [id.as_str()], |row| {
        Ok(VersionedStorage { version: row.get("storage_version")?, values: from_json(row, "storage")? })
    })?
    .ok_or(StoreError::NotFound)
}

/// The last event sequence handed out, 0 when none.
pub(super) fn count_open_sessions(conn: &Connection) -> StoreResult<Vec<(String, u64)>> {
    let mut statement =
        conn.prepare_cached("SELECT kind, count(*) FROM sessions WHERE ended_at IS NULL GROUP BY kind ORDER BY kind")?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Open sessions of `tenant`, from the count the events' trigger keeps.
pub(super) fn open_sessions_of(conn: &Connection, tenant: &str) -> StoreResult<u64> {
    let open = conn
        .prepare_cached("SELECT open FROM tenant_sessions WHERE tenant = ?1")?
        .query_row([tenant], |row| row.get::<_, u64>(0))
        .optional()?;
    Ok(open.unwrap_or(0))
}

pub(super) fn last_event_sequence(conn: &Connection) -> StoreResult<u64> {
    // The AUTOINCREMENT counter, not max(sequence): it survives purges.
    let last = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?
        .query_row([], |row| row.get::<_, u64>(0))
        .optional()?;
    Ok(last.unwrap_or(0))
}

/// A page of the sessions matching `filter`, newest first.
pub(super) fn list_query(filter: &SessionFilter, page: &PageRequest) -> Query {
    sql::list_query(filter, page, Dialect::SQLITE)
}

/// Open sessions expired by `now`, oldest expiry first.
pub(super) fn due_query(now: UnixMillis, limit: usize) -> Query {
    sql::due_query(now, limit, Dialect::SQLITE)
}

/// Readable entries matching `query` below `horizon` (with a `ceiling`:
/// at or below it, and kept entries above it), in the order they became
/// readable (see `store::log_sql`).
pub(super) fn logs_query(query: &LogQuery, horizon: i64, ceiling: Option<i64>) -> Query {
    log_sql::logs_sql(query, horizon, ceiling, Dialect::SQLITE)
}

/// Where a walk for `query`'s time range may start (see `store::log_sql`).
pub(super) fn log_floor(conn: &Connection, query: &LogQuery) -> StoreResult<Option<i64>> {
    time_bound(conn, log_sql::floor_sql(query, Dialect::SQLITE))
}

/// Where a walk of continuous entries for `query`'s time range may stop
/// (see `store::log_sql`).
pub(super) fn log_ceiling(conn: &Connection, query: &LogQuery) -> StoreResult<Option<i64>> {
    time_bound(conn, log_sql::ceiling_sql(query, Dialect::SQLITE))
}

/// The position `bound` (a floor or ceiling query) answers, if any.
fn time_bound(conn: &Connection, bound: Option<(String, i64)>) -> StoreResult<Option<i64>> {
    let Some((sql, at)) = bound else {
        return Ok(None);
    };
    Ok(conn.prepare_cached(&sql)?.query_row([at], |row| row.get(0)).optional()?)
}

/// Everything below this position is readable: the writer commits one
/// transaction at a time, so what is committed is settled.
pub(super) fn log_horizon(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.prepare_cached("SELECT last_position + 1 FROM log_counter")?.query_row([], |row| row.get(0))?)
}

/// Whether a session's log holds an entry at or above `level`.
pub(super) fn log_level_reached(conn: &Connection, id: &str, level: LogLevel) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM log_entries WHERE session_id = ?1 AND level >= ?2)")?
        .query_row(rusqlite::params![id, level as i64], |row| row.get(0))?)
}

/// Events after sequence `after`, in order, at most `limit`.
pub(super) fn events_query(after: u64, limit: usize) -> Query {
    sql::events_query(after, limit, Dialect::SQLITE)
}

/// Events matching `filter` in `(after, upto]`, in order, at most `limit`;
/// the tenant, session and user are matched by the indexes of step 5 of the schema.
pub(super) fn matching_events_query(filter: &EventFilter, after: u64, upto: u64, limit: usize) -> Query {
    sql::matching_events_query(filter, after, upto, limit, Dialect::SQLITE)
}

/// Runs a built query and converts each row.
pub(super) fn query_all<T>(
    conn: &Connection,
    (sql, params): Query,
    convert: fn(&rusqlite::Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    all(conn, &sql, params_from_iter(params), convert)
}

/// The idempotency record under `key` stored at or after `since`.
pub(super) fn request_record(
    conn: &Connection,
    key: &RequestKey,
    since: UnixMillis,
) -> StoreResult<Option<RequestRecord>> {
    let found = conn
        .prepare_cached(
            "SELECT digest, session_id, sealed_token, accepted, at FROM request_ids WHERE lookup = ?1 AND at >= ?2",
        )?
        .query_row(rusqlite::params![key.0.as_slice(), since.0], |row| {
            Ok((
                row.get::<_, Vec<u8>>("digest")?,
                RequestRecord {
                    digest: RequestDigest([0; 32]),
                    session_id: SessionId::from_stored(row.get("session_id")?),
                    sealed_token: row.get("sealed_token")?,
                    accepted: row.get("accepted")?,
                    at: UnixMillis(row.get("at")?),
                },
            ))
        })
        .optional()?;
    let Some((digest, record)) = found else { return Ok(None) };
    let digest = digest.try_into().map_err(|_| super::error::internal("a stored request digest is not 32 bytes"))?;
    Ok(Some(RequestRecord { digest: RequestDigest(digest), ..record }))
}
