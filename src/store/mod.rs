//! The store: where sessions, their grants, storage, logs and events live.
//!
//! One trait per aggregate is the seam between the domain service and
//! persistence: [`SessionRecords`], [`SessionStorage`], [`SessionLogs`],
//! [`EventLog`], and [`Coordination`] for what belongs to none of them. The
//! service holds them as [`Stores`], one handle each, so a decorator wraps
//! only what it serves: [`cache::CachedRecords`] caches session records
//! with moka, and [`crate::telemetry::store::Metered`] times every
//! operation of any of them. Implementations of them all ([`Store`]):
//! [`sqlite::SqliteStore`] (embedded, the default),
//! [`postgres::PgStore`], and [`memory::MemoryStore`] (nothing kept, for
//! tests and as the contract's reference). Every implementation and
//! decorator passes the same conformance suite
//! (`crates/sessiond-conformance`).
//!
//! Sharing a store with other processes is this layer's business too: the
//! cache follows their invalidations, [`feed::ChangeFeed`] turns their
//! notifications into the events they recorded (stepping over this
//! process's own), and [`UnseenActivity`] says how much newer than the
//! stored value their unwritten activity may be. The service never asks
//! whether the store is shared.
//!
//! Contract shared by all implementations:
//! - a method answers only after its change is durable (committed);
//! - every change that WatchSessions reports records its event in the same
//!   transaction, numbered one more than the event before, in commit order
//!   (a reader that sees event N sees every event before it), and numbering
//!   never restarts, not even after a purge removed the newest events;
//! - writes on an ended session fail with [`StoreError::Ended`], on an
//!   unknown one with [`StoreError::NotFound`];
//! - a write guarded by an idempotency record ([`NewRequest`]) stores the
//!   record in its own transaction, and is not applied when a live record
//!   with the same key is already stored: it answers that record instead
//!   ([`Once::Replayed`]), across every process sharing the store.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::UnixMillis;
use crate::domain::{
    EncodedStorage, EndReason, Event, EventFilter, Grants, Labels, LogCursor, LogEntry, LogLevel, LogPage, LogQuery,
    NewEvent, RequestDigest, RequestKey, RoleBook, Session, SessionEnd, SessionId, SessionKind, TenantId, Timing,
    TokenHash, VersionedStorage,
};

pub mod cache;
pub mod feed;
#[doc(hidden)]
pub mod fixtures;
pub mod log_sql;
pub mod memory;
pub mod messages;
pub mod postgres;
pub mod sql;
pub mod sqlite;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such session")]
    NotFound,
    #[error("session has ended ({0})")]
    Ended(EndReason),
    #[error("version conflict; current version is {current}")]
    Conflict { current: u64 },
    /// The session's log would hold more than `max` entries: the append is
    /// refused whole.
    #[error("the session's log holds at most {max} entries")]
    LogFull { max: u64 },
    /// The session's tenant would hold more than `max` log entries: the
    /// append is refused whole.
    #[error("the tenant holds at most {max} log entries")]
    TenantLogFull { max: u64 },
    /// The session's tenant holds `max` open sessions already: the create
    /// is refused and nothing is stored.
    #[error("the tenant holds its limit of {max} open sessions")]
    TenantFull { max: u64 },
    /// The store cannot be reached now; the call may succeed later.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store's disk is full: writes fail until space is freed, reads
    /// still answer.
    #[error("store full")]
    Full(#[source] BoxError),
    #[error("store failure")]
    Internal(#[source] BoxError),
}

/// Whether a session's log holding `held` entries takes `adding` more
/// under a limit of `max` (zero: no limit).
pub(crate) fn check_log_room(held: u64, adding: usize, max: u64) -> StoreResult<()> {
    if max > 0 && held.saturating_add(adding as u64) > max {
        return Err(StoreError::LogFull { max });
    }
    Ok(())
}

/// How many log entries a store keeps: per session's log, and per tenant
/// over its open sessions' logs and the kept logs of its ended ones (until
/// the purge). Zero: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogLimits {
    pub per_session: u64,
    pub per_tenant: u64,
}

