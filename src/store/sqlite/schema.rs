//! The database's shape and settings: the migrations that build the schema,
//! and the pragmas every connection and the WAL journal need.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::error::internal;
use crate::store::StoreResult;

/// How long a statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one step per entry, applied in order in one transaction;
/// `PRAGMA user_version` counts the steps a database has. Append new steps,
/// never edit applied ones.
const MIGRATIONS: &[&str] = &[
    "
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
",
    "
-- Tenants: every session and event belongs to one; rows from before are the
-- default tenant's. Callers always list within their tenant, newest first,
-- by user or not; listings across tenants (recovery, shutdown) keep
-- sessions_by_creation, and user filters never come without a tenant.
ALTER TABLE sessions ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE events ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
DROP INDEX sessions_by_user;
CREATE INDEX sessions_by_tenant ON sessions (tenant, created_at, id);
CREATE INDEX sessions_by_tenant_user ON sessions (tenant, user_id, created_at, id);
",
    "
-- Idempotency records: what a retried CreateSession, Log or StreamLog
-- message is answered. The key and digest are SHA-256 values; a create's
-- token is kept only sealed with its request id, which is not stored.
CREATE TABLE request_ids (
    lookup BLOB PRIMARY KEY NOT NULL,
    digest BLOB NOT NULL,
    session_id TEXT NOT NULL,
    sealed_token BLOB,
    accepted INTEGER NOT NULL,
    at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX request_ids_by_time ON request_ids (at);
",
    "
-- A log entry's client time is kept to the microsecond; it was kept to the
-- millisecond before.
UPDATE log_entries SET client_time = client_time * 1000 WHERE client_time IS NOT NULL;
",
    "
-- Watchers catch up on their tenant's events, by session or by user: the
-- store filters on these indexes instead of reading every event.
CREATE INDEX events_by_tenant ON events (tenant, sequence);
CREATE INDEX events_by_session ON events (session_id, sequence);
CREATE INDEX events_by_tenant_user ON events (tenant, user_id, sequence);
",
    "
-- Channel messages: global messages numbered per channel from
-- message_channels (never deleted, so numbering never restarts) and kept
-- in messages for the replay window, purged by posted_at.
CREATE TABLE message_channels (
    tenant TEXT NOT NULL,
    channel TEXT NOT NULL,
    last_sequence INTEGER NOT NULL,
    PRIMARY KEY (tenant, channel)
) STRICT, WITHOUT ROWID;
CREATE TABLE messages (
    tenant TEXT NOT NULL,
    channel TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    type_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    posted_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, channel, sequence)
) STRICT, WITHOUT ROWID;
CREATE INDEX messages_by_time ON messages (posted_at);
",
    "
-- Listings that cost a page, not the table: an index in page order for
-- each filter of an admin's ListSessions across users (state open or
-- ended, kind, kind with state open), the last one also finding the
-- request-scoped sessions start-up and shutdown end across tenants without
-- reading a row per stored session. sessions_by_creation served only
-- those and goes. The sweeper reads due sessions in (expires_at, id)
-- order a batch at a time: sessions_due holds that order, where
-- sessions_by_expiry made each batch sort every due session.
CREATE INDEX sessions_open_by_tenant ON sessions (tenant, created_at, id) WHERE ended_at IS NULL;
CREATE INDEX sessions_ended_by_tenant ON sessions (tenant, created_at, id) WHERE ended_at IS NOT NULL;
CREATE INDEX sessions_by_tenant_kind ON sessions (tenant, kind, created_at, id);
CREATE INDEX sessions_open_by_kind ON sessions (kind, tenant, created_at, id) WHERE ended_at IS NULL;
DROP INDEX sessions_by_creation;
CREATE INDEX sessions_due ON sessions (expires_at, id) WHERE ended_at IS NULL;
DROP INDEX sessions_by_expiry;
",
    "
-- Log entries readable while their session is open, and searched without
-- reading what a filter skips. Each entry carries what QueryLogs filters by
-- (its session's tenant, user and kind; failed and slow, set when its log
-- is kept) and `position`: set when it becomes readable (stored under
-- continuous logging, or its log kept at the end), from log_counter, one
-- number per write; NULL while it is not readable. Entries of kept logs
-- from before are readable at position 0, in their old order.
ALTER TABLE log_entries ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE log_entries ADD COLUMN user_id TEXT;
ALTER TABLE log_entries ADD COLUMN kind TEXT NOT NULL DEFAULT '';
ALTER TABLE log_entries ADD COLUMN continuous INTEGER NOT NULL DEFAULT 0;
ALTER TABLE log_entries ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE log_entries ADD COLUMN slow INTEGER NOT NULL DEFAULT 0;
ALTER TABLE log_entries ADD COLUMN position INTEGER;
UPDATE log_entries SET (tenant, user_id, kind, failed, slow, position) = (
    SELECT s.tenant, s.user_id, s.kind, s.end_reason IS 'failed', s.slow, CASE WHEN s.log_id IS NOT NULL THEN 0 END
    FROM sessions AS s WHERE s.id = log_entries.session_id);
