//! What a restart keeps: open sessions with their tokens, storage,
//! privileges, acknowledged log entries and recent activity.

use std::collections::HashMap;
use std::time::Duration;

use sessiond::pb;
use sessiond::pb::SessionKind as Kind;

use crate::helpers::{TestApp, assert_ended, by_token, default_slack, entry, failure, seconds, text};

const SECOND: Duration = Duration::from_secs(1);

async fn a_full_session(app: &mut TestApp) -> (String, String) {
    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebUser.into(),
            user_id: "alice".into(),
            roles: vec!["Manager".into()],
            storage: HashMap::from([("cart".to_owned(), text("apples"))]),
            ..Default::default()
        })
        .await;
    let promotion = app
        .privileges
        .promote(pb::PromoteRequest {
            session: by_token(&created.token),
            privilege: "admin".into(),
            duration: seconds(600),
        })
        .await
        .expect("Promote")
        .into_inner();
    assert!(promotion.promotion.is_some());
    app.log(&created.token, vec![entry(pb::LogLevel::Warning, "acknowledged")]).await;
    (created.token, created.session.unwrap().session_id)
}

async fn assert_kept(app: &mut TestApp, token: &str, id: &str) {
    let session = app.get(token).await.expect("the token still opens the session");
    assert_eq!((session.session_id.as_str(), session.user_id.as_str()), (id, "alice"));
    assert_eq!(session.state, i32::from(pb::SessionState::Open));

    let stored = app
        .storage
        .get_storage(pb::GetStorageRequest { session: by_token(token), keys: vec![] })
        .await
        .expect("GetStorage")
        .into_inner();
    assert_eq!(stored.values, HashMap::from([("cart".to_owned(), text("apples"))]));
    assert_eq!(stored.version, 1);

    let privileges = app
        .privileges
        .get_privileges(pb::GetPrivilegesRequest { session: by_token(token) })
        .await
        .expect("GetPrivileges")
        .into_inner();
    assert_eq!(privileges.roles, ["manager"]);
    assert_eq!(privileges.promotions.len(), 1);
    assert_eq!(privileges.privileges, ["admin", "editsales", "viewbasic", "viewsales"]);

    app.close(token, "failed after the restart").await;
    let logged = app.logged_messages(pb::QueryLogsRequest { session_id: id.into(), ..Default::default() }).await;
    assert_eq!(logged, ["acknowledged"]);
}

#[tokio::test]
async fn a_restart_keeps_open_sessions_with_their_storage_privileges_and_logs() {
    let mut app = TestApp::spawn().await;
    let (token, id) = a_full_session(&mut app).await;

    let mut app = app.restart().await;

    assert_kept(&mut app, &token, &id).await;
}

#[tokio::test]
async fn a_crash_keeps_open_user_sessions_with_their_storage_privileges_and_logs() {
    let mut app = TestApp::spawn().await;
    let (token, id) = a_full_session(&mut app).await;

    let mut app = app.crash_and_restart().await;

    assert_kept(&mut app, &token, &id).await;
}

#[tokio::test]
async fn timeouts_keep_running_across_a_restart() {
    let mut app = TestApp::spawn().await;
    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebUser.into(),
            idle_timeout: seconds(60),
            ..Default::default()
        })
        .await;
    app.advance(30 * SECOND);

    let mut app = app.restart().await;
    app.advance(30 * SECOND + default_slack());

    assert_ended(&failure(app.get(&created.token).await), "SESSION_EXPIRED");
}

#[tokio::test]
async fn a_graceful_restart_keeps_activity_not_yet_written() {
    // With a 60 s idle timeout, activity is written at most every 15 s: a
    // touch 10 s after creation is held in memory only.
    let mut app = TestApp::spawn().await;
    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebUser.into(),
            idle_timeout: seconds(60),
            ..Default::default()
        })
        .await;
    app.advance(10 * SECOND);
    app.touch(&created.token).await.expect("open");

    let mut app = app.restart().await;
    app.advance(55 * SECOND);

    app.get(&created.token).await.expect("touched 55 s ago with a 60 s idle timeout");
}

#[tokio::test]
async fn activity_older_than_activity_flush_survives_a_crash() {
    // activity_flush is "the longest time activity stays in memory before
    // it is written": 5 s here, against a 600 s idle timeout.
    let mut app = TestApp::spawn_with(|s| s.store.activity_flush = Duration::from_secs(5)).await;
    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebUser.into(),
            idle_timeout: seconds(600),
            ..Default::default()
        })
        .await;
    app.advance(SECOND);
    app.touch(&created.token).await.expect("open");
    app.advance(60 * SECOND);
    app.service.sweep_once().await.expect("the periodic sweep runs");

    let mut app = app.crash_and_restart().await;
    app.advance(Duration::from_millis(539_500));

    app.get(&created.token)
        .await
        .expect("touched 599.5 s ago with a 600 s idle timeout; the touch is 60 s older than activity_flush");
}

/// The real binary on `data_dir`, its log on stderr captured.
fn sessiond_on(data_dir: &std::path::Path) -> std::process::Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
    std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-filter", "info"])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sessiond starts")
}

/// Waits for `child` to exit by itself; kills it after `PATIENCE`.
fn exit_of(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let deadline = std::time::Instant::now() + crate::helpers::PATIENCE;
    while child.try_wait().expect("the child can be polled").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("the child's output can be read");
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Reads `child`'s stderr until a line contains `marker`.
fn wait_for_line(child: &mut std::process::Child, marker: &str) {
    use std::io::BufRead as _;
    let stderr = child.stderr.as_mut().expect("stderr is piped");
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line.expect("stderr is readable").contains(marker) {
            return;
        }
    }
    panic!("sessiond ended before logging {marker:?}");
}

#[test]
fn a_second_sessiond_on_the_same_data_directory_refuses_to_start_naming_it_and_the_holder() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut first = sessiond_on(data.path());
    wait_for_line(&mut first, "sessiond serving");

    let (status, stderr) = exit_of(sessiond_on(data.path()));
    assert!(!status.success(), "a second process on the same directory started: {stderr}");
    assert!(stderr.contains(&data.path().display().to_string()), "the refusal names the directory: {stderr}");
    assert!(stderr.contains(&format!("process {}", first.id())), "the refusal names the holder: {stderr}");

    // A holder that dies without any shutdown work leaves no stale lock.
    first.kill().expect("the first sessiond can be killed");
    first.wait().expect("the first sessiond is reaped");
    let mut next = sessiond_on(data.path());
    wait_for_line(&mut next, "sessiond serving");
    let _ = next.kill();
    let _ = next.wait();
}
