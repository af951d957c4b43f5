//! The domain service: every operation of the API, without gRPC types.
//!
//! [`Service`] owns the store (its aggregates, session records behind the
//! cache), the clock, the role book,
//! the log policies and the event fan-out. Each concern lives in its own
//! file: `lifecycle`, `privileges`, `storage`, `logs`, `watch`, and the
//! background `sweeper`. All of them reach a session through
//! [`Service::open_session`], which is where activity slides the idle
//! timeout and where an expired session is ended rather than revived.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch as signal};

use crate::auth::{Caller, Permission};
use crate::clock::{Clock, UnixMillis};
use crate::domain::{
    EndReason, Event, EventType, Expiry, LogId, LogPolicies, NewEvent, RoleBook, Session, SessionEnd, SessionId,
    SessionKind, StorageLimits, Timing, Token,
};
use crate::store::{EndOutcome, Ending, Record, Stores, UnseenActivity};

mod activity;
pub mod error;
pub mod inspect;
pub mod lifecycle;
mod locks;
pub mod logs;
pub mod messages;
pub mod page;
pub mod privileges;
pub mod server_info;
pub mod storage;
pub mod sweeper;
/// The service's unit tests on the store in memory.
#[cfg(test)]
mod tests;
pub mod watch;

pub use activity::SHUTDOWN_FLUSH_BATCH;
use activity::{ActivityTracker, DueActivity};
pub use error::Error;
use locks::SessionLocks;
pub use page::Page;

tokio::task_local! {
    /// The newest event sequence the current call committed (see
    /// [`committing`]).
    static COMMITTED: std::cell::Cell<u64>;
}

/// Runs one call's work and answers its result with the sequence of the
/// newest event it committed (0 when it committed none): the consistency
/// token a client passes back as `min_sequence`.
pub async fn committing<T>(work: impl std::future::Future<Output = T>) -> (T, u64) {
    COMMITTED
        .scope(std::cell::Cell::new(0), async move {
            let result = work.await;
            (result, COMMITTED.with(std::cell::Cell::get))
        })
        .await
}

/// How a request names a session, parsed at the edge, and how fresh an
/// answer it needs.
#[derive(Debug, Clone)]
pub struct SessionRef {
    pub key: SessionKey,
    /// The answer must reflect every change up to this event sequence
    /// (one a write answered); 0 asks for nothing in particular.
    pub min_sequence: u64,
}

/// What names a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKey {
    Token(Token),
    Id(SessionId),
    /// A session this call has already found by one of the others: named
    /// by id again without asking for the caller's permission again.
    Found(SessionId),
}

impl SessionRef {
    pub fn token(token: Token) -> Self {
        Self { key: SessionKey::Token(token), min_sequence: 0 }
    }

    pub fn id(id: SessionId) -> Self {
        Self { key: SessionKey::Id(id), min_sequence: 0 }
    }

    /// A session the service found for this call already.
    fn found(id: SessionId) -> Self {
        Self { key: SessionKey::Found(id), min_sequence: 0 }
    }

    /// The same session, named by `key` with this one's freshness.
    pub fn with_min_sequence(mut self, min_sequence: u64) -> Self {
        self.min_sequence = min_sequence;
        self
    }
}

/// Idle timeout and lifetime a kind gets when a create request omits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindDefaults {
    pub idle_timeout: Option<Duration>,
    pub lifetime: Option<Duration>,
}

/// Bounds on request contents. All are settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_text_bytes: usize,
    pub max_names_per_request: usize,
    /// Session ids a RevokeSessions call may name.
    pub max_ids_per_request: usize,
    pub max_timeout: Duration,
    pub max_promotion: Duration,
    /// Promotions in force at once on one session.
    pub max_promotions_per_session: usize,
    pub max_log_entries_per_call: usize,
    pub max_log_message_bytes: usize,
    pub max_page_size: usize,
    pub storage: StorageLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text_bytes: 1024,
            max_names_per_request: 256,
            max_ids_per_request: 1_000,
            max_timeout: Duration::from_secs(366 * 24 * 3600),
            max_promotion: Duration::from_secs(24 * 3600),
            max_promotions_per_session: 100,
            max_log_entries_per_call: 1_000,
            max_log_message_bytes: 64 * 1024,
            max_page_size: 1_000,
            storage: StorageLimits::default(),
        }
    }
}

