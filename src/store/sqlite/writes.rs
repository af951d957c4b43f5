//! The SQL of the writes, each run by the writer inside its own savepoint.
//!
//! Events take their sequence from an `AUTOINCREMENT` key. With one writer,
//! and a rolled-back savepoint taking its increment with it, the numbers are
//! gapless and ordered, and a purge never makes them start over.

use std::collections::HashMap;

use rusqlite::{Connection, named_params, params};

use super::error::internal;
use super::rows::{end_from_row, end_reason, millis, one};
use crate::clock::UnixMillis;
use crate::domain::{EndReason, Event, LogEntry, LogId, NewEvent, Session, SessionEnd, SessionId};
use crate::store::{EndOutcome, Ending, LogLimits, NewRequest, Once, Purged, RequestRecord, StoreError, StoreResult};

/// The counters of an open session a write builds on; fails with
/// `NotFound` or `Ended` for any other.
struct OpenSession {
    grants_version: u64,
    storage_version: u64,
    log_count: u64,
    /// What its log entries carry for QueryLogs' filters.
    tenant: String,
    user_id: Option<String>,
    kind: String,
    endpoint: String,
}

fn open_session(conn: &Connection, id: &str) -> StoreResult<OpenSession> {
    let sql = "SELECT end_reason, grants_version, storage_version, log_count, tenant, user_id, kind, endpoint \
               FROM sessions WHERE id = ?1";
    let found = one(conn, sql, [id], |row| {
        let counters = OpenSession {
            grants_version: row.get("grants_version")?,
            storage_version: row.get("storage_version")?,
            log_count: row.get("log_count")?,
            tenant: row.get("tenant")?,
            user_id: row.get("user_id")?,
            kind: row.get("kind")?,
            endpoint: row.get("endpoint")?,
        };
        Ok((end_reason(row)?, counters))
    })?;
    match found {
        None => Err(StoreError::NotFound),
        Some((Some(reason), _)) => Err(StoreError::Ended(reason)),
        Some((None, counters)) => Ok(counters),
    }
}

fn insert_event(conn: &Connection, event: &NewEvent) -> StoreResult<Event> {
    let sequence = conn
        .prepare_cached(
            "INSERT INTO events (event_type, session_id, tenant, user_id, kind, end_reason, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING sequence",
        )?
        .query_row(
            params![
                event.event_type.as_str(),
                event.session_id.as_str(),
                event.tenant.as_str(),
                event.user_id,
                event.kind.as_str(),
                event.end_reason.map(EndReason::as_str),
                event.at.0,
            ],
            |row| row.get(0),
        )?;
    Ok(Event { sequence, event: event.clone() })
}

/// Records a new session with its encoded grants and storage, and its event.
pub(super) fn create_session(
    conn: &Connection,
    session: &Session,
    grants: &str,
    storage: &str,
    storage_version: u64,
    event: &NewEvent,
    max_open: u64,
) -> StoreResult<Event> {
    if max_open > 0 {
        crate::store::check_tenant_room(super::reads::open_sessions_of(conn, session.tenant.as_str())?, max_open)?;
    }
    insert_session(conn, session, grants, storage, storage_version)?;
    insert_event(conn, event)
}

/// Stores `request`'s record of a write on `session_id`, replacing an
/// expired one with its key; when a live one holds the key, answers it and
/// stores nothing.
pub(super) fn claim(conn: &Connection, session_id: &str, request: &NewRequest) -> StoreResult<Option<RequestRecord>> {
    let claimed = conn
        .prepare_cached(
            "INSERT INTO request_ids (lookup, digest, session_id, sealed_token, accepted, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (lookup) DO UPDATE SET digest = excluded.digest, session_id = excluded.session_id, \
             sealed_token = excluded.sealed_token, accepted = excluded.accepted, at = excluded.at \
             WHERE request_ids.at < ?7",
        )?
        .execute(params![
            request.key.0.as_slice(),
            request.digest.0.as_slice(),
            session_id,
            request.sealed_token,
            request.accepted,
            request.at.0,
            request.expired_before.0,
        ])?;
    if claimed == 1 {
        return Ok(None);
    }
    let live = super::reads::request_record(conn, &request.key, request.expired_before)?;
    live.map(Some).ok_or_else(|| internal("a live request record vanished"))
}

