//! Several sessiond replicas on one Postgres database behave as one: a
//! change on one is seen on the others promptly, each expired session ends
//! once, watchers resume on any replica without gaps, and a Postgres
//! restart under load costs availability, never an acknowledged write. A
//! retried write carrying a request id is stored once, whichever replica
//! takes the retry, and also when the first attempt's commit answer was
//! lost (a backend terminated while its `COMMIT` waited for a synchronous
//! standby: committed, but answered UNAVAILABLE).
//!
//! Each replica is a full server in this process with its own pool, cache,
//! activity tracker and listener; they share only the database (and, so
//! time can be moved for all of them, the manual clock).

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/postgres.rs"]
mod postgres_support;

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use fixtures::{PATIENCE, eventually};
use helpers::{TestApp, assert_ended, by_id, by_token, error_reason, failure, next_events, seconds};
use postgres_support::{PgCluster, fresh_database};
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tonic::Code;

async fn two_replicas() -> (TestApp, TestApp) {
    let a = TestApp::spawn_on(fresh_database().await, |_| {}).await;
    let b = a.replica().await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_is_refused_on_another_promptly() {
    let (mut a, mut b) = two_replicas().await;
    let created = a.create(Kind::WebUser, "alice").await;
    // B has the session cached.
    b.get(&created.token).await.expect("open on B");
    b.get(&created.token).await.expect("open on B, from its cache");

    a.sessions
        .revoke_sessions(pb::RevokeSessionsRequest { user_id: "alice".into(), ..Default::default() })
        .await
        .expect("revoked on A");
    let revoked_at = Instant::now();

    loop {
        match b.get(&created.token).await {
            Err(status) => {
                assert_ended(&status, "SESSION_REVOKED");
                break;
            }
            Ok(_) if revoked_at.elapsed() < PATIENCE => tokio::task::yield_now().await,
            Ok(_) => panic!("B still answers a session revoked on A {PATIENCE:?} ago"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_storage_changed_on_one_replica_are_seen_on_another() {
    let (mut a, mut b) = two_replicas().await;
    let created = a.create(Kind::WebUser, "alice").await;
    let check =
        |privilege: &str| pb::HasPrivilegeRequest { session: by_token(&created.token), privilege: privilege.into() };
    assert!(!b.privileges.has_privilege(check("viewBasic")).await.expect("answered").into_inner().granted);

    a.privileges
        .set_privileges(pb::SetPrivilegesRequest {
            session: by_token(&created.token),
            roles: vec!["Viewer".into()],
            ..Default::default()
        })
        .await
        .expect("set on A");
    let deadline = Instant::now() + PATIENCE;
    while !b.privileges.has_privilege(check("viewBasic")).await.expect("answered").into_inner().granted {
        assert!(Instant::now() < deadline, "B never saw the grant made on A");
        tokio::task::yield_now().await;
    }

    let put = pb::PutStorageRequest {
        session: by_token(&created.token),
        values: [("step".to_owned(), helpers::number(1.0))].into(),
        expected_version: Some(0),
    };
    a.storage.put_storage(put.clone()).await.expect("put on A");
    let stale = failure(b.storage.put_storage(put).await);
    assert_eq!(stale.code(), Code::Aborted, "B compares with the version A wrote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_sweeping_end_each_expired_session_once_with_one_event() {
    let mut a = TestApp::spawn_on(fresh_database().await, |s| s.store.sweep_interval = Duration::from_secs(3600)).await;
    let b = a.replica().await;
    let c = a.replica().await;
    let mut created = BTreeSet::new();
    let mut creator = a.sessions.clone();
    for _ in 0..30 {
        let answer = creator
            .create_session(pb::CreateSessionRequest {
                kind: Kind::WebUser.into(),
                idle_timeout: seconds(60),
                ..Default::default()
            })
            .await
            .expect("created")
            .into_inner();
        created.insert(answer.session.expect("a session").session_id);
    }
    let mut events = a.watch(pb::WatchSessionsRequest { after_sequence: Some(0), ..Default::default() }).await;

    // Past the timeout and the one second a shared store allows for
    // activity not yet written (the test apps' `activity_flush`).
    a.advance(Duration::from_secs(61));
    let (ra, rb, rc) = tokio::join!(a.service.sweep_once(), b.service.sweep_once(), c.service.sweep_once());
    let mut expired = Vec::new();
    for report in [ra, rb, rc] {
        expired.extend(report.expect("the sweep runs").expired.into_iter().map(|id| id.as_str().to_owned()));
    }

    expired.sort();
    assert_eq!(expired.len(), created.len(), "each session ended by exactly one replica");
    assert_eq!(expired.into_iter().collect::<BTreeSet<_>>(), created);
    let received = next_events(&mut events, 2 * created.len()).await;
    let expiries: Vec<_> = received.iter().filter(|e| e.r#type == i32::from(pb::EventType::Expired)).collect();
    assert_eq!(expiries.len(), created.len(), "one expiry event per session");
    let sequences: Vec<u64> = received.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "no gaps: {sequences:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sweeping_many_batches_at_once_end_each_session_once_with_gapless_events() {
    // More sessions than two sweep batches: each replica ends them in
    // batches (one transaction and one invalidation per batch), racing the
    // others over the same rows.
    const SESSIONS: usize = 2_300;
    let mut a = TestApp::spawn_on(fresh_database().await, |s| s.store.sweep_interval = Duration::from_secs(3600)).await;
    let mut b = a.replica().await;
    let creators: Vec<_> = (0..8)
        .map(|_| {
            let mut creator = a.sessions.clone();
            tokio::spawn(async move {
                let mut created = Vec::new();
                for _ in 0..SESSIONS / 8 {
                    let request = pb::CreateSessionRequest {
                        kind: Kind::WebUser.into(),
                        idle_timeout: seconds(60),
                        ..Default::default()
                    };
                    let answer = creator.create_session(request).await.expect("created").into_inner();
                    created.push((answer.session.expect("a session").session_id, answer.token));
                }
                created
            })
        })
        .collect();
    let mut created = Vec::new();
    for creator in creators {
        created.extend(creator.await.expect("the creator does not panic"));
    }
    // B holds one of them in its cache, open: it answers it ended all the same.
    let (_, cached_token) = created[0].clone();
    b.get(&cached_token).await.expect("open on B, and cached there");
    let mut events = a.watch(pb::WatchSessionsRequest { after_sequence: Some(0), ..Default::default() }).await;

    a.advance(Duration::from_secs(61));
    let (ra, rb) = tokio::join!(a.service.sweep_once(), b.service.sweep_once());
    let mut expired = Vec::new();
    for report in [ra, rb] {
        expired.extend(report.expect("the sweep runs").expired.into_iter().map(|id| id.as_str().to_owned()));
    }
    expired.sort();
    let mut ids: Vec<String> = created.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    assert_eq!(expired, ids, "each session ended by exactly one replica");

    let received = next_events(&mut events, 2 * created.len()).await;
    let expiries: BTreeSet<&str> = received
        .iter()
        .filter(|e| e.r#type == i32::from(pb::EventType::Expired))
        .map(|e| e.session_id.as_str())
        .collect();
    assert_eq!(expiries.len(), created.len(), "one expiry event per session");
    let sequences: Vec<u64> = received.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "no gaps");
    assert_ended(&failure(b.get(&cached_token).await), "SESSION_EXPIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resuming_on_another_replica_misses_nothing() {
    let (mut a, mut b) = two_replicas().await;
    let mut first = a.watch(pb::WatchSessionsRequest { after_sequence: Some(0), ..Default::default() }).await;
    a.create(Kind::WebUser, "alice").await;
    b.create(Kind::WebUser, "bob").await;
    let seen = next_events(&mut first, 2).await;
    let last = seen.last().expect("two events").sequence;
    drop(first);

    // Events recorded by both replicas while nobody watches.
    for i in 0..5 {
        a.create(Kind::WebCall, &format!("a{i}")).await;
        b.create(Kind::WebCall, &format!("b{i}")).await;
    }
    let mut resumed = b.watch(pb::WatchSessionsRequest { after_sequence: Some(last), ..Default::default() }).await;
    let missed = next_events(&mut resumed, 10).await;
    // And live ones from the other replica.
    a.create(Kind::WebUser, "carol").await;
    let live = next_events(&mut resumed, 1).await;

    let sequences: Vec<u64> = missed.iter().chain(&live).map(|e| e.sequence).collect();
    assert_eq!(sequences, (last + 1..=last + 11).collect::<Vec<_>>());
    assert_eq!(live[0].user_id, "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_watcher_sees_both_replicas_events_interleaved_without_gaps() {
    // A publishes its own events as it records them and reads only B's
    // back from the store: the two must merge into one gapless stream.
    let (mut a, b) = two_replicas().await;
    let mut events = a.watch(pb::WatchSessionsRequest { after_sequence: None, ..Default::default() }).await;
    let creates = |app: &TestApp, name: &'static str| {
        let mut sessions = app.sessions.clone();
        async move {
            for i in 0..20 {
                sessions
                    .create_session(pb::CreateSessionRequest {
                        kind: Kind::WebUser.into(),
                        user_id: format!("{name}{i}"),
                        ..Default::default()
                    })
                    .await
                    .expect("created");
            }
        }
    };
    tokio::join!(creates(&a, "a"), creates(&a, "c"), creates(&b, "b"));
    // Last, B alone: only A's feed can tell A's watcher of these.
    creates(&b, "d").await;

    let received = next_events(&mut events, 80).await;
    let sequences: Vec<u64> = received.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "no gaps: {sequences:?}");
    let users: BTreeSet<&str> = received.iter().map(|e| e.user_id.as_str()).collect();
    assert_eq!(users.len(), 80, "every create seen once");
}

/// Reads a follow until it has delivered `n` records; answers their
/// messages and the last cursor.
async fn followed(follow: &mut tonic::Streaming<pb::FollowLogsResponse>, n: usize) -> (Vec<String>, String) {
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    while seen.len() < n {
        let message = tokio::time::timeout(PATIENCE, follow.message())
            .await
            .expect("records arrive promptly")
            .expect("the follow does not fail")
            .expect("the follow does not end");
        seen.extend(message.records.into_iter().map(|r| r.message));
        cursor = message.cursor;
    }
    (seen, cursor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_logged_on_one_replica_reach_a_follower_on_another_and_a_resumed_follow_misses_nothing() {
    let (mut a, mut b) = two_replicas().await;
    let stream = a.create(Kind::Streaming, "alice").await;
    let call = a.create(Kind::MethodCall, "bob").await;
    let mut on_b = b.logs.follow_logs(pb::FollowLogsRequest::default()).await.expect("follows on B").into_inner();

    let entries = |prefix: &str, n: usize| -> Vec<pb::LogEntry> {
        (1..=n).map(|i| helpers::entry(pb::LogLevel::Info, &format!("{prefix}{i}"))).collect()
    };
    a.log(&stream.token, entries("a", 3)).await;
    let (seen, cursor) = followed(&mut on_b, 3).await;
    assert_eq!(seen, ["a1", "a2", "a3"], "logged on A, followed on B");

    // While nobody follows, both replicas log, concurrently, and A keeps a
    // method call's log at its close.
    drop(on_b);
    a.log(&call.token, vec![helpers::entry(pb::LogLevel::Error, "c1")]).await;
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (mut logs, prefix) =
            if i % 2 == 0 { (a.logs.clone(), format!("x{i}.")) } else { (b.logs.clone(), format!("y{i}.")) };
        let request =
            pb::LogRequest { session: by_token(&stream.token), entries: entries(&prefix, 5), ..Default::default() };
        writers.spawn(async move { logs.log(request).await.expect("logged") });
    }
    writers.join_all().await;
    a.close(&call.token, "").await;

    let mut resumed =
        b.logs.follow_logs(pb::FollowLogsRequest { cursor, ..Default::default() }).await.expect("resumes").into_inner();
    let (seen, _) = followed(&mut resumed, 51).await;
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no entry twice: {seen:?}");
    assert!(seen.iter().all(|m| !m.starts_with('a')), "nothing from before the cursor");
    assert!(seen.contains(&"c1".to_owned()), "the kept log of the closed call");
    assert_eq!(seen.len(), 51);

    // And the same entries, in the same order, through QueryLogs on A.
    let queried = a.logged_messages(pb::QueryLogsRequest { page_size: 1000, ..Default::default() }).await;
    assert_eq!(queried[3..], seen[..], "one order on both replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_loses_no_acknowledged_write() {
    let cluster = PgCluster::launch().await;
    let database = cluster.create_database().await;
    let mut app = TestApp::spawn_on(database, |s| {
        s.store.db_connect_timeout = Duration::from_millis(500);
        s.store.db_statement_timeout = Duration::from_secs(2);
    })
    .await;
    let session = app.create(Kind::WebUser, "alice").await;

    // Load: creates and logs, each remembered once acknowledged.
    let (acknowledged, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let mut sessions = app.sessions.clone();
        let mut logs = app.logs.clone();
        let token = session.token.clone();
        let (acknowledged, refused) = (acknowledged.clone(), refused.clone());
        tokio::spawn(async move {
            let (mut created, mut logged, mut unavailable) = (Vec::new(), 0u32, 0u32);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(8) {
                let call = Instant::now();
                match sessions
                    .create_session(pb::CreateSessionRequest { kind: Kind::WebUser.into(), ..Default::default() })
                    .await
                {
                    Ok(answer) => {
                        created.push(answer.into_inner().session.expect("a session").session_id);
                        acknowledged.fetch_add(1, SeqCst);
                    }
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unavailable, "an outage is UNAVAILABLE, not {status:?}");
                        assert!(call.elapsed() < Duration::from_secs(5), "failed fast: {:?}", call.elapsed());
                        unavailable += 1;
                        refused.fetch_add(1, SeqCst);
                    }
                }
                // A log refused in the outage may still have committed
                // (its answer lost): it is retried with its request id
                // until acknowledged, so it is stored exactly once.
                if logs.log(log_request(&token, logged)).await.is_ok() {
                    logged += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            while logs.log(log_request(&token, logged)).await.is_err() {
                assert!(started.elapsed() < Duration::from_secs(8) + PATIENCE, "the last log is never acknowledged");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            logged += 1;
            (created, logged, unavailable)
        })
    };

    let acknowledged = &acknowledged;
    eventually(
        "creates acknowledged before the outage",
        || async move { (acknowledged.load(SeqCst) >= 10).then_some(()) },
    )
    .await;
    cluster.stop().await;
    let refused = &refused;
    eventually("a create refused in the outage", || async move { (refused.load(SeqCst) > 0).then_some(()) }).await;
    let (sessions, token) = (&app.sessions, &session.token);
    let during = eventually("a read refused in the outage", || {
        let mut sessions = sessions.clone();
        async move { sessions.get_session(pb::GetSessionRequest { session: by_token(token) }).await.err() }
    })
    .await;
    assert_eq!(during.code(), Code::Unavailable, "no answer from cache while other replicas cannot be followed");
    assert_eq!(error_reason(&during).as_deref(), Some("STORE_UNAVAILABLE"));
    cluster.start().await;

    let (created, logged, unavailable) = load.await.expect("the load does not panic");
    assert!(unavailable > 0, "the outage was noticed");
    let recovered = Instant::now();
    while app.get(&session.token).await.is_err() {
        assert!(recovered.elapsed() < PATIENCE, "sessiond did not recover after Postgres came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &created {
        app.sessions
            .get_session(pb::GetSessionRequest { session: by_id(id) })
            .await
            .expect("every acknowledged create survived");
    }
    // A failed session's log is kept: count what it holds.
    app.close(&session.token, "checking the log").await;
    assert_eq!(kept_entries(&mut app, &session).await, logged as usize, "every acknowledged log entry survived");
}

/// The `n`th entry of the restart test's log, with a request id of its own.
fn log_request(token: &str, n: u32) -> pb::LogRequest {
    let entry = pb::LogEntry { level: pb::LogLevel::Info.into(), message: format!("entry {n}"), ..Default::default() };
    pb::LogRequest { session: by_token(token), entries: vec![entry], request_id: format!("entry-{n}") }
}

/// How many entries the kept log of `session` holds, over every page.
async fn kept_entries(app: &mut TestApp, session: &pb::CreateSessionResponse) -> usize {
    let session_id = session.session.as_ref().expect("a session").session_id.clone();
    let (mut count, mut page_token) = (0, String::new());
    loop {
        let page = app
            .query_logs(pb::QueryLogsRequest {
                session_id: session_id.clone(),
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await;
        count += page.records.len();
        if page.next_page_token.is_empty() {
            return count;
        }
        page_token = page.next_page_token;
    }
}

/// Names a session by token, asking for a state no older than `sequence`.
fn by_token_after(token: &str, sequence: u64) -> Option<pb::SessionRef> {
    Some(pb::SessionRef { min_sequence: sequence, ..by_token(token).expect("a reference") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_refused_on_another_replica_within_a_second_even_with_its_listener_stopped() {
    let database = fresh_database().await;
    let url = database.url.clone();
    let mut a = TestApp::spawn_on(database, |_| {}).await;
    let mut b = a.replica().await;
    let created = a.create(Kind::WebUser, "alice").await;
    // B answers from its cache, once its notification stream is proven.
    b.get(&created.token).await.expect("open on B");
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.get(&created.token).await.expect("open on B, from its cache");

    // Every replica's listening backend stops; their sockets stay open.
    let listeners = postgres_support::backends(&url, "sessiond listener").await;
    assert_eq!(listeners.len(), 2, "one listener per replica: {listeners:?}");
    for pid in &listeners {
        postgres_support::signal(*pid, "STOP");
    }
    let resume = Resume(listeners.clone());

    a.sessions
        .revoke_sessions(pb::RevokeSessionsRequest { user_id: "alice".into(), ..Default::default() })
        .await
        .expect("revoked on A");
    let revoked_at = Instant::now();
    let refused_after = loop {
        match b.get(&created.token).await {
            Err(status) => {
                assert_ended(&status, "SESSION_REVOKED");
                break revoked_at.elapsed();
            }
            Ok(_) => assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "B still answers a session revoked on A {:?} ago",
                revoked_at.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("revocation refused on B {refused_after:?} after A acknowledged it, B's listener stopped");
    drop(resume);

    // With its backend back (or replaced), B follows again and caches again.
    let other = a.create(Kind::WebUser, "bob").await;
    b.get(&other.token).await.expect("open on B");
    a.sessions
        .revoke_sessions(pb::RevokeSessionsRequest { user_id: "bob".into(), ..Default::default() })
        .await
        .expect("revoked on A");
    let revoked_at = Instant::now();
    while b.get(&other.token).await.is_ok() {
        assert!(revoked_at.elapsed() < Duration::from_secs(1), "B lost track of A after the stall");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Resumes stopped processes when dropped, so that a failing assertion
/// leaves no backend stopped behind.
struct Resume(Vec<u32>);

impl Drop for Resume {
    fn drop(&mut self) {
        for pid in &self.0 {
            postgres_support::signal(*pid, "CONT");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_passing_the_revocations_sequence_is_never_granted_on_another_replica() {
    let (mut a, mut b) = two_replicas().await;
    const TRIALS: usize = 200;
    let mut cached_but_stale = 0;
    for trial in 0..TRIALS {
        let user = format!("user-{trial}");
        let created = a.create(Kind::WebUser, &user).await;
        b.get(&created.token).await.expect("open on B");
        b.get(&created.token).await.expect("open on B, cached");

        let revoked = a
            .sessions
            .revoke_sessions(pb::RevokeSessionsRequest { user_id: user, ..Default::default() })
            .await
            .expect("revoked on A")
            .into_inner();
        assert!(revoked.sequence > created.sequence, "the revocation answers its event's sequence");
        // Without the floor, B may still answer from its cache for a moment:
        // counted, not asserted, to show what the floor is for.
        let without = b.sessions.get_session(pb::GetSessionRequest { session: by_token(&created.token) }).await;
        if without.is_ok() {
            cached_but_stale += 1;
        }
        let with = b
            .sessions
            .get_session(pb::GetSessionRequest { session: by_token_after(&created.token, revoked.sequence) })
            .await;
        assert_ended(&failure(with.map(|r| r.into_inner())), "SESSION_REVOKED");
    }
    eprintln!("{cached_but_stale} of {TRIALS} reads without min_sequence were still answered as open");
}

/// What health answers for the whole server.
async fn health(app: &TestApp) -> tonic_health::pb::health_check_response::ServingStatus {
    let mut client = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let answer = client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
    answer.expect("health always answers").into_inner().status()
}

/// One create of the load: when it was sent, how long it took, and how it
/// ended (the session id when acknowledged).
struct Call {
    sent: Instant,
    took: Duration,
    outcome: Result<String, tonic::Status>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_postgres_is_answered_unavailable_within_the_connect_timeout_and_health_follows_it() {
    use tonic_health::pb::health_check_response::ServingStatus;
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    // The bound the README promises: the connect timeout, plus one probe
    // interval, plus a margin for a loaded machine.
    let bound = CONNECT_TIMEOUT + sessiond::store::postgres::PROBE_INTERVAL + Duration::from_millis(750);
    let cluster = PgCluster::launch().await;
    let database = cluster.create_database().await;
    let app = TestApp::spawn_on(database, |s| s.store.db_connect_timeout = CONNECT_TIMEOUT).await;
    assert_eq!(health(&app).await, ServingStatus::Serving);

    // Load: four callers creating sessions back to back, no client deadline.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (acknowledged, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (mut sessions, stop) = (app.sessions.clone(), stop.clone());
            let (acknowledged, refused) = (acknowledged.clone(), refused.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let sent = Instant::now();
                    let request = pb::CreateSessionRequest { kind: Kind::WebUser.into(), ..Default::default() };
                    let outcome = sessions
                        .create_session(request)
                        .await
                        .map(|answer| answer.into_inner().session.expect("a session").session_id);
                    match &outcome {
                        Ok(_) => acknowledged.fetch_add(1, SeqCst),
                        Err(_) => refused.fetch_add(1, SeqCst),
                    };
                    calls.push(Call { sent, took: sent.elapsed(), outcome });
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                calls
            })
        })
        .collect();

    let (acknowledged, refused) = (&acknowledged, &refused);
    eventually(
        "creates acknowledged before the freeze",
        || async move { (acknowledged.load(SeqCst) >= 8).then_some(()) },
    )
    .await;
    cluster.signal_all("STOP");
    let frozen = Instant::now();
    let thaw = Resumed(&cluster);
    while health(&app).await != ServingStatus::NotServing {
        assert!(frozen.elapsed() < bound, "health still SERVING {:?} into the freeze", frozen.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_serving_after = frozen.elapsed();
    // Every caller is refused at least once while frozen.
    eventually("each caller refused in the freeze", || async move { (refused.load(SeqCst) >= 4).then_some(()) }).await;
    drop(thaw);
    let thawed = Instant::now();
    while health(&app).await != ServingStatus::Serving {
        assert!(thawed.elapsed() < PATIENCE, "health did not come back after the freeze");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let serving_after = thawed.elapsed();
    let before = acknowledged.load(SeqCst);
    eventually("creates acknowledged after the thaw", || async move {
        (acknowledged.load(SeqCst) >= before + 4).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut calls = Vec::new();
    for caller in callers {
        calls.extend(caller.await.expect("a caller does not panic"));
    }

    // Every call waited at most the bound past the freeze (or its own start).
    let mut slowest = Duration::ZERO;
    let mut refused = 0;
    for call in &calls {
        let waited = (call.sent + call.took).saturating_duration_since(call.sent.max(frozen));
        if call.sent + call.took > frozen && call.sent < thawed {
            slowest = slowest.max(waited);
            assert!(waited <= bound, "a call was answered {waited:?} into the freeze: {:?}", call.outcome);
        }
        if let Err(status) = &call.outcome {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert_eq!(error_reason(status).as_deref(), Some("STORE_UNAVAILABLE"), "{status:?}");
            refused += 1;
        }
    }
    assert!(refused > 0, "the freeze was noticed");
    // Nothing acknowledged is lost.
    let mut app = app;
    for call in &calls {
        if let Ok(id) = &call.outcome {
            app.sessions
                .get_session(pb::GetSessionRequest { session: by_id(id) })
                .await
                .expect("every acknowledged create survived the freeze");
        }
    }
    eprintln!(
        "freeze: NOT_SERVING after {not_serving_after:?}, slowest call answered {slowest:?} into it, \
         {refused} of {} calls UNAVAILABLE; SERVING {serving_after:?} after the thaw",
        calls.len()
    );
}

/// Resumes a stopped cluster when dropped, a failing assertion included.
struct Resumed<'a>(&'a PgCluster);

impl Drop for Resumed<'_> {
    fn drop(&mut self) {
        self.0.signal_all("CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_on_another_replica_answers_the_first_and_racing_ones_create_one() {
    let (mut a, mut b) = two_replicas().await;
    let request = |request_id: String| pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "alice".into(),
        request_id,
        ..Default::default()
    };
    let first = a.create_with(request("retried-elsewhere".into())).await;
    let retried = b.create_with(request("retried-elsewhere".into())).await;
    assert_eq!(retried.token, first.token);
    assert_eq!(retried.session.expect("a session").session_id, first.session.expect("a session").session_id);

    // The same create sent to both replicas at once, twenty times over.
    for n in 0..20 {
        let (on_a, on_b) = tokio::join!(
            a.sessions.create_session(request(format!("race-{n}"))),
            b.sessions.create_session(request(format!("race-{n}")))
        );
        let (on_a, on_b) = (on_a.expect("created on A").into_inner(), on_b.expect("created on B").into_inner());
        assert_eq!(on_a.token, on_b.token, "race {n}");
    }
    let listed =
        a.list(pb::ListSessionsRequest { user_id: "alice".into(), page_size: 100, ..Default::default() }).await;
    assert_eq!(listed.sessions.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_retried_on_another_replica_is_stored_once() {
    let (mut a, mut b) = two_replicas().await;
    let session = a.create(Kind::WebCall, "alice").await;
    let log = |request_id: &str| pb::LogRequest {
        session: by_token(&session.token),
        entries: vec![helpers::entry(pb::LogLevel::Warning, "once")],
        request_id: request_id.into(),
    };
    assert_eq!(a.logs.log(log("log-once")).await.expect("logged on A").into_inner().accepted, 1);
    assert_eq!(b.logs.log(log("log-once")).await.expect("retried on B").into_inner().accepted, 1);
    let (on_a, on_b) = tokio::join!(a.logs.log(log("log-race")), b.logs.log(log("log-race")));
    assert_eq!((on_a.expect("on A").into_inner().accepted, on_b.expect("on B").into_inner().accepted), (1, 1));
    a.close(&session.token, "failed, so the log is kept").await;
    assert_eq!(kept_entries(&mut a, &session).await, 2, "one entry per request id");
}

/// Runs `call` while every commit waits for a synchronous standby that
/// never comes, terminates the Postgres backend waiting in its `COMMIT`
/// (committed locally, its answer lost), and answers how sessiond answered
/// the call. The cluster is `admin`'s, and only this test's.
async fn with_commit_answer_lost<T: Send + 'static>(
    admin: &tokio_postgres::Client,
    call: impl std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
) -> tonic::Status {
    admin.batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'ghost'").await.expect("settable");
    admin.batch_execute("SELECT pg_reload_conf()").await.expect("reloaded");
    // The postmaster passes the reload on to every backend by a signal of
    // its own: once this backend sees it, the others have been told too.
    let reloaded = Instant::now();
    loop {
        let row = admin.query_one("SHOW synchronous_standby_names", &[]).await.expect("showable");
        if row.get::<_, String>(0) == "ghost" {
            break;
        }
        assert!(reloaded.elapsed() < PATIENCE, "the setting never took effect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let call = tokio::spawn(call);
    let waiting = Instant::now();
    let pid: i32 = loop {
        let rows = admin
            // sessiond's own connections, not its prober's (whose commits
            // wait for the standby too).
            .query(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND application_name = 'sessiond'",
                &[],
            )
            .await
            .expect("pg_stat_activity is readable");
        if let Some(row) = rows.first() {
            break row.get(0);
        }
        assert!(waiting.elapsed() < PATIENCE, "no COMMIT waited for the standby");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.expect("terminated");
    let answered = tokio::time::timeout(PATIENCE, call).await.expect("answered promptly").expect("no panic");
    admin.batch_execute("ALTER SYSTEM RESET synchronous_standby_names").await.expect("resettable");
    admin.batch_execute("SELECT pg_reload_conf()").await.expect("reloaded");
    match answered {
        Ok(_) => panic!("a call whose commit answer was lost was answered OK"),
        Err(status) => status,
    }
}

async fn count(admin: &tokio_postgres::Client, sql: &str) -> i64 {
    admin.query_one(sql, &[]).await.expect("countable").get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_commit_answer_was_lost_is_stored_once_when_retried() {
    let cluster = PgCluster::launch().await;
    let database = cluster.create_database().await;
    let admin = database.connect().await;
    let mut app = TestApp::spawn_on(database, |_| {}).await;
    let request = pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "alice".into(),
        request_id: "c1d7a3f0-5e2b-4a9c-8d61-7f0e3b2a9c54".into(),
        ..Default::default()
    };

    let mut sessions = app.sessions.clone();
    let first = request.clone();
    let lost = with_commit_answer_lost(&admin, async move { sessions.create_session(first).await }).await;
    assert_eq!(lost.code(), Code::Unavailable, "{lost:?}");
    assert_eq!(count(&admin, "SELECT count(*) FROM sessions").await, 1, "the lost commit is durable");
    let stored: String = admin.query_one("SELECT id FROM sessions", &[]).await.expect("one session").get(0);

    let retried = app.create_with(request.clone()).await;
    assert_eq!(retried.session.expect("a session").session_id, stored, "the first session");
    assert_eq!(count(&admin, "SELECT count(*) FROM sessions").await, 1, "nothing created twice");
    // The token answered is the stored session's own.
    let again = app.create_with(request).await;
    assert_eq!(again.token, retried.token);
    let by_token = app.get(&retried.token).await.expect("the token opens the session");
    assert_eq!(by_token.session_id, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_whose_commit_answer_was_lost_is_stored_once_when_retried() {
    let cluster = PgCluster::launch().await;
    let database = cluster.create_database().await;
    let admin = database.connect().await;
    let mut app = TestApp::spawn_on(database, |_| {}).await;
    let session = app.create(Kind::WebCall, "alice").await;
    let request = pb::LogRequest {
        session: by_token(&session.token),
        entries: vec![helpers::entry(pb::LogLevel::Warning, "one"), helpers::entry(pb::LogLevel::Error, "two")],
        request_id: "9a4e0c7b-1f3d-4b26-a8e5-6c2d0f9b3e17".into(),
    };

    let mut logs = app.logs.clone();
    let first = request.clone();
    let lost = with_commit_answer_lost(&admin, async move { logs.log(first).await }).await;
    assert_eq!(lost.code(), Code::Unavailable, "{lost:?}");
    assert_eq!(count(&admin, "SELECT count(*) FROM log_entries").await, 2, "the lost commit is durable");

    let retried = app.logs.log(request).await.expect("the retry is answered").into_inner();
    assert_eq!(retried.accepted, 2, "the first call's answer");
    assert_eq!(count(&admin, "SELECT count(*) FROM log_entries").await, 2, "nothing stored twice");
    app.close(&session.token, "failed, so the log is kept").await;
    assert_eq!(kept_entries(&mut app, &session).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_refused_while_postgres_is_down_is_created_once_when_retried() {
    let cluster = PgCluster::launch().await;
    let database = cluster.create_database().await;
    let mut app = TestApp::spawn_on(database, |s| s.store.db_connect_timeout = Duration::from_millis(500)).await;
    let request = pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "alice".into(),
        request_id: "e7b2c9a1-0d4f-4e63-b5a8-2f1c7d9e0b36".into(),
        ..Default::default()
    };

    cluster.stop().await;
    let refused = failure(app.sessions.create_session(request.clone()).await);
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    cluster.start().await;

    // The client retries until sessiond reaches Postgres again.
    let retrying = Instant::now();
    let created = loop {
        match app.sessions.create_session(request.clone()).await {
            Ok(created) => break created.into_inner(),
            Err(status) if status.code() == Code::Unavailable && retrying.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("the retry failed: {status:?}"),
        }
    };
    let again = app.create_with(request).await;
    assert_eq!(again.token, created.token);
    let listed =
        app.list(pb::ListSessionsRequest { user_id: "alice".into(), page_size: 100, ..Default::default() }).await;
    assert_eq!(listed.sessions.len(), 1, "created exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_open_sessions_quota_holds_across_replicas() {
    let mut a = TestApp::spawn_on(fresh_database().await, |s| s.limits.max_open_sessions_per_tenant = 3).await;
    let mut b = a.replica().await;
    let on_a = a.create(Kind::WebUser, "alice").await;
    a.create(Kind::Standalone, "alice").await;
    b.create(Kind::WebUser, "bob").await;

    let request =
        || pb::CreateSessionRequest { kind: Kind::WebUser.into(), user_id: "carol".into(), ..Default::default() };
    for replica in [&mut a, &mut b] {
        let refused = failure(replica.sessions.create_session(request()).await);
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert_eq!(error_reason(&refused).as_deref(), Some("TENANT_SESSION_QUOTA"));
    }

    // A session of A's ended on B frees a place on both.
    b.close(&on_a.token, "").await;
    b.sessions.create_session(request()).await.expect("a place is free");
    let refused = failure(a.sessions.create_session(request()).await);
    assert_eq!(error_reason(&refused).as_deref(), Some("TENANT_SESSION_QUOTA"));
}
