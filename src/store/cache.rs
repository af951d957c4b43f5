//! [`CachedRecords`]: a moka cache in front of any [`SessionRecords`].
//!
//! Sessions are cached by id. A token index maps token hashes to the ids of
//! cached sessions (a token never changes owner, so a mapping is never
//! wrong, only missing): the cache's eviction listener drops a session's
//! mapping with its entry, and a record found through the index is checked
//! against the token's full hash. Every write that changes a session record
//! invalidates its entry, but for activity: an activity write moves the
//! cached record's last activity forward in place (see `record`), and other
//! processes' activity writes are not announced at all, so a cached last
//! activity may be older than the stored one; the service reads through
//! before it ends a session as idle. Storage, logs and events are other aggregates: the
//! cache never sees them.
//!
//! A read that misses races with writes: it may fetch a record just before
//! a write commits and insert it just after the write invalidated the entry.
//! To never cache such a stale record, each write bumps an epoch, and a miss
//! keeps what it inserted only if no write happened while it was reading or
//! inserting.
//!
//! When the store is shared with other processes, their writes arrive as
//! [`Notification`]s and invalidate here too. While they cannot be
//! followed (`Lost`, e.g. Postgres is unreachable) nothing is answered from
//! memory — a revocation made elsewhere must not be missed — and a
//! `Resync` starts again from an empty cache. A stream of notifications
//! may also go silent without being lost; the store proves it alive with
//! `FreshUntil`, and past that instant nothing is answered from memory
//! either, until the next proof arrives (fail-closed).
//!
//! Reads may ask for a floor, an event sequence their answer must reflect
//! (`session_by_*_after`). A shared store announces `EventsRecorded(n)`
//! after the invalidations of the changes up to `n`, so once `n` is
//! applied here, the cache answers such reads; before, they read through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use moka::notification::RemovalCause;
use moka::sync::Cache;

mod record;

pub use record::CachedRecord;
use record::Packed;

use super::{
    EndOutcome, Ending, NewRequest, Notification, Once, PageRequest, Purged, Record, SessionFilter, SessionRecords,
    StoreResult,
};
use crate::clock::UnixMillis;
use crate::domain::{EncodedStorage, Event, Grants, NewEvent, Session, SessionEnd, SessionId, TenantId, TokenHash};
use crate::shards::{Shard, Shards};

/// A [`SessionRecords`] decorator caching them in memory.
#[derive(Debug)]
pub struct CachedRecords {
    inner: Arc<dyn SessionRecords>,
    entries: Arc<Entries>,
    /// Applies other processes' invalidations; stops with the cache.
    listener: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Entries {
    /// Hashed with foldhash: session ids are made by sessiond, not chosen
    /// by callers.
    sessions: Cache<SessionId, Packed, foldhash::fast::RandomState>,
    tokens: Arc<TokenIndex>,
    epoch: AtomicU64,
    /// Set while other processes' changes cannot be followed.
    bypass: AtomicBool,
    /// Whether other processes write to the store too; then answers from
    /// memory need a live notification stream and a floor below `applied`.
    shared: bool,
    /// For a shared store: until when (nanoseconds after `origin`) the
    /// notification stream is proven alive.
    fresh_until: AtomicU64,
    origin: Instant,
    /// For a shared store: the last event sequence whose changes have
    /// been applied to the cache.
    applied: AtomicU64,
}

impl Entries {
    #[cfg(test)]
    fn new(capacity: u64) -> Self {
        Self::for_store(capacity, false)
    }

    fn for_store(capacity: u64, shared: bool) -> Self {
        let tokens = Arc::new(TokenIndex::default());
        let index = tokens.clone();
        let sessions = Cache::builder()
            .max_capacity(capacity)
            .eviction_listener(move |id: Arc<SessionId>, record: Packed, cause| {
                // A replaced entry keeps its token: the new record has it too.
                if cause != RemovalCause::Replaced {
                    index.remove(&record.token_hash(), &id);
                }
            })
            .build_with_hasher(Default::default());
        Self {
            sessions,
            tokens,
            epoch: AtomicU64::new(0),
            bypass: AtomicBool::new(false),
            shared,
            fresh_until: AtomicU64::new(0),
            origin: Instant::now(),
            applied: AtomicU64::new(0),
        }
    }