CREATE TABLE log_counter (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    last_position INTEGER NOT NULL
) STRICT;
INSERT INTO log_counter (only_row, last_position) VALUES (1, 0);
CREATE INDEX log_entries_readable ON log_entries (tenant, level, position, entry_id)
    WHERE position IS NOT NULL;
CREATE INDEX log_entries_readable_by_session ON log_entries (session_id, level, position, entry_id)
    WHERE position IS NOT NULL;
CREATE INDEX log_entries_readable_by_user ON log_entries (tenant, user_id, level, position, entry_id)
    WHERE position IS NOT NULL;
CREATE INDEX log_entries_readable_by_kind ON log_entries (tenant, kind, level, position, entry_id)
    WHERE position IS NOT NULL;
CREATE INDEX log_entries_readable_failed ON log_entries (tenant, level, position, entry_id)
    WHERE position IS NOT NULL AND failed;
CREATE INDEX log_entries_readable_slow ON log_entries (tenant, level, position, entry_id)
    WHERE position IS NOT NULL AND slow;
",
    "
-- Log entries carry their session's endpoint (labels.endpoint, '' for
-- none), copied when they are stored, and QueryLogs' endpoint filter walks
-- an index of its own, shaped like the other readable-entry indexes.
-- Entries stored before take their session's endpoint.
ALTER TABLE log_entries ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
UPDATE log_entries SET endpoint = coalesce(
    (SELECT s.endpoint FROM sessions AS s WHERE s.id = log_entries.session_id), '');
CREATE INDEX log_entries_readable_by_endpoint ON log_entries (tenant, endpoint, level, position, entry_id)
    WHERE position IS NOT NULL;
",
    "
-- Open sessions per tenant, for --max-open-sessions-per-tenant: kept by a
-- trigger on the events every opening and ending records (created: one
-- more; closed, expired, revoked: one fewer), so it changes in the same
-- transaction as the session, whichever write recorded the event.
CREATE TABLE tenant_sessions (
    tenant TEXT PRIMARY KEY NOT NULL,
    open INTEGER NOT NULL
) STRICT;
INSERT INTO tenant_sessions (tenant, open)
    SELECT tenant, count(*) FROM sessions WHERE ended_at IS NULL GROUP BY tenant;
CREATE TRIGGER events_count_tenant_sessions AFTER INSERT ON events
    WHEN NEW.event_type IN ('created', 'closed', 'expired', 'revoked')
BEGIN
    INSERT INTO tenant_sessions (tenant, open)
        VALUES (NEW.tenant, CASE NEW.event_type WHEN 'created' THEN 1 ELSE -1 END)
        ON CONFLICT (tenant) DO UPDATE SET open = open + excluded.open;
END;
",
    "
-- A log search by time range starts where its entries can be: a
-- continuous entry is given its position when it is logged, so the latest
-- one logged well before a range's start bounds from below every entry the
-- range can match (store::log_sql); this index finds it in one probe.
CREATE INDEX log_entries_continuous_by_time ON log_entries (logged_at, position)
    WHERE continuous AND position IS NOT NULL;
",
    "
-- sessions_by_end held every open session, under NULL. Only the purge
-- reads it, for ends before a time; without statistics SQLite also took it
-- for `ended_at IS NULL` and walked every open session to list a few
-- (start-up's search for request-scoped sessions left open: 190 ms at a
-- million). Ended sessions only, now.
DROP INDEX sessions_by_end;
CREATE INDEX sessions_by_end ON sessions (ended_at) WHERE ended_at IS NOT NULL;
",
    "
