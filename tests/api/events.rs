//! WatchSessions: every kind of event, filters, and resuming after a
//! sequence number without gaps.

use std::collections::HashMap;
use std::time::Duration;

use sessiond::pb;
use sessiond::pb::EventType as Type;
use sessiond::pb::SessionKind as Kind;

use crate::helpers::{
    PATIENCE, TestApp, assert_invalid, by_token, default_slack, failure, next_event, next_events, seconds, text,
};

fn everything() -> pb::WatchSessionsRequest {
    pb::WatchSessionsRequest::default()
}

fn id_of(created: &pb::CreateSessionResponse) -> String {
    created.session.as_ref().expect("the session is answered").session_id.clone()
}

fn types(events: &[pb::WatchSessionsResponse]) -> Vec<Type> {
    events.iter().map(|e| Type::try_from(e.r#type).expect("a known event type")).collect()
}

#[track_caller]
fn assert_consecutive(events: &[pb::WatchSessionsResponse]) {
    for pair in events.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence + 1, "{events:#?}");
    }
}

async fn put_storage(app: &mut TestApp, token: &str) {
    let request = pb::PutStorageRequest {
        session: by_token(token),
        values: HashMap::from([("k".to_owned(), text("v"))]),
        expected_version: None,
    };
    app.storage.put_storage(request).await.expect("PutStorage");
}

async fn set_privileges(app: &mut TestApp, token: &str) {
    let request =
        pb::SetPrivilegesRequest { session: by_token(token), privileges: vec!["viewBasic".into()], roles: vec![] };
    app.privileges.set_privileges(request).await.expect("SetPrivileges");
}

#[tokio::test]
async fn every_lifecycle_change_is_streamed_in_sequence() {
    let mut app = TestApp::spawn_with(|s| s.store.sweep_interval = Duration::from_secs(3600)).await;
    let mut events = app.watch(everything()).await;

    let closed = app.create(Kind::WebUser, "alice").await;
    set_privileges(&mut app, &closed.token).await;
    put_storage(&mut app, &closed.token).await;
    app.close(&closed.token, "").await;
    let revoked = app.create(Kind::RemoteUser, "bob").await;
    app.sessions
        .revoke_sessions(pb::RevokeSessionsRequest { session_ids: vec![id_of(&revoked)], ..Default::default() })
        .await
        .expect("RevokeSessions");
    let expired = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::WebCall.into(),
            idle_timeout: seconds(60),
            ..Default::default()
        })
        .await;
    app.advance(Duration::from_secs(60) + default_slack());
    app.service.sweep_once().await.expect("the sweep runs");

    let received = next_events(&mut events, 8).await;
    assert_eq!(
        types(&received),
        [
            Type::Created,
            Type::PrivilegesChanged,
            Type::StorageChanged,
            Type::Closed,
            Type::Created,
            Type::Revoked,
            Type::Created,
            Type::Expired
        ]
    );
    let (c, r, e) = (id_of(&closed), id_of(&revoked), id_of(&expired));
    let ids: Vec<&str> = received.iter().map(|e| e.session_id.as_str()).collect();
    assert_eq!(ids, [&c, &c, &c, &c, &r, &r, &e, &e]);
    assert_consecutive(&received);
    assert_eq!((received[0].user_id.as_str(), received[0].kind), ("alice", i32::from(Kind::WebUser)));
    assert_eq!(received[0].end_reason, i32::from(pb::EndReason::Unspecified));
    assert_eq!(received[3].end_reason, i32::from(pb::EndReason::Closed));
    assert_eq!((received[5].user_id.as_str(), received[5].end_reason), ("bob", i32::from(pb::EndReason::Revoked)));
    assert_eq!(received[7].end_reason, i32::from(pb::EndReason::IdleTimeout));
    assert_eq!(received[7].at, Some(app.now()));
}

