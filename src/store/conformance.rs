//! Test support, not part of the service: the one conformance suite every
//! store implementation and decorator must pass.
//!
//! Each test is a public async function taking a fresh, empty store as
//! [`Stores`], one handle per aggregate (cheap to clone, so tests can write
//! from many tasks at once). An implementation's test file runs them all
//! with one line:
//!
//! ```ignore
//! fn fresh() -> (tempfile::TempDir, Stores) { /* ... */ }
//! sessiond::store_conformance_tests!(fresh());
//! ```
//!
//! The expression given to [`crate::store_conformance_tests!`] is evaluated
//! once per test and must yield a `(guard, stores)` pair: the guard (a
//! temporary directory, a database handle, `()`) is kept alive until the
//! stores have been dropped. Every case is named in that macro's one list,
//! so a case left out of it is a case no store runs. This module stays free of dev-dependencies because it is
//! compiled into the library.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use super::{EndOutcome, Ending, NewRequest, Once, PageRequest, SessionFilter, SessionRecords, StoreError, Stores};
use crate::clock::UnixMillis;
use crate::domain::{
    EncodedStorage, EndReason, Event, EventFilter, EventType, Grants, Labels, LogCursor, LogEntry, LogId, LogLevel,
    LogPage, LogQuery, NewEvent, Promotion, PromotionId, RequestDigest, RequestKey, Session, SessionEnd, SessionId,
    SessionKind, StorageMap, TenantId, Token, UnixMicros, VersionedStorage,
};

/// Expands to one `#[tokio::test]` per conformance test, each running on a
/// store made by `$make`, an expression yielding `(guard, stores)`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            creates_and_finds_a_session_by_token_and_id,
            recording_activity_moves_it_forward_only_and_reschedules_expiry,
            due_sessions_are_open_ones_oldest_expiry_first,
            ending_a_session_records_its_event_once,
            ending_deletes_the_log_unless_it_is_kept,
            writes_on_an_ended_session_fail_with_ended,
            writes_on_an_unknown_session_fail_with_not_found,
            grants_are_replaced_by_compare_and_set,
            storage_versions_start_at_zero_or_one_and_compare_and_set,
            concurrent_storage_increments_lose_none,
            log_numbering_continues_across_appends,
            concurrent_appends_number_each_log_without_gaps,
            query_logs_answers_kept_logs_matching_the_filters,
            query_logs_pages_by_entry_id,
            continuous_entries_are_readable_while_open,
            a_time_range_finds_its_entries_whenever_they_became_readable,
            list_sessions_filters_by_user_kind_state_and_id,
            list_sessions_pages_newest_first_without_duplicates_or_gaps,
            events_are_numbered_without_gaps_across_concurrent_writers,
            matching_events_are_filtered_by_the_store_within_their_range,
            a_failing_write_does_not_undo_concurrent_ones,
            purge_removes_old_ended_sessions_with_their_logs_and_old_events,
            sessions_events_and_logs_carry_their_tenant,
            list_sessions_and_query_logs_filter_by_tenant,
            a_keyed_create_is_stored_once_and_a_retry_is_answered_its_record,
            concurrent_keyed_creates_store_one_session,
            a_keyed_append_is_stored_once,
            keyed_and_plain_appends_racing_number_the_log_without_gaps,
            a_keyed_write_that_fails_leaves_no_record,
            an_expired_request_record_is_replaced_and_purged,
            ending_many_sessions_records_one_event_each_in_order,
            concurrent_batch_ends_record_one_event_per_session,
            recording_many_activities_moves_each_forward_only,
            open_sessions_are_counted_by_kind_across_tenants,
            open_sessions_are_counted_per_tenant_through_every_opening_and_ending,
        );
    };
    (@each $make:expr; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_guard, store) = $make;
                $crate::store::conformance::$name(store).await;
            }
        )*
    };
}

/// The time the suite's sessions start at.
pub const T0: UnixMillis = UnixMillis(1_700_000_000_000);

/// A tenant by name; `name` must be a valid tenant id.
pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name, "tenant").expect("the suite names valid tenants")
}

/// An open session of `kind` for `user` in the default tenant, created at
/// `at`, with a fresh token and no timeouts.
pub fn session(kind: SessionKind, user: Option<&str>, at: UnixMillis) -> Session {
    session_of(&TenantId::default(), kind, user, at)
}

/// [`session`] in `tenant`.
pub fn session_of(tenant: &TenantId, kind: SessionKind, user: Option<&str>, at: UnixMillis) -> Session {
    Session {
        id: SessionId::generate(),
        token_hash: Token::generate().hash(),
        tenant: tenant.clone(),
        kind,
        user_id: user.map(str::to_owned),
        labels: Labels::default(),
        created_at: at,
        last_active_at: at,
        idle_timeout: None,
        lifetime: None,
        trusted: false,
        grants: Grants::default(),
        grants_version: 0,
        end: None,
    }
}

/// The event of `event_type` for `session` at `at`, in the session's tenant.
pub fn event(event_type: EventType, session: &Session, at: UnixMillis) -> NewEvent {
    NewEvent {
        event_type,
        session_id: session.id.clone(),
        tenant: session.tenant.clone(),
        user_id: session.user_id.clone(),
        kind: session.kind,
        end_reason: None,
        at,
    }
}

/// How `session` ends for `reason` at `at`, its log kept or not.
pub fn ending(session: &Session, reason: EndReason, at: UnixMillis, keep_log: bool) -> (SessionEnd, NewEvent) {
    let end = SessionEnd {
        reason,
        at,
        error: (reason == EndReason::Failed).then(|| "boom".to_owned()),
        stack_trace: None,
        log_id: keep_log.then(LogId::generate),
        slow: false,
    };
    let event = NewEvent { end_reason: Some(reason), ..event(reason.event_type(), session, at) };
    (end, event)
}

/// A log entry at `level` received at `at`.
pub fn entry(level: LogLevel, message: &str, at: UnixMillis) -> LogEntry {
    LogEntry {
        level,
        message: message.to_owned(),
        exception: None,
        stack_trace: None,
        client_time: None,
        logged_at: at,
        continuous: false,
    }
}

/// Stores `session` with `storage`, answering its `created` event.
pub async fn create(store: &dyn SessionRecords, session: &Session, storage: &StorageMap) -> Event {
    let created = event(EventType::Created, session, session.created_at);
    store
        .create_session(session.clone(), EncodedStorage::encode(storage), created)
        .await
        .expect("creating a new session succeeds")
}

/// Ends `session` for `reason` at `at`, expecting this call to end it.
pub async fn end(
    store: &dyn SessionRecords,
    session: &Session,
    reason: EndReason,
    at: UnixMillis,
    keep_log: bool,
) -> SessionEnd {
    let (end, event) = ending(session, reason, at, keep_log);
    match store.end_session(&session.id, &end, &event).await.expect("ending a stored session succeeds") {
        EndOutcome::Ended(recorded) => assert_eq!(recorded.event, event),
        EndOutcome::AlreadyEnded(_) => panic!("the session was open"),
    }
    end
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn storage_of(pairs: &[(&str, serde_json::Value)]) -> StorageMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn all_logs() -> LogQuery {
    LogQuery { limit: 1_000, ..LogQuery::default() }
}

fn ids<'a>(sessions: impl IntoIterator<Item = &'a Session>) -> Vec<SessionId> {
    sessions.into_iter().map(|s| s.id.clone()).collect()
}

/// A created session reads back whole, by token hash and by id; strangers are `None`.
pub async fn creates_and_finds_a_session_by_token_and_id(store: Stores) {
    let mut s = session(SessionKind::WebUser, Some("alice"), T0);
    s.labels = Labels {
        endpoint: "orders".into(),
        method: "list".into(),
        future_call: String::new(),
        client_address: "10.0.0.1".into(),
        user_agent: "test/1".into(),
    };
    s.idle_timeout = Some(ms(60_000));
    s.lifetime = Some(ms(3_600_000));
    s.grants = Grants {
        privileges: vec!["viewsales".into()],
        roles: vec!["manager".into()],
        promotions: vec![Promotion { id: PromotionId::generate(), privilege: "editsales".into(), expires_at: T0 }],
    };
    let created = create(&*store.sessions, &s, &StorageMap::new()).await;
    assert_eq!(created, Event { sequence: 1, event: event(EventType::Created, &s, T0) });

    assert_eq!(store.sessions.session_by_token(&s.token_hash).await.expect("lookup by token works"), Some(s.clone()));
    assert_eq!(store.sessions.session_by_id(&s.id).await.expect("lookup by id works"), Some(s.clone()));
    let stranger = session(SessionKind::WebUser, None, T0);
    assert_eq!(store.sessions.session_by_token(&stranger.token_hash).await.expect("lookup works"), None);
    assert_eq!(store.sessions.session_by_id(&stranger.id).await.expect("lookup works"), None);
}