impl LogLimits {
    /// Whether an append of `adding` entries fits a session's log holding
    /// `session` entries, of a tenant holding `tenant`.
    pub(crate) fn check(&self, session: u64, tenant: u64, adding: usize) -> StoreResult<()> {
        check_log_room(session, adding, self.per_session)?;
        if self.per_tenant > 0 && tenant.saturating_add(adding as u64) > self.per_tenant {
            return Err(StoreError::TenantLogFull { max: self.per_tenant });
        }
        Ok(())
    }
}

/// Whether a tenant holding `open` open sessions may open one more under a
/// limit of `max` (zero: no limit).
pub(crate) fn check_tenant_room(open: u64, max: u64) -> StoreResult<()> {
    if max > 0 && open >= max {
        return Err(StoreError::TenantFull { max });
    }
    Ok(())
}

/// Which sessions ListSessions, RevokeSessions and recovery look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Set by the service for callers; unset only for sessiond's own work
    /// (recovery, shutdown) across tenants.
    pub tenant: Option<TenantId>,
    pub user_id: Option<String>,
    /// Empty: every kind.
    pub kinds: Vec<SessionKind>,
    /// `Some(true)`: open only; `Some(false)`: ended only.
    pub open: Option<bool>,
    /// Empty: any id.
    pub ids: Vec<SessionId>,
}

impl SessionFilter {
    /// The open sessions of the request-scoped kinds, in every tenant:
    /// what start-up ends after a crash, and a shutdown before stopping.
    pub fn open_request_scoped() -> Self {
        SessionFilter {
            kinds: SessionKind::ALL.iter().copied().filter(|k| k.is_request_scoped()).collect(),
            open: Some(true),
            ..SessionFilter::default()
        }
    }
}

/// A page of a newest-first listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Answer sessions strictly after this `(created_at, id)` in
    /// newest-first order.
    pub after: Option<(UnixMillis, SessionId)>,
    pub limit: usize,
}

/// How `end_session` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// This call ended it and recorded the event.
    Ended(Event),
    /// It had already ended; nothing changed.
    AlreadyEnded(SessionEnd),
}

/// One session to end, as [`SessionRecords::end_sessions`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub id: SessionId,
    pub end: SessionEnd,
    pub event: NewEvent,
}

/// A change made through another process sharing the same store, as the
/// store learns of it (Postgres LISTEN/NOTIFY). Stores that cannot be
/// shared announce nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Session records changed: cached copies are stale.
    Invalidate(Vec<SessionId>),
    /// Events up to this sequence number are committed.
    EventsRecorded(u64),
    /// Log entries became readable at this position (see
    /// [`crate::domain::LogCursor`]).
    LogsReadable(i64),
    /// Changes by other processes can no longer be followed (the listening
    /// connection is lost): cached copies may go stale unnoticed.
    Lost,
    /// Changes are followed again, but some may have been missed meanwhile:
    /// drop every cached copy and re-read events.
    Resync,
    /// The stream of changes is proven alive: records cached now may be
    /// answered from memory until this instant (every change committed a
    /// little before it has been announced already).
    FreshUntil(std::time::Instant),
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub events: u64,
    /// Idempotency records.
    pub requests: u64,
}

/// The idempotency record a keyed write stores with itself: what a retry
/// with the same key is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub key: RequestKey,
    pub digest: RequestDigest,
    /// A create's token, sealed with the request id (never in clear).
    pub sealed_token: Option<Vec<u8>>,
    /// A log append's count of accepted entries.
    pub accepted: u64,
    pub at: UnixMillis,
    /// A record with the same key stored before this has expired: it is
    /// replaced rather than answered.
    pub expired_before: UnixMillis,
}

/// A stored idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub digest: RequestDigest,
    /// The session created, or appended to.
    pub session_id: SessionId,
    pub sealed_token: Option<Vec<u8>>,
    pub accepted: u64,
    pub at: UnixMillis,
}

/// How a keyed write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Once<T> {
    /// Applied now, with its record.
    Done(T),
    /// Not applied: a live record with its key was stored first.
    Replayed(RequestRecord),
}

