//! [`MeteredStore`]: a [`Store`] decorator that times every operation of
//! the store it wraps into `db.client.operation.duration`, by operation.
//!
//! It sits between the cache and the real store, so it measures what
//! reaches the database: cache hits are counted by the cache instead.

use std::future::Future;
use std::time::Instant;

use async_trait::async_trait;

use crate::clock::UnixMillis;
use crate::domain::{
    Event, EventFilter, Grants, LogCursor, LogEntry, LogLevel, LogPage, LogQuery, NewEvent, RequestKey, Session,
    SessionEnd, SessionId, StorageMap, TenantId, TokenHash, VersionedStorage,
};
use crate::store::{
    EndOutcome, Ending, NewRequest, Notification, Once, PageRequest, Purged, RequestRecord, SessionFilter, Store,
    StoreResult,
};

/// Times each call to an inner store.
#[derive(Debug)]
pub struct MeteredStore<S> {
    inner: S,
    /// `db.system.name`: `sqlite`, `postgresql`.
    system: &'static str,
}

impl<S: Store> MeteredStore<S> {
    /// Measures `inner`, a store of the database `system` (as the
    /// conventions name it: `sqlite`, `postgresql`).
    pub fn new(inner: S, system: &'static str) -> Self {
        Self { inner, system }
    }

    async fn timed<T>(&self, operation: &'static str, call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let started = Instant::now();
        let result = call.await;
        super::metrics::store_operation(self.system, operation, started.elapsed(), result.as_ref().err());
        result
    }
}

#[async_trait]
impl<S: Store> Store for MeteredStore<S> {
    async fn create_session(&self, session: &Session, storage: &StorageMap, event: &NewEvent) -> StoreResult<Event> {
        self.timed("create_session", self.inner.create_session(session, storage, event)).await
    }

    async fn create_session_once(
        &self,
        session: &Session,
        storage: &StorageMap,
        event: &NewEvent,
        request: &NewRequest,
    ) -> StoreResult<Once<Event>> {
        self.timed("create_session", self.inner.create_session_once(session, storage, event, request)).await
    }

    async fn request_record(&self, key: &RequestKey, since: UnixMillis) -> StoreResult<Option<RequestRecord>> {
        self.timed("request_record", self.inner.request_record(key, since)).await
    }

    async fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        self.timed("session_by_token", self.inner.session_by_token(hash)).await
    }

    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        self.timed("session_by_id", self.inner.session_by_id(id)).await
    }

    async fn record_activity(&self, id: &SessionId, at: UnixMillis) -> StoreResult<()> {
        self.timed("record_activity", self.inner.record_activity(id, at)).await
    }

    async fn end_session(&self, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
        self.timed("end_session", self.inner.end_session(id, end, event)).await
    }

    async fn end_sessions(&self, endings: &[Ending]) -> StoreResult<Vec<(SessionId, EndOutcome)>> {
        self.timed("end_sessions", self.inner.end_sessions(endings)).await
    }

    async fn record_activities(&self, activity: &[(SessionId, UnixMillis)]) -> StoreResult<()> {
        self.timed("record_activities", self.inner.record_activities(activity)).await
    }

    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> StoreResult<Vec<Session>> {
        self.timed("list_sessions", self.inner.list_sessions(filter, page)).await
    }

    async fn due_sessions(&self, now: UnixMillis, limit: usize) -> StoreResult<Vec<Session>> {
        self.timed("due_sessions", self.inner.due_sessions(now, limit)).await
    }

    async fn update_grants(
        &self,
        id: &SessionId,
        expected_version: u64,
        grants: &Grants,
        event: &NewEvent,
    ) -> StoreResult<(u64, Event)> {
        self.timed("update_grants", self.inner.update_grants(id, expected_version, grants, event)).await
    }

    async fn storage(&self, id: &SessionId) -> StoreResult<VersionedStorage> {
        self.timed("storage", self.inner.storage(id)).await
    }

    async fn replace_storage(
        &self,
        id: &SessionId,
        expected_version: u64,
        values: &StorageMap,
        event: &NewEvent,
    ) -> StoreResult<(u64, Event)> {
        self.timed("replace_storage", self.inner.replace_storage(id, expected_version, values, event)).await
    }

    async fn append_logs(&self, id: &SessionId, entries: &[LogEntry]) -> StoreResult<()> {
        self.timed("append_logs", self.inner.append_logs(id, entries)).await
    }

    async fn append_logs_once(
        &self,
        id: &SessionId,
        entries: &[LogEntry],
        request: &NewRequest,
    ) -> StoreResult<Once<()>> {
        self.timed("append_logs", self.inner.append_logs_once(id, entries, request)).await
    }

    async fn query_logs(&self, query: &LogQuery) -> StoreResult<LogPage> {
        self.timed("query_logs", self.inner.query_logs(query)).await
    }

    async fn log_cursor_now(&self) -> StoreResult<LogCursor> {
        self.timed("log_cursor_now", self.inner.log_cursor_now()).await
    }

    async fn log_level_reached(&self, id: &SessionId, level: LogLevel) -> StoreResult<bool> {
        self.timed("log_level_reached", self.inner.log_level_reached(id, level)).await
    }

    async fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<Event>> {
        self.timed("events_after", self.inner.events_after(after, limit)).await
    }

    async fn matching_events(
        &self,
        filter: &EventFilter,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        self.timed("matching_events", self.inner.matching_events(filter, after, upto, limit)).await
    }

    async fn last_event_sequence(&self) -> StoreResult<u64> {
        self.timed("last_event_sequence", self.inner.last_event_sequence()).await
    }

    async fn count_open_sessions(&self) -> StoreResult<Vec<(String, u64)>> {
        self.timed("count_open_sessions", self.inner.count_open_sessions()).await
    }

    async fn open_sessions_of(&self, tenant: &TenantId) -> StoreResult<u64> {
        self.timed("open_sessions_of", self.inner.open_sessions_of(tenant)).await
    }

    async fn purge(
        &self,
        ended_before: UnixMillis,
        events_before: UnixMillis,
        requests_before: UnixMillis,
    ) -> StoreResult<Purged> {
        self.timed("purge", self.inner.purge(ended_before, events_before, requests_before)).await
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn notifications(&self) -> Option<tokio::sync::broadcast::Receiver<Notification>> {
        self.inner.notifications()
    }

    fn availability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.inner.availability()
    }
}
