//! Quotas per tenant and per key: a tenant holding
//! `--max-open-sessions-per-tenant` open sessions is refused new ones with
//! RESOURCE_EXHAUSTED and a QuotaFailure on `tenant:<id>`, other tenants
//! are not, and a session that ends frees its place; a key holding its
//! streams open (`--max-streams-per-key`, or its entry's `max_streams`) is
//! refused another, and a stream that ends frees its slot.

use sessiond::auth::{generate_key, hash_key};
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

use crate::helpers::{PATIENCE, TestApp, by_token, error_metadata, error_reason, failure};

/// A server with the keys `acme` and `globex`, one per tenant.
struct Tenants {
    app: TestApp,
    acme: String,
    globex: String,
    _keys_file: tempfile::NamedTempFile,
}

/// `acme`'s entry allows it two streams.
async fn tenants(configure: impl FnOnce(&mut sessiond::settings::Settings)) -> Tenants {
    let (acme, globex) = (generate_key().0, generate_key().0);
    let keys_file = tempfile::NamedTempFile::new().expect("a temporary file");
    let keys = format!(
        "keys:\n  - {{name: acme, tenant: acme, role: admin, hash: \"{}\", max_streams: 2}}\n  - {{name: globex, tenant: globex, role: admin, hash: \"{}\"}}\n",
        hash_key(&acme),
        hash_key(&globex)
    );
    std::fs::write(keys_file.path(), keys).expect("the keys file is written");
    let path = keys_file.path().to_owned();
    let app = TestApp::spawn_with(|s| {
        s.api_keys_file = Some(path);
        configure(s);
    })
    .await;
    Tenants { app, acme, globex, _keys_file: keys_file }
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ASCII metadata"));
    request
}

async fn create(app: &mut TestApp, key: &str, kind: Kind) -> Result<pb::CreateSessionResponse, Status> {
    let request = pb::CreateSessionRequest { kind: kind.into(), user_id: "alice".into(), ..Default::default() };
    app.sessions.create_session(with_key(request, key)).await.map(|r| r.into_inner())
}

/// The refusal of a create over the tenant's quota, and what it says.
pub fn assert_tenant_session_quota(status: &Status, tenant: &str, limit: u64) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(status).as_deref(), Some("TENANT_SESSION_QUOTA"));
    assert_eq!(error_metadata(status, "max_open_sessions"), Some(limit.to_string()));
    let quota = status.get_error_details().quota_failure().cloned().expect("a QuotaFailure");
    assert_eq!(quota.violations.len(), 1);
    assert_eq!(quota.violations[0].subject, format!("tenant:{tenant}"));
    assert!(quota.violations[0].description.contains(&limit.to_string()), "{:?}", quota.violations[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_holding_its_open_sessions_is_refused_another_until_one_ends() {
    let Tenants { mut app, acme, globex, .. } = tenants(|s| s.max_open_sessions_per_tenant = 2).await;
    let first = create(&mut app, &acme, Kind::WebUser).await.expect("the first");
    create(&mut app, &acme, Kind::Standalone).await.expect("the second");

    let refused = failure(create(&mut app, &acme, Kind::StoredProcedure).await);
    assert_tenant_session_quota(&refused, "acme", 2);
    let listed = app
        .sessions
        .list_sessions(with_key(
            pb::ListSessionsRequest { state: pb::SessionState::Open.into(), ..Default::default() },
            &acme,
        ))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.sessions.len(), 2, "the refused create stored nothing");
    create(&mut app, &globex, Kind::WebUser).await.expect("another tenant has its own quota");

    let close = pb::CloseSessionRequest { session: by_token(&first.token), ..Default::default() };
    app.sessions.close_session(with_key(close, &acme)).await.expect("closed");
    create(&mut app, &acme, Kind::WebUser).await.expect("an ended session frees its place");
    assert_tenant_session_quota(&failure(create(&mut app, &acme, Kind::WebUser).await), "acme", 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_sessions_free_their_places_and_zero_means_no_quota() {
    let Tenants { mut app, acme, .. } = tenants(|s| s.max_open_sessions_per_tenant = 3).await;
    for _ in 0..3 {
        create(&mut app, &acme, Kind::WebUser).await.expect("within the quota");
    }
    assert_tenant_session_quota(&failure(create(&mut app, &acme, Kind::WebUser).await), "acme", 3);
    let revoke = pb::RevokeSessionsRequest { user_id: "alice".into(), ..Default::default() };
    app.sessions.revoke_sessions(with_key(revoke, &acme)).await.expect("revoked");
    for _ in 0..3 {
        create(&mut app, &acme, Kind::WebUser).await.expect("revoked sessions freed their places");
    }

    let Tenants { mut app, acme, .. } = tenants(|s| s.max_open_sessions_per_tenant = 0).await;
    for _ in 0..5 {
        create(&mut app, &acme, Kind::WebUser).await.expect("no quota");
    }
}

/// One of the streams a key may hold, started with `key`.
async fn open_stream(app: &mut TestApp, key: &str, which: usize) -> Result<Box<dyn std::any::Any + Send>, Status> {
    Ok(match which % 3 {
        0 => Box::new(app.sessions.watch_sessions(with_key(pb::WatchSessionsRequest::default(), key)).await?),
        1 => Box::new(app.logs.follow_logs(with_key(pb::FollowLogsRequest::default(), key)).await?),
        _ => {
            let channel = pb::ChannelSubscription { channel: "room".into(), after_sequence: None };
            let request = pb::SubscribeRequest { channels: vec![channel] };
            Box::new(app.messages.subscribe(with_key(request, key)).await?)
        }
    })
}

fn assert_key_stream_quota(status: &Status, key: &str, limit: usize) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(status).as_deref(), Some("KEY_STREAM_QUOTA"));
    assert_eq!(error_metadata(status, "max_streams"), Some(limit.to_string()));
    let quota = status.get_error_details().quota_failure().cloned().expect("a QuotaFailure");
    assert_eq!(quota.violations[0].subject, format!("api-key:{key}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holding_its_streams_is_refused_another_until_one_ends() {
    let Tenants { mut app, acme, globex, .. } = tenants(|s| s.max_streams_per_key = 3).await;
    // acme's entry allows it two streams, whatever their method.
    let watch = open_stream(&mut app, &acme, 0).await.expect("the first stream");
    let _follow = open_stream(&mut app, &acme, 1).await.expect("the second stream");
    for which in 0..3 {
        let refused = failure(open_stream(&mut app, &acme, which).await);
        assert_key_stream_quota(&refused, "acme", 2);
    }
    create(&mut app, &acme, Kind::WebUser).await.expect("unary calls are not streams");
    // globex has the flag's three.
    let mut others = Vec::new();
    for which in 0..3 {
        others.push(open_stream(&mut app, &globex, which).await.expect("another key's streams"));
    }
    assert_key_stream_quota(&failure(open_stream(&mut app, &globex, 2).await), "globex", 3);

    // The slot is free once the server has seen the stream end, a moment
    // after the client drops it.
    drop(watch);
    let deadline = std::time::Instant::now() + PATIENCE;
    let _third = loop {
        match open_stream(&mut app, &acme, 2).await {
            Ok(stream) => break stream,
            Err(status) if std::time::Instant::now() < deadline => {
                assert_key_stream_quota(&status, "acme", 2);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(status) => panic!("an ended stream did not free its slot: {status:?}"),
        }
    };
    assert_key_stream_quota(&failure(open_stream(&mut app, &acme, 0).await), "acme", 2);
}
