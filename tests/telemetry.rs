//! Telemetry end to end: sessiond starts on port 0 with its traces and
//! metrics going to an OTLP collector inside this process and its metrics
//! served for Prometheus, and is spoken to through the generated clients.
//!
//! The subscriber and the exporters are process-wide, so this binary
//! installs them once, on a runtime of its own that outlives every test's,
//! and keeps all OTLP tests here. Tests run side by side: each tells its
//! calls apart by the trace id it sends.

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/postgres.rs"]
mod postgres_support;

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "support/logs.rs"]
mod logs_support;
#[path = "support/otlp.rs"]
mod otlp;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fixtures::{PATIENCE, ROLES_FILE};
use helpers::TestApp;
use logs_support::Logs;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use otlp::{Collector, int_attribute, text_attribute};
use sessiond::pb;
use sessiond::pb::privilege_service_client::PrivilegeServiceClient;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::settings::{LogFormat, Settings};
use sessiond::telemetry::{self, Telemetry, TelemetryConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::Channel;

/// The `service.name` the exporters are given.
const SERVICE_NAME: &str = "sessiond-under-test";

/// What every test of this binary shares.
struct Shared {
    /// Runs the collector and the exporters' connection to it.
    _runtime: tokio::runtime::Runtime,
    collector: Collector,
    telemetry: Telemetry,
    logs: Logs,
}

/// Installs telemetry for the whole binary, the first time it is asked for.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    // A thread of its own: a test's runtime cannot start another inside it.
    SHARED.get_or_init(|| std::thread::spawn(install).join().expect("telemetry installs"))
}

fn install() -> Shared {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime starts");
    let logs = Logs::default();
    let (collector, telemetry) = runtime.block_on(async {
        let collector = Collector::start().await;
        let config = TelemetryConfig {
            log_format: LogFormat::Text,
            log_filter: "info,sessiond=debug".into(),
            log_repeat_interval: Duration::from_secs(10),
            otlp_endpoint: Some(collector.endpoint.clone()),
            otlp_traces: true,
            otlp_metrics: true,
            service_name: Some(SERVICE_NAME.into()),
            prometheus: true,
        };
        let telemetry = telemetry::init_with_writer(&config, logs.clone()).expect("telemetry is installed once");
        (collector, telemetry)
    });
    Shared { _runtime: runtime, collector, telemetry, logs }
}

/// Exports every finished span and the metrics now.
async fn flush() {
    tokio::task::spawn_blocking(|| shared().telemetry.force_flush())
        .await
        .expect("flushing does not panic")
        .expect("the collector takes the export");
}

/// The spans of trace `trace_id` once one named `name` has arrived.
async fn trace_with(trace_id: &[u8], name: &str) -> Vec<Span> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        flush().await;
        let spans = shared().collector.trace(trace_id);
        if spans.iter().any(|span| span.name == name) {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "no span {name} arrived; got {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A test server (the API tests' [`TestApp`]) exporting to this binary's
/// collector and serving Prometheus metrics.
struct App {
    _app: TestApp,
    channel: Channel,
    metrics: SocketAddr,
}

impl App {
    async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server with settings adjusted by `configure`.
    async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let shared = shared();
        let app = TestApp::spawn_with(|settings| {
            settings.telemetry.otlp_endpoint = Some(shared.collector.endpoint.clone());
            settings.telemetry.metrics_listen = Some("127.0.0.1:0".parse().expect("a valid address"));
            configure(settings);
        })
        .await;
        let metrics = app.metrics.expect("metrics are served when asked for");
        Self { channel: app.channel.clone(), metrics, _app: app }
    }

    fn sessions(&self) -> SessionServiceClient<Channel> {
        SessionServiceClient::new(self.channel.clone())
    }

    fn privileges(&self) -> PrivilegeServiceClient<Channel> {
        PrivilegeServiceClient::new(self.channel.clone())
    }

    /// Creates a web user session for alice, a Manager; answers its id and token.
    async fn create(&self) -> (String, String) {
        let request = pb::CreateSessionRequest {
            kind: pb::SessionKind::WebUser.into(),
            user_id: "alice".into(),
            roles: vec!["Manager".into()],
            ..Default::default()
        };
        let created = self.sessions().create_session(request).await.expect("the session is created").into_inner();
        (created.session.expect("the session is answered").session_id, created.token)
    }

    /// `GET path` on the metrics address: the status line and the body.
    async fn scrape(&self, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await.expect("the metrics address accepts");
        let request = format!("GET {path} HTTP/1.1\r\nHost: sessiond\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("the request is sent");
        let mut answer = String::new();
        tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer))
            .await
            .expect("the answer comes promptly")
            .expect("the answer is text");
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
    }
}

