//! Creating, reading and touching sessions: tokens and ids, idle timeouts
//! that slide and lifetimes that do not, per-kind defaults, and invalid
//! input.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use sessiond::settings::Settings;
use sessiond::startup::Application;
use tonic::Code;

use crate::helpers::{
    TestApp, assert_ended, assert_invalid, by_id, by_token, default_slack, entry, error_reason, failure, seconds,
};

const SECOND: Duration = Duration::from_secs(1);

fn web_user(idle: i64, lifetime: i64) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "alice".into(),
        idle_timeout: seconds(idle),
        lifetime: seconds(lifetime),
        ..Default::default()
    }
}

#[tokio::test]
async fn creating_a_session_answers_a_256_bit_token_and_a_public_id() {
    let mut app = TestApp::spawn().await;

    let first = app.create(Kind::WebUser, "alice").await;
    let second = app.create(Kind::WebUser, "alice").await;

    for created in [&first, &second] {
        let secret = created.token.strip_prefix("sdt_").expect("the token starts with sdt_");
        assert_eq!(secret.len(), 43, "43 base64url characters");
        let bytes = URL_SAFE_NO_PAD.decode(secret).expect("the token is unpadded base64url");
        assert_eq!(bytes.len(), 32, "256 bits");
        let id = &created.session.as_ref().expect("the session is answered").session_id;
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
    }
    assert_ne!(first.token, second.token);
    assert_ne!(first.session.unwrap().session_id, second.session.unwrap().session_id);
}

#[tokio::test]
async fn a_session_is_found_by_token_and_by_id_with_its_duration_and_time_left() {
    let mut app = TestApp::spawn().await;
    let created = app.create_with(web_user(600, 3600)).await;
    let id = created.session.unwrap().session_id;

    app.advance(100 * SECOND);
    let session = app.get(&created.token).await.expect("the session is open");

    assert_eq!(session.session_id, id);
    assert_eq!(session.kind, i32::from(Kind::WebUser));
    assert_eq!(session.user_id, "alice");
    assert_eq!(session.state, i32::from(pb::SessionState::Open));
    assert_eq!(session.end_reason, i32::from(pb::EndReason::Unspecified));
    assert_eq!(session.ended_at, None);
    assert_eq!(session.idle_timeout, seconds(600));
    assert_eq!(session.lifetime, seconds(3600));
    assert_eq!(session.duration, seconds(100));
    assert_eq!(session.time_left, seconds(600), "the call itself counts as activity");
    assert_eq!(session.last_active_at, Some(app.now()));

    app.advance(100 * SECOND);
    let by_id = app
        .sessions
        .get_session(pb::GetSessionRequest { session: by_id(&id) })
        .await
        .expect("found by id")
        .into_inner();
    let session = by_id.session.unwrap();
    assert_eq!(session.session_id, id);
    assert_eq!(session.duration, seconds(200));
    assert_eq!(session.time_left, seconds(600));
}

#[tokio::test]
async fn time_left_is_bounded_by_the_lifetime_near_its_end() {
    let mut app = TestApp::spawn().await;
    let created = app.create_with(web_user(600, 1000)).await;

    app.advance(500 * SECOND);
    app.touch(&created.token).await.expect("still open");
    app.advance(400 * SECOND);
    let session = app.get(&created.token).await.expect("still open");

    assert_eq!(session.duration, seconds(900));
    assert_eq!(session.time_left, seconds(100), "the lifetime ends before the idle timeout would");
}

#[tokio::test]
async fn touching_slides_the_idle_timeout() {
    let mut app = TestApp::spawn().await;
    let created = app.create_with(web_user(60, 0)).await;

    for _ in 0..5 {
        app.advance(59 * SECOND);
        let touched = app.touch(&created.token).await.expect("touched within the idle timeout");
        let expected = prost_types::Timestamp { seconds: app.now().seconds + 60, ..app.now() };
        assert_eq!(touched.expires_at, Some(expected));
    }
    app.advance(59 * SECOND);
    let session = app.get(&created.token).await.expect("open 5 minutes after creation thanks to the touches");
    assert_eq!(session.state, i32::from(pb::SessionState::Open));
}