/// Session records: a session's identity, grants, activity and end, with
/// the events their changes record, the per-tenant counts kept with them,
/// and the purge that removes ended ones (with their storage and logs).
/// The only aggregate the session cache decorates.
#[async_trait]
pub trait SessionRecords: Send + Sync + fmt::Debug + 'static {
    /// Records a new open session, its initial storage (version 1 when not
    /// empty, else 0) and its `created` event.
    async fn create_session(&self, session: Session, storage: EncodedStorage, event: NewEvent) -> StoreResult<Event>;

    /// [`SessionRecords::create_session`] guarded by `request`: stores the record in
    /// the same transaction, or answers the live record already stored
    /// under its key and creates nothing.
    async fn create_session_once(
        &self,
        session: Session,
        storage: EncodedStorage,
        event: NewEvent,
        request: NewRequest,
    ) -> StoreResult<Once<Event>>;

    /// Finds a session, open or ended, by the hash of its token.
    async fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Session>>;

    /// Finds a session, open or ended, by id.
    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>>;

    /// [`SessionRecords::session_by_token`] as a [`Record`]: a cache
    /// answers from memory without unpacking the whole session.
    async fn record_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Record>> {
        Ok(self.session_by_token(hash).await?.map(Record::whole))
    }

    /// [`SessionRecords::session_by_token`], answered in a state that reflects every
    /// change up to event `sequence` (a read-your-writes floor). A store
    /// read straight from its database always does; a cache that may lag
    /// behind other processes reads through when it has not caught up.
    async fn session_by_token_after(&self, hash: &TokenHash, sequence: u64) -> StoreResult<Option<Session>> {
        let _ = sequence;
        self.session_by_token(hash).await
    }

    /// [`SessionRecords::session_by_id`] with the same floor.
    async fn session_by_id_after(&self, id: &SessionId, sequence: u64) -> StoreResult<Option<Session>> {
        let _ = sequence;
        self.session_by_id(id).await
    }

    /// [`SessionRecords::session_by_id`] as stored now, never answered
    /// from memory: activity is no change a cache is told of (see
    /// [`SessionRecords::record_activity`]), so this is what to read before
    /// acting on a session's last activity.
    async fn stored_session(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        self.session_by_id(id).await
    }

    /// Moves an open session's `last_active_at` forward to `at` (never
    /// back). No event, and no notification to other processes: they read
    /// activity from the store when they need it. Ended or unknown sessions
    /// are left alone: activity after an end does not count, and activity
    /// of an unknown session may be written but is never read.
    async fn record_activity(&self, id: &SessionId, at: UnixMillis) -> StoreResult<()>;

    /// Ends an open session with `end` and records `event`. When
    /// `end.log_id` is `None` the session's log entries are deleted.
    async fn end_session(&self, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome>;

    /// Ends many open sessions, each as [`SessionRecords::end_session`] would, in a
    /// few transactions (one per writer) rather than one per session.
    /// Answers, in the order given, the outcome of every session found
    /// (unknown ids are left out). Of two processes ending the same session
    /// at once, exactly one records its event.
    async fn end_sessions(&self, endings: Vec<Ending>) -> StoreResult<Vec<(SessionId, EndOutcome)>> {
        let mut outcomes = Vec::with_capacity(endings.len());
        for ending in &endings {
            match self.end_session(&ending.id, &ending.end, &ending.event).await {
                Ok(outcome) => outcomes.push((ending.id.clone(), outcome)),
                Err(StoreError::NotFound) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(outcomes)
    }

    /// [`SessionRecords::record_activity`] for many sessions, in a few transactions
    /// (one per writer).
    async fn record_activities(&self, activity: &[(SessionId, UnixMillis)]) -> StoreResult<()> {
        for (id, at) in activity {
            self.record_activity(id, *at).await?;
        }
        Ok(())
    }

    /// Moves the stored expiry of open sessions to follow their activity at
    /// the times given, so that [`SessionRecords::due_sessions`] stops
    /// answering them; answers how many moved. A store that writes activity
    /// apart from the session (the SQL stores) leaves the expiry where it
    /// was until this is called; one whose expiry always follows its
    /// activity has nothing to move.
    async fn move_expiries(&self, activity: &[(SessionId, UnixMillis)]) -> StoreResult<usize> {
        let _ = activity;
        Ok(0)
    }

    /// Sessions matching `filter`, newest first.
    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> StoreResult<Vec<Session>>;

    /// Open sessions whose stored expiry is at or before `now`, oldest
    /// first. Activity recorded since their expiry last moved (see
    /// [`SessionRecords::move_expiries`]) may put them past `now`: read
    /// each answer's `last_active_at` before ending it.
    async fn due_sessions(&self, now: UnixMillis, limit: usize) -> StoreResult<Vec<Session>>;

    /// Replaces an open session's grants if its grants version is still
    /// `expected_version`; answers the new version.
    async fn update_grants(
        &self,
        id: &SessionId,
        expected_version: u64,
        grants: &Grants,
        event: &NewEvent,
    ) -> StoreResult<(u64, Event)>;

    /// Open sessions across tenants, counted by kind (its stored name,
    /// `web_user`); kinds without one are left out.
    async fn count_open_sessions(&self) -> StoreResult<Vec<(String, u64)>>;

    /// Open sessions of `tenant`, as committed: a count the store keeps in
    /// the same transaction as every opening and ending, so reading it costs
    /// one row whatever the number of sessions, and every process sharing
    /// the store reads the same.
    async fn open_sessions_of(&self, tenant: &TenantId) -> StoreResult<u64>;

    /// Deletes sessions (with storage and logs) that ended before
    /// `ended_before`, events recorded before `events_before` and
    /// idempotency records stored before `requests_before`.
    async fn purge(
        &self,
        ended_before: UnixMillis,
        events_before: UnixMillis,
        requests_before: UnixMillis,
    ) -> StoreResult<Purged>;
}

/// A session's storage: one versioned JSON map per session.
#[async_trait]
pub trait SessionStorage: Send + Sync + fmt::Debug + 'static {
    /// A session's storage and its version (also of an ended session: the
    /// service refuses calls on those before reading).
    async fn storage(&self, id: &SessionId) -> StoreResult<VersionedStorage>;

    /// Replaces an open session's storage if it is still at
    /// `expected_version`; answers the new version.
    async fn replace_storage(
        &self,
        id: &SessionId,
        expected_version: u64,
        values: EncodedStorage,
        event: NewEvent,
    ) -> StoreResult<(u64, Event)>;
}

/// Session logs: entries appended to a session and queried across
/// sessions.
#[async_trait]
pub trait SessionLogs: Send + Sync + fmt::Debug + 'static {
    /// Appends entries to an open session's log, numbering them on.
    async fn append_logs(&self, id: &SessionId, entries: Vec<LogEntry>) -> StoreResult<()>;

    /// [`SessionLogs::append_logs`] guarded by `request`, as
    /// [`SessionRecords::create_session_once`].
    async fn append_logs_once(
        &self,
        id: &SessionId,
        entries: Vec<LogEntry>,
        request: NewRequest,
    ) -> StoreResult<Once<()>>;

    /// Readable entries (of kept logs, and logged continuously) matching
    /// `query`, after its cursor, in the order they became readable (see
    /// [`crate::domain::LogCursor`]), with the store's horizon.
    async fn query_logs(&self, query: &LogQuery) -> StoreResult<LogPage>;

    /// A cursor after every entry readable now: where a follow "from now
    /// on" starts. Entries whose write is still running may come after it.
    async fn log_cursor_now(&self) -> StoreResult<LogCursor> {
        let beyond = LogQuery { after: LogCursor { position: i64::MAX, entry_id: 0 }, limit: 1, ..LogQuery::default() };
        Ok(LogCursor::below(self.query_logs(&beyond).await?.horizon))
    }

    /// Whether a session's log holds an entry at or above `level`: what
    /// decides whether a policy's `keep_level` keeps it.
    async fn log_level_reached(&self, id: &SessionId, level: LogLevel) -> StoreResult<bool>;
}

