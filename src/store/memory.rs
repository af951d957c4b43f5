//! A store in memory: every aggregate as plain data under one lock, for
//! service unit tests that need no file or database, and as the reference
//! of the store contract (see the module above) written without SQL.
//!
//! Each method takes the lock, checks, changes and answers, so every write
//! is one transaction and every read sees all of them: events are numbered
//! in the order writes take the lock, and a failed write leaves nothing
//! behind. Nothing survives the store, and no other process shares it, so
//! [`Coordination`] keeps its defaults (nothing unseen, nothing announced,
//! nothing watched).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{
    Coordination, EndOutcome, EventLog, LogLimits, NewRequest, Once, PageRequest, Purged, RequestRecord, SessionFilter,
    SessionLogs, SessionRecords, SessionStorage, StoreError, StoreResult, sql::internal,
};
use crate::clock::UnixMillis;
use crate::domain::{
    EncodedStorage, EndReason, Event, EventFilter, Grants, LogCursor, LogEntry, LogLevel, LogPage, LogQuery, LogRecord,
    NewEvent, RequestKey, Session, SessionEnd, SessionId, TenantId, TokenHash, VersionedStorage,
};

/// The store of a process that keeps nothing: sessions, logs, events and
/// idempotency records in memory, gone with it.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Entries a session's log and a tenant may hold.
    log_limits: LogLimits,
    /// Open sessions one tenant may hold (zero: no limit).
    max_open_sessions: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store with a limit of `max` entries per session's log (zero:
    /// none, as made).
    pub fn with_max_log_entries(mut self, max: u64) -> Self {
        self.log_limits.per_session = max;
        self
    }

    /// The store with a limit of `max` log entries per tenant (zero: none,
    /// as made): an append past it is refused with
    /// [`StoreError::TenantLogFull`].
    pub fn with_max_log_entries_per_tenant(mut self, max: u64) -> Self {
        self.log_limits.per_tenant = max;
        self
    }

    /// The store with a limit of `max` open sessions per tenant (zero:
    /// none, as made): a create past it is refused with
    /// [`StoreError::TenantFull`].
    pub fn with_max_open_sessions_per_tenant(mut self, max: u64) -> Self {
        self.max_open_sessions = max;
        self
    }

    /// The state, for one read or one write. A panic while it was held
    /// happened between whole changes (each change is made after its
    /// checks), so the state is still consistent: keep using it.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryStore {
    /// Counts only: the state holds token hashes and storage values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryStore")
            .field("sessions", &state.sessions.len())
            .field("last_event", &state.last_event)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Stored>,
    by_token: HashMap<TokenHash, SessionId>,
    /// Recorded events, oldest first; a purge removes old ones.
    events: Vec<Event>,
    /// The last sequence handed out: never goes back, not even when a
    /// purge removed the newest events.
    last_event: u64,
    /// Every session's log entries, in the order they were stored.
    entries: Vec<StoredEntry>,
    last_entry_id: i64,
    /// The last position handed to entries becoming readable.
    last_position: i64,
    requests: HashMap<RequestKey, RequestRecord>,
    open_by_tenant: HashMap<TenantId, u64>,
    /// Log entries held per tenant: of its open sessions' logs and of kept
    /// logs not purged yet.
    entries_by_tenant: HashMap<TenantId, u64>,
}

/// A session with what is kept beside its record.
struct Stored {
    session: Session,
    /// The storage as the JSON text it was given in.
    storage: String,
    storage_version: u64,
    log_count: u64,
}

/// A log entry with what QueryLogs filters and answers it by: its
/// session's labels, copied when it was stored, and whether it is
/// readable (`position`) and how its session ended.
struct StoredEntry {
    /// The record QueryLogs answers, but for its position and log id,
    /// which are set when it is answered.
    record: LogRecord,
    tenant: TenantId,
    /// `None` while the entry is not readable.
    position: Option<i64>,
    failed: bool,
    slow: bool,
}

