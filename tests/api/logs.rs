//! Session logs: writing (unary and streamed), the level filter, querying
//! kept logs with every filter and paging, and durability across restarts
//! and crashes.

use std::collections::HashSet;
use std::time::Duration;

use sessiond::pb;
use sessiond::pb::LogLevel as Level;
use sessiond::pb::SessionKind as Kind;
use sessiond::settings::Settings;
use sessiond::startup::Application;

use crate::helpers::{TestApp, assert_invalid, by_id, by_token, entry, failure};

fn for_session(session_id: &str) -> pb::QueryLogsRequest {
    pb::QueryLogsRequest { session_id: session_id.into(), ..Default::default() }
}

fn ended() -> pb::ListSessionsRequest {
    pb::ListSessionsRequest { state: pb::SessionState::Ended.into(), ..Default::default() }
}

fn stream_message(session: Option<pb::SessionRef>, entries: Vec<pb::LogEntry>) -> pb::StreamLogRequest {
    pb::StreamLogRequest { session, entries, ..Default::default() }
}

#[tokio::test]
async fn client_times_are_kept_and_answered_to_the_microsecond() {
    let mut app = TestApp::spawn_with(|s| s.session_logs.keep_all = true).await;
    let created = app.create(Kind::WebUser, "alice").await;
    let id = created.session.unwrap().session_id;
    let sent = prost_types::Timestamp { seconds: 1_700_000_000, nanos: 123_456_789 };
    let timed = pb::LogEntry { client_time: Some(sent), ..entry(Level::Info, "timed") };
    app.log(&created.token, vec![timed]).await;
    app.close(&created.token, "").await;

    let mut app = app.restart().await;

    let records = app.query_logs(for_session(&id)).await.records;
    let kept = prost_types::Timestamp { seconds: 1_700_000_000, nanos: 123_456_000 };
    assert_eq!(records[0].client_time, Some(kept), "microseconds kept, finer digits dropped");
}

#[tokio::test]
async fn log_stores_entries_at_or_above_the_minimum_level_and_answers_their_count() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::MethodCall, "alice").await;
    let id = created.session.unwrap().session_id;
    let client_time = prost_types::Timestamp { seconds: 1_600_000_000, nanos: 123_000_000 };
    let detailed = pb::LogEntry {
        level: Level::Fatal.into(),
        message: "down".into(),
        exception: "OutOfCheese".into(),
        stack_trace: "at cheese()".into(),
        client_time: Some(client_time),
    };

    let accepted = app
        .log(
            &created.token,
            vec![entry(Level::Debug, "noise"), entry(Level::Info, "one"), entry(Level::Warning, "two"), detailed],
        )
        .await;
    let logged_at = app.now();
    app.close(&created.token, "failed").await;

    assert_eq!(accepted, 3, "the debug entry is under the default minimum level");
    let records = app.query_logs(for_session(&id)).await.records;
    assert_eq!(records.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(), ["one", "two", "down"]);
    assert_eq!(records.iter().map(|r| r.sequence).collect::<Vec<_>>(), [1, 2, 3]);
    let last = &records[2];
    assert_eq!(last.level, i32::from(Level::Fatal));
    assert_eq!((last.exception.as_str(), last.stack_trace.as_str()), ("OutOfCheese", "at cheese()"));
    assert_eq!(last.client_time, Some(client_time));
    assert_eq!(last.logged_at, Some(logged_at));
    assert_eq!(
        (last.session_id.as_str(), last.user_id.as_str(), last.kind),
        (id.as_str(), "alice", i32::from(Kind::MethodCall))
    );
}

#[tokio::test]
async fn the_log_min_level_setting_drops_entries_under_it() {
    let mut app = TestApp::spawn_with(|s| s.session_logs.min_level = sessiond::settings::Level::Warning).await;
    let created = app.create(Kind::MethodCall, "").await;

    let accepted = app.log(&created.token, vec![entry(Level::Info, "dropped"), entry(Level::Warning, "kept")]).await;

    assert_eq!(accepted, 1);
}

