//! `TestApp`: a running sessiond with typed clients, a manual clock and its
//! own data directory, which can be stopped, crashed and started again.
//!
//! With `SESSIOND_TEST_STORE=postgres` every app stores in a database of
//! its own on the throwaway test cluster instead of the embedded store, so
//! the whole suite runs against both stores.

use std::sync::Arc;
use std::time::Duration;

use sessiond::clock::{Clock as _, ManualClock, SystemClock};
use sessiond::pb;
use sessiond::pb::log_service_client::LogServiceClient;
use sessiond::pb::message_service_client::MessageServiceClient;
use sessiond::pb::privilege_service_client::PrivilegeServiceClient;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::pb::storage_service_client::StorageServiceClient;
use sessiond::service::Service;
use sessiond::settings::Settings;
use sessiond::startup::Application;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::postgres_support::{TestDatabase, fresh_database};

pub use crate::fixtures::{PATIENCE, ROLES_FILE};

/// What outlives a server across restarts: its settings, data directory,
/// clock and (with Postgres) database.
#[derive(Clone)]
pub struct Home {
    pub settings: Settings,
    /// Kept alive (deleted on drop) as long as any server may use it.
    _data_dir: Arc<TempDir>,
    pub clock: ManualClock,
    /// Kept alive (dropped with the last server) likewise.
    _database: Option<Arc<TestDatabase>>,
    /// The API keys file of [`TestApp::spawn_with_keys`], kept likewise.
    _keys_file: Option<Arc<tempfile::NamedTempFile>>,
}

/// Whether this run stores in Postgres (`SESSIOND_TEST_STORE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("SESSIOND_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// How much later than its idle timeout a session may end: with a shared
/// store, expiry allows for activity other replicas have not written yet,
/// up to one write interval (`min(activity_flush, idle / 4)`); with the
/// embedded store, none.
pub fn expiry_slack(idle: Duration, activity_flush: Duration) -> Duration {
    if on_postgres() { activity_flush.min(idle / 4) } else { Duration::ZERO }
}

/// `expiry_slack` under the test apps' default settings.
pub fn default_slack() -> Duration {
    expiry_slack(Duration::MAX, Duration::from_secs(1))
}

