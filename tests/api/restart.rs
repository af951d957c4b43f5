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
    let mut app = TestApp::spawn_with(|s| s.activity_flush = Duration::from_secs(5)).await;
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