    /// Nanoseconds from `origin` to `at` (0 before it).
    fn offset(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The notification stream is proven alive until `until`.
    fn fresh_until(&self, until: Instant) {
        self.fresh_until.fetch_max(self.offset(until), Ordering::SeqCst);
    }

    /// Whether every change up to event `sequence` is reflected here.
    fn has_applied(&self, sequence: u64) -> bool {
        !self.shared || self.applied.load(Ordering::SeqCst) >= sequence
    }

    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.sessions.invalidate_all();
        self.tokens.clear();
    }

    fn invalidate(&self, id: &SessionId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.sessions.invalidate(id);
    }

    /// Moves a cached record's last activity forward to `at`, written to
    /// the store: activity is no change a reader must re-read the record
    /// for (the service judges expiry on activity it reads through).
    fn active_at(&self, id: &SessionId, at: UnixMillis) {
        if let Some(record) = self.sessions.get(id) {
            record.active_at(at);
        }
    }

    fn hit(&self) {
        crate::telemetry::metrics::cache_lookup(true);
    }

    /// Whether answers must come from the store: other processes' changes
    /// cannot be followed, or their stream is not proven alive now.
    fn bypassed(&self) -> bool {
        self.bypass.load(Ordering::SeqCst)
            || (self.shared && self.offset(Instant::now()) >= self.fresh_until.load(Ordering::SeqCst))
    }

    fn by_id(&self, id: &SessionId) -> Option<Session> {
        let record = self.sessions.get(id).filter(|_| !self.bypassed())?;
        Some(record.unpack(id.clone()))
    }

    #[cfg(test)]
    fn by_token(&self, hash: &TokenHash) -> Option<Session> {
        self.record_by_token(hash).map(CachedRecord::into_session)
    }

    fn record_by_token(&self, hash: &TokenHash) -> Option<CachedRecord> {
        let id = self.tokens.get(hash)?;
        let record = self.sessions.get(&id).filter(|record| record.token_hash() == *hash && !self.bypassed())?;
        Some(record.read(id))
    }

    /// Caches a record read from the inner store, unless a write happened
    /// since `epoch` was read or the cache is bypassed.
    fn fill(&self, session: &Session, epoch: u64) {
        crate::telemetry::metrics::cache_lookup(false);
        if self.bypassed() || self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        self.tokens.insert(&session.token_hash, &session.id);
        self.sessions.insert(session.id.clone(), Packed::pack(session));
        // A write (or a `Lost`) that bumped the epoch before the insert may
        // have invalidated before it too: take the record back out. One that
        // bumps it later invalidates after the insert by itself.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.sessions.invalidate(&session.id);
        }
    }
}

/// Shards of the token index, each behind its own lock.
const TOKEN_SHARDS: usize = 64;

/// Token hash → id of the cached session holding that token.
///
/// Keyed by the hash's first eight bytes: two tokens sharing them (about
/// one chance in 2^64 per pair) only cost misses, as readers check the
/// record's full hash.
#[derive(Debug)]
struct TokenIndex {
    shards: Shards<u64, SessionId>,
}

impl Default for TokenIndex {
    fn default() -> Self {
        Self { shards: Shards::new(TOKEN_SHARDS) }
    }
}

impl TokenIndex {
    /// The key and the shard of `hash`, from distinct bytes of it: a
    /// SHA-256 digest is uniform, so they spread evenly.
    fn locate(&self, hash: &TokenHash) -> (u64, &Shard<u64, SessionId>) {
        let [k0, k1, k2, k3, k4, k5, k6, k7, shard, ..] = hash.0;
        (u64::from_le_bytes([k0, k1, k2, k3, k4, k5, k6, k7]), self.shards.at(usize::from(shard)))
    }

    fn get(&self, hash: &TokenHash) -> Option<SessionId> {
        let (key, shard) = self.locate(hash);
        shard.read().get(&key).cloned()
    }

