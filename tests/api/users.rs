//! Listing sessions by user, kind and state with paging, and revoking them.

use std::collections::HashSet;
use std::time::Duration;

use sessiond::pb;
use sessiond::pb::SessionKind as Kind;

use crate::helpers::{TestApp, assert_ended, assert_invalid, failure};

fn id_of(created: &pb::CreateSessionResponse) -> String {
    created.session.as_ref().expect("the session is answered").session_id.clone()
}

/// Every session matching `request`, page by page; answers the page sizes
/// and the ids in order.
async fn list_all(app: &mut TestApp, mut request: pb::ListSessionsRequest) -> (Vec<usize>, Vec<String>) {
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    loop {
        let page = app.list(request.clone()).await;
        sizes.push(page.sessions.len());
        ids.extend(page.sessions.into_iter().map(|s| s.session_id));
        if page.next_page_token.is_empty() {
            return (sizes, ids);
        }
        request.page_token = page.next_page_token;
        assert!(sizes.len() < 20, "paging ends");
    }
}

async fn revoke(app: &mut TestApp, request: pb::RevokeSessionsRequest) -> HashSet<String> {
    app.sessions.revoke_sessions(request).await.expect("RevokeSessions").into_inner().session_ids.into_iter().collect()
}

#[tokio::test]
async fn listing_by_user_pages_through_every_session_without_duplicates() {
    let mut app = TestApp::spawn().await;
    let mut alice = HashSet::new();
    for _ in 0..5 {
        // Created at the same instant: the order falls back on the id.
        alice.insert(id_of(&app.create(Kind::WebUser, "alice").await));
    }
    app.create(Kind::WebUser, "bob").await;
    app.create(Kind::WebUser, "bob").await;

    let (sizes, ids) =
        list_all(&mut app, pb::ListSessionsRequest { user_id: "alice".into(), page_size: 2, ..Default::default() })
            .await;

    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(ids.len(), 5);
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), alice);
}

#[tokio::test]
async fn sessions_are_listed_newest_first() {
    let mut app = TestApp::spawn().await;
    let mut created = Vec::new();
    for _ in 0..4 {
        created.push(id_of(&app.create(Kind::WebUser, "alice").await));
        app.advance(Duration::from_secs(1));
    }

    let (_, ids) = list_all(&mut app, pb::ListSessionsRequest { page_size: 3, ..Default::default() }).await;

    created.reverse();
    assert_eq!(ids, created);
}

#[tokio::test]
async fn listing_filters_by_kind_and_state() {
    let mut app = TestApp::spawn().await;
    let web = app.create(Kind::WebUser, "alice").await;
    let internal = app.create(Kind::Internal, "alice").await;
    let closed = app.create(Kind::WebUser, "alice").await;
    app.close(&closed.token, "").await;

    let (_, web_users) =
        list_all(&mut app, pb::ListSessionsRequest { kind: Kind::WebUser.into(), ..Default::default() }).await;
    assert_eq!(web_users.into_iter().collect::<HashSet<_>>(), HashSet::from([id_of(&web), id_of(&closed)]));

    let open = pb::ListSessionsRequest { state: pb::SessionState::Open.into(), ..Default::default() };
    let (_, open) = list_all(&mut app, open).await;
    assert_eq!(open.into_iter().collect::<HashSet<_>>(), HashSet::from([id_of(&web), id_of(&internal)]));

    let ended = pb::ListSessionsRequest {
        state: pb::SessionState::Ended.into(),
        kind: Kind::WebUser.into(),
        ..Default::default()
    };
    let page = app.list(ended).await;
    assert_eq!(page.sessions.len(), 1);
    assert_eq!(page.sessions[0].session_id, id_of(&closed));
    assert_eq!(page.sessions[0].state, i32::from(pb::SessionState::Ended));
    assert_eq!(page.sessions[0].end_reason, i32::from(pb::EndReason::Closed));
}

#[tokio::test]
async fn a_page_token_not_from_an_earlier_answer_is_an_invalid_argument() {
    let mut app = TestApp::spawn().await;

    let request = pb::ListSessionsRequest { page_token: "garbage".into(), ..Default::default() };
    let status = failure(app.sessions.list_sessions(request).await);

    assert_invalid(&status, "page_token");
}