#[tokio::test]
async fn an_unspecified_level_is_an_invalid_argument_naming_the_entry() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::MethodCall, "").await;

    let status = failure(
        app.logs
            .log(pb::LogRequest {
                session: by_token(&created.token),
                entries: vec![entry(Level::Unspecified, "?")],
                ..Default::default()
            })
            .await,
    );
    assert_invalid(&status, "entries[0].level");

    let entries = vec![entry(Level::Info, "fine"), entry(Level::Unspecified, "?")];
    let status = failure(
        app.logs.log(pb::LogRequest { session: by_token(&created.token), entries, ..Default::default() }).await,
    );
    assert_invalid(&status, "entries[1].level");

    let bad_time =
        pb::LogEntry { client_time: Some(prost_types::Timestamp { seconds: 0, nanos: -1 }), ..entry(Level::Info, "?") };
    let status = failure(
        app.logs
            .log(pb::LogRequest { session: by_token(&created.token), entries: vec![bad_time], ..Default::default() })
            .await,
    );
    assert_invalid(&status, "entries[0].client_time");
}

#[tokio::test]
async fn a_log_page_token_not_from_an_earlier_answer_is_an_invalid_argument() {
    let mut app = TestApp::spawn().await;

    let status =
        failure(app.logs.query_logs(pb::QueryLogsRequest { page_token: "garbage".into(), ..Default::default() }).await);
    assert_invalid(&status, "page_token");
    let status =
        failure(app.logs.query_logs(pb::QueryLogsRequest { session_id: "nope".into(), ..Default::default() }).await);
    assert_invalid(&status, "session_id");
}

#[tokio::test]
async fn stream_log_stores_every_batch_of_the_session_named_first() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::MethodStream, "alice").await;
    let id = created.session.unwrap().session_id;
    let messages = vec![
        stream_message(by_token(&created.token), vec![entry(Level::Info, "a")]),
        stream_message(None, vec![entry(Level::Warning, "b"), entry(Level::Debug, "dropped")]),
        stream_message(by_token(&created.token), vec![entry(Level::Error, "c")]),
    ];

    let accepted = app.logs.stream_log(tokio_stream::iter(messages)).await.expect("the stream is stored").into_inner();
    app.close(&created.token, "failed").await;

    assert_eq!(accepted.accepted, 3);
    assert_eq!(app.logged_messages(for_session(&id)).await, ["a", "b", "c"]);
}

#[tokio::test]
async fn a_log_stream_may_not_switch_sessions() {
    let mut app = TestApp::spawn().await;
    let first = app.create(Kind::MethodStream, "").await;
    let second = app.create(Kind::MethodStream, "").await;
    let messages = vec![
        stream_message(by_token(&first.token), vec![entry(Level::Info, "a")]),
        stream_message(by_token(&second.token), vec![entry(Level::Info, "b")]),
    ];

    let status = failure(app.logs.stream_log(tokio_stream::iter(messages)).await);

    assert_invalid(&status, "session");
}

#[tokio::test]
async fn a_log_stream_may_name_its_session_again_by_id() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::MethodStream, "").await;
    let id = created.session.unwrap().session_id;
    let messages = vec![
        stream_message(by_token(&created.token), vec![entry(Level::Info, "a")]),
        stream_message(by_id(&id), vec![entry(Level::Info, "b")]),
    ];

    let accepted = app.logs.stream_log(tokio_stream::iter(messages)).await.expect("the same session, named by id");

    assert_eq!(accepted.into_inner().accepted, 2);
}

#[tokio::test]
async fn a_log_stream_that_names_no_session_is_an_invalid_argument() {
    let mut app = TestApp::spawn().await;

    let unnamed = vec![stream_message(None, vec![entry(Level::Info, "a")])];
    assert_invalid(&failure(app.logs.stream_log(tokio_stream::iter(unnamed)).await), "session");

    let empty: Vec<pb::StreamLogRequest> = Vec::new();
    assert_invalid(&failure(app.logs.stream_log(tokio_stream::iter(empty)).await), "session");
}

