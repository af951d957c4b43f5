//! [`CachedStore`]: a moka cache in front of any [`Store`].
//!
//! Sessions are cached by id, and token hashes map to ids (a token never
//! changes owner, so that map needs no invalidation). Every write that
//! changes a session record invalidates its entry. Writes that do not touch
//! the record (storage, logs) pass through.
//!
//! A read that misses races with writes: it may fetch a record just before
//! a write commits and insert it just after the write invalidated the entry.
//! To never cache such a stale record, each write bumps an epoch, and a miss
//! inserts only if no write happened while it was reading.
//!
//! When the inner store is shared with other processes, their writes arrive
//! as [`Notification`]s and invalidate here too. While they cannot be
//! followed (`Lost`, e.g. Postgres is unreachable) nothing is answered from
//! memory — a revocation made elsewhere must not be missed — and a
//! `Resync` starts again from an empty cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use moka::sync::Cache;

use super::{EndOutcome, Notification, PageRequest, Purged, SessionFilter, Store, StoreResult};
use crate::clock::UnixMillis;
use crate::domain::{
    Event, Grants, LogEntry, LogQuery, LogRecord, NewEvent, Session, SessionEnd, SessionId, StorageMap, TokenHash,
    VersionedStorage,
};

/// A [`Store`] decorator caching session records in memory.
#[derive(Debug)]
pub struct CachedStore {
    inner: Box<dyn Store>,
    entries: Arc<Entries>,
    /// Applies other processes' invalidations; stops with the cache.
    listener: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Entries {
    sessions: Cache<SessionId, Session>,
    tokens: Cache<TokenHash, SessionId>,
    epoch: AtomicU64,
    /// Set while other processes' changes cannot be followed.
    bypass: std::sync::atomic::AtomicBool,
}

impl Entries {
    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.sessions.invalidate_all();
    }

    fn invalidate(&self, id: &SessionId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.sessions.invalidate(id);
    }

    fn hit(&self) {
        crate::telemetry::metrics::cache_lookup(true);
    }

    fn bypassed(&self) -> bool {
        self.bypass.load(Ordering::SeqCst)
    }

    /// Caches a record read from the inner store, unless a write happened
    /// since `epoch` was read or the cache is bypassed.
    fn fill(&self, session: &Session, epoch: u64) {
        crate::telemetry::metrics::cache_lookup(false);
        if !self.bypassed() && self.epoch.load(Ordering::SeqCst) == epoch {
            self.tokens.insert(session.token_hash, session.id.clone());
            self.sessions.insert(session.id.clone(), session.clone());
        }
    }
}

impl CachedStore {
    /// Caches at most `capacity` sessions (and as many token mappings).
    /// For a shared inner store, starts listening to its notifications
    /// (which needs a tokio runtime).
    pub fn new(inner: impl Store, capacity: u64) -> Self {
        let entries = Arc::new(Entries {
            sessions: Cache::new(capacity),
            tokens: Cache::new(capacity),
            epoch: AtomicU64::new(0),
            bypass: std::sync::atomic::AtomicBool::new(false),
        });
        let listener = inner.notifications().map(|notifications| tokio::spawn(follow(notifications, entries.clone())));
        Self { inner: Box::new(inner), entries, listener }
    }

    /// Drops every entry, e.g. when invalidations may have been missed.
    pub fn clear(&self) {
        self.entries.clear();
    }

    fn invalidate(&self, id: &SessionId) {
        self.entries.invalidate(id);
    }
}

impl Drop for CachedStore {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

/// Applies other processes' changes to the cache until the store closes.
async fn follow(mut notifications: tokio::sync::broadcast::Receiver<Notification>, entries: Arc<Entries>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match notifications.recv().await {
            Ok(Notification::Invalidate(id)) => entries.invalidate(&id),
            Ok(Notification::EventsRecorded(_)) => {}
            Ok(Notification::Lost) => {
                if !entries.bypass.swap(true, Ordering::SeqCst) {
                    tracing::warn!("session cache bypassed: other replicas' changes cannot be followed");
                }
                entries.clear();
            }
            Ok(Notification::Resync) | Err(RecvError::Lagged(_)) => {
                entries.clear();
                if entries.bypass.swap(false, Ordering::SeqCst) {
                    tracing::info!("session cache back in use, starting empty");
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn create_session(&self, session: &Session, storage: &StorageMap, event: &NewEvent) -> StoreResult<Event> {
        let event = self.inner.create_session(session, storage, event).await?;
        self.entries.tokens.insert(session.token_hash, session.id.clone());
        Ok(event)
    }

    async fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        let entries = &self.entries;
        let epoch = entries.epoch.load(Ordering::SeqCst);
        if let Some(session) =
            entries.tokens.get(hash).and_then(|id| entries.sessions.get(&id)).filter(|_| !entries.bypassed())
        {
            entries.hit();
            return Ok(Some(session));
        }
        let found = self.inner.session_by_token(hash).await?;
        if let Some(session) = &found {
            entries.fill(session, epoch);
        }
        Ok(found)
    }

    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        let entries = &self.entries;
        let epoch = entries.epoch.load(Ordering::SeqCst);
        if let Some(session) = entries.sessions.get(id).filter(|_| !entries.bypassed()) {
            entries.hit();
            return Ok(Some(session));
        }
        let found = self.inner.session_by_id(id).await?;
        if let Some(session) = &found {
            entries.fill(session, epoch);
        }
        Ok(found)
    }

    async fn record_activity(&self, id: &SessionId, at: UnixMillis) -> StoreResult<()> {
        let result = self.inner.record_activity(id, at).await;
        self.invalidate(id);
        result
    }

    async fn end_session(&self, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
        let result = self.inner.end_session(id, end, event).await;
        self.invalidate(id);
        result
    }

    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> StoreResult<Vec<Session>> {
        self.inner.list_sessions(filter, page).await
    }

    async fn due_sessions(&self, now: UnixMillis, limit: usize) -> StoreResult<Vec<Session>> {
        self.inner.due_sessions(now, limit).await
    }

    async fn update_grants(
        &self,
        id: &SessionId,
        expected_version: u64,
        grants: &Grants,
        event: &NewEvent,
    ) -> StoreResult<(u64, Event)> {
        let result = self.inner.update_grants(id, expected_version, grants, event).await;
        self.invalidate(id);
        result
    }

    async fn storage(&self, id: &SessionId) -> StoreResult<VersionedStorage> {
        self.inner.storage(id).await
    }

    async fn replace_storage(
        &self,
        id: &SessionId,
        expected_version: u64,
        values: &StorageMap,
        event: &NewEvent,
    ) -> StoreResult<(u64, Event)> {
        self.inner.replace_storage(id, expected_version, values, event).await
    }

    async fn append_logs(&self, id: &SessionId, entries: &[LogEntry]) -> StoreResult<()> {
        self.inner.append_logs(id, entries).await
    }

    async fn query_logs(&self, query: &LogQuery) -> StoreResult<Vec<LogRecord>> {
        self.inner.query_logs(query).await
    }

    async fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<Event>> {
        self.inner.events_after(after, limit).await
    }

    async fn last_event_sequence(&self) -> StoreResult<u64> {
        self.inner.last_event_sequence().await
    }

    async fn purge(&self, ended_before: UnixMillis, events_before: UnixMillis) -> StoreResult<Purged> {
        let purged = self.inner.purge(ended_before, events_before).await?;
        if purged.sessions > 0 {
            self.clear();
        }
        Ok(purged)
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn notifications(&self) -> Option<tokio::sync::broadcast::Receiver<Notification>> {
        self.inner.notifications()
    }
}
