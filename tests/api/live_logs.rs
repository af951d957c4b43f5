//! Logs while they happen: entries of open sessions logged continuously,
//! logs kept for an entry's level, FollowLogs from now and from a cursor,
//! and the refusals of bad cursors and filters.

use std::time::Duration;

use sessiond::pb;
use sessiond::pb::LogLevel as Level;
use sessiond::pb::SessionKind as Kind;

use crate::helpers::{TestApp, assert_invalid, entry, failure};

/// How long a follower may take to see an entry.
const PROMPTLY: Duration = Duration::from_secs(10);

fn messages(records: &[pb::LogRecord]) -> Vec<&str> {
    records.iter().map(|r| r.message.as_str()).collect()
}

async fn follow(app: &mut TestApp, request: pb::FollowLogsRequest) -> tonic::Streaming<pb::FollowLogsResponse> {
    app.logs.follow_logs(request).await.expect("the follow starts").into_inner()
}

/// The next message of a follow; fails the test if none comes promptly.
async fn next(follow: &mut tonic::Streaming<pb::FollowLogsResponse>) -> pb::FollowLogsResponse {
    tokio::time::timeout(PROMPTLY, follow.message())
        .await
        .expect("records arrive promptly")
        .expect("the follow does not fail")
        .expect("the follow does not end")
}

/// Reads a follow until it has delivered `n` records.
async fn next_records(follow: &mut tonic::Streaming<pb::FollowLogsResponse>, n: usize) -> (Vec<String>, String) {
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    while seen.len() < n {
        let message = next(follow).await;
        assert!(!message.records.is_empty(), "a message carries records");
        seen.extend(message.records.into_iter().map(|r| r.message));
        cursor = message.cursor;
    }
    (seen, cursor)
}

#[tokio::test]
async fn entries_of_open_long_lived_sessions_are_queryable_and_request_scoped_ones_are_not() {
    let mut app = TestApp::spawn().await;
    let user = app.create(Kind::WebUser, "alice").await;
    let stream = app.create(Kind::Streaming, "alice").await;
    let call = app.create(Kind::WebCall, "alice").await;
    app.log(&user.token, vec![entry(Level::Error, "user error")]).await;
    app.log(&stream.token, vec![entry(Level::Info, "stream info")]).await;
    app.log(&call.token, vec![entry(Level::Info, "call info")]).await;

    let answer = app.query_logs(pb::QueryLogsRequest::default()).await;
    assert_eq!(messages(&answer.records), ["user error", "stream info"]);
    assert!(answer.records.iter().all(|r| r.log_id.is_empty()), "open sessions have no kept log yet");
    assert!(answer.next_page_token.is_empty());
    assert!(!answer.cursor.is_empty(), "the cursor is always answered");

    let errors = pb::QueryLogsRequest { min_level: Level::Error.into(), ..Default::default() };
    assert_eq!(app.logged_messages(errors).await, ["user error"]);
}

#[tokio::test]
async fn the_continuous_kinds_setting_and_the_policy_file_choose_what_is_readable_while_open() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "overrides:\n  - { kind: web_call, endpoint: live, continuous: true }\n")
        .expect("the policy file is written");
    let mut app = TestApp::spawn_with(|s| {
        s.session_logs.continuous_kinds = "none".into();
        s.session_logs.policy_file = Some(policy);
    })
    .await;
    let user = app.create(Kind::WebUser, "alice").await;
    let live = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebCall.into(),
            labels: Some(pb::SessionLabels { endpoint: "live".into(), ..Default::default() }),
            ..Default::default()
        })
        .await;
    app.log(&user.token, vec![entry(Level::Info, "hidden")]).await;
    app.log(&live.token, vec![entry(Level::Info, "live")]).await;

    assert_eq!(app.logged_messages(pb::QueryLogsRequest::default()).await, ["live"]);
}

