//! Every write of the Postgres store as the statements it runs inside
//! its writer's open transaction (see `writer`), on its own. A batch
//! applies its creates and log appends together instead (see `bulk`),
//! unless a multi-row statement was refused. Each reads the rows it
//! builds on with `FOR UPDATE`, so that replicas writing the same session
//! at once wait for each other instead of losing an update.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use deadpool_postgres::ClientWrapper;

use super::entries::{EntrySession, NewEntries, TENANT_ENTRIES, TenantEntries};
use super::pipeline::Pipeline;
use super::rows::{end_from_row, end_reason, millis, unsigned};
use super::sql_int;
use crate::clock::UnixMillis;
use crate::domain::{EndReason, LogEntry, LogId, NewEvent, RequestDigest, Session, SessionEnd, SessionId};
use crate::store::{Ending, LogLimits, NewRequest, Purged, RequestRecord, StoreError, StoreResult};

/// One write, with everything it needs already encoded. A create or log
/// append with a `request` stores that idempotency record with itself, or
/// is answered the live one stored first.
pub(super) enum Write {
    Create {
        session: Box<Session>,
        grants: String,
        storage: String,
        storage_version: i64,
        event: NewEvent,
        request: Option<Box<NewRequest>>,
        /// Open sessions its tenant may hold (zero: no limit).
        max_open: u64,
    },
    /// Activity of sessions, all of one writer's.
    Activities {
        activity: Vec<(SessionId, UnixMillis)>,
    },
    /// Expiries of sessions moved to follow their activity, all of one
    /// writer's.
    Expiries {
        activity: Vec<(SessionId, UnixMillis)>,
    },
    End {
        id: SessionId,
        end: SessionEnd,
        event: NewEvent,
    },
    /// Ends of many sessions, all of one writer's.
    Ends {
        endings: Vec<Ending>,
    },
    Grants {
        id: SessionId,
        expected_version: u64,
        grants: String,
        event: NewEvent,
    },
    Storage {
        id: SessionId,
        expected_version: u64,
        values: String,
        event: NewEvent,
    },
    Logs {
        id: SessionId,
        entries: Vec<LogEntry>,
        request: Option<Box<NewRequest>>,
        /// Entries the session's log and its tenant may hold.
        max: LogLimits,
    },
    Purge {
        ended_before: UnixMillis,
        events_before: UnixMillis,
        requests_before: UnixMillis,
    },
}

/// What a committed write answers besides its event.
#[derive(Debug)]
pub(super) enum Outcome {
    Done,
    Version(u64),
    AlreadyEnded(SessionEnd),
    /// Each session found by a write of many ends: `None` when this write
    /// ended it (its event is among the write's, in the same order), else
    /// how it had ended before.
    Ends(Vec<(SessionId, Option<SessionEnd>)>),
    Purged(Purged),
    /// Sessions whose expiry a write moved.
    Moved(u64),
    /// A keyed write found its key's live record and did nothing else.
    Replayed(RequestRecord),
}

/// Which cached session records a write changed.
pub(super) enum Changed {
    Nothing,
    Session(SessionId),
    Sessions(Vec<SessionId>),
    Every,
}

/// A write that ran inside the open transaction.
pub(super) struct Applied {
    /// The events it records, in order.
    pub events: Vec<NewEvent>,
    pub outcome: Outcome,
    pub changed: Changed,
    /// Log entries it added to or deleted from each tenant's.
    pub tenant_entries: TenantEntries,
}

impl Applied {
    /// A write that recorded `events`, answers `outcome` and changed
    /// `changed`, and no tenant's log entries.
    pub(super) fn new(events: Vec<NewEvent>, outcome: Outcome, changed: Changed) -> Self {
        Applied { events, outcome, changed, tenant_entries: TenantEntries::default() }
    }