/// The event log WatchSessions reads: every recorded change, numbered.
#[async_trait]
pub trait EventLog: Send + Sync + fmt::Debug + 'static {
    /// Events with a sequence above `after`, in order, at most `limit`.
    async fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<Event>>;

    /// Events matching `filter` with a sequence above `after` and at most
    /// `upto`, in order, at most `limit`: what a watcher catches up on,
    /// filtered by the store on an index that serves the filter (its
    /// tenant; its session or user) rather than read whole.
    async fn matching_events(
        &self,
        filter: &EventFilter,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>>;

    /// The sequence number of the last recorded event (0 when none).
    async fn last_event_sequence(&self) -> StoreResult<u64>;
}

/// What belongs to no one aggregate: idempotency records (a keyed write
/// stores its own, see [`NewRequest`]), whether the store can commit now,
/// and the changes other processes sharing it make.
#[async_trait]
pub trait Coordination: Send + Sync + fmt::Debug + 'static {
    /// The idempotency record stored under `key` at or after `since`.
    async fn request_record(&self, key: &RequestKey, since: UnixMillis) -> StoreResult<Option<RequestRecord>>;

    /// How much newer than the stored value a session's activity may be
    /// without this process seeing it: activity other processes sharing the
    /// store have seen but not written yet.
    fn unseen_activity(&self) -> UnseenActivity {
        UnseenActivity::None
    }

    /// A new subscription to changes other processes make, for stores that
    /// can be shared; `None` for a store only this process writes.
    fn notifications(&self) -> Option<tokio::sync::broadcast::Receiver<Notification>> {
        None
    }

    /// Whether the store can commit now, followed over time, for stores
    /// that watch it (`true`: it can); `None` when it is not watched.
    fn availability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }
}

