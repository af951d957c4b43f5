//! Logs stay useful in an outage: a Postgres outage under load fails every
//! call, and sessiond logs each cause of those failures once per
//! `--log-repeat-interval`, with the count of the failures in between,
//! instead of lines per failed call.
//!
//! The log subscriber is process-wide: this binary installs it once, with
//! a short interval, and holds one test.

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/logs.rs"]
mod logs_support;
#[path = "support/postgres.rs"]
mod postgres_support;

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fixtures::PATIENCE;
use helpers::{TestApp, by_token, error_reason};
use logs_support::Logs;
use postgres_support::PgCluster;
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::settings::LogFormat;
use sessiond::telemetry::{self, TelemetryConfig};
use tonic::transport::Channel;

/// The interval the test runs sessiond with: short, so several pass
/// during the outage.
const INTERVAL: Duration = Duration::from_secs(1);

/// How long Postgres is down.
const OUTAGE: Duration = Duration::from_secs(3);

/// Clients calling at once, each as fast as it is answered.
const CALLERS: usize = 5;

/// The failed-call line of `grpc::observe`.
const CALL_ENDED: &str = "call ended with an error";

/// The cause-chain line of `grpc::status`.
const CALL_FAILED: &str = "call failed";

/// Every line written after the first `from` bytes, parsed.
fn lines_after(logs: &Logs, from: usize) -> Vec<serde_json::Value> {
    logs.text_after(from)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is no JSON line: {e}")))
        .collect()
}

fn text<'a>(line: &'a serde_json::Value, field: &str) -> &'a str {
    line.get(field).and_then(serde_json::Value::as_str).unwrap_or_default()
}

/// The `repeated` count a line carries; 0 without one.
fn repeated(line: &serde_json::Value) -> u64 {
    line.get("repeated").and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// A failed call's cause as sessiond logs it: `UNAVAILABLE/STORE_UNAVAILABLE`.
fn cause_of(status: &tonic::Status) -> String {
    let mut code = String::new();
    for (i, c) in format!("{:?}", status.code()).chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            code.push('_');
        }
        code.push(c.to_ascii_uppercase());
    }
    match error_reason(status) {
        Some(reason) => format!("{code}/{reason}"),
        None => code,
    }
}

/// Each caller's failed calls by cause.
type Failures = HashMap<String, u64>;

