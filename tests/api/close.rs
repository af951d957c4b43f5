//! Closing sessions: the answer, idempotence, what a closed session refuses,
//! and which logs the log policy keeps.

use std::collections::HashMap;
use std::time::Duration;

use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tonic::Code;

use crate::helpers::{TestApp, assert_ended, by_id, by_token, entry, error_reason, failure, seconds, text};

fn for_session(session_id: &str) -> pb::QueryLogsRequest {
    pb::QueryLogsRequest { session_id: session_id.into(), ..Default::default() }
}

#[tokio::test]
async fn closing_a_session_answers_its_id_and_reason_closed() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebCall, "alice").await;

    let closed = app.close(&created.token, "").await;

    assert_eq!(closed.session_id, created.session.unwrap().session_id);
    assert_eq!(closed.end_reason, i32::from(pb::EndReason::Closed));
}

#[tokio::test]
async fn closing_twice_answers_as_the_first_close_did() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebCall, "alice").await;
    let id = created.session.unwrap().session_id;

    let first = app.close(&created.token, "it broke").await;
    app.advance(Duration::from_secs(5));
    let again_by_token = app.close(&created.token, "").await;
    let again_by_id = app
        .sessions
        .close_session(pb::CloseSessionRequest { session: by_id(&id), ..Default::default() })
        .await
        .expect("closing an ended session succeeds")
        .into_inner();

    assert_eq!(first.end_reason, i32::from(pb::EndReason::Failed));
    assert!(!first.log_id.is_empty());
    assert_eq!(again_by_token, first);
    assert_eq!(again_by_id, first);
}

#[tokio::test]
async fn every_call_on_a_closed_session_fails_with_session_closed() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebUser, "alice").await;
    let id = created.session.unwrap().session_id;
    app.close(&created.token, "").await;

    for session in [by_token(&created.token), by_id(&id)] {
        let s = || session.clone();
        let mut sessions = app.sessions.clone();
        let mut privileges = app.privileges.clone();
        let mut storage = app.storage.clone();
        let mut logs = app.logs.clone();
        let statuses = [
            ("GetSession", failure(sessions.get_session(pb::GetSessionRequest { session: s() }).await)),
            ("TouchSession", failure(sessions.touch_session(pb::TouchSessionRequest { session: s() }).await)),
            (
                "Log",
                failure(
                    logs.log(pb::LogRequest {
                        session: s(),
                        entries: vec![entry(pb::LogLevel::Error, "late")],
                        ..Default::default()
                    })
                    .await,
                ),
            ),
            (
                "HasPrivilege",
                failure(
                    privileges
                        .has_privilege(pb::HasPrivilegeRequest { session: s(), privilege: "viewBasic".into() })
                        .await,
                ),
            ),
            (
                "SetPrivileges",
                failure(
                    privileges
                        .set_privileges(pb::SetPrivilegesRequest {
                            session: s(),
                            privileges: vec!["viewBasic".into()],
                            roles: vec![],
                        })
                        .await,
                ),
            ),
            ("GetPrivileges", failure(privileges.get_privileges(pb::GetPrivilegesRequest { session: s() }).await)),
            (
                "Promote",
                failure(
                    privileges
                        .promote(pb::PromoteRequest { session: s(), privilege: "admin".into(), duration: seconds(60) })
                        .await,
                ),
            ),
            ("GetStorage", failure(storage.get_storage(pb::GetStorageRequest { session: s(), keys: vec![] }).await)),
            (
                "PutStorage",
                failure(
                    storage
                        .put_storage(pb::PutStorageRequest {
                            session: s(),
                            values: HashMap::from([("k".to_owned(), text("v"))]),
                            expected_version: None,
                        })
                        .await,
                ),
            ),
            (
                "ClearStorage",
                failure(storage.clear_storage(pb::ClearStorageRequest { session: s(), expected_version: None }).await),
            ),
            (
                "DeleteStorage",
                failure(
                    storage
                        .delete_storage(pb::DeleteStorageRequest {
                            session: s(),
                            keys: vec!["k".into()],
                            expected_version: None,
                        })
                        .await,
                ),
            ),
            (
                "CheckPrivileges",
                failure(
                    privileges
                        .check_privileges(pb::CheckPrivilegesRequest {
                            session: s(),
                            privileges: vec!["viewBasic".into()],
                            mode: pb::CheckMode::Any.into(),
                        })
                        .await,
                ),
            ),
            (
                "ClearPrivileges",
                failure(privileges.clear_privileges(pb::ClearPrivilegesRequest { session: s() }).await),
            ),
            (
                "StreamLog",
                failure(
                    logs.stream_log(tokio_stream::iter([pb::StreamLogRequest {
                        session: s(),
                        entries: vec![entry(pb::LogLevel::Error, "late")],
                        ..Default::default()
                    }]))
                    .await,
                ),
            ),
        ];
        for (call, status) in statuses {
            assert_eq!(status.code(), Code::FailedPrecondition, "{call}: {status:?}");
            assert_eq!(error_reason(&status).as_deref(), Some("SESSION_CLOSED"), "{call}");
        }
    }
}

