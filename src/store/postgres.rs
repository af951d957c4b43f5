//! The Postgres store: sessiond's state in a PostgreSQL database that
//! several sessiond replicas may share.
//!
//! - this file: [`PgSettings`], [`PgStore`] (its connection pool, its reads
//!   and its implementations of the store traits) and how Postgres failures become
//!   [`StoreError`]s;
//! - `writer`: group commit — the writer tasks and their batches;
//! - `bulk`: the writes a batch applies in multi-row statements (creates
//!   and log appends);
//! - `writes`: each other write as the statements it runs;
//! - `rows`: rows back into domain values, and the queries built from
//!   filters;
//! - `migrations`: the versioned schema and the runner that applies it;
//! - `tls`: libpq's TLS parameters (`sslmode`, `sslrootcert`, `sslcert`,
//!   `sslkey`) and the rustls configuration every connection uses.
//!
//! Writes are queued to a few writer tasks, a session's writes always to the
//! same one. A writer takes every write waiting (up to a batch) and runs
//! them in one transaction: creates and log appends in multi-row
//! statements, every other write inside its own savepoint (a write that
//! fails is rolled back alone and answered its error); it numbers the
//! batch's events last, and commits. Callers are answered after the
//! `COMMIT`. Reads take a
//! pooled connection of their own. Statements are prepared once per
//! connection (`prepare_cached`).
//!
//! Events are numbered from the one-row `event_counter` table, bumped as
//! the batch's last step before `COMMIT`. Its row lock makes the
//! transactions that record events commit one after the other in sequence
//! order, so numbers are gapless (a rolled-back transaction takes its bump
//! with it) and a reader that sees event N already sees every event before
//! it. A Postgres `SEQUENCE` would give neither. Each such commit notifies
//! [`EVENTS_CHANNEL`], and each change of a session record notifies
//! [`INVALIDATE_CHANNEL`], for other replicas to follow.
//!
//! The SQL is plain but for `pg_advisory_xact_lock` (migrations) and
//! `pg_notify`. What would differ elsewhere:
//! - CockroachDB has neither LISTEN/NOTIFY (replicas would poll `events` or
//!   follow a changefeed) nor advisory locks (the migration runner would
//!   lock a row of `schema_migrations` with `SELECT … FOR UPDATE`). Its
//!   transactions are serializable and may fail with SQLSTATE 40001 at any
//!   statement or at `COMMIT`, so a whole batch would need retrying rather
//!   than one savepoint; identity values there are unique but not dense,
//!   and `COLLATE "C"` may have to go (its strings compare byte-wise
//!   anyway).
//! - YugabyteDB speaks Postgres' SQL, including savepoints and row locks;
//!   advisory locks exist only in recent releases and LISTEN/NOTIFY not at
//!   all.
//! - On both, the one counter row is a hotspot every event-recording
//!   transaction goes through; batches are what keeps that affordable.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::log_sql;
use super::{
    BoxError, Coordination, EndOutcome, Ending, EventLog, LogLimits, NewRequest, Once, PageRequest, Purged,
    RequestRecord, SessionFilter, SessionLogs, SessionRecords, SessionStorage, StoreError, StoreResult,
};
use crate::clock::UnixMillis;
use crate::domain::{
    EncodedStorage, Event, EventFilter, Grants, LogCursor, LogEntry, LogLevel, LogPage, LogQuery, LogRecord, NewEvent,
    RequestKey, Session, SessionEnd, SessionId, TenantId, TokenHash, VersionedStorage,
};
use crate::secret::Secret;

mod bulk;
mod connect;
mod entries;
mod listener;
mod messages;
mod migrations;
mod pipeline;
mod probe;
mod rows;
mod tls;
mod writer;
mod writes;

pub use listener::{FRESHNESS, HEARTBEAT_INTERVAL, SILENCE};
pub use messages::PgMessages;
pub use migrations::{SCHEMA_VERSION, migrate};
pub use probe::{Availability, PROBE_INTERVAL};

use super::sql::{Dialect, internal, session_columns, to_json};
use connect::{Connector, Pooled, Retirement};
use rows::{Filters, event_from_row, record_from_row, session_from_row};
use writer::{Committed, Writers};
use writes::{Outcome, Write};