/// Three sessions: a fast failed web call of alice's, a slow clean method
/// call of bob's logged 10 s later, and a fast clean internal session of
/// alice's whose log is not kept (a warning keeps no log). Answers the first two ids and the time
/// between their entries.
async fn three_sessions(app: &mut TestApp) -> (String, String, prost_types::Timestamp) {
    let failed = app.create(Kind::WebCall, "alice").await;
    let slow = app.create(Kind::MethodCall, "bob").await;
    let dropped = app.create(Kind::Internal, "alice").await;
    app.log(&failed.token, vec![entry(Level::Info, "a1"), entry(Level::Error, "a2")]).await;
    app.log(&dropped.token, vec![entry(Level::Warning, "dropped")]).await;
    app.close(&failed.token, "it failed").await;
    app.close(&dropped.token, "").await;
    app.advance(Duration::from_secs(5));
    let between = app.now();
    app.advance(Duration::from_secs(5));
    app.log(&slow.token, vec![entry(Level::Warning, "b1")]).await;
    app.close(&slow.token, "").await;
    (failed.session.unwrap().session_id, slow.session.unwrap().session_id, between)
}

#[tokio::test]
async fn query_logs_filters_by_session_user_kind_and_level() {
    let mut app = TestApp::spawn().await;
    let (failed, slow, _) = three_sessions(&mut app).await;

    assert_eq!(app.logged_messages(pb::QueryLogsRequest::default()).await, ["a1", "a2", "b1"]);
    assert_eq!(app.logged_messages(for_session(&failed)).await, ["a1", "a2"]);
    assert_eq!(app.logged_messages(for_session(&slow)).await, ["b1"]);
    let alice = pb::QueryLogsRequest { user_id: "alice".into(), ..Default::default() };
    assert_eq!(app.logged_messages(alice).await, ["a1", "a2"], "the clean fast session's log was dropped");
    let method_calls = pb::QueryLogsRequest { kind: Kind::MethodCall.into(), ..Default::default() };
    assert_eq!(app.logged_messages(method_calls).await, ["b1"]);
    let warnings = pb::QueryLogsRequest { min_level: Level::Warning.into(), ..Default::default() };
    assert_eq!(app.logged_messages(warnings).await, ["a2", "b1"]);
    let nobody = pb::QueryLogsRequest { user_id: "carol".into(), ..Default::default() };
    assert!(app.logged_messages(nobody).await.is_empty());
}

#[tokio::test]
async fn query_logs_finds_failed_and_slow_sessions() {
    let mut app = TestApp::spawn().await;
    three_sessions(&mut app).await;

    let failed = pb::QueryLogsRequest { failed_only: true, ..Default::default() };
    assert_eq!(app.logged_messages(failed).await, ["a1", "a2"]);
    let slow = pb::QueryLogsRequest { slow_only: true, ..Default::default() };
    assert_eq!(app.logged_messages(slow).await, ["b1"], "open 10 s, over the 1 s threshold");
}

#[tokio::test]
async fn query_logs_filters_by_time_range() {
    let mut app = TestApp::spawn().await;
    let (_, _, between) = three_sessions(&mut app).await;

    let after = pb::QueryLogsRequest { start_time: Some(between), ..Default::default() };
    assert_eq!(app.logged_messages(after).await, ["b1"]);
    let before = pb::QueryLogsRequest { end_time: Some(between), ..Default::default() };
    assert_eq!(app.logged_messages(before).await, ["a1", "a2"]);
    let at_b1 = prost_types::Timestamp { seconds: between.seconds + 5, ..between };
    let from_b1 = pb::QueryLogsRequest { start_time: Some(at_b1), ..Default::default() };
    assert_eq!(app.logged_messages(from_b1).await, ["b1"], "the start is inclusive");
    let until_b1 = pb::QueryLogsRequest { start_time: Some(between), end_time: Some(at_b1), ..Default::default() };
    assert!(app.logged_messages(until_b1).await.is_empty(), "the end is exclusive");
}

#[tokio::test]
async fn query_logs_pages_without_duplicates_or_gaps() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::MethodCall, "alice").await;
    let id = created.session.unwrap().session_id;
    let entries = (1..=25).map(|i| entry(Level::Info, &format!("entry {i}"))).collect();
    assert_eq!(app.log(&created.token, entries).await, 25);
    app.close(&created.token, "failed").await;

    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .query_logs(pb::QueryLogsRequest {
                session_id: id.clone(),
                page_size: 10,
                page_token,
                ..Default::default()
            })
            .await;
        pages.push(page.records.iter().map(|r| r.sequence).collect::<Vec<_>>());
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        assert!(pages.len() < 10, "paging ends");
    }

    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    let sequences: Vec<u64> = pages.into_iter().flatten().collect();
    assert_eq!(sequences, (1..=25).collect::<Vec<u64>>());
}