#[tokio::test]
async fn a_watch_filtered_by_session_sees_only_that_sessions_events() {
    let mut app = TestApp::spawn().await;
    let watched = app.create(Kind::WebUser, "alice").await;
    let noise = app.create(Kind::WebUser, "alice").await;
    let mut events = app.watch(pb::WatchSessionsRequest { session_id: id_of(&watched), ..Default::default() }).await;

    put_storage(&mut app, &noise.token).await;
    put_storage(&mut app, &watched.token).await;
    set_privileges(&mut app, &noise.token).await;
    app.close(&noise.token, "").await;
    app.close(&watched.token, "").await;

    let received = next_events(&mut events, 2).await;
    assert_eq!(types(&received), [Type::StorageChanged, Type::Closed]);
    assert!(received.iter().all(|e| e.session_id == id_of(&watched)));
}

#[tokio::test]
async fn a_watch_filtered_by_user_or_kind_sees_only_matching_events() {
    let mut app = TestApp::spawn().await;
    let mut alices = app.watch(pb::WatchSessionsRequest { user_id: "alice".into(), ..Default::default() }).await;
    let mut remotes = app.watch(pb::WatchSessionsRequest { kind: Kind::RemoteUser.into(), ..Default::default() }).await;

    let bob_web = app.create(Kind::WebUser, "bob").await;
    let alice_web = app.create(Kind::WebUser, "alice").await;
    let bob_remote = app.create(Kind::RemoteUser, "bob").await;
    put_storage(&mut app, &bob_web.token).await;
    app.close(&bob_remote.token, "").await;
    app.close(&bob_web.token, "").await;
    app.close(&alice_web.token, "").await;

    let received = next_events(&mut alices, 2).await;
    assert_eq!(types(&received), [Type::Created, Type::Closed]);
    assert!(received.iter().all(|e| e.session_id == id_of(&alice_web) && e.user_id == "alice"));
    let received = next_events(&mut remotes, 2).await;
    assert_eq!(types(&received), [Type::Created, Type::Closed]);
    assert!(received.iter().all(|e| e.session_id == id_of(&bob_remote) && e.kind == i32::from(Kind::RemoteUser)));
}

#[tokio::test]
async fn resuming_after_the_last_sequence_seen_delivers_exactly_the_later_events() {
    let mut app = TestApp::spawn().await;
    let mut events = app.watch(everything()).await;
    let first = app.create(Kind::WebUser, "alice").await;
    put_storage(&mut app, &first.token).await;
    let seen = next_events(&mut events, 2).await;
    drop(events);

    let second = app.create(Kind::WebUser, "bob").await;
    set_privileges(&mut app, &first.token).await;
    app.close(&first.token, "").await;
    let last_seen = seen[1].sequence;
    let mut resumed =
        app.watch(pb::WatchSessionsRequest { after_sequence: Some(last_seen), ..Default::default() }).await;
    app.close(&second.token, "").await;

    let received = next_events(&mut resumed, 4).await;
    assert_eq!(received[0].sequence, last_seen + 1, "no gap after the last sequence seen");
    assert_consecutive(&received);
    assert_eq!(types(&received), [Type::Created, Type::PrivilegesChanged, Type::Closed, Type::Closed]);
    assert_eq!(received[0].session_id, id_of(&second));
    assert_eq!(received[3].session_id, id_of(&second), "recorded events first, then live ones");
}

