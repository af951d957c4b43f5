//! Session logs: numbering, what is readable and when, and the search
//! by filters, cursor and time range.

use sessiond::clock::UnixMillis;
use sessiond::domain::{
    EndReason, LogCursor, LogEntry, LogLevel, LogPage, LogQuery, Session, SessionId, SessionKind, StorageMap,
    UnixMicros,
};
use sessiond::store::{Ending, Once, StoreError, Stores};

use crate::*;

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

    assert_eq!(logged(&store, LogQuery::default()).await, ["f1", "f2", "f3", "s1", "s2"]);
    assert_eq!(
        logged(&store, LogQuery { min_level: Some(LogLevel::Warning), ..LogQuery::default() }).await,
        ["f3", "s2"]
    );
    assert_eq!(logged(&store, LogQuery { failed_only: true, ..LogQuery::default() }).await, ["f1", "f2", "f3"]);
    assert_eq!(logged(&store, LogQuery { slow_only: true, ..LogQuery::default() }).await, ["s1", "s2"]);
    assert_eq!(
        logged(&store, LogQuery { session_id: Some(slow.id.clone()), ..LogQuery::default() }).await,
        ["s1", "s2"]
    );
    assert_eq!(
        logged(&store, LogQuery { user_id: Some("alice".into()), ..LogQuery::default() }).await,
        ["f1", "f2", "f3"]
    );
    assert_eq!(
        logged(&store, LogQuery { kind: Some(SessionKind::MethodCall), ..LogQuery::default() }).await,
        ["s1", "s2"]
    );
    let checkout = LogQuery { endpoint: Some("checkout".into()), ..LogQuery::default() };
    assert_eq!(logged(&store, checkout).await, ["s1", "s2"]);
    let elsewhere =
        LogQuery { endpoint: Some("checkout".into()), user_id: Some("alice".into()), ..LogQuery::default() };
    assert!(logged(&store, elsewhere).await.is_empty());
    let window = LogQuery { from: Some(at(2)), to: Some(at(11)), ..LogQuery::default() };
    assert_eq!(logged(&store, window).await, ["f2", "f3", "s1"]);

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
/// logged later (a write that waited), and those whose log was kept after,
/// before or after entries logged past the range's end; none logged before
/// or after the range, however many.
pub async fn a_time_range_finds_its_entries_whenever_they_became_readable(store: Stores) {
    let minute = |n: i64| UnixMillis(T0.0 + n * 60_000);
    let live = session(SessionKind::Streaming, Some("dave"), T0);
    let kept = session(SessionKind::WebCall, Some("dave"), T0);
    let kept_sooner = session(SessionKind::WebCall, Some("erin"), T0);
    for s in [&live, &kept, &kept_sooner] {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    let continuous = |message: &str, at| LogEntry { continuous: true, ..entry(LogLevel::Info, message, at) };
    let before: Vec<_> = (0..50).map(|i| continuous(&format!("before{i}"), minute(i % 3))).collect();
    store.logs.append_logs(&live.id, before.clone()).await.expect("appended");
    store.logs.append_logs(&kept.id, vec![entry(LogLevel::Info, "kept", minute(61))]).await.expect("appended");
    let sooner = vec![entry(LogLevel::Info, "kept-sooner", minute(62))];
    store.logs.append_logs(&kept_sooner.id, sooner).await.expect("appended");
    let (from, to) = (minute(60), minute(120));
    // Logged 10 s into the range, then one logged 5 s before it whose
    // write committed later (within `log_sql::CLOCK_MARGIN`).
    store.logs.append_logs(&live.id, vec![continuous("first", UnixMillis(from.0 + 10_000))]).await.expect("appended");
    store.logs.append_logs(&live.id, vec![continuous("late", UnixMillis(from.0 - 5_000))]).await.expect("appended");
    store.logs.append_logs(&live.id, vec![continuous("at-start", from)]).await.expect("appended");
    end(&*store.sessions, &kept_sooner, EndReason::Closed, minute(119), true).await;
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
    assert_eq!(seen, ["first", "at-start", "kept-sooner", "kept"]);
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
    assert!(store.logs.log_level_reached(&quiet.id, LogLevel::Error).await.expect("readable"));
    assert!(!store.logs.log_level_reached(&live.id, LogLevel::Fatal).await.expect("readable"));

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

/// A store made with a limit of ten log entries per tenant counts what a
/// tenant's sessions hold: an append that would take it past ten is
/// refused whole, alone or keyed, and stores nothing; another tenant is
/// counted apart; a log deleted at its session's end (alone or in a batch
/// of ends) frees its entries at once, a kept log only when the purge takes
/// it; appends to one session at the same moment take exactly the room
/// left. Not one of the suite's cases, which run on stores made without a
/// limit: `limited` is made with it (`tests/store_conformance*.rs`).
pub async fn a_tenant_at_a_limit_of_ten_log_entries_is_refused_appends_on_every_path(limited: Stores) {
    let store = limited;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let at = |ms: i64| UnixMillis(T0.0 + ms);
    let [a, b, c, d, e] = std::array::from_fn(|i| session_of(&acme, SessionKind::WebUser, None, at(i as i64)));
    let g = session_of(&globex, SessionKind::WebUser, None, T0);
    for s in [&a, &b, &c, &d, &e, &g] {
        create(&*store.sessions, s, &StorageMap::new()).await;
    }
    let entries = |n: usize, what: &str| (0..n).map(|i| entry(LogLevel::Info, &format!("{what} {i}"), T0)).collect();
    let append = |s: &Session, n: usize, what: &str| {
        let (store, id, entries) = (store.clone(), s.id.clone(), entries(n, what));
        async move { store.logs.append_logs(&id, entries).await }
    };
    fn full<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
        matches!(result, Err(StoreError::TenantLogFull { max: 10 }))
    }

    append(&a, 4, "a").await.expect("8 of 10 after it");
    append(&b, 4, "b").await.expect("8 of 10 after it");
    let refused = append(&c, 3, "over").await;
    assert!(full(&refused), "{refused:?}");
    let keyed = request(7, 7, T0, UnixMillis(0));
    let refused = store.logs.append_logs_once(&c.id, entries(3, "over"), keyed.clone()).await;
    assert!(full(&refused), "{refused:?}");
    append(&g, 10, "g").await.expect("another tenant is counted apart");
    append(&c, 2, "c").await.expect("exactly at the limit");
    let refused = append(&d, 1, "over").await;
    assert!(full(&refused), "{refused:?}");

    // a's log is not kept: its 4 entries go with its end.
    end(&*store.sessions, &a, EndReason::Closed, at(10), false).await;
    append(&d, 3, "d").await.expect("9 of 10 after it");
    // b's log is kept: its 4 entries stay until the purge.
    end(&*store.sessions, &b, EndReason::Failed, at(10), true).await;
    let refused = append(&d, 2, "over").await;
    assert!(full(&refused), "{refused:?}");
    let kept = logged(&store, LogQuery { tenant: Some(acme.clone()), ..all_logs() }).await;
    assert_eq!(kept, ["b 0", "b 1", "b 2", "b 3"], "refused appends stored nothing");
    // c's and d's logs go in one batch of ends.
    let endings = [&c, &d]
        .map(|s| {
            let (end, event) = ending(s, EndReason::Revoked, at(20), false);
            Ending { id: s.id.clone(), end, event }
        })
        .to_vec();
    store.sessions.end_sessions(endings).await.expect("ended");
    // 4 held (b's kept log): six appends of one entry at once take the room left.
    let racing: Vec<_> = (0..12).map(|i| tokio::spawn(append(&e, 1, &format!("e{i}")))).collect();
    let mut taken = 0;
    for append in racing {
        match append.await.expect("no append panicked") {
            Ok(()) => taken += 1,
            refused => assert!(full(&refused), "{refused:?}"),
        }
    }
    assert_eq!(taken, 6, "appends at the same moment take exactly the room left");

    // The purge takes b's kept log, and frees its entries.
    let purged = store.sessions.purge(at(15), at(0), at(0)).await.expect("purged");
    assert_eq!(purged.sessions, 2, "a and b");
    let refused = store.logs.append_logs_once(&e.id, entries(5, "over"), keyed.clone()).await;
    assert!(full(&refused), "{refused:?}");
    match store.logs.append_logs_once(&e.id, entries(4, "e"), keyed).await {
        Ok(Once::Done(())) => {}
        other => panic!("a keyed append within the room left is stored: {other:?}"),
    }
    let refused = append(&e, 1, "over").await;
    assert!(full(&refused), "{refused:?}");
    let refused = append(&g, 1, "over").await;
    assert!(full(&refused), "globex is at its limit too: {refused:?}");
}