/// Notified with the last sequence number of every commit that recorded
/// events: replicas watching sessions read `events_after` on it.
pub const EVENTS_CHANNEL: &str = "sessiond_events";
/// Notified with the ids of the session records a commit changed (they
/// end, their activity or grants change), separated by spaces and packed
/// into as few payloads as Postgres' payload limit allows, and with `*`
/// when a purge deleted sessions: replicas caching records drop those, or
/// all.
pub const INVALIDATE_CHANNEL: &str = "sessiond_invalidate";

/// Notified with every global channel message a replica posts (the
/// message itself, or where to read it when too large for a notification).
pub const MESSAGES_CHANNEL: &str = "sessiond_messages";

/// Notified by each replica's listener through its own connection, to
/// prove that its notifications still arrive (see `listener`).
pub const HEARTBEAT_CHANNEL: &str = "sessiond_heartbeat";

/// Notified with the transaction id of every commit that made log entries
/// readable (the position they are read at; the SQL names it too, in
/// `bulk` and `writes`): followers of logs read on it.
pub const LOGS_CHANNEL: &str = "sessiond_logs";

/// The channels a replica LISTENs on to follow the others.
pub fn notification_channel_names() -> [&'static str; 5] {
    [EVENTS_CHANNEL, INVALIDATE_CHANNEL, MESSAGES_CHANNEL, HEARTBEAT_CHANNEL, LOGS_CHANNEL]
}

/// How long a log query waits for the transactions before the entries it
/// found to finish (see `query_logs`), and how often it looks.
const SETTLE_WAIT: Duration = Duration::from_millis(500);
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// The lowest position a log entry may still commit at: the oldest
/// transaction running when the snapshot was taken, but for those known
/// to run in another database of the server (they write no entries here),
/// or, with none, the next transaction id. A transaction that cannot be
/// placed (its backend hidden or already gone) counts: the horizon is only
/// ever too low, which makes a reader wait, never miss an entry.
const LOG_HORIZON: &str = "\
    WITH snapshot AS (SELECT pg_current_snapshot() AS s), \
    elsewhere AS (SELECT backend_xid::text::int8 AS xid FROM pg_stat_activity \
                  WHERE backend_xid IS NOT NULL AND datid IS NOT NULL \
                    AND datid <> (SELECT oid FROM pg_database WHERE datname = current_database())) \
    SELECT COALESCE( \
        (SELECT min(x::text::int8) FROM snapshot, pg_snapshot_xip(snapshot.s) AS x \
         WHERE x::text::int8 % 4294967296 NOT IN (SELECT xid FROM elsewhere)), \
        (SELECT pg_snapshot_xmax(s)::text::int8 FROM snapshot)) AS horizon";

/// Writer tasks: each commits its own batches, so two can be in flight.
const WRITERS: usize = 2;

/// How sessiond reaches its Postgres database.
#[derive(Clone)]
pub struct PgSettings {
    /// A libpq connection string, as a URL (`postgres://user:pw@host/db`)
    /// or as `key=value` pairs. It may hold a password, so it never prints.
    pub url: Secret,
    /// Connections in the pool, the two writers' included, so at least
    /// three.
    pub pool_size: usize,
    /// How long establishing a connection, or waiting for a free pooled
    /// one, may take before the call fails as unavailable.
    pub connect_timeout: Duration,
    /// The server cancels any statement running longer (zero: never).
    pub statement_timeout: Duration,
    /// Entries one session's log may hold (zero: no limit).
    pub max_log_entries_per_session: u64,
    /// Log entries one tenant may hold (zero: no limit): an append past it
    /// is refused with [`StoreError::TenantLogFull`], checked against the
    /// count committed when the append's batch begins.
    pub max_log_entries_per_tenant: u64,
    /// Open sessions one tenant may hold (zero: no limit): a create past
    /// it is refused with [`StoreError::TenantFull`], counted in the
    /// create's own statement.
    pub max_open_sessions_per_tenant: u64,
}

