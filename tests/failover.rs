//! sessiond survives a Postgres failover: two replicas whose URL names a
//! primary and its synchronous standby, with
//! `target_session_attrs=read-write`, keep every acknowledged write when
//! the primary dies and the standby is promoted. Meanwhile calls are
//! answered UNAVAILABLE within the connect timeout; afterwards the
//! replicas find the new primary by themselves, and their caches and event
//! feeds follow each other again.
//!
//! The primary and the standby are real servers these tests start
//! (`PgCluster::launch_with_sync_standby`); the standby is promoted with
//! `pg_promote()` after the primary is killed (`SIGKILL`), stopped
//! (`SIGSTOP`: its kernel still accepts connections, nothing answers) or
//! turned read-only in place (its connections left open).

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/postgres.rs"]
mod postgres_support;

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use helpers::{TestApp, assert_ended, by_id, by_token, error_reason, next_events};
use postgres_support::PgCluster;
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tokio_postgres::NoTls;
use tonic::Code;

/// The replicas' `--db-connect-timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a test waits for something that should take moments.
const PATIENCE: Duration = Duration::from_secs(15);

/// What one replica's load saw: the sessions it created, the log entries
/// acknowledged, the refusals, and when its calls succeeded.
#[derive(Default)]
struct Seen {
    created: Vec<String>,
    logged: u32,
    unavailable: u32,
    succeeded_at: Vec<Instant>,
    slowest_refusal: Duration,
    slowest_success: Duration,
}

/// The longest a call may wait before it is answered UNAVAILABLE: the
/// connect timeout, one probe interval, and a margin for a loaded machine.
fn refusal_bound() -> Duration {
    CONNECT_TIMEOUT + sessiond::store::postgres::PROBE_INTERVAL + Duration::from_millis(1500)
}

/// Checks a refused call: UNAVAILABLE, soon.
fn refused(seen: &mut Seen, status: &tonic::Status, took: Duration) {
    assert_eq!(status.code(), Code::Unavailable, "a failover is UNAVAILABLE, not {status:?}");
    assert_eq!(error_reason(status).as_deref(), Some("STORE_UNAVAILABLE"), "{status:?}");
    assert!(took <= refusal_bound(), "a call was refused only after {took:?}");
    seen.unavailable += 1;
    seen.slowest_refusal = seen.slowest_refusal.max(took);
}