pub struct TestApp {
    pub address: String,
    pub clock: ManualClock,
    pub service: Service,
    pub sessions: SessionServiceClient<Channel>,
    pub privileges: PrivilegeServiceClient<Channel>,
    pub storage: StorageServiceClient<Channel>,
    pub logs: LogServiceClient<Channel>,
    pub messages: MessageServiceClient<Channel>,
    pub channel: Channel,
    /// Where Prometheus metrics are served, when `--metrics-listen` is set.
    #[allow(dead_code, reason = "used by tests/telemetry.rs, which shares these helpers")]
    pub metrics: Option<std::net::SocketAddr>,
    home: Home,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// A server with default settings and the shipped roles file.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server with settings adjusted by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let database = if on_postgres() { Some(fresh_database().await) } else { None };
        Self::spawn_in(database, configure).await
    }

    /// A server storing in `database` (Postgres), whatever the run's store.
    #[allow(dead_code, reason = "used by tests/replicas.rs, which shares these helpers")]
    pub async fn spawn_on(database: TestDatabase, configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_in(Some(database), configure).await
    }

    /// A server whose callers need an API key: `keys` is the API keys
    /// file's content (YAML), written to a file that lives as long as the
    /// server, its restarts and replicas.
    #[allow(dead_code, reason = "not every binary sharing these helpers uses keys")]
    pub async fn spawn_with_keys(keys: &str) -> Self {
        Self::spawn_with_keys_and(keys, |_| {}).await
    }

    /// [`TestApp::spawn_with_keys`], with the settings changed further by
    /// `configure`.
    #[allow(dead_code, reason = "not every binary sharing these helpers uses keys")]
    pub async fn spawn_with_keys_and(keys: &str, configure: impl FnOnce(&mut Settings)) -> Self {
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), keys).expect("the keys file is written");
        let (path, file) = (file.path().to_owned(), Arc::new(file));
        let database = if on_postgres() { Some(fresh_database().await) } else { None };
        Self::spawn_in_with(database, Some(file), |s| {
            s.auth.api_keys_file = Some(path);
            configure(s);
        })
        .await
    }

    async fn spawn_in(database: Option<TestDatabase>, configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_in_with(database, None, configure).await
    }

    async fn spawn_in_with(
        database: Option<TestDatabase>,
        keys_file: Option<Arc<tempfile::NamedTempFile>>,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().expect("a temporary directory can be created"));
        let mut settings =
            Settings::for_tests("127.0.0.1:0".parse().expect("a valid address"), data_dir.path().to_owned());
        settings.auth.roles_file = Some(ROLES_FILE.into());
        let database = database.map(Arc::new);
        if let Some(database) = &database {
            settings.store.database_url = Some(database.url.parse().expect("any string is a secret"));
            settings.store.db_pool_size = 6;
            // With a shared store, expiry allows for activity other
            // replicas have not written yet: up to one write interval,
            // which this keeps to a second so timeouts read as written.
            settings.store.activity_flush = Duration::from_secs(1);
        }
        configure(&mut settings);
        let clock = ManualClock::starting_at(SystemClock.now());
        Self::start(Home { settings, _data_dir: data_dir, clock, _database: database, _keys_file: keys_file }).await
    }

    /// Another server on the same store (a second replica, with
    /// Postgres), with its own cache and clock shared with this one.
    #[allow(dead_code, reason = "used by tests/replicas.rs, which shares these helpers")]
    pub async fn replica(&self) -> Self {
        Self::start(self.home.clone()).await
    }

    pub async fn start(home: Home) -> Self {
        let (settings, clock) = (home.settings.clone(), home.clock.clone());
        let app = build_once_free(&settings, &clock).await;
        let address = format!("http://{}", app.local_addr());
        let metrics = app.metrics_addr();
        let service = app.service();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(address.clone())
            .expect("a valid uri")
            .connect()
            .await
            .expect("the server accepts connections");
        Self {
            sessions: SessionServiceClient::new(channel.clone()),
            privileges: PrivilegeServiceClient::new(channel.clone()),
            storage: StorageServiceClient::new(channel.clone()),
            logs: LogServiceClient::new(channel.clone()),
            messages: MessageServiceClient::new(channel.clone()),
            channel,
            metrics,
            address,
            clock,
            service,
            home,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops gracefully and waits for the server to finish.
    pub async fn stop(mut self) -> Home {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task does not panic").expect("the server stops cleanly");
        }
        self.home.clone()
    }

    /// Stops gracefully and starts again on the same data directory.
    pub async fn restart(self) -> Self {
        let home = self.stop().await;
        Self::start(home).await
    }

    /// Kills the server without any shutdown work (as a crash would) and
    /// starts again on the same data directory.
    pub async fn crash_and_restart(mut self) -> Self {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
        self.stop.take();
        let home = self.home.clone();
        drop(self);
        Self::start(home).await
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Creates a session of `kind` for `user`, with no other options.
    pub async fn create(&mut self, kind: pb::SessionKind, user: &str) -> pb::CreateSessionResponse {
        self.sessions
            .create_session(pb::CreateSessionRequest { kind: kind.into(), user_id: user.into(), ..Default::default() })
            .await
            .expect("the session is created")
            .into_inner()
    }
}

/// Builds the app. A server of this process that was just stopped or
/// crashed may still hold the embedded store's directory lock for a moment
/// (its last tasks are being dropped); a real crash ends the process and
/// releases it at once, so only this in-process stand-in waits.
async fn build_once_free(settings: &Settings, clock: &ManualClock) -> Application {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match Application::build_with_clock(settings.clone(), Arc::new(clock.clone())).await {
            Ok(app) => return app,
            Err(err)
                if format!("{err:#}").contains("in use by another sessiond")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(err) => panic!("the app does not build: {err:#}"),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Names a session by its token.
pub fn by_token(token: &str) -> Option<pb::SessionRef> {
    Some(pb::SessionRef { r#ref: Some(pb::session_ref::Ref::Token(token.to_owned())), min_sequence: 0 })
}

/// Names a session by its id.
pub fn by_id(id: &str) -> Option<pb::SessionRef> {
    Some(pb::SessionRef { r#ref: Some(pb::session_ref::Ref::SessionId(id.to_owned())), min_sequence: 0 })
}

/// The `google.rpc.ErrorInfo` reason of a status, if any.
pub fn error_reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt as _;
    status.get_error_details().error_info().map(|info| info.reason.clone())
}

/// The fields named by a status's `google.rpc.BadRequest`, if any.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

pub fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds: s, nanos: 0 })
}

// ---------------------------------------------------------------------------
// Shorthands the test modules share.
// ---------------------------------------------------------------------------

impl TestApp {
    /// Creates a session as `request` asks.
    pub async fn create_with(&mut self, request: pb::CreateSessionRequest) -> pb::CreateSessionResponse {
        self.sessions.create_session(request).await.expect("the session is created").into_inner()
    }

    /// Looks a session up by token over a connection of its own, made now:
    /// whether the server still accepts and serves new connections.
    pub async fn get_on_a_new_connection(&self, token: &str) -> Result<pb::Session, tonic::Status> {
        let fresh = Channel::from_shared(self.address.clone()).expect("a valid uri").connect().await.expect("connects");
        let response =
            SessionServiceClient::new(fresh).get_session(pb::GetSessionRequest { session: by_token(token) }).await?;
        Ok(response.into_inner().session.expect("a found session is answered"))
    }

    /// Looks a session up by token.
    pub async fn get(&mut self, token: &str) -> Result<pb::Session, tonic::Status> {
        let response = self.sessions.get_session(pb::GetSessionRequest { session: by_token(token) }).await?;
        Ok(response.into_inner().session.expect("a found session is answered"))
    }

    /// Marks activity on a session, by token.
    pub async fn touch(&mut self, token: &str) -> Result<pb::TouchSessionResponse, tonic::Status> {
        Ok(self.sessions.touch_session(pb::TouchSessionRequest { session: by_token(token) }).await?.into_inner())
    }

    /// Closes a session by token, with `error` when it failed.
    pub async fn close(&mut self, token: &str, error: &str) -> pb::CloseSessionResponse {
        self.sessions
            .close_session(pb::CloseSessionRequest {
                session: by_token(token),
                error: error.into(),
                stack_trace: String::new(),
            })
            .await
            .expect("the session closes")
            .into_inner()
    }

    /// Logs `entries` on a session, by token; answers the accepted count.
    pub async fn log(&mut self, token: &str, entries: Vec<pb::LogEntry>) -> u32 {
        self.logs
            .log(pb::LogRequest { session: by_token(token), entries, ..Default::default() })
            .await
            .expect("the entries are logged")
            .into_inner()
            .accepted
    }

    /// One page of QueryLogs.
    pub async fn query_logs(&mut self, request: pb::QueryLogsRequest) -> pb::QueryLogsResponse {
        self.logs.query_logs(request).await.expect("the logs are queried").into_inner()
    }

    /// The messages of the kept entries matching `request`, in order (one
    /// page, which the tests keep small enough to be all of them).
    pub async fn logged_messages(&mut self, request: pb::QueryLogsRequest) -> Vec<String> {
        self.query_logs(request).await.records.into_iter().map(|r| r.message).collect()
    }

    /// One page of ListSessions.
    pub async fn list(&mut self, request: pb::ListSessionsRequest) -> pb::ListSessionsResponse {
        self.sessions.list_sessions(request).await.expect("the sessions are listed").into_inner()
    }

    /// Starts watching events.
    pub async fn watch(&mut self, request: pb::WatchSessionsRequest) -> tonic::Streaming<pb::WatchSessionsResponse> {
        self.sessions.watch_sessions(request).await.expect("the watch starts").into_inner()
    }

    /// The manual clock's time, as the wire writes it.
    pub fn now(&self) -> prost_types::Timestamp {
        let now = self.clock.now();
        prost_types::Timestamp { seconds: now.0.div_euclid(1000), nanos: (now.0.rem_euclid(1000) * 1_000_000) as i32 }
    }
}

/// The next event of a watch; fails the test if none comes promptly.
pub async fn next_event(events: &mut tonic::Streaming<pb::WatchSessionsResponse>) -> pb::WatchSessionsResponse {
    tokio::time::timeout(PATIENCE, events.message())
        .await
        .expect("an event arrives promptly")
        .expect("the watch does not fail")
        .expect("the watch does not end")
}

/// The next `n` events of a watch.
pub async fn next_events(
    events: &mut tonic::Streaming<pb::WatchSessionsResponse>,
    n: usize,
) -> Vec<pb::WatchSessionsResponse> {
    let mut received = Vec::with_capacity(n);
    for _ in 0..n {
        received.push(next_event(events).await);
    }
    received
}

/// The status of a call that must fail.
pub fn failure<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> tonic::Status {
    result.expect_err("the call fails")
}

/// Asserts a FAILED_PRECONDITION on an ended session with ErrorInfo `reason`.
#[track_caller]
pub fn assert_ended(status: &tonic::Status, reason: &str) {
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert_eq!(error_reason(status).as_deref(), Some(reason), "{status:?}");
}

/// Asserts an INVALID_ARGUMENT whose BadRequest names `field`.
#[track_caller]
pub fn assert_invalid(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(bad_fields(status).iter().any(|f| f == field), "expected field {field:?} in {:?}", bad_fields(status));
}

/// A value of a status's `google.rpc.ErrorInfo` metadata, if any.
pub fn error_metadata(status: &tonic::Status, key: &str) -> Option<String> {
    use tonic_types::StatusExt as _;
    status.get_error_details().error_info().and_then(|info| info.metadata.get(key).cloned())
}

/// A log entry at `level` with `message` and nothing else.
pub fn entry(level: pb::LogLevel, message: &str) -> pb::LogEntry {
    pb::LogEntry { level: level.into(), message: message.into(), ..Default::default() }
}

/// A `google.protobuf.Value` holding text.
pub fn text(s: &str) -> prost_types::Value {
    prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(s.into())) }
}

/// A `google.protobuf.Value` holding a number.
pub fn number(n: f64) -> prost_types::Value {
    prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(n)) }
}

/// The number in a `google.protobuf.Value`; fails the test otherwise.
pub fn as_number(value: &prost_types::Value) -> f64 {
    match value.kind {
        Some(prost_types::value::Kind::NumberValue(n)) => n,
        ref other => panic!("expected a number, got {other:?}"),
    }
}

/// `message` as a call authenticated by the API key `key`.
pub fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ASCII metadata"));
    request
}