-- Activity written apart from the session: a row of a few bytes per
-- session, where moving last_active_at in sessions rewrote a wide row and
-- its expiry index entry. A session's last activity is the later of the
-- two (an activity after its end does not count, store::sql). Its
-- expires_at, and so sessions_due, follows its own last_active_at only:
-- the sweeper moves the expiry of a session it finds used since. Rows go
-- with their session when the purge deletes it (no foreign key: its check
-- would look the session up a second time on every write).
CREATE TABLE session_activity (
    id TEXT PRIMARY KEY NOT NULL,
    last_active_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
",
    "
-- A log search by time range walks continuous entries between a floor
-- and a ceiling found by time (log_entries_continuous_by_time), and the
-- entries of kept logs, which may become readable long after they were
-- logged, apart: this index holds those only (store::log_sql).
CREATE INDEX log_entries_readable_kept ON log_entries (tenant, level, position, entry_id)
    WHERE position IS NOT NULL AND NOT continuous;
",
    "
-- Log entries held per tenant, for --max-log-entries-per-tenant: those of
-- its open sessions' logs and of the kept logs of its ended ones. Appends
-- add to it, and the end that deletes a log not kept and the purge count
-- theirs off, each in its own transaction (store::sqlite::writes).
CREATE TABLE tenant_log_entries (
    tenant TEXT PRIMARY KEY NOT NULL,
    entries INTEGER NOT NULL
) STRICT;
INSERT INTO tenant_log_entries (tenant, entries)
    SELECT tenant, count(*) FROM log_entries GROUP BY tenant;
",
];

/// The schema version this sessiond brings a database to: its number of
/// steps.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Opens one connection with the settings every connection needs.
pub(super) fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// Switches the database to WAL journalling, which lets reads see committed
/// batches without waiting for the writer; fails if SQLite refuses.
pub(super) fn use_wal(conn: &Connection) -> StoreResult<()> {
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(internal(format!("the database refused WAL journalling (journal mode {mode})")));
    }
    Ok(())
}