/// Creates sessions and appends log entries on `app` until `stop`. Each
/// log entry carries a request id of its own and is retried until
/// acknowledged, so that exactly `logged` entries are stored.
fn load(app: &TestApp, name: &'static str, token: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Seen> {
    let (mut sessions, mut logs) = (app.sessions.clone(), app.logs.clone());
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while !stop.load(Ordering::SeqCst) {
            let call = Instant::now();
            let request = pb::CreateSessionRequest { kind: Kind::WebUser.into(), ..Default::default() };
            match sessions.create_session(request).await {
                Ok(answer) => {
                    seen.created.push(answer.into_inner().session.expect("a session").session_id);
                    seen.succeeded_at.push(Instant::now());
                    seen.slowest_success = seen.slowest_success.max(call.elapsed());
                }
                Err(status) => refused(&mut seen, &status, call.elapsed()),
            }
            let entry = pb::LogEntry {
                level: pb::LogLevel::Info.into(),
                message: format!("{name} {}", seen.logged),
                ..Default::default()
            };
            let request = pb::LogRequest {
                session: by_token(&token),
                entries: vec![entry],
                request_id: format!("{name}-{}", seen.logged),
            };
            let retrying = Instant::now();
            loop {
                let call = Instant::now();
                match logs.log(request.clone()).await {
                    Ok(_) => {
                        seen.slowest_success = seen.slowest_success.max(call.elapsed());
                        break;
                    }
                    Err(status) => refused(&mut seen, &status, call.elapsed()),
                }
                assert!(retrying.elapsed() < 2 * PATIENCE, "log entry {} of {name} is never acknowledged", seen.logged);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen.logged += 1;
            seen.succeeded_at.push(Instant::now());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_promoted_synchronous_standby_loses_no_acknowledged_write() {
    let (primary, standby) = PgCluster::launch_with_sync_standby().await;
    let database = primary.create_database().await;
    // The standby first: only `target_session_attrs` makes the replicas
    // pass it by, until it is the primary.
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{}?target_session_attrs=read-write",
        standby.port().expect("a local server"),
        primary.port().expect("a local server"),
        database.name
    );
    let database = database.with_url(url.clone());
    let mut a = TestApp::spawn_on(database, |s| {
        s.store.db_connect_timeout = CONNECT_TIMEOUT;
        s.store.db_statement_timeout = Duration::from_secs(2);
    })
    .await;
    let mut b = a.replica().await;
    let logged_to = a.create(Kind::WebUser, "alice").await;
    let revoked = a.create(Kind::WebUser, "mallory").await;
    b.get(&revoked.token).await.expect("open on B, and cached there");

    let stop = Arc::new(AtomicBool::new(false));
    let loads =
        [load(&a, "a", logged_to.token.clone(), stop.clone()), load(&b, "b", logged_to.token.clone(), stop.clone())];
    tokio::time::sleep(Duration::from_secs(2)).await;

    primary.crash().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let promoting = Instant::now();
    standby.promote().await;
    let promoted_in = promoting.elapsed();
    // Both replicas answer again by themselves.
    for app in [&mut a, &mut b] {
        while let Err(status) = app.get(&logged_to.token).await {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(promoting.elapsed() < PATIENCE, "a replica did not find the new primary");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let [seen_a, seen_b] = loads;
    let (seen_a, seen_b) =
        (seen_a.await.expect("A's load does not panic"), seen_b.await.expect("B's load does not panic"));

    assert!(seen_a.unavailable > 0 && seen_b.unavailable > 0, "both replicas noticed the failover");
    let first_success = [&seen_a, &seen_b]
        .iter()
        .flat_map(|seen| seen.succeeded_at.iter().copied())
        .filter(|at| *at > promoting)
        .min()
        .expect("calls succeeded after the promotion");
    eprintln!(
        "failover: pg_promote() took {promoted_in:?}; first successful call {:?} after the promotion began; \
         {} calls refused, the slowest after {:?}; {} creates and {} log entries acknowledged",
        first_success - promoting,
        seen_a.unavailable + seen_b.unavailable,
        seen_a.slowest_refusal.max(seen_b.slowest_refusal),
        seen_a.created.len() + seen_b.created.len(),
        seen_a.logged + seen_b.logged,
    );

    // Every acknowledged write is on the new primary.
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("the new primary accepts connections");
    tokio::spawn(connection);
    let created: Vec<&String> = seen_a.created.iter().chain(&seen_b.created).collect();
    let stored: i64 = client
        .query_one("SELECT count(*) FROM sessions WHERE id = ANY($1)", &[&created])
        .await
        .expect("countable")
        .get(0);
    assert_eq!(stored as usize, created.len(), "every acknowledged create survived the failover");
    for (i, id) in created.iter().enumerate() {
        let app = if i % 2 == 0 { &mut a } else { &mut b };
        app.sessions
            .get_session(pb::GetSessionRequest { session: by_id(id) })
            .await
            .expect("an acknowledged create is readable on both replicas");
    }
    let entries: i64 = client.query_one("SELECT count(*) FROM log_entries", &[]).await.expect("countable").get(0);
    assert_eq!(entries, i64::from(seen_a.logged + seen_b.logged), "every acknowledged log entry, once");

    // Caches follow again: a revocation on A is refused on B, which had the
    // session cached before the failover, and never granted once refused.
    let revocation = a
        .sessions
        .revoke_sessions(pb::RevokeSessionsRequest { user_id: "mallory".into(), ..Default::default() })
        .await
        .expect("revoked on A")
        .into_inner();
    let read_after = pb::GetSessionRequest {
        session: Some(pb::SessionRef { min_sequence: revocation.sequence, ..by_token(&revoked.token).expect("a ref") }),
    };
    let status = b.sessions.get_session(read_after).await.expect_err("refused on B past the revocation");
    assert_ended(&status, "SESSION_REVOKED");
    let revoked_at = Instant::now();
    loop {
        match b.get(&revoked.token).await {
            Err(status) => {
                assert_ended(&status, "SESSION_REVOKED");
                break;
            }
            Ok(_) => assert!(revoked_at.elapsed() < PATIENCE, "B still answers a session revoked on A"),
        }
        tokio::task::yield_now().await;
    }
    for _ in 0..20 {
        assert_ended(&b.get(&revoked.token).await.expect_err("never granted again"), "SESSION_REVOKED");
    }

    // Event feeds follow again: B's watchers see what A records.
    let mut events = b.watch(pb::WatchSessionsRequest { user_id: "carol".into(), ..Default::default() }).await;
    a.create(Kind::WebUser, "carol").await;
    let seen = tokio::time::timeout(PATIENCE, next_events(&mut events, 1)).await.expect("B's watcher sees A's create");
    assert_eq!(seen[0].user_id, "carol");
}

/// A URL naming `first` then `second`, with `target_session_attrs=read-write`.
fn two_hosts(first: &PgCluster, second: &PgCluster, database: &str) -> String {
    format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs=read-write",
        first.port().expect("a local server"),
        second.port().expect("a local server"),
    )
}

/// Resumes a stopped server when dropped, should the test fail before it
/// does so itself: stopped processes outlive everything else.
struct Resume<'a>(&'a PgCluster);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.signal_all("CONT");
        }
    }
}