#[tokio::test]
async fn resuming_from_zero_replays_every_retained_event() {
    let mut app = TestApp::spawn().await;
    let first = app.create(Kind::WebUser, "alice").await;
    let second = app.create(Kind::Internal, "bob").await;
    app.close(&first.token, "").await;

    let mut replay = app.watch(pb::WatchSessionsRequest { after_sequence: Some(0), ..Default::default() }).await;

    let received = next_events(&mut replay, 3).await;
    assert_eq!(received.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(types(&received), [Type::Created, Type::Created, Type::Closed]);
    assert_eq!(received[1].session_id, id_of(&second));
    app.close(&second.token, "").await;
    let live = next_event(&mut replay).await;
    assert_eq!((live.sequence, live.session_id), (4, id_of(&second)));
}

#[tokio::test]
async fn a_watch_without_a_sequence_starts_from_now() {
    let mut app = TestApp::spawn().await;
    app.create(Kind::WebUser, "before").await;
    let mut events = app.watch(everything()).await;

    let after = app.create(Kind::WebUser, "after").await;

    let event = next_event(&mut events).await;
    assert_eq!((event.sequence, event.session_id), (2, id_of(&after)));
}

#[tokio::test]
async fn sequence_numbers_go_on_across_a_restart() {
    let mut app = TestApp::spawn().await;
    let before = app.create(Kind::WebUser, "alice").await;
    let mut app = app.restart().await;

    let mut replay = app.watch(pb::WatchSessionsRequest { after_sequence: Some(0), ..Default::default() }).await;
    app.close(&before.token, "").await;

    let received = next_events(&mut replay, 2).await;
    assert_eq!(received.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(types(&received), [Type::Created, Type::Closed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_are_streamed_without_gaps_or_duplicates() {
    let mut app = TestApp::spawn().await;
    let mut events = app.watch(everything()).await;

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let mut sessions = app.sessions.clone();
            tokio::spawn(async move {
                let request = pb::CreateSessionRequest {
                    kind: Kind::WebUser.into(),
                    user_id: format!("user{i}"),
                    ..Default::default()
                };
                sessions
                    .create_session(request)
                    .await
                    .expect("created")
                    .into_inner()
                    .session
                    .expect("a session")
                    .session_id
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.expect("the task does not panic"));
    }

    let received = next_events(&mut events, 50).await;
    assert_eq!(received[0].sequence, 1);
    assert_consecutive(&received);
    let mut ids: Vec<String> = received.into_iter().map(|e| e.session_id).collect();
    ids.sort();
    created.sort();
    assert_eq!(ids, created);
}

/// A server whose first two events have been purged, and the session of
/// its third, recent one.
async fn with_two_events_purged() -> (TestApp, pb::CreateSessionResponse) {
    let mut app = TestApp::spawn_with(|s| {
        s.store.event_retention = Duration::from_secs(3600);
        s.store.sweep_interval = Duration::from_secs(3600);
    })
    .await;
    app.create(Kind::StoredProcedure, "old").await;
    app.create(Kind::StoredProcedure, "old").await;
    app.advance(Duration::from_secs(3601));
    app.service.sweep_once().await.expect("the sweep runs");
    let recent = app.create(Kind::WebUser, "recent").await;
    (app, recent)
}

#[tokio::test]
async fn purged_events_are_not_replayed_and_numbering_goes_on() {
    let (mut app, recent) = with_two_events_purged().await;

    let mut replay = app.watch(pb::WatchSessionsRequest { after_sequence: Some(0), ..Default::default() }).await;

    let first = next_event(&mut replay).await;
    assert_eq!((first.sequence, first.session_id), (3, id_of(&recent)));
}

#[tokio::test]
async fn a_graceful_stop_ends_open_watches() {
    let mut app = TestApp::spawn().await;
    let mut events = app.watch(everything()).await;
    app.create(Kind::WebUser, "alice").await;
    next_event(&mut events).await;

    tokio::time::timeout(PATIENCE, app.stop()).await.expect("the server stops promptly despite an open watch");

    let after = tokio::time::timeout(PATIENCE, events.message()).await.expect("the watch ends promptly");
    assert!(!matches!(after, Ok(Some(_))), "no event after the stop: {after:?}");
}

#[tokio::test]
async fn a_malformed_session_id_filter_is_an_invalid_argument() {
    let mut app = TestApp::spawn().await;

    let status = failure(
        app.sessions.watch_sessions(pb::WatchSessionsRequest { session_id: "nope".into(), ..Default::default() }).await,
    );

    assert_invalid(&status, "session_id");
}

#[tokio::test]
async fn a_crash_recovery_is_recorded_as_closed_events() {
    let mut app = TestApp::spawn().await;
    let call = app.create(Kind::MethodCall, "alice").await;
    app.create(Kind::WebUser, "alice").await;

    let mut app = app.crash_and_restart().await;
    let mut replay = app.watch(pb::WatchSessionsRequest { after_sequence: Some(2), ..Default::default() }).await;

    let recovered = next_event(&mut replay).await;
    assert_eq!(recovered.sequence, 3);
    assert_eq!(recovered.r#type, i32::from(Type::Closed));
    assert_eq!(recovered.session_id, id_of(&call));
    assert_eq!(recovered.end_reason, i32::from(pb::EndReason::ServerCrashed));
}

/// The status a watch from `after_sequence` is refused with.
async fn refused_watch(app: &mut TestApp, after_sequence: u64) -> tonic::Status {
    let request = pb::WatchSessionsRequest { after_sequence: Some(after_sequence), ..Default::default() };
    match app.sessions.watch_sessions(request).await {
        Err(status) => status,
        Ok(stream) => {
            let mut stream = stream.into_inner();
            let first = tokio::time::timeout(PATIENCE, stream.message()).await.expect("the watch answers promptly");
            first.expect_err("a watch out of range is refused")
        }
    }
}

/// The ErrorInfo metadata of `status`, for `key`.
fn metadata(status: &tonic::Status, key: &str) -> Option<String> {
    use tonic_types::StatusExt as _;
    status.get_error_details().error_info().and_then(|info| info.metadata.get(key).cloned())
}

#[tokio::test]
async fn a_watch_resuming_beyond_the_latest_event_is_out_of_range_naming_the_latest() {
    let mut app = TestApp::spawn().await;
    app.create(Kind::WebUser, "alice").await;
    app.create(Kind::WebUser, "bob").await;

    let status = refused_watch(&mut app, 7).await;
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert_eq!(crate::helpers::error_reason(&status).as_deref(), Some("CURSOR_AHEAD"), "{status:?}");
    assert_eq!(metadata(&status, "latest_sequence").as_deref(), Some("2"));
    assert_eq!(metadata(&status, "oldest_sequence").as_deref(), Some("1"));

    // The latest itself, or anything before it still kept, resumes.
    let mut events = app.watch(pb::WatchSessionsRequest { after_sequence: Some(2), ..Default::default() }).await;
    let carol = app.create(Kind::WebUser, "carol").await;
    assert_eq!(next_event(&mut events).await.session_id, id_of(&carol));
}

#[tokio::test]
async fn a_watch_resuming_from_purged_events_is_out_of_range_naming_the_oldest_kept() {
    let (mut app, recent) = with_two_events_purged().await;

    // Event 2 is gone: a consumer that saw only 1 has missed it.
    let status = refused_watch(&mut app, 1).await;
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert_eq!(crate::helpers::error_reason(&status).as_deref(), Some("CURSOR_EXPIRED"), "{status:?}");
    assert_eq!(metadata(&status, "oldest_sequence").as_deref(), Some("3"));
    assert_eq!(metadata(&status, "latest_sequence").as_deref(), Some("3"));

    // One that saw 2 missed nothing; zero replays what is kept.
    let mut events = app.watch(pb::WatchSessionsRequest { after_sequence: Some(2), ..Default::default() }).await;
    assert_eq!(next_event(&mut events).await.session_id, id_of(&recent));
    let mut replay = app.watch(pb::WatchSessionsRequest { after_sequence: Some(0), ..Default::default() }).await;
    assert_eq!(next_event(&mut replay).await.session_id, id_of(&recent));
}

#[tokio::test]
async fn a_watch_ends_once_its_connection_is_past_its_age_and_grace_and_resumes_by_sequence() {
    let (age, grace) = (Duration::from_secs(1), Duration::from_secs(1));
    let mut app = TestApp::spawn_with(|s| {
        s.transport.max_connection_age = age;
        s.transport.max_connection_age_grace = grace;
    })
    .await;
    let started = std::time::Instant::now();
    let mut events = app.watch(pb::WatchSessionsRequest { after_sequence: Some(0), ..Default::default() }).await;
    app.create(Kind::WebUser, "alice").await;
    let seen = next_event(&mut events).await.sequence;

    let ended = tokio::time::timeout(age + grace + PATIENCE, async {
        loop {
            match events.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the watch ends once the connection's age and grace have passed");
    assert!(started.elapsed() >= age + grace, "not before both have passed");
    // The connection is closed under the stream: the client's transport
    // reports it (tonic: UNKNOWN, "error reading a body from connection").
    let status = ended.expect("the stream ends with an error, not as if complete");
    assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");

    // The client reconnects and resumes after the last sequence it saw.
    let missed = app.create(Kind::WebUser, "bob").await;
    let mut resumed = app.watch(pb::WatchSessionsRequest { after_sequence: Some(seen), ..Default::default() }).await;
    let next = next_event(&mut resumed).await;
    assert_eq!((next.sequence, next.session_id), (seen + 1, id_of(&missed)));
}