#[tokio::test]
async fn an_acknowledged_log_survives_a_restart() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebUser, "alice").await;
    let id = created.session.unwrap().session_id;
    app.log(&created.token, vec![entry(Level::Info, "before the restart")]).await;

    let mut app = app.restart().await;
    app.log(&created.token, vec![entry(Level::Info, "after the restart")]).await;
    app.close(&created.token, "failed").await;

    let records = app.query_logs(for_session(&id)).await.records;
    assert_eq!(
        records.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
        ["before the restart", "after the restart"]
    );
    assert_eq!(records.iter().map(|r| r.sequence).collect::<Vec<_>>(), [1, 2], "numbering goes on");
}

#[tokio::test]
async fn an_acknowledged_log_survives_a_crash() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebUser, "alice").await;
    let id = created.session.unwrap().session_id;
    app.log(&created.token, vec![entry(Level::Info, "before the crash")]).await;

    let mut app = app.crash_and_restart().await;
    app.close(&created.token, "failed").await;

    assert_eq!(app.logged_messages(for_session(&id)).await, ["before the crash"]);
}

#[tokio::test]
async fn a_request_scoped_session_left_open_by_a_crash_ends_as_crashed_and_keeps_its_log() {
    let mut app = TestApp::spawn().await;
    let call = app.create(Kind::MethodCall, "alice").await;
    let user = app.create(Kind::WebUser, "alice").await;
    let call_id = call.session.unwrap().session_id;
    app.log(&call.token, vec![entry(Level::Info, "working"), entry(Level::Info, "still working")]).await;

    let mut app = app.crash_and_restart().await;

    let listed = app.list(ended()).await.sessions;
    assert_eq!(listed.iter().map(|s| s.session_id.as_str()).collect::<Vec<_>>(), [call_id.as_str()]);
    assert_eq!(listed[0].end_reason, i32::from(pb::EndReason::ServerCrashed));
    let closed = app.close(&call.token, "").await;
    assert_eq!(closed.end_reason, i32::from(pb::EndReason::ServerCrashed));
    assert!(!closed.log_id.is_empty(), "a crashed session's log explains the crash");
    let records = app.query_logs(for_session(&call_id)).await.records;
    assert_eq!(records.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(), ["working", "still working"]);
    assert!(records.iter().all(|r| r.log_id == closed.log_id));
    app.get(&user.token).await.expect("a web user session outlives a crash");
}

#[tokio::test]
async fn a_graceful_restart_ends_request_scoped_sessions_as_shutdown_and_keeps_user_sessions() {
    let mut app = TestApp::spawn().await;
    let mut calls = Vec::new();
    for kind in [Kind::MethodCall, Kind::WebCall, Kind::MethodStream, Kind::Streaming] {
        calls.push(app.create(kind, "").await);
    }
    let user = app.create(Kind::WebUser, "alice").await;
    let remote = app.create(Kind::RemoteUser, "bob").await;

    let mut app = app.restart().await;

    for call in &calls {
        let closed = app.close(&call.token, "").await;
        assert_eq!(closed.end_reason, i32::from(pb::EndReason::ServerShutdown));
    }
    let ended: HashSet<i32> = app.list(ended()).await.sessions.iter().map(|s| s.end_reason).collect();
    assert_eq!(ended, HashSet::from([i32::from(pb::EndReason::ServerShutdown)]));
    let session = app.get(&user.token).await.expect("a web user session outlives a restart");
    assert_eq!(session.state, i32::from(pb::SessionState::Open));
    app.get(&remote.token).await.expect("a remote user session outlives a restart");
}

#[tokio::test]
async fn log_limits_are_invalid_arguments_naming_the_entries() {
    let mut app = TestApp::spawn_with(|s| {
        s.session_logs.max_entries = 2;
        s.session_logs.max_message_bytes = 16;
    })
    .await;
    let created = app.create(Kind::MethodCall, "").await;
    let log = |entries| pb::LogRequest { session: by_token(&created.token), entries, ..Default::default() };

    let status = failure(
        app.logs.log(log(vec![entry(Level::Info, "1"), entry(Level::Info, "2"), entry(Level::Info, "3")])).await,
    );
    assert_invalid(&status, "entries");
    let long = pb::LogEntry { exception: "e".repeat(17), ..entry(Level::Info, "fine") };
    let status = failure(app.logs.log(log(vec![entry(Level::Info, &"m".repeat(17)), long])).await);
    assert_invalid(&status, "entries[0].message");
    assert_invalid(&status, "entries[1].exception");
    let status = failure(app.logs.log(log(vec![])).await);
    assert_invalid(&status, "entries");
}