impl PgSettings {
    /// How to connect: the driver's configuration (the string without its
    /// TLS parameters, the timeouts applied) and the TLS they ask for.
    /// Reads the TLS files the string names.
    fn connector(&self) -> StoreResult<Connector> {
        let (driver_string, tls) = tls::split(self.url.expose()).map_err(internal)?;
        // The parser's error may quote the string, password included.
        let mut config: tokio_postgres::Config =
            driver_string.parse().map_err(|_| internal("the Postgres connection string does not parse"))?;
        config.ssl_mode(tls.mode.driver_mode());
        if config.get_application_name().is_none() {
            config.application_name("sessiond");
        }
        let timeout = format!("-c statement_timeout={}", self.statement_timeout.as_millis());
        // sessiond prepares each statement once per connection and runs it
        // with new values thousands of times; its statements are key
        // lookups, fixed-shape listings and batch inserts, whose plan does
        // not depend on the values. Postgres may instead plan a statement
        // afresh on every run (a "custom plan"): for the batch of creates
        // that took a fifth of its CPU. A connection string's own
        // `plan_cache_mode` comes after, and wins. No JIT either: a plan
        // Postgres misjudges as large (start-up's search for request-scoped
        // sessions at a million sessions, before its kinds were written into
        // the statement) paid 577 ms compiling itself to answer no row.
        let generic = "-c plan_cache_mode=force_generic_plan -c jit=off";
        let options = match config.get_options() {
            Some(given) => format!("{generic} {given} {timeout}"),
            None => format!("{generic} {timeout}"),
        };
        config.options(options);
        let tls = tls.connector().map_err(|e| internal(format!("Postgres TLS: {e}")))?;
        Ok(Connector::new(config, self.connect_timeout, tls))
    }
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The driver's own Debug leaves the password out.
        let split = tls::split(self.url.expose()).ok();
        let target = split.as_ref().and_then(|(rest, _)| rest.parse::<tokio_postgres::Config>().ok());
        f.debug_struct("PgSettings")
            .field("hosts", &target.as_ref().map(|c| c.get_hosts().to_vec()))
            .field("ports", &target.as_ref().map(|c| c.get_ports().to_vec()))
            .field("dbname", &target.as_ref().and_then(|c| c.get_dbname().map(str::to_owned)))
            .field("tls", &split.map(|(_, tls)| tls))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

/// The store of a fleet of sessiond replicas: a Postgres database.
pub struct PgStore {
    pool: Pool,
    writers: Writers,
    /// What other replicas change, from the listener task.
    notifications: tokio::sync::broadcast::Sender<super::Notification>,
    listener: tokio::task::JoinHandle<()>,
    /// Whether Postgres commits now, from the prober task.
    availability: Availability,
    prober: tokio::task::JoinHandle<()>,
    /// Statements outside the writers.
    reads: Reads,
    /// Messages other replicas post, from the listener task.
    announcements: tokio::sync::broadcast::Sender<super::messages::Announced>,
    /// Names this process in the messages it announces.
    origin: String,
    /// Entries a session's log and a tenant may hold.
    log_limits: LogLimits,
    /// Open sessions one tenant may hold (zero: no limit).
    max_open_sessions: u64,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
        self.prober.abort();
    }
}

impl PgStore {
    /// Brings the database's schema up to date, opens the pool and starts
    /// the writer tasks. Fails as unavailable when the server cannot be
    /// reached.
    pub async fn connect(settings: PgSettings) -> StoreResult<PgStore> {
        if settings.pool_size <= WRITERS {
            return Err(internal(format!("the Postgres pool needs more than {WRITERS} connections")));
        }
        let mut connector = settings.connector()?;
        // A cut network shows on the listening connection within ~10 s.
        connector
            .config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        migrations::run(&connector).await?;
        let (notifications, _) = tokio::sync::broadcast::channel(4096);
        let (announcements, _) = tokio::sync::broadcast::channel(messages::ANNOUNCED_BACKLOG);
        let origin = format!("{:016x}", rand::random::<u64>());
        let followed = listener::Followed {
            notifications: notifications.clone(),
            messages: announcements.clone(),
            origin: origin.clone(),
        };
        let listener = tokio::spawn(listener::listen(connector.named("listener"), followed));
        let prober_connector = connector.named("probe");
        let manager = Manager::from_connect(
            connector.config.clone(),
            Pooled(connector),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let (retired, cutoff) = Retirement::hook();
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.connect_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .pre_recycle(retired)
            .build()
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        let retirement = Retirement::of(pool.clone(), cutoff);
        let (availability, prober) = probe::start(prober_connector, settings.connect_timeout, retirement.clone());
        let writers = Writers::start(&pool, WRITERS, &availability, &retirement);
        let watched = pool.weak();
        crate::telemetry::metrics::observe_pool("postgres", move || {
            let status = watched.upgrade()?.status();
            Some(crate::telemetry::metrics::PoolUsage {
                max: status.max_size,
                open: status.size,
                idle: status.available,
                waiting: status.waiting,
            })
        });
        tracing::debug!(pool_size = settings.pool_size, "opened postgres store");
        let read_deadline =
            (!settings.statement_timeout.is_zero()).then(|| settings.statement_timeout + settings.connect_timeout);
        let reads = Reads { pool: pool.clone(), availability: availability.clone(), read_deadline, retirement };
        Ok(PgStore {
            pool,
            writers,
            notifications,
            listener,
            availability,
            prober,
            reads,
            announcements,
            origin,
            log_limits: LogLimits {
                per_session: settings.max_log_entries_per_session,
                per_tenant: settings.max_log_entries_per_tenant,
            },
            max_open_sessions: settings.max_open_sessions_per_tenant,
        })
    }

    /// Runs one read statement on a pooled connection (see [`Reads::query`]).
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        self.reads.query(sql, params).await
    }

