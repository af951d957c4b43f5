//! The event log: gapless numbering in commit order, and filtered
//! catch-up.

use sessiond::domain::{
    EncodedStorage, EndReason, Event, EventFilter, EventType, Grants, LogLevel, SessionKind, StorageMap,
};
use sessiond::store::{EndOutcome, StoreError, Stores};

use crate::*;

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