    /// A write that recorded `event` and changed no cached record.
    pub(super) fn recorded(event: &NewEvent) -> Self {
        Applied::new(vec![event.clone()], Outcome::Done, Changed::Nothing)
    }

    /// A write that recorded no event and changed no cached record.
    pub(super) fn unrecorded() -> Self {
        Applied::new(Vec::new(), Outcome::Done, Changed::Nothing)
    }

    /// A keyed write that found `record` stored first, and did nothing.
    pub(super) fn replayed(record: RequestRecord) -> Self {
        Applied::new(Vec::new(), Outcome::Replayed(record), Changed::Nothing)
    }
}

impl Write {
    /// The writer of `writers` this write goes to: its session's, so that
    /// writes of one session are committed in the order they were queued.
    ///
    /// Creates all go to the first writer. Nothing else can be queued for a
    /// session before its create is answered, so this keeps the order; and
    /// creates spread over several writers would commit one batch after the
    /// other anyway, each holding the event counter's row lock to its
    /// commit, in smaller batches.
    pub(super) fn writer(&self, writers: usize) -> usize {
        let id = match self {
            Write::Create { .. } => return 0,
            Write::End { id, .. } | Write::Grants { id, .. } | Write::Storage { id, .. } | Write::Logs { id, .. } => id,
            Write::Activities { activity } | Write::Expiries { activity } => match activity.first() {
                Some((id, _)) => id,
                None => return 0,
            },
            Write::Ends { endings } => match endings.first() {
                Some(ending) => &ending.id,
                None => return 0,
            },
            Write::Purge { .. } => return 0,
        };
        writer_of(id, writers)
    }

    /// Runs the write's statements in the open transaction.
    pub(super) async fn apply(&self, tx: &ClientWrapper) -> StoreResult<Applied> {
        match self {
            Write::Create { session, grants, storage, storage_version, event, request, max_open } => {
                if let Some(record) = claim(tx, &session.id, request.as_deref()).await? {
                    return Ok(Applied::replayed(record));
                }
                if *max_open > 0 {
                    let count = tx.prepare_cached(OPEN_SESSIONS_OF).await?;
                    let rows = tx.query(&count, &[&session.tenant.as_str()]).await?;
                    crate::store::check_tenant_room(open_sessions(&rows)?, *max_open)?;
                }
                insert_session(tx, session, grants, storage, *storage_version).await?;
                Ok(Applied::recorded(event))
            }
            Write::Activities { activity } => record_activities(tx, activity).await,
            Write::Expiries { activity } => move_expiries(tx, activity).await,
            Write::End { id, end, event } => end_session(tx, id, end, event).await,
            Write::Ends { endings } => end_sessions(tx, endings).await,
            Write::Grants { id, expected_version, grants, event } => {
                let version = compare_and_set(tx, id, *expected_version, Versioned::Grants, grants).await?;
                Ok(Applied::new(vec![event.clone()], Outcome::Version(version), Changed::Session(id.clone())))
            }
            Write::Storage { id, expected_version, values, event } => {
                let version = compare_and_set(tx, id, *expected_version, Versioned::Storage, values).await?;
                // Storage is not part of the session record.
                Ok(Applied::new(vec![event.clone()], Outcome::Version(version), Changed::Nothing))
            }
            Write::Logs { id, entries, request, max } => {
                if let Some(record) = claim(tx, id, request.as_deref()).await? {
                    return Ok(Applied::replayed(record));
                }
                let tenant_entries = append_logs(tx, id, entries, *max).await?;
                Ok(Applied { tenant_entries, ..Applied::unrecorded() })
            }
            Write::Purge { ended_before, events_before, requests_before } => {
                purge(tx, *ended_before, *events_before, *requests_before).await
            }
        }
    }
}

/// A tenant's count of open sessions (`$1`), kept by the trigger on
/// `events`; no row: none open.
pub(super) const OPEN_SESSIONS_OF: &str = "SELECT open FROM tenant_sessions WHERE tenant = $1";

