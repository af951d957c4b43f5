//! The SQL of the reads: lookups by token or id, and the queries that
//! listings, expiry, log searches and the event feed build from their
//! filters, with one bound parameter per `?`.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension as _, Row, params_from_iter};

use super::rows::{from_json, session_columns, session_from_row};
use crate::clock::UnixMillis;
use crate::domain::{
    EventFilter, LogLevel, LogQuery, RequestDigest, RequestKey, Session, SessionId, TokenHash, VersionedStorage,
};
use crate::store::log_sql::{self, Param};
use crate::store::{PageRequest, RequestRecord, SessionFilter, StoreError, StoreResult};

/// A query's SQL and its `?` parameters in order.
pub(super) type Query = (String, Vec<Value>);

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

/// A `LIMIT` for SQLite, which counts in `i64`.
fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The session, open or ended, whose token hashes to `hash`.
pub(super) fn session_by_token(conn: &Connection, hash: &TokenHash) -> StoreResult<Option<Session>> {
    let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE token_hash = ?1");
    Ok(conn.prepare_cached(sql)?.query_row([hash.0], session_from_row).optional()?)
}

/// The session, open or ended, with this id.
pub(super) fn session_by_id(conn: &Connection, id: &SessionId) -> StoreResult<Option<Session>> {
    let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = ?1");
    Ok(conn.prepare_cached(sql)?.query_row([id.as_str()], session_from_row).optional()?)
}

/// A session's storage and its version.
pub(super) fn storage(conn: &Connection, id: &SessionId) -> StoreResult<VersionedStorage> {
    conn.prepare_cached("SELECT storage, storage_version FROM sessions WHERE id = ?1")?
        .query_row([id.as_str()], |row| {
            Ok(VersionedStorage { version: row.get("storage_version")?, values: from_json(row, "storage")? })
        })
        .optional()?
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
    let mut w = Where::default();
    if let Some(tenant) = &filter.tenant {
        w.and("tenant = ?", [text(tenant.as_str())]);
    }
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
        // A row value: the index's own order, a bound it seeks to.
        w.and("(created_at, id) < (?, ?)", [at, text(id.as_str())]);
    }
    w.params.push(Value::Integer(sql_limit(page.limit)));
    let sql = format!(
        concat!("SELECT ", session_columns!(), " FROM sessions{} ORDER BY created_at DESC, id DESC LIMIT ?"),
        w.sql()
    );
    (sql, w.params)
}

/// Open sessions expired by `now`, oldest expiry first.
pub(super) fn due_query(now: UnixMillis, limit: usize) -> Query {
    (
        concat!(
            "SELECT ",
            session_columns!(),
            // Named: without statistics SQLite may prefer sessions_by_end
            // for `ended_at IS NULL`, then sort every due session.
            " FROM sessions INDEXED BY sessions_due WHERE ended_at IS NULL AND expires_at <= ? \
             ORDER BY expires_at, id LIMIT ?"
        )
        .to_owned(),
        vec![Value::Integer(now.0), Value::Integer(sql_limit(limit))],
    )
}

/// Readable entries matching `query` below `horizon`, in the order they
/// became readable (see `store::log_sql`).
pub(super) fn logs_query(query: &LogQuery, horizon: i64) -> Query {
    let (sql, params) = log_sql::logs_sql(query, horizon, |n| format!("?{n}"), true);
    let params = params
        .into_iter()
        .map(|p| match p {
            Param::Int(n) => Value::Integer(n),
            Param::Text(t) => Value::Text(t),
        })
        .collect();
    (sql, params)
}

/// Where a walk for `query`'s time range may start (see `store::log_sql`).
pub(super) fn log_floor(conn: &Connection, query: &LogQuery) -> StoreResult<Option<i64>> {
    let Some((sql, Param::Int(at))) = log_sql::floor_sql(query, |n| format!("?{n}"), true) else {
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
    (
        "SELECT sequence, event_type, session_id, tenant, user_id, kind, end_reason, at FROM events \
         WHERE sequence > ? ORDER BY sequence LIMIT ?"
            .to_owned(),
        vec![Value::Integer(i64::try_from(after).unwrap_or(i64::MAX)), Value::Integer(sql_limit(limit))],
    )
}

/// Events matching `filter` in `(after, upto]`, in order, at most `limit`;
/// the tenant, session and user are matched by the indexes of step 5 of the schema.
pub(super) fn matching_events_query(filter: &EventFilter, after: u64, upto: u64, limit: usize) -> Query {
    let mut w = Where::default();
    let position = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    w.and("sequence > ? AND sequence <= ?", [position(after), position(upto)]);
    if let Some(tenant) = &filter.tenant {
        w.and("tenant = ?", [text(tenant.as_str())]);
    }
    if let Some(id) = &filter.session_id {
        w.and("session_id = ?", [text(id.as_str())]);
    }
    if let Some(user) = &filter.user_id {
        w.and("user_id = ?", [text(user)]);
    }
    if let Some(kind) = filter.kind {
        w.and("kind = ?", [text(kind.as_str())]);
    }
    let mut params = w.params;
    params.push(Value::Integer(sql_limit(limit)));
    (
        format!(
            "SELECT sequence, event_type, session_id, tenant, user_id, kind, end_reason, at FROM events{} \
             ORDER BY sequence LIMIT ?",
            if w.clauses.is_empty() { String::new() } else { format!(" WHERE {}", w.clauses.join(" AND ")) }
        ),
        params,
    )
}

/// Runs a built query and converts each row.
pub(super) fn query_all<T>(
    conn: &Connection,
    (sql, params): Query,
    convert: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(params), convert)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SessionKind, TenantId};

    #[test]
    fn list_queries_bind_one_parameter_per_placeholder() {
        let filter = SessionFilter {
            tenant: Some(TenantId::default()),
            user_id: Some("u".into()),
            kinds: vec![SessionKind::WebUser, SessionKind::Internal],
            open: Some(false),
            ids: vec![SessionId::generate()],
        };
        let page = PageRequest { after: Some((UnixMillis(5), SessionId::generate())), limit: 10 };
        let (sql, params) = list_query(&filter, &page);
        assert_eq!(sql.matches('?').count(), params.len());
    }
}