/// Waits until `app` answers a read again; every refusal meanwhile is
/// UNAVAILABLE.
async fn serving_again(app: &mut TestApp, token: &str, since: Instant) {
    while let Err(status) = app.get(token).await {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(since.elapsed() < PATIENCE, "sessiond did not find the new primary");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks that every create `seen` acknowledged is on the server of `url`.
async fn all_stored(url: &str, seen: &Seen) {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("the new primary accepts connections");
    tokio::spawn(connection);
    let stored: i64 = client
        .query_one("SELECT count(*) FROM sessions WHERE id = ANY($1)", &[&seen.created])
        .await
        .expect("countable")
        .get(0);
    assert_eq!(stored as usize, seen.created.len(), "every acknowledged create is on the new primary");
}

/// A primary and its synchronous standby, a sessiond whose connection
/// string names the primary first, a session on it, and a load of calls
/// begun a second ago.
struct UnderLoad {
    primary: PgCluster,
    standby: PgCluster,
    app: TestApp,
    logged_to: pb::CreateSessionResponse,
    stop: Arc<AtomicBool>,
    loading: tokio::task::JoinHandle<Seen>,
    old_primary_url: String,
    new_primary_url: String,
}

async fn under_load() -> UnderLoad {
    let (primary, standby) = PgCluster::launch_with_sync_standby().await;
    let database = primary.create_database().await;
    let url_of = |cluster: &PgCluster| {
        format!("postgres://postgres@127.0.0.1:{}/{}", cluster.port().expect("a local server"), database.name)
    };
    let (old_primary_url, new_primary_url) = (url_of(&primary), url_of(&standby));
    // The primary first: each connection tries it before the standby.
    let url = two_hosts(&primary, &standby, &database.name);
    let mut app = TestApp::spawn_on(database.with_url(url), |s| {
        s.store.db_connect_timeout = CONNECT_TIMEOUT;
        s.store.db_statement_timeout = Duration::from_secs(2);
    })
    .await;
    let logged_to = app.create(Kind::WebUser, "alice").await;
    let stop = Arc::new(AtomicBool::new(false));
    let loading = load(&app, "a", logged_to.token.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    UnderLoad { primary, standby, app, logged_to, stop, loading, old_primary_url, new_primary_url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_primary_that_still_accepts_connections_is_passed_for_the_promoted_standby() {
    let UnderLoad { primary, standby, mut app, logged_to, stop, loading, old_primary_url: _, new_primary_url } =
        under_load().await;

    // Its kernel still completes every TCP handshake; nothing answers.
    primary.signal_all("STOP");
    let resume = Resume(&primary);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let promoting = Instant::now();
    standby.promote().await;
    serving_again(&mut app, &logged_to.token, promoting).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = loading.await.expect("the load does not panic");

    let first_success = seen.succeeded_at.iter().copied().filter(|at| *at > promoting).min();
    let first_success = first_success.expect("calls succeeded after the promotion");
    eprintln!(
        "stopped primary: first successful call {:?} after the promotion began; {} calls refused, the slowest \
         after {:?}; the slowest success took {:?}; {} creates and {} log entries acknowledged",
        first_success - promoting,
        seen.unavailable,
        seen.slowest_refusal,
        seen.slowest_success,
        seen.created.len(),
        seen.logged,
    );
    assert!(seen.unavailable > 0, "calls were refused while no primary answered");
    assert!(
        seen.slowest_success <= refusal_bound(),
        "a call succeeded only after {:?}: the stopped host held it",
        seen.slowest_success
    );
    all_stored(&new_primary_url, &seen).await;

    // The old primary is done: resumed, then killed before it serves again.
    primary.signal_all("CONT");
    primary.crash().await;
    drop(resume);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_a_primary_turned_read_only_are_dropped_and_writes_go_to_the_promoted_standby() {
    let UnderLoad { primary: _primary, standby, mut app, logged_to, stop, loading, old_primary_url, new_primary_url } =
        under_load().await;
    assert!(!postgres_support::backends(&old_primary_url, "sessiond").await.is_empty(), "the pool is on the primary");

    // The primary stops taking writes without closing a connection: every
    // backend takes the new default at once.
    let (admin, connection) = tokio_postgres::connect(&old_primary_url, NoTls).await.expect("the primary answers");
    tokio::spawn(connection);
    for sql in ["ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()"] {
        admin.batch_execute(sql).await.expect("the primary turns read-only");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let promoting = Instant::now();
    standby.promote().await;
    serving_again(&mut app, &logged_to.token, promoting).await;

    // The pool left the old primary by itself: no connection of it remains.
    loop {
        let left = postgres_support::backends(&old_primary_url, "sessiond").await;
        if left.is_empty() {
            break;
        }
        assert!(promoting.elapsed() < PATIENCE, "{} pooled connections stay on the read-only server", left.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = loading.await.expect("the load does not panic");
    let after = seen.succeeded_at.iter().filter(|at| **at > promoting).count();
    eprintln!(
        "read-only primary: {after} calls succeeded after the promotion, {} refused (the slowest after {:?}); \
         {} creates and {} log entries acknowledged",
        seen.unavailable,
        seen.slowest_refusal,
        seen.created.len(),
        seen.logged,
    );
    assert!(seen.unavailable > 0, "writes were refused while no server took them");
    assert!(after > 10, "writes go to the new primary again: {after} after the promotion");
    all_stored(&new_primary_url, &seen).await;
    let entries: i64 = {
        let (client, connection) = tokio_postgres::connect(&new_primary_url, NoTls).await.expect("answers");
        tokio::spawn(connection);
        client.query_one("SELECT count(*) FROM log_entries", &[]).await.expect("countable").get(0)
    };
    assert_eq!(entries, i64::from(seen.logged), "every acknowledged log entry, once");
}