/// Applies the [`MIGRATIONS`] the database does not have yet.
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixMillis;
    use crate::domain::{SessionId, SessionKind, TenantId};
    use crate::store::sqlite::rows::{all, event_from_row, one, session_columns, session_from_row};
    use crate::store::{PageRequest, SessionFilter, StoreError};

    fn user_version(conn: &Connection) -> usize {
        conn.pragma_query_value(None, "user_version", |row| row.get(0)).expect("user_version is always readable")
    }

    /// An in-memory database with the first `version` steps applied, as a
    /// sessiond of that version left it.
    fn database_at(version: usize) -> Connection {
        let conn = Connection::open_in_memory().expect("an in-memory database opens");
        for step in &MIGRATIONS[..version] {
            conn.execute_batch(step).expect("an earlier step applies");
        }
        conn.pragma_update(None, "user_version", version).expect("user_version is writable");
        conn
    }

    /// Sessions of alice in the default tenant, the n-th (from 0) with id
    /// `n` and created at `n`, of each `(kind, ended_at)` (closed when
    /// ended), in a schema from version 4 on.
    fn insert_sessions(conn: &Connection, sessions: &[(&str, Option<i64>)]) {
        for (n, (kind, ended)) in sessions.iter().enumerate() {
            conn.execute(
                "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
                 user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version, \
                 ended_at, end_reason) VALUES (?1, randomblob(32), ?2, 'alice', '', '', '', '', '', ?3, ?3, 0, \
                 '{\"privileges\":[],\"roles\":[],\"promotions\":[]}', 0, '{}', 0, ?4, CASE WHEN ?4 IS NULL THEN NULL ELSE 'closed' END)",
                rusqlite::params![format!("{n:032}"), kind, n as i64, ended],
            )
            .expect("sessions of an earlier schema are written");
        }
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
    fn a_database_at_version_1_migrates_with_its_rows_in_the_default_tenant() {
        let mut conn = database_at(1);
        conn.execute_batch(
            "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
             user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version) \
             VALUES ('00000000000000000000000000000001', zeroblob(32), 'web_user', 'alice', '', '', '', '', '', \
             1, 1, 0, '{\"privileges\":[],\"roles\":[],\"promotions\":[]}', 0, '{}', 0); \
             INSERT INTO events (event_type, session_id, user_id, kind, at) \
             VALUES ('created', '00000000000000000000000000000001', 'alice', 'web_user', 1);",
        )
        .expect("version 1 rows are written");

        migrate(&mut conn).expect("a version 1 database migrates");
        assert_eq!(user_version(&conn), MIGRATIONS.len());
        let sql = concat!("SELECT ", session_columns!(), " FROM sessions");
        let session = one(&conn, sql, [], session_from_row).expect("the old session reads back").expect("a session");
        assert_eq!((session.tenant, session.user_id.as_deref()), (TenantId::default(), Some("alice")));
        let sql = "SELECT sequence, event_type, session_id, tenant, user_id, kind, end_reason, at FROM events";
        let event = one(&conn, sql, [], event_from_row).expect("the old event reads back").expect("an event");
        assert_eq!((event.sequence, event.event.tenant), (1, TenantId::default()));
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions' ORDER BY name")
            .and_then(|mut names| names.query_map([], |row| row.get(0))?.collect())
            .expect("the indexes are listed");
        assert!(indexes.iter().any(|name| name == "sessions_by_tenant"), "{indexes:?}");
        assert!(!indexes.iter().any(|name| name == "sessions_by_user"), "{indexes:?}");
    }

    #[test]
    fn a_populated_database_of_the_version_before_messages_gains_their_tables_and_keeps_its_rows() {
        let before = MIGRATIONS.iter().position(|sql| sql.contains("CREATE TABLE message_channels"));
        let before = before.expect("a step adds the message tables");
        let mut conn = database_at(before);
        conn.execute_batch(
            "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
             user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version) \
             VALUES ('00000000000000000000000000000001', zeroblob(32), 'web_user', 'alice', '', '', '', '', '', \
             1, 1, 0, '{\"privileges\":[],\"roles\":[],\"promotions\":[]}', 0, '{}', 0);",
        )
        .expect("a session of the earlier schema is written");

        migrate(&mut conn).expect("the earlier database migrates");
        assert_eq!(user_version(&conn), MIGRATIONS.len());
        let sql = concat!("SELECT ", session_columns!(), " FROM sessions");
        let session = one(&conn, sql, [], session_from_row).expect("the session reads back").expect("a session");
        assert_eq!(session.user_id.as_deref(), Some("alice"));
        conn.execute_batch(
            "INSERT INTO message_channels (tenant, channel, last_sequence) VALUES ('default', 'room', 1); \
             INSERT INTO messages (tenant, channel, sequence, type_name, payload, posted_at) \
             VALUES ('default', 'room', 1, '', 'null', 1);",
        )
        .expect("the message tables take rows");
    }

    #[test]
    fn a_populated_database_of_the_version_before_quotas_counts_its_open_sessions_per_tenant() {
        let before = MIGRATIONS.iter().position(|sql| sql.contains("CREATE TABLE tenant_sessions"));
        let before = before.expect("a step counts open sessions per tenant");
        let mut conn = database_at(before);
        for (n, tenant, ended) in [(1, "acme", "NULL"), (2, "acme", "NULL"), (3, "acme", "5"), (4, "globex", "NULL")] {
            conn.execute_batch(&format!(
                "INSERT INTO sessions (id, token_hash, tenant, kind, user_id, endpoint, method, future_call, \
                 client_address, user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, \
                 storage_version, ended_at, end_reason) VALUES ('{n:032}', randomblob(32), '{tenant}', 'web_user', \
                 'alice', '', '', '', '', '', 1, 1, 0, '{{}}', 0, '{{}}', 0, {ended}, \
                 CASE WHEN {ended} IS NULL THEN NULL ELSE 'closed' END);"
            ))
            .expect("a session of the earlier schema is written");
        }

        migrate(&mut conn).expect("the earlier database migrates");
        let acme = tenant_counted(&conn, "acme");
        assert_eq!((acme, tenant_counted(&conn, "globex")), (2, 1));
        conn.execute_batch(
            "INSERT INTO events (event_type, session_id, tenant, kind, at) VALUES ('created', 'x', 'acme', 'web_user', 9); \
             INSERT INTO events (event_type, session_id, tenant, kind, at) VALUES ('revoked', 'y', 'globex', 'web_user', 9); \
             INSERT INTO events (event_type, session_id, tenant, kind, at) VALUES ('storage_changed', 'x', 'acme', 'web_user', 9);",
        )
        .expect("events are recorded");
        assert_eq!((tenant_counted(&conn, "acme"), tenant_counted(&conn, "globex")), (3, 0));
    }

    #[test]
    fn a_populated_database_of_the_version_before_log_entries_per_tenant_counts_its_entries() {
        let before = MIGRATIONS.iter().position(|sql| sql.contains("CREATE TABLE tenant_log_entries"));
        let mut conn = database_at(before.expect("a step counts log entries per tenant"));
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF; WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) \
             INSERT INTO log_entries (session_id, sequence, level, message, logged_at, tenant) \
             SELECT 's' || (n % 2), n, 2, 'm' || n, n, CASE WHEN n < 4 THEN 'acme' ELSE 'globex' END FROM r;",
        )
        .expect("entries of the version before are written");

        migrate(&mut conn).expect("the earlier database migrates");
        let counted = |tenant: &str| {
            one(&conn, "SELECT entries FROM tenant_log_entries WHERE tenant = ?1", [tenant], |row| Ok(row.get(0)?))
                .expect("readable")
        };
        assert_eq!((counted("acme"), counted("globex"), counted("initech")), (Some(3), Some(2), None::<i64>));
    }

    fn tenant_counted(conn: &Connection, tenant: &str) -> u64 {
        crate::store::sqlite::reads::open_sessions_of(conn, tenant).expect("counted")
    }

    #[test]
    fn a_database_at_version_2_keeps_its_client_times_as_microseconds() {
        let mut conn = database_at(2);
        conn.execute_batch(
            "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
             user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version) \
             VALUES ('00000000000000000000000000000001', zeroblob(32), 'web_user', 'alice', '', '', '', '', '', \
             1, 1, 0, '{}', 0, '{}', 0); \
             INSERT INTO log_entries (session_id, sequence, level, message, client_time, logged_at) VALUES \
             ('00000000000000000000000000000001', 1, 2, 'timed', 1700000000123, 1), \
             ('00000000000000000000000000000001', 2, 2, 'untimed', NULL, 1);",
        )
        .expect("version 2 rows are written");

        migrate(&mut conn).expect("a version 2 database migrates");
        let times: Vec<Option<i64>> = conn
            .prepare("SELECT client_time FROM log_entries ORDER BY sequence")
            .and_then(|mut rows| rows.query_map([], |row| row.get(0))?.collect())
            .expect("the entries read back");
        assert_eq!(times, [Some(1_700_000_000_123_000), None]);
    }

    /// The plan SQLite picks for `sql`, one line per step.
    /// The `message` of each row a log search answers.
    fn messages(conn: &Connection, sql: &str, params: &[crate::store::sql::Param]) -> Vec<String> {
        conn.prepare(sql)
            .and_then(|mut rows| rows.query_map(rusqlite::params_from_iter(params), |r| r.get("message"))?.collect())
            .expect("the search runs")
    }

    fn plan(conn: &Connection, sql: &str, params: Vec<crate::store::sql::Param>) -> String {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .and_then(|mut plan| {
                plan.query_map(rusqlite::params_from_iter(params), |row| row.get::<_, String>(3))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("the plan is readable")
            .join("\n")
    }

    #[test]
    fn a_batch_of_ends_finds_each_session_and_its_log_through_an_index() {
        use crate::store::sql::Param;
        use crate::store::sqlite::writes::{DELETE_LOGS_OF_MANY, END_MANY, ENDS_OF_MANY, KEEP_LOGS_OF_MANY};
        let mut conn = Connection::open_in_memory().expect("an in-memory database opens");
        migrate(&mut conn).expect("the schema applies");
        let batch = || Param::Text("[]".into());
        let statements = [
            (ENDS_OF_MANY, vec![batch()]),
            (END_MANY, vec![batch()]),
            (DELETE_LOGS_OF_MANY, vec![batch()]),
            (KEEP_LOGS_OF_MANY, vec![batch(), Param::Int(1)]),
        ];
        for (sql, params) in statements {
            let plan = plan(&conn, sql, params);
            assert!(plan.contains("SCAN json_each") || plan.contains("SCAN j "), "driven by the batch:\n{sql}\n{plan}");
            for table in ["sessions", "s ", "log_entries"] {
                assert!(!plan.contains(&format!("SCAN {table}")), "no table walked whole:\n{sql}\n{plan}");
            }
        }
    }

    #[test]
    fn a_populated_database_at_version_4_migrates_and_lists_by_state_and_kind_through_an_index() {
        let mut conn = database_at(4);
        insert_sessions(&conn, &[("web_user", None), ("web_call", Some(5)), ("web_call", None)]);

        migrate(&mut conn).expect("a version 4 database migrates");
        assert_eq!(user_version(&conn), MIGRATIONS.len());
        let list = |filter: &SessionFilter| {
            let page = PageRequest { after: Some((UnixMillis(10), SessionId::from_stored("f".repeat(32)))), limit: 10 };
            let (sql, params) = crate::store::sqlite::reads::list_query(filter, &page);
            let sessions: Vec<String> = all(&conn, &sql, rusqlite::params_from_iter(&params), session_from_row)
                .expect("the listing runs")
                .into_iter()
                .map(|s| s.id.as_str().to_owned())
                .collect();
            (sessions, plan(&conn, &sql, params))
        };
        let tenant = Some(TenantId::default());
        let cases = [
            (
                SessionFilter { tenant: tenant.clone(), open: Some(true), ..Default::default() },
                vec![2, 0],
                "sessions_open_by_tenant",
            ),
            (
                SessionFilter { tenant: tenant.clone(), open: Some(false), ..Default::default() },
                vec![1],
                "sessions_ended_by_tenant",
            ),
            (
                SessionFilter { tenant: tenant.clone(), kinds: vec![SessionKind::WebCall], ..Default::default() },
                vec![2, 1],
                "sessions_by_tenant_kind",
            ),
            (
                SessionFilter { tenant, kinds: vec![SessionKind::WebCall], open: Some(true), ..Default::default() },
                vec![2],
                "sessions_open_by_kind",
            ),
        ];
        let (sql, params) = crate::store::sqlite::reads::due_query(UnixMillis(10), 1_000);
        let due = plan(&conn, &sql, params);
        assert!(due.contains("sessions_due") && !due.contains("TEMP B-TREE"), "due sessions in index order:\n{due}");
        for (filter, expected, index) in cases {
            let (listed, plan) = list(&filter);
            let expected: Vec<String> = expected.iter().map(|n| format!("{n:032}")).collect();
            assert_eq!(listed, expected, "{filter:?}");
            assert!(plan.contains(index), "{filter:?} should use {index}:\n{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{filter:?} should not sort:\n{plan}");
        }
    }

    #[test]
    fn a_database_at_version_4_makes_kept_logs_readable_and_open_ones_not() {
        let mut conn = database_at(4);
        conn.execute_batch(
            "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
             user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version, \
             ended_at, end_reason, log_id, slow, tenant) VALUES \
             ('00000000000000000000000000000001', zeroblob(32), 'web_call', 'alice', '', '', '', '', '', \
              1, 1, 0, '{}', 0, '{}', 0, 5, 'failed', 'log1', 0, 'acme'), \
             ('00000000000000000000000000000002', randomblob(32), 'web_user', 'bob', '', '', '', '', '', \
              1, 1, 0, '{}', 0, '{}', 0, NULL, NULL, NULL, 0, 'acme'); \
             INSERT INTO log_entries (session_id, sequence, level, message, logged_at) VALUES \
             ('00000000000000000000000000000001', 1, 4, 'kept', 2), \
             ('00000000000000000000000000000002', 1, 2, 'open', 3);",
        )
        .expect("version 4 rows are written");

        migrate(&mut conn).expect("a version 4 database migrates");
        let rows: Vec<(String, String, Option<String>, String, bool, Option<i64>)> = conn
            .prepare("SELECT message, tenant, user_id, kind, failed, position FROM log_entries ORDER BY entry_id")
            .and_then(|mut rows| {
                rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
                    .collect()
            })
            .expect("the entries read back");
        assert_eq!(
            rows,
            [
                ("kept".into(), "acme".into(), Some("alice".into()), "web_call".into(), true, Some(0)),
                ("open".into(), "acme".into(), Some("bob".into()), "web_user".into(), false, None),
            ]
        );
    }

    #[test]
    fn a_populated_database_before_log_endpoints_gives_each_entry_its_sessions_endpoint() {
        let before = MIGRATIONS.iter().position(|sql| sql.contains("log_entries_readable_by_endpoint"));
        let before = before.expect("a step adds the endpoint index");
        let mut conn = database_at(before);
        conn.execute_batch(
            "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
             user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version, \
             ended_at, end_reason, log_id) VALUES \
             ('00000000000000000000000000000001', zeroblob(32), 'web_call', 'alice', 'checkout', '', '', '', '', \
              1, 1, 0, '{}', 0, '{}', 0, 5, 'closed', 'log1'), \
             ('00000000000000000000000000000002', randomblob(32), 'web_call', 'bob', '', '', '', '', '', \
              1, 1, 0, '{}', 0, '{}', 0, 5, 'closed', 'log2'); \
             INSERT INTO log_entries (session_id, sequence, level, message, logged_at, tenant, user_id, kind, \
             position) VALUES \
             ('00000000000000000000000000000001', 1, 2, 'at checkout', 2, 'default', 'alice', 'web_call', 0), \
             ('00000000000000000000000000000002', 1, 2, 'nowhere', 3, 'default', 'bob', 'web_call', 0);",
        )
        .expect("rows of the earlier schema are written");

        migrate(&mut conn).expect("the earlier database migrates");
        assert_eq!(user_version(&conn), MIGRATIONS.len());
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT message, endpoint FROM log_entries ORDER BY entry_id")
            .and_then(|mut rows| rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("the entries read back");
        assert_eq!(rows, [("at checkout".into(), "checkout".into()), ("nowhere".into(), String::new())]);
        let query = crate::domain::LogQuery {
            tenant: Some(TenantId::default()),
            endpoint: Some("checkout".into()),
            limit: 10,
            ..Default::default()
        };
        let (sql, params) = crate::store::log_sql::logs_sql(&query, i64::MAX, None, crate::store::sql::Dialect::SQLITE);
        let found = messages(&conn, &sql, &params);
        assert_eq!(found, ["at checkout"]);
        let plan = plan(&conn, &sql, params);
        assert!(plan.contains("USING INDEX log_entries_readable_by_endpoint (tenant=? AND endpoint=?"), "{plan}");
    }

    #[test]
    fn a_populated_database_of_the_version_before_time_floors_finds_a_floor_through_its_index() {
        let before = 10;
        let mut conn = database_at(before);
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF; WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000) \
             INSERT INTO log_entries (session_id, sequence, level, message, logged_at, continuous, position) \
             SELECT 's', n, 2, 'm' || n, n * 60000, n % 2, CASE WHEN n % 2 = 1 THEN 1000 + n END FROM r;",
        )
        .expect("entries of the version before are written");

        migrate(&mut conn).expect("the database migrates");
        let query = crate::domain::LogQuery { from: Some(UnixMillis(500 * 60_000)), ..Default::default() };
        let floor = crate::store::sqlite::reads::log_floor(&conn, &query).expect("the floor is found");
        // The latest continuous entry logged `CLOCK_MARGIN` (10 s) or more
        // before: minute 499.
        assert_eq!(floor, Some(1_499));
        let (sql, at) = crate::store::log_sql::floor_sql(&query, crate::store::sql::Dialect::SQLITE)
            .expect("a time range has a floor");
        let found = plan(&conn, &sql, vec![crate::store::sql::Param::Int(at)]);
        assert!(found.contains("log_entries_continuous_by_time") && !found.contains("TEMP B-TREE"), "{found}");
    }

    #[test]
    fn a_populated_database_of_the_version_before_the_kept_entry_index_finds_kept_entries_past_a_ceiling() {
        use crate::store::log_sql;
        use crate::store::sql::Dialect;
        let before = 13;
        let mut conn = database_at(before);
        // Continuous entries a minute apart at growing positions, and a kept
        // log's entry logged at minute 500, readable at a position above
        // them all.
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF; WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000) \
             INSERT INTO log_entries (session_id, sequence, level, message, logged_at, continuous, position) \
             SELECT 's', n, 2, 'm' || n, n * 60000, 1, 1000 + n FROM r; \
             INSERT INTO log_entries (session_id, sequence, level, message, logged_at, continuous, position) \
             VALUES ('k', 1, 2, 'kept', 500 * 60000 + 1, 0, 5000);",
        )
        .expect("entries of the version before are written");

        migrate(&mut conn).expect("the database migrates");
        let query = crate::domain::LogQuery {
            tenant: Some(TenantId::default()),
            from: Some(UnixMillis(500 * 60_000)),
            to: Some(UnixMillis(502 * 60_000)),
            limit: 10,
            ..Default::default()
        };
        let ceiling = crate::store::sqlite::reads::log_ceiling(&conn, &query).expect("the ceiling is found");
        // The earliest continuous entry logged `CLOCK_MARGIN` (10 s) or more
        // after: minute 503.
        assert_eq!(ceiling, Some(1_503));
        let query = log_sql::from_floor(&query, crate::store::sqlite::reads::log_floor(&conn, &query).expect("found"));
        let (sql, params) = log_sql::logs_sql(&query, i64::MAX, ceiling, Dialect::SQLITE);
        let found = messages(&conn, &sql, &params);
        assert_eq!(found, ["m500", "m501", "kept"]);
        let plan = plan(&conn, &sql, params);
        assert!(plan.contains("USING INDEX log_entries_readable_kept (tenant=? AND level=?"), "{plan}");
    }

    #[test]
    fn a_populated_database_of_the_version_before_ended_only_end_index_lists_open_sessions_by_kind() {
        let before = 11;
        let mut conn = database_at(before);
        insert_sessions(&conn, &[("web_user", None), ("web_call", None), ("web_call", Some(5)), ("web_user", Some(7))]);

        migrate(&mut conn).expect("the database migrates");
        // Start-up's search: request-scoped kinds, open, in every tenant.
        let request_scoped = SessionFilter::open_request_scoped();
        let (sql, params) =
            crate::store::sqlite::reads::list_query(&request_scoped, &PageRequest { after: None, limit: 500 });
        let listed: Vec<String> = all(&conn, &sql, rusqlite::params_from_iter(&params), session_from_row)
            .expect("the listing runs")
            .into_iter()
            .map(|s| s.id.as_str().to_owned())
            .collect();
        assert_eq!(listed, [format!("{:032}", 1)]);
        let found = plan(&conn, &sql, params);
        assert!(found.contains("sessions_open_by_kind") && !found.contains("sessions_by_end"), "{found}");
        let purge = plan(&conn, "SELECT id FROM sessions WHERE ended_at < ?1", vec![crate::store::sql::Param::Int(6)]);
        assert!(purge.contains("sessions_by_end (ended_at<?)"), "{purge}");
        let ended_before: i64 =
            conn.query_row("SELECT count(*) FROM sessions WHERE ended_at < 6", [], |row| row.get(0)).expect("counted");
        assert_eq!(ended_before, 1);
    }

    #[test]
    fn a_populated_database_of_the_version_before_activity_apart_reads_and_moves_activity_through_keys() {
        use crate::clock::UnixMillis;
        use crate::domain::SessionId;
        use crate::store::sqlite::{reads, writes};
        let before = 12;
        let mut conn = database_at(before);
        insert_sessions(&conn, &[("web_user", None), ("web_user", None), ("web_user", Some(5))]);
        let [open, other, ended] = [0, 1, 2].map(|n| SessionId::from_stored(format!("{n:032}")));

        migrate(&mut conn).expect("the database migrates");
        let read = |id: &SessionId| reads::session_by_id(&conn, id).expect("read").expect("found").last_active_at;
        assert_eq!([read(&open), read(&other), read(&ended)], [UnixMillis(0), UnixMillis(1), UnixMillis(2)]);
        let unknown = SessionId::generate();
        let activity =
            [(open.clone(), UnixMillis(40)), (ended.clone(), UnixMillis(4)), (unknown.clone(), UnixMillis(40))];
        writes::record_activities(&conn, &activity).expect("activity is written");
        writes::record_activities(&conn, &[(open.clone(), UnixMillis(30))]).expect("older activity is no error");
        assert_eq!(read(&open), UnixMillis(40));
        assert_eq!(read(&other), UnixMillis(1));
        assert_eq!(read(&ended), UnixMillis(2), "activity written after the end does not count");
        let rows: i64 = conn.query_row("SELECT count(*) FROM session_activity", [], |row| row.get(0)).expect("counted");
        assert_eq!(rows, 3, "written without looking the session up");

        // A read finds the activity by its key, never by a scan.
        let by_token = plan(
            &conn,
            concat!("SELECT ", session_columns!(), " FROM sessions WHERE token_hash = ?1"),
            vec![crate::store::sql::Param::Text(String::new())],
        );
        assert!(by_token.contains("SEARCH a USING PRIMARY KEY (id=?)") && !by_token.contains("SCAN"), "{by_token}");
        let moved = writes::move_expiries(&conn, &[(open.clone(), UnixMillis(40)), (ended.clone(), UnixMillis(6))])
            .expect("expiries move");
        assert_eq!(moved, 1, "open sessions only");
        writes::purge(&conn, UnixMillis(6), UnixMillis(0), UnixMillis(0)).expect("purged");
        let left: Vec<String> = conn
            .prepare("SELECT id FROM session_activity ORDER BY id")
            .and_then(|mut rows| rows.query_map([], |row| row.get(0))?.collect())
            .expect("readable");
        // The unknown session's row stays: no purge knows its session.
        let mut kept = [open.as_str().to_owned(), unknown.as_str().to_owned()];
        kept.sort();
        assert_eq!(left, kept, "an ended session's activity goes with it");
    }

    #[test]
    fn a_database_newer_than_this_code_is_refused() {
        let mut conn = Connection::open_in_memory().expect("an in-memory database opens");
        conn.pragma_update(None, "user_version", MIGRATIONS.len() + 1).expect("user_version is writable");
        assert!(matches!(migrate(&mut conn), Err(StoreError::Internal(_))));
    }

    #[test]
    fn a_watchers_catch_up_is_served_by_an_index_not_a_scan_of_every_event() {
        use crate::domain::{EventFilter, SessionId};
        let mut conn = Connection::open_in_memory().expect("an in-memory database opens");
        migrate(&mut conn).expect("a new database migrates");
        let acme = Some(TenantId::parse("acme", "tenant").expect("a valid tenant"));
        for (filter, index) in [
            (EventFilter { tenant: acme.clone(), ..EventFilter::default() }, "events_by_tenant"),
            (
                EventFilter { tenant: acme.clone(), user_id: Some("alice".into()), ..EventFilter::default() },
                "events_by_tenant_user",
            ),
            (
                EventFilter { tenant: acme, session_id: Some(SessionId::generate()), ..EventFilter::default() },
                "events_by_session",
            ),
        ] {
            let (sql, params) = crate::store::sqlite::reads::matching_events_query(&filter, 0, 100, 10);
            let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("the query plans");
            let details: Vec<String> = plan
                .query_map(rusqlite::params_from_iter(params), |row| row.get::<_, String>("detail"))
                .expect("the plan is readable")
                .collect::<Result<_, _>>()
                .expect("the plan is readable");
            let plan = details.join("; ");
            // Without statistics SQLite may take the tenant's index for a
            // user's events too: still a range of one tenant, never all.
            let served =
                plan.contains(&format!("USING INDEX {index} ")) || plan.contains("USING INDEX events_by_tenant ");
            assert!(served, "{filter:?}: {plan}");
            assert!(!plan.contains("SCAN") && !plan.contains("TEMP B-TREE"), "{filter:?}: {plan}");
        }
    }
}
