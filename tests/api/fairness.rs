//! Fairness between callers: one API key holding streams open or calling
//! in a burst is refused its extra calls with RESOURCE_EXHAUSTED, while a
//! key of another tenant and the health probe keep being answered; once it
//! lets go, the busy key is answered again.

use std::time::Duration;

use sessiond::auth::{generate_key, hash_key};
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt as _;

use crate::helpers::{PATIENCE, TestApp, by_token, error_reason, failure, with_key};

/// Three admin keys: `acme-busy` (its entry allows it two calls at once)
/// and `acme-other` of the tenant `acme`, `globex` of another tenant.
struct Callers {
    app: TestApp,
    busy: String,
    other: String,
    globex: String,
}

async fn callers(configure: impl FnOnce(&mut sessiond::settings::Settings)) -> Callers {
    let (busy, other, globex) = (generate_key().0, generate_key().0, generate_key().0);
    let keys = format!(
        "keys:\n  - {{name: acme-busy, tenant: acme, role: admin, hash: \"{}\", max_concurrent_calls: 2}}\n  - {{name: acme-other, tenant: acme, role: admin, hash: \"{}\"}}\n  - {{name: globex, tenant: globex, role: admin, hash: \"{}\"}}\n",
        hash_key(&busy),
        hash_key(&other),
        hash_key(&globex)
    );
    let app = TestApp::spawn_with_keys_and(&keys, configure).await;
    Callers { app, busy, other, globex }
}

/// A watch of the whole tenant: its call is counted as long as it runs.
async fn watch(app: &mut TestApp, key: &str) -> Result<tonic::Streaming<pb::WatchSessionsResponse>, Status> {
    app.sessions.watch_sessions(with_key(pb::WatchSessionsRequest::default(), key)).await.map(|r| r.into_inner())
}

/// Creates a session and reads it back with `key`.
async fn create_and_get(app: &mut TestApp, key: &str) -> Result<(), Status> {
    let request =
        pb::CreateSessionRequest { kind: Kind::WebUser.into(), user_id: "alice".into(), ..Default::default() };
    let created = app.sessions.create_session(with_key(request, key)).await?.into_inner();
    app.sessions.get_session(with_key(pb::GetSessionRequest { session: by_token(&created.token) }, key)).await?;
    Ok(())
}

async fn assert_serving(app: &TestApp) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.expect("health");
    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
}

/// Retries `call` until it succeeds: a released stream frees its permit
/// once the server has seen it end, a moment after the client drops it.
async fn succeeds_again(app: &mut TestApp, key: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match create_and_get(app, key).await {
            Ok(()) => return,
            Err(status) if std::time::Instant::now() < deadline => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("still refused after the streams ended: {status:?}"),
        }
    }
}

#[tokio::test]
async fn a_key_holding_streams_is_refused_its_extra_calls_while_another_tenant_is_served() {
    let mut c = callers(|s| {
        s.limits.max_concurrent_calls_per_key = Some(10);
        s.limits.max_concurrent_calls_per_tenant = Some(3);
    })
    .await;
    let (busy, other, globex) = (c.busy.clone(), c.other.clone(), c.globex.clone());

    let held = [watch(&mut c.app, &busy).await.expect("first"), watch(&mut c.app, &busy).await.expect("second")];
    for refused in [failure(watch(&mut c.app, &busy).await), failure(create_and_get(&mut c.app, &busy).await)] {
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert_eq!(error_reason(&refused).as_deref(), Some("KEY_OVERLOADED"));
        let details = refused.get_error_details();
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(info.metadata.get("max_concurrent_calls").map(String::as_str), Some("2"), "the entry's own limit");
        let quota = details.quota_failure().expect("a QuotaFailure");
        assert_eq!(quota.violations[0].subject, "api-key:acme-busy");
    }

    // The tenant has one call left of its three: another acme key takes it.
    let third = watch(&mut c.app, &other).await.expect("within the tenant's share");
    let refused = failure(create_and_get(&mut c.app, &other).await);
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(error_reason(&refused).as_deref(), Some("TENANT_OVERLOADED"));
    let details = refused.get_error_details();
    let info = details.error_info().expect("an ErrorInfo");
    assert_eq!(info.metadata.get("max_concurrent_calls").map(String::as_str), Some("3"));
    assert_eq!(details.quota_failure().expect("a QuotaFailure").violations[0].subject, "tenant:acme");

    for _ in 0..5 {
        create_and_get(&mut c.app, &globex).await.expect("another tenant is served");
    }
    let globex_watch = watch(&mut c.app, &globex).await.expect("and may hold its own streams");
    assert_serving(&c.app).await;

    drop((held, third, globex_watch));
    succeeds_again(&mut c.app, &busy).await;
    succeeds_again(&mut c.app, &other).await;
}