#[tokio::test]
async fn any_call_naming_a_session_slides_its_idle_timeout() {
    let mut app = TestApp::spawn().await;
    let created = app.create_with(web_user(60, 0)).await;
    let token = created.token.clone();

    app.advance(59 * SECOND);
    app.privileges
        .has_privilege(pb::HasPrivilegeRequest { session: by_token(&token), privilege: "viewBasic".into() })
        .await
        .expect("HasPrivilege on an open session");
    app.advance(59 * SECOND);
    app.storage
        .get_storage(pb::GetStorageRequest { session: by_token(&token), keys: vec![] })
        .await
        .expect("GetStorage");
    app.advance(59 * SECOND);
    app.log(&token, vec![entry(pb::LogLevel::Info, "still here")]).await;
    app.advance(59 * SECOND);
    app.privileges.get_privileges(pb::GetPrivilegesRequest { session: by_token(&token) }).await.expect("GetPrivileges");
    app.advance(59 * SECOND);

    app.get(&token).await.expect("every call slid the idle timeout");
}

#[tokio::test]
async fn a_session_idle_past_its_timeout_is_expired_and_never_revived() {
    let mut app = TestApp::spawn().await;
    let created = app.create_with(web_user(60, 0)).await;

    app.advance(59 * SECOND);
    app.touch(&created.token).await.expect("touched just in time");
    app.advance(60 * SECOND + default_slack());

    assert_ended(&failure(app.get(&created.token).await), "SESSION_EXPIRED");
    assert_ended(&failure(app.touch(&created.token).await), "SESSION_EXPIRED");
    app.advance(SECOND);
    assert_ended(&failure(app.get(&created.token).await), "SESSION_EXPIRED");
    let closed = app.close(&created.token, "").await;
    assert_eq!(closed.end_reason, i32::from(pb::EndReason::IdleTimeout));
}

#[tokio::test]
async fn the_lifetime_is_absolute_and_touching_does_not_extend_it() {
    let mut app = TestApp::spawn().await;
    let created = app.create_with(web_user(60, 120)).await;

    app.advance(50 * SECOND);
    app.touch(&created.token).await.expect("open");
    app.advance(50 * SECOND);
    app.touch(&created.token).await.expect("open");
    app.advance(19 * SECOND);
    app.touch(&created.token).await.expect("open one second before the lifetime");
    app.advance(SECOND);

    assert_ended(&failure(app.touch(&created.token).await), "SESSION_EXPIRED");
    let closed = app.close(&created.token, "").await;
    assert_eq!(closed.end_reason, i32::from(pb::EndReason::LifetimeReached));
}

#[tokio::test]
async fn internal_and_future_call_sessions_have_no_idle_timeout_by_default() {
    let mut app = TestApp::spawn().await;
    let internal = app.create(Kind::Internal, "").await;
    let future_call = app.create(Kind::FutureCall, "").await;

    for created in [&internal, &future_call] {
        let session = created.session.as_ref().unwrap();
        assert_eq!(session.idle_timeout, None);
        assert_eq!(session.lifetime, seconds(24 * 3600), "they still have a lifetime");
    }
    app.advance(Duration::from_secs(23 * 3600));

    app.get(&internal.token).await.expect("an internal session is not idle-timed");
    app.get(&future_call.token).await.expect("a future call session is not idle-timed");
}

