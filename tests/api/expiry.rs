//! The sweeper, driven by hand with `sweep_once`: ending idle and
//! worn-out sessions, respecting activity the store has not seen yet, and
//! purging what retention lets go.

use std::time::Duration;

use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use sessiond::settings::Settings;
use tonic::Code;

use crate::helpers::{TestApp, assert_ended, by_id, default_slack, entry, expiry_slack, failure, next_event, seconds};

const SECOND: Duration = Duration::from_secs(1);

/// Only the tests sweep: the background sweeper waits an hour between runs.
fn manual_sweeps(settings: &mut Settings) {
    settings.store.sweep_interval = Duration::from_secs(3600);
}

fn idle_session(idle: i64) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "alice".into(),
        idle_timeout: seconds(idle),
        ..Default::default()
    }
}

fn ended() -> pb::ListSessionsRequest {
    pb::ListSessionsRequest { state: pb::SessionState::Ended.into(), ..Default::default() }
}

#[tokio::test]
async fn the_sweeper_ends_an_idle_session_with_reason_idle_timeout() {
    let mut app = TestApp::spawn_with(manual_sweeps).await;
    let created = app.create_with(idle_session(60)).await;
    let id = created.session.unwrap().session_id;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;

    app.advance(59 * SECOND);
    assert!(app.service.sweep_once().await.expect("the sweep runs").expired.is_empty(), "not idle long enough yet");
    app.advance(SECOND + default_slack());
    let report = app.service.sweep_once().await.expect("the sweep runs");

    assert_eq!(report.expired.iter().map(|id| id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    let listed = app.list(ended()).await.sessions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session_id, id);
    assert_eq!(listed[0].end_reason, i32::from(pb::EndReason::IdleTimeout));
    assert_eq!(listed[0].ended_at, Some(app.now()));
    let lasted = prost_types::Duration::try_from(60 * SECOND + default_slack()).expect("a small duration");
    assert_eq!(listed[0].duration, Some(lasted), "from creation to the end");
    assert_eq!(listed[0].time_left, None);
    let event = next_event(&mut events).await;
    assert_eq!(event.r#type, i32::from(pb::EventType::Expired));
    assert_eq!(event.session_id, id);
    assert_eq!(event.end_reason, i32::from(pb::EndReason::IdleTimeout));
    assert_ended(&failure(app.get(&created.token).await), "SESSION_EXPIRED");
}

#[tokio::test]
async fn the_sweeper_ends_a_session_at_its_lifetime_with_reason_lifetime_reached() {
    let mut app = TestApp::spawn_with(manual_sweeps).await;
    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::Internal.into(),
            idle_timeout: seconds(0),
            lifetime: seconds(100),
            ..Default::default()
        })
        .await;

    app.advance(100 * SECOND);
    let report = app.service.sweep_once().await.expect("the sweep runs");

    assert_eq!(report.expired.len(), 1);
    let listed = app.list(ended()).await.sessions;
    assert_eq!(listed[0].end_reason, i32::from(pb::EndReason::LifetimeReached));
    assert_ended(&failure(app.get(&created.token).await), "SESSION_EXPIRED");
}

#[tokio::test]
async fn a_session_used_within_its_timeout_is_not_swept_when_the_stores_activity_is_stale() {
    // Activity reaches the store at most every min(activity_flush, idle/4)
    // = 15 s: a touch 10 s after creation stays in memory only.
    let mut app = TestApp::spawn_with(|s| {
        manual_sweeps(s);
        s.store.activity_flush = Duration::from_secs(30);
    })
    .await;
    let created = app.create_with(idle_session(60)).await;
    app.advance(10 * SECOND);
    app.touch(&created.token).await.expect("open");

    app.advance(55 * SECOND);
    let report = app.service.sweep_once().await.expect("the sweep runs");

    assert!(report.expired.is_empty(), "touched 55 s ago with a 60 s idle timeout");
    let open = app.list(pb::ListSessionsRequest { state: pb::SessionState::Open.into(), ..Default::default() }).await;
    assert_eq!(open.sessions.len(), 1);

    app.advance(5 * SECOND + expiry_slack(60 * SECOND, 30 * SECOND));
    let report = app.service.sweep_once().await.expect("the sweep runs");
    assert_eq!(report.expired.len(), 1, "idle 60 s since the touch");
    assert_ended(&failure(app.get(&created.token).await), "SESSION_EXPIRED");
}

#[tokio::test]
async fn a_session_used_before_a_restart_is_swept_by_its_written_activity_not_its_creation() {
    // The touch reaches the store at shutdown, after the session's own
    // expiry was last set (at creation, for 60 s after it): the sweeper
    // finds it due by that expiry, reads the later activity and moves the
    // expiry instead of ending it.
    let mut app = TestApp::spawn_with(manual_sweeps).await;
    let created = app.create_with(idle_session(60)).await;
    app.advance(10 * SECOND);
    app.touch(&created.token).await.expect("open");
    let mut app = app.restart().await;

    app.advance(55 * SECOND);
    let report = app.service.sweep_once().await.expect("the sweep runs");
    assert!(report.expired.is_empty(), "touched 55 s ago with a 60 s idle timeout");
    let report = app.service.sweep_once().await.expect("the sweep runs");
    assert!(report.expired.is_empty(), "still touched 55 s ago");

    app.advance(5 * SECOND + default_slack());
    let report = app.service.sweep_once().await.expect("the sweep runs");
    assert_eq!(report.expired.len(), 1, "idle 60 s since the touch");
    assert_ended(&failure(app.get(&created.token).await), "SESSION_EXPIRED");
}

#[tokio::test]
async fn a_session_without_timeouts_is_never_swept() {
    let mut app = TestApp::spawn_with(manual_sweeps).await;
    let created = app.create(Kind::StoredProcedure, "batch").await;

    app.advance(Duration::from_secs(365 * 24 * 3600));
    let report = app.service.sweep_once().await.expect("the sweep runs");

    assert!(report.expired.is_empty());
    app.get(&created.token).await.expect("still open after a year");
}

#[tokio::test]
async fn ended_sessions_and_their_logs_are_purged_after_retention() {
    let mut app = TestApp::spawn_with(|s| {
        manual_sweeps(s);
        s.store.retention = Duration::from_secs(3600);
    })
    .await;
    let created = app.create(Kind::MethodCall, "alice").await;
    let id = created.session.unwrap().session_id;
    app.log(&created.token, vec![entry(pb::LogLevel::Error, "boom")]).await;
    app.close(&created.token, "failed").await;
    let by_session = pb::QueryLogsRequest { session_id: id.clone(), ..Default::default() };
    let survivor = app.create(Kind::StoredProcedure, "batch").await;

    app.advance(3599 * SECOND);
    app.service.sweep_once().await.expect("the sweep runs");
    assert_eq!(app.logged_messages(by_session.clone()).await, ["boom"], "kept within retention");
    let status = failure(app.sessions.get_session(pb::GetSessionRequest { session: by_id(&id) }).await);
    assert_eq!(status.code(), Code::FailedPrecondition, "still known within retention");

    app.advance(2 * SECOND);
    app.service.sweep_once().await.expect("the sweep runs");

    let status = failure(app.sessions.get_session(pb::GetSessionRequest { session: by_id(&id) }).await);
    assert_eq!(status.code(), Code::NotFound);
    assert!(app.query_logs(by_session).await.records.is_empty());
    assert!(app.query_logs(pb::QueryLogsRequest::default()).await.records.is_empty());
    app.get(&survivor.token).await.expect("open sessions are never purged");
}