impl State {
    /// The open session `id`; `NotFound` or `Ended` for any other.
    fn open(&mut self, id: &SessionId) -> StoreResult<&mut Stored> {
        let stored = self.sessions.get_mut(id).ok_or(StoreError::NotFound)?;
        match &stored.session.end {
            Some(end) => Err(StoreError::Ended(end.reason)),
            None => Ok(stored),
        }
    }

    fn record(&mut self, event: NewEvent) -> Event {
        self.last_event += 1;
        let event = Event { sequence: self.last_event, event };
        self.events.push(event.clone());
        event
    }

    fn next_position(&mut self) -> i64 {
        self.last_position += 1;
        self.last_position
    }

    /// The live idempotency record under `request`'s key, if any.
    fn replay(&self, request: &NewRequest) -> Option<RequestRecord> {
        self.requests.get(&request.key).filter(|record| record.at >= request.expired_before).cloned()
    }

    /// Keeps `request`'s record of a write on `session_id` (replacing an
    /// expired one).
    fn claim(&mut self, session_id: &SessionId, request: NewRequest) {
        let record = RequestRecord {
            digest: request.digest,
            session_id: session_id.clone(),
            sealed_token: request.sealed_token,
            accepted: request.accepted,
            at: request.at,
        };
        self.requests.insert(request.key, record);
    }

    fn create(
        &mut self,
        session: Session,
        storage: EncodedStorage,
        event: NewEvent,
        max_open: u64,
    ) -> StoreResult<Event> {
        if self.sessions.contains_key(&session.id) || self.by_token.contains_key(&session.token_hash) {
            return Err(internal("a session with this id or token is stored already"));
        }
        crate::store::check_tenant_room(self.open_by_tenant.get(&session.tenant).copied().unwrap_or(0), max_open)?;
        let storage_version = u64::from(!storage.is_empty());
        *self.open_by_tenant.entry(session.tenant.clone()).or_default() += 1;
        self.by_token.insert(session.token_hash, session.id.clone());
        let stored = Stored { storage: storage.into_json(), storage_version, log_count: 0, session };
        self.sessions.insert(stored.session.id.clone(), stored);
        Ok(self.record(event))
    }

    fn end(&mut self, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
        let stored = self.sessions.get_mut(id).ok_or(StoreError::NotFound)?;
        if let Some(earlier) = &stored.session.end {
            return Ok(EndOutcome::AlreadyEnded(earlier.clone()));
        }
        stored.session.end = Some(end.clone());
        let tenant = stored.session.tenant.clone();
        if let Some(open) = self.open_by_tenant.get_mut(&tenant) {
            *open = open.saturating_sub(1);
        }
        if end.log_id.is_none() {
            self.drop_entries(|e| e.record.session_id == *id);
        } else {
            // The log is kept: its entries not readable yet become readable now.
            let position = self.next_position();
            for e in self.entries.iter_mut().filter(|e| e.record.session_id == *id) {
                e.failed = end.reason == EndReason::Failed;
                e.slow = end.slow;
                e.position = e.position.or(Some(position));
            }
        }
        Ok(EndOutcome::Ended(self.record(event.clone())))
    }

    fn append(&mut self, id: &SessionId, entries: Vec<LogEntry>, limits: LogLimits) -> StoreResult<()> {
        let stored = self.open(id)?;
        let (first, session) = (stored.log_count + 1, stored.session.clone());
        let held = self.entries_by_tenant.entry(session.tenant.clone()).or_default();
        limits.check(first - 1, *held, entries.len())?;
        *held += entries.len() as u64;
        self.open(id)?.log_count += entries.len() as u64;
        let position = match entries.iter().any(|e| e.continuous) {
            true => Some(self.next_position()),
            false => None,
        };
        for (sequence, entry) in (first..).zip(entries) {
            self.last_entry_id += 1;
            self.entries.push(StoredEntry {
                position: position.filter(|_| entry.continuous),
                record: LogRecord {
                    entry_id: self.last_entry_id,
                    position: 0,
                    sequence,
                    log_id: None,
                    session_id: session.id.clone(),
                    user_id: session.user_id.clone(),
                    kind: session.kind,
                    endpoint: session.labels.endpoint.clone(),
                    entry,
                },
                tenant: session.tenant.clone(),
                failed: false,
                slow: false,
            });
        }
        Ok(())
    }

