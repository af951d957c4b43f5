//! Quotas per tenant and per key: a tenant holding
//! `--max-open-sessions-per-tenant` open sessions is refused new ones with
//! RESOURCE_EXHAUSTED and a QuotaFailure on `tenant:<id>`, other tenants
//! are not, and a session that ends frees its place; a key holding its
//! streams open (`--max-streams-per-key`, or its entry's `max_streams`) is
//! refused another, and a stream that ends frees its slot; a Log batch
//! that would take a session's log past `--session-log-max-entries-per-session`
//! is refused whole, on its own or sharing a store batch with others; one
//! that would take its tenant past `--max-log-entries-per-tenant` is
//! refused with a QuotaFailure on `tenant:<id>` until a log goes.

use sessiond::auth::{generate_key, hash_key};
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::helpers::{PATIENCE, TestApp, by_token, error_metadata, error_reason, failure, with_key};

/// A server with the keys `acme` and `globex`, one per tenant.
struct Tenants {
    app: TestApp,
    acme: String,
    globex: String,
}

/// `acme`'s entry allows it two streams.
async fn tenants(configure: impl FnOnce(&mut sessiond::settings::Settings)) -> Tenants {
    let (acme, globex) = (generate_key().0, generate_key().0);
    let keys = format!(
        "keys:\n  - {{name: acme, tenant: acme, role: admin, hash: \"{}\", max_streams: 2}}\n  - {{name: globex, tenant: globex, role: admin, hash: \"{}\"}}\n",
        hash_key(&acme),
        hash_key(&globex)
    );
    let app = TestApp::spawn_with_keys_and(&keys, configure).await;
    Tenants { app, acme, globex }
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
    let Tenants { mut app, acme, globex, .. } = tenants(|s| s.limits.max_open_sessions_per_tenant = 2).await;
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
    let Tenants { mut app, acme, .. } = tenants(|s| s.limits.max_open_sessions_per_tenant = 3).await;
    for _ in 0..3 {
        create(&mut app, &acme, Kind::WebUser).await.expect("within the quota");
    }
    assert_tenant_session_quota(&failure(create(&mut app, &acme, Kind::WebUser).await), "acme", 3);
    let revoke = pb::RevokeSessionsRequest { user_id: "alice".into(), ..Default::default() };
    app.sessions.revoke_sessions(with_key(revoke, &acme)).await.expect("revoked");
    for _ in 0..3 {
        create(&mut app, &acme, Kind::WebUser).await.expect("revoked sessions freed their places");
    }

    let Tenants { mut app, acme, .. } = tenants(|s| s.limits.max_open_sessions_per_tenant = 0).await;
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
    let Tenants { mut app, acme, globex, .. } = tenants(|s| s.limits.max_streams_per_key = 3).await;
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

/// The refusal of a Log batch over the session's log quota.
fn assert_session_log_quota(status: &Status, limit: u64) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(status).as_deref(), Some("SESSION_LOG_QUOTA"));
    assert_eq!(error_metadata(status, "max_entries"), Some(limit.to_string()));
    let quota = status.get_error_details().quota_failure().cloned().expect("a QuotaFailure");
    assert_eq!(quota.violations[0].subject, "session-log-entries");
}

/// `count` entries logged on each session of `tokens`, all at once.
async fn log_at_once(app: &TestApp, tokens: &[String], count: usize) -> Vec<Result<pb::LogResponse, Status>> {
    let calls: Vec<_> = tokens
        .iter()
        .map(|token| {
            let mut logs = app.logs.clone();
            let request = pb::LogRequest { session: by_token(token), entries: entries(count), ..Default::default() };
            tokio::spawn(async move { logs.log(request).await.map(|r| r.into_inner()) })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("the call does not panic"));
    }
    answers
}

