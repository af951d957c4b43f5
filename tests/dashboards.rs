//! Every metric the chart's Grafana dashboard (helm/sessiond/files/
//! dashboard.json) and alerts (files/alerts.yaml) name is served by a real
//! sessiond: two replicas, processes of the built binary, sharing a
//! Postgres database (so the pool and replica metrics exist), one serving
//! TLS (so the certificate's expiry exists), the other with room for one
//! call (so a call is shed). Their scrapes together must name every one.

#[path = "support/postgres.rs"]
mod postgres_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sessiond::pb;
use sessiond::pb::session_service_client::SessionServiceClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SESSIOND: &str = env!("CARGO_BIN_EXE_sessiond");
const CHART_FILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/sessiond/files");
const ROLES_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/roles.yaml");
const PATIENCE: Duration = Duration::from_secs(30);

/// A sessiond process, killed when dropped.
struct Replica {
    child: Child,
    grpc: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_address() -> SocketAddr {
    // Bound and released: free unless another process takes it meanwhile.
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("bound")
}

fn start(database_url: &str, dir: &Path, name: &str, args: &[&str]) -> Replica {
    let (grpc, metrics) = (free_address(), free_address());
    let child = Command::new(SESSIOND)
        .args(["--listen", &grpc.to_string(), "--metrics-listen", &metrics.to_string(), "--roles-file", ROLES_FILE])
        .arg("--data-dir")
        .arg(dir.join(name))
        .args(args)
        .env("SESSIOND_DATABASE_URL", database_url)
        .env("SESSIOND_SWEEP_INTERVAL", "1s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).expect("a log file"))
        .spawn()
        .expect("sessiond starts");
    Replica { child, grpc, metrics }
}

/// The metrics page, or `None` while the replica is not listening yet.
async fn scrape(address: SocketAddr) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = "GET /metrics HTTP/1.1\r\nHost: sessiond\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer)).await.ok()?.ok()?;
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// The metric names a PromQL expression selects: identifiers of
/// sessiond's prefixes that are not label names (those are followed by a
/// matcher, or listed in `by (…)`).
fn metric_names(expr: &str, names: &mut BTreeSet<String>) {
    let mut expr = expr.to_owned();
    while let Some(start) = expr.find("by (") {
        let end = expr[start..].find(')').map_or(expr.len(), |end| start + end + 1);
        expr.replace_range(start..end, " ");
    }
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let is_word = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
        if !is_word(bytes[i]) || (i > 0 && is_word(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let end = (i..bytes.len()).find(|&j| !is_word(bytes[j])).unwrap_or(bytes.len());
        let word = &expr[i..end];
        let next = expr[end..].trim_start().chars().next();
        let prefixed = ["rpc_", "db_", "sessiond_", "process_"].iter().any(|p| word.starts_with(p));
        if prefixed && !matches!(next, Some('=' | '!')) {
            names.insert(word.to_owned());
        }
        i = end;
    }
}

fn named_by_chart() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(CHART_FILES).join("dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            metric_names(target["expr"].as_str().expect("an expression"), &mut names);
        }
    }
    let alerts: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(Path::new(CHART_FILES).join("alerts.yaml")).unwrap())
            .expect("the alerts are YAML");
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            metric_names(rule["expr"].as_str().expect("an expression"), &mut names);
        }
    }
    names
}

/// Whether the exposition has a sample of `name`.
fn has_sample(page: &str, name: &str) -> bool {
    page.lines().any(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
}

#[test]
fn metric_names_are_read_from_expressions_without_their_labels() {
    let mut names = BTreeSet::new();
    metric_names(
        r#"sum by (le, rpc_method) (rate(rpc_server_call_duration_seconds_bucket{rpc_method!~"Watch", db_x="y"}[5m])) / sessiond_sweeper_lag_seconds > 3"#,
        &mut names,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["rpc_server_call_duration_seconds_bucket", "sessiond_sweeper_lag_seconds"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_name_is_scraped_from_real_replicas() {
    let names = named_by_chart();
    assert!(names.len() > 20, "the chart names its metrics: {names:?}");
    let database = postgres_support::fresh_database().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("a valid name")
        .self_signed(&key)
        .expect("a certificate");
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let tls = start(
        &database.url,
        dir.path(),
        "tls",
        &["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()],
    );
    // Room for one call, and a key's and tenant's share above it: the
    // global limit is the one that sheds.
    let narrow = start(
        &database.url,
        dir.path(),
        "narrow",
        &[
            "--max-concurrent-calls",
            "1",
            "--max-concurrent-calls-per-key",
            "2",
            "--max-concurrent-calls-per-tenant",
            "2",
        ],
    );

    // Calls on the narrow replica: a create (an event the other replica
    // receives), then a watch holding the one call allowed while another
    // call is shed.
    let deadline = Instant::now() + PATIENCE;
    let channel = loop {
        match tonic::transport::Endpoint::from_shared(format!("http://{}", narrow.grpc)).unwrap().connect().await {
            Ok(channel) => break channel,
            Err(err) => assert!(Instant::now() < deadline, "the narrow replica never served: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut sessions = SessionServiceClient::new(channel);
    let create = || pb::CreateSessionRequest {
        kind: pb::SessionKind::WebUser.into(),
        user_id: "ivan".into(),
        ..Default::default()
    };
    sessions.create_session(create()).await.expect("created");
    let watch = sessions.watch_sessions(pb::WatchSessionsRequest::default()).await.expect("a watch");
    let shed = sessions.create_session(create()).await.expect_err("the second call at once is shed");
    assert_eq!(shed.code(), tonic::Code::ResourceExhausted);
    drop(watch);
    // An event after the TLS replica's feed surely follows; a cache
    // lookup; a session's end.
    // The watch's call ends on the server a moment after the client drops it.
    let token = loop {
        match sessions.create_session(create()).await {
            Ok(created) => break created.into_inner().token,
            Err(status) if status.code() == tonic::Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("no call fits once the watch is gone: {status:?}"),
        }
    };
    let by_token = || Some(pb::SessionRef { r#ref: Some(pb::session_ref::Ref::Token(token.clone())), min_sequence: 0 });
    sessions.get_session(pb::GetSessionRequest { session: by_token() }).await.expect("found");
    let close = pb::CloseSessionRequest { session: by_token(), ..Default::default() };
    sessions.close_session(close).await.expect("closed");

    let mut missing: Vec<String>;
    loop {
        let pages = [scrape(tls.metrics).await.unwrap_or_default(), scrape(narrow.metrics).await.unwrap_or_default()];
        missing = names.iter().filter(|name| !pages.iter().any(|page| has_sample(page, name))).cloned().collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!("not scraped from either replica: {missing:#?}\n\nTLS replica:\n{}", pages[0]);
        }
        // A sweep, a heartbeat and the event feed come by themselves.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