/// What [`OPEN_SESSIONS_OF`] answered.
pub(super) fn open_sessions(rows: &[tokio_postgres::Row]) -> StoreResult<u64> {
    rows.first().map_or(Ok(0), |row| unsigned(row, "open"))
}

/// The writer of `writers` that serves session `id`.
pub(super) fn writer_of(id: &SessionId, writers: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    (hasher.finish() % writers as u64) as usize
}

/// The counters of an open session a write builds on, its row locked until
/// the batch commits; fails with `NotFound` or `Ended` for any other.
struct OpenSession {
    grants_version: u64,
    storage_version: u64,
    log_count: u64,
    /// What its log entries carry for QueryLogs' filters.
    entries: EntrySession,
}

async fn open_session(tx: &ClientWrapper, id: &SessionId) -> StoreResult<OpenSession> {
    let statement = tx
        .prepare_cached(
            "SELECT end_reason, grants_version, storage_version, log_count, tenant, user_id, kind, endpoint, \
             pg_current_xact_id()::text::int8 AS transaction FROM sessions WHERE id = $1 FOR UPDATE",
        )
        .await?;
    let row = tx.query_opt(&statement, &[&id.as_str()]).await?.ok_or(StoreError::NotFound)?;
    if let Some(reason) = end_reason(&row)? {
        return Err(StoreError::Ended(reason));
    }
    Ok(OpenSession {
        grants_version: unsigned(&row, "grants_version")?,
        storage_version: unsigned(&row, "storage_version")?,
        log_count: unsigned(&row, "log_count")?,
        entries: EntrySession::of(&row)?,
    })
}

/// Reads a stored idempotency record, live since `$2`.
pub(super) const SELECT_REQUEST: &str =
    "SELECT digest, session_id, sealed_token, accepted, at FROM request_ids WHERE lookup = $1 AND at >= $2";

pub(super) fn request_from_row(row: &tokio_postgres::Row) -> StoreResult<RequestRecord> {
    let digest: &[u8] = row.try_get("digest")?;
    let digest = digest.try_into().map_err(|_| super::internal("a stored request digest is not 32 bytes"))?;
    let at: i64 = row.try_get("at")?;
    Ok(RequestRecord {
        digest: RequestDigest(digest),
        session_id: SessionId::from_stored(row.try_get("session_id")?),
        sealed_token: row.try_get("sealed_token")?,
        accepted: unsigned(row, "accepted")?,
        at: UnixMillis(at),
    })
}

/// Stores `request`'s record of a write on `session`, replacing an expired
/// one with its key; when a live one holds the key, answers it and stores
/// nothing. A record another transaction is storing makes this wait for
/// it, so of two replicas writing the same key one writes and the other
/// answers the first's record.
async fn claim(
    tx: &ClientWrapper,
    session: &SessionId,
    request: Option<&NewRequest>,
) -> StoreResult<Option<RequestRecord>> {
    let Some(request) = request else { return Ok(None) };
    let insert = tx
        .prepare_cached(
            "INSERT INTO request_ids (lookup, digest, session_id, sealed_token, accepted, at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (lookup) DO UPDATE SET digest = EXCLUDED.digest, session_id = EXCLUDED.session_id, \
             sealed_token = EXCLUDED.sealed_token, accepted = EXCLUDED.accepted, at = EXCLUDED.at \
             WHERE request_ids.at < $7",
        )
        .await?;
    let claimed = tx
        .execute(
            &insert,
            &[
                &request.key.0.as_slice(),
                &request.digest.0.as_slice(),
                &session.as_str(),
                &request.sealed_token,
                &sql_int(request.accepted),
                &request.at.0,
                &request.expired_before.0,
            ],
        )
        .await?;
    if claimed == 1 {
        return Ok(None);
    }
    let select = tx.prepare_cached(SELECT_REQUEST).await?;
    let row = tx
        .query_opt(&select, &[&request.key.0.as_slice(), &request.expired_before.0])
        .await?
        .ok_or_else(|| super::internal("a live request record vanished"))?;
    request_from_row(&row).map(Some)
}