    /// Runs a query built from filters.
    async fn query_built(&self, (sql, filters): (String, Filters)) -> StoreResult<Vec<Row>> {
        self.query(&sql, &filters.params()).await
    }

    /// The position a time range's floor or ceiling query answers, if any
    /// (see `store::log_sql`).
    async fn time_bound(&self, bound: Option<(String, i64)>) -> StoreResult<Option<i64>> {
        let Some((sql, at)) = bound else {
            return Ok(None);
        };
        Ok(self.query(&sql, &[&at]).await?.first().map(|r| r.try_get(0)).transpose()?)
    }
}

/// What a statement outside the writers needs: the pool, the prober's
/// verdict and the longest a statement may take. Cheap to clone.
#[derive(Clone)]
struct Reads {
    pool: Pool,
    availability: Availability,
    /// The longest a read may take: a statement's timeout plus the wait
    /// for a connection (`None`: statements have no timeout).
    read_deadline: Option<Duration>,
    /// Drops the pool's connections once their server turned read-only.
    retirement: Retirement,
}

impl Reads {
    /// Completes when the read deadline passes (never, without one).
    async fn deadline(&self) {
        match self.read_deadline {
            Some(deadline) => tokio::time::sleep(deadline).await,
            None => std::future::pending().await,
        }
    }

    /// Runs one read statement on a pooled connection. Cut short (its
    /// connection discarded) when Postgres is found not to answer while the
    /// read waits (see `probe`), or when the read outlives its deadline.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        let given_up = self.availability.given_up();
        tokio::pin!(given_up);
        let client = tokio::select! {
            client = timed_get(&self.pool) => client.map_err(pool_error)?,
            () = &mut given_up => return Err(not_committing()),
        };
        let read = async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        };
        let outcome = tokio::select! {
            rows = read => Some(rows),
            () = given_up => None,
            () = self.deadline() => None,
        };
        match outcome {
            Some(Err(e)) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
                drop(deadpool_postgres::Object::take(client));
                self.retirement.retire(READ_ONLY);
                Err(e.into())
            }
            Some(rows) => Ok(rows?),
            None => {
                // Its answer may never come: the pool must not lend it again.
                drop(deadpool_postgres::Object::take(client));
                Err(not_committing())
            }
        }
    }

    /// The oldest transaction still running: log positions below it are
    /// final.
    async fn log_horizon(&self) -> StoreResult<i64> {
        let rows = self.query(LOG_HORIZON, &[]).await?;
        let row = rows.first().ok_or_else(|| internal("the snapshot query answered no row"))?;
        Ok(row.try_get("horizon")?)
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgStore")
            .field("pool_size", &status.max_size)
            .field("connections", &status.size)
            .finish_non_exhaustive()
    }
}

/// What Postgres refused (a statement, a connection): its SQLSTATE and the
/// objects it names, and its message and detail where they cannot quote a
/// statement's values. Only logged: clients are answered without it.
///
/// - class 23 (integrity violations): the message names the constraint,
///   column or table, the detail quotes the key or the failing row
///   (`Key (token_hash)=(…) already exists`): message kept, detail not;
/// - class 22 (data exceptions): the message quotes the input it could
///   not take (`invalid input syntax for type integer: "…"`): neither
///   kept, the column and data type instead;
/// - every other class (connections, authentication, timeouts, lock
///   races, resources, syntax): message and detail kept. sessiond binds
///   every value as a parameter, so a statement the detail may show (a
///   deadlock's) holds `$n`, not values.
#[derive(Debug)]
struct Refused {
    code: String,
    table: Option<String>,
    constraint: Option<String>,
    column: Option<String>,
    datatype: Option<String>,
    message: Option<String>,
    detail: Option<String>,
}

