//! What the two SQL stores share: the session columns, the mapping of rows
//! back to sessions, ends, events and log records, and the `SELECT`s that
//! listings, expiry and the event feed build from their filters.
//!
//! Each store reads its own row type through [`Columns`] and writes its
//! own placeholders and index hints through a [`Dialect`]; the SQL and the
//! conversions are written once, here (the log search's query is in
//! `log_sql`). A stored value that does not convert back is an internal
//! error naming the column, never the value.

use std::time::Duration;

use super::{PageRequest, SessionFilter, StoreError, StoreResult};
use crate::clock::{UnixMillis, whole_millis};
use crate::domain::{
    EndReason, Event, EventFilter, EventType, Grants, Labels, LogEntry, LogId, LogLevel, LogRecord, NewEvent, Session,
    SessionEnd, SessionId, SessionKind, TenantId, TokenHash, UnixMicros,
};

/// A bound value of a built query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Int(i64),
    Text(String),
    /// A text array, bound as one value where the store takes arrays
    /// ([`Dialect::arrays`]).
    Texts(Vec<String>),
}

/// The columns [`session_from_row`] reads from `sessions` (unaliased), as
/// a literal for `concat!`. An open session's last activity is the later
/// of its own and the one written apart in `session_activity`; an end
/// takes the later one into the session's own (writes after it do not
/// count).
macro_rules! session_columns {
    () => {
        "id, token_hash, tenant, kind, user_id, endpoint, method, future_call, client_address, user_agent, created_at, \
         coalesce((SELECT a.last_active_at FROM session_activity AS a WHERE a.id = sessions.id \
         AND a.last_active_at > sessions.last_active_at AND sessions.ended_at IS NULL), sessions.last_active_at) \
         AS last_active_at, \
         idle_ms, lifetime_ms, trusted, grants, grants_version, ended_at, end_reason, end_error, \
         end_stack_trace, log_id, slow"
    };
}
pub(crate) use session_columns;

/// The columns [`event_from_row`] reads.
const EVENT_COLUMNS: &str = "sequence, event_type, session_id, tenant, user_id, kind, end_reason, at";

/// A row of either store, read by column name. A column whose stored type
/// does not match is the store's own error.
pub trait Columns {
    fn text(&self, column: &str) -> StoreResult<String>;
    fn optional_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn optional_int(&self, column: &str) -> StoreResult<Option<i64>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>>;
}

/// How a store writes what the shared SQL leaves open.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The placeholder of the n-th parameter (from 1): `?n`, `$n`.
    pub placeholder: fn(usize) -> String,
    /// Whether to name the index a query must walk (SQLite's `INDEXED
    /// BY`), so that its plan never depends on statistics.
    pub indexed_by: bool,
    /// Whether a list of values is bound as one array (`= ANY($n)`), so
    /// that the statement is the same whatever the list's length (one
    /// prepared statement, not one per length); otherwise `IN (?, …)`.
    pub arrays: bool,
}

impl Dialect {
    /// Postgres' side of the shared SQL: `$n` placeholders, plans left to
    /// the planner, lists bound as arrays.
    pub const POSTGRES: Dialect = Dialect { placeholder: |n| format!("${n}"), indexed_by: false, arrays: true };
    /// SQLite's side of the shared SQL: `?n` placeholders, and indexes
    /// named (`INDEXED BY`) since the plans never wait for statistics.
    pub const SQLITE: Dialect = Dialect { placeholder: |n| format!("?{n}"), indexed_by: true, arrays: false };
}

/// An internal failure told in the store's own words (never a value).
pub(crate) fn internal(message: impl Into<String>) -> StoreError {
    StoreError::Internal(message.into().into())
}

/// A column holding a count or version, which are never negative.
pub fn unsigned(row: &impl Columns, column: &str) -> StoreResult<u64> {
    u64::try_from(row.int(column)?).map_err(|_| internal(format!("column {column} holds a negative number")))
}

/// A JSON document kept as text. The error drops serde's text, which may
/// quote a value.
pub fn from_json<T: serde::de::DeserializeOwned>(row: &impl Columns, column: &str) -> StoreResult<T> {
    serde_json::from_str(&row.text(column)?)
        .map_err(|_| internal(format!("column {column} does not hold the JSON expected")))
}

