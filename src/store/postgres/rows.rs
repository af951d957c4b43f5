//! Rows back into domain values, and the `SELECT`s built from filters.
//!
//! A stored value that does not convert back is an internal error naming
//! the column, never the value.

use std::time::Duration;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{internal, sql_int};
use crate::clock::UnixMillis;
use crate::domain::{
    EndReason, Event, EventFilter, EventType, Grants, Labels, LogEntry, LogId, LogLevel, LogQuery, LogRecord, NewEvent,
    Session, SessionEnd, SessionId, SessionKind, TenantId, TokenHash, UnixMicros,
};
use crate::store::log_sql::{self, Param};
use crate::store::{PageRequest, SessionFilter, StoreResult};

/// A `BIGINT` that holds a count or version, which are never negative.
pub(super) fn unsigned(row: &Row, column: &str) -> StoreResult<u64> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| internal(format!("column {column} holds a negative number")))
}

/// A JSON document kept as text. The error drops serde's text, which may
/// quote a value.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(row: &Row, column: &str) -> StoreResult<T> {
    let text: &str = row.try_get(column)?;
    serde_json::from_str(text).map_err(|_| internal(format!("column {column} does not hold the JSON expected")))
}

/// A column holding one of the domain's stable names.
fn name<T>(row: &Row, column: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let text: &str = row.try_get(column)?;
    parse(text).ok_or_else(|| internal(format!("column {column} holds an unknown name")))
}

fn optional_name<T>(row: &Row, column: &str, parse: fn(&str) -> Option<T>) -> StoreResult<Option<T>> {
    match row.try_get::<_, Option<&str>>(column)? {
        None => Ok(None),
        Some(_) => name(row, column, parse).map(Some),
    }
}

pub(super) fn millis(duration: Option<Duration>) -> Option<i64> {
    duration.map(|d| sql_int(d.as_millis()))
}

fn duration(millis: Option<i64>) -> Option<Duration> {
    millis.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

pub(super) fn session_from_row(row: &Row) -> StoreResult<Session> {
    let hash: &[u8] = row.try_get("token_hash")?;
    Ok(Session {
        id: SessionId::from_stored(row.try_get("id")?),
        token_hash: TokenHash(hash.try_into().map_err(|_| internal("column token_hash is not 32 bytes long"))?),
        tenant: TenantId::from_stored(row.try_get("tenant")?),
        kind: name(row, "kind", SessionKind::from_name)?,
        user_id: row.try_get("user_id")?,
        labels: Labels {
            endpoint: row.try_get("endpoint")?,
            method: row.try_get("method")?,
            future_call: row.try_get("future_call")?,
            client_address: row.try_get("client_address")?,
            user_agent: row.try_get("user_agent")?,
        },
        created_at: UnixMillis(row.try_get("created_at")?),
        last_active_at: UnixMillis(row.try_get("last_active_at")?),
        idle_timeout: duration(row.try_get("idle_ms")?),
        lifetime: duration(row.try_get("lifetime_ms")?),
        trusted: row.try_get("trusted")?,
        grants: from_json::<Grants>(row, "grants")?,
        grants_version: unsigned(row, "grants_version")?,
        end: end_from_row(row)?,
    })
}

pub(super) fn end_from_row(row: &Row) -> StoreResult<Option<SessionEnd>> {
    let Some(at) = row.try_get::<_, Option<i64>>("ended_at")? else { return Ok(None) };
    Ok(Some(SessionEnd {
        reason: name(row, "end_reason", EndReason::from_name)?,
        at: UnixMillis(at),
        error: row.try_get("end_error")?,
        stack_trace: row.try_get("end_stack_trace")?,
        log_id: row.try_get::<_, Option<String>>("log_id")?.map(LogId::from_stored),
        slow: row.try_get("slow")?,
    }))
}

/// The end reason of a session row, `None` while it is open.
pub(super) fn end_reason(row: &Row) -> StoreResult<Option<EndReason>> {
    optional_name(row, "end_reason", EndReason::from_name)
}

pub(super) fn event_from_row(row: &Row) -> StoreResult<Event> {
    Ok(Event {
        sequence: unsigned(row, "sequence")?,
        event: NewEvent {
            event_type: name(row, "event_type", EventType::from_name)?,
            session_id: SessionId::from_stored(row.try_get("session_id")?),
            tenant: TenantId::from_stored(row.try_get("tenant")?),
            user_id: row.try_get("user_id")?,
            kind: name(row, "kind", SessionKind::from_name)?,
            end_reason: optional_name(row, "end_reason", EndReason::from_name)?,
            at: UnixMillis(row.try_get("at")?),
        },
    })
}

pub(super) fn record_from_row(row: &Row) -> StoreResult<LogRecord> {
    let level: i64 = row.try_get("level")?;
    Ok(LogRecord {
        entry_id: row.try_get("entry_id")?,
        position: row.try_get("position")?,
        sequence: unsigned(row, "sequence")?,
        log_id: row.try_get::<_, Option<String>>("log_id")?.map(LogId::from_stored),
        session_id: SessionId::from_stored(row.try_get("session_id")?),
        user_id: row.try_get("user_id")?,
        kind: name(row, "kind", SessionKind::from_name)?,
        endpoint: row.try_get("endpoint")?,
        entry: LogEntry {
            level: LogLevel::from_number(level).ok_or_else(|| internal("column level holds an unknown level"))?,
            message: row.try_get("message")?,
            exception: row.try_get("exception")?,
            stack_trace: row.try_get("stack_trace")?,
            client_time: row.try_get::<_, Option<i64>>("client_time")?.map(UnixMicros),
            logged_at: UnixMillis(row.try_get("logged_at")?),
            continuous: row.try_get("continuous")?,
        },
    })
}

/// A `WHERE` clause built from optional filters, with its parameters in
/// the order of their `$n` placeholders.
#[derive(Default)]
pub(super) struct Filters {
    clauses: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filters {
    /// Adds a parameter and answers its placeholder.
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    fn and(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) }
    }

    /// The parameters as the driver takes them.
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
    }
}