async fn insert_session(
    tx: &ClientWrapper,
    s: &Session,
    grants: &str,
    storage: &str,
    storage_version: i64,
) -> StoreResult<()> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO sessions (id, token_hash, tenant, kind, user_id, endpoint, method, future_call, \
             client_address, user_agent, created_at, last_active_at, idle_ms, lifetime_ms, expires_at, trusted, \
             grants, grants_version, storage, storage_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &s.id.as_str(),
            &s.token_hash.0.as_slice(),
            &s.tenant.as_str(),
            &s.kind.as_str(),
            &s.user_id,
            &s.labels.endpoint,
            &s.labels.method,
            &s.labels.future_call,
            &s.labels.client_address,
            &s.labels.user_agent,
            &s.created_at.0,
            &s.last_active_at.0,
            &millis(s.idle_timeout),
            &millis(s.lifetime),
            &s.expires_at(s.last_active_at).map(|at| at.0),
            &s.trusted,
            &grants,
            &sql_int(s.grants_version),
            &storage,
            &storage_version,
        ],
    )
    .await?;
    Ok(())
}

/// Marks kept logs' entries failed or slow and makes those not readable
/// yet readable at this transaction's id, said on `sessiond_logs`: session
/// ids, failed and slow as three arrays (one element for a single end).
const KEEP_ENTRIES: &str = "WITH k AS (SELECT * FROM unnest($1::text[], $2::bool[], $3::bool[]) \
     AS k (session_id, failed, slow)), \
     kept AS (UPDATE log_entries AS l SET failed = k.failed, slow = k.slow, \
     position = coalesce(l.position, pg_current_xact_id()::text::int8) FROM k WHERE l.session_id = k.session_id \
     RETURNING 1) \
     SELECT pg_notify('sessiond_logs', pg_current_xact_id()::text) WHERE EXISTS (SELECT 1 FROM kept)";