/// Grants or storage as stored. The error drops serde's text, which may
/// quote a value.
pub fn to_json(value: &impl serde::Serialize, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|_| internal(format!("cannot encode {what} as JSON")))
}

/// A column holding one of the domain's stable names.
fn name<T>(row: &impl Columns, column: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    parse(&row.text(column)?).ok_or_else(|| internal(format!("column {column} holds an unknown name")))
}

fn optional_name<T>(row: &impl Columns, column: &str, parse: fn(&str) -> Option<T>) -> StoreResult<Option<T>> {
    match row.optional_text(column)? {
        None => Ok(None),
        Some(text) => parse(&text).map(Some).ok_or_else(|| internal(format!("column {column} holds an unknown name"))),
    }
}

/// A timeout as stored: whole milliseconds.
pub fn millis(duration: Option<Duration>) -> Option<i64> {
    duration.map(whole_millis)
}

fn duration(millis: Option<i64>) -> Option<Duration> {
    millis.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// A session from a row of the [`session_columns!`].
pub fn session_from_row(row: &impl Columns) -> StoreResult<Session> {
    let hash = row.bytes("token_hash")?;
    Ok(Session {
        id: SessionId::from_stored(row.text("id")?),
        token_hash: TokenHash(hash.try_into().map_err(|_| internal("column token_hash is not 32 bytes long"))?),
        tenant: TenantId::from_stored(row.text("tenant")?),
        kind: name(row, "kind", SessionKind::from_name)?,
        user_id: row.optional_text("user_id")?,
        labels: Labels {
            endpoint: row.text("endpoint")?,
            method: row.text("method")?,
            future_call: row.text("future_call")?,
            client_address: row.text("client_address")?,
            user_agent: row.text("user_agent")?,
        },
        created_at: UnixMillis(row.int("created_at")?),
        last_active_at: UnixMillis(row.int("last_active_at")?),
        idle_timeout: duration(row.optional_int("idle_ms")?),
        lifetime: duration(row.optional_int("lifetime_ms")?),
        trusted: row.flag("trusted")?,
        grants: from_json::<Grants>(row, "grants")?,
        grants_version: unsigned(row, "grants_version")?,
        end: end_from_row(row)?,
    })
}

/// How a session ended, or `None` while it is open.
pub fn end_from_row(row: &impl Columns) -> StoreResult<Option<SessionEnd>> {
    let Some(at) = row.optional_int("ended_at")? else { return Ok(None) };
    Ok(Some(SessionEnd {
        reason: name(row, "end_reason", EndReason::from_name)?,
        at: UnixMillis(at),
        error: row.optional_text("end_error")?,
        stack_trace: row.optional_text("end_stack_trace")?,
        log_id: row.optional_text("log_id")?.map(LogId::from_stored),
        slow: row.flag("slow")?,
    }))
}

/// The end reason of a session row, `None` while it is open.
pub fn end_reason(row: &impl Columns) -> StoreResult<Option<EndReason>> {
    optional_name(row, "end_reason", EndReason::from_name)
}

/// An event from a row of `events`.
pub fn event_from_row(row: &impl Columns) -> StoreResult<Event> {
    Ok(Event {
        sequence: unsigned(row, "sequence")?,
        event: NewEvent {
            event_type: name(row, "event_type", EventType::from_name)?,
            session_id: SessionId::from_stored(row.text("session_id")?),
            tenant: TenantId::from_stored(row.text("tenant")?),
            user_id: row.optional_text("user_id")?,
            kind: name(row, "kind", SessionKind::from_name)?,
            end_reason: end_reason(row)?,
            at: UnixMillis(row.int("at")?),
        },
    })
}

/// A log record from a row of the log search (`log_sql`): an entry with
/// its session's log id.
pub fn record_from_row(row: &impl Columns) -> StoreResult<LogRecord> {
    let level = row.int("level")?;
    Ok(LogRecord {
        entry_id: row.int("entry_id")?,
        position: row.int("position")?,
        sequence: unsigned(row, "sequence")?,
        log_id: row.optional_text("log_id")?.map(LogId::from_stored),
        session_id: SessionId::from_stored(row.text("session_id")?),
        user_id: row.optional_text("user_id")?,
        kind: name(row, "kind", SessionKind::from_name)?,
        endpoint: row.text("endpoint")?,
        entry: LogEntry {
            level: LogLevel::from_number(level).ok_or_else(|| internal("column level holds an unknown level"))?,
            message: row.text("message")?,
            exception: row.optional_text("exception")?,
            stack_trace: row.optional_text("stack_trace")?,
            client_time: row.optional_int("client_time")?.map(UnixMicros),
            logged_at: UnixMillis(row.int("logged_at")?),
            continuous: row.flag("continuous")?,
        },
    })
}

/// A query's SQL and its parameters in placeholder order.
pub type Query = (String, Vec<Param>);

/// A `WHERE` clause built from optional filters, with its parameters in
/// the order of their placeholders.
struct Where {
    dialect: Dialect,
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Where {
    fn new(dialect: Dialect) -> Self {
        Self { dialect, clauses: Vec::new(), params: Vec::new() }
    }

    /// Adds a parameter and answers its placeholder.
    fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        (self.dialect.placeholder)(self.params.len())
    }

    fn and(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `column` equal to one of `values`: an equality for one value (which
    /// keeps an index on the column in its order), one array or `IN` for
    /// more (see [`Dialect::arrays`]).
    fn and_in(&mut self, column: &str, mut values: Vec<String>) {
        if values.len() == 1 {
            let one = self.bind(Param::Text(values.remove(0)));
            self.and(format!("{column} = {one}"));
        } else if values.len() > 1 && self.dialect.arrays {
            let all = self.bind(Param::Texts(values));
            self.and(format!("{column} = ANY({all})"));
        } else if values.len() > 1 {
            let marks: Vec<String> = values.into_iter().map(|value| self.bind(Param::Text(value))).collect();
            self.and(format!("{column} IN ({})", marks.join(", ")));
        }
    }

    /// `kind` one of `kinds`, the names written into the statement:
    /// they are the domain's fixed names, and Postgres plans each statement
    /// once for every value (a generic plan), so a kind bound as a value
    /// is any kind to it. With statistics that most open sessions are of one
    /// kind, any kind then matched most of them, and start-up's search for
    /// request-scoped sessions scanned the table (485 ms at a million).
    fn and_kinds(&mut self, kinds: &[SessionKind]) {
        let names: Vec<String> = kinds.iter().map(|kind| format!("'{}'", kind.as_str())).collect();
        match names.len() {
            0 => {}
            1 => self.and(format!("kind = {}", names[0])),
            _ => self.and(format!("kind IN ({})", names.join(", "))),
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) }
    }
}

fn text(value: &str) -> Param {
    Param::Text(value.to_owned())
}

/// A count as SQL's `BIGINT`.
fn int(n: impl TryInto<i64>) -> Param {
    Param::Int(n.try_into().unwrap_or(i64::MAX))
}

/// A page of the sessions matching `filter`, newest first.
pub fn list_query(filter: &SessionFilter, page: &PageRequest, dialect: Dialect) -> Query {
    let mut w = Where::new(dialect);
    if let Some(tenant) = &filter.tenant {
        let tenant = w.bind(text(tenant.as_str()));
        w.and(format!("tenant = {tenant}"));
    }
    if let Some(user) = &filter.user_id {
        let user = w.bind(text(user));
        w.and(format!("user_id = {user}"));
    }
    w.and_kinds(&filter.kinds);
    match filter.open {
        Some(true) => w.and("ended_at IS NULL".into()),
        Some(false) => w.and("ended_at IS NOT NULL".into()),
        None => {}
    }
    w.and_in("id", filter.ids.iter().map(|id| id.as_str().to_owned()).collect());
    if let Some((created_at, id)) = &page.after {
        let (at, id) = (w.bind(Param::Int(created_at.0)), w.bind(text(id.as_str())));
        // A row comparison: the index's own order, a bound it seeks to.
        w.and(format!("(created_at, id) < ({at}, {id})"));
    }
    let limit = w.bind(int(page.limit));
    let sql = format!(
        concat!("SELECT ", session_columns!(), " FROM sessions{} ORDER BY created_at DESC, id DESC LIMIT {}"),
        w.sql(),
        limit
    );
    (sql, w.params)
}

/// Open sessions expired by `now`, oldest expiry first, at most `limit`.
pub fn due_query(now: UnixMillis, limit: usize, dialect: Dialect) -> Query {
    // Named on SQLite, which plans without statistics: any other index
    // would sort every due session to take a batch.
    let indexed = if dialect.indexed_by { " INDEXED BY sessions_due" } else { "" };
    let (now_mark, limit_mark) = ((dialect.placeholder)(1), (dialect.placeholder)(2));
    let sql = format!(
        concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions{} WHERE ended_at IS NULL AND expires_at <= {} ORDER BY expires_at, id LIMIT {}"
        ),
        indexed, now_mark, limit_mark
    );
    (sql, vec![Param::Int(now.0), int(limit)])
}

/// Events after sequence `after`, in order, at most `limit`.
pub fn events_query(after: u64, limit: usize, dialect: Dialect) -> Query {
    let (after_mark, limit_mark) = ((dialect.placeholder)(1), (dialect.placeholder)(2));
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE sequence > {after_mark} ORDER BY sequence LIMIT {limit_mark}"
    );
    (sql, vec![int(after), int(limit)])
}