/// Activity slides the idle expiry forward only, within the lifetime, and only on open sessions.
pub async fn recording_activity_moves_it_forward_only_and_reschedules_expiry(store: Stores) {
    let mut s = session(SessionKind::WebCall, None, T0);
    s.idle_timeout = Some(ms(100));
    s.lifetime = Some(ms(1_000));
    create(&*store.sessions, &s, &StorageMap::new()).await;
    let due = |at: i64| {
        let store = store.clone();
        async move { ids(&store.sessions.due_sessions(UnixMillis(T0.0 + at), 10).await.expect("due sessions are listed")) }
    };
    assert_eq!(due(99).await, []);
    assert_eq!(due(100).await, [s.id.clone()]);

    store.sessions.record_activity(&s.id, UnixMillis(T0.0 + 50)).await.expect("activity is recorded");
    store.sessions.record_activity(&s.id, UnixMillis(T0.0 + 10)).await.expect("older activity is ignored");
    let stored = store.sessions.session_by_id(&s.id).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.last_active_at, UnixMillis(T0.0 + 50));
    assert_eq!(due(149).await, []);
    assert_eq!(due(150).await, [s.id.clone()]);

    // The lifetime caps the idle timeout however recent the activity.
    store.sessions.record_activity(&s.id, UnixMillis(T0.0 + 950)).await.expect("activity is recorded");
    assert_eq!(due(999).await, []);
    assert_eq!(due(1_000).await, [s.id.clone()]);

    // Activity on ended or unknown sessions changes nothing and is no error.
    end(&*store.sessions, &s, EndReason::Closed, UnixMillis(T0.0 + 960), false).await;
    store
        .sessions
        .record_activity(&s.id, UnixMillis(T0.0 + 970))
        .await
        .expect("activity on an ended session is ignored");
    let stored = store.sessions.session_by_id(&s.id).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.last_active_at, UnixMillis(T0.0 + 950));
    assert_eq!(due(10_000).await, []);
    let stranger = session(SessionKind::WebCall, None, T0);
    store.sessions.record_activity(&stranger.id, T0).await.expect("activity on an unknown session is ignored");
    assert_eq!(
        store.events.last_event_sequence().await.expect("the sequence is readable"),
        2,
        "activity records no event"
    );
}

/// Due sessions are the open ones past their expiry, soonest first, up to the limit.
pub async fn due_sessions_are_open_ones_oldest_expiry_first(store: Stores) {
    let timed = |idle: Option<u64>, life: Option<u64>| {
        let mut s = session(SessionKind::Streaming, None, T0);
        s.idle_timeout = idle.map(ms);
        s.lifetime = life.map(ms);
        s
    };
    let late = timed(Some(300), None);
    let early = timed(None, Some(100));
    let middle = timed(Some(200), Some(5_000));
    let never = timed(None, None);
    let ended = timed(Some(50), None);
    for s in [&late, &early, &middle, &never, &ended] {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    end(&*store.sessions, &ended, EndReason::Revoked, T0, false).await;

    let now = UnixMillis(T0.0 + 1_000_000);
    assert_eq!(
        ids(&store.sessions.due_sessions(now, 10).await.expect("due sessions are listed")),
        ids([&early, &middle, &late])
    );
    assert_eq!(
        ids(&store.sessions.due_sessions(now, 2).await.expect("due sessions are listed")),
        ids([&early, &middle])
    );
}

/// Ending records the end and its event; ending again changes nothing and answers the first end.
pub async fn ending_a_session_records_its_event_once(store: Stores) {
    let s = session(SessionKind::RemoteUser, Some("bob"), T0);
    create(&*store.sessions, &s, &StorageMap::new()).await;
    let (first, first_event) = ending(&s, EndReason::Failed, UnixMillis(T0.0 + 10), true);
    let outcome = store.sessions.end_session(&s.id, &first, &first_event).await.expect("ending succeeds");
    assert_eq!(outcome, EndOutcome::Ended(Event { sequence: 2, event: first_event }));

    let (second, second_event) = ending(&s, EndReason::Revoked, UnixMillis(T0.0 + 20), false);
    let again = store.sessions.end_session(&s.id, &second, &second_event).await.expect("ending twice is no error");
    assert_eq!(again, EndOutcome::AlreadyEnded(first.clone()));
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), 2);
    let stored = store.sessions.session_by_id(&s.id).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.end, Some(first));
}

/// A log is answered only once kept; ending without a log id deletes it.
pub async fn ending_deletes_the_log_unless_it_is_kept(store: Stores) {
    let kept = session(SessionKind::MethodCall, None, T0);
    let dropped = session(SessionKind::MethodCall, None, T0);
    for s in [&kept, &dropped] {
        create(&*store.sessions, s, &StorageMap::new()).await;
        let entries = [entry(LogLevel::Info, "one", T0), entry(LogLevel::Error, "two", T0)];
        store.logs.append_logs(&s.id, entries.to_vec()).await.expect("appending to an open session succeeds");
    }
    assert_eq!(
        store.logs.query_logs(&all_logs()).await.expect("logs are queryable").records,
        [],
        "open logs are not kept yet"
    );

    let kept_end = end(&*store.sessions, &kept, EndReason::Closed, T0, true).await;
    end(&*store.sessions, &dropped, EndReason::Closed, T0, false).await;
    let records = store.logs.query_logs(&all_logs()).await.expect("logs are queryable").records;
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.session_id == kept.id && r.log_id == kept_end.log_id));
}

/// Writes on an ended session fail with its end reason and record no event.
pub async fn writes_on_an_ended_session_fail_with_ended(store: Stores) {
    let s = session(SessionKind::WebUser, None, T0);
    create(&*store.sessions, &s, &StorageMap::new()).await;
    end(&*store.sessions, &s, EndReason::Revoked, T0, false).await;
    let before = store.events.last_event_sequence().await.expect("the sequence is readable");

    let grants =
        store.sessions.update_grants(&s.id, 0, &Grants::default(), &event(EventType::PrivilegesChanged, &s, T0)).await;
    assert!(matches!(grants, Err(StoreError::Ended(EndReason::Revoked))), "{grants:?}");
    let storage = store
        .storage
        .replace_storage(&s.id, 0, EncodedStorage::encode(&StorageMap::new()), event(EventType::StorageChanged, &s, T0))
        .await;
    assert!(matches!(storage, Err(StoreError::Ended(EndReason::Revoked))), "{storage:?}");
    let logs = store.logs.append_logs(&s.id, vec![entry(LogLevel::Info, "late", T0)]).await;
    assert!(matches!(logs, Err(StoreError::Ended(EndReason::Revoked))), "{logs:?}");
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), before);
}

/// Writes, ends and storage reads on an unknown session fail with `NotFound`.
pub async fn writes_on_an_unknown_session_fail_with_not_found(store: Stores) {
    let s = session(SessionKind::WebUser, None, T0);
    let grants =
        store.sessions.update_grants(&s.id, 0, &Grants::default(), &event(EventType::PrivilegesChanged, &s, T0)).await;
    assert!(matches!(grants, Err(StoreError::NotFound)), "{grants:?}");
    let storage = store
        .storage
        .replace_storage(&s.id, 0, EncodedStorage::encode(&StorageMap::new()), event(EventType::StorageChanged, &s, T0))
        .await;
    assert!(matches!(storage, Err(StoreError::NotFound)), "{storage:?}");
    let logs = store.logs.append_logs(&s.id, vec![entry(LogLevel::Info, "lost", T0)]).await;
    assert!(matches!(logs, Err(StoreError::NotFound)), "{logs:?}");
    let (end, end_event) = ending(&s, EndReason::Closed, T0, false);
    let ended = store.sessions.end_session(&s.id, &end, &end_event).await;
    assert!(matches!(ended, Err(StoreError::NotFound)), "{ended:?}");
    let read = store.storage.storage(&s.id).await;
    assert!(matches!(read, Err(StoreError::NotFound)), "{read:?}");
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), 0);
}

/// Grants change only at the expected version, which each change bumps.
pub async fn grants_are_replaced_by_compare_and_set(store: Stores) {
    let s = session(SessionKind::WebUser, None, T0);
    create(&*store.sessions, &s, &StorageMap::new()).await;
    let grants = Grants { privileges: vec!["viewsales".into()], ..Grants::default() };
    let changed = event(EventType::PrivilegesChanged, &s, T0);
    let (version, recorded) =
        store.sessions.update_grants(&s.id, 0, &grants, &changed).await.expect("the version matches");
    assert_eq!((version, recorded), (1, Event { sequence: 2, event: changed.clone() }));
    let stored = store.sessions.session_by_id(&s.id).await.expect("lookup works").expect("the session exists");
    assert_eq!((stored.grants, stored.grants_version), (grants, 1));

    let stale = store.sessions.update_grants(&s.id, 0, &Grants::default(), &changed).await;
    assert!(matches!(stale, Err(StoreError::Conflict { current: 1 })), "{stale:?}");
    assert_eq!(
        store.events.last_event_sequence().await.expect("the sequence is readable"),
        2,
        "a conflict records no event"
    );
    let (version, _) =
        store.sessions.update_grants(&s.id, 1, &Grants::default(), &changed).await.expect("the version matches");
    assert_eq!(version, 2);
}