/// A fresh W3C trace context: trace id, parent span id, `traceparent`.
fn remote_parent() -> ([u8; 16], [u8; 8], String) {
    let trace_id: [u8; 16] = rand::random();
    let span_id: [u8; 8] = rand::random();
    let header = format!("00-{}-{}-01", hex::encode(trace_id), hex::encode(span_id));
    (trace_id, span_id, header)
}

/// `message` with W3C trace context in its metadata.
fn traced<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("a traceparent is ASCII"));
    request.metadata_mut().insert("tracestate", "caller=7".parse().expect("a tracestate is ASCII"));
    request
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|span| span.name == name).unwrap_or_else(|| panic!("no span {name}"))
}

/// Whether `span` is below `ancestor` in `spans`.
fn descends(span: &Span, ancestor: &Span, spans: &[Span]) -> bool {
    let mut parent = &span.parent_span_id;
    while !parent.is_empty() {
        if *parent == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == *parent) {
            Some(next) => parent = &next.parent_span_id,
            None => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_exported_as_a_server_span_under_the_callers_span_with_service_and_store_spans_below() {
    let app = App::spawn().await;
    let (trace_id, parent_id, traceparent) = remote_parent();
    let stored = format!("stored-{}", hex::encode(rand::random::<[u8; 8]>()));

    let request = pb::CreateSessionRequest {
        kind: pb::SessionKind::WebUser.into(),
        user_id: "alice".into(),
        storage: [(
            "cart".to_owned(),
            prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(stored.clone())) },
        )]
        .into(),
        ..Default::default()
    };
    let created = app
        .sessions()
        .create_session(traced(request, &traceparent))
        .await
        .expect("the session is created")
        .into_inner();
    let session_id = created.session.expect("the session is answered").session_id;

    let spans = trace_with(&trace_id, "sessiond.v1.SessionService/CreateSession").await;
    let rpc = named(&spans, "sessiond.v1.SessionService/CreateSession");
    assert_eq!(rpc.kind, SpanKind::Server as i32);
    assert_eq!(rpc.parent_span_id, parent_id, "the caller's span is the parent");
    assert_eq!(rpc.trace_state, "caller=7");
    assert_eq!(text_attribute(&rpc.attributes, "rpc.system"), Some("grpc"));
    assert_eq!(text_attribute(&rpc.attributes, "rpc.service"), Some("sessiond.v1.SessionService"));
    assert_eq!(text_attribute(&rpc.attributes, "rpc.method"), Some("CreateSession"));
    assert_eq!(int_attribute(&rpc.attributes, "rpc.grpc.status_code"), Some(0));
    assert_eq!(text_attribute(&rpc.attributes, "network.peer.address"), Some("127.0.0.1"));
    assert_eq!(text_attribute(&rpc.attributes, "server.address"), Some("127.0.0.1"));

    let service = named(&spans, "create");
    assert_eq!(service.parent_span_id, rpc.span_id, "the service span is the call's child");
    assert_eq!(text_attribute(&service.attributes, "session_id"), Some(session_id.as_str()));
    let store = named(&spans, "create_session");
    assert!(descends(store, service, &spans), "the store span is below the service span");
    assert_eq!(text_attribute(&store.attributes, "session_id"), Some(session_id.as_str()));

    let (resource, _) =
        shared().collector.spans().into_iter().find(|(_, span)| span.span_id == rpc.span_id).expect("the span");
    let resource = resource.expect("spans carry their resource");
    assert_eq!(text_attribute(&resource.attributes, "service.name"), Some(SERVICE_NAME));

    // Neither the token nor the stored value went anywhere.
    for secret in [created.token.as_str(), stored.as_str()] {
        assert!(!shared().collector.everything().contains(secret), "{secret:?} was exported");
        assert!(!shared().logs.text().contains(secret), "{secret:?} was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_logs_one_line_with_its_method_code_and_message_and_exports_its_status() {
    let app = App::spawn().await;
    let (_, token) = app.create().await;
    let by_token = || Some(pb::SessionRef { r#ref: Some(pb::session_ref::Ref::Token(token.clone())), min_sequence: 0 });
    app.sessions()
        .close_session(pb::CloseSessionRequest { session: by_token(), ..Default::default() })
        .await
        .expect("the session closes");
    let (trace_id, _, traceparent) = remote_parent();

    let status = app
        .sessions()
        .get_session(traced(pb::GetSessionRequest { session: by_token() }, &traceparent))
        .await
        .expect_err("a closed session refuses calls");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    let spans = trace_with(&trace_id, "sessiond.v1.SessionService/GetSession").await;
    let rpc = named(&spans, "sessiond.v1.SessionService/GetSession");
    assert_eq!(int_attribute(&rpc.attributes, "rpc.grpc.status_code"), Some(tonic::Code::FailedPrecondition as i64));
    let span_status = rpc.status.as_ref().map_or(StatusCode::Unset as i32, |status| status.code);
    assert_ne!(span_status, StatusCode::Error as i32, "a refused request is no server error");

    let logs = shared().logs.text();
    let lines: Vec<&str> = logs.lines().filter(|line| line.contains(&hex::encode(trace_id))).collect();
    assert_eq!(lines.len(), 1, "one line for the failed call: {lines:#?}");
    for expected in
        [" INFO ", "sessiond.v1.SessionService/GetSession", "FailedPrecondition", "session has ended: closed"]
    {
        assert!(lines[0].contains(expected), "{expected:?} is missing from {:?}", lines[0]);
    }
    assert!(!logs.contains(&token), "the token was logged");
    assert!(!shared().collector.everything().contains(&token), "the token was exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_at_its_clients_deadline_is_recorded_as_deadline_exceeded() {
    let app = App::spawn().await;
    let (_, token) = app.create().await;
    let (trace_id, _, traceparent) = remote_parent();
    // A client stream answers only when its client ends it, which this
    // one never does: its deadline ends it.
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let first = pb::StreamLogRequest {
        session: Some(pb::SessionRef { r#ref: Some(pb::session_ref::Ref::Token(token.clone())), min_sequence: 0 }),
        entries: vec![],
        ..Default::default()
    };
    sender.send(first).await.expect("queued");
    let mut request = traced(tokio_stream::wrappers::ReceiverStream::new(receiver), &traceparent);
    request.set_timeout(Duration::from_millis(300));

    let mut logs = pb::log_service_client::LogServiceClient::new(app.channel.clone());
    let answer = tokio::time::timeout(PATIENCE, logs.stream_log(request)).await.expect("the deadline ends the call");
    // tonic's client gives up at its deadline itself (and calls that
    // CANCELLED); whichever side ends the call, sessiond records it as
    // the deadline it was.
    answer.expect_err("the call is cut");

    let spans = trace_with(&trace_id, "sessiond.v1.LogService/StreamLog").await;
    let rpc = named(&spans, "sessiond.v1.LogService/StreamLog");
    assert_eq!(int_attribute(&rpc.attributes, "rpc.grpc.status_code"), Some(tonic::Code::DeadlineExceeded as i64));
    let logs = shared().logs.text();
    let lines: Vec<&str> = logs.lines().filter(|line| line.contains(&hex::encode(trace_id))).collect();
    assert_eq!(lines.len(), 1, "one line for the cut call: {lines:#?}");
    assert!(lines[0].contains("DeadlineExceeded"), "{:?}", lines[0]);
    drop(sender);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_call_durations_by_method_cache_lookups_and_store_latency() {
    let app = App::spawn().await;
    let (_, token) = app.create().await;
    for _ in 0..3 {
        let request = pb::HasPrivilegeRequest {
            session: Some(pb::SessionRef { r#ref: Some(pb::session_ref::Ref::Token(token.clone())), min_sequence: 0 }),
            privilege: "viewBasic".into(),
        };
        assert!(app.privileges().has_privilege(request).await.expect("the check answers").into_inner().granted);
    }
    // Messages posted to a subscriber: posted, delivered, their lag. The
    // subscription stays open: its deliveries are counted once its stream
    // has nothing more to send.
    let mut messages = pb::message_service_client::MessageServiceClient::new(app.channel.clone());
    let follow = pb::ChannelSubscription { channel: "metrics".into(), after_sequence: None };
    let mut items =
        messages.subscribe(pb::SubscribeRequest { channels: vec![follow] }).await.expect("subscribed").into_inner();
    items.message().await.expect("the stream goes on").expect("subscribed first");
    for _ in 0..3 {
        let payload = prost_types::Value { kind: Some(prost_types::value::Kind::BoolValue(true)) };
        let post = pb::PostRequest { channel: "metrics".into(), payload: Some(payload), ..Default::default() };
        messages.post(post).await.expect("posted");
    }
    for _ in 0..3 {
        items.message().await.expect("the stream goes on").expect("a message");
    }

    let expected = [
        r#"sessiond_messages_posted_total{sessiond_message_scope="global"}"#,
        "sessiond_messages_delivered_total 3\n",
        "sessiond_messages_lag_seconds_count 3\n",
        r#"sessiond_messages_lag_seconds_bucket{le="0.0005"}"#,
        "sessiond_messages_subscribers",
        "# TYPE rpc_server_call_duration_seconds histogram",
        r#"rpc_server_call_duration_seconds_bucket{rpc_method="HasPrivilege",rpc_response_status_code="OK",rpc_service="sessiond.v1.PrivilegeService",rpc_system="grpc",le="0.0005"}"#,
        r#"rpc_server_call_duration_seconds_count{rpc_method="CreateSession",rpc_response_status_code="OK",rpc_service="sessiond.v1.SessionService",rpc_system="grpc"}"#,
        r#"sessiond_cache_lookups_total{sessiond_cache_result="hit"}"#,
        r#"sessiond_cache_lookups_total{sessiond_cache_result="miss"}"#,
        r#"db_client_operation_duration_seconds_count{db_operation_name="create_session",db_system_name="sqlite"}"#,
        r#"sessiond_sessions_open{sessiond_session_kind="web_user"}"#,
        "sessiond_calls_in_flight ",
        "sessiond_calls_limit ",
        "sessiond_sweeper_last_success_seconds ",
        "sessiond_sweeper_lag_seconds ",
        r#"process_cpu_time_seconds_total{cpu_mode="user"}"#,
        "process_memory_usage_bytes ",
        "process_open_file_descriptor_count ",
        "sessiond_runtime_tasks ",
        r#"sessiond_sweeper_runs_total{sessiond_sweeper_outcome="ok"}"#,
        r#"target_info{service_name="sessiond-under-test""#,
    ];
    // The sweeper's first run happens as the server starts, not
    // necessarily before the calls above.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = app.scrape("/metrics").await;
        assert!(status.contains("200"), "{status}");
        let missing: Vec<&str> = expected.iter().copied().filter(|line| !body.contains(line)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "missing {missing:#?} from\n{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(app.scrape("/").await.0.contains("404"));

    flush().await;
    let exported = shared().collector.metric_names();
    for name in ["rpc.server.call.duration", "sessiond.cache.lookups", "db.client.operation.duration"] {
        assert!(exported.iter().any(|n| n == name), "{name} was not exported over OTLP: {exported:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_by_a_callers_quota_are_counted_as_shed_by_their_reason() {
    let app = App::spawn_with(|s| {
        s.limits.max_open_sessions_per_tenant = 1;
        s.limits.max_streams_per_key = 1;
    })
    .await;
    app.create().await;
    let request = pb::CreateSessionRequest { kind: pb::SessionKind::WebUser.into(), ..Default::default() };
    let refused = app.sessions().create_session(request).await.expect_err("the tenant's second session");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let _watch = app.sessions().watch_sessions(pb::WatchSessionsRequest::default()).await.expect("the first stream");
    let refused = app.sessions().watch_sessions(pb::WatchSessionsRequest::default()).await.expect_err("a second");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);

    let (_, body) = app.scrape("/metrics").await;
    for reason in ["TENANT_SESSION_QUOTA", "KEY_STREAM_QUOTA"] {
        let line = format!(r#"sessiond_calls_shed_total{{reason="{reason}"}} "#);
        assert!(body.lines().any(|l| l.starts_with(&line)), "no {line} in\n{body}");
    }
}

/// The metering decorator is a store like any other.
mod metered {
    use sessiond::store::Stores;
    use sessiond::store::sqlite::SqliteStore;
    use tempfile::TempDir;

    fn fresh() -> (TempDir, Stores) {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let store = SqliteStore::open_in(dir.path()).expect("a fresh database opens");
        (dir, Stores::of(store).metered("sqlite"))
    }

    sessiond_conformance::store_conformance_tests!(fresh());
}

/// Runs the `sessiond` binary with `env` (and no other OTLP or OTEL
/// variable), makes one CreateSession call, stops it with SIGTERM (which
/// exports what is buffered) and waits for it to exit.
async fn run_binary_once(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-filter", "error", "--roles-file", ROLES_FILE])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(std::process::Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") || name.starts_with("SESSIOND_OTLP_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("sessiond starts");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("a uri");
    let deadline = Instant::now() + PATIENCE;
    let channel = loop {
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(err) => {
                let _ = child.kill();
                panic!("sessiond did not accept connections: {err}")
            }
        }
    };
    SessionServiceClient::new(channel)
        .create_session(pb::CreateSessionRequest {
            kind: pb::SessionKind::WebUser.into(),
            user_id: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("CreateSession");
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill(1)");
    assert!(term.success());
    let exited = tokio::task::spawn_blocking(move || child.wait()).await.expect("joined").expect("sessiond exits");
    assert!(exited.success(), "{exited:?}");
}

/// The resource attribute `key` of the first span received.
fn span_resource(collector: &Collector, key: &str) -> Option<String> {
    let (resource, _) = collector.spans().into_iter().next().expect("spans were exported");
    text_attribute(&resource.expect("spans carry their resource").attributes, key).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_otel_variables_choose_the_collector_the_service_name_and_resource_attributes() {
    let collector = Collector::start().await;
    run_binary_once(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "checkout-sessions"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,team=payments"),
    ])
    .await;
    assert_eq!(span_resource(&collector, "service.name").as_deref(), Some("checkout-sessions"));
    assert_eq!(span_resource(&collector, "deployment.environment").as_deref(), Some("staging"));
    assert_eq!(span_resource(&collector, "team").as_deref(), Some("payments"));
    assert!(span_resource(&collector, "service.version").is_some());
    assert!(collector.metric_names().iter().any(|name| name == "rpc.server.call.duration"), "metrics are exported too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessiond_otlp_settings_win_over_the_standard_variables() {
    let collector = Collector::start().await;
    run_binary_once(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
        ("SESSIOND_OTLP_ENDPOINT", collector.endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "not-this-name"),
        ("SESSIOND_OTLP_SERVICE_NAME", "sessiond-chosen"),
    ])
    .await;
    assert_eq!(span_resource(&collector, "service.name").as_deref(), Some("sessiond-chosen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traces_endpoint_alone_exports_traces_only_named_sessiond_by_default() {
    let collector = Collector::start().await;
    run_binary_once(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.endpoint.as_str())]).await;
    assert_eq!(span_resource(&collector, "service.name").as_deref(), Some("sessiond"));
    assert!(collector.metric_names().is_empty(), "no metrics: {:?}", collector.metric_names());
}