/// [`create_session`] guarded by `request`.
pub(super) fn create_session_once(
    conn: &Connection,
    session: &Session,
    grants: &str,
    storage: &str,
    storage_version: u64,
    event: &NewEvent,
    request: &NewRequest,
    max_open: u64,
) -> StoreResult<Once<Event>> {
    if let Some(record) = claim(conn, session.id.as_str(), request)? {
        return Ok(Once::Replayed(record));
    }
    create_session(conn, session, grants, storage, storage_version, event, max_open).map(Once::Done)
}

/// [`append_logs`] guarded by `request`.
pub(super) fn append_logs_once(
    conn: &Connection,
    id: &str,
    entries: &[LogEntry],
    request: &NewRequest,
    limits: LogLimits,
) -> StoreResult<Once<()>> {
    if let Some(record) = claim(conn, id, request)? {
        return Ok(Once::Replayed(record));
    }
    append_logs(conn, id, entries, limits).map(Once::Done)
}

fn insert_session(
    conn: &Connection,
    s: &Session,
    grants: &str,
    storage: &str,
    storage_version: u64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, token_hash, tenant, kind, user_id, endpoint, method, future_call, client_address, \
         user_agent, created_at, last_active_at, idle_ms, lifetime_ms, expires_at, trusted, grants, grants_version, \
         storage, storage_version) \
         VALUES (:id, :token_hash, :tenant, :kind, :user_id, :endpoint, :method, :future_call, :client_address, \
         :user_agent, :created_at, :last_active_at, :idle_ms, :lifetime_ms, :expires_at, :trusted, :grants, \
         :grants_version, :storage, :storage_version)",
    )?
    .execute(named_params! {
        ":id": s.id.as_str(),
        ":token_hash": s.token_hash.0,
        ":tenant": s.tenant.as_str(),
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

/// Records activity of sessions at the times given, in `session_activity`
/// (never moving one back), in the order of its key: a row of a few bytes
/// each, where moving `last_active_at` in `sessions` rewrote a wide row
/// and its expiry index entry. Rows are written without looking their
/// session up (that probe into `sessions` was more than half of a flush of
/// a million sessions): a row whose session is gone is never read, as
/// every read starts from the session, and the purge deletes a session's
/// row with it. The activity of a session ended since counts only up to
/// its end (`session_columns`).
pub(super) fn record_activities(conn: &Connection, activity: &[(SessionId, UnixMillis)]) -> StoreResult<()> {
    let mut sorted: Vec<&(SessionId, UnixMillis)> = activity.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let mut upsert = conn.prepare_cached(
        "INSERT INTO session_activity (id, last_active_at) VALUES (?1, ?2) \
         ON CONFLICT (id) DO UPDATE SET last_active_at = excluded.last_active_at \
         WHERE excluded.last_active_at > last_active_at",
    )?;
    for (id, at) in sorted {
        upsert.execute(params![id.as_str(), at.0])?;
    }
    Ok(())
}

/// Moves open sessions' own `last_active_at`, and so their expiry, forward
/// to the times given: `expires_at` is recomputed from the row's own
/// timeouts, as `Session::expires_at` does. Answers how many moved.
pub(super) fn move_expiries(conn: &Connection, activity: &[(SessionId, UnixMillis)]) -> StoreResult<usize> {
    let mut update = conn.prepare_cached(
        "UPDATE sessions SET last_active_at = ?2, expires_at = CASE \
         WHEN idle_ms IS NULL THEN created_at + lifetime_ms \
         WHEN lifetime_ms IS NULL THEN ?2 + idle_ms \
         ELSE min(created_at + lifetime_ms, ?2 + idle_ms) END \
         WHERE id = ?1 AND ended_at IS NULL AND last_active_at < ?2",
    )?;
    let mut moved = 0;
    for (id, at) in activity {
        moved += update.execute(params![id.as_str(), at.0])?;
    }
    Ok(moved)
}

/// Each named session's end, if it has one (`?1`: a JSON array of ids).
pub(super) const ENDS_OF_MANY: &str = "SELECT s.id, ended_at, end_reason, end_error, end_stack_trace, log_id, slow \
     FROM json_each(?1) AS j JOIN sessions AS s ON s.id = j.value";

/// Ends each session of `?1` (a JSON array of `[id, ended_at, reason, error,
/// stack trace, log id, slow]`).
pub(super) const END_MANY: &str = "UPDATE sessions SET ended_at = e.ended_at, end_reason = e.end_reason, \
     end_error = e.end_error, end_stack_trace = e.end_stack_trace, log_id = e.log_id, slow = e.slow, \
     last_active_at = max(sessions.last_active_at, coalesce((SELECT a.last_active_at FROM session_activity AS a \
     WHERE a.id = e.id AND a.last_active_at <= e.ended_at), 0)) \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS ended_at, value ->> 2 AS end_reason, \
     value ->> 3 AS end_error, value ->> 4 AS end_stack_trace, value ->> 5 AS log_id, value ->> 6 AS slow \
     FROM json_each(?1)) AS e WHERE sessions.id = e.id";

/// Deletes the logs of the sessions of `?1` (a JSON array of ids).
pub(super) const DELETE_LOGS_OF_MANY: &str =
    "DELETE FROM log_entries WHERE session_id IN (SELECT value FROM json_each(?1))";

/// Counts the entries of the sessions of `?1` (a JSON array of ids) off
/// their tenants, before they are deleted.
const UNCOUNT_LOGS_OF_MANY: &str = "UPDATE tenant_log_entries SET entries = entries - g.n \
     FROM (SELECT tenant, count(*) AS n FROM log_entries WHERE session_id IN (SELECT value FROM json_each(?1)) \
     GROUP BY tenant) AS g WHERE tenant_log_entries.tenant = g.tenant";

/// Counts the entries of the sessions ended before `?1` off their tenants,
/// before the purge deletes them.
const UNCOUNT_PURGED_LOGS: &str = "UPDATE tenant_log_entries SET entries = entries - g.n \
     FROM (SELECT l.tenant, count(*) AS n FROM sessions AS s JOIN log_entries AS l ON l.session_id = s.id \
     WHERE s.ended_at < ?1 GROUP BY l.tenant) AS g WHERE tenant_log_entries.tenant = g.tenant";

/// The log entries tenant `tenant` holds.
fn tenant_entries(conn: &Connection, tenant: &str) -> StoreResult<u64> {
    let held = one(conn, "SELECT entries FROM tenant_log_entries WHERE tenant = ?1", [tenant], |row| Ok(row.get(0)?))?;
    Ok(held.unwrap_or(0))
}

/// Adds `added` (fewer when negative) to the log entries `tenant` holds.
fn count_entries(conn: &Connection, tenant: &str, added: i64) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO tenant_log_entries (tenant, entries) VALUES (?1, ?2) \
         ON CONFLICT (tenant) DO UPDATE SET entries = entries + excluded.entries",
    )?
    .execute(params![tenant, added])?;
    Ok(())
}