    fn insert(&self, hash: &TokenHash, id: &SessionId) {
        let (key, shard) = self.locate(hash);
        shard.write().insert(key, id.clone());
    }

    /// Drops `hash`'s mapping if it still names `id`.
    fn remove(&self, hash: &TokenHash, id: &SessionId) {
        let (key, shard) = self.locate(hash);
        let mut shard = shard.write();
        if shard.get(&key) == Some(id) {
            shard.remove(&key);
        }
    }

    fn clear(&self) {
        for shard in self.shards.iter() {
            *shard.write() = Default::default();
        }
    }
}

impl CachedRecords {
    /// Caches at most `capacity` sessions of `inner`. For a shared store,
    /// whose `notifications` announce other processes' changes, starts
    /// following them (which needs a tokio runtime).
    pub fn new(
        inner: Arc<dyn SessionRecords>,
        notifications: Option<tokio::sync::broadcast::Receiver<Notification>>,
        capacity: u64,
    ) -> Self {
        let entries = Arc::new(Entries::for_store(capacity, notifications.is_some()));
        let listener = notifications.map(|notifications| tokio::spawn(follow(notifications, entries.clone())));
        Self { inner, entries, listener }
    }

    /// Drops every entry, e.g. when invalidations may have been missed.
    pub fn clear(&self) {
        self.entries.clear();
    }

    fn invalidate(&self, id: &SessionId) {
        self.entries.invalidate(id);
    }
}

impl Drop for CachedRecords {
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
            Ok(Notification::Invalidate(ids)) => ids.iter().for_each(|id| entries.invalidate(id)),
            Ok(Notification::EventsRecorded(sequence)) => {
                entries.applied.fetch_max(sequence, Ordering::SeqCst);
            }
            Ok(Notification::FreshUntil(until)) => entries.fresh_until(until),
            Ok(Notification::LogsReadable(_)) => {}
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
impl SessionRecords for CachedRecords {
    async fn create_session(&self, session: Session, storage: EncodedStorage, event: NewEvent) -> StoreResult<Event> {
        self.inner.create_session(session, storage, event).await
    }

    async fn create_session_once(
        &self,
        session: Session,
        storage: EncodedStorage,
        event: NewEvent,
        request: NewRequest,
    ) -> StoreResult<Once<Event>> {
        self.inner.create_session_once(session, storage, event, request).await
    }

    async fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        Ok(self.record_by_token(hash).await?.map(Record::into_session))
    }