impl Refused {
    fn from_db(db: &tokio_postgres::error::DbError) -> Refused {
        let code = db.code().code();
        let (message, detail) = match code.get(..2) {
            Some("22") => (None, None),
            Some("23") => (Some(db.message()), None),
            _ => (Some(db.message()), db.detail()),
        };
        Refused {
            code: code.to_owned(),
            table: db.table().map(str::to_owned),
            constraint: db.constraint().map(str::to_owned),
            column: db.column().map(str::to_owned),
            datatype: db.datatype().map(str::to_owned),
            message: message.map(str::to_owned),
            detail: detail.map(str::to_owned),
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres refused (SQLSTATE {}", self.code)?;
        let named = [
            ("table", &self.table),
            ("constraint", &self.constraint),
            ("column", &self.column),
            ("data type", &self.datatype),
        ];
        for (what, name) in named {
            if let Some(name) = name {
                write!(f, ", {what} {name}")?;
            }
        }
        f.write_str(")")?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// Postgres failures: lost or refused connections, shutdowns, cancelled
/// statements, exhausted resources and lost lock races may clear up and are
/// unavailable; the rest is internal. Server texts are kept only where
/// they quote no values (see `Refused`); the driver's own texts name none.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let transient = is_transient(&e);
        let cause: BoxError = match e.as_db_error() {
            Some(db) => Box::new(Refused::from_db(db)),
            None => Box::new(e),
        };
        if transient { StoreError::Unavailable(cause) } else { StoreError::Internal(cause) }
    }
}

/// A Postgres failure as logs show it: a refusal as [`Refused`] keeps it,
/// anything else with its causes (the driver's own text alone says only
/// "db error" or "error performing TLS handshake").
fn described(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return Refused::from_db(db).to_string();
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code().map(|code| code.code()) {
        // 08: connection exception; 53: insufficient resources; 57:
        // operator intervention (shutdown, statement timeout); 40001 and
        // 40P01: serialization failure and deadlock, lost races; 25006: a
        // write reached a read-only server (a standby, a demoted primary).
        Some(code) => {
            ["08", "53", "57"].iter().any(|class| code.starts_with(class))
                || matches!(code, "40001" | "40P01" | "25006")
        }
        None => e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Why connections are retired when a statement is refused with SQLSTATE
/// 25006: their server no longer takes writes (a standby, a primary
/// turned read-only), and a new connection may find the one that does.
const READ_ONLY: &str = "the server refused a write as read-only";

/// Whether `e` is Postgres refusing a write as read-only (SQLSTATE 25006).
fn is_read_only(e: &StoreError) -> bool {
    let read_only = SqlState::READ_ONLY_SQL_TRANSACTION.code();
    matches!(e, StoreError::Unavailable(cause) if cause.downcast_ref::<Refused>().is_some_and(|r| r.code == read_only))
}

/// What a call is answered while Postgres does not commit, or stopped
/// answering while the call waited.
fn not_committing() -> StoreError {
    StoreError::Unavailable("postgres is not answering in time".into())
}

/// The pool's failures: waiting too long is unavailable, as is failing to
/// connect.
/// A pooled connection, its wait measured in
/// `db.client.connection.wait_time`.
async fn timed_get(pool: &deadpool_postgres::Pool) -> Result<deadpool_postgres::Object, PoolError> {
    let started = std::time::Instant::now();
    let client = pool.get().await;
    crate::telemetry::metrics::pool_wait("postgres", started.elapsed());
    client
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => e.into(),
        PoolError::Timeout(_) | PoolError::Closed => StoreError::Unavailable(Box::new(e)),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => StoreError::Internal(Box::new(e)),
    }
}

/// A keyed write's answer: the record it found stored first, or what
/// `done` makes of its commit.
fn once<T>(committed: Committed, done: impl FnOnce(Committed) -> StoreResult<T>) -> StoreResult<Once<T>> {
    match committed {
        Committed { outcome: Outcome::Replayed(record), .. } => Ok(Once::Replayed(record)),
        committed => done(committed).map(Once::Done),
    }
}

/// A count or limit as Postgres' `BIGINT`.
fn sql_int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

#[async_trait]
impl SessionRecords for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %session.id))]
    async fn create_session(&self, session: Session, storage: EncodedStorage, event: NewEvent) -> StoreResult<Event> {
        let write = Write::Create {
            grants: to_json(&session.grants, "grants")?,
            session: Box::new(session),
            storage_version: i64::from(!storage.is_empty()),
            storage: storage.into_json(),
            event,
            request: None,
            max_open: self.max_open_sessions,
        };
        self.writers.submit(write).await?.event()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %session.id))]
    async fn create_session_once(
        &self,
        session: Session,
        storage: EncodedStorage,
        event: NewEvent,
        request: NewRequest,
    ) -> StoreResult<Once<Event>> {
        let write = Write::Create {
            grants: to_json(&session.grants, "grants")?,
            session: Box::new(session),
            storage_version: i64::from(!storage.is_empty()),
            storage: storage.into_json(),
            event,
            request: Some(Box::new(request)),
            max_open: self.max_open_sessions,
        };
        once(self.writers.submit(write).await?, Committed::event)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE token_hash = $1");
        let rows = self.query(sql, &[&hash.0.as_slice()]).await?;
        rows.first().map(session_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = $1");
        let rows = self.query(sql, &[&id.as_str()]).await?;
        rows.first().map(session_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn record_activity(&self, id: &SessionId, at: UnixMillis) -> StoreResult<()> {
        self.writers.submit(Write::Activities { activity: vec![(id.clone(), at)] }).await.map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id, reason = %end.reason))]
    async fn end_session(&self, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
        let write = Write::End { id: id.clone(), end: end.clone(), event: event.clone() };
        match self.writers.submit(write).await? {
            Committed { outcome: Outcome::AlreadyEnded(existing), .. } => Ok(EndOutcome::AlreadyEnded(existing)),
            committed => committed.event().map(EndOutcome::Ended),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(sessions = endings.len()))]
    async fn end_sessions(&self, endings: Vec<Ending>) -> StoreResult<Vec<(SessionId, EndOutcome)>> {
        // One write per writer, each holding the sessions that writer
        // serves, so that each session's writes still commit in order.
        let order: Vec<SessionId> = endings.iter().map(|ending| ending.id.clone()).collect();
        let mut split: Vec<Vec<Ending>> = vec![Vec::new(); WRITERS];
        for ending in endings {
            split[writes::writer_of(&ending.id, WRITERS)].push(ending);
        }
        let writes = split.into_iter().filter(|part| !part.is_empty()).map(|endings| Write::Ends { endings });
        let committed = self.writers.submit_all(writes.collect()).await?;
        let mut answered = std::collections::HashMap::with_capacity(order.len());
        for Committed { events, outcome } in committed {
            let Outcome::Ends(outcomes) = outcome else { return Err(internal("a write of ends answered no outcomes")) };
            let mut events = events.into_iter();
            for (id, earlier) in outcomes {
                let outcome = match earlier {
                    Some(earlier) => EndOutcome::AlreadyEnded(earlier),
                    None => EndOutcome::Ended(events.next().ok_or_else(|| internal("an end recorded no event"))?),
                };
                answered.insert(id, outcome);
            }
        }
        Ok(order.into_iter().filter_map(|id| answered.remove(&id).map(|outcome| (id, outcome))).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(sessions = activity.len()))]
    async fn record_activities(&self, activity: &[(SessionId, UnixMillis)]) -> StoreResult<()> {
        let writes = by_writer(activity).map(|activity| Write::Activities { activity });
        self.writers.submit_all(writes.collect()).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(sessions = activity.len()))]
    async fn move_expiries(&self, activity: &[(SessionId, UnixMillis)]) -> StoreResult<usize> {
        let writes = by_writer(activity).map(|activity| Write::Expiries { activity });
        let mut moved = 0;
        for Committed { outcome, .. } in self.writers.submit_all(writes.collect()).await? {
            let Outcome::Moved(count) = outcome else { return Err(internal("a write of expiries answered no count")) };
            moved += count as usize;
        }
        Ok(moved)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> StoreResult<Vec<Session>> {
        let rows = self.query_built(rows::list_query(filter, page)).await?;
        rows.iter().map(session_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn due_sessions(&self, now: UnixMillis, limit: usize) -> StoreResult<Vec<Session>> {
        let rows = self.query_built(rows::due_query(now, limit)).await?;
        rows.iter().map(session_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn update_grants(
        &self,
        id: &SessionId,
        expected_version: u64,
        grants: &Grants,
        event: &NewEvent,
    ) -> StoreResult<(u64, Event)> {
        let write = Write::Grants {
            id: id.clone(),
            expected_version,
            grants: to_json(grants, "grants")?,
            event: event.clone(),
        };
        self.writers.submit(write).await?.versioned()
    }

    async fn count_open_sessions(&self) -> StoreResult<Vec<(String, u64)>> {
        let sql = "SELECT kind, count(*) AS open FROM sessions WHERE ended_at IS NULL GROUP BY kind ORDER BY kind";
        let rows = self.query(sql, &[]).await?;
        rows.iter().map(|row| Ok((row.try_get::<_, String>("kind")?, rows::unsigned(row, "open")?))).collect()
    }

    async fn open_sessions_of(&self, tenant: &TenantId) -> StoreResult<u64> {
        writes::open_sessions(&self.query(writes::OPEN_SESSIONS_OF, &[&tenant.as_str()]).await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge(
        &self,
        ended_before: UnixMillis,
        events_before: UnixMillis,
        requests_before: UnixMillis,
    ) -> StoreResult<Purged> {
        let purge = Write::Purge { ended_before, events_before, requests_before };
        let purged = self.writers.submit(purge).await?.purged()?;
        tracing::debug!(sessions = purged.sessions, events = purged.events, "purged the postgres store");
        Ok(purged)
    }
}

#[async_trait]
impl SessionStorage for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn storage(&self, id: &SessionId) -> StoreResult<VersionedStorage> {
        let rows = self.query("SELECT storage, storage_version FROM sessions WHERE id = $1", &[&id.as_str()]).await?;
        let row = rows.first().ok_or(StoreError::NotFound)?;
        Ok(VersionedStorage {
            version: rows::unsigned(row, "storage_version")?,
            values: rows::from_json(row, "storage")?,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn replace_storage(
        &self,
        id: &SessionId,
        expected_version: u64,
        values: EncodedStorage,
        event: NewEvent,
    ) -> StoreResult<(u64, Event)> {
        let write = Write::Storage { id: id.clone(), expected_version, values: values.into_json(), event };
        self.writers.submit(write).await?.versioned()
    }
}

#[async_trait]
impl SessionLogs for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id, entries = entries.len()))]
    async fn append_logs(&self, id: &SessionId, entries: Vec<LogEntry>) -> StoreResult<()> {
        let write = Write::Logs { id: id.clone(), entries, request: None, max: self.log_limits };
        self.writers.submit(write).await.map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id, entries = entries.len()))]
    async fn append_logs_once(
        &self,
        id: &SessionId,
        entries: Vec<LogEntry>,
        request: NewRequest,
    ) -> StoreResult<Once<()>> {
        let write = Write::Logs { id: id.clone(), entries, request: Some(Box::new(request)), max: self.log_limits };
        once(self.writers.submit(write).await?, |_| Ok(()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn query_logs(&self, query: &LogQuery) -> StoreResult<LogPage> {
        // Below the oldest transaction still running (the horizon), every
        // position is final: what commits later gets a higher one. The
        // entries are read after the horizon, in a later snapshot, so they
        // hold everything below it. Entries committed at or above it are
        // answered once it has passed them, which takes as long as the
        // transactions before theirs (milliseconds); past SETTLE_WAIT, the
        // page stops before them.
        // A time range's two bounds, each one probe, on two connections at once.
        let (floor, ceiling) = tokio::try_join!(
            self.time_bound(log_sql::floor_sql(query, Dialect::POSTGRES)),
            self.time_bound(log_sql::ceiling_sql(query, Dialect::POSTGRES)),
        )?;
        let built = rows::logs_query(&log_sql::from_floor(query, floor), i64::MAX, ceiling);
        let waiting = tokio::time::Instant::now();
        loop {
            let horizon = self.reads.log_horizon().await?;
            let rows = self.query(&built.0, &built.1.params()).await?;
            let mut records = rows.iter().map(record_from_row).collect::<StoreResult<Vec<LogRecord>>>()?;
            let settled = records.iter().all(|r| r.position < horizon);
            if settled || waiting.elapsed() >= SETTLE_WAIT {
                // In position order: what is below the horizon comes first.
                records.retain(|r| r.position < horizon);
                return Ok(LogPage { records, horizon });
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// Every transaction that committed before now has an id below the
    /// snapshot's xmax: a follow from now starts after them.
    async fn log_cursor_now(&self) -> StoreResult<LogCursor> {
        let rows = self.query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8 AS next", &[]).await?;
        let row = rows.first().ok_or_else(|| internal("the snapshot query answered no row"))?;
        Ok(LogCursor::below(row.try_get("next")?))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %id))]
    async fn log_level_reached(&self, id: &SessionId, level: LogLevel) -> StoreResult<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM log_entries WHERE session_id = $1 AND level >= $2) AS reached";
        let rows = self.query(sql, &[&id.as_str(), &(level as i64)]).await?;
        let row = rows.first().ok_or_else(|| internal("the level query answered no row"))?;
        Ok(row.try_get("reached")?)
    }
}

#[async_trait]
impl EventLog for PgStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<Event>> {
        let rows = self.query_built(rows::events_query(after, limit)).await?;
        rows.iter().map(event_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn matching_events(
        &self,
        filter: &EventFilter,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let rows = self.query_built(rows::matching_events_query(filter, after, upto, limit)).await?;
        rows.iter().map(event_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn last_event_sequence(&self) -> StoreResult<u64> {
        // The counter, not max(sequence): it survives purges.
        let rows = self.query("SELECT last_sequence FROM event_counter", &[]).await?;
        let row = rows.first().ok_or_else(|| internal("the event counter row is missing"))?;
        rows::unsigned(row, "last_sequence")
    }
}

#[async_trait]
impl Coordination for PgStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn request_record(&self, key: &RequestKey, since: UnixMillis) -> StoreResult<Option<RequestRecord>> {
        let rows = self.query(writes::SELECT_REQUEST, &[&key.0.as_slice(), &since.0]).await?;
        rows.first().map(writes::request_from_row).transpose()
    }

    /// Every replica of a fleet writes to the same database.
    fn unseen_activity(&self) -> super::UnseenActivity {
        super::UnseenActivity::UpToWriteInterval
    }

    fn notifications(&self) -> Option<tokio::sync::broadcast::Receiver<super::Notification>> {
        Some(self.notifications.subscribe())
    }

    fn availability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.availability.subscribe())
    }
}

/// `activity` split by the writer of each session, the empty parts left
/// out: one write per writer keeps each session's writes in order.
fn by_writer(activity: &[(SessionId, UnixMillis)]) -> impl Iterator<Item = Vec<(SessionId, UnixMillis)>> {
    let mut split: Vec<Vec<(SessionId, UnixMillis)>> = vec![Vec::new(); WRITERS];
    for (id, at) in activity {
        split[writes::writer_of(id, WRITERS)].push((id.clone(), *at));
    }
    split.into_iter().filter(|part| !part.is_empty())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_postgres::config::{Host, TargetSessionAttrs};

    use super::PgSettings;

    #[test]
    fn every_connection_is_made_with_every_host_and_target_session_attrs() {
        for url in [
            "postgres://sessiond@pg-a:5432,pg-b:5433/sessiond?target_session_attrs=read-write&sslmode=disable",
            "host=pg-a,pg-b port=5432,5433 user=sessiond dbname=sessiond target_session_attrs=read-write",
        ] {
            let settings = PgSettings {
                connect_timeout: Duration::from_secs(2),
                ..crate::settings::Settings::default_postgres(url)
            };
            let connector = settings.connector().expect("the string parses");
            // The pool is made from `config`; the listener, prober and
            // migrations from `named` copies of it.
            for config in [&connector.config, &connector.named("probe").config] {
                assert_eq!(config.get_hosts(), [Host::Tcp("pg-a".into()), Host::Tcp("pg-b".into())], "{url}");
                assert_eq!(config.get_ports(), [5432, 5433], "{url}");
                assert_eq!(config.get_target_session_attrs(), TargetSessionAttrs::ReadWrite, "{url}");
                assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(1)), "a share of 2 s: {url}");
            }
        }
    }
}