/// Keeps the logs of `?1` (a JSON array of `[id, failed, slow]`): their
/// entries not readable yet become readable at position `?2`.
pub(super) const KEEP_LOGS_OF_MANY: &str = "UPDATE log_entries SET failed = k.failed, slow = k.slow, \
     position = coalesce(position, ?2) \
     FROM (SELECT value ->> 0 AS session_id, value ->> 1 AS failed, value ->> 2 AS slow FROM json_each(?1)) AS k \
     WHERE log_entries.session_id = k.session_id";

/// Ends every open session of `endings` in a few statements over the
/// whole batch (read their ends, update, delete or keep their logs, insert
/// their events), not four per session: each statement writes a page to
/// the statement journal the first time it changes it, so one statement
/// per batch journals each page once. Unknown sessions are left out of the
/// answer; a session named twice is ended once, and answered ended after.
pub(super) fn end_sessions(conn: &Connection, endings: &[Ending]) -> StoreResult<Vec<(SessionId, EndOutcome)>> {
    let ids = json_array(endings.iter().map(|e| serde_json::Value::from(e.id.as_str())));
    let mut found: HashMap<String, Option<SessionEnd>> = HashMap::with_capacity(endings.len());
    {
        let mut select = conn.prepare_cached(ENDS_OF_MANY)?;
        let mut rows = select.query([&ids])?;
        while let Some(row) = rows.next()? {
            found.insert(row.get("id")?, end_from_row(row)?);
        }
    }
    let mut open: Vec<&Ending> = Vec::new();
    let mut answers: Vec<(&Ending, Option<SessionEnd>)> = Vec::with_capacity(endings.len());
    for ending in endings {
        let Some(earlier) = found.get_mut(ending.id.as_str()) else { continue };
        match earlier {
            Some(existing) => answers.push((ending, Some(existing.clone()))),
            None => {
                open.push(ending);
                answers.push((ending, None));
                *earlier = Some(ending.end.clone());
            }
        }
    }
    let mut sequences = end_open(conn, &open)?.into_iter();
    let mut outcomes = Vec::with_capacity(answers.len());
    for (ending, earlier) in answers {
        let outcome = match earlier {
            Some(existing) => EndOutcome::AlreadyEnded(existing),
            None => {
                let sequence = sequences.next().ok_or_else(|| internal("an ended session without its event"))?;
                EndOutcome::Ended(Event { sequence, event: ending.event.clone() })
            }
        };
        outcomes.push((ending.id.clone(), outcome));
    }
    Ok(outcomes)
}

