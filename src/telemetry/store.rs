//! [`Metered`]: a decorator that times every operation of the store
//! aggregate it wraps into `db.client.operation.duration`, by operation.
//!
//! It sits between the cache and the real store, so it measures what
//! reaches the database: cache hits are counted by the cache instead. One
//! generic wrapper serves every aggregate trait; `metered!` writes each
//! trait's pass-throughs from the list of its methods.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::clock::UnixMillis;
use crate::domain::{
    EncodedStorage, Event, EventFilter, Grants, LogCursor, LogEntry, LogLevel, LogPage, LogQuery, NewEvent, RequestKey,
    Session, SessionEnd, SessionId, TenantId, TokenHash, VersionedStorage,
};
use crate::store::{
    Coordination, EndOutcome, Ending, EventLog, NewRequest, Notification, Once, PageRequest, Purged, RequestRecord,
    SessionFilter, SessionLogs, SessionRecords, SessionStorage, StoreResult, UnseenActivity,
};

/// Times each call to an inner store aggregate.
#[derive(Debug)]
pub struct Metered<S: ?Sized> {
    inner: Arc<S>,
    /// `db.system.name`: `sqlite`, `postgresql`.
    system: &'static str,
}

impl<S: ?Sized> Metered<S> {
    /// Measures `inner`, served by the database `system` (as the
    /// conventions name it: `sqlite`, `postgresql`).
    pub fn new(inner: Arc<S>, system: &'static str) -> Self {
        Self { inner, system }
    }

    async fn timed<T>(&self, operation: &'static str, call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let started = Instant::now();
        let result = call.await;
        super::metrics::store_operation(self.system, operation, started.elapsed(), result.as_ref().err());
        result
    }
}

/// Implements `$trait` for [`Metered`] around any implementation of it:
/// each listed async method is timed under its operation name (the
/// method's own unless `as` gives another), each listed plain method is
/// passed through.
macro_rules! metered {
    (
        $trait:ident {
            $(async fn $method:ident($($arg:ident: $ty:ty),*) -> $ret:ty $(as $operation:literal)?;)*
            $(fn $plain:ident() -> $plain_ret:ty;)*
        }
    ) => {
        #[async_trait]
        impl<S: $trait + ?Sized> $trait for Metered<S> {
            $(
                async fn $method(&self, $($arg: $ty),*) -> $ret {
                    let operation = metered!(@operation $method $($operation)?);
                    self.timed(operation, self.inner.$method($($arg),*)).await
                }
            )*
            $(
                fn $plain(&self) -> $plain_ret {
                    self.inner.$plain()
                }
            )*
        }
    };
    (@operation $method:ident) => { stringify!($method) };
    (@operation $method:ident $operation:literal) => { $operation };
}

metered!(SessionRecords {
    async fn create_session(session: Session, storage: EncodedStorage, event: NewEvent) -> StoreResult<Event>;
    async fn create_session_once(
        session: Session,
        storage: EncodedStorage,
        event: NewEvent,
        request: NewRequest
    ) -> StoreResult<Once<Event>> as "create_session";
    async fn session_by_token(hash: &TokenHash) -> StoreResult<Option<Session>>;
    async fn session_by_id(id: &SessionId) -> StoreResult<Option<Session>>;
    async fn record_activity(id: &SessionId, at: UnixMillis) -> StoreResult<()>;
    async fn end_session(id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome>;
    async fn end_sessions(endings: Vec<Ending>) -> StoreResult<Vec<(SessionId, EndOutcome)>>;
    async fn record_activities(activity: &[(SessionId, UnixMillis)]) -> StoreResult<()>;
    async fn move_expiries(activity: &[(SessionId, UnixMillis)]) -> StoreResult<usize>;
    async fn list_sessions(filter: &SessionFilter, page: &PageRequest) -> StoreResult<Vec<Session>>;
    async fn due_sessions(now: UnixMillis, limit: usize) -> StoreResult<Vec<Session>>;
    async fn update_grants(
        id: &SessionId,
        expected_version: u64,
        grants: &Grants,
        event: &NewEvent
    ) -> StoreResult<(u64, Event)>;
    async fn count_open_sessions() -> StoreResult<Vec<(String, u64)>>;
    async fn open_sessions_of(tenant: &TenantId) -> StoreResult<u64>;
    async fn purge(
        ended_before: UnixMillis,
        events_before: UnixMillis,
        requests_before: UnixMillis
    ) -> StoreResult<Purged>;
});

metered!(SessionStorage {
    async fn storage(id: &SessionId) -> StoreResult<VersionedStorage>;
    async fn replace_storage(
        id: &SessionId,
        expected_version: u64,
        values: EncodedStorage,
        event: NewEvent
    ) -> StoreResult<(u64, Event)>;
});

metered!(SessionLogs {
    async fn append_logs(id: &SessionId, entries: Vec<LogEntry>) -> StoreResult<()>;
    async fn append_logs_once(id: &SessionId, entries: Vec<LogEntry>, request: NewRequest) -> StoreResult<Once<()>>
        as "append_logs";
    async fn query_logs(query: &LogQuery) -> StoreResult<LogPage>;
    async fn log_cursor_now() -> StoreResult<LogCursor>;
    async fn log_level_reached(id: &SessionId, level: LogLevel) -> StoreResult<bool>;
});

metered!(EventLog {
    async fn events_after(after: u64, limit: usize) -> StoreResult<Vec<Event>>;
    async fn matching_events(filter: &EventFilter, after: u64, upto: u64, limit: usize) -> StoreResult<Vec<Event>>;
    async fn last_event_sequence() -> StoreResult<u64>;
});

metered!(Coordination {
    async fn request_record(key: &RequestKey, since: UnixMillis) -> StoreResult<Option<RequestRecord>>;
    fn unseen_activity() -> UnseenActivity;
    fn notifications() -> Option<tokio::sync::broadcast::Receiver<Notification>>;
    fn availability() -> Option<tokio::sync::watch::Receiver<bool>>;
});