/// Calls until `stop`: a create, then a read of `token`, again and again.
async fn caller(mut sessions: SessionServiceClient<Channel>, token: String, stop: Arc<AtomicBool>) -> Failures {
    let mut failures = Failures::new();
    while !stop.load(Ordering::Relaxed) {
        let create = pb::CreateSessionRequest { kind: Kind::WebUser.into(), ..Default::default() };
        if let Err(status) = sessions.create_session(create).await {
            *failures.entry(cause_of(&status)).or_default() += 1;
        }
        if let Err(status) = sessions.get_session(pb::GetSessionRequest { session: by_token(&token) }).await {
            *failures.entry(cause_of(&status)).or_default() += 1;
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_under_load_logs_each_cause_once_per_interval_with_the_count_of_the_others() {
    let logs = Logs::default();
    let config = TelemetryConfig {
        log_format: LogFormat::Json,
        log_filter: "info".into(),
        log_repeat_interval: INTERVAL,
        otlp_endpoint: None,
        otlp_traces: false,
        otlp_metrics: false,
        service_name: Some("sessiond-under-test".into()),
        prometheus: false,
    };
    let _telemetry = telemetry::init_with_writer(&config, logs.clone()).expect("telemetry is installed once");
    let cluster = PgCluster::launch().await;
    let mut app = TestApp::spawn_on(cluster.create_database().await, |s| {
        s.store.db_connect_timeout = Duration::from_millis(500);
        s.store.db_statement_timeout = Duration::from_secs(2);
    })
    .await;
    let token = app.create(Kind::WebUser, "alice").await.token;

    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> =
        (0..CALLERS).map(|_| tokio::spawn(caller(app.sessions.clone(), token.clone(), stop.clone()))).collect();

    let before = logs.len();
    let down = Instant::now();
    cluster.stop().await;
    tokio::time::sleep(OUTAGE).await;
    cluster.start().await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Failures::new();
    for caller in callers {
        for (cause, n) in caller.await.expect("a caller does not panic") {
            *failures.entry(cause).or_default() += n;
        }
    }
    let failed: u64 = failures.values().sum();
    let unavailable = failures.get("UNAVAILABLE/STORE_UNAVAILABLE").copied().unwrap_or(0);
    assert!(unavailable > 0, "the outage failed calls as UNAVAILABLE: {failures:?}");

    // Every failed call is on a line or in a line's count, once the
    // interval after the last one has passed (lines since the start: a
    // slow connection may fail a call before the outage).
    let logged = |lines: &[serde_json::Value], cause: &str| -> u64 {
        lines
            .iter()
            .filter(|line| text(line, "message") == CALL_ENDED && text(line, "cause") == cause)
            .map(|line| 1 + repeated(line))
            .sum()
    };
    let deadline = Instant::now() + PATIENCE;
    let lines = loop {
        let all = lines_after(&logs, 0);
        if failures.iter().all(|(cause, n)| logged(&all, cause) >= *n) {
            break lines_after(&logs, before);
        }
        assert!(Instant::now() < deadline, "failures {failures:?} are not all told in {all:#?}");
        tokio::time::sleep(INTERVAL / 10).await;
    };
    let elapsed = down.elapsed();

    // A handful of sessiond's lines per cause per interval: the first one,
    // one per interval after it, and one more with the count of the last.
    // (The connection pool's own lines, a few per connection, are counted
    // in the total only.)
    let bound = (elapsed.as_secs_f64() / INTERVAL.as_secs_f64()).floor() as usize + 2;
    let mut per_cause: HashMap<(&str, &str), usize> = HashMap::new();
    for line in lines.iter().filter(|line| text(line, "target").starts_with("sessiond")) {
        *per_cause.entry((text(line, "message"), text(line, "cause"))).or_default() += 1;
    }
    for (cause, count) in &per_cause {
        assert!(*count <= bound, "{count} lines of {cause:?} in {elapsed:?}, over {bound}: {lines:#?}");
    }
    eprintln!("{failed} failed calls, {} lines in {elapsed:?}: {per_cause:?}", lines.len());
    // Unthrottled, each failed call wrote two lines or more.
    assert!(
        lines.len() * 4 <= failed as usize,
        "{} lines for {failed} failed calls is not far fewer: {per_cause:?}",
        lines.len()
    );

    let of_cause = |message: &'static str| {
        lines.iter().filter(move |line| {
            text(line, "message") == message && text(line, "cause") == "UNAVAILABLE/STORE_UNAVAILABLE"
        })
    };
    let first = of_cause(CALL_ENDED).next().expect("the first failure is logged");
    assert_eq!(text(first, "level"), "WARN", "{first}");
    assert!(first.get("repeated").is_none(), "the first failure has no count: {first}");
    assert!(text(first, "method").starts_with("sessiond.v1.SessionService/"), "{first}");
    let chain = of_cause(CALL_FAILED).next().expect("the first failure's cause chain is logged");
    assert_eq!(text(chain, "level"), "ERROR", "{chain}");
    assert!(chain.get("repeated").is_none(), "{chain}");
    assert!(text(chain, "causes").len() > 2, "the chain names the store's error: {chain}");
    assert!(
        of_cause(CALL_ENDED).any(|line| repeated(line) > 0),
        "a line carries the count of the failures not logged: {lines:#?}"
    );
    assert!(of_cause(CALL_FAILED).any(|line| repeated(line) > 0), "{lines:#?}");
}