/// Storage starts at version 0 when empty, 1 when given, and changes by compare-and-set.
pub async fn storage_versions_start_at_zero_or_one_and_compare_and_set(store: Stores) {
    let empty = session(SessionKind::WebUser, None, T0);
    let filled = session(SessionKind::WebUser, None, T0);
    let initial = storage_of(&[("cart", json!({"items": [1, 2]})), ("theme", json!("dark"))]);
    create(&*store.sessions, &empty, &StorageMap::new()).await;
    create(&*store.sessions, &filled, &initial).await;
    assert_eq!(store.storage.storage(&empty.id).await.expect("storage is readable"), VersionedStorage::default());
    let read = store.storage.storage(&filled.id).await.expect("storage is readable");
    assert_eq!(read, VersionedStorage { version: 1, values: initial });

    let values = storage_of(&[("n", json!(1.5)), ("none", json!(null))]);
    let changed = event(EventType::StorageChanged, &empty, T0);
    let (version, recorded) = store
        .storage
        .replace_storage(&empty.id, 0, EncodedStorage::encode(&values), changed.clone())
        .await
        .expect("the version matches");
    assert_eq!((version, recorded.event), (1, changed.clone()));
    assert_eq!(
        store.storage.storage(&empty.id).await.expect("storage is readable"),
        VersionedStorage { version: 1, values }
    );
    let stale =
        store.storage.replace_storage(&empty.id, 0, EncodedStorage::encode(&StorageMap::new()), changed.clone()).await;
    assert!(matches!(stale, Err(StoreError::Conflict { current: 1 })), "{stale:?}");
    let (version, _) = store
        .storage
        .replace_storage(&empty.id, 1, EncodedStorage::encode(&StorageMap::new()), changed.clone())
        .await
        .expect("the version matches");
    assert_eq!(version, 2);
    assert_eq!(
        store.storage.storage(&empty.id).await.expect("storage is readable"),
        VersionedStorage { version: 2, values: StorageMap::new() }
    );
}

/// Read-modify-write cycles retried on conflict lose no update under contention.
pub async fn concurrent_storage_increments_lose_none(store: Stores) {
    const WRITERS: u64 = 100;
    let s = session(SessionKind::Standalone, None, T0);
    create(&*store.sessions, &s, &storage_of(&[("n", json!(0))])).await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, s) = (store.clone(), s.clone());
            tokio::spawn(async move {
                loop {
                    let read = store.storage.storage(&s.id).await.expect("storage is readable");
                    let n = read.values["n"].as_u64().expect("n holds a number");
                    let next = storage_of(&[("n", json!(n + 1))]);
                    let changed = event(EventType::StorageChanged, &s, T0);
                    match store
                        .storage
                        .replace_storage(&s.id, read.version, EncodedStorage::encode(&next), changed.clone())
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("an increment failed: {e:?}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no increment panicked");
    }
    let read = store.storage.storage(&s.id).await.expect("storage is readable");
    assert_eq!(read.values["n"], json!(WRITERS));
    assert_eq!(read.version, 1 + WRITERS);
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), 1 + WRITERS);
}

/// Entries are numbered from 1 across every append of a session.
pub async fn log_numbering_continues_across_appends(store: Stores) {
    let s = session(SessionKind::FutureCall, None, T0);
    create(&*store.sessions, &s, &StorageMap::new()).await;
    store
        .logs
        .append_logs(&s.id, vec![entry(LogLevel::Info, "a", T0), entry(LogLevel::Info, "b", T0)])
        .await
        .expect("appended");
    store.logs.append_logs(&s.id, vec![]).await.expect("appending nothing is fine");
    let rest = ["c", "d", "e"].map(|m| entry(LogLevel::Warning, m, UnixMillis(T0.0 + 1)));
    store.logs.append_logs(&s.id, rest.to_vec()).await.expect("appended");
    end(&*store.sessions, &s, EndReason::Closed, T0, true).await;

    let records = store.logs.query_logs(&all_logs()).await.expect("logs are queryable").records;
    let numbered: Vec<_> = records.iter().map(|r| (r.sequence, r.entry.message.as_str())).collect();
    assert_eq!(numbered, [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]);
    assert_eq!(records[4].entry, rest[2]);
}