#[tokio::test]
async fn a_key_calling_over_its_rate_is_told_when_to_retry_while_another_tenant_is_served() {
    let mut c = callers(|s| s.limits.rate_limit_per_key = 5).await;
    let (busy, globex) = (c.busy.clone(), c.globex.clone());
    let check = |key: &str| {
        with_key(pb::HasPrivilegeRequest { session: by_token("no-such-token"), privilege: "read".into() }, key)
    };

    // A burst of one second's calls is allowed; the bucket refills at 5 a
    // second, so a burst of 20 meets a refusal unless each call takes 150 ms.
    let mut refused = None;
    for _ in 0..20 {
        match c.app.privileges.has_privilege(check(&busy)).await {
            Err(status) if status.code() == Code::ResourceExhausted => {
                refused = Some(status);
                break;
            }
            _ => {}
        }
    }
    let refused = refused.expect("the burst meets the rate limit");
    assert_eq!(error_reason(&refused).as_deref(), Some("RATE_LIMITED"));
    let details = refused.get_error_details();
    assert_eq!(details.quota_failure().expect("a QuotaFailure").violations[0].subject, "api-key:acme-busy");
    let info = details.error_info().expect("an ErrorInfo");
    assert_eq!(info.metadata.get("calls_per_second").map(String::as_str), Some("5"));
    let retry = details.retry_info().and_then(|info| info.retry_delay).expect("a retry delay");
    assert!(retry > Duration::ZERO && retry <= Duration::from_millis(200), "one token at 5 a second: {retry:?}");

    // globex has its own bucket of five: two creates and two reads fit.
    for _ in 0..2 {
        create_and_get(&mut c.app, &globex).await.expect("another tenant is served");
    }
    assert_serving(&c.app).await;

    tokio::time::sleep(retry).await;
    let answered = c.app.privileges.has_privilege(check(&busy)).await;
    assert!(
        !matches!(&answered, Err(status) if status.code() == Code::ResourceExhausted),
        "after the retry delay the key is answered again: {answered:?}"
    );
}

#[tokio::test]
async fn an_open_server_counts_its_calls_under_the_default_tenant() {
    let mut app = TestApp::spawn_with(|s| {
        s.limits.max_concurrent_calls_per_key = Some(10);
        s.limits.max_concurrent_calls_per_tenant = Some(1);
    })
    .await;
    let held = app.sessions.watch_sessions(pb::WatchSessionsRequest::default()).await.expect("watching");
    let refused = failure(app.sessions.watch_sessions(pb::WatchSessionsRequest::default()).await);
    assert_eq!(error_reason(&refused).as_deref(), Some("TENANT_OVERLOADED"));
    assert_eq!(
        refused.get_error_details().quota_failure().expect("a QuotaFailure").violations[0].subject,
        "tenant:default"
    );
    assert_serving(&app).await;
    drop(held);
    let deadline = std::time::Instant::now() + PATIENCE;
    while let Err(status) = app.sessions.watch_sessions(pb::WatchSessionsRequest::default()).await {
        assert!(std::time::Instant::now() < deadline, "still refused: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