/// Everything the service is configured with, apart from its collaborators.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub kind_defaults: HashMap<SessionKind, KindDefaults>,
    pub limits: Limits,
    pub log_policies: LogPolicies,
    /// Longest time activity stays only in memory before it is written.
    pub activity_flush: Duration,
    /// How long ended sessions and their logs are kept.
    pub retention: Duration,
    /// How long events are kept for WatchSessions to resume from.
    pub event_retention: Duration,
    /// How long a request id is remembered: a retry within it is answered
    /// the first answer.
    pub idempotency_window: Duration,
    /// Sessions the session cache holds (`--cache-capacity`). It does not
    /// bound the activity tracker, which must keep unwritten activity.
    pub cache_capacity: u64,
    /// The store the service runs on, as GetServerInfo reports it.
    pub store: server_info::StoreKind,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        let kind_defaults = SessionKind::ALL
            .iter()
            .map(|k| (*k, KindDefaults { idle_timeout: k.default_idle_timeout(), lifetime: k.default_lifetime() }))
            .collect();
        Self {
            kind_defaults,
            limits: Limits::default(),
            log_policies: LogPolicies::default(),
            activity_flush: Duration::from_secs(30),
            retention: Duration::from_secs(7 * 24 * 3600),
            event_retention: Duration::from_secs(24 * 3600),
            idempotency_window: Duration::from_secs(24 * 3600),
            cache_capacity: 100_000,
            store: server_info::StoreKind::default(),
        }
    }
}

/// How much of a session record a call reads: all of it, or what a check
/// needs (a cached record is then read in place, see [`Record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Whole,
    Check,
}

/// A session a call found open, and the time the call counted as its
/// activity (one clock reading serves the whole call).
#[derive(Debug)]
pub struct Opened {
    pub record: Record,
    pub now: UnixMillis,
}

impl Opened {
    /// When the session expires, now that the call was its activity.
    pub fn expires_at(&self) -> Option<UnixMillis> {
        self.record.timing().expires_at(self.now)
    }
}

/// The session service. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stores: Stores,
    /// The store's `unseen_activity()`, which never changes: asked once,
    /// not through the store's decorators on every call.
    unseen: UnseenActivity,
    clock: Arc<dyn Clock>,
    /// Read by every privilege check, replaced by a reload (see
    /// `reload::Shared` for why not behind a lock).
    roles: ArcSwap<RoleBook>,
    config: ServiceConfig,
    activity: ActivityTracker,
    /// Wakes the activity writer: a call found activity due for writing.
    activity_due: DueActivity,
    /// Serialises read-modify-writes of one session within this process.
    locks: SessionLocks,
    events: broadcast::Sender<Event>,
    /// Wakes log followers when entries become readable; holds the highest
    /// position other processes announced (see `logs`).
    logs_readable: signal::Sender<i64>,
    stopping: signal::Sender<bool>,
    /// When the service was built (see `server_info`).
    started_at: UnixMillis,
}

