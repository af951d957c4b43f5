//! Session records: creation and lookup, activity and expiry, ends one
//! at a time and in batches, grants, listings, counts and purge.

use std::collections::BTreeSet;

use serde_json::json;
use sessiond::clock::UnixMillis;
use sessiond::domain::{
    EncodedStorage, EndReason, Event, EventType, Grants, Labels, LogLevel, Promotion, PromotionId, Session, SessionId,
    SessionKind, StorageMap,
};
use sessiond::store::{EndOutcome, Ending, Once, PageRequest, SessionFilter, StoreError, Stores};

use crate::*;

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

/// The stored expiry of sessions moved to follow the activity read, as
/// the sweeper moves it (a store that writes activity apart from the
/// session answers it due until then); answers how many moved.
async fn move_expiries_of(store: &Stores, sessions: &[&Session]) -> usize {
    let mut activity = Vec::new();
    for s in sessions {
        let read = store.sessions.session_by_id(&s.id).await.expect("lookup works").expect("the session exists");
        activity.push((s.id.clone(), read.last_active_at));
    }
    let moved = store.sessions.move_expiries(&activity).await.expect("expiries move");
    assert_eq!(store.sessions.move_expiries(&activity).await.expect("expiries move"), 0, "moved once only");
    moved
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
    move_expiries_of(&store, &[&s]).await;
    assert_eq!(due(149).await, []);
    assert_eq!(due(150).await, [s.id.clone()]);

    // The lifetime caps the idle timeout however recent the activity.
    store.sessions.record_activity(&s.id, UnixMillis(T0.0 + 950)).await.expect("activity is recorded");
    move_expiries_of(&store, &[&s]).await;
    assert_eq!(due(999).await, []);
    assert_eq!(due(1_000).await, [s.id.clone()]);

    // An end keeps the activity recorded before it; activity on ended or
    // unknown sessions changes nothing and is no error.
    store.sessions.record_activity(&s.id, UnixMillis(T0.0 + 955)).await.expect("activity is recorded");
    end(&*store.sessions, &s, EndReason::Closed, UnixMillis(T0.0 + 960), false).await;
    store
        .sessions
        .record_activity(&s.id, UnixMillis(T0.0 + 970))
        .await
        .expect("activity on an ended session is ignored");
    let stored = store.sessions.session_by_id(&s.id).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.last_active_at, UnixMillis(T0.0 + 955));
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
    move_expiries_of(&store, &[&idle, &capped, &ahead, &ended]).await;
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