#[tokio::test]
async fn each_kind_gets_its_default_timeouts() {
    let mut app = TestApp::spawn().await;

    let method_call = app.create(Kind::MethodCall, "").await.session.unwrap();
    assert_eq!((method_call.idle_timeout, method_call.lifetime), (seconds(300), seconds(3600)));
    let streaming = app.create(Kind::Streaming, "").await.session.unwrap();
    assert_eq!((streaming.idle_timeout, streaming.lifetime), (seconds(1800), seconds(24 * 3600)));
    let web_user = app.create(Kind::WebUser, "").await.session.unwrap();
    assert_eq!((web_user.idle_timeout, web_user.lifetime), (seconds(3600), seconds(30 * 24 * 3600)));
    let procedure = app.create(Kind::StoredProcedure, "").await.session.unwrap();
    assert_eq!((procedure.idle_timeout, procedure.lifetime), (None, None));
    assert_eq!(procedure.expires_at, None, "a session with no timeouts never expires");
    assert_eq!(procedure.time_left, None);
}

#[tokio::test]
async fn a_zero_idle_timeout_means_none() {
    let mut app = TestApp::spawn().await;
    let created = app.create_with(web_user(0, 0)).await;
    let session = created.session.unwrap();
    assert_eq!((session.idle_timeout, session.lifetime), (None, None));

    app.advance(Duration::from_secs(400 * 24 * 3600));

    let session = app.get(&created.token).await.expect("a session without timeouts stays open");
    assert_eq!(session.time_left, None);
}

#[tokio::test]
async fn the_kind_timeouts_setting_overrides_a_kinds_default() {
    let mut app =
        TestApp::spawn_with(|s| s.limits.kind_timeouts = "web_user.idle=2m,internal.lifetime=none".into()).await;

    let web_user = app.create(Kind::WebUser, "").await;
    let internal = app.create(Kind::Internal, "").await;
    assert_eq!(web_user.session.as_ref().unwrap().idle_timeout, seconds(120));
    assert_eq!(internal.session.as_ref().unwrap().lifetime, None);

    app.advance(120 * SECOND + default_slack());
    assert_ended(&failure(app.get(&web_user.token).await), "SESSION_EXPIRED");
    app.advance(Duration::from_secs(48 * 3600));
    app.get(&internal.token).await.expect("the internal session has no lifetime any more");
}

#[tokio::test]
async fn an_unspecified_kind_is_an_invalid_argument_naming_kind() {
    let mut app = TestApp::spawn().await;

    let status = failure(app.sessions.create_session(pb::CreateSessionRequest::default()).await);

    assert_invalid(&status, "kind");
}

#[tokio::test]
async fn a_malformed_token_is_an_invalid_argument_naming_session_token() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebUser, "alice").await;
    let truncated = &created.token[..created.token.len() - 1];

    for token in [truncated, "not-a-token", "", &created.token.replace("sdt_", "xyz_")] {
        let status = failure(app.get(token).await);
        assert_invalid(&status, "session.token");
    }
    let status = failure(app.sessions.get_session(pb::GetSessionRequest { session: by_id("ABC") }).await);
    assert_invalid(&status, "session.session_id");
    let status = failure(app.sessions.get_session(pb::GetSessionRequest { session: None }).await);
    assert_invalid(&status, "session");
}

#[tokio::test]
async fn a_negative_timeout_is_an_invalid_argument_naming_it() {
    let mut app = TestApp::spawn().await;

    let status = failure(app.sessions.create_session(web_user(-5, 3600)).await);
    assert_invalid(&status, "idle_timeout");
    let status = failure(app.sessions.create_session(web_user(60, -1)).await);
    assert_invalid(&status, "lifetime");
}

#[tokio::test]
async fn several_invalid_fields_are_named_at_once() {
    let mut app = TestApp::spawn().await;
    let request = pb::CreateSessionRequest { idle_timeout: seconds(-1), lifetime: seconds(-1), ..Default::default() };

    let status = failure(app.sessions.create_session(request).await);

    for field in ["kind", "idle_timeout", "lifetime"] {
        assert_invalid(&status, field);
    }
}

#[tokio::test]
async fn only_stored_procedure_and_standalone_sessions_may_be_trusted() {
    let mut app = TestApp::spawn().await;

    let request = pb::CreateSessionRequest { kind: Kind::WebUser.into(), trusted: true, ..Default::default() };
    assert_invalid(&failure(app.sessions.create_session(request).await), "trusted");

    for kind in [Kind::StoredProcedure, Kind::Standalone] {
        let request = pb::CreateSessionRequest { kind: kind.into(), trusted: true, ..Default::default() };
        let created = app.create_with(request).await;
        assert!(created.session.unwrap().trusted);
    }
}