async fn end_session(tx: &ClientWrapper, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<Applied> {
    let select = tx
        .prepare_cached(
            "SELECT ended_at, end_reason, end_error, end_stack_trace, log_id, slow FROM sessions WHERE id = $1 \
             FOR UPDATE",
        )
        .await?;
    let row = tx.query_opt(&select, &[&id.as_str()]).await?.ok_or(StoreError::NotFound)?;
    if let Some(existing) = end_from_row(&row)? {
        return Ok(Applied::new(Vec::new(), Outcome::AlreadyEnded(existing), Changed::Nothing));
    }
    let update = tx
        .prepare_cached(
            "UPDATE sessions SET ended_at = $2, end_reason = $3, end_error = $4, end_stack_trace = $5, log_id = $6, \
             slow = $7, last_active_at = GREATEST(last_active_at, (SELECT a.last_active_at \
             FROM session_activity AS a WHERE a.id = $1 AND a.last_active_at <= $2)) WHERE id = $1",
        )
        .await?;
    tx.execute(
        &update,
        &[
            &id.as_str(),
            &end.at.0,
            &end.reason.as_str(),
            &end.error,
            &end.stack_trace,
            &end.log_id.as_ref().map(LogId::as_str),
            &end.slow,
        ],
    )
    .await?;
    let mut tenant_entries = TenantEntries::default();
    if end.log_id.is_none() {
        let delete = tx.prepare_cached(DELETE_LOGS).await?;
        tenant_entries = TenantEntries::deleted(&tx.query(&delete, &[&[id.as_str()].as_slice()]).await?)?;
    } else {
        // The log is kept: its entries not readable yet become readable now.
        let keep = tx.prepare_cached(KEEP_ENTRIES).await?;
        tx.query(
            &keep,
            &[&[id.as_str()].as_slice(), &[end.reason == EndReason::Failed].as_slice(), &[end.slow].as_slice()],
        )
        .await?;
    }
    Ok(Applied { tenant_entries, ..Applied::new(vec![event.clone()], Outcome::Done, Changed::Session(id.clone())) })
}

/// Locks the rows of `ids` in id order, so that two transactions locking
/// overlapping sets wait for each other instead of deadlocking.
async fn lock_in_order(tx: &ClientWrapper, ids: &[&str]) -> StoreResult<Vec<tokio_postgres::Row>> {
    let select = tx
        .prepare_cached(
            "SELECT id, ended_at, end_reason, end_error, end_stack_trace, log_id, slow FROM sessions \
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .await?;
    Ok(tx.query(&select, &[&ids]).await?)
}

/// Records activity of sessions at the times given in `session_activity`
/// (never moving one back), in one statement, in the order of its key: a
/// narrow row whose update stays on its page, where moving
/// `last_active_at` in `sessions` moved `expires_at` too, a new version of
/// the wide row and an entry in every index of the table. Rows are written
/// without looking their session up: a row whose session is gone is never
/// read, as every read starts from the session, and the purge deletes a
/// session's row with it. The activity of a session ended since counts only
/// up to its end (`session_columns`).
async fn record_activities(tx: &ClientWrapper, activity: &[(SessionId, UnixMillis)]) -> StoreResult<Applied> {
    let mut sorted: Vec<&(SessionId, UnixMillis)> = activity.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let ids: Vec<&str> = sorted.iter().map(|(id, _)| id.as_str()).collect();
    let at: Vec<i64> = sorted.iter().map(|(_, at)| at.0).collect();
    let upsert = tx
        .prepare_cached(
            "INSERT INTO session_activity AS s (id, last_active_at) \
             SELECT a.id, max(a.at) FROM unnest($1::text[], $2::int8[]) AS a (id, at) \
             GROUP BY a.id ORDER BY a.id \
             ON CONFLICT (id) DO UPDATE SET last_active_at = excluded.last_active_at \
             WHERE s.last_active_at < excluded.last_active_at",
        )
        .await?;
    tx.execute(&upsert, &[&ids, &at]).await?;
    // Activity is not announced: other replicas read it when they need it.
    Ok(Applied::new(Vec::new(), Outcome::Done, Changed::Nothing))
}

/// Moves open sessions' own `last_active_at`, and so their expiry, forward
/// (never back), in one statement; `expires_at` is recomputed from the
/// row's own timeouts, as `Session::expires_at` does (`LEAST` skips a
/// `NULL`). Answers how many moved.
async fn move_expiries(tx: &ClientWrapper, activity: &[(SessionId, UnixMillis)]) -> StoreResult<Applied> {
    let ids: Vec<&str> = activity.iter().map(|(id, _)| id.as_str()).collect();
    let at: Vec<i64> = activity.iter().map(|(_, at)| at.0).collect();
    lock_in_order(tx, &ids).await?;
    let update = tx
        .prepare_cached(
            "UPDATE sessions AS s SET last_active_at = a.at, \
             expires_at = LEAST(s.created_at + s.lifetime_ms, a.at + s.idle_ms) \
             FROM unnest($1::text[], $2::int8[]) AS a (id, at) \
             WHERE s.id = a.id AND s.ended_at IS NULL AND s.last_active_at < a.at",
        )
        .await?;
    let moved = tx.execute(&update, &[&ids, &at]).await?;
    // The cached record holds no expiry: nothing to announce.
    Ok(Applied::new(Vec::new(), Outcome::Moved(moved), Changed::Nothing))
}

/// Deletes the logs of the sessions of `$1`; answers how many entries
/// each tenant lost, as `tenant` and `n`.
const DELETE_LOGS: &str = "WITH gone AS (DELETE FROM log_entries WHERE session_id = ANY($1) RETURNING tenant) \
     SELECT tenant, count(*)::int8 AS n FROM gone GROUP BY tenant";

/// Deletes the logs of the sessions ended before `$1`, as [`DELETE_LOGS`].
const DELETE_PURGED_LOGS: &str = "WITH gone AS (DELETE FROM log_entries \
     WHERE session_id IN (SELECT id FROM sessions WHERE ended_at < $1) RETURNING tenant) \
     SELECT tenant, count(*)::int8 AS n FROM gone GROUP BY tenant";

/// Ends every open session of `endings` in three statements (lock, update,
/// delete the logs not kept); those ended already are answered how.
async fn end_sessions(tx: &ClientWrapper, endings: &[Ending]) -> StoreResult<Applied> {
    let ids: Vec<&str> = endings.iter().map(|e| e.id.as_str()).collect();
    let mut found = std::collections::HashMap::new();
    for row in lock_in_order(tx, &ids).await? {
        found.insert(row.try_get::<_, String>("id")?, end_from_row(&row)?);
    }
    let mut outcomes = Vec::with_capacity(found.len());
    let mut events = Vec::new();
    let mut open: Vec<&Ending> = Vec::new();
    for ending in endings {
        let Some(earlier) = found.remove(ending.id.as_str()) else { continue };
        if earlier.is_none() {
            open.push(ending);
            events.push(ending.event.clone());
        }
        outcomes.push((ending.id.clone(), earlier));
    }
    let ids: Vec<&str> = open.iter().map(|e| e.id.as_str()).collect();
    let at: Vec<i64> = open.iter().map(|e| e.end.at.0).collect();
    let reason: Vec<&str> = open.iter().map(|e| e.end.reason.as_str()).collect();
    let error: Vec<Option<&str>> = open.iter().map(|e| e.end.error.as_deref()).collect();
    let stack_trace: Vec<Option<&str>> = open.iter().map(|e| e.end.stack_trace.as_deref()).collect();
    let log_id: Vec<Option<&str>> = open.iter().map(|e| e.end.log_id.as_ref().map(LogId::as_str)).collect();
    let slow: Vec<bool> = open.iter().map(|e| e.end.slow).collect();
    let update = tx
        .prepare_cached(
            "UPDATE sessions AS s SET ended_at = e.ended_at, end_reason = e.end_reason, end_error = e.end_error, \
             end_stack_trace = e.end_stack_trace, log_id = e.log_id, slow = e.slow, \
             last_active_at = GREATEST(s.last_active_at, (SELECT a.last_active_at FROM session_activity AS a \
             WHERE a.id = e.id AND a.last_active_at <= e.ended_at)) \
             FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[]) \
             AS e (id, ended_at, end_reason, end_error, end_stack_trace, log_id, slow) WHERE s.id = e.id",
        )
        .await?;
    tx.execute(&update, &[&ids, &at, &reason, &error, &stack_trace, &log_id, &slow]).await?;
    let unkept: Vec<&str> = open.iter().filter(|e| e.end.log_id.is_none()).map(|e| e.id.as_str()).collect();
    let mut tenant_entries = TenantEntries::default();
    if !unkept.is_empty() {
        let delete = tx.prepare_cached(DELETE_LOGS).await?;
        tenant_entries = TenantEntries::deleted(&tx.query(&delete, &[&unkept]).await?)?;
    }
    // Kept logs: their entries not readable yet become readable now.
    let kept: Vec<&Ending> = open.iter().filter(|e| e.end.log_id.is_some()).copied().collect();
    if !kept.is_empty() {
        let ids: Vec<&str> = kept.iter().map(|e| e.id.as_str()).collect();
        let failed: Vec<bool> = kept.iter().map(|e| e.end.reason == EndReason::Failed).collect();
        let slow: Vec<bool> = kept.iter().map(|e| e.end.slow).collect();
        let keep = tx.prepare_cached(KEEP_ENTRIES).await?;
        tx.query(&keep, &[&ids, &failed, &slow]).await?;
    }
    let changed = open.iter().map(|e| e.id.clone()).collect();
    Ok(Applied { tenant_entries, ..Applied::new(events, Outcome::Ends(outcomes), Changed::Sessions(changed)) })
}

/// The two versioned documents of a session.
#[derive(Clone, Copy)]
enum Versioned {
    Grants,
    Storage,
}

/// Replaces a document of an open session if it is still at `expected`;
/// answers the new version.
async fn compare_and_set(
    tx: &ClientWrapper,
    id: &SessionId,
    expected: u64,
    which: Versioned,
    document: &str,
) -> StoreResult<u64> {
    let session = open_session(tx, id).await?;
    let (current, sql) = match which {
        Versioned::Grants => {
            (session.grants_version, "UPDATE sessions SET grants = $2, grants_version = $3 WHERE id = $1")
        }
        Versioned::Storage => {
            (session.storage_version, "UPDATE sessions SET storage = $2, storage_version = $3 WHERE id = $1")
        }
    };
    if current != expected {
        return Err(StoreError::Conflict { current });
    }
    let update = tx.prepare_cached(sql).await?;
    tx.execute(&update, &[&id.as_str(), &document, &sql_int(current + 1)]).await?;
    Ok(current + 1)
}

/// Appends entries to an open session's log within `limits`, its
/// tenant's held as committed when the append begins; answers what its
/// tenant gains, for the batch to count at its end.
async fn append_logs(
    tx: &ClientWrapper,
    id: &SessionId,
    entries: &[LogEntry],
    limits: LogLimits,
) -> StoreResult<TenantEntries> {
    let session = open_session(tx, id).await?;
    let tenant_held = match limits.per_tenant {
        0 => 0,
        _ => {
            let held = tx.prepare_cached(TENANT_ENTRIES).await?;
            unsigned(&tx.query_one(&held, &[&session.entries.tenant()]).await?, "held")?
        }
    };
    limits.check(session.log_count, tenant_held, entries.len())?;
    let mut new = NewEntries::default();
    new.add(id, session.log_count + 1, entries, &session.entries);
    if new.is_empty() {
        return Ok(TenantEntries::default());
    }
    let statements = NewEntries::prepare(tx).await?;
    let mut pipeline = Pipeline::new(tx);
    new.push(&mut pipeline, &statements);
    for answer in pipeline.run().await {
        answer?;
    }
    Ok(new.into_tenants())
}

async fn purge(
    tx: &ClientWrapper,
    ended_before: UnixMillis,
    events_before: UnixMillis,
    requests_before: UnixMillis,
) -> StoreResult<Applied> {
    let entries = tx.prepare_cached(DELETE_PURGED_LOGS).await?;
    let tenant_entries = TenantEntries::deleted(&tx.query(&entries, &[&ended_before.0]).await?)?;
    let activity = tx
        .prepare_cached("DELETE FROM session_activity WHERE id IN (SELECT id FROM sessions WHERE ended_at < $1)")
        .await?;
    tx.execute(&activity, &[&ended_before.0]).await?;
    let sessions = tx.prepare_cached("DELETE FROM sessions WHERE ended_at < $1").await?;
    let sessions = tx.execute(&sessions, &[&ended_before.0]).await?;
    let events = tx.prepare_cached("DELETE FROM events WHERE at < $1").await?;
    let events = tx.execute(&events, &[&events_before.0]).await?;
    let requests = tx.prepare_cached("DELETE FROM request_ids WHERE at < $1").await?;
    let requests = tx.execute(&requests, &[&requests_before.0]).await?;
    Ok(Applied {
        tenant_entries,
        ..Applied::new(
            Vec::new(),
            Outcome::Purged(Purged { sessions, events, requests }),
            if sessions > 0 { Changed::Every } else { Changed::Nothing },
        )
    })
}