/// Appends to several sessions at once number each session's entries from
/// 1 without gaps or repeats, an append's entries together and a caller's
/// appends in the order made; appends to an ended or unknown session fail
/// alone.
pub async fn concurrent_appends_number_each_log_without_gaps(store: Stores) {
    const SESSIONS: usize = 4;
    const CALLERS: usize = 3;
    const APPENDS: usize = 5;
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        let s = session(SessionKind::FutureCall, None, T0);
        create(&*store.sessions, &s, &StorageMap::new()).await;
        sessions.push(s);
    }
    let ended = session(SessionKind::FutureCall, None, T0);
    create(&*store.sessions, &ended, &StorageMap::new()).await;
    end(&*store.sessions, &ended, EndReason::Closed, T0, true).await;
    let unknown = SessionId::generate();

    let mut tasks = Vec::new();
    for s in &sessions {
        for caller in 0..CALLERS {
            let (store, id) = (store.clone(), s.id.clone());
            tasks.push(tokio::spawn(async move {
                for append in 0..APPENDS {
                    let pair = ["a", "b"].map(|part| entry(LogLevel::Info, &format!("{caller}.{append}.{part}"), T0));
                    store.logs.append_logs(&id, pair.to_vec()).await.expect("appended");
                }
            }));
        }
    }
    for (id, expected) in [(ended.id.clone(), "ended"), (unknown, "unknown")] {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..APPENDS {
                let refused = store.logs.append_logs(&id, vec![entry(LogLevel::Info, "late", T0)]).await;
                match expected {
                    "ended" => assert!(matches!(refused, Err(StoreError::Ended(EndReason::Closed))), "{refused:?}"),
                    _ => assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("no appender panicked");
    }

    for s in &sessions {
        end(&*store.sessions, s, EndReason::Closed, T0, true).await;
        let query = LogQuery { session_id: Some(s.id.clone()), ..all_logs() };
        let records = store.logs.query_logs(&query).await.expect("logs are queryable").records;
        let total = (CALLERS * APPENDS * 2) as u64;
        assert_eq!(records.iter().map(|r| r.sequence).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
        for pair in records.chunks(2) {
            let [a, b] = [&pair[0].entry.message, &pair[1].entry.message];
            assert!(a.ends_with(".a") && b.ends_with(".b") && a[..a.len() - 1] == b[..b.len() - 1], "{a} {b}");
        }
        for caller in 0..CALLERS {
            let mine: Vec<&str> = records
                .iter()
                .map(|r| r.entry.message.as_str())
                .filter(|m| m.starts_with(&format!("{caller}.")) && m.ends_with(".a"))
                .collect();
            let made: Vec<String> = (0..APPENDS).map(|append| format!("{caller}.{append}.a")).collect();
            assert_eq!(mine, made, "caller {caller}'s appends are in the order made");
        }
    }
    let ended_log = LogQuery { session_id: Some(ended.id.clone()), ..all_logs() };
    assert_eq!(store.logs.query_logs(&ended_log).await.expect("logs are queryable").records, []);
}

/// QueryLogs answers kept logs only, narrowed by each filter.
pub async fn query_logs_answers_kept_logs_matching_the_filters(store: Stores) {
    let at = |n: i64| UnixMillis(T0.0 + n);
    let failed = session(SessionKind::WebCall, Some("alice"), T0);
    let mut slow = session(SessionKind::MethodCall, Some("bob"), T0);
    slow.labels.endpoint = "checkout".into();
    let dropped = session(SessionKind::WebCall, Some("alice"), T0);
    let open = session(SessionKind::WebCall, Some("alice"), T0);
    for s in [&failed, &slow, &dropped, &open] {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    let mut with_details = entry(LogLevel::Error, "f3", at(3));
    with_details.exception = Some("Oops".into());
    with_details.stack_trace = Some("at main".into());
    with_details.client_time = Some(UnixMicros(at(2).0 * 1000 + 345));
    let failed_entries = [entry(LogLevel::Debug, "f1", at(1)), entry(LogLevel::Info, "f2", at(2)), with_details];
    store.logs.append_logs(&failed.id, failed_entries.to_vec()).await.expect("appended");
    store
        .logs
        .append_logs(&slow.id, vec![entry(LogLevel::Info, "s1", at(10)), entry(LogLevel::Warning, "s2", at(11))])
        .await
        .expect("appended");
    for s in [&dropped, &open] {
        store.logs.append_logs(&s.id, vec![entry(LogLevel::Fatal, "hidden", at(2))]).await.expect("appended");
    }
    let failed_end = end(&*store.sessions, &failed, EndReason::Failed, at(20), true).await;
    let (mut slow_end, slow_event) = ending(&slow, EndReason::Closed, at(20), true);
    slow_end.slow = true;
    store.sessions.end_session(&slow.id, &slow_end, &slow_event).await.expect("ending succeeds");
    end(&*store.sessions, &dropped, EndReason::Failed, at(20), false).await;

    let messages = |query: LogQuery| {
        let store = store.clone();
        async move {
            let records =
                store.logs.query_logs(&LogQuery { limit: 100, ..query }).await.expect("logs are queryable").records;
            records.into_iter().map(|r| r.entry.message).collect::<Vec<_>>()
        }
    };
    assert_eq!(messages(LogQuery::default()).await, ["f1", "f2", "f3", "s1", "s2"]);
    assert_eq!(messages(LogQuery { min_level: Some(LogLevel::Warning), ..LogQuery::default() }).await, ["f3", "s2"]);
    assert_eq!(messages(LogQuery { failed_only: true, ..LogQuery::default() }).await, ["f1", "f2", "f3"]);
    assert_eq!(messages(LogQuery { slow_only: true, ..LogQuery::default() }).await, ["s1", "s2"]);
    assert_eq!(messages(LogQuery { session_id: Some(slow.id.clone()), ..LogQuery::default() }).await, ["s1", "s2"]);
    assert_eq!(messages(LogQuery { user_id: Some("alice".into()), ..LogQuery::default() }).await, ["f1", "f2", "f3"]);
    assert_eq!(messages(LogQuery { kind: Some(SessionKind::MethodCall), ..LogQuery::default() }).await, ["s1", "s2"]);
    let checkout = LogQuery { endpoint: Some("checkout".into()), ..LogQuery::default() };
    assert_eq!(messages(checkout).await, ["s1", "s2"]);
    let elsewhere =
        LogQuery { endpoint: Some("checkout".into()), user_id: Some("alice".into()), ..LogQuery::default() };
    assert!(messages(elsewhere).await.is_empty());
    let window = LogQuery { from: Some(at(2)), to: Some(at(11)), ..LogQuery::default() };
    assert_eq!(messages(window).await, ["f2", "f3", "s1"]);

    let records = store
        .logs
        .query_logs(&LogQuery { min_level: Some(LogLevel::Error), ..all_logs() })
        .await
        .expect("queryable")
        .records;
    let [record] = records.as_slice() else { panic!("one error entry is kept, got {records:?}") };
    assert_eq!((record.sequence, &record.entry), (3, &failed_entries[2]));
    assert_eq!(record.log_id, failed_end.log_id);
    assert_eq!(
        (&record.session_id, record.user_id.as_deref(), record.kind, record.endpoint.as_str()),
        (&failed.id, Some("alice"), SessionKind::WebCall, "")
    );
    let records = store
        .logs
        .query_logs(&LogQuery { session_id: Some(slow.id.clone()), ..all_logs() })
        .await
        .expect("queryable")
        .records;
    let endpoints: Vec<&str> = records.iter().map(|r| r.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["checkout", "checkout"]);
}

/// Paging by cursor walks every entry once, in order.
pub async fn query_logs_pages_by_entry_id(store: Stores) {
    let s = session(SessionKind::Internal, None, T0);
    create(&*store.sessions, &s, &StorageMap::new()).await;
    let entries: Vec<_> = (0..7).map(|i| entry(LogLevel::Info, &format!("m{i}"), T0)).collect();
    store.logs.append_logs(&s.id, entries.clone()).await.expect("appended");
    end(&*store.sessions, &s, EndReason::Closed, T0, true).await;

    let mut seen = Vec::new();
    let mut after = LogCursor::default();
    loop {
        let page =
            store.logs.query_logs(&LogQuery { after, limit: 3, ..LogQuery::default() }).await.expect("queryable");
        let Some(first) = page.records.first() else { break };
        assert!(page.records.len() <= 3);
        assert!(page.records.windows(2).all(|w| LogCursor::after(&w[0]) < LogCursor::after(&w[1])), "in order");
        assert!(LogCursor::after(first) > after);
        after = page.cursor(after, 3);
        seen.extend(page.records.into_iter().map(|r| r.entry.message));
    }
    assert_eq!(seen, entries.iter().map(|e| e.message.clone()).collect::<Vec<_>>());
}

/// A time range answers every entry logged within it, in the order they
/// became readable: also one whose write was positioned after an entry
/// logged later (a write that waited), and one whose log was kept long
/// after; none logged before or after the range, however many.
pub async fn a_time_range_finds_its_entries_whenever_they_became_readable(store: Stores) {
    let minute = |n: i64| UnixMillis(T0.0 + n * 60_000);
    let live = session(SessionKind::Streaming, Some("dave"), T0);
    let kept = session(SessionKind::WebCall, Some("dave"), T0);
    for s in [&live, &kept] {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    let continuous = |message: &str, at| LogEntry { continuous: true, ..entry(LogLevel::Info, message, at) };
    let before: Vec<_> = (0..50).map(|i| continuous(&format!("before{i}"), minute(i % 3))).collect();
    store.logs.append_logs(&live.id, before.clone()).await.expect("appended");
    store.logs.append_logs(&kept.id, vec![entry(LogLevel::Info, "kept", minute(61))]).await.expect("appended");
    let (from, to) = (minute(60), minute(120));
    // Logged 10 s into the range, then one logged 5 s before it whose
    // write committed later (within `log_sql::CLOCK_MARGIN`).
    store.logs.append_logs(&live.id, vec![continuous("first", UnixMillis(from.0 + 10_000))]).await.expect("appended");
    store.logs.append_logs(&live.id, vec![continuous("late", UnixMillis(from.0 - 5_000))]).await.expect("appended");
    store.logs.append_logs(&live.id, vec![continuous("at-start", from)]).await.expect("appended");
    let after: Vec<_> = (0..50).map(|i| continuous(&format!("after{i}"), minute(120 + i))).collect();
    store.logs.append_logs(&live.id, after.clone()).await.expect("appended");
    end(&*store.sessions, &kept, EndReason::Closed, minute(200), true).await;

    let window = LogQuery { from: Some(from), to: Some(to), limit: 1, ..LogQuery::default() };
    let mut seen = Vec::new();
    let mut cursor = LogCursor::default();
    for _ in 0..10 {
        let page = store.logs.query_logs(&LogQuery { after: cursor, ..window.clone() }).await.expect("queryable");
        seen.extend(page.records.iter().map(|r| r.entry.message.clone()));
        if page.records.is_empty() {
            break;
        }
        cursor = page.cursor(cursor, 1);
    }
    assert_eq!(seen, ["first", "at-start", "kept"]);
    let open_ended = LogQuery { from: Some(minute(121)), to: None, limit: 3, ..LogQuery::default() };
    let records = store.logs.query_logs(&open_ended).await.expect("queryable").records;
    let messages: Vec<_> = records.iter().map(|r| r.entry.message.as_str()).collect();
    assert_eq!(messages, ["after1", "after2", "after3"]);
}

/// Entries logged continuously are readable while their session is open,
/// at a position the horizon has passed; kept at the end, the rest of the
/// log becomes readable after them; not kept, it all goes.
pub async fn continuous_entries_are_readable_while_open(store: Stores) {
    let live = session(SessionKind::Streaming, Some("carol"), T0);
    let quiet = session(SessionKind::WebCall, Some("carol"), T0);
    let dropped = session(SessionKind::Streaming, Some("carol"), T0);
    for s in [&live, &quiet, &dropped] {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    let continuous = |level, message: &str| LogEntry { continuous: true, ..entry(level, message, T0) };
    store.logs.append_logs(&live.id, vec![continuous(LogLevel::Info, "l1")]).await.expect("appended");
    store.logs.append_logs(&quiet.id, vec![entry(LogLevel::Error, "q1", T0)]).await.expect("appended");
    store.logs.append_logs(&dropped.id, vec![continuous(LogLevel::Info, "d1")]).await.expect("appended");
    store.logs.append_logs(&live.id, vec![continuous(LogLevel::Error, "l2")]).await.expect("appended");

    let messages = |page: &LogPage| page.records.iter().map(|r| r.entry.message.clone()).collect::<Vec<_>>();
    let page = store.logs.query_logs(&all_logs()).await.expect("queryable");
    assert_eq!(messages(&page), ["l1", "d1", "l2"]);
    assert!(page.records.iter().all(|r| r.position < page.horizon && r.log_id.is_none()));
    assert!(page.records[0].entry.continuous);
    assert_eq!(store.logs.log_level_reached(&quiet.id, LogLevel::Error).await.expect("readable"), true);
    assert_eq!(store.logs.log_level_reached(&live.id, LogLevel::Fatal).await.expect("readable"), false);

    let seen = page.cursor(LogCursor::default(), 1_000);
    end(&*store.sessions, &quiet, EndReason::Closed, T0, true).await;
    end(&*store.sessions, &dropped, EndReason::Closed, T0, false).await;
    let later = store.logs.query_logs(&LogQuery { after: seen, ..all_logs() }).await.expect("queryable");
    assert_eq!(messages(&later), ["q1"], "a kept log's entries come after what was read before");
    let all = store.logs.query_logs(&all_logs()).await.expect("queryable");
    assert_eq!(messages(&all), ["l1", "l2", "q1"]);
    let by_user = LogQuery { user_id: Some("carol".into()), min_level: Some(LogLevel::Error), ..all_logs() };
    assert_eq!(messages(&store.logs.query_logs(&by_user).await.expect("queryable")), ["l2", "q1"]);
}

/// Listing narrows by user, kinds, open or ended, and ids, newest first.
pub async fn list_sessions_filters_by_user_kind_state_and_id(store: Stores) {
    let at = |n: i64| UnixMillis(T0.0 + n);
    let alice_web = session(SessionKind::WebUser, Some("alice"), at(1));
    let alice_remote = session(SessionKind::RemoteUser, Some("alice"), at(2));
    let bob_web = session(SessionKind::WebUser, Some("bob"), at(3));
    let anonymous = session(SessionKind::Internal, None, at(4));
    for s in [&alice_web, &alice_remote, &bob_web, &anonymous] {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    end(&*store.sessions, &alice_remote, EndReason::Closed, at(5), false).await;

    let list = |filter: SessionFilter| {
        let store = store.clone();
        async move {
            let page = PageRequest { after: None, limit: 100 };
            ids(&store.sessions.list_sessions(&filter, &page).await.expect("sessions are listed"))
        }
    };
    let all = ids([&anonymous, &bob_web, &alice_remote, &alice_web]);
    assert_eq!(list(SessionFilter::default()).await, all);
    let alice = SessionFilter { user_id: Some("alice".into()), ..SessionFilter::default() };
    assert_eq!(list(alice.clone()).await, ids([&alice_remote, &alice_web]));
    let alice_open = SessionFilter { open: Some(true), ..alice };
    assert_eq!(list(alice_open).await, ids([&alice_web]));
    let ended = SessionFilter { open: Some(false), ..SessionFilter::default() };
    assert_eq!(list(ended).await, ids([&alice_remote]));
    let users =
        SessionFilter { kinds: vec![SessionKind::WebUser, SessionKind::RemoteUser], ..SessionFilter::default() };
    assert_eq!(list(users).await, ids([&bob_web, &alice_remote, &alice_web]));
    let chosen = SessionFilter { ids: ids([&alice_web, &anonymous]), ..SessionFilter::default() };
    assert_eq!(list(chosen).await, ids([&anonymous, &alice_web]));
    let nobody = SessionFilter { user_id: Some("carol".into()), ..SessionFilter::default() };
    assert_eq!(list(nobody).await, []);

    let page = PageRequest { after: None, limit: 100 };
    let listed = store.sessions.list_sessions(&SessionFilter::default(), &page).await.expect("sessions are listed");
    assert_eq!(listed[1], bob_web, "listing answers whole sessions");
}

/// Paging a listing splits ties on creation time without repeating or skipping.
pub async fn list_sessions_pages_newest_first_without_duplicates_or_gaps(store: Stores) {
    // Three sessions share each creation time, so pages split ties.
    let mut created = Vec::new();
    for i in 0..25 {
        let s = session(SessionKind::WebCall, Some("pager"), UnixMillis(T0.0 + i / 3));
        create(&*store.sessions, &s, &StorageMap::new()).await;
        created.push(s);
    }
    created.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));

    let filter = SessionFilter { user_id: Some("pager".into()), ..SessionFilter::default() };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page =
            store.sessions.list_sessions(&filter, &PageRequest { after, limit: 4 }).await.expect("sessions are listed");
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 4);
        after = Some((last.created_at, last.id.clone()));
        seen.extend(ids(&page));
    }
    assert_eq!(seen, ids(&created));
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 25);
}

/// Events from concurrent writers are numbered 1, 2, 3… without gaps, as answered.
pub async fn events_are_numbered_without_gaps_across_concurrent_writers(store: Stores) {
    const SESSIONS: usize = 40;
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let s = session(SessionKind::WebUser, Some(&format!("user{i}")), T0);
                let created = create(&*store.sessions, &s, &StorageMap::new()).await;
                let changed = event(EventType::PrivilegesChanged, &s, T0);
                let (_, granted) =
                    store.sessions.update_grants(&s.id, 0, &Grants::default(), &changed).await.expect("granted");
                let (end, end_event) = ending(&s, EndReason::Closed, T0, false);
                let EndOutcome::Ended(ended) =
                    store.sessions.end_session(&s.id, &end, &end_event).await.expect("ended")
                else {
                    panic!("the session was open");
                };
                [created, granted, ended]
            })
        })
        .collect();
    let mut answered = Vec::new();
    for task in tasks {
        let [created, granted, ended] = task.await.expect("no writer panicked");
        assert!(
            created.sequence < granted.sequence && granted.sequence < ended.sequence,
            "a session's events are ordered"
        );
        answered.extend([created, granted, ended]);
    }
    answered.sort_by_key(|e| e.sequence);

    let total = 3 * SESSIONS as u64;
    let recorded = store.events.events_after(0, 1_000).await.expect("events are readable");
    assert_eq!(recorded.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    assert_eq!(recorded, answered, "each writer was answered the event recorded");
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), total);
    let window = store.events.events_after(50, 10).await.expect("events are readable");
    assert_eq!(window.iter().map(|e| e.sequence).collect::<Vec<_>>(), (51..=60).collect::<Vec<_>>());
    assert_eq!(store.events.events_after(total, 10).await.expect("events are readable"), []);
}