#[tokio::test]
async fn an_overlong_user_id_is_an_invalid_argument_naming_user_id() {
    let mut app = TestApp::spawn_with(|s| s.limits.max_text_bytes = 16).await;

    let request =
        pb::CreateSessionRequest { kind: Kind::WebUser.into(), user_id: "u".repeat(17), ..Default::default() };
    assert_invalid(&failure(app.sessions.create_session(request).await), "user_id");

    let created = app.create(Kind::WebUser, &"u".repeat(16)).await;
    assert_eq!(created.session.unwrap().user_id, "u".repeat(16));
}

#[tokio::test]
async fn an_unknown_session_id_or_token_is_not_found() {
    let mut app = TestApp::spawn().await;

    let status = failure(app.sessions.get_session(pb::GetSessionRequest { session: by_id(&"0".repeat(32)) }).await);
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status).as_deref(), Some("SESSION_NOT_FOUND"));

    let unknown_token = format!("sdt_{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    let status = failure(app.get(&unknown_token).await);
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status).as_deref(), Some("SESSION_NOT_FOUND"));
}

#[tokio::test]
async fn labels_round_trip_and_an_overlong_label_is_named() {
    let mut app = TestApp::spawn_with(|s| s.limits.max_text_bytes = 32).await;
    let labels = pb::SessionLabels {
        endpoint: "orders".into(),
        method: "place".into(),
        future_call: "nightly".into(),
        client_address: "10.0.0.7:5123".into(),
        user_agent: "curl/8".into(),
    };

    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::MethodCall.into(),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await;
    assert_eq!(app.get(&created.token).await.expect("open").labels, Some(labels));

    let request = pb::CreateSessionRequest {
        kind: Kind::MethodCall.into(),
        labels: Some(pb::SessionLabels { user_agent: "a".repeat(33), ..Default::default() }),
        ..Default::default()
    };
    assert_invalid(&failure(app.sessions.create_session(request).await), "labels.user_agent");
}

#[tokio::test]
async fn timeouts_under_a_second_or_over_the_maximum_are_refused() {
    let mut app = TestApp::spawn().await;
    let half_a_second = Some(prost_types::Duration { seconds: 0, nanos: 500_000_000 });

    let request =
        pb::CreateSessionRequest { kind: Kind::WebUser.into(), idle_timeout: half_a_second, ..Default::default() };
    assert_invalid(&failure(app.sessions.create_session(request).await), "idle_timeout");
    assert_invalid(&failure(app.sessions.create_session(web_user(60, 400 * 24 * 3600)).await), "lifetime");
}

#[tokio::test]
async fn get_answers_when_the_session_will_expire() {
    let mut app = TestApp::spawn().await;
    let created = app.create_with(web_user(600, 3600)).await;
    let at_creation = app.now();
    assert_eq!(
        created.session.unwrap().expires_at,
        Some(prost_types::Timestamp { seconds: at_creation.seconds + 600, ..at_creation })
    );

    app.advance(100 * SECOND);
    let session = app.get(&created.token).await.expect("open");

    let now = app.now();
    assert_eq!(session.expires_at, Some(prost_types::Timestamp { seconds: now.seconds + 600, ..now }));
    assert_eq!(session.created_at, Some(at_creation));
}

#[tokio::test]
async fn a_malformed_kind_timeouts_setting_stops_start_up() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    for text in ["web_user.idle", "teleport.idle=1m", "web_user.idle=soon", "web_user.nap=1m"] {
        let mut settings =
            Settings::for_tests("127.0.0.1:0".parse().expect("a valid address"), dir.path().join("data"));
        settings.limits.kind_timeouts = text.into();
        assert!(Application::build(settings).await.is_err(), "{text:?} must stop start-up");
    }
}