    async fn record_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Record>> {
        let entries = &self.entries;
        let epoch = entries.epoch.load(Ordering::SeqCst);
        if let Some(record) = entries.record_by_token(hash) {
            entries.hit();
            return Ok(Some(Record::Cached(record)));
        }
        let found = self.inner.session_by_token(hash).await?;
        if let Some(session) = &found {
            entries.fill(session, epoch);
        }
        Ok(found.map(Record::whole))
    }

    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        let entries = &self.entries;
        let epoch = entries.epoch.load(Ordering::SeqCst);
        if let Some(session) = entries.by_id(id) {
            entries.hit();
            return Ok(Some(session));
        }
        let found = self.inner.session_by_id(id).await?;
        if let Some(session) = &found {
            entries.fill(session, epoch);
        }
        Ok(found)
    }

    async fn session_by_token_after(&self, hash: &TokenHash, sequence: u64) -> StoreResult<Option<Session>> {
        if self.entries.has_applied(sequence) {
            return self.session_by_token(hash).await;
        }
        crate::telemetry::metrics::cache_lookup(false);
        self.inner.session_by_token(hash).await
    }

    async fn session_by_id_after(&self, id: &SessionId, sequence: u64) -> StoreResult<Option<Session>> {
        if self.entries.has_applied(sequence) {
            return self.session_by_id(id).await;
        }
        crate::telemetry::metrics::cache_lookup(false);
        self.inner.session_by_id(id).await
    }

    async fn stored_session(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        crate::telemetry::metrics::cache_lookup(false);
        let found = self.inner.session_by_id(id).await?;
        if let Some(session) = &found {
            self.entries.active_at(id, session.last_active_at);
        }
        Ok(found)
    }

    async fn record_activity(&self, id: &SessionId, at: UnixMillis) -> StoreResult<()> {
        self.inner.record_activity(id, at).await?;
        self.entries.active_at(id, at);
        Ok(())
    }

    async fn end_session(&self, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
        let result = self.inner.end_session(id, end, event).await;
        self.invalidate(id);
        result
    }

    async fn end_sessions(&self, endings: Vec<Ending>) -> StoreResult<Vec<(SessionId, EndOutcome)>> {
        let ids: Vec<SessionId> = endings.iter().map(|ending| ending.id.clone()).collect();
        let result = self.inner.end_sessions(endings).await;
        for id in &ids {
            self.invalidate(id);
        }
        result
    }

    async fn record_activities(&self, activity: &[(SessionId, UnixMillis)]) -> StoreResult<()> {
        self.inner.record_activities(activity).await?;
        for (id, at) in activity {
            self.entries.active_at(id, *at);
        }
        Ok(())
    }

    async fn move_expiries(&self, activity: &[(SessionId, UnixMillis)]) -> StoreResult<usize> {
        // The cached record holds no expiry; its activity is known already.
        self.inner.move_expiries(activity).await
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

    async fn count_open_sessions(&self) -> StoreResult<Vec<(String, u64)>> {
        self.inner.count_open_sessions().await
    }

    async fn open_sessions_of(&self, tenant: &TenantId) -> StoreResult<u64> {
        self.inner.open_sessions_of(tenant).await
    }

    async fn purge(
        &self,
        ended_before: UnixMillis,
        events_before: UnixMillis,
        requests_before: UnixMillis,
    ) -> StoreResult<Purged> {
        let purged = self.inner.purge(ended_before, events_before, requests_before).await?;
        if purged.sessions > 0 {
            self.clear();
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EndReason, SessionKind, StorageMap};
    use crate::store::fixtures::{T0, create, ending, session};
    use crate::store::sqlite::SqliteStore;

    impl TokenIndex {
        fn len(&self) -> usize {
            self.shards.iter().map(|shard| shard.read().len()).sum()
        }
    }

    fn web_user() -> Session {
        session(SessionKind::WebUser, Some("alice"), T0)
    }

    /// A cache over a fresh SQLite store, with `sessions` created in it.
    async fn cached(sessions: &[&Session]) -> (tempfile::TempDir, CachedRecords) {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let store = SqliteStore::open_in(dir.path()).expect("a fresh database opens");
        for session in sessions {
            create(&store, session, &StorageMap::new()).await;
        }
        (dir, CachedRecords::new(Arc::new(store), None, 1_000))
    }

    #[tokio::test]
    async fn a_session_read_once_is_then_answered_from_memory_by_token_and_by_id() {
        let alice = web_user();
        let (_dir, cache) = cached(&[&alice]).await;
        assert_eq!(cache.session_by_token(&alice.token_hash).await.expect("readable"), Some(alice.clone()));

        // Behind the cache's back: only a cached record still shows no end.
        let (end, event) = ending(&alice, EndReason::Closed, T0, false);
        cache.inner.end_session(&alice.id, &end, &event).await.expect("ended");
        assert_eq!(cache.session_by_token(&alice.token_hash).await.expect("readable"), Some(alice.clone()));
        assert_eq!(cache.session_by_id(&alice.id).await.expect("readable"), Some(alice));
    }

    #[tokio::test]
    async fn a_write_through_the_cache_is_seen_by_both_lookups() {
        let alice = web_user();
        let (_dir, cache) = cached(&[&alice]).await;
        cache.session_by_token(&alice.token_hash).await.expect("readable");

        let (end, event) = ending(&alice, EndReason::Revoked, T0, false);
        cache.end_session(&alice.id, &end, &event).await.expect("ended");
        let by_token = cache.session_by_token(&alice.token_hash).await.expect("readable").expect("found");
        assert_eq!(by_token.end, Some(end.clone()));
        assert_eq!(cache.session_by_id(&alice.id).await.expect("readable").expect("found").end, Some(end));
    }

    #[tokio::test]
    async fn an_activity_write_moves_the_cached_activity_on_without_dropping_the_record() {
        let alice = web_user();
        let (_dir, cache) = cached(&[&alice]).await;
        cache.session_by_id(&alice.id).await.expect("readable");

        let later = UnixMillis(T0.0 + 5);
        cache.record_activities(&[(alice.id.clone(), later)]).await.expect("written");
        // Behind the cache's back: only a record still cached shows no end.
        let (end, event) = ending(&alice, EndReason::Closed, T0, false);
        cache.inner.end_session(&alice.id, &end, &event).await.expect("ended");
        let cached = cache.session_by_token(&alice.token_hash).await.expect("readable").expect("found");
        assert_eq!((cached.end, cached.last_active_at), (None, later));

        let stored = cache.stored_session(&alice.id).await.expect("readable").expect("found");
        assert_eq!(stored.end, Some(end), "a stored read is never answered from memory");
    }

    #[test]
    fn a_record_read_before_a_write_is_not_kept() {
        let entries = Entries::new(100);
        let alice = web_user();
        let epoch = entries.epoch.load(Ordering::SeqCst);
        entries.invalidate(&alice.id);
        entries.fill(&alice, epoch);
        assert_eq!(entries.by_id(&alice.id), None);
        assert_eq!(entries.by_token(&alice.token_hash), None);
    }

    #[test]
    fn nothing_is_answered_from_memory_while_bypassed() {
        let entries = Entries::new(100);
        let (alice, bob) = (web_user(), web_user());
        entries.fill(&alice, entries.epoch.load(Ordering::SeqCst));
        entries.bypass.store(true, Ordering::SeqCst);
        assert_eq!(entries.by_token(&alice.token_hash), None);
        assert_eq!(entries.by_id(&alice.id), None);

        entries.fill(&bob, entries.epoch.load(Ordering::SeqCst));
        entries.bypass.store(false, Ordering::SeqCst);
        assert_eq!(entries.by_id(&bob.id), None, "a record read while bypassed is not kept");
    }

    #[test]
    fn clearing_forgets_every_session_and_token() {
        let entries = Entries::new(100);
        let alice = web_user();
        entries.fill(&alice, entries.epoch.load(Ordering::SeqCst));
        assert_eq!(entries.by_token(&alice.token_hash), Some(alice.clone()));
        entries.clear();
        assert_eq!(entries.by_token(&alice.token_hash), None);
        assert_eq!(entries.by_id(&alice.id), None);
        assert_eq!(entries.tokens.len(), 0);
    }

    #[test]
    fn tokens_sharing_an_index_key_never_answer_for_each_other() {
        let entries = Entries::new(100);
        let (alice, mut bob) = (web_user(), web_user());
        bob.token_hash.0[..9].copy_from_slice(&alice.token_hash.0[..9]);
        assert_ne!(alice.token_hash, bob.token_hash);
        entries.fill(&alice, entries.epoch.load(Ordering::SeqCst));
        entries.fill(&bob, entries.epoch.load(Ordering::SeqCst));
        assert_eq!(entries.by_token(&bob.token_hash), Some(bob));
        assert_eq!(entries.by_token(&alice.token_hash), None, "a miss, answered by the store");
        assert_eq!(entries.by_id(&alice.id), Some(alice));
    }

    #[test]
    fn the_token_index_follows_invalidations_and_evictions() {
        let entries = Entries::new(10);
        let sessions: Vec<Session> = (0..50).map(|_| web_user()).collect();
        for session in &sessions {
            entries.fill(session, entries.epoch.load(Ordering::SeqCst));
            entries.sessions.run_pending_tasks();
        }
        assert!(entries.sessions.entry_count() <= 10);
        assert_eq!(entries.tokens.len() as u64, entries.sessions.entry_count());

        for session in &sessions {
            entries.invalidate(&session.id);
        }
        entries.sessions.run_pending_tasks();
        assert_eq!(entries.tokens.len(), 0);
    }
}