/// Activity a process cannot see, as the store's sharing decides it (see
/// [`Coordination::unseen_activity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnseenActivity {
    /// Only this process writes the store: every activity is seen.
    None,
    /// Other processes write it too, each writing a session's activity at
    /// most one write interval after the stored value (a call that finds
    /// the stored value nearly that old has it written once the activity
    /// writer has gathered, within the rest of the interval, a commit's
    /// time later): unseen activity is at most that much newer.
    UpToWriteInterval,
}

impl UnseenActivity {
    /// The latest activity to judge a session's expiry by at `now`: what
    /// this process `known`s, or the latest other processes may have seen
    /// given the `stored` value and the session's write `interval`, so that
    /// a session never ends early (and, shared, at most one write interval
    /// late).
    pub fn latest(
        self,
        known: UnixMillis,
        stored: UnixMillis,
        interval: std::time::Duration,
        now: UnixMillis,
    ) -> UnixMillis {
        match self {
            UnseenActivity::None => known,
            UnseenActivity::UpToWriteInterval => known.max((stored + interval).min(now)),
        }
    }
}

/// A session record as a call reads it: whole, or as the cache holds it,
/// read in place ([`cache::CachedRecord`]). Either answers what checks
/// and the open-session answers need without unpacking;
/// [`Record::into_session`] gives the whole session. A whole session is
/// boxed, so that a record moved from call to call is the size of a
/// cached one (a `Session` is some 450 bytes).
#[derive(Debug, Clone)]
pub enum Record {
    Whole(Box<Session>),
    Cached(cache::CachedRecord),
}

impl Record {
    pub fn whole(session: Session) -> Self {
        Record::Whole(Box::new(session))
    }

    pub fn id(&self) -> &SessionId {
        match self {
            Record::Whole(session) => &session.id,
            Record::Cached(record) => record.id(),
        }
    }

    pub fn tenant(&self) -> &str {
        match self {
            Record::Whole(session) => session.tenant.as_str(),
            Record::Cached(record) => record.tenant(),
        }
    }

    pub fn kind(&self) -> SessionKind {
        match self {
            Record::Whole(session) => session.kind,
            Record::Cached(record) => record.kind(),
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        match self {
            Record::Whole(session) => session.user_id.as_deref(),
            Record::Cached(record) => record.user_id(),
        }
    }

    pub fn trusted(&self) -> bool {
        match self {
            Record::Whole(session) => session.trusted,
            Record::Cached(record) => record.trusted(),
        }
    }

    pub fn labels(&self) -> Labels {
        match self {
            Record::Whole(session) => session.labels.clone(),
            Record::Cached(record) => record.labels(),
        }
    }

    /// The roles granted, by name.
    pub fn roles(&self) -> Vec<String> {
        match self {
            Record::Whole(session) => session.grants.roles.clone(),
            Record::Cached(record) => record.grants().roles.map(str::to_owned).collect(),
        }
    }

    pub fn timing(&self) -> Timing {
        match self {
            Record::Whole(session) => session.timing(),
            Record::Cached(record) => record.timing(),
        }
    }

    /// How the session ended, if it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        match self {
            Record::Whole(session) => session.end.as_ref().map(|end| end.reason),
            Record::Cached(record) => record.end_reason(),
        }
    }

    /// Whether the session holds `privilege` (canonical) at `now`, by `book`.
    pub fn holds(&self, book: &RoleBook, now: UnixMillis, privilege: &str) -> bool {
        match self {
            Record::Whole(session) => book.holds(&session.grants, session.trusted, now, privilege),
            Record::Cached(record) => book.holds_named(record.grants(), record.trusted(), now, privilege),
        }
    }

    pub fn into_session(self) -> Session {
        match self {
            Record::Whole(session) => *session,
            Record::Cached(record) => record.into_session(),
        }
    }
}

