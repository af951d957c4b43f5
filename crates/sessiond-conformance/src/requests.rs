//! Idempotency records: keyed creates and appends stored once, retries
//! answered, expired records replaced and purged.

use std::collections::BTreeSet;

use sessiond::clock::UnixMillis;
use sessiond::domain::{
    EncodedStorage, EndReason, EventType, LogLevel, RequestKey, SessionId, SessionKind, StorageMap,
};
use sessiond::store::{NewRequest, Once, PageRequest, SessionFilter, StoreError, Stores};

use crate::*;

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
