//! Retries are safe: CreateSession, Log and StreamLog messages carrying a
//! `request_id` are applied once within the idempotency window, a retry is
//! answered the first answer, and a refused StreamLog says how much of it
//! was committed.

use std::time::Duration;

use sessiond::pb;
use sessiond::pb::LogLevel as Level;
use sessiond::pb::SessionKind as Kind;
use tonic::Code;

use crate::helpers::{
    TestApp, assert_ended, assert_invalid, by_id, by_token, entry, error_metadata, error_reason, failure, text,
};

fn create_request(request_id: &str, user: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: user.into(),
        storage: [("cart".to_owned(), text("book"))].into(),
        roles: vec!["Manager".into()],
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn log_request(token: &str, request_id: &str, messages: &[&str]) -> pb::LogRequest {
    pb::LogRequest {
        session: by_token(token),
        entries: messages.iter().map(|m| entry(Level::Warning, m)).collect(),
        request_id: request_id.into(),
    }
}

fn stream_message(session: Option<pb::SessionRef>, request_id: &str, messages: &[&str]) -> pb::StreamLogRequest {
    pb::StreamLogRequest {
        session,
        entries: messages.iter().map(|m| entry(Level::Warning, m)).collect(),
        request_id: request_id.into(),
    }
}

/// Every session of the (open-mode) tenant.
async fn all_sessions(app: &mut TestApp) -> Vec<pb::Session> {
    app.list(pb::ListSessionsRequest { page_size: 1000, ..Default::default() }).await.sessions
}

/// The messages a session logged, once it has ended with its log kept.
async fn logged(app: &mut TestApp, session_id: &str) -> Vec<String> {
    app.logged_messages(pb::QueryLogsRequest { session_id: session_id.into(), ..Default::default() }).await
}

#[tokio::test]
async fn a_create_retried_with_its_request_id_answers_the_same_session_and_token_and_creates_one() {
    let mut app = TestApp::spawn().await;
    let first = app.create_with(create_request("5d0f7a52-3c1e-4f7b-9b0e-2a9f1c6d8e41", "alice")).await;
    app.advance(Duration::from_secs(3));
    let retried = app.create_with(create_request("5d0f7a52-3c1e-4f7b-9b0e-2a9f1c6d8e41", "alice")).await;

    assert_eq!(retried.token, first.token);
    let (first, retried) = (first.session.expect("a session"), retried.session.expect("a session"));
    assert_eq!((&retried.session_id, &retried.created_at), (&first.session_id, &first.created_at));
    assert_eq!(all_sessions(&mut app).await.len(), 1);
    let another = app.create_with(create_request("another-request", "alice")).await;
    assert_ne!(another.session.expect("a session").session_id, first.session_id);
    assert_eq!(all_sessions(&mut app).await.len(), 2);
}

#[tokio::test]
async fn a_create_retried_after_its_session_closed_still_answers_it() {
    let mut app = TestApp::spawn().await;
    let first = app.create_with(create_request("closing", "alice")).await;
    app.close(&first.token, "").await;
    let retried = app.create_with(create_request("closing", "alice")).await;
    assert_eq!(retried.token, first.token);
    assert_eq!(retried.session.expect("a session").state, pb::SessionState::Ended as i32);
}

#[tokio::test]
async fn a_request_id_reused_for_another_request_is_refused() {
    let mut app = TestApp::spawn().await;
    let first = app.create_with(create_request("reused", "alice")).await;

    let status = failure(app.sessions.create_session(create_request("reused", "bob")).await);
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(error_reason(&status).as_deref(), Some("REQUEST_ID_REUSED"));
    let storage = pb::CreateSessionRequest {
        storage: [("cart".to_owned(), text("pen"))].into(),
        ..create_request("reused", "alice")
    };
    let status = failure(app.sessions.create_session(storage).await);
    assert_eq!(error_reason(&status).as_deref(), Some("REQUEST_ID_REUSED"));
    assert_eq!(all_sessions(&mut app).await.len(), 1);

    assert_eq!(
        app.logs.log(log_request(&first.token, "reused", &["a"])).await.expect("logged").into_inner().accepted,
        1
    );
    let status = failure(app.logs.log(log_request(&first.token, "reused", &["b"])).await);
    assert_eq!(error_reason(&status).as_deref(), Some("REQUEST_ID_REUSED"));
}

#[tokio::test]
async fn malformed_request_ids_are_invalid_arguments() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebCall, "alice").await;
    for bad in ["x".repeat(129), "caf\u{e9}".to_owned(), "tab\there".to_owned()] {
        assert_invalid(&failure(app.sessions.create_session(create_request(&bad, "alice")).await), "request_id");
        assert_invalid(&failure(app.logs.log(log_request(&created.token, &bad, &["a"])).await), "request_id");
        let stream = [stream_message(by_token(&created.token), &bad, &["a"])];
        assert_invalid(&failure(app.logs.stream_log(tokio_stream::iter(stream)).await), "request_id");
    }
    app.create_with(create_request(&"x".repeat(128), "alice")).await;
    app.create_with(create_request("a printable id, spaces too ~", "alice")).await;
}