#[tokio::test]
async fn revoking_by_user_ends_every_open_session_of_that_user() {
    let mut app = TestApp::spawn().await;
    let alice = [
        app.create(Kind::WebUser, "alice").await,
        app.create(Kind::RemoteUser, "alice").await,
        app.create(Kind::Internal, "alice").await,
    ];
    let already_closed = app.create(Kind::WebUser, "alice").await;
    app.close(&already_closed.token, "").await;
    let bob = app.create(Kind::WebUser, "bob").await;

    let revoked = revoke(&mut app, pb::RevokeSessionsRequest { user_id: "alice".into(), ..Default::default() }).await;

    assert_eq!(revoked, alice.iter().map(id_of).collect::<HashSet<_>>(), "only the sessions this call ended");
    for session in &alice {
        assert_ended(&failure(app.get(&session.token).await), "SESSION_REVOKED");
        let closed = app.close(&session.token, "").await;
        assert_eq!(closed.end_reason, i32::from(pb::EndReason::Revoked));
    }
    assert_eq!(app.close(&already_closed.token, "").await.end_reason, i32::from(pb::EndReason::Closed));
    app.get(&bob.token).await.expect("another user's session stays open");
    let again = revoke(&mut app, pb::RevokeSessionsRequest { user_id: "alice".into(), ..Default::default() }).await;
    assert!(again.is_empty(), "nothing left to revoke");
}

#[tokio::test]
async fn revoking_by_kind_ends_only_sessions_of_that_kind() {
    let mut app = TestApp::spawn().await;
    let remote = [app.create(Kind::RemoteUser, "alice").await, app.create(Kind::RemoteUser, "bob").await];
    let web = app.create(Kind::WebUser, "alice").await;

    let revoked =
        revoke(&mut app, pb::RevokeSessionsRequest { kind: Kind::RemoteUser.into(), ..Default::default() }).await;

    assert_eq!(revoked, remote.iter().map(id_of).collect::<HashSet<_>>());
    for session in &remote {
        assert_ended(&failure(app.get(&session.token).await), "SESSION_REVOKED");
    }
    app.get(&web.token).await.expect("a web user session stays open");
}

#[tokio::test]
async fn revoking_by_ids_ends_only_those_sessions() {
    let mut app = TestApp::spawn().await;
    let first = app.create(Kind::WebUser, "alice").await;
    let second = app.create(Kind::WebUser, "alice").await;
    let kept = app.create(Kind::WebUser, "alice").await;

    let request = pb::RevokeSessionsRequest { session_ids: vec![id_of(&first), id_of(&second)], ..Default::default() };
    let revoked = revoke(&mut app, request).await;

    assert_eq!(revoked, HashSet::from([id_of(&first), id_of(&second)]));
    assert_ended(&failure(app.get(&first.token).await), "SESSION_REVOKED");
    assert_ended(&failure(app.get(&second.token).await), "SESSION_REVOKED");
    app.get(&kept.token).await.expect("a session not named stays open");
}

#[tokio::test]
async fn revoking_combines_its_filters() {
    let mut app = TestApp::spawn().await;
    let alice_remote = app.create(Kind::RemoteUser, "alice").await;
    let alice_web = app.create(Kind::WebUser, "alice").await;
    let bob_remote = app.create(Kind::RemoteUser, "bob").await;

    let request =
        pb::RevokeSessionsRequest { user_id: "alice".into(), kind: Kind::RemoteUser.into(), ..Default::default() };
    let revoked = revoke(&mut app, request).await;

    assert_eq!(revoked, HashSet::from([id_of(&alice_remote)]));
    app.get(&alice_web.token).await.expect("another kind stays open");
    app.get(&bob_remote.token).await.expect("another user stays open");
}

#[tokio::test]
async fn revoking_without_any_filter_is_an_invalid_argument() {
    let mut app = TestApp::spawn().await;
    let session = app.create(Kind::WebUser, "alice").await;

    let status = failure(app.sessions.revoke_sessions(pb::RevokeSessionsRequest::default()).await);

    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    app.get(&session.token).await.expect("nothing was revoked");
    let status = failure(
        app.sessions
            .revoke_sessions(pb::RevokeSessionsRequest { session_ids: vec!["x".into()], ..Default::default() })
            .await,
    );
    assert_invalid(&status, "session_ids[0]");
}

#[tokio::test]
async fn a_page_is_capped_by_the_max_page_size_setting() {
    let mut app = TestApp::spawn_with(|s| s.limits.max_page_size = 3).await;
    for _ in 0..5 {
        app.create(Kind::WebUser, "alice").await;
    }

    let (sizes, ids) = list_all(&mut app, pb::ListSessionsRequest { page_size: 100, ..Default::default() }).await;

    assert_eq!(sizes, [3, 2]);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 5);
}