impl Service {
    pub fn new(stores: Stores, clock: Arc<dyn Clock>, roles: RoleBook, config: ServiceConfig) -> Self {
        let (events, _) = broadcast::channel(4096);
        let (stopping, _) = signal::channel(false);
        let (logs_readable, _) = signal::channel(0);
        let started_at = clock.now();
        Self {
            inner: Arc::new(Inner {
                unseen: stores.coordination.unseen_activity(),
                stores,
                clock,
                roles: ArcSwap::from_pointee(roles),
                config,
                activity: ActivityTracker::default(),
                activity_due: DueActivity::default(),
                locks: SessionLocks::default(),
                events,
                logs_readable,
                stopping,
                started_at,
            }),
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    fn now(&self) -> UnixMillis {
        self.inner.clock.now()
    }

    /// The role book in force.
    pub fn roles(&self) -> arc_swap::Guard<Arc<RoleBook>> {
        self.inner.roles.load()
    }

    /// Puts a new role book in force (SIGHUP). Sessions keep their grants;
    /// names the new book no longer defines grant nothing.
    pub fn replace_roles(&self, roles: RoleBook) {
        self.inner.roles.store(Arc::new(roles));
    }

    /// Whether the store can commit now, followed over time, when the
    /// store watches that (Postgres); for health reporting.
    pub fn store_availability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.stores().coordination.availability()
    }

    /// Tells long-running calls (WatchSessions) to finish.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    fn stopping(&self) -> signal::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    /// Publishes an event this process recorded to its watchers.
    fn publish(&self, event: Event) {
        // Outside `committing` (the sweeper, shutdown) nobody asks.
        let _ = COMMITTED.try_with(|committed| committed.set(committed.get().max(event.sequence)));
        self.stores().recorded(event.sequence);
        self.relay(event);
    }

    /// Publishes an event to this process's watchers.
    fn relay(&self, event: Event) {
        // No receivers is fine: nobody is watching.
        let _ = self.inner.events.send(event);
    }

    fn event(&self, session: &Session, event_type: EventType, end_reason: Option<EndReason>) -> NewEvent {
        NewEvent::of(session, event_type, end_reason, self.now())
    }

    /// The session named, if it belongs to the caller's tenant: another
    /// tenant's session is as unknown as a missing one (no existence leak).
    async fn find(&self, caller: &Caller, session: &SessionRef) -> Result<Session, Error> {
        Ok(self.find_record(caller, session, Read::Whole).await?.into_session())
    }

    /// [`Service::find`] as a [`Record`], read as `read` says.
    async fn find_record(&self, caller: &Caller, session: &SessionRef, read: Read) -> Result<Record, Error> {
        if matches!(session.key, SessionKey::Id(_)) {
            caller.require(Permission::SessionIds)?;
        }
        let sessions = &self.stores().sessions;
        let found = match (&session.key, session.min_sequence) {
            (SessionKey::Token(token), 0) if read == Read::Check => sessions.record_by_token(&token.hash()).await?,
            (SessionKey::Token(token), 0) => sessions.session_by_token(&token.hash()).await?.map(Record::whole),
            (SessionKey::Id(id) | SessionKey::Found(id), 0) => sessions.session_by_id(id).await?.map(Record::whole),
            (SessionKey::Token(token), after) => {
                sessions.session_by_token_after(&token.hash(), after).await?.map(Record::whole)
            }
            (SessionKey::Id(id) | SessionKey::Found(id), after) => {
                sessions.session_by_id_after(id, after).await?.map(Record::whole)
            }
        };
        let found = found.filter(|r| r.tenant() == caller.tenant.as_str()).ok_or(Error::SessionNotFound)?;
        // Names the session in the calling operation's span.
        tracing::Span::current().record("session_id", tracing::field::display(found.id()));
        Ok(found)
    }

    /// The session named by `session`, if it is open; counts as activity.
    ///
    /// An ended session is an error naming how it ended. An open session
    /// whose idle timeout or lifetime has passed is ended here, with that
    /// reason, and is an error too: it is never revived by a late call.
    pub async fn open_session(&self, caller: &Caller, session: &SessionRef) -> Result<Session, Error> {
        Ok(self.open_read(caller, session, Read::Whole).await?.record.into_session())
    }

    /// [`Service::open_session`] as a [`Record`], for calls that need
    /// what a record reads in place (tenant, kind, user, timing, end,
    /// grants, labels): a cached one is not unpacked.
    pub async fn open_record(&self, caller: &Caller, session: &SessionRef) -> Result<Opened, Error> {
        self.open_read(caller, session, Read::Check).await
    }

    async fn open_read(&self, caller: &Caller, session: &SessionRef, read: Read) -> Result<Opened, Error> {
        let mut record = self.find_record(caller, session, read).await?;
        let now = self.now();
        let interval = self.activity_write_interval(&record.timing());
        let mut visited = self.visit(&record, now, interval);
        if visited == Err(Some(EndReason::IdleTimeout)) {
            // The record may come from memory, with older activity than
            // the store holds (activity is not announced): idleness is
            // judged on the stored record.
            // Boxed, as is the end below: these rare paths' futures would
            // otherwise size (and be copied with) every read's.
            record = Record::whole(Box::pin(self.stored(record.id())).await?);
            visited = self.visit(&record, now, interval);
        }
        match visited {
            Ok(()) => {}
            Err(None) => return Err(Error::SessionEnded(record.end_reason().unwrap_or(EndReason::Closed))),
            Err(Some(reason)) => {
                Box::pin(self.end(&record.into_session(), reason, None, None)).await?;
                return Err(Error::SessionEnded(reason));
            }
        }
        // The call does not wait for the write: the activity writer batches
        // it with every other session found due meanwhile.
        if now.since(record.timing().last_active_at) >= activity::due_after(interval) {
            self.inner.activity_due.found(interval);
        }
        Ok(Opened { record, now })
    }

    /// Counts a call on `record` at `now` as its activity, unless the
    /// session has ended (`Err(None)`) or is due to end, and why.
    fn visit(&self, record: &Record, now: UnixMillis, interval: Duration) -> Result<(), Option<EndReason>> {
        if record.end_reason().is_some() {
            return Err(None);
        }
        let timing = record.timing();
        self.inner.activity.visit(record.id(), timing.last_active_at, |known| {
            match timing.expiry(self.judged(&timing, known, now), now) {
                Expiry::Due(reason) => Err(Some(reason)),
                Expiry::Open { .. } => Ok((now, interval)),
            }
        })
    }

    /// Session `id` as stored now, not as a cache may hold it.
    async fn stored(&self, id: &SessionId) -> Result<Session, Error> {
        self.stores().sessions.stored_session(id).await?.ok_or(Error::SessionNotFound)
    }

    /// The latest activity to judge expiry by: this process's, or what
    /// other processes sharing the store may have seen unwritten (see
    /// [`UnseenActivity`]).
    fn last_active(&self, session: &Session) -> UnixMillis {
        self.judged(&session.timing(), self.inner.activity.last_active(session), self.now())
    }

    /// `last_active` at `now` of a session with this `timing` from
    /// activity `known` to this process.
    fn judged(&self, timing: &Timing, known: UnixMillis, now: UnixMillis) -> UnixMillis {
        let interval = self.activity_write_interval(timing);
        self.inner.unseen.latest(known, timing.last_active_at, interval, now)
    }

    /// Activity is written at most this long after it happened, and
    /// well before the idle timeout could pass on the stored value alone.
    fn activity_write_interval(&self, timing: &Timing) -> Duration {
        let flush = self.inner.config.activity_flush;
        timing.idle_timeout.map_or(flush, |idle| flush.min(idle / 4))
    }

    /// Whether `session`'s log is kept if it ends now for `reason`: by the
    /// log policy, or for an entry at or above the policy's keep level.
    async fn keeps_log(&self, session: &Session, reason: EndReason) -> Result<bool, Error> {
        let policy = self.inner.config.log_policies.for_session(session.kind, &session.labels.endpoint);
        let duration = self.now().since(session.created_at);
        Ok(match policy.keep_level {
            _ if policy.keeps(reason, duration) => true,
            Some(level) => self.stores().logs.log_level_reached(&session.id, level).await?,
            None => false,
        })
    }

    /// How `session` ends now for `reason`, its log kept when `keeps`.
    fn ending(
        &self,
        session: &Session,
        reason: EndReason,
        error: Option<String>,
        stack_trace: Option<String>,
        keeps: bool,
    ) -> Ending {
        let now = self.now();
        let policy = self.inner.config.log_policies.for_session(session.kind, &session.labels.endpoint);
        let duration = now.since(session.created_at);
        let end = SessionEnd {
            reason,
            at: now,
            error,
            stack_trace,
            log_id: keeps.then(LogId::generate),
            slow: policy.is_slow(duration),
        };
        let event = self.event(session, reason.event_type(), Some(reason));
        Ending { id: session.id.clone(), end, event }
    }

    /// Ends many open sessions, each for its reason, in a few store
    /// transactions instead of one each; publishes one event per session
    /// this call ended. Answers those sessions (others, perhaps on another
    /// replica, may have ended some first).
    async fn end_many(&self, sessions: &[(&Session, EndReason)]) -> Result<Vec<SessionId>, Error> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut endings = Vec::with_capacity(sessions.len());
        for (session, reason) in sessions {
            // One read per session whose policy keeps by level only.
            let keeps = self.keeps_log(session, *reason).await?;
            endings.push(self.ending(session, *reason, None, None, keeps));
        }
        let outcomes = self.stores().sessions.end_sessions(endings).await?;
        let mut ended = Vec::with_capacity(outcomes.len());
        let by_id: HashMap<&SessionId, &Session> = sessions.iter().map(|(s, _)| (&s.id, *s)).collect();
        for (id, outcome) in outcomes {
            self.inner.activity.forget(&id);
            let EndOutcome::Ended(event) = outcome else { continue };
            if let (Some(session), Some(reason)) = (by_id.get(&id), event.event.end_reason) {
                crate::telemetry::metrics::session_ended(session.kind, reason);
                tracing::debug!(session_id = %id, kind = %session.kind, reason = %reason, "session ended");
            }
            self.publish(event);
            ended.push(id);
        }
        Ok(ended)
    }

    /// Ends an open session, deciding by the log policy whether its log is
    /// kept. Answers how it ended, and whether by this call (another call,
    /// perhaps on another replica, may have ended it first).
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %session.id, reason = %reason))]
    async fn end(
        &self,
        session: &Session,
        reason: EndReason,
        error: Option<String>,
        stack_trace: Option<String>,
    ) -> Result<(SessionEnd, bool), Error> {
        let keeps = self.keeps_log(session, reason).await?;
        let Ending { end, event, .. } = self.ending(session, reason, error, stack_trace, keeps);
        let outcome = self.stores().sessions.end_session(&session.id, &end, &event).await?;
        self.inner.activity.forget(&session.id);
        match outcome {
            EndOutcome::Ended(event) => {
                self.logs_readable(keeps);
                crate::telemetry::metrics::session_ended(session.kind, reason);
                tracing::info!(session_id = %session.id, kind = %session.kind, reason = %reason, "session ended");
                self.publish(event);
                Ok((end, true))
            }
            EndOutcome::AlreadyEnded(earlier) => Ok((earlier, false)),
        }
    }
}