#[tokio::test]
async fn after_the_idempotency_window_a_request_id_is_forgotten_and_purged() {
    let mut app = TestApp::spawn_with(|s| {
        s.store.idempotency_window = Duration::from_secs(3600);
        // Only this test's sweep purges.
        s.store.sweep_interval = Duration::from_secs(24 * 3600);
    })
    .await;
    let first = app.create_with(create_request("hourly", "alice")).await;
    app.advance(Duration::from_secs(3599));
    assert_eq!(app.create_with(create_request("hourly", "alice")).await.token, first.token, "still remembered");

    app.advance(Duration::from_secs(2));
    let report = app.service.sweep_once().await.expect("the sweep runs");
    assert_eq!(report.purged.requests, 1, "the record is purged");
    let second = app.create_with(create_request("hourly", "alice")).await;
    assert_ne!(second.token, first.token);
    assert_eq!(all_sessions(&mut app).await.len(), 2);
    let third = app.create_with(create_request("hourly", "alice")).await;
    assert_eq!(third.token, second.token, "the new create is remembered in turn");
}

#[tokio::test]
async fn a_log_retried_with_its_request_id_is_stored_once_per_session() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebCall, "alice").await;
    let other = app.create(Kind::WebCall, "alice").await;
    let request = log_request(&created.token, "log-1", &["one", "two"]);
    assert_eq!(app.logs.log(request.clone()).await.expect("logged").into_inner().accepted, 2);
    assert_eq!(app.logs.log(request.clone()).await.expect("retried").into_inner().accepted, 2);
    let by_session_id =
        pb::LogRequest { session: by_id(&created.session.clone().expect("a session").session_id), ..request };
    assert_eq!(app.logs.log(by_session_id).await.expect("retried by id").into_inner().accepted, 2);
    let elsewhere = log_request(&other.token, "log-1", &["one", "two"]);
    assert_eq!(app.logs.log(elsewhere).await.expect("another session's key").into_inner().accepted, 2);

    app.close(&created.token, "failed, so the log is kept").await;
    let retried = app.logs.log(log_request(&created.token, "log-1", &["one", "two"])).await;
    assert_eq!(retried.expect("the first answer, though the session has ended").into_inner().accepted, 2);
    let late = failure(app.logs.log(log_request(&created.token, "log-2", &["three"])).await);
    assert_ended(&late, "SESSION_CLOSED");
    app.close(&other.token, "failed").await;

    assert_eq!(logged(&mut app, &created.session.expect("a session").session_id).await, ["one", "two"]);
    assert_eq!(logged(&mut app, &other.session.expect("a session").session_id).await, ["one", "two"]);
}

#[tokio::test]
async fn a_stream_refused_at_its_second_message_keeps_the_first_and_counts_it() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebCall, "alice").await;
    let stranger = app.create(Kind::WebCall, "bob").await;
    let first = stream_message(by_token(&created.token), "m1", &["a", "b"]);
    let switching = vec![first.clone(), stream_message(by_token(&stranger.token), "m2", &["c"])];

    let status = failure(app.logs.stream_log(tokio_stream::iter(switching)).await);
    assert_invalid(&status, "session");
    assert_eq!(error_reason(&status).as_deref(), Some("STREAM_REFUSED"));
    assert_eq!(error_metadata(&status, "committed_messages").as_deref(), Some("1"));
    assert_eq!(error_metadata(&status, "committed_entries").as_deref(), Some("2"));

    // The client retries the whole stream, corrected: the first message is
    // answered, not stored again.
    let retried = vec![first, stream_message(None, "m2", &["c"])];
    let accepted = app.logs.stream_log(tokio_stream::iter(retried.clone())).await.expect("the retry is accepted");
    assert_eq!(accepted.into_inner().accepted, 3);
    app.close(&created.token, "failed").await;
    // Once more after the session ended: every message is answered its
    // first count, nothing is stored.
    let accepted = app.logs.stream_log(tokio_stream::iter(retried)).await.expect("the retry is answered");
    assert_eq!(accepted.into_inner().accepted, 3);
    assert_eq!(logged(&mut app, &created.session.expect("a session").session_id).await, ["a", "b", "c"]);
}

#[tokio::test]
async fn a_stream_message_is_validated_whole_before_any_of_it_is_stored() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebCall, "alice").await;
    let mut bad = stream_message(None, "", &["c", "d"]);
    bad.entries[1].level = Level::Unspecified.into();
    let messages = vec![stream_message(by_token(&created.token), "", &["a", "b"]), bad];

    let status = failure(app.logs.stream_log(tokio_stream::iter(messages)).await);
    assert_invalid(&status, "entries[1].level");
    assert_eq!(error_metadata(&status, "committed_messages").as_deref(), Some("1"));
    assert_eq!(error_metadata(&status, "committed_entries").as_deref(), Some("2"));

    app.close(&created.token, "failed").await;
    assert_eq!(logged(&mut app, &created.session.expect("a session").session_id).await, ["a", "b"]);
}

#[tokio::test]
async fn a_stream_refused_because_its_session_ended_keeps_the_reason_and_counts_what_was_committed() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebCall, "alice").await;
    app.log(&created.token, vec![entry(Level::Warning, "before")]).await;
    app.close(&created.token, "").await;
    let messages = vec![stream_message(by_token(&created.token), "", &["late"])];

    let status = failure(app.logs.stream_log(tokio_stream::iter(messages)).await);
    assert_ended(&status, "SESSION_CLOSED");
    assert_eq!(error_metadata(&status, "end_reason").as_deref(), Some("closed"));
    assert_eq!(error_metadata(&status, "committed_messages").as_deref(), Some("0"));
    assert_eq!(error_metadata(&status, "committed_entries").as_deref(), Some("0"));
}