/// A watcher's catch-up: only the events of its tenant, session, user or
/// kind, within `(after, upto]`, in order, at most `limit`.
pub async fn matching_events_are_filtered_by_the_store_within_their_range(store: Stores) {
    let acme = tenant("acme");
    let alice = session_of(&acme, SessionKind::WebUser, Some("alice"), T0);
    let bob = session_of(&acme, SessionKind::Streaming, Some("bob"), T0);
    let theirs = session(SessionKind::WebUser, Some("alice"), T0);
    let mut recorded = Vec::new();
    for s in [&alice, &bob, &theirs, &alice] {
        let changed = event(EventType::StorageChanged, s, T0);
        let event = if recorded.iter().any(|e: &Event| e.event.session_id == s.id) {
            let version = store.storage.storage(&s.id).await.expect("storage is readable").version;
            store
                .storage
                .replace_storage(&s.id, version, EncodedStorage::encode(&StorageMap::new()), changed.clone())
                .await
                .expect("replaced")
                .1
        } else {
            create(&*store.sessions, s, &StorageMap::new()).await
        };
        recorded.push(event);
    }
    let sequences = |events: Vec<Event>| events.iter().map(|e| e.sequence).collect::<Vec<_>>();
    let [a1, b1, t1, a2] = [0, 1, 2, 3].map(|i| recorded[i].sequence);
    let upto = store.events.last_event_sequence().await.expect("the sequence is readable");
    let matching = |filter: EventFilter, after: u64, upto: u64, limit: usize| {
        let store = store.clone();
        async move {
            sequences(store.events.matching_events(&filter, after, upto, limit).await.expect("events are readable"))
        }
    };
    let of_acme = || EventFilter { tenant: Some(acme.clone()), ..EventFilter::default() };

    assert_eq!(matching(of_acme(), 0, upto, 100).await, [a1, b1, a2], "the tenant's, not another's");
    let of_alice = EventFilter { user_id: Some("alice".into()), ..of_acme() };
    assert_eq!(matching(of_alice, 0, upto, 100).await, [a1, a2], "the tenant's alice, not another tenant's");
    let of_session = EventFilter { session_id: Some(bob.id.clone()), ..of_acme() };
    assert_eq!(matching(of_session, 0, upto, 100).await, [b1]);
    let streams = EventFilter { kind: Some(SessionKind::Streaming), ..of_acme() };
    assert_eq!(matching(streams, 0, upto, 100).await, [b1]);
    assert_eq!(matching(of_acme(), a1, upto, 100).await, [b1, a2], "after is exclusive");
    assert_eq!(matching(of_acme(), 0, t1, 100).await, [a1, b1], "upto is inclusive, later ones left");
    assert_eq!(matching(of_acme(), 0, upto, 2).await, [a1, b1], "at most limit");
    let foreign = EventFilter { tenant: Some(tenant("globex")), ..EventFilter::default() };
    assert_eq!(matching(foreign, 0, upto, 100).await, Vec::<u64>::new());
}

/// A refused write leaves the writes beside it committed.
pub async fn a_failing_write_does_not_undo_concurrent_ones(store: Stores) {
    let ended = session(SessionKind::WebUser, None, T0);
    create(&*store.sessions, &ended, &StorageMap::new()).await;
    end(&*store.sessions, &ended, EndReason::Closed, T0, false).await;
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (store, ended) = (store.clone(), ended.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    let refused = store.logs.append_logs(&ended.id, vec![entry(LogLevel::Info, "late", T0)]).await;
                    assert!(matches!(refused, Err(StoreError::Ended(EndReason::Closed))), "{refused:?}");
                    None
                } else {
                    let s = session(SessionKind::WebUser, None, T0);
                    create(&*store.sessions, &s, &StorageMap::new()).await;
                    Some(s)
                }
            })
        })
        .collect();
    for task in tasks {
        if let Some(s) = task.await.expect("no writer panicked") {
            assert_eq!(store.sessions.session_by_id(&s.id).await.expect("lookup works"), Some(s));
        }
    }
    let recorded = store.events.events_after(0, 1_000).await.expect("events are readable");
    assert_eq!(recorded.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=32).collect::<Vec<_>>());
}

/// Purging drops old ended sessions with their logs and old events; numbering goes on.
pub async fn purge_removes_old_ended_sessions_with_their_logs_and_old_events(store: Stores) {
    let at = |n: i64| UnixMillis(T0.0 + n);
    let old = session(SessionKind::WebCall, None, at(0));
    let recent = session(SessionKind::WebCall, None, at(0));
    let open = session(SessionKind::WebCall, None, at(0));
    for s in [&old, &recent, &open] {
        create(&*store.sessions, s, &storage_of(&[("k", json!("v"))])).await;
        store.logs.append_logs(&s.id, vec![entry(LogLevel::Info, "kept", at(1))]).await.expect("appended");
    }
    end(&*store.sessions, &old, EndReason::Closed, at(10), true).await;
    end(&*store.sessions, &recent, EndReason::Closed, at(100), true).await;
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), 5);

    let purged = store.sessions.purge(at(50), at(50), at(50)).await.expect("purging succeeds");
    assert_eq!((purged.sessions, purged.events), (1, 4), "one old session; three creations and one end");
    assert_eq!(store.sessions.session_by_id(&old.id).await.expect("lookup works"), None);
    assert!(matches!(store.storage.storage(&old.id).await, Err(StoreError::NotFound)));
    assert!(store.sessions.session_by_id(&recent.id).await.expect("lookup works").is_some());
    assert!(store.sessions.session_by_id(&open.id).await.expect("lookup works").is_some());
    let logs = store.logs.query_logs(&all_logs()).await.expect("logs are queryable").records;
    assert_eq!(logs.iter().map(|r| &r.session_id).collect::<Vec<_>>(), [&recent.id]);
    let events = store.events.events_after(0, 100).await.expect("events are readable");
    assert_eq!(events.iter().map(|e| e.sequence).collect::<Vec<_>>(), [5]);

    // Numbering goes on after a purge, even one that removed every event.
    let purged = store.sessions.purge(at(0), at(1_000), at(0)).await.expect("purging succeeds");
    assert_eq!((purged.sessions, purged.events), (0, 1));
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), 5);
    let later = session(SessionKind::WebCall, None, at(2_000));
    assert_eq!(create(&*store.sessions, &later, &StorageMap::new()).await.sequence, 6);
}