    /// Deletes the log entries `gone` picks, and counts them off their
    /// tenants.
    fn drop_entries(&mut self, gone: impl Fn(&StoredEntry) -> bool) {
        let counts = &mut self.entries_by_tenant;
        self.entries.retain(|e| {
            if !gone(e) {
                return true;
            }
            if let Some(held) = counts.get_mut(&e.tenant) {
                *held = held.saturating_sub(1);
            }
            false
        });
    }
}

/// Whether `entry` is one `query` asks for, below `horizon`.
fn matches(query: &LogQuery, entry: &StoredEntry, horizon: i64) -> bool {
    let record = &entry.record;
    let Some(position) = entry.position.filter(|p| *p < horizon) else { return false };
    query.tenant.as_ref().is_none_or(|t| *t == entry.tenant)
        && query.session_id.as_ref().is_none_or(|id| *id == record.session_id)
        && query.user_id.as_ref().is_none_or(|u| record.user_id.as_ref() == Some(u))
        && query.kind.is_none_or(|k| k == record.kind)
        && query.endpoint.as_ref().is_none_or(|e| *e == record.endpoint)
        && (!query.failed_only || entry.failed)
        && (!query.slow_only || entry.slow)
        && query.from.is_none_or(|from| record.entry.logged_at >= from)
        && query.to.is_none_or(|to| record.entry.logged_at < to)
        && query.min_level.is_none_or(|level| record.entry.level >= level)
        && LogCursor { position, entry_id: record.entry_id } > query.after
}

/// Whether `session` is one `filter` asks for.
fn listed(filter: &SessionFilter, session: &Session) -> bool {
    filter.tenant.as_ref().is_none_or(|t| *t == session.tenant)
        && filter.user_id.as_ref().is_none_or(|u| session.user_id.as_ref() == Some(u))
        && (filter.kinds.is_empty() || filter.kinds.contains(&session.kind))
        && filter.open.is_none_or(|open| open == session.end.is_none())
        && (filter.ids.is_empty() || filter.ids.contains(&session.id))
}

#[async_trait]
impl SessionRecords for MemoryStore {
    async fn create_session(&self, session: Session, storage: EncodedStorage, event: NewEvent) -> StoreResult<Event> {
        self.state().create(session, storage, event, self.max_open_sessions)
    }

    async fn create_session_once(
        &self,
        session: Session,
        storage: EncodedStorage,
        event: NewEvent,
        request: NewRequest,
    ) -> StoreResult<Once<Event>> {
        let mut state = self.state();
        if let Some(record) = state.replay(&request) {
            return Ok(Once::Replayed(record));
        }
        let id = session.id.clone();
        let created = state.create(session, storage, event, self.max_open_sessions)?;
        state.claim(&id, request);
        Ok(Once::Done(created))
    }

