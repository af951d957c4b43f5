//! Runs the store conformance suite on `PgStore`, directly and through the
//! moka cache, each test on its own database of a throwaway PostgreSQL, plus
//! what only a database shared by replicas has to show: migrating from
//! several replicas at once, events numbered in commit order across
//! replicas, notifications for the other replicas, refused statements that
//! fail alone and quote nothing, and riding out a server restart.

#[path = "support/postgres.rs"]
mod postgres_support;

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres_support::{PgCluster, TestDatabase, fresh_database};
use sessiond::clock::UnixMillis;
use sessiond::domain::{
    EncodedStorage, EndReason, Event, EventType, Grants, Session, SessionId, SessionKind, StorageMap, TenantId,
};
use sessiond::settings::Settings;
use sessiond::store::postgres::{EVENTS_CHANNEL, INVALIDATE_CHANNEL, PgSettings, PgStore, SCHEMA_VERSION, migrate};
use sessiond::store::sql;
use sessiond::store::{
    EndOutcome, EventLog, PageRequest, SessionFilter, SessionLogs, SessionRecords, StoreError, Stores,
};
use sessiond_conformance::{T0, create, end, ending, event, session, tenant};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

/// A store on a fresh database; the database lives as long as the guard.
async fn fresh() -> (TestDatabase, PgStore) {
    let db = fresh_database().await;
    let store = PgStore::connect(db.settings()).await.expect("a fresh database opens");
    (db, store)
}