/// Ends the open sessions `open` (each named once): answers their events'
/// sequences, in their order.
fn end_open(conn: &Connection, open: &[&Ending]) -> StoreResult<Vec<u64>> {
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let ends = json_array(open.iter().map(|e| {
        let end = &e.end;
        serde_json::json!([
            e.id.as_str(),
            end.at.0,
            end.reason.as_str(),
            end.error,
            end.stack_trace,
            end.log_id.as_ref().map(LogId::as_str),
            end.slow
        ])
    }));
    conn.prepare_cached(END_MANY)?.execute([&ends])?;
    let (kept, unkept): (Vec<&Ending>, Vec<&Ending>) = open.iter().partition(|e| e.end.log_id.is_some());
    if !unkept.is_empty() {
        let ids = json_array(unkept.iter().map(|e| serde_json::Value::from(e.id.as_str())));
        conn.prepare_cached(UNCOUNT_LOGS_OF_MANY)?.execute([&ids])?;
        conn.prepare_cached(DELETE_LOGS_OF_MANY)?.execute([&ids])?;
    }
    if !kept.is_empty() {
        // The kept logs' entries not readable yet become readable now, all
        // at one position, as one session's would.
        let keep = json_array(
            kept.iter().map(|e| serde_json::json!([e.id.as_str(), e.end.reason == EndReason::Failed, e.end.slow])),
        );
        conn.prepare_cached(KEEP_LOGS_OF_MANY)?.execute(params![keep, next_position(conn)?])?;
    }
    let events = json_array(open.iter().map(|e| {
        let event = &e.event;
        serde_json::json!([
            event.event_type.as_str(),
            event.session_id.as_str(),
            event.tenant.as_str(),
            event.user_id,
            event.kind.as_str(),
            event.end_reason.map(EndReason::as_str),
            event.at.0
        ])
    }));
    // Sequences follow the batch's order; RETURNING's order is not
    // promised, so each is matched back by its place in the batch.
    let mut sequences: Vec<Option<u64>> = vec![None; open.len()];
    {
        let mut insert = conn.prepare_cached(
            "INSERT INTO events (event_type, session_id, tenant, user_id, kind, end_reason, at) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 \
             FROM json_each(?1) ORDER BY key RETURNING sequence, session_id",
        )?;
        let mut places: HashMap<&str, usize> =
            open.iter().enumerate().map(|(i, e)| (e.event.session_id.as_str(), i)).collect();
        let mut rows = insert.query([&events])?;
        while let Some(row) = rows.next()? {
            let session_id: String = row.get("session_id")?;
            if let Some(place) = places.remove(session_id.as_str()) {
                sequences[place] = Some(row.get("sequence")?);
            }
        }
    }
    sequences
        .into_iter()
        .map(|sequence| sequence.ok_or_else(|| internal("an ended session's event was not recorded")))
        .collect()
}

/// `values` as one JSON array, the text `json_each` reads.
fn json_array(values: impl Iterator<Item = serde_json::Value>) -> String {
    serde_json::Value::Array(values.collect()).to_string()
}

/// Ends an open session and records its event; an ended one is left alone.
pub(super) fn end_session(conn: &Connection, id: &str, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
    let sql = "SELECT ended_at, end_reason, end_error, end_stack_trace, log_id, slow FROM sessions WHERE id = ?1";
    let found = one(conn, sql, [id], end_from_row)?;
    match found {
        None => return Err(StoreError::NotFound),
        Some(Some(existing)) => return Ok(EndOutcome::AlreadyEnded(existing)),
        Some(None) => {}
    }
    conn.prepare_cached(
        "UPDATE sessions SET ended_at = ?2, end_reason = ?3, end_error = ?4, end_stack_trace = ?5, log_id = ?6, \
         slow = ?7, last_active_at = max(last_active_at, coalesce((SELECT a.last_active_at FROM session_activity AS a \
         WHERE a.id = ?1 AND a.last_active_at <= ?2), 0)) WHERE id = ?1",
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
        let gone = conn.prepare_cached("DELETE FROM log_entries WHERE session_id = ?1")?.execute([id])?;
        conn.prepare_cached(
            "UPDATE tenant_log_entries SET entries = entries - ?2 WHERE tenant = (SELECT tenant FROM sessions WHERE id = ?1)",
        )?
        .execute(params![id, gone as i64])?;
    } else {
        // The log is kept: its entries not readable yet become readable now.
        conn.prepare_cached(
            "UPDATE log_entries SET failed = ?2, slow = ?3, position = coalesce(position, ?4) WHERE session_id = ?1",
        )?
        .execute(params![id, end.reason == EndReason::Failed, end.slow, next_position(conn)?])?;
    }
    Ok(EndOutcome::Ended(insert_event(conn, event)?))
}

