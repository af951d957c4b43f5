//! Row ↔ domain mapping: turning rows back into sessions, events and log
//! records, and domain values (JSON, durations) into column values.

use std::time::Duration;

use rusqlite::Row;
use rusqlite::types::Type;

use super::error::internal;
use crate::clock::UnixMillis;
use crate::domain::{
    EndReason, Event, EventType, Grants, Labels, LogEntry, LogId, LogLevel, LogRecord, NewEvent, Session, SessionEnd,
    SessionId, SessionKind, TenantId, TokenHash, UnixMicros,
};
use crate::store::{BoxError, StoreResult};

/// The columns [`session_from_row`] reads, as a literal for `concat!`.
macro_rules! session_columns {
    () => {
        "id, token_hash, tenant, kind, user_id, endpoint, method, future_call, client_address, user_agent, created_at, \
         last_active_at, idle_ms, lifetime_ms, trusted, grants, grants_version, ended_at, end_reason, end_error, \
         end_stack_trace, log_id, slow"
    };
}
pub(super) use session_columns;

/// Serializes grants or storage. The error deliberately drops serde's text,
/// which may quote a value.
pub(super) fn to_json(value: &impl serde::Serialize, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|_| internal(format!("cannot encode {what} as JSON")))
}

/// Reads grants or storage back from a JSON column.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(row: &Row<'_>, column: &str) -> rusqlite::Result<T> {
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
pub(super) fn parse_name<T>(row: &Row<'_>, column: &str, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    parse(&text).ok_or_else(|| bad_value(row, column, format!("unknown name {text:?}").into()))
}

/// A timeout as stored: whole milliseconds.
pub(super) fn millis(duration: Option<Duration>) -> Option<i64> {
    duration.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration(millis: Option<i64>) -> Option<Duration> {
    millis.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// A session from a row of the `session_columns!`.
pub(super) fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: SessionId::from_stored(row.get("id")?),
        token_hash: TokenHash(row.get("token_hash")?),
        tenant: TenantId::from_stored(row.get("tenant")?),
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

/// How a session ended, or `None` while it is open.
pub(super) fn end_from_row(row: &Row<'_>) -> rusqlite::Result<Option<SessionEnd>> {
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

/// An event from a row of `events`.
pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let end_reason = match row.get::<_, Option<String>>("end_reason")? {
        None => None,
        Some(_) => Some(parse_name(row, "end_reason", EndReason::from_name)?),
    };
    Ok(Event {
        sequence: row.get("sequence")?,
        event: NewEvent {
            event_type: parse_name(row, "event_type", EventType::from_name)?,
            session_id: SessionId::from_stored(row.get("session_id")?),
            tenant: TenantId::from_stored(row.get("tenant")?),
            user_id: row.get("user_id")?,
            kind: parse_name(row, "kind", SessionKind::from_name)?,
            end_reason,
            at: UnixMillis(row.get("at")?),
        },
    })
}

/// A log record from a row of `log_entries` joined with its session.
pub(super) fn record_from_row(row: &Row<'_>) -> rusqlite::Result<LogRecord> {
    let level = row.get::<_, i64>("level")?;
    Ok(LogRecord {
        entry_id: row.get("entry_id")?,
        position: row.get("position")?,
        sequence: row.get("sequence")?,
        log_id: row.get::<_, Option<String>>("log_id")?.map(LogId::from_stored),
        session_id: SessionId::from_stored(row.get("session_id")?),
        user_id: row.get("user_id")?,
        kind: parse_name(row, "kind", SessionKind::from_name)?,
        endpoint: row.get("endpoint")?,
        entry: LogEntry {
            level: LogLevel::from_number(level)
                .ok_or_else(|| bad_value(row, "level", format!("level {level}").into()))?,
            message: row.get("message")?,
            exception: row.get("exception")?,
            stack_trace: row.get("stack_trace")?,
            client_time: row.get::<_, Option<i64>>("client_time")?.map(UnixMicros),
            logged_at: UnixMillis(row.get("logged_at")?),
            continuous: row.get("continuous")?,
        },
    })
}