#[tokio::test]
async fn an_error_entry_keeps_the_log_of_a_sub_second_session_at_close() {
    let mut app = TestApp::spawn().await;
    let errored = app.create(Kind::MethodCall, "alice").await;
    let quiet = app.create(Kind::MethodCall, "alice").await;
    app.log(&errored.token, vec![entry(Level::Info, "start"), entry(Level::Error, "oops")]).await;
    app.log(&quiet.token, vec![entry(Level::Warning, "fine")]).await;
    assert_eq!(app.logged_messages(pb::QueryLogsRequest::default()).await, Vec::<String>::new());

    let kept = app.close(&errored.token, "").await;
    let dropped = app.close(&quiet.token, "").await;

    assert!(!kept.log_id.is_empty(), "an ERROR entry keeps the log of a clean, fast session");
    assert!(dropped.log_id.is_empty(), "a warning does not");
    let records = app.query_logs(pb::QueryLogsRequest::default()).await.records;
    assert_eq!(messages(&records), ["start", "oops"]);
    assert!(records.iter().all(|r| r.log_id == kept.log_id));
}

#[tokio::test]
async fn the_keep_level_setting_chooses_the_level_that_keeps_a_log() {
    let mut app = TestApp::spawn_with(|s| s.session_logs.keep_level = sessiond::settings::KeepLevel::None).await;
    let errored = app.create(Kind::MethodCall, "alice").await;
    app.log(&errored.token, vec![entry(Level::Fatal, "down")]).await;
    assert!(app.close(&errored.token, "").await.log_id.is_empty(), "no level keeps a log");

    let mut app = TestApp::spawn_with(|s| s.session_logs.keep_level = sessiond::settings::KeepLevel::Warning).await;
    let warned = app.create(Kind::MethodCall, "alice").await;
    app.log(&warned.token, vec![entry(Level::Warning, "slowish")]).await;
    assert!(!app.close(&warned.token, "").await.log_id.is_empty());
}

#[tokio::test]
async fn a_follower_gets_entries_as_they_are_logged_and_kept_and_resumes_without_gap_or_duplicate() {
    let mut app = TestApp::spawn().await;
    let stream = app.create(Kind::Streaming, "alice").await;
    app.log(&stream.token, vec![entry(Level::Info, "before")]).await;
    let mut live = follow(&mut app, pb::FollowLogsRequest::default()).await;

    app.log(&stream.token, vec![entry(Level::Info, "s1"), entry(Level::Warning, "s2")]).await;
    let (seen, cursor) = next_records(&mut live, 2).await;
    assert_eq!(seen, ["s1", "s2"], "from now on: nothing logged before the follow began");

    let call = app.create(Kind::MethodCall, "bob").await;
    app.log(&call.token, vec![entry(Level::Error, "c1")]).await;
    app.log(&stream.token, vec![entry(Level::Info, "s3")]).await;
    let (seen, _) = next_records(&mut live, 1).await;
    assert_eq!(seen, ["s3"], "an open method call's entry is not readable yet");
    app.close(&call.token, "").await;
    let (seen, _) = next_records(&mut live, 1).await;
    assert_eq!(seen, ["c1"], "its log, kept at close for its error, follows");
    drop(live);

    app.log(&stream.token, vec![entry(Level::Info, "s4")]).await;
    let mut resumed = follow(&mut app, pb::FollowLogsRequest { cursor, ..Default::default() }).await;
    let (seen, _) = next_records(&mut resumed, 3).await;
    assert_eq!(seen, ["s3", "c1", "s4"], "everything after the cursor, once");

    let filtered = pb::FollowLogsRequest { min_level: Level::Error.into(), ..Default::default() };
    let mut errors = follow(&mut app, filtered).await;
    app.log(&stream.token, vec![entry(Level::Info, "quiet"), entry(Level::Error, "loud")]).await;
    let message = next(&mut errors).await;
    assert_eq!(messages(&message.records), ["loud"]);
}