/// Replaces an open session's encoded grants if they are still at
/// `expected_version`, and records the event.
pub(super) fn update_grants(
    conn: &Connection,
    id: &str,
    expected_version: u64,
    grants: &str,
    event: &NewEvent,
) -> StoreResult<(u64, Event)> {
    let current = open_session(conn, id)?.grants_version;
    if current != expected_version {
        return Err(StoreError::Conflict { current });
    }
    conn.prepare_cached("UPDATE sessions SET grants = ?2, grants_version = ?3 WHERE id = ?1")?.execute(params![
        id,
        grants,
        current + 1
    ])?;
    Ok((current + 1, insert_event(conn, event)?))
}

/// Replaces an open session's encoded storage if it is still at
/// `expected_version`, and records the event.
pub(super) fn replace_storage(
    conn: &Connection,
    id: &str,
    expected_version: u64,
    values: &str,
    event: &NewEvent,
) -> StoreResult<(u64, Event)> {
    let current = open_session(conn, id)?.storage_version;
    if current != expected_version {
        return Err(StoreError::Conflict { current });
    }
    conn.prepare_cached("UPDATE sessions SET storage = ?2, storage_version = ?3 WHERE id = ?1")?.execute(params![
        id,
        values,
        current + 1
    ])?;
    Ok((current + 1, insert_event(conn, event)?))
}

/// The next position entries become readable at (see `LogCursor`): one
/// more than the last, in commit order since the writer commits one
/// transaction after the other.
fn next_position(conn: &Connection) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached("UPDATE log_counter SET last_position = last_position + 1 RETURNING last_position")?
        .query_row([], |row| row.get(0))?)
}

/// Appends entries to an open session's log, numbering them on, within
/// `limits`; entries logged continuously are readable at once.
pub(super) fn append_logs(conn: &Connection, id: &str, entries: &[LogEntry], limits: LogLimits) -> StoreResult<()> {
    let session = open_session(conn, id)?;
    let tenant_held = match limits.per_tenant {
        0 => 0,
        _ => tenant_entries(conn, &session.tenant)?,
    };
    limits.check(session.log_count, tenant_held, entries.len())?;
    let first = session.log_count + 1;
    let position = match entries.iter().any(|e| e.continuous) {
        true => Some(next_position(conn)?),
        false => None,
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO log_entries (session_id, sequence, level, message, exception, stack_trace, client_time, \
         logged_at, tenant, user_id, kind, continuous, position, endpoint) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
            session.tenant,
            session.user_id,
            session.kind,
            entry.continuous,
            position.filter(|_| entry.continuous),
            session.endpoint,
        ])?;
    }
    conn.prepare_cached("UPDATE sessions SET log_count = log_count + ?2 WHERE id = ?1")?
        .execute(params![id, entries.len() as u64])?;
    count_entries(conn, &session.tenant, entries.len() as i64)
}

/// Deletes sessions ended before `ended_before`, events before
/// `events_before` and idempotency records before `requests_before`.
pub(super) fn purge(
    conn: &Connection,
    ended_before: UnixMillis,
    events_before: UnixMillis,
    requests_before: UnixMillis,
) -> StoreResult<Purged> {
    // Log entries go with their sessions (the foreign key cascades),
    // counted off their tenants first.
    conn.prepare_cached(UNCOUNT_PURGED_LOGS)?.execute([ended_before.0])?;
    conn.prepare_cached("DELETE FROM session_activity WHERE id IN (SELECT id FROM sessions WHERE ended_at < ?1)")?
        .execute([ended_before.0])?;
    let sessions = conn.prepare_cached("DELETE FROM sessions WHERE ended_at < ?1")?.execute([ended_before.0])?;
    let events = conn.prepare_cached("DELETE FROM events WHERE at < ?1")?.execute([events_before.0])?;
    let requests = conn.prepare_cached("DELETE FROM request_ids WHERE at < ?1")?.execute([requests_before.0])?;
    Ok(Purged { sessions: sessions as u64, events: events as u64, requests: requests as u64 })
}