/// A session, its events and its log keep the tenant they were written with.
pub async fn sessions_events_and_logs_carry_their_tenant(store: Stores) {
    let acme = tenant("acme");
    let theirs = session_of(&acme, SessionKind::WebUser, Some("alice"), T0);
    let ours = session(SessionKind::WebUser, Some("alice"), T0);
    let mut answered = Vec::new();
    for s in [&theirs, &ours] {
        answered.push(create(&*store.sessions, s, &StorageMap::new()).await);
        let changed = event(EventType::PrivilegesChanged, s, T0);
        let (_, granted) = store.sessions.update_grants(&s.id, 0, &Grants::default(), &changed).await.expect("granted");
        answered.push(granted);
        let changed = event(EventType::StorageChanged, s, T0);
        let (_, replaced) = store
            .storage
            .replace_storage(&s.id, 0, EncodedStorage::encode(&StorageMap::new()), changed.clone())
            .await
            .expect("replaced");
        answered.push(replaced);
        store.logs.append_logs(&s.id, vec![entry(LogLevel::Info, s.tenant.as_str(), T0)]).await.expect("appended");
        let (end, end_event) = ending(s, EndReason::Closed, UnixMillis(T0.0 + 1), true);
        let EndOutcome::Ended(ended) = store.sessions.end_session(&s.id, &end, &end_event).await.expect("ended") else {
            panic!("the session was open");
        };
        answered.push(ended);
    }

    let stored = store.sessions.session_by_id(&theirs.id).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.tenant, acme);
    let stored =
        store.sessions.session_by_token(&theirs.token_hash).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.tenant, acme);
    let stored = store.sessions.session_by_id(&ours.id).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.tenant, TenantId::default());
    let page = PageRequest { after: None, limit: 10 };
    let listed = store.sessions.list_sessions(&SessionFilter::default(), &page).await.expect("sessions are listed");
    let mut tenants: Vec<_> = listed.iter().map(|s| (s.id.clone(), s.tenant.clone())).collect();
    tenants.sort();
    let mut expected = vec![(theirs.id.clone(), acme.clone()), (ours.id.clone(), TenantId::default())];
    expected.sort();
    assert_eq!(tenants, expected, "listing across tenants answers each session's own");

    let recorded = store.events.events_after(0, 100).await.expect("events are readable");
    assert_eq!(recorded, answered, "events read back as recorded, tenant included");
    for e in &recorded {
        let owner = if e.event.session_id == theirs.id { &acme } else { &TenantId::default() };
        assert_eq!(&e.event.tenant, owner, "event {} carries its session's tenant", e.sequence);
    }

    for s in [&theirs, &ours] {
        let query = LogQuery { tenant: Some(s.tenant.clone()), ..all_logs() };
        let records = store.logs.query_logs(&query).await.expect("logs are queryable").records;
        let found: Vec<_> = records.iter().map(|r| (&r.session_id, r.entry.message.as_str())).collect();
        assert_eq!(found, [(&s.id, s.tenant.as_str())], "the log is found in its session's tenant");
    }
}

/// Tenants do not see each other's sessions or logs, even of the same user id.
pub async fn list_sessions_and_query_logs_filter_by_tenant(store: Stores) {
    let at = |n: i64| UnixMillis(T0.0 + n);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let acme_alice = session_of(&acme, SessionKind::WebUser, Some("alice"), at(1));
    let acme_bob = session_of(&acme, SessionKind::WebCall, Some("bob"), at(2));
    let globex_alice = session_of(&globex, SessionKind::WebUser, Some("alice"), at(3));
    let default_alice = session(SessionKind::WebUser, Some("alice"), at(4));
    for s in [&acme_alice, &acme_bob, &globex_alice, &default_alice] {
        create(&*store.sessions, s, &StorageMap::new()).await;
        let message = format!("{} {}", s.tenant, s.user_id.as_deref().unwrap_or("-"));
        store.logs.append_logs(&s.id, vec![entry(LogLevel::Info, &message, at(5))]).await.expect("appended");
        end(&*store.sessions, s, EndReason::Closed, at(6), true).await;
    }

    let list = |filter: SessionFilter| {
        let store = store.clone();
        async move {
            let page = PageRequest { after: None, limit: 100 };
            ids(&store.sessions.list_sessions(&filter, &page).await.expect("sessions are listed"))
        }
    };
    let of = |t: &TenantId| SessionFilter { tenant: Some(t.clone()), ..SessionFilter::default() };
    let alice_of = |t: &TenantId| SessionFilter { user_id: Some("alice".into()), ..of(t) };
    assert_eq!(list(of(&acme)).await, ids([&acme_bob, &acme_alice]));
    assert_eq!(list(of(&globex)).await, ids([&globex_alice]));
    assert_eq!(list(of(&TenantId::default())).await, ids([&default_alice]));
    assert_eq!(list(of(&tenant("initech"))).await, []);
    assert_eq!(list(alice_of(&acme)).await, ids([&acme_alice]));
    assert_eq!(list(alice_of(&globex)).await, ids([&globex_alice]));
    assert_eq!(list(alice_of(&TenantId::default())).await, ids([&default_alice]));
    let users = SessionFilter { kinds: vec![SessionKind::WebUser], open: Some(false), ..of(&acme) };
    assert_eq!(list(users).await, ids([&acme_alice]));
    // Naming another tenant's session by id finds nothing.
    let named = SessionFilter { ids: ids([&globex_alice, &acme_bob]), ..of(&acme) };
    assert_eq!(list(named).await, ids([&acme_bob]));
    let alice_anywhere = SessionFilter { user_id: Some("alice".into()), ..SessionFilter::default() };
    assert_eq!(list(alice_anywhere).await, ids([&default_alice, &globex_alice, &acme_alice]), "no tenant: all");

    // Paging within a tenant walks only its sessions.
    let page = PageRequest { after: Some((acme_bob.created_at, acme_bob.id.clone())), limit: 100 };
    let rest = store.sessions.list_sessions(&of(&acme), &page).await.expect("sessions are listed");
    assert_eq!(ids(&rest), ids([&acme_alice]));

    let messages = |query: LogQuery| {
        let store = store.clone();
        async move {
            let records =
                store.logs.query_logs(&LogQuery { limit: 100, ..query }).await.expect("logs are queryable").records;
            records.into_iter().map(|r| r.entry.message).collect::<Vec<_>>()
        }
    };
    let logs_of = |t: &TenantId| LogQuery { tenant: Some(t.clone()), ..LogQuery::default() };
    assert_eq!(messages(logs_of(&acme)).await, ["acme alice", "acme bob"]);
    assert_eq!(messages(logs_of(&globex)).await, ["globex alice"]);
    assert_eq!(messages(logs_of(&tenant("initech"))).await, Vec::<String>::new());
    let alice_logs = |t: &TenantId| LogQuery { user_id: Some("alice".into()), ..logs_of(t) };
    assert_eq!(messages(alice_logs(&acme)).await, ["acme alice"]);
    assert_eq!(messages(alice_logs(&globex)).await, ["globex alice"]);
    assert_eq!(messages(alice_logs(&TenantId::default())).await, ["default alice"]);
    let named = LogQuery { session_id: Some(globex_alice.id.clone()), ..logs_of(&acme) };
    assert_eq!(messages(named).await, Vec::<String>::new(), "another tenant's log is not found by session id");
    let everyone = LogQuery { user_id: Some("alice".into()), ..LogQuery::default() };
    assert_eq!(messages(everyone).await, ["acme alice", "globex alice", "default alice"], "no tenant: all");
}

/// An idempotency record with key `key` (one byte repeated) and digest
/// `digest`, stored at `at`, counting records before `expired_before` as
/// expired.
pub fn request(key: u8, digest: u8, at: UnixMillis, expired_before: UnixMillis) -> NewRequest {
    NewRequest {
        key: RequestKey([key; 32]),
        digest: RequestDigest([digest; 32]),
        sealed_token: Some(vec![key, digest, 7]),
        accepted: 3,
        at,
        expired_before,
    }
}

/// Stores `session`, with no storage, guarded by `request`.
pub async fn create_once(store: &dyn SessionRecords, session: &Session, request: &NewRequest) -> Once<Event> {
    let created = event(EventType::Created, session, session.created_at);
    store
        .create_session_once(session.clone(), EncodedStorage::encode(&StorageMap::new()), created, request.clone())
        .await
        .expect("a keyed create is answered")
}