/// An end keeps the activity recorded before it, alone or in a batch;
/// activity recorded after it does not count.
pub async fn an_end_keeps_the_activity_recorded_before_it(store: Stores) {
    let alone = session(SessionKind::WebUser, Some("alice"), T0);
    let batched = session(SessionKind::WebUser, Some("alice"), T0);
    for s in [&alone, &batched] {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    let before = UnixMillis(T0.0 + 50);
    let activity = [(alone.id.clone(), before), (batched.id.clone(), before)];
    store.sessions.record_activities(&activity).await.expect("activity is recorded");

    end(&*store.sessions, &alone, EndReason::Closed, UnixMillis(T0.0 + 60), false).await;
    let ended = store
        .sessions
        .end_sessions(vec![ending_of(&batched, EndReason::IdleTimeout, UnixMillis(T0.0 + 60), false)])
        .await
        .expect("ending many succeeds");
    assert_eq!(ended.len(), 1);
    let after = UnixMillis(T0.0 + 70);
    store
        .sessions
        .record_activities(&[(alone.id.clone(), after), (batched.id.clone(), after)])
        .await
        .expect("activity after an end is no error");

    for s in [&alone, &batched] {
        let read = store.sessions.session_by_id(&s.id).await.expect("lookup works").expect("the session exists");
        assert_eq!(read.last_active_at, before, "{}", s.id);
    }
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

/// A store made with a limit of three open sessions per tenant refuses a
/// create past it whichever way the create is written (alone, keyed, or
/// among log appends and other tenants' creates written at the same
/// moment) and stores nothing for it: no session, no event, the numbering
/// still gapless. Another tenant is counted apart, and the tenant creates
/// again once one of its three ended. Not one of the suite's cases, which
/// run on stores made without a limit: `limited` is made with it
/// (`tests/store_conformance*.rs`).
pub async fn a_tenant_at_a_limit_of_three_is_refused_creates_on_every_path(limited: Stores) {
    let store = limited;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let three: Vec<Session> =
        (0..3).map(|i| session_of(&acme, SessionKind::WebUser, Some("a"), UnixMillis(T0.0 + i))).collect();
    for s in &three {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    fn full<T>(result: &Result<T, StoreError>) -> bool {
        matches!(result, Err(StoreError::TenantFull { max: 3 }))
    }
    let no_storage = || EncodedStorage::encode(&StorageMap::new());

    let alone = session_of(&acme, SessionKind::WebUser, Some("a"), T0);
    let created = event(EventType::Created, &alone, T0);
    let refused = store.sessions.create_session(alone.clone(), no_storage(), created).await;
    assert!(full(&refused), "{refused:?}");
    let keyed = session_of(&acme, SessionKind::Internal, None, T0);
    let created = event(EventType::Created, &keyed, T0);
    let record = request(9, 9, T0, UnixMillis(0));
    let refused = store.sessions.create_session_once(keyed.clone(), no_storage(), created, record).await;
    assert!(full(&refused), "{refused:?}");

    let mut refused_ids = vec![alone.id.clone(), keyed.id.clone()];
    let mut created_ids: Vec<SessionId> = three.iter().map(|s| s.id.clone()).collect();
    let writes = (0..48).map(|i| {
        let store = store.clone();
        let target = three[i % 3].clone();
        let owner = if i % 16 == 2 { globex.clone() } else { acme.clone() };
        let s = session_of(&owner, SessionKind::WebUser, None, UnixMillis(T0.0 + 100 + i as i64));
        tokio::spawn(async move {
            if i % 2 == 1 {
                let entries = vec![entry(LogLevel::Info, "beside the creates", T0)];
                store.logs.append_logs(&target.id, entries).await.expect("an append beside the creates succeeds");
                return None;
            }
            let created = event(EventType::Created, &s, s.created_at);
            Some((s.clone(), store.sessions.create_session(s, no_storage(), created).await))
        })
    });
    for write in writes.collect::<Vec<_>>() {
        let Some((s, result)) = write.await.expect("a write task ends") else { continue };
        if s.tenant == globex {
            result.expect("another tenant's create succeeds");
            created_ids.push(s.id);
        } else {
            assert!(full(&result), "{result:?}");
            refused_ids.push(s.id);
        }
    }
    for id in &refused_ids {
        assert_eq!(store.sessions.session_by_id(id).await.expect("looked up"), None, "refused {id} stored nothing");
    }
    let events = store.events.events_after(0, 1_000).await.expect("the events are read");
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>(), "gapless");
    let recorded: BTreeSet<&SessionId> =
        events.iter().filter(|e| e.event.event_type == EventType::Created).map(|e| &e.event.session_id).collect();
    assert_eq!(recorded, created_ids.iter().collect(), "a created event for each session created, none other");
    assert_eq!(store.sessions.open_sessions_of(&acme).await.expect("counted"), 3);
    assert_eq!(store.sessions.open_sessions_of(&globex).await.expect("counted"), 3);

    end(&*store.sessions, &three[0], EndReason::Closed, UnixMillis(T0.0 + 500), false).await;
    create(&*store.sessions, &session_of(&acme, SessionKind::WebUser, None, T0), &StorageMap::new()).await;
    assert_eq!(store.sessions.open_sessions_of(&acme).await.expect("counted"), 3);
}