#[tokio::test]
async fn closing_with_an_error_keeps_the_log_by_default() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::MethodCall, "alice").await;
    let id = created.session.unwrap().session_id;
    app.log(&created.token, vec![entry(pb::LogLevel::Info, "step one"), entry(pb::LogLevel::Error, "step two")]).await;

    let closed = app
        .sessions
        .close_session(pb::CloseSessionRequest {
            session: by_token(&created.token),
            error: "step two failed".into(),
            stack_trace: "at step_two()".into(),
        })
        .await
        .expect("the session closes")
        .into_inner();

    assert_eq!(closed.end_reason, i32::from(pb::EndReason::Failed));
    assert!(!closed.log_id.is_empty(), "a failed session's log is kept");
    let records = app.query_logs(for_session(&id)).await.records;
    assert_eq!(records.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(), ["step one", "step two"]);
    assert!(records.iter().all(|r| r.log_id == closed.log_id));
}

#[tokio::test]
async fn a_fast_clean_close_drops_the_log() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::MethodCall, "alice").await;
    let id = created.session.unwrap().session_id;
    // A warning: an ERROR entry would keep the log (`--session-log-keep-level`).
    app.log(&created.token, vec![entry(pb::LogLevel::Warning, "nothing to see")]).await;
    app.advance(Duration::from_millis(500));

    let closed = app.close(&created.token, "").await;

    assert_eq!(closed.end_reason, i32::from(pb::EndReason::Closed));
    assert_eq!(closed.log_id, "");
    assert!(app.query_logs(for_session(&id)).await.records.is_empty());
}

#[tokio::test]
async fn log_keep_all_keeps_the_log_of_a_clean_close() {
    let mut app = TestApp::spawn_with(|s| s.session_logs.keep_all = true).await;
    let created = app.create(Kind::MethodCall, "alice").await;
    let id = created.session.unwrap().session_id;
    app.log(&created.token, vec![entry(pb::LogLevel::Info, "kept anyway")]).await;

    let closed = app.close(&created.token, "").await;

    assert_eq!(closed.end_reason, i32::from(pb::EndReason::Closed));
    assert!(!closed.log_id.is_empty());
    assert_eq!(app.logged_messages(for_session(&id)).await, ["kept anyway"]);
}

#[tokio::test]
async fn closing_an_idle_expired_session_answers_idle_timeout() {
    let mut app = TestApp::spawn().await;
    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebUser.into(),
            idle_timeout: seconds(60),
            ..Default::default()
        })
        .await;
    app.advance(Duration::from_secs(61));

    let closed = app.close(&created.token, "closing too late").await;

    assert_eq!(closed.end_reason, i32::from(pb::EndReason::IdleTimeout));
    assert_ended(&failure(app.get(&created.token).await), "SESSION_EXPIRED");
}

#[tokio::test]
async fn closing_an_unknown_session_is_not_found() {
    let mut app = TestApp::spawn().await;

    let status = failure(
        app.sessions
            .close_session(pb::CloseSessionRequest { session: by_id(&"a".repeat(32)), ..Default::default() })
            .await,
    );

    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn an_overlong_close_error_is_an_invalid_argument_and_the_session_stays_open() {
    let mut app = TestApp::spawn_with(|s| s.limits.max_text_bytes = 32).await;
    let created = app.create(Kind::WebCall, "alice").await;

    let request = pb::CloseSessionRequest {
        session: by_token(&created.token),
        error: "e".repeat(33),
        stack_trace: String::new(),
    };
    let status = failure(app.sessions.close_session(request).await);

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(crate::helpers::bad_fields(&status), ["error"]);
    app.get(&created.token).await.expect("a refused close leaves the session open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_closes_end_the_session_once() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebCall, "alice").await;
    let id = created.session.unwrap().session_id;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;

    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let mut sessions = app.sessions.clone();
            let token = created.token.clone();
            tokio::spawn(async move {
                let error = if i % 2 == 0 { format!("failure {i}") } else { String::new() };
                let request = pb::CloseSessionRequest { session: by_token(&token), error, stack_trace: String::new() };
                sessions.close_session(request).await.expect("every close succeeds").into_inner()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("the task does not panic"));
    }
    let marker = app.create(Kind::WebCall, "marker").await;

    assert!(answers.iter().all(|a| *a == answers[0]), "every close answers as the one that ended it: {answers:#?}");
    assert_eq!(answers[0].session_id, id);
    let closed = crate::helpers::next_event(&mut events).await;
    assert_eq!((closed.r#type, closed.session_id.as_str()), (i32::from(pb::EventType::Closed), id.as_str()));
    let next = crate::helpers::next_event(&mut events).await;
    assert_eq!(next.session_id, marker.session.unwrap().session_id, "one closed event only");
}