/// A keyed create stores its session and its record; the same key again
/// creates nothing and answers the first record, also once the first session
/// has ended.
pub async fn a_keyed_create_is_stored_once_and_a_retry_is_answered_its_record(store: Stores) {
    let first = session(SessionKind::WebUser, Some("alice"), T0);
    let created = event(EventType::Created, &first, T0);
    let keyed = request(1, 1, T0, UnixMillis(0));
    match store
        .sessions
        .create_session_once(first.clone(), EncodedStorage::encode(&StorageMap::new()), created.clone(), keyed.clone())
        .await
        .expect("stored")
    {
        Once::Done(event) => assert_eq!(event.event, created),
        Once::Replayed(record) => panic!("a new key found a record: {record:?}"),
    }
    let record =
        store.coordination.request_record(&keyed.key, T0).await.expect("readable").expect("stored with the session");
    assert_eq!(
        (&record.session_id, record.digest, record.sealed_token.as_deref(), record.accepted, record.at),
        (&first.id, keyed.digest, keyed.sealed_token.as_deref(), 3, T0)
    );
    assert_eq!(store.coordination.request_record(&RequestKey([9; 32]), T0).await.expect("readable"), None);
    assert_eq!(
        store.coordination.request_record(&keyed.key, UnixMillis(T0.0 + 1)).await.expect("readable"),
        None,
        "since"
    );

    let before = store.events.last_event_sequence().await.expect("readable");
    for retry in [request(1, 1, UnixMillis(T0.0 + 5), T0), request(1, 2, UnixMillis(T0.0 + 5), T0)] {
        let second = session(SessionKind::WebUser, Some("alice"), UnixMillis(T0.0 + 5));
        let created = event(EventType::Created, &second, second.created_at);
        let answer = store
            .sessions
            .create_session_once(
                second.clone(),
                EncodedStorage::encode(&StorageMap::new()),
                created.clone(),
                retry.clone(),
            )
            .await
            .expect("answered");
        assert_eq!(answer, Once::Replayed(record.clone()), "the first record, whatever the retry's digest");
        assert_eq!(store.sessions.session_by_id(&second.id).await.expect("lookup works"), None);
        if retry.digest == keyed.digest {
            end(&*store.sessions, &first, EndReason::Closed, UnixMillis(T0.0 + 6), true).await;
        }
    }
    assert_eq!(
        store.events.last_event_sequence().await.expect("readable"),
        before + 1,
        "only the end recorded an event"
    );
}

/// Of many creates racing with one key, one stores its session; the others
/// answer its record.
pub async fn concurrent_keyed_creates_store_one_session(store: Stores) {
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let s = session(SessionKind::WebUser, None, T0);
                (s.id.clone(), create_once(&*store.sessions, &s, &request(4, 4, T0, UnixMillis(0))).await)
            })
        })
        .collect();
    let mut stored = Vec::new();
    let mut answered = BTreeSet::new();
    for racer in racers {
        match racer.await.expect("no panic") {
            (id, Once::Done(_)) => stored.push(id),
            (_, Once::Replayed(record)) => {
                answered.insert(record.session_id);
            }
        }
    }
    assert_eq!(stored.len(), 1, "one create stored");
    assert!(answered.iter().all(|id| *id == stored[0]), "the others answer it: {answered:?}");
    let all = SessionFilter::default();
    let listed = store.sessions.list_sessions(&all, &PageRequest { after: None, limit: 100 }).await.expect("listed");
    assert_eq!(ids(&listed), stored);
}

/// A keyed append stores its entries once; a retry answers the record.
pub async fn a_keyed_append_is_stored_once(store: Stores) {
    let s = session(SessionKind::WebCall, None, T0);
    create(&*store.sessions, &s, &StorageMap::new()).await;
    let entries = [entry(LogLevel::Info, "once", T0), entry(LogLevel::Info, "only", T0)];
    let keyed = NewRequest { accepted: 2, ..request(2, 2, T0, UnixMillis(0)) };
    assert_eq!(
        store.logs.append_logs_once(&s.id, entries.to_vec(), keyed.clone()).await.expect("stored"),
        Once::Done(())
    );
    let retried = store.logs.append_logs_once(&s.id, entries.to_vec(), keyed.clone()).await.expect("answered");
    let Once::Replayed(record) = retried else { panic!("the retry was stored again") };
    assert_eq!((&record.session_id, record.accepted, record.digest), (&s.id, 2, keyed.digest));
    store.logs.append_logs(&s.id, vec![entry(LogLevel::Info, "after", T0)]).await.expect("appended");
    end(&*store.sessions, &s, EndReason::Closed, UnixMillis(T0.0 + 1), true).await;
    let logs = store.logs.query_logs(&all_logs()).await.expect("logs are queryable").records;
    let logged: Vec<_> = logs.iter().map(|r| (r.sequence, r.entry.message.as_str())).collect();
    assert_eq!(logged, [(1, "once"), (2, "only"), (3, "after")]);
}

/// Keyed and plain appends to one session at once are numbered 1, 2, …
/// without gaps or repeats, whichever way the store groups them.
pub async fn keyed_and_plain_appends_racing_number_the_log_without_gaps(store: Stores) {
    let s = session(SessionKind::WebCall, None, T0);
    create(&*store.sessions, &s, &StorageMap::new()).await;
    let writers: Vec<_> = (0..16u8)
        .map(|n| {
            let (store, id) = (store.clone(), s.id.clone());
            tokio::spawn(async move {
                let pair = [entry(LogLevel::Info, &format!("{n}a"), T0), entry(LogLevel::Info, &format!("{n}b"), T0)];
                if n % 2 == 0 {
                    let keyed = NewRequest { accepted: 2, ..request(100 + n, n, T0, UnixMillis(0)) };
                    assert_eq!(
                        store.logs.append_logs_once(&id, pair.to_vec(), keyed.clone()).await.expect("appended"),
                        Once::Done(())
                    );
                } else {
                    store.logs.append_logs(&id, pair.to_vec()).await.expect("appended");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("no panic");
    }
    end(&*store.sessions, &s, EndReason::Closed, UnixMillis(T0.0 + 1), true).await;
    let logs = store.logs.query_logs(&all_logs()).await.expect("logs are queryable").records;
    assert_eq!(logs.iter().map(|r| r.sequence).collect::<Vec<_>>(), (1..=32).collect::<Vec<_>>());
    let messages: BTreeSet<&str> = logs.iter().map(|r| r.entry.message.as_str()).collect();
    assert_eq!(messages.len(), 32, "every entry once");
}

/// A keyed write refused (the session ended, or is unknown) keeps no record.
pub async fn a_keyed_write_that_fails_leaves_no_record(store: Stores) {
    let s = session(SessionKind::WebCall, None, T0);
    create(&*store.sessions, &s, &StorageMap::new()).await;
    end(&*store.sessions, &s, EndReason::Closed, T0, false).await;
    let keyed = request(3, 3, T0, UnixMillis(0));
    let refused = store.logs.append_logs_once(&s.id, vec![entry(LogLevel::Info, "late", T0)], keyed.clone()).await;
    assert!(matches!(refused, Err(StoreError::Ended(EndReason::Closed))), "{refused:?}");
    let unknown = store
        .logs
        .append_logs_once(&SessionId::generate(), vec![entry(LogLevel::Info, "lost", T0)], keyed.clone())
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    assert_eq!(store.coordination.request_record(&keyed.key, UnixMillis(0)).await.expect("readable"), None);
}

/// A record older than the window no longer answers: a write with its key
/// replaces it. The purge removes records stored before its cut-off.
pub async fn an_expired_request_record_is_replaced_and_purged(store: Stores) {
    let at = |n: i64| UnixMillis(T0.0 + n);
    let first = session(SessionKind::WebUser, None, at(0));
    let keyed = request(5, 5, at(0), UnixMillis(0));
    create_once(&*store.sessions, &first, &keyed).await;
    let second = session(SessionKind::WebUser, None, at(100));
    let later = request(5, 6, at(100), at(50));
    let answer = create_once(&*store.sessions, &second, &later).await;
    assert!(matches!(answer, Once::Done(_)), "an expired record does not answer");
    let record =
        store.coordination.request_record(&later.key, at(50)).await.expect("readable").expect("the new record");
    assert_eq!((record.session_id, record.digest, record.at), (second.id.clone(), later.digest, at(100)));
    let other = request(6, 6, at(10), UnixMillis(0));
    let third = session(SessionKind::WebUser, None, at(10));
    create_once(&*store.sessions, &third, &other).await;

    let purged = store.sessions.purge(at(0), at(0), at(50)).await.expect("purging succeeds");
    assert_eq!((purged.sessions, purged.requests), (0, 1), "the record of at(10) only");
    assert_eq!(store.coordination.request_record(&other.key, UnixMillis(0)).await.expect("readable"), None);
    assert!(store.coordination.request_record(&later.key, UnixMillis(0)).await.expect("readable").is_some());
    assert!(store.sessions.session_by_id(&third.id).await.expect("lookup works").is_some(), "sessions stay");
}

fn ending_of(session: &Session, reason: EndReason, at: UnixMillis, keep_log: bool) -> Ending {
    let (end, event) = ending(session, reason, at, keep_log);
    Ending { id: session.id.clone(), end, event }
}

/// A batch of ends ends each open session once, one event each; ended ones
/// answer their first end, unknown ones are left out.
pub async fn ending_many_sessions_records_one_event_each_in_order(store: Stores) {
    let sessions: Vec<Session> = (0..40).map(|_| session(SessionKind::WebUser, Some("carol"), T0)).collect();
    for s in &sessions {
        create(&*store.sessions, s, &StorageMap::new()).await;
        store.logs.append_logs(&s.id, vec![entry(LogLevel::Info, "one", T0)]).await.expect("appending succeeds");
    }
    let first_end = end(&*store.sessions, &sessions[3], EndReason::Closed, T0, false).await;
    let stranger = session(SessionKind::WebUser, None, T0);
    let at = UnixMillis(T0.0 + 5);
    let mut endings: Vec<Ending> =
        sessions.iter().enumerate().map(|(i, s)| ending_of(s, EndReason::IdleTimeout, at, i % 2 == 0)).collect();
    endings.insert(10, ending_of(&stranger, EndReason::IdleTimeout, at, false));

    let outcomes = store.sessions.end_sessions(endings.clone()).await.expect("ending many succeeds");
    let answered: Vec<SessionId> = outcomes.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(answered, ids(&sessions), "every session found, in order, the unknown one left out");
    // 40 creates, then the close: 41 events so far; then one per expiry.
    let mut sequences = Vec::new();
    for ((id, outcome), s) in outcomes.iter().zip(&sessions) {
        if s.id == sessions[3].id {
            assert_eq!(outcome, &EndOutcome::AlreadyEnded(first_end.clone()));
            continue;
        }
        let EndOutcome::Ended(event) = outcome else { panic!("{id} was open") };
        assert_eq!(&event.event.session_id, id);
        assert_eq!(event.event.end_reason, Some(EndReason::IdleTimeout));
        sequences.push(event.sequence);
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (42..=80).collect::<Vec<u64>>());
    let sequence = 80;
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), sequence);
    let events = store.events.events_after(0, 1_000).await.expect("events are readable");
    assert!(events.windows(2).all(|w| w[1].sequence == w[0].sequence + 1), "gapless");
    assert_eq!(store.sessions.due_sessions(UnixMillis(i64::MAX), 100).await.expect("due sessions are listed"), []);
    let kept = store.logs.query_logs(&all_logs()).await.expect("logs are queryable");
    let kept_sessions: BTreeSet<SessionId> = kept.records.iter().map(|r| r.session_id.clone()).collect();
    let expected: BTreeSet<SessionId> =
        sessions.iter().enumerate().filter(|(i, _)| i % 2 == 0 && *i != 3).map(|(_, s)| s.id.clone()).collect();
    assert_eq!(kept_sessions, expected, "logs kept only where the end keeps them");
    let again = store.sessions.end_sessions(endings.clone()).await.expect("ending again is no error");
    assert!(again.iter().all(|(_, outcome)| matches!(outcome, EndOutcome::AlreadyEnded(_))));
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), sequence, "no event twice");
}