/// Events matching `filter` in `(after, upto]`, in order, at most `limit`;
/// the tenant, session and user are matched by the indexes of V6.
pub(super) fn matching_events_query(filter: &EventFilter, after: u64, upto: u64, limit: usize) -> (String, Filters) {
    let mut w = Filters::default();
    let (after, upto) = (w.bind(sql_int(after)), w.bind(sql_int(upto)));
    w.and(format!("sequence > {after} AND sequence <= {upto}"));
    if let Some(tenant) = &filter.tenant {
        let tenant = w.bind(tenant.as_str().to_owned());
        w.and(format!("tenant = {tenant}"));
    }
    if let Some(id) = &filter.session_id {
        let id = w.bind(id.as_str().to_owned());
        w.and(format!("session_id = {id}"));
    }
    if let Some(user) = &filter.user_id {
        let user = w.bind(user.clone());
        w.and(format!("user_id = {user}"));
    }
    if let Some(kind) = filter.kind {
        let kind = w.bind(kind.as_str());
        w.and(format!("kind = {kind}"));
    }
    let limit = w.bind(sql_int(limit));
    let sql = format!(
        "SELECT sequence, event_type, session_id, tenant, user_id, kind, end_reason, at FROM events{} \
         ORDER BY sequence LIMIT {limit}",
        w.sql()
    );
    (sql, w)
}

pub(super) fn list_query(filter: &SessionFilter, page: &PageRequest) -> (String, Filters) {
    let mut w = Filters::default();
    if let Some(tenant) = &filter.tenant {
        let tenant = w.bind(tenant.as_str().to_owned());
        w.and(format!("tenant = {tenant}"));
    }
    if let Some(user) = &filter.user_id {
        let user = w.bind(user.clone());
        w.and(format!("user_id = {user}"));
    }
    // One kind is an equality, which keeps the kind's index in page order.
    match filter.kinds.as_slice() {
        [] => {}
        [kind] => {
            let kind = w.bind(kind.as_str().to_owned());
            w.and(format!("kind = {kind}"));
        }
        kinds => {
            let kinds = w.bind(kinds.iter().map(|k| k.as_str().to_owned()).collect::<Vec<_>>());
            w.and(format!("kind = ANY({kinds})"));
        }
    }
    match filter.open {
        Some(true) => w.and("ended_at IS NULL".into()),
        Some(false) => w.and("ended_at IS NOT NULL".into()),
        None => {}
    }
    if !filter.ids.is_empty() {
        let ids = w.bind(filter.ids.iter().map(|id| id.as_str().to_owned()).collect::<Vec<_>>());
        w.and(format!("id = ANY({ids})"));
    }
    if let Some((created_at, id)) = &page.after {
        let (at, id) = (w.bind(created_at.0), w.bind(id.as_str().to_owned()));
        // A row comparison: the index's own order, a bound it seeks to.
        w.and(format!("(created_at, id) < ({at}, {id})"));
    }
    let limit = w.bind(sql_int(page.limit));
    let sql = format!(
        concat!("SELECT ", session_columns!(), " FROM sessions{} ORDER BY created_at DESC, id DESC LIMIT {}"),
        w.sql(),
        limit
    );
    (sql, w)
}

/// Readable entries matching `query` below `horizon`, in the order they
/// became readable (see `store::log_sql`).
pub(super) fn logs_query(query: &LogQuery, horizon: i64) -> (String, Filters) {
    let (sql, params) = log_sql::logs_sql(query, horizon, |n| format!("${n}"), false);
    let mut w = Filters::default();
    for param in params {
        match param {
            Param::Int(n) => w.bind(n),
            Param::Text(t) => w.bind(t),
        };
    }
    (sql, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LogCursor;

    /// The highest `$n` in `sql`.
    fn placeholders(sql: &str) -> usize {
        sql.split('$')
            .skip(1)
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn built_queries_bind_one_parameter_per_placeholder() {
        let filter = SessionFilter {
            tenant: Some(TenantId::default()),
            user_id: Some("u".into()),
            kinds: vec![SessionKind::WebUser, SessionKind::Internal],
            open: Some(false),
            ids: vec![SessionId::generate()],
        };
        let page = PageRequest { after: Some((UnixMillis(5), SessionId::generate())), limit: 10 };
        let (sql, filters) = list_query(&filter, &page);
        assert_eq!(placeholders(&sql), filters.params().len());
        let (sql, filters) = list_query(&SessionFilter::default(), &PageRequest { after: None, limit: 1 });
        assert_eq!(placeholders(&sql), filters.params().len());
        let query = LogQuery {
            tenant: Some(TenantId::default()),
            session_id: Some(SessionId::generate()),
            user_id: Some("u".into()),
            kind: Some(SessionKind::WebCall),
            endpoint: Some("checkout".into()),
            from: Some(UnixMillis(1)),
            to: Some(UnixMillis(2)),
            min_level: Some(LogLevel::Warning),
            failed_only: true,
            slow_only: true,
            after: LogCursor { position: 3, entry_id: 5 },
            limit: 4,
        };
        let (sql, filters) = logs_query(&query, 7);
        assert_eq!(placeholders(&sql), filters.params().len());
    }
}