/// Every aggregate at once: what a database-backed store implements, and
/// what [`Stores::of`] splits into its aggregates.
pub trait Store: SessionRecords + SessionStorage + SessionLogs + EventLog + Coordination {}

impl<S: SessionRecords + SessionStorage + SessionLogs + EventLog + Coordination> Store for S {}

/// The store as the service holds it: one handle per aggregate, each
/// perhaps decorated on its own (metering all, the cache session records
/// only). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stores {
    pub sessions: Arc<dyn SessionRecords>,
    pub storage: Arc<dyn SessionStorage>,
    pub logs: Arc<dyn SessionLogs>,
    pub events: Arc<dyn EventLog>,
    pub coordination: Arc<dyn Coordination>,
    /// Events this process recorded, for its change feed to step over.
    own_events: Arc<feed::OwnEvents>,
}

impl Stores {
    /// Every aggregate served by one `store`.
    pub fn of(store: impl Store) -> Self {
        let store = Arc::new(store);
        Self {
            sessions: store.clone(),
            storage: store.clone(),
            logs: store.clone(),
            events: store.clone(),
            coordination: store,
            own_events: Arc::default(),
        }
    }

    /// Notes an event this process recorded (and published to its own
    /// watchers): its change feed steps over it rather than reading it back.
    pub fn recorded(&self, sequence: u64) {
        self.own_events.recorded(sequence);
    }

    /// The changes other processes sharing the store make, from now on;
    /// `None` for a store only this process writes. One feed per process:
    /// feeds share the record of its own events, stepping over each once.
    pub fn changes(&self) -> Option<feed::ChangeFeed> {
        let notifications = self.coordination.notifications()?;
        Some(feed::ChangeFeed::new(notifications, self.events.clone(), self.own_events.clone()))
    }

    /// These stores with every operation timed (see
    /// [`crate::telemetry::store::Metered`]), as a store of the database
    /// `system` (`sqlite`, `postgresql`).
    pub fn metered(self, system: &'static str) -> Self {
        use crate::telemetry::store::Metered;
        Self {
            sessions: Arc::new(Metered::new(self.sessions, system)),
            storage: Arc::new(Metered::new(self.storage, system)),
            logs: Arc::new(Metered::new(self.logs, system)),
            events: Arc::new(Metered::new(self.events, system)),
            coordination: Arc::new(Metered::new(self.coordination, system)),
            own_events: self.own_events,
        }
    }

    /// These stores with session records cached, at most `capacity` of
    /// them (see [`cache::CachedRecords`]). Needs a tokio runtime when the
    /// store is shared.
    pub fn cached(self, capacity: u64) -> Self {
        let notifications = self.coordination.notifications();
        Self { sessions: Arc::new(cache::CachedRecords::new(self.sessions, notifications, capacity)), ..self }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::UnseenActivity;
    use crate::clock::UnixMillis;

    #[test]
    fn shared_activity_is_assumed_up_to_one_write_interval_newer_than_stored_but_never_in_the_future() {
        let (stored, interval) = (UnixMillis(1_000), Duration::from_millis(100));
        let latest = |unseen: UnseenActivity, known: i64, now: i64| {
            unseen.latest(UnixMillis(known), stored, interval, UnixMillis(now)).0
        };
        assert_eq!(latest(UnseenActivity::None, 1_000, 5_000), 1_000);
        assert_eq!(latest(UnseenActivity::UpToWriteInterval, 1_000, 5_000), 1_100);
        assert_eq!(latest(UnseenActivity::UpToWriteInterval, 1_000, 1_050), 1_050, "not past now");
        assert_eq!(latest(UnseenActivity::UpToWriteInterval, 1_200, 5_000), 1_200, "what is known wins");
    }
}