/// Events matching `filter` in `(after, upto]`, in order, at most `limit`;
/// the tenant, session and user are matched by indexes of their own.
pub fn matching_events_query(filter: &EventFilter, after: u64, upto: u64, limit: usize, dialect: Dialect) -> Query {
    let mut w = Where::new(dialect);
    let (after, upto) = (w.bind(int(after)), w.bind(int(upto)));
    w.and(format!("sequence > {after} AND sequence <= {upto}"));
    if let Some(tenant) = &filter.tenant {
        let tenant = w.bind(text(tenant.as_str()));
        w.and(format!("tenant = {tenant}"));
    }
    if let Some(id) = &filter.session_id {
        let id = w.bind(text(id.as_str()));
        w.and(format!("session_id = {id}"));
    }
    if let Some(user) = &filter.user_id {
        let user = w.bind(text(user));
        w.and(format!("user_id = {user}"));
    }
    if let Some(kind) = filter.kind {
        let kind = w.bind(text(kind.as_str()));
        w.and(format!("kind = {kind}"));
    }
    let limit = w.bind(int(limit));
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events{} ORDER BY sequence LIMIT {limit}", w.sql());
    (sql, w.params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LogCursor;

    const NUMBERED: Dialect = Dialect { placeholder: |n| format!("${n}"), indexed_by: false, arrays: false };
    const ARRAYS: Dialect = Dialect { arrays: true, ..NUMBERED };

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
        let (sql, params) = list_query(&filter, &page, NUMBERED);
        assert_eq!(placeholders(&sql), params.len());
        assert!(sql.contains("kind IN ('web_user', 'internal')") && sql.contains("id = $3"), "{sql}");
        let ids = SessionFilter { ids: vec![SessionId::generate(), SessionId::generate()], ..filter.clone() };
        let (sql, params) = list_query(&ids, &page, NUMBERED);
        assert_eq!(placeholders(&sql), params.len());
        assert!(sql.contains("id IN ($3, $4)"), "{sql}");
        let (sql, params) = list_query(&ids, &page, ARRAYS);
        assert_eq!(placeholders(&sql), params.len());
        assert!(sql.contains("id = ANY($3)"), "{sql}");
        let (sql, params) = list_query(&SessionFilter::default(), &PageRequest { after: None, limit: 1 }, NUMBERED);
        assert_eq!(placeholders(&sql), params.len());
        let events = EventFilter {
            tenant: Some(TenantId::default()),
            session_id: Some(SessionId::generate()),
            user_id: Some("u".into()),
            kind: Some(SessionKind::WebCall),
        };
        let (sql, params) = matching_events_query(&events, 1, 9, 10, NUMBERED);
        assert_eq!(placeholders(&sql), params.len());
        let (sql, params) = due_query(UnixMillis(1), 10, NUMBERED);
        assert_eq!(placeholders(&sql), params.len());
        let (sql, params) = events_query(1, 10, NUMBERED);
        assert_eq!(placeholders(&sql), params.len());
        let query = crate::domain::LogQuery {
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
        let (sql, params) = super::super::log_sql::logs_sql(&query, 7, Some(9), NUMBERED);
        assert_eq!(placeholders(&sql), params.len());
    }
}
