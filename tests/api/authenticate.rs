//! Authenticate: the one call a request handler makes — who the session's
//! user is and which privileges it holds — and its one answer for a token
//! the user must sign in again for.

use std::time::Duration;

use sessiond::domain::Token;
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tonic::Code;

use crate::helpers::{TestApp, assert_invalid, by_token, error_metadata, error_reason, failure, seconds};

fn authenticate(token: &str, privileges: &[&str]) -> pb::AuthenticateRequest {
    pb::AuthenticateRequest {
        token: token.to_owned(),
        privileges: privileges.iter().map(|p| (*p).to_owned()).collect(),
        min_sequence: 0,
    }
}

/// The ErrorInfo reason of an UNAUTHENTICATED answer; fails on any other code.
fn sign_in_again(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    error_reason(status).expect("an ErrorInfo")
}

#[tokio::test]
async fn answers_the_user_and_each_privilege_asked_in_one_call() {
    let mut app = TestApp::spawn().await;
    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebUser.into(),
            user_id: "alice".into(),
            roles: vec!["Manager".into()],
            idle_timeout: seconds(1800),
            ..Default::default()
        })
        .await;

    let answer = app
        .sessions
        .authenticate(authenticate(&created.token, &["viewBasic", "EDITSALES", "admin"]))
        .await
        .expect("Authenticate")
        .into_inner();
    let session = created.session.expect("a session");
    assert_eq!(answer.session_id, session.session_id);
    assert_eq!(answer.user_id, "alice");
    assert_eq!(answer.tenant, "default");
    assert_eq!(answer.kind(), Kind::WebUser);
    assert_eq!(answer.roles, ["manager"]);
    assert_eq!(answer.granted, [true, true, false], "in request order, names case-insensitive");
    assert!(!answer.all_granted);
    assert!(!answer.trusted);
    let expires = answer.expires_at.expect("an idle timeout gives an expiry");
    let now = app.now();
    assert_eq!(expires.seconds - now.seconds, 1800);

    let none_asked = app.sessions.authenticate(authenticate(&created.token, &[])).await.expect("Authenticate");
    assert!(none_asked.get_ref().granted.is_empty());
    assert!(none_asked.get_ref().all_granted, "nothing asked is all granted");
}

#[tokio::test]
async fn counts_as_activity_and_slides_the_idle_timeout() {
    let mut app = TestApp::spawn().await;
    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebUser.into(),
            user_id: "alice".into(),
            idle_timeout: seconds(60),
            ..Default::default()
        })
        .await;
    for _ in 0..3 {
        app.advance(Duration::from_secs(40));
        app.sessions.authenticate(authenticate(&created.token, &[])).await.expect("still open: activity slid it");
    }
    let session = app.get(&created.token).await.expect("open after 120 s of a 60 s idle timeout");
    assert_eq!(session.state(), pb::SessionState::Open);
}

#[tokio::test]
async fn every_token_the_user_cannot_use_is_unauthenticated_with_a_reason() {
    let mut app = TestApp::spawn().await;

    let missing = failure(app.sessions.authenticate(authenticate("", &[])).await);
    assert_eq!(sign_in_again(&missing), "TOKEN_MISSING");
    let malformed = failure(app.sessions.authenticate(authenticate("not-a-token", &[])).await);
    assert_eq!(sign_in_again(&malformed), "TOKEN_MALFORMED");
    assert!(!malformed.message().contains("not-a-token"), "the token is never echoed");

    // Well formed, but no session was ever given it.
    let forged = Token::generate();
    let not_found = failure(app.sessions.authenticate(authenticate(forged.expose(), &[])).await);
    assert_eq!(sign_in_again(&not_found), "SESSION_NOT_FOUND");

    let closed = app.create(Kind::WebUser, "carol").await.token;
    app.close(&closed, "").await;
    let status = failure(app.sessions.authenticate(authenticate(&closed, &[])).await);
    assert_eq!(sign_in_again(&status), "SESSION_CLOSED");
    assert_eq!(error_metadata(&status, "end_reason").as_deref(), Some("closed"));

    let revoked = app.create(Kind::WebUser, "dave").await;
    let revoked_id = revoked.session.expect("a session").session_id;
    app.sessions
        .revoke_sessions(pb::RevokeSessionsRequest { session_ids: vec![revoked_id], ..Default::default() })
        .await
        .expect("RevokeSessions");
    let status = failure(app.sessions.authenticate(authenticate(&revoked.token, &[])).await);
    assert_eq!(sign_in_again(&status), "SESSION_REVOKED");

    let idle = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebUser.into(),
            user_id: "erin".into(),
            idle_timeout: seconds(60),
            ..Default::default()
        })
        .await
        .token;
    app.advance(Duration::from_secs(61) + crate::helpers::default_slack());
    let status = failure(app.sessions.authenticate(authenticate(&idle, &[])).await);
    assert_eq!(sign_in_again(&status), "SESSION_EXPIRED");
}

#[tokio::test]
async fn a_bad_privilege_name_is_the_callers_mistake_not_the_users() {
    let mut app = TestApp::spawn().await;
    let token = app.create(Kind::WebUser, "alice").await.token;
    let status = failure(app.sessions.authenticate(authenticate(&token, &["has space"])).await);
    assert_invalid(&status, "privileges[0]");
    let many: Vec<String> = (0..257).map(|i| format!("p{i}")).collect();
    let request = pb::AuthenticateRequest { token: token.clone(), privileges: many, min_sequence: 0 };
    assert_invalid(&failure(app.sessions.authenticate(request).await), "privileges");
    // The session is untouched by the refused calls.
    app.privileges.get_privileges(pb::GetPrivilegesRequest { session: by_token(&token) }).await.expect("still open");
}