#[tokio::test]
async fn a_follow_from_a_query_cursor_continues_where_the_query_ended() {
    let mut app = TestApp::spawn().await;
    let stream = app.create(Kind::Streaming, "alice").await;
    app.log(&stream.token, (1..=5).map(|i| entry(Level::Info, &format!("m{i}"))).collect()).await;

    let page = app.query_logs(pb::QueryLogsRequest { page_size: 3, ..Default::default() }).await;
    assert_eq!(messages(&page.records), ["m1", "m2", "m3"]);
    assert_eq!(page.next_page_token, page.cursor);
    let mut live = follow(&mut app, pb::FollowLogsRequest { cursor: page.cursor, ..Default::default() }).await;
    app.log(&stream.token, vec![entry(Level::Info, "m6")]).await;

    let (seen, _) = next_records(&mut live, 3).await;
    assert_eq!(seen, ["m4", "m5", "m6"]);
}

#[tokio::test]
async fn bad_cursors_and_filters_are_invalid_arguments_naming_the_field() {
    let mut app = TestApp::spawn().await;
    for cursor in ["garbage", "12", "1.2.3", "-1.5"] {
        let request = pb::FollowLogsRequest { cursor: cursor.into(), ..Default::default() };
        assert_invalid(&failure(app.logs.follow_logs(request).await), "cursor");
        let request = pb::QueryLogsRequest { page_token: cursor.into(), ..Default::default() };
        assert_invalid(&failure(app.logs.query_logs(request).await), "page_token");
    }
    let backwards = pb::FollowLogsRequest {
        start_time: Some(prost_types::Timestamp { seconds: 2_000_000_000, nanos: 0 }),
        end_time: Some(prost_types::Timestamp { seconds: 1_000_000_000, nanos: 0 }),
        ..Default::default()
    };
    assert_invalid(&failure(app.logs.follow_logs(backwards).await), "end_time");
    let unknown = pb::FollowLogsRequest { min_level: 42, session_id: "nope".into(), ..Default::default() };
    let status = failure(app.logs.follow_logs(unknown).await);
    assert_invalid(&status, "min_level");
    assert_invalid(&status, "session_id");
}

#[tokio::test]
async fn a_follow_ends_when_sessiond_shuts_down() {
    let mut app = TestApp::spawn().await;
    let mut live = follow(&mut app, pb::FollowLogsRequest::default()).await;
    app.service.begin_shutdown();
    let ended = tokio::time::timeout(PROMPTLY, live.message()).await.expect("the follow ends promptly");
    assert!(matches!(ended, Ok(None)), "{ended:?}");
}

#[tokio::test]
async fn queries_and_follows_narrowed_to_an_endpoint_answer_its_sessions_entries_alone() {
    let mut app = TestApp::spawn().await;
    let at = |endpoint: &str| pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "alice".into(),
        labels: Some(pb::SessionLabels { endpoint: endpoint.into(), ..Default::default() }),
        ..Default::default()
    };
    let checkout = app.sessions.create_session(at("checkout")).await.expect("created").into_inner();
    let health = app.sessions.create_session(at("health")).await.expect("created").into_inner();
    let narrowed = pb::FollowLogsRequest { endpoint: "checkout".into(), ..Default::default() };
    let mut live = follow(&mut app, narrowed).await;
    app.log(&health.token, vec![entry(Level::Info, "h1")]).await;
    app.log(&checkout.token, vec![entry(Level::Info, "c1")]).await;
    let (seen, _) = next_records(&mut live, 1).await;
    assert_eq!(seen, ["c1"], "the other endpoint's entry is not followed");

    let answer = app.query_logs(pb::QueryLogsRequest { endpoint: "checkout".into(), ..Default::default() }).await;
    assert_eq!(messages(&answer.records), ["c1"]);
    assert_eq!(answer.records[0].endpoint, "checkout");
    let request = pb::QueryLogsRequest { endpoint: "health".into(), user_id: "alice".into(), ..Default::default() };
    assert_eq!(messages(&app.query_logs(request).await.records), ["h1"]);
    let nowhere = pb::QueryLogsRequest { endpoint: "check".into(), ..Default::default() };
    assert!(app.query_logs(nowhere).await.records.is_empty(), "an endpoint matches exactly");
    let too_long = pb::QueryLogsRequest { endpoint: "x".repeat(2_000), ..Default::default() };
    assert_invalid(&failure(app.logs.query_logs(too_long).await), "endpoint");
}