/// Overlapping batches racing (two sweepers) end each session exactly once.
pub async fn concurrent_batch_ends_record_one_event_per_session(store: Stores) {
    let sessions: Vec<Session> = (0..200).map(|_| session(SessionKind::WebUser, None, T0)).collect();
    for s in &sessions {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    let forward: Vec<Ending> = sessions.iter().map(|s| ending_of(s, EndReason::IdleTimeout, T0, false)).collect();
    let backward: Vec<Ending> = forward.iter().rev().cloned().collect();
    let racers = [forward, backward].map(|endings| {
        let store = store.clone();
        tokio::spawn(async move { store.sessions.end_sessions(endings.clone()).await.expect("ending many succeeds") })
    });
    let mut ended = Vec::new();
    for racer in racers {
        let outcomes = racer.await.expect("the racer does not panic");
        ended.extend(outcomes.into_iter().filter(|(_, o)| matches!(o, EndOutcome::Ended(_))).map(|(id, _)| id));
    }
    ended.sort();
    let mut expected = ids(&sessions);
    expected.sort();
    assert_eq!(ended, expected, "each session ended by exactly one batch");
    let events = store.events.events_after(200, 1_000).await.expect("events are readable");
    assert_eq!(events.len(), 200);
    assert!(events.windows(2).all(|w| w[1].sequence == w[0].sequence + 1), "gapless");
}

/// A batch of activity moves each open session forward, never back, and
/// reschedules its expiry; ended and unknown sessions are left alone.
pub async fn recording_many_activities_moves_each_forward_only(store: Stores) {
    let timed = |idle: Option<u64>, life: Option<u64>| {
        let mut s = session(SessionKind::WebCall, None, T0);
        s.idle_timeout = idle.map(ms);
        s.lifetime = life.map(ms);
        s
    };
    let idle = timed(Some(100), None);
    let capped = timed(Some(100), Some(120));
    let ahead = timed(Some(100), None);
    let ended = timed(Some(100), None);
    for s in [&idle, &capped, &ahead, &ended] {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    store.sessions.record_activity(&ahead.id, UnixMillis(T0.0 + 90)).await.expect("activity is recorded");
    end(&*store.sessions, &ended, EndReason::Closed, T0, false).await;
    let stranger = session(SessionKind::WebCall, None, T0);
    let at = UnixMillis(T0.0 + 50);
    let batch: Vec<(SessionId, UnixMillis)> =
        [&idle, &capped, &ahead, &ended, &stranger].iter().map(|s| (s.id.clone(), at)).collect();
    store.sessions.record_activities(&batch).await.expect("activity is recorded");

    let read = |s: &Session| {
        let (store, id) = (store.clone(), s.id.clone());
        async move { store.sessions.session_by_id(&id).await.expect("lookup works").expect("the session exists") }
    };
    assert_eq!(read(&idle).await.last_active_at, at);
    assert_eq!(read(&ahead).await.last_active_at, UnixMillis(T0.0 + 90), "never moved back");
    assert_eq!(read(&ended).await.last_active_at, T0, "ended sessions are left alone");
    let due = |after: i64| {
        let store = store.clone();
        async move {
            ids(&store.sessions.due_sessions(UnixMillis(T0.0 + after), 10).await.expect("due sessions are listed"))
        }
    };
    assert_eq!(due(119).await, []);
    assert_eq!(due(120).await, ids([&capped]), "the lifetime caps the idle expiry");
    assert_eq!(due(150).await, ids([&capped, &idle]));
    assert_eq!(due(190).await, ids([&capped, &idle, &ahead]));
}

/// Open sessions are counted by kind, every tenant's; ended ones are not.
pub async fn open_sessions_are_counted_by_kind_across_tenants(store: Stores) {
    assert_eq!(store.sessions.count_open_sessions().await.expect("counted"), Vec::<(String, u64)>::new());
    let web = [session(SessionKind::WebUser, Some("a"), T0), session(SessionKind::WebUser, Some("b"), T0)];
    let mut other_tenant = session(SessionKind::WebUser, Some("c"), T0);
    other_tenant.tenant = tenant("globex");
    let call = session(SessionKind::MethodCall, None, T0);
    for s in web.iter().chain([&other_tenant, &call]) {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    end(&*store.sessions, &web[1], EndReason::Closed, UnixMillis(T0.0 + 10), false).await;
    let counted = store.sessions.count_open_sessions().await.expect("counted");
    assert_eq!(counted, vec![("method_call".to_owned(), 1), ("web_user".to_owned(), 2)]);
}

/// Each tenant's count of open sessions follows every way a session opens
/// (creates at once, a keyed create, not its replay) and ends (one end, a
/// batch of ends, not an end of an ended session), and a purge leaves it.
pub async fn open_sessions_are_counted_per_tenant_through_every_opening_and_ending(store: Stores) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    assert_eq!(store.sessions.open_sessions_of(&acme).await.expect("counted"), 0);
    let sessions: Vec<Session> =
        (0..6).map(|i| session_of(&acme, SessionKind::WebUser, Some("a"), UnixMillis(T0.0 + i))).collect();
    let creates = sessions.iter().map(|s| {
        let store = store.clone();
        let s = s.clone();
        tokio::spawn(async move { create(&*store.sessions, &s, &StorageMap::new()).await })
    });
    for created in creates.collect::<Vec<_>>() {
        created.await.expect("a create task ends");
    }
    let keyed = session_of(&acme, SessionKind::Internal, None, T0);
    let record = request(7, 7, T0, UnixMillis(0));
    assert!(matches!(create_once(&*store.sessions, &keyed, &record).await, Once::Done(_)));
    let retry = session_of(&acme, SessionKind::Internal, None, T0);
    assert!(matches!(create_once(&*store.sessions, &retry, &record).await, Once::Replayed(_)));
    create(&*store.sessions, &session_of(&globex, SessionKind::WebUser, None, T0), &StorageMap::new()).await;
    assert_eq!(store.sessions.open_sessions_of(&acme).await.expect("counted"), 7);
    assert_eq!(store.sessions.open_sessions_of(&globex).await.expect("counted"), 1);

    let at = UnixMillis(T0.0 + 10);
    end(&*store.sessions, &sessions[0], EndReason::Closed, at, false).await;
    let endings = [
        ending_of(&sessions[0], EndReason::Revoked, at, false),
        ending_of(&sessions[1], EndReason::Revoked, at, false),
        ending_of(&sessions[2], EndReason::IdleTimeout, at, false),
        ending_of(&keyed, EndReason::Failed, at, true),
    ];
    store.sessions.end_sessions(endings.to_vec()).await.expect("ending many succeeds");
    let (end, event) = ending(&sessions[1], EndReason::Closed, at, false);
    assert!(matches!(store.sessions.end_session(&sessions[1].id, &end, &event).await, Ok(EndOutcome::AlreadyEnded(_))));
    assert_eq!(store.sessions.open_sessions_of(&acme).await.expect("counted"), 3);
    assert_eq!(store.sessions.open_sessions_of(&globex).await.expect("counted"), 1);

    store.sessions.purge(UnixMillis(i64::MAX), UnixMillis(i64::MAX), UnixMillis(i64::MAX)).await.expect("purged");
    assert_eq!(store.sessions.open_sessions_of(&acme).await.expect("counted"), 3);
    assert_eq!(store.sessions.open_sessions_of(&tenant("initech")).await.expect("counted"), 0);
}