    async fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        let state = self.state();
        Ok(state.by_token.get(hash).and_then(|id| state.sessions.get(id)).map(|s| s.session.clone()))
    }

    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        Ok(self.state().sessions.get(id).map(|s| s.session.clone()))
    }

    async fn record_activity(&self, id: &SessionId, at: UnixMillis) -> StoreResult<()> {
        if let Ok(stored) = self.state().open(id) {
            stored.session.last_active_at = stored.session.last_active_at.max(at);
        }
        Ok(())
    }

    async fn end_session(&self, id: &SessionId, end: &SessionEnd, event: &NewEvent) -> StoreResult<EndOutcome> {
        self.state().end(id, end, event)
    }

    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> StoreResult<Vec<Session>> {
        let state = self.state();
        let mut found: Vec<&Session> = state
            .sessions
            .values()
            .map(|s| &s.session)
            .filter(|s| listed(filter, s))
            .filter(|s| page.after.as_ref().is_none_or(|(at, id)| (s.created_at, &s.id) < (*at, id)))
            .collect();
        found.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(found.into_iter().take(page.limit).cloned().collect())
    }

    async fn due_sessions(&self, now: UnixMillis, limit: usize) -> StoreResult<Vec<Session>> {
        let state = self.state();
        let mut due: Vec<(UnixMillis, &Session)> = state
            .sessions
            .values()
            .map(|s| &s.session)
            .filter(|s| s.end.is_none())
            .filter_map(|s| Some((s.expires_at(s.last_active_at)?, s)))
            .filter(|(expires_at, _)| *expires_at <= now)
            .collect();
        due.sort_by(|(a, s), (b, t)| (a, &s.id).cmp(&(b, &t.id)));
        Ok(due.into_iter().take(limit).map(|(_, s)| s.clone()).collect())
    }

    async fn update_grants(
        &self,
        id: &SessionId,
        expected_version: u64,
        grants: &Grants,
        event: &NewEvent,
    ) -> StoreResult<(u64, Event)> {
        let mut state = self.state();
        let stored = state.open(id)?;
        let current = stored.session.grants_version;
        if current != expected_version {
            return Err(StoreError::Conflict { current });
        }
        stored.session.grants = grants.clone();
        stored.session.grants_version = current + 1;
        Ok((current + 1, state.record(event.clone())))
    }

    async fn count_open_sessions(&self) -> StoreResult<Vec<(String, u64)>> {
        let mut counts = BTreeMap::<String, u64>::new();
        for stored in self.state().sessions.values().filter(|s| s.session.end.is_none()) {
            *counts.entry(stored.session.kind.as_str().to_owned()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    async fn open_sessions_of(&self, tenant: &TenantId) -> StoreResult<u64> {
        Ok(self.state().open_by_tenant.get(tenant).copied().unwrap_or(0))
    }

    async fn purge(
        &self,
        ended_before: UnixMillis,
        events_before: UnixMillis,
        requests_before: UnixMillis,
    ) -> StoreResult<Purged> {
        let mut state = self.state();
        let old: Vec<(SessionId, TokenHash)> = state
            .sessions
            .values()
            .filter(|s| s.session.end.as_ref().is_some_and(|end| end.at < ended_before))
            .map(|s| (s.session.id.clone(), s.session.token_hash))
            .collect();
        for (id, hash) in &old {
            state.sessions.remove(id);
            state.by_token.remove(hash);
        }
        let gone: HashSet<&SessionId> = old.iter().map(|(id, _)| id).collect();
        state.drop_entries(|e| gone.contains(&e.record.session_id));
        let events = state.events.len();
        state.events.retain(|e| e.event.at >= events_before);
        let requests = state.requests.len();
        state.requests.retain(|_, record| record.at >= requests_before);
        Ok(Purged {
            sessions: old.len() as u64,
            events: (events - state.events.len()) as u64,
            requests: (requests - state.requests.len()) as u64,
        })
    }
}

#[async_trait]
impl SessionStorage for MemoryStore {
    async fn storage(&self, id: &SessionId) -> StoreResult<VersionedStorage> {
        let state = self.state();
        let stored = state.sessions.get(id).ok_or(StoreError::NotFound)?;
        let values = serde_json::from_str(&stored.storage)
            .map_err(|_| internal("a kept storage map is not the JSON expected"))?;
        Ok(VersionedStorage { version: stored.storage_version, values })
    }

    async fn replace_storage(
        &self,
        id: &SessionId,
        expected_version: u64,
        values: EncodedStorage,
        event: NewEvent,
    ) -> StoreResult<(u64, Event)> {
        let mut state = self.state();
        let stored = state.open(id)?;
        let current = stored.storage_version;
        if current != expected_version {
            return Err(StoreError::Conflict { current });
        }
        stored.storage = values.into_json();
        stored.storage_version = current + 1;
        Ok((current + 1, state.record(event)))
    }
}

#[async_trait]
impl SessionLogs for MemoryStore {
    async fn append_logs(&self, id: &SessionId, entries: Vec<LogEntry>) -> StoreResult<()> {
        self.state().append(id, entries, self.log_limits)
    }

    async fn append_logs_once(
        &self,
        id: &SessionId,
        entries: Vec<LogEntry>,
        request: NewRequest,
    ) -> StoreResult<Once<()>> {
        let mut state = self.state();
        if let Some(record) = state.replay(&request) {
            return Ok(Once::Replayed(record));
        }
        state.append(id, entries, self.log_limits)?;
        state.claim(id, request);
        Ok(Once::Done(()))
    }

    /// Every entry is checked against the query: the SQL stores' time-range
    /// floor (`log_sql`) only spares reading entries this filter drops.
    async fn query_logs(&self, query: &LogQuery) -> StoreResult<LogPage> {
        let state = self.state();
        // Every write is whole once the lock is free: all is settled.
        let horizon = state.last_position + 1;
        let mut found: Vec<(LogCursor, &StoredEntry)> = state
            .entries
            .iter()
            .filter(|e| matches(query, e, horizon))
            .map(|e| (LogCursor { position: e.position.unwrap_or(0), entry_id: e.record.entry_id }, e))
            .collect();
        found.sort_by_key(|(cursor, _)| *cursor);
        let records = found
            .into_iter()
            .take(query.limit)
            .map(|(cursor, e)| {
                let log_id =
                    state.sessions.get(&e.record.session_id).and_then(|s| s.session.end.as_ref()?.log_id.clone());
                LogRecord { position: cursor.position, log_id, ..e.record.clone() }
            })
            .collect();
        Ok(LogPage { records, horizon })
    }

    async fn log_level_reached(&self, id: &SessionId, level: LogLevel) -> StoreResult<bool> {
        Ok(self.state().entries.iter().any(|e| e.record.session_id == *id && e.record.entry.level >= level))
    }
}

#[async_trait]
impl EventLog for MemoryStore {
    async fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<Event>> {
        self.matching_events(&EventFilter::default(), after, u64::MAX, limit).await
    }

    async fn matching_events(
        &self,
        filter: &EventFilter,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let state = self.state();
        let range = state.events.iter().filter(|e| e.sequence > after && e.sequence <= upto);
        Ok(range.filter(|e| filter.matches(&e.event)).take(limit).cloned().collect())
    }

    async fn last_event_sequence(&self) -> StoreResult<u64> {
        Ok(self.state().last_event)
    }
}

#[async_trait]
impl Coordination for MemoryStore {
    async fn request_record(&self, key: &RequestKey, since: UnixMillis) -> StoreResult<Option<RequestRecord>> {
        Ok(self.state().requests.get(key).filter(|record| record.at >= since).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SessionKind, StorageMap};
    use crate::store::fixtures::{T0, create, session};

    fn entries(n: usize) -> Vec<LogEntry> {
        let entry = LogEntry {
            level: LogLevel::Info,
            message: "m".into(),
            exception: None,
            stack_trace: None,
            client_time: None,
            logged_at: T0,
            continuous: false,
        };
        vec![entry; n]
    }

    #[tokio::test]
    async fn an_append_past_the_log_limit_is_refused_whole() {
        let store = MemoryStore::new().with_max_log_entries(3);
        let s = session(SessionKind::WebCall, None, T0);
        create(&store, &s, &StorageMap::new()).await;
        store.append_logs(&s.id, entries(2)).await.expect("within the limit");
        let refused = store.append_logs(&s.id, entries(2)).await;
        assert!(matches!(refused, Err(StoreError::LogFull { max: 3 })), "{refused:?}");
        store.append_logs(&s.id, entries(1)).await.expect("nothing of the refused append was kept");
    }
}