sessiond_conformance::store_conformance_tests!({
    let (db, store) = fresh().await;
    (db, Stores::of(store))
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_migrating_a_new_database_at_once_all_succeed_and_apply_the_schema_once() {
    let db = fresh_database().await;
    let settings = db.settings();
    let migrators: Vec<_> = (0..3)
        .map(|_| {
            let settings = settings.clone();
            tokio::spawn(async move { migrate(&settings).await })
        })
        .collect();
    let mut applied = Vec::new();
    for migrator in migrators {
        applied.push(migrator.await.expect("no migrator panicked").expect("every migrator succeeds"));
    }
    applied.sort();
    assert_eq!(applied, [0, 0, SCHEMA_VERSION], "one migrator applied every step, the others none");

    let client = db.connect().await;
    let versions: Vec<i32> = client
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await
        .expect("schema_migrations is readable")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION as i32).collect::<Vec<_>>());
    let counters: i64 =
        client.query_one("SELECT count(*) FROM event_counter", &[]).await.expect("the counter is readable").get(0);
    assert_eq!(counters, 1, "the schema's one-time inserts ran once");
    assert_eq!(migrate(&settings).await.expect("migrating again succeeds"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_a_newer_schema_is_refused() {
    let db = fresh_database().await;
    migrate(&db.settings()).await.expect("a new database migrates");
    let newer = SCHEMA_VERSION as i32 + 1;
    db.connect()
        .await
        .execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&newer])
        .await
        .expect("a version can be recorded");
    let refused = PgStore::connect(db.settings()).await;
    assert!(matches!(refused, Err(StoreError::Internal(_))), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_at_schema_version_1_migrates_with_its_rows_in_the_default_tenant() {
    let (db, client) = database_at(1).await;
    // The schema as a sessiond from before tenants left it, with its rows.
    let old = session(SessionKind::WebUser, Some("alice"), T0);
    insert_earlier_session(&client, &old, None).await;
    client
        .batch_execute(&format!(
            "INSERT INTO events (sequence, event_type, session_id, user_id, kind, at) \
             VALUES (1, 'created', '{}', 'alice', 'web_user', {}); \
             UPDATE event_counter SET last_sequence = 1",
            old.id, T0.0
        ))
        .await
        .expect("a version 1 event is written");

    let store = PgStore::connect(db.settings()).await.expect("a version 1 database migrates");
    assert_eq!(store.session_by_id(&old.id).await.expect("lookup works"), Some(old.clone()), "in the default tenant");
    let events = store.events_after(0, 10).await.expect("events are readable");
    assert_eq!(events, [Event { sequence: 1, event: event(EventType::Created, &old, T0) }]);
    let default = SessionFilter { tenant: Some(TenantId::default()), ..SessionFilter::default() };
    let listed = store.list_sessions(&default, &PageRequest { after: None, limit: 10 }).await.expect("listed");
    assert_eq!(listed, [old]);
    let version: i32 =
        client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.expect("readable").get(0);
    assert_eq!(version, SCHEMA_VERSION as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_of_the_version_before_messages_gains_them_and_keeps_its_sessions() {
    use sessiond::domain::{Channel, NewMessage, TenantChannel};
    use sessiond::store::messages::MessageLog as _;

    let (db, client) = database_at(5).await;
    let old = session(SessionKind::WebUser, Some("alice"), T0);
    insert_earlier_session(&client, &old, None).await;

    let store = PgStore::connect(db.settings()).await.expect("a version 5 database migrates");
    assert_eq!(store.session_by_id(&old.id).await.expect("lookup works"), Some(old));
    let messages = store.messages();
    let room = TenantChannel { tenant: TenantId::default(), channel: Channel::Named("room".into()) };
    let message =
        NewMessage { to: room.clone(), payload: serde_json::json!({"a": 1}), type_name: "t".into(), posted_at: T0 };
    assert_eq!(messages.append(&message).await.expect("appended"), 1);
    assert_eq!(messages.append(&message).await.expect("appended"), 2);
    let kept = messages.messages_after(&room, 1, 10).await.expect("read back");
    assert_eq!((kept.len(), kept[0].sequence, &kept[0].message), (1, 2, &message));
    let version: i32 =
        client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.expect("readable").get(0);
    assert_eq!(version, SCHEMA_VERSION as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_of_the_version_before_time_floors_finds_its_entries_by_time_range() {
    use sessiond::domain::{LogEntry, LogLevel, LogQuery};

    let (db, client) = database_at(9).await;
    let live = session(SessionKind::Streaming, Some("alice"), T0);
    insert_earlier_session(&client, &live, None).await;
    // A thousand continuous entries, one a minute, readable at positions
    // growing with their minutes (ten to a position, all below the
    // transaction ids a fresh cluster hands out now).
    client
        .execute(
            "INSERT INTO log_entries (session_id, sequence, level, message, logged_at, user_id, kind, continuous, \
             position) SELECT $1, n, 2, 'm' || n, $2::int8 + n * 60000, 'alice', 'streaming', TRUE, n / 10 \
             FROM generate_series(1, 1000) AS n",
            &[&live.id.as_str(), &T0.0],
        )
        .await
        .expect("version 9 entries are written");

    let store = PgStore::connect(db.settings()).await.expect("a version 9 database migrates");
    let minute = |n: i64| UnixMillis(T0.0 + n * 60_000);
    let query = LogQuery { from: Some(minute(500)), to: Some(minute(503)), limit: 10, ..LogQuery::default() };
    let records = store.query_logs(&query).await.expect("queryable").records;
    let messages: Vec<&str> = records.iter().map(|r| r.entry.message.as_str()).collect();
    assert_eq!(messages, ["m500", "m501", "m502"]);
    let appended = LogEntry { continuous: true, ..sessiond_conformance::entry(LogLevel::Info, "new", minute(2_000)) };
    store.append_logs(&live.id, vec![appended]).await.expect("appended after migrating");
    let query = LogQuery { from: Some(minute(1_500)), to: None, ..query };
    let records = store.query_logs(&query).await.expect("queryable").records;
    assert_eq!(records.iter().map(|r| r.entry.message.as_str()).collect::<Vec<_>>(), ["new"]);
    let indexed: bool = client
        .query_one("SELECT to_regclass('log_entries_continuous_by_time') IS NOT NULL", &[])
        .await
        .expect("readable")
        .get(0);
    assert!(indexed);
    let version: i32 =
        client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.expect("readable").get(0);
    assert_eq!(version, SCHEMA_VERSION as i32);
}

/// Start-up's search for request-scoped sessions left open, planned as
/// sessiond plans its statements (one generic plan), walks the open-by-kind
/// index however many other sessions are open. With the kinds bound as one
/// array, the generic plan took them to match every open session and
/// scanned the table: 485 ms at a million (`BENCHMARKS.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_for_request_scoped_sessions_left_open_walks_an_index_whatever_else_is_open() {
    let db = fresh_database().await;
    drop(PgStore::connect(db.settings()).await.expect("a fresh database migrates"));
    let client = db.connect().await;
    client
        .batch_execute(
            "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
             user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version) \
             SELECT lpad(n::text, 26, '0'), decode(md5(n::text), 'hex'), 'web_user', 'user-' || n % 1000, '', '', \
             '', '', '', n, n, false, '{}', 0, '{}', 0 FROM generate_series(1, 100000) AS n; \
             ANALYZE sessions; SET plan_cache_mode = force_generic_plan",
        )
        .await
        .expect("open sessions are written");
    let page = PageRequest { after: None, limit: 500 };
    let (query, params) = sql::list_query(&SessionFilter::open_request_scoped(), &page, sql::Dialect::POSTGRES);
    let plan = postgres_support::explain_prepared(&client, &query, &params).await.join("\n");
    assert!(plan.contains("using sessions_open_by_kind on sessions"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_of_the_version_before_the_kept_entry_index_finds_kept_entries_past_a_ceiling() {
    use sessiond::domain::LogQuery;
    use sessiond::store::log_sql::{KEPT_INDEX, logs_sql};
    use sessiond::store::sql::Dialect;

    let (db, client) = database_at(14).await;
    let (live, kept) = (session(SessionKind::Streaming, Some("alice"), T0), session(SessionKind::WebCall, None, T0));
    insert_earlier_session(&client, &live, None).await;
    insert_earlier_session(&client, &kept, Some(T0.0 + 2_000 * 60_000)).await;
    // A thousand continuous entries, one a minute, at positions growing with
    // their minutes; then a kept log's entry logged at minute 500, readable
    // at a position above them all (all below the transaction ids a fresh
    // cluster hands out now).
    client
        .batch_execute(&format!(
            "INSERT INTO log_entries (session_id, sequence, level, message, logged_at, kind, continuous, position) \
             SELECT '{live}', n, 2, 'm' || n, {t0} + n * 60000, 'streaming', TRUE, n / 10 \
             FROM generate_series(1, 1000) AS n; \
             INSERT INTO log_entries (session_id, sequence, level, message, logged_at, kind, continuous, position) \
             VALUES ('{kept}', 1, 2, 'kept', {t0} + 500 * 60000 + 1, 'web_call', FALSE, 200)",
            live = live.id.as_str(),
            kept = kept.id.as_str(),
            t0 = T0.0
        ))
        .await
        .expect("version 14 entries are written");

    let store = PgStore::connect(db.settings()).await.expect("a version 14 database migrates");
    let minute = |n: i64| UnixMillis(T0.0 + n * 60_000);
    let query = LogQuery { from: Some(minute(500)), to: Some(minute(502)), limit: 10, ..LogQuery::default() };
    let records = store.query_logs(&query).await.expect("queryable").records;
    let messages: Vec<&str> = records.iter().map(|r| r.entry.message.as_str()).collect();
    assert_eq!(messages, ["m500", "m501", "kept"]);
    // The kept entry is found on its own index, past the ceiling (position
    // 50, minute 503's).
    let query = LogQuery { tenant: Some(TenantId::default()), ..query };
    let (sql, params) = logs_sql(&query, i64::MAX, Some(50), Dialect::POSTGRES);
    let plan = postgres_support::explain_prepared(&client, &sql, &params).await.join("\n");
    assert!(plan.contains(&format!("using {KEPT_INDEX} on")), "{plan}");
    let version: i32 =
        client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.expect("readable").get(0);
    assert_eq!(version, SCHEMA_VERSION as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_of_the_version_before_the_ended_only_end_index_keeps_listing_and_purging() {
    let (db, client) = database_at(12).await;
    let open = session(SessionKind::WebCall, Some("alice"), T0);
    let ended = session(SessionKind::WebUser, Some("alice"), T0);
    for (session, ended_at) in [(&open, None), (&ended, Some(T0.0 + 5))] {
        insert_earlier_session(&client, session, ended_at).await;
    }

    let store = PgStore::connect(db.settings()).await.expect("a version 12 database migrates");
    let definition: String = client
        .query_one("SELECT pg_get_indexdef('sessions_by_end'::regclass)", &[])
        .await
        .expect("the index is there")
        .get(0);
    assert!(definition.ends_with("WHERE (ended_at IS NOT NULL)"), "{definition}");
    // Start-up's search for request-scoped sessions left open.
    let listed = store
        .list_sessions(&SessionFilter::open_request_scoped(), &PageRequest { after: None, limit: 500 })
        .await
        .expect("listed");
    assert_eq!(listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), std::slice::from_ref(&open.id));
    // The purge's search, by an end before a time, still walks the index.
    client.batch_execute("SET enable_seqscan = off").await.expect("set");
    let plan = plan_of(&client, &format!("SELECT id FROM sessions WHERE ended_at < {}", T0.0 + 6)).await;
    assert!(plan.contains("sessions_by_end"), "{plan}");
    let version: i32 =
        client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.expect("readable").get(0);
    assert_eq!(version, SCHEMA_VERSION as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_of_the_version_before_activity_apart_reads_moves_and_purges_activity() {
    let (db, client) = database_at(13).await;
    let open = session(SessionKind::WebUser, Some("alice"), T0);
    let ended = session(SessionKind::WebUser, Some("alice"), T0);
    for (session, ended_at) in [(&open, None), (&ended, Some(T0.0 + 5))] {
        insert_earlier_session(&client, session, ended_at).await;
    }

    let store = PgStore::connect(db.settings()).await.expect("a version 13 database migrates");
    let at = UnixMillis(T0.0 + 40);
    store.record_activities(&[(open.id.clone(), at), (ended.id.clone(), at)]).await.expect("written");
    let read = |id: SessionId| {
        let store = &store;
        async move { store.session_by_id(&id).await.expect("read").expect("found").last_active_at }
    };
    assert_eq!(read(open.id.clone()).await, at);
    assert_eq!(read(ended.id.clone()).await, T0, "activity written after the end does not count");
    // The session's own row is left alone until its expiry is moved.
    let own: i64 = client
        .query_one("SELECT last_active_at FROM sessions WHERE id = $1", &[&open.id.as_str()])
        .await
        .expect("readable")
        .get(0);
    assert_eq!(own, T0.0);
    let moved = store.move_expiries(&[(open.id.clone(), at), (ended.id.clone(), at)]).await.expect("moved");
    assert_eq!(moved, 1, "open sessions only");
    // Every session read (here the sweeper's) finds its activity by key,
    // which it can only if both tables' ids compare alike.
    client.batch_execute("SET enable_seqscan = off").await.expect("set");
    let (due, _) = sql::due_query(at, 1000, sql::Dialect::POSTGRES);
    let plan = plan_of(&client, &due.replace("$1", &at.0.to_string()).replace("$2", "1000")).await;
    assert!(plan.contains("session_activity_pkey") && !plan.contains("Seq Scan"), "{plan}");
    // The purge takes an ended session's activity with it.
    store.purge(UnixMillis(T0.0 + 6), UnixMillis(0), UnixMillis(0)).await.expect("purged");
    let left: Vec<String> = client
        .query("SELECT id FROM session_activity", &[])
        .await
        .expect("readable")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, [open.id.as_str().to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_log_entries_in_milliseconds_migrates_them_to_microseconds() {
    let (db, client) = database_at(3).await;
    // The schema at version 3, whose client times were milliseconds.
    let old = session(SessionKind::WebUser, Some("alice"), T0);
    client
        .execute(
            "INSERT INTO log_entries (session_id, sequence, level, message, client_time, logged_at) \
             VALUES ($1, 1, 2, 'timed', 1700000000123, $2), ($1, 2, 2, 'untimed', NULL, $2)",
            &[&old.id.as_str(), &T0.0],
        )
        .await
        .expect("version 3 entries are written");

    PgStore::connect(db.settings()).await.expect("a version 3 database migrates");

    let times: Vec<Option<i64>> = client
        .query("SELECT client_time FROM log_entries ORDER BY sequence", &[])
        .await
        .expect("the entries read back")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(times, [Some(1_700_000_000_123_000), None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_at_schema_version_5_makes_kept_logs_readable_and_open_ones_not() {
    let (db, client) = database_at(5).await;
    client
        .batch_execute(concat!(
            "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
             user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version, \
             ended_at, end_reason, log_id, slow, tenant) VALUES \
             ('00000000000000000000000000000001', '\\x01', 'web_call', 'alice', '', '', '', '', '', \
              1, 1, false, '{}', 0, '{}', 0, 5, 'failed', 'log1', false, 'acme'), \
             ('00000000000000000000000000000002', '\\x02', 'web_user', 'bob', '', '', '', '', '', \
              1, 1, false, '{}', 0, '{}', 0, NULL, NULL, NULL, false, 'acme');",
            "INSERT INTO log_entries (session_id, sequence, level, message, logged_at) VALUES \
             ('00000000000000000000000000000001', 1, 4, 'kept', 2), \
             ('00000000000000000000000000000002', 1, 2, 'open', 3);"
        ))
        .await
        .expect("the version 5 schema and its rows apply");

    let store = PgStore::connect(db.settings()).await.expect("a version 5 database migrates");

    let rows: Vec<(String, String, Option<String>, String, bool, Option<i64>)> = client
        .query("SELECT message, tenant, user_id, kind, failed, position FROM log_entries ORDER BY entry_id", &[])
        .await
        .expect("the entries read back")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        rows,
        [
            ("kept".into(), "acme".into(), Some("alice".into()), "web_call".into(), true, Some(0)),
            ("open".into(), "acme".into(), Some("bob".into()), "web_user".into(), false, None),
        ]
    );
    let query = sessiond::domain::LogQuery {
        tenant: Some(TenantId::parse("acme", "tenant").expect("a tenant")),
        limit: 10,
        ..Default::default()
    };
    let page = store.query_logs(&query).await.expect("queryable");
    assert_eq!(page.records.iter().map(|r| r.entry.message.as_str()).collect::<Vec<_>>(), ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_concurrent_replicas_reach_a_polling_reader_gapless_and_in_commit_order() {
    const REPLICAS: usize = 2;
    const WRITERS: usize = 8;
    const SESSIONS: usize = 10;
    let total = (REPLICAS * WRITERS * SESSIONS * 3) as u64;
    let db = fresh_database().await;
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(Arc::new(PgStore::connect(db.settings()).await.expect("a replica connects")));
    }

    // The reader checks every page it polls: it starts right after the last
    // event seen and has no holes. A number taken before an earlier one
    // committed would show up here as a hole.
    let reader = {
        let store = Arc::clone(&replicas[0]);
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut seen: Vec<Event> = Vec::new();
            while (seen.len() as u64) < total {
                assert!(Instant::now() < deadline, "the reader saw only {} of {total} events", seen.len());
                let after = seen.len() as u64;
                let page = store.events_after(after, 50).await.expect("events are readable");
                let numbers: Vec<u64> = page.iter().map(|e| e.sequence).collect();
                let expected: Vec<u64> = (after + 1..).take(page.len()).collect();
                assert_eq!(numbers, expected, "events appear in order and without holes");
                if page.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                seen.extend(page);
            }
            seen
        })
    };

    let writers: Vec<_> = (0..REPLICAS * WRITERS)
        .map(|w| {
            let store = Arc::clone(&replicas[w % REPLICAS]);
            tokio::spawn(async move {
                let mut answered = Vec::new();
                for i in 0..SESSIONS {
                    let s = session(SessionKind::WebUser, Some(&format!("user{w}-{i}")), T0);
                    answered.push(create(&*store, &s, &StorageMap::new()).await);
                    let changed = event(EventType::PrivilegesChanged, &s, T0);
                    let (_, granted) =
                        store.update_grants(&s.id, 0, &Grants::default(), &changed).await.expect("granted");
                    answered.push(granted);
                    let (end, end_event) = ending(&s, EndReason::Closed, T0, false);
                    match store.end_session(&s.id, &end, &end_event).await.expect("ended") {
                        EndOutcome::Ended(ended) => answered.push(ended),
                        EndOutcome::AlreadyEnded(_) => panic!("the session was open"),
                    }
                }
                answered
            })
        })
        .collect();
    let mut answered = Vec::new();
    for writer in writers {
        answered.extend(writer.await.expect("no writer panicked"));
    }
    let seen = reader.await.expect("the reader did not panic");
    answered.sort_by_key(|e| e.sequence);
    assert_eq!(seen, answered, "the reader saw exactly the events the writers were answered");
    for replica in &replicas {
        assert_eq!(replica.last_event_sequence().await.expect("the sequence is readable"), total);
    }
}

/// Listens on the store's channels, answering what arrives as
/// `(channel, payload)` for as long as the client answered is kept.
async fn listen(db: &TestDatabase) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<(String, String)>) {
    let (client, mut connection) = tokio_postgres::connect(&db.url, NoTls).await.expect("a listener connects");
    let (notifications, received) = mpsc::unbounded_channel();
    // Polling for messages also drives the connection, and with it the
    // client's requests; it ends when the client is dropped.
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message {
                let _ = notifications.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {EVENTS_CHANNEL}; LISTEN {INVALIDATE_CHANNEL}"))
        .await
        .expect("the listener listens");
    (client, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_notify_other_replicas_of_new_events_and_changed_sessions() {
    let (db, store) = fresh().await;
    let (_listener, mut received) = listen(&db).await;
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("a notification arrives")
            .expect("the listener runs")
    };
    let s = session(SessionKind::WebUser, Some("alice"), T0);
    create(&store, &s, &StorageMap::new()).await;
    assert_eq!(next().await, (EVENTS_CHANNEL.to_owned(), "1".to_owned()));

    // Activity is no change other replicas are told of.
    store.record_activity(&s.id, UnixMillis(T0.0 + 5)).await.expect("activity is recorded");
    store.record_activities(&[(s.id.clone(), UnixMillis(T0.0 + 6))]).await.expect("activity is recorded");

    end(&store, &s, EndReason::Closed, UnixMillis(T0.0 + 10), false).await;
    // The record's invalidation comes first: whoever saw event 2 has
    // dropped the record it changed.
    assert_eq!(next().await, (INVALIDATE_CHANNEL.to_owned(), s.id.to_string()));
    assert_eq!(next().await, (EVENTS_CHANNEL.to_owned(), "2".to_owned()));

    store.purge(UnixMillis(T0.0 + 20), T0, T0).await.expect("purging succeeds");
    assert_eq!(next().await, (INVALIDATE_CHANNEL.to_owned(), "*".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_statement_fails_its_write_alone_and_its_error_quotes_no_value() {
    let (_db, store) = fresh().await;
    let store = Arc::new(store);
    let first = session(SessionKind::WebUser, None, T0);
    create(&*store, &first, &StorageMap::new()).await;
    // Another session with the same token hash breaks a unique constraint.
    let clash = Session { id: SessionId::generate(), ..first.clone() };
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (store, clash) = (Arc::clone(&store), clash.clone());
            tokio::spawn(async move {
                let s = if i == 0 { clash } else { session(SessionKind::WebUser, None, T0) };
                let created = store
                    .create_session(
                        s.clone(),
                        EncodedStorage::encode(&StorageMap::new()),
                        event(EventType::Created, &s, T0),
                    )
                    .await;
                (s, created)
            })
        })
        .collect();
    let mut committed = 0;
    for task in tasks {
        let (s, created) = task.await.expect("no writer panicked");
        if s.id != clash.id {
            created.expect("writes beside the refused one commit");
            assert_eq!(store.session_by_id(&s.id).await.expect("lookup works"), Some(s));
            committed += 1;
            continue;
        }
        let Err(refused) = created else { panic!("a duplicate token hash is refused") };
        assert!(matches!(refused, StoreError::Internal(_)), "{refused:?}");
        let mut told = format!("{refused} {refused:?}");
        let mut cause = refused.source();
        while let Some(e) = cause {
            told.push_str(&format!(" {e} {e:?}"));
            cause = e.source();
        }
        assert!(told.contains("23505"), "the error names the failure: {told}");
        assert!(
            told.contains("duplicate key value violates unique constraint"),
            "the error carries the server's message: {told}"
        );
        assert!(!told.contains("already exists"), "the error carries the detail, which quotes the key: {told}");
        assert!(!told.contains(&hex::encode(first.token_hash.0)), "the error quotes the token hash: {told}");
    }
    assert_eq!(committed, 29);
    let events = store.events_after(0, 100).await.expect("events are readable");
    assert_eq!(events.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_error_carries_the_server_message() {
    let db = fresh_database().await;
    let missing = db.url.replace(&db.name, "t_no_such_database");
    let Err(err) = migrate(&Settings::default_postgres(missing)).await else { panic!("a missing database is refused") };
    let told = chain(&err);
    assert!(told.contains("3D000"), "the error names the failure: {told}");
    assert!(told.contains("database \"t_no_such_database\" does not exist"), "and says it: {told}");
}

/// An error and its causes, as the log shows them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut told = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        told.push_str(&format!(": {e}"));
        cause = e.source();
    }
    told
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_postgres_is_down_fails_fast_as_unavailable_and_succeeds_once_it_is_back() {
    if std::env::var_os("SESSIOND_TEST_DATABASE_URL").is_some() {
        eprintln!("skipped: an external test server cannot be restarted");
        return;
    }
    // A server of its own: stopping the shared one would fail other tests.
    let cluster = PgCluster::launch().await;
    let db = cluster.create_database().await;
    let settings = PgSettings { connect_timeout: Duration::from_secs(3), ..db.settings() };
    let store = PgStore::connect(settings.clone()).await.expect("the store connects");
    let before = session(SessionKind::WebUser, None, T0);
    create(&store, &before, &StorageMap::new()).await;

    cluster.stop().await;
    let down = session(SessionKind::WebUser, None, T0);
    let started = Instant::now();
    let write = store
        .create_session(down.clone(), EncodedStorage::encode(&StorageMap::new()), event(EventType::Created, &down, T0))
        .await;
    assert!(matches!(write, Err(StoreError::Unavailable(_))), "{write:?}");
    let read = store.session_by_id(&before.id).await;
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    assert!(started.elapsed() < settings.connect_timeout, "failing took {:?}", started.elapsed());

    cluster.start().await;
    assert_eq!(create(&store, &down, &StorageMap::new()).await.sequence, 2, "the failed write left no trace");
    assert_eq!(store.session_by_id(&before.id).await.expect("lookup works"), Some(before));
}

/// The same suite through the moka cache in front of Postgres.
mod cached {
    use sessiond::store::Stores;
    use sessiond::store::postgres::PgStore;

    use super::postgres_support::{TestDatabase, fresh_database};

    async fn fresh() -> (TestDatabase, Stores) {
        let db = fresh_database().await;
        let store = PgStore::connect(db.settings()).await.expect("a fresh database opens");
        (db, Stores::of(store).cached(1_000))
    }

    sessiond_conformance::store_conformance_tests!(fresh().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_at_version_5_migrates_and_lists_by_state_and_kind_through_an_index() {
    let (db, client) = database_at(5).await;
    let open_user = session(SessionKind::WebUser, Some("alice"), T0);
    let ended_call = session(SessionKind::WebCall, Some("alice"), UnixMillis(T0.0 + 1));
    let open_call = session(SessionKind::WebCall, Some("bob"), UnixMillis(T0.0 + 2));
    for (s, ended) in [(&open_user, None), (&ended_call, Some(T0.0 + 5)), (&open_call, None)] {
        insert_earlier_session(&client, s, ended).await;
    }

    let store = PgStore::connect(db.settings()).await.expect("a version 5 database migrates");
    let version: i32 =
        client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.expect("readable").get(0);
    assert_eq!(version, SCHEMA_VERSION as i32);
    let tenant = Some(TenantId::default());
    let page = PageRequest { after: None, limit: 10 };
    let cases = [
        (
            SessionFilter { tenant: tenant.clone(), open: Some(true), ..Default::default() },
            vec![&open_call, &open_user],
        ),
        (SessionFilter { tenant: tenant.clone(), open: Some(false), ..Default::default() }, vec![&ended_call]),
        (
            SessionFilter { tenant: tenant.clone(), kinds: vec![SessionKind::WebCall], ..Default::default() },
            vec![&open_call, &ended_call],
        ),
        (
            SessionFilter { tenant, kinds: vec![SessionKind::WebCall], open: Some(true), ..Default::default() },
            vec![&open_call],
        ),
    ];
    for (filter, expected) in cases {
        let listed = store.list_sessions(&filter, &page).await.expect("the listing runs");
        let listed: Vec<&SessionId> = listed.iter().map(|s| &s.id).collect();
        let expected: Vec<&SessionId> = expected.iter().map(|s| &s.id).collect();
        assert_eq!(listed, expected, "{filter:?}");
    }

    // The plans of those listings, as sessiond builds them (a keyset page
    // bound included): an index in page order, no sort, even with the
    // planner told to avoid anything else (the table is too small for
    // its own choice to tell).
    client.batch_execute("SET enable_seqscan = off; SET enable_sort = off").await.expect("settings apply");
    let listing = "SELECT id FROM sessions WHERE tenant = 'default' AND {} AND (created_at, id) < (1700000000010, 'z') \
                   ORDER BY created_at DESC, id DESC LIMIT 10";
    for (filter, index) in [
        ("ended_at IS NULL", "sessions_open_by_tenant"),
        ("ended_at IS NOT NULL", "sessions_ended_by_tenant"),
        ("kind = 'web_call'", "sessions_by_tenant_kind"),
        ("kind = 'web_call' AND ended_at IS NULL", "sessions_open_by_kind"),
    ] {
        let plan = plan_of(&client, &listing.replace("{}", filter)).await;
        assert!(plan.contains(index), "{filter} should use {index}:\n{plan}");
        assert!(!plan.contains("Sort") && !plan.contains("Seq Scan"), "{filter} should neither sort nor scan:\n{plan}");
    }
    let due = "SELECT id FROM sessions WHERE ended_at IS NULL AND expires_at <= 1700000000010 \
               ORDER BY expires_at, id LIMIT 1000";
    let plan = plan_of(&client, due).await;
    assert!(plan.contains("sessions_due") && !plan.contains("Sort"), "due sessions in index order:\n{plan}");
    // Start-up's listing across tenants: among many open sessions of other
    // kinds, only the request-scoped ones are read (and then sorted).
    client
        .batch_execute(
            "RESET enable_seqscan; RESET enable_sort; \
             INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
             user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version) \
             SELECT lpad(n::text, 32, '0'), sha256(n::text::bytea), 'web_user', NULL, '', '', '', '', '', n, n, false, \
             '{}', 0, '{}', 0 FROM generate_series(1, 20000) AS n; ANALYZE sessions",
        )
        .await
        .expect("many open sessions are written");
    let recovery = "SELECT id FROM sessions WHERE kind = ANY('{method_call,web_call,method_stream,streaming}') \
                    AND ended_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 500";
    let plan = plan_of(&client, recovery).await;
    assert!(plan.contains("sessions_open_by_kind"), "start-up finds request-scoped sessions by index:\n{plan}");
}

/// The plan Postgres makes for `query` (parameters written in), one line
/// per row of `EXPLAIN`.
async fn plan_of(client: &tokio_postgres::Client, query: &str) -> String {
    let rows = client.query(&format!("EXPLAIN {query}"), &[]).await.expect("the plan is readable");
    rows.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
}

/// Writes `s` as a session row in a database of any earlier schema version
/// (the columns of version 1): its id, token, kind, user and creation time,
/// ended (closed) at `ended_at` when given.
async fn insert_earlier_session(client: &tokio_postgres::Client, s: &Session, ended_at: Option<i64>) {
    client
        .execute(
            "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
             user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version, \
             ended_at, end_reason) VALUES ($1, $2, $3, $4, '', '', '', '', '', $5, $5, false, \
             '{\"privileges\":[],\"roles\":[],\"promotions\":[]}', 0, '{}', 0, $6::int8, \
             CASE WHEN $6::int8 IS NULL THEN NULL ELSE 'closed' END)",
            &[&s.id.as_str(), &s.token_hash.0.as_slice(), &s.kind.as_str(), &s.user_id, &s.created_at.0, &ended_at],
        )
        .await
        .expect("a session of an earlier schema is written");
}

/// From version 16 activity rows leave room on their pages, so that a
/// later write of a session's activity updates its row in place (HOT)
/// rather than moving it to another page and into the key again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_rows_written_after_the_version_before_are_updated_on_their_pages() {
    let (db, client) = database_at(15).await;
    let store = PgStore::connect(db.settings()).await.expect("a version 15 database migrates");
    let options: Option<Vec<String>> = client
        .query_one("SELECT reloptions FROM pg_class WHERE relname = 'session_activity'", &[])
        .await
        .expect("readable")
        .get(0);
    assert_eq!(options, Some(vec!["fillfactor=50".to_owned()]));
    // Several pages' worth of rows, then each written again (activity is
    // written without looking its session up, so no session is needed).
    let ids: Vec<SessionId> = (0..600).map(|_| SessionId::generate()).collect();
    let at = |ms: i64| ids.iter().map(|id| (id.clone(), UnixMillis(T0.0 + ms))).collect::<Vec<_>>();
    let pages = || async {
        let rows = client
            .query("SELECT id, (ctid::text::point)[0]::int8 FROM session_activity ORDER BY id", &[])
            .await
            .expect("readable");
        rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1))).collect::<Vec<_>>()
    };
    store.record_activities(&at(1)).await.expect("written");
    let before = pages().await;
    assert_eq!(before.len(), ids.len());
    assert!(before.iter().map(|(_, page)| page).max() > Some(&1), "the rows fill several pages: {before:?}");
    store.record_activities(&at(2)).await.expect("written again");
    assert_eq!(pages().await, before, "every row stays on its page");
}

/// From version 17 log entries are counted per tenant: the count starts
/// from the entries a database holds (open sessions' logs and kept ones),
/// and appends go on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_of_the_version_before_log_entries_per_tenant_counts_its_entries() {
    let (db, client) = database_at(16).await;
    let (open, kept) = (session(SessionKind::WebUser, None, T0), session(SessionKind::WebCall, None, T0));
    insert_earlier_session(&client, &open, None).await;
    insert_earlier_session(&client, &kept, Some(T0.0 + 5)).await;
    for (s, entries) in [(&open, 4_i64), (&kept, 3)] {
        client
            .execute(
                "INSERT INTO log_entries (session_id, sequence, level, message, logged_at, kind) \
                 SELECT $1, n, 2, 'm' || n, $2, $3 FROM generate_series(1, $4::int8) AS n",
                &[&s.id.as_str(), &T0.0, &s.kind.as_str(), &entries],
            )
            .await
            .expect("version 16 entries are written");
        client
            .execute("UPDATE sessions SET log_count = $2 WHERE id = $1", &[&s.id.as_str(), &entries])
            .await
            .expect("counted as version 16 counts");
    }

    let store = PgStore::connect(PgSettings { max_log_entries_per_tenant: 10, ..db.settings() })
        .await
        .expect("a version 16 database migrates");
    let counted: i64 = client
        .query_one("SELECT sum(entries)::int8 FROM tenant_log_entries WHERE tenant = 'default'", &[])
        .await
        .expect("readable")
        .get(0);
    assert_eq!(counted, 7);
    let three = (0..3).map(|i| sessiond_conformance::entry(sessiond::domain::LogLevel::Info, &format!("{i}"), T0));
    store.append_logs(&open.id, three.collect()).await.expect("10 of 10 after it");
    let one = vec![sessiond_conformance::entry(sessiond::domain::LogLevel::Info, "over", T0)];
    let refused = store.append_logs(&open.id, one.clone()).await;
    assert!(matches!(refused, Err(StoreError::TenantLogFull { max: 10 })), "{refused:?}");
    // The kept log's entries are counted off when the purge takes it.
    store.purge(UnixMillis(T0.0 + 6), UnixMillis(0), UnixMillis(0)).await.expect("purged");
    store.append_logs(&open.id, one).await.expect("room again");
}

/// A new database whose schema is at `version`, as a sessiond of that
/// version left it (the files of `migrations/postgres/` up to it applied,
/// and recorded), and a connection to it.
async fn database_at(version: u32) -> (TestDatabase, tokio_postgres::Client) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut steps: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .expect("the migrations are readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let number = name.strip_prefix('V')?.split_once("__")?.0.parse().ok()?;
            Some((number, path))
        })
        .filter(|(number, _)| *number <= version)
        .collect();
    steps.sort();
    assert_eq!(steps.len(), version as usize, "every step up to {version} is in {}", dir.display());
    let db = fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .expect("the migrations table is made");
    for (number, path) in steps {
        let sql = std::fs::read_to_string(&path).expect("a migration is readable");
        client.batch_execute(&sql).await.unwrap_or_else(|err| panic!("step {number} applies: {err}"));
        client
            .execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(number as i32)])
            .await
            .expect("the step is recorded");
    }
    (db, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_at_version_9_gives_its_log_entries_their_sessions_endpoint() {
    use sessiond::domain::LogQuery;

    let (db, client) = database_at(9).await;
    let checkout = session(SessionKind::WebCall, Some("alice"), T0);
    let plain = session(SessionKind::WebCall, Some("alice"), T0);
    for (s, endpoint) in [(&checkout, "checkout"), (&plain, "")] {
        client
            .execute(
                "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
                 user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version, \
                 ended_at, end_reason, log_id) VALUES ($1, $2, 'web_call', 'alice', $3, '', '', '', '', $4, $4, \
                 false, '{\"privileges\":[],\"roles\":[],\"promotions\":[]}', 0, '{}', 0, $4, 'closed', $1)",
                &[&s.id.as_str(), &s.token_hash.0.as_slice(), &endpoint, &T0.0],
            )
            .await
            .expect("a version 9 session is written");
        client
            .execute(
                "INSERT INTO log_entries (session_id, sequence, level, message, logged_at, tenant, user_id, kind, \
                 position) VALUES ($1, 1, 2, $2, $3, 'default', 'alice', 'web_call', 0)",
                &[&s.id.as_str(), &format!("logged at {endpoint}"), &T0.0],
            )
            .await
            .expect("a version 9 entry is written");
    }

    let store = PgStore::connect(db.settings()).await.expect("a version 9 database migrates");
    let version: i32 =
        client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.expect("readable").get(0);
    assert_eq!(version, SCHEMA_VERSION as i32);
    let query = |endpoint: &str| LogQuery {
        tenant: Some(TenantId::default()),
        endpoint: Some(endpoint.to_owned()),
        limit: 10,
        ..LogQuery::default()
    };
    let records = store.query_logs(&query("checkout")).await.expect("queryable").records;
    let found: Vec<(&str, &str)> = records.iter().map(|r| (r.entry.message.as_str(), r.endpoint.as_str())).collect();
    assert_eq!(found, [("logged at checkout", "checkout")]);
    assert!(store.query_logs(&query("orders")).await.expect("queryable").records.is_empty());
    let all = LogQuery { endpoint: None, ..query("") };
    assert_eq!(store.query_logs(&all).await.expect("queryable").records.len(), 2);

    // New entries carry their session's endpoint from the start.
    let mut live = session(SessionKind::WebUser, Some("bob"), T0);
    live.labels.endpoint = "live".into();
    create(&store, &live, &StorageMap::new()).await;
    let mut entry = sessiond_conformance::entry(sessiond::domain::LogLevel::Info, "while open", T0);
    entry.continuous = true;
    store.append_logs(&live.id, vec![entry]).await.expect("appended");
    // Readable once every transaction before it has ended, which the other
    // tests' transactions on this cluster may delay.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = store.query_logs(&query("live")).await.expect("queryable").records;
        let found: Vec<&str> = records.iter().map(|r| r.entry.message.as_str()).collect();
        if !found.is_empty() || Instant::now() > deadline {
            assert_eq!(found, ["while open"]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_at_version_10_migrates_with_its_open_sessions_counted_per_tenant() {
    let (db, client) = database_at(10).await;
    let rows = [("acme", None), ("acme", None), ("acme", Some(T0.0 + 5)), ("globex", None)];
    for (tenant, ended) in rows {
        let s = session(SessionKind::WebUser, Some("alice"), T0);
        client
            .execute(
                "INSERT INTO sessions (id, token_hash, tenant, kind, user_id, endpoint, method, future_call, \
                 client_address, user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, \
                 storage_version, ended_at, end_reason) VALUES ($1, $2, $3, 'web_user', 'alice', '', '', '', '', '', \
                 $4, $4, false, '{\"privileges\":[],\"roles\":[],\"promotions\":[]}', 0, '{}', 0, $5::int8, \
                 CASE WHEN $5::int8 IS NULL THEN NULL ELSE 'closed' END)",
                &[&s.id.as_str(), &s.token_hash.0.as_slice(), &tenant, &T0.0, &ended],
            )
            .await
            .expect("version 9 rows are written");
    }

    let store = PgStore::connect(db.settings()).await.expect("a version 9 database migrates");
    let acme = tenant("acme");
    assert_eq!(store.open_sessions_of(&acme).await.expect("counted"), 2);
    assert_eq!(store.open_sessions_of(&tenant("globex")).await.expect("counted"), 1);
    let mut new = session(SessionKind::WebUser, None, T0);
    new.tenant = acme.clone();
    create(&store, &new, &StorageMap::new()).await;
    assert_eq!(store.open_sessions_of(&acme).await.expect("counted on from there"), 3);
}

/// The quota is checked in each way a create is written: a batch of creates
/// alone (one statement), a keyed create (on its own), and creates in a
/// batch with log appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_limit_is_refused_creates_on_every_path() {
    let db = fresh_database().await;
    let store = PgStore::connect(PgSettings { max_open_sessions_per_tenant: 3, ..db.settings() })
        .await
        .expect("a fresh database opens");
    sessiond_conformance::a_tenant_at_a_limit_of_three_is_refused_creates_on_every_path(Stores::of(store)).await;
}

/// The log quota is checked in each way an append is written: in a batch
/// (its session locked with the others, the batch's own appends counted
/// on) and keyed (on its own); deletes at an end, alone or in a batch, and
/// at the purge count off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_log_limit_is_refused_appends_on_every_path() {
    let db = fresh_database().await;
    let store = PgStore::connect(PgSettings { max_log_entries_per_tenant: 10, ..db.settings() })
        .await
        .expect("a fresh database opens");
    sessiond_conformance::a_tenant_at_a_limit_of_ten_log_entries_is_refused_appends_on_every_path(Stores::of(store))
        .await;
}

/// Counts asked at once each answer their own tenant's; one asked after a
/// create committed counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sessions_of_many_tenants_asked_at_once_are_each_their_own() {
    let (_db, store) = fresh().await;
    let store = Arc::new(store);
    for (name, open) in [("acme", 3), ("globex", 1)] {
        for _ in 0..open {
            let mut s = session(SessionKind::WebUser, None, T0);
            s.tenant = tenant(name);
            create(&*store, &s, &StorageMap::new()).await;
        }
    }
    let asks = (0..60).map(|i| {
        let store = store.clone();
        let name = ["acme", "globex", "initech"][i % 3];
        tokio::spawn(async move { (name, store.open_sessions_of(&tenant(name)).await.expect("counted")) })
    });
    for ask in asks.collect::<Vec<_>>() {
        let (name, open) = ask.await.expect("no ask panicked");
        let expected = match name {
            "acme" => 3,
            "globex" => 1,
            _ => 0,
        };
        assert_eq!(open, expected, "{name}");
    }
    let mut s = session(SessionKind::WebUser, None, T0);
    s.tenant = tenant("initech");
    create(&*store, &s, &StorageMap::new()).await;
    assert_eq!(store.open_sessions_of(&tenant("initech")).await.expect("counted"), 1);
}

/// Log readers wait only for transactions that may still commit entries
/// before theirs: one left open in another database of the server is
/// stepped over, one left open in sessiond's own holds entries back until
/// it ends, however long that is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_transactions_of_sessionds_database_hold_back_log_readers() {
    use sessiond::domain::{LogLevel, LogQuery};
    use sessiond_conformance::entry;

    let (db, store) = fresh().await;
    let elsewhere = fresh_database().await;
    let stores = Stores::of(store);
    let kept = async |stores: &Stores| {
        let s = session(SessionKind::FutureCall, None, T0);
        create(&*stores.sessions, &s, &Default::default()).await;
        stores.logs.append_logs(&s.id, vec![entry(LogLevel::Info, "kept", T0)]).await.expect("appended");
        end(&*stores.sessions, &s, EndReason::Closed, T0, true).await;
        LogQuery { session_id: Some(s.id), limit: 10, ..LogQuery::default() }
    };

    let other = elsewhere.connect().await;
    other.batch_execute("BEGIN; SELECT pg_current_xact_id();").await.expect("a transaction opens elsewhere");
    let query = kept(&stores).await;
    let page = stores.logs.query_logs(&query).await.expect("logs are queryable");
    assert_eq!(page.records.len(), 1, "another database's open transaction holds nothing back");
    other.batch_execute("COMMIT").await.expect("it ends");

    let own = db.connect().await;
    own.batch_execute("BEGIN; SELECT pg_current_xact_id();").await.expect("a transaction opens in sessiond's database");
    let query = kept(&stores).await;
    let page = stores.logs.query_logs(&query).await.expect("logs are queryable");
    assert_eq!(page.records, [], "entries after a transaction still open here wait for it");
    own.batch_execute("COMMIT").await.expect("it ends");
    let page = stores.logs.query_logs(&query).await.expect("logs are queryable");
    assert_eq!(page.records.len(), 1, "and are answered once it ended");
}