#[tokio::test]
async fn a_log_policy_file_overrides_the_policy_per_endpoint_and_kind() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let policy = dir.path().join("log-policy.yaml");
    std::fs::write(
        &policy,
        "overrides:\n  - { endpoint: checkout, keep_all: true }\n  - { kind: web_call, endpoint: health, min_level: error }\n",
    )
    .expect("the file is written");
    let mut app = TestApp::spawn_with(|s| s.session_logs.policy_file = Some(policy)).await;
    let labelled = |kind: Kind, endpoint: &str| pb::CreateSessionRequest {
        kind: kind.into(),
        labels: Some(pb::SessionLabels { endpoint: endpoint.into(), ..Default::default() }),
        ..Default::default()
    };
    let checkout = app.create_with(labelled(Kind::MethodCall, "checkout")).await;
    let health = app.create_with(labelled(Kind::WebCall, "health")).await;
    let other = app.create_with(labelled(Kind::MethodCall, "other")).await;

    let accepted = app.log(&health.token, vec![entry(Level::Warning, "dropped"), entry(Level::Error, "kept")]).await;
    assert_eq!(accepted, 1, "the health endpoint logs errors only");
    app.log(&checkout.token, vec![entry(Level::Info, "paid")]).await;
    app.log(&other.token, vec![entry(Level::Info, "other")]).await;

    assert!(!app.close(&checkout.token, "").await.log_id.is_empty(), "checkout keeps every log");
    assert!(app.close(&other.token, "").await.log_id.is_empty(), "the default policy drops a fast clean log");
    let checkout_id = checkout.session.unwrap().session_id;
    assert_eq!(app.logged_messages(for_session(&checkout_id)).await, ["paid"]);
}

#[tokio::test]
async fn a_log_policy_file_with_an_unknown_override_field_stops_start_up() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let policy = dir.path().join("log-policy.yaml");
    std::fs::write(&policy, "overrides:\n  - { endpoint: checkout, keep_everything: true }\n")
        .expect("the file is written");
    let mut settings = Settings::for_tests("127.0.0.1:0".parse().expect("a valid address"), dir.path().join("data"));
    settings.session_logs.policy_file = Some(policy);

    assert!(Application::build(settings).await.is_err(), "a typo in a policy must not be silently ignored");
}

#[tokio::test]
async fn an_invalid_log_policy_file_stops_start_up() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let cases = [
        ("unknown-kind.yaml", "overrides:\n  - { kind: teleport, keep_all: true }\n"),
        ("unknown-top-level.yaml", "defaults: { keep_all: true }\n"),
        ("no-target.yaml", "overrides:\n  - { keep_all: true }\n"),
        ("not-yaml.yaml", "overrides: [\n"),
    ];
    for (name, text) in cases {
        let policy = dir.path().join(name);
        std::fs::write(&policy, text).expect("the file is written");
        let mut settings =
            Settings::for_tests("127.0.0.1:0".parse().expect("a valid address"), dir.path().join("data"));
        settings.session_logs.policy_file = Some(policy);
        assert!(Application::build(settings).await.is_err(), "{name} must stop start-up");
    }
}

#[tokio::test]
async fn text_with_a_nul_character_is_an_invalid_argument_naming_its_field() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebUser, "alice").await;
    let entry =
        pb::LogEntry { level: pb::LogLevel::Error.into(), message: "before\0after".into(), ..Default::default() };

    let status = failure(
        app.logs
            .log(pb::LogRequest { session: by_token(&created.token), entries: vec![entry], ..Default::default() })
            .await,
    );
    assert_invalid(&status, "entries[0].message");
    let request = pb::CreateSessionRequest { kind: Kind::WebUser.into(), user_id: "a\0b".into(), ..Default::default() };
    assert_invalid(&failure(app.sessions.create_session(request).await), "user_id");
}