fn entries(count: usize) -> Vec<pb::LogEntry> {
    (0..count).map(|i| crate::helpers::entry(pb::LogLevel::Info, &format!("entry {i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_would_take_a_sessions_log_past_its_quota_is_refused_whole() {
    let mut app = TestApp::spawn_with(|s| s.session_logs.max_entries_per_session = 5).await;
    // Sessions logging at once, so that on Postgres their appends share
    // the writers' batches as well as going alone.
    let mut sessions = Vec::new();
    for _ in 0..12 {
        sessions.push(app.create(Kind::Streaming, "alice").await);
    }
    let tokens: Vec<String> = sessions.iter().map(|s| s.token.clone()).collect();
    let first = log_at_once(&app, &tokens, 4).await;
    assert!(first.iter().all(Result::is_ok), "four entries fit: {first:?}");
    for refused in log_at_once(&app, &tokens, 2).await {
        assert_session_log_quota(&refused.expect_err("six entries do not fit"), 5);
    }
    let last = log_at_once(&app, &tokens, 1).await;
    assert!(last.iter().all(Result::is_ok), "the fifth fits: {last:?}");
    assert_session_log_quota(&log_at_once(&app, &tokens[..1], 1).await[0].clone().expect_err("full"), 5);

    // Nothing of a refused batch was kept: each log holds its five entries.
    for session in &sessions {
        let id = session.session.as_ref().expect("a session").session_id.clone();
        let page = app.query_logs(pb::QueryLogsRequest { session_id: id, page_size: 100, ..Default::default() }).await;
        let messages: Vec<String> = page.records.into_iter().map(|r| r.message).collect();
        assert_eq!(messages, ["entry 0", "entry 1", "entry 2", "entry 3", "entry 0"]);
    }
}

#[tokio::test]
async fn zero_means_no_log_quota() {
    let mut app = TestApp::spawn_with(|s| s.session_logs.max_entries_per_session = 0).await;
    let session = app.create(Kind::Streaming, "alice").await;
    for _ in 0..3 {
        assert_eq!(app.log(&session.token, entries(1_000)).await, 1_000);
    }
}

#[tokio::test]
async fn a_log_stream_past_its_sessions_quota_keeps_what_it_committed_before() {
    let mut app = TestApp::spawn_with(|s| s.session_logs.max_entries_per_session = 5).await;
    let session = app.create(Kind::Streaming, "alice").await;
    let message = |count| pb::StreamLogRequest {
        session: by_token(&session.token),
        entries: entries(count),
        ..Default::default()
    };
    let status = failure(app.logs.stream_log(tokio_stream::iter(vec![message(3), message(3), message(1)])).await);

    assert_session_log_quota(&status, 5);
    assert_eq!(error_metadata(&status, "committed_messages").as_deref(), Some("1"));
    assert_eq!(error_metadata(&status, "committed_entries").as_deref(), Some("3"));
    assert_eq!(app.log(&session.token, entries(2)).await, 2, "what fits is still taken");
}

/// The refusal of a Log batch over the tenant's log quota.
fn assert_tenant_log_quota(status: &Status, tenant: &str, limit: u64) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(status).as_deref(), Some("TENANT_LOG_QUOTA"));
    assert_eq!(error_metadata(status, "max_entries"), Some(limit.to_string()));
    let quota = status.get_error_details().quota_failure().cloned().expect("a QuotaFailure");
    assert_eq!(quota.violations.len(), 1);
    assert_eq!(quota.violations[0].subject, format!("tenant:{tenant}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_sessions_hold_its_log_entries_is_refused_more_until_a_log_goes() {
    let Tenants { mut app, acme, globex } = tenants(|s| s.limits.max_log_entries_per_tenant = 10).await;
    let logs = app.logs.clone();
    let log = |key: &str, token: &str, count: usize| {
        let mut logs = logs.clone();
        let request = pb::LogRequest { session: by_token(token), entries: entries(count), ..Default::default() };
        let request = with_key(request, key);
        async move { logs.log(request).await.map(|r| r.into_inner().accepted) }
    };
    let first = create(&mut app, &acme, Kind::WebCall).await.expect("created").token;
    let second = create(&mut app, &acme, Kind::WebCall).await.expect("created").token;
    let theirs = create(&mut app, &globex, Kind::WebCall).await.expect("created").token;
    assert_eq!(log(&acme, &first, 6).await.expect("6 of 10"), 6);
    assert_eq!(log(&acme, &second, 4).await.expect("10 of 10"), 4);
    assert_tenant_log_quota(&failure(log(&acme, &second, 1).await), "acme", 10);
    assert_eq!(log(&globex, &theirs, 10).await.expect("another tenant is counted apart"), 10);

    // A web call closed at once, logging nothing at ERROR, is not kept: its
    // entries go with it.
    let close = pb::CloseSessionRequest { session: by_token(&first), ..Default::default() };
    let closed = app.sessions.close_session(with_key(close, &acme)).await.expect("closed").into_inner();
    assert!(closed.log_id.is_empty(), "the log was not kept");
    assert_eq!(log(&acme, &second, 6).await.expect("room again"), 6);
    assert_tenant_log_quota(&failure(log(&acme, &second, 1).await), "acme", 10);
}
