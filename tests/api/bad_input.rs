//! Malformed and oversized requests at every RPC: each gets a clear error,
//! the server stays up, and its memory stays flat. Well-formed requests
//! with invalid fields: every invalid field is named at once, NUL
//! characters are refused in every text field on both stores, and list
//! fields have one limit each, the same in every call.
//!
//! Requests are raw bytes sent to each method's path, so the server's own
//! decoding is what is exercised: undecodable bytes are INVALID_ARGUMENT
//! with one fixed message (never the decoder's words), empty or
//! wrong-shaped messages are INVALID_ARGUMENT naming the field, and
//! messages over the limit are OUT_OF_RANGE, refused before decoding.

use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use sessiond::pb;

use crate::helpers::{TestApp, bad_fields, by_token, entry, number, text};

/// The one message of a request body that does not decode (README, Errors).
pub const MALFORMED: &str = "the request body is not a valid message of this method";

/// Sends and receives message bodies as raw bytes.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

#[derive(Debug, Clone, Default)]
pub struct Raw;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.chunk().to_vec();
        src.advance(bytes.len());
        Ok(Some(bytes))
    }
}

/// Every sessiond method: its path and whether the client or server streams.
fn methods() -> Vec<(String, bool, bool)> {
    let set =
        prost_types::FileDescriptorSet::decode(sessiond::grpc::FILE_DESCRIPTOR_SET).expect("a valid descriptor set");
    let mut methods = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "sessiond.v1") {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/sessiond.v1.{}/{}", service.name(), method.name());
                methods.push((path, method.client_streaming(), method.server_streaming()));
            }
        }
    }
    assert_eq!(methods.len(), 26, "every RPC of the API");
    methods
}

/// Sends `body` to `path` and answers the status (OK included).
async fn call(app: &TestApp, path: &str, client_streaming: bool, server_streaming: bool, body: Vec<u8>) -> Status {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let path = path.parse().expect("a valid path");
    let outcome = match (client_streaming, server_streaming) {
        (false, false) => grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(|_| ()),
        // A refused stream fails before its first message; an accepted one
        // (a watch) stays open, so its headers are the answer.
        (false, true) => grpc.server_streaming(tonic::Request::new(body), path, RawCodec).await.map(|_| ()),
        (true, _) => {
            let stream = tokio_stream::iter([body]);
            grpc.client_streaming(tonic::Request::new(stream), path, RawCodec).await.map(|_| ())
        }
    };
    outcome.err().unwrap_or_else(|| Status::ok(""))
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The real binary, alone in its process so its memory is its own.
struct Child {
    process: std::process::Child,
    channel: tonic::transport::Channel,
    _data: tempfile::TempDir,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn spawn_binary(args: &[&str]) -> Child {
    let data = tempfile::tempdir().expect("a temporary directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
    let process = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-filter", "error"])
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("sessiond starts");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("a valid uri");
    let deadline = std::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Child { process, channel, _data: data },
            Err(_) if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
            Err(err) => panic!("sessiond did not accept connections: {err}"),
        }
    }
}

#[tokio::test]
async fn garbage_empty_and_oversized_requests_get_clear_errors_at_every_rpc_and_the_server_stays_up() {
    let app = TestApp::spawn_with(|s| s.transport.max_request_bytes = 64 * 1024).await;
    let garbage: Vec<u8> = (0..512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let truncated = vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01];
    let oversized = vec![0x12; 200 * 1024];

    for (path, client_streaming, server_streaming) in methods() {
        let status = call(&app, &path, client_streaming, server_streaming, truncated.clone()).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: undecodable bytes: {status:?}");
        assert_eq!(status.message(), MALFORMED, "{path}: one fixed message: {status:?}");

        let status = call(&app, &path, client_streaming, server_streaming, Vec::new()).await;
        // Listing, searching and watching with no filter are valid (for an
        // admin, which an open server's callers are); everything else needs
        // a session or a kind. GetServerInfo takes nothing.
        // Authenticate answers a token it cannot use, even none, with its
        // one "sign in again" status.
        let empty_is_valid = ["/ListSessions", "/QueryLogs", "/FollowLogs", "/WatchSessions", "/GetServerInfo"]
            .iter()
            .any(|m| path.ends_with(m));
        let authenticate = path.ends_with("/Authenticate");
        let expected = match (empty_is_valid, authenticate) {
            (true, _) => Code::Ok,
            (false, true) => Code::Unauthenticated,
            (false, false) => Code::InvalidArgument,
        };
        assert_eq!(status.code(), expected, "{path}: an empty request: {status:?}");

        let status = call(&app, &path, client_streaming, server_streaming, garbage.clone()).await;
        assert!(
            matches!(status.code(), Code::InvalidArgument | Code::NotFound)
                || (authenticate && status.code() == Code::Unauthenticated),
            "{path}: garbage is refused: {status:?}"
        );

        let status = call(&app, &path, client_streaming, server_streaming, oversized.clone()).await;
        assert_eq!(status.code(), Code::OutOfRange, "{path}: over the request limit: {status:?}");
    }

    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.expect("the server still answers");
}

#[tokio::test]
async fn memory_stays_flat_under_a_stream_of_bad_requests() {
    let child = spawn_binary(&["--max-request-bytes", "65536"]).await;
    let app_channel = child.channel.clone();
    let send = |body: Vec<u8>| {
        let channel = app_channel.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.expect("the channel is ready");
            let path = "/sessiond.v1.SessionService/CreateSession".parse().unwrap();
            grpc.unary(tonic::Request::new(body), path, RawCodec).await.expect_err("a bad request is refused");
        }
    };
    let oversized = vec![0x12; 128 * 1024];
    // Warm up allocators and connection buffers first.
    for _ in 0..300 {
        send(oversized.clone()).await;
        send(vec![0x0a, 0xff, 0xff]).await;
    }
    let before = rss_kib(child.process.id());
    for _ in 0..3_000 {
        send(oversized.clone()).await;
        send(vec![0x0a, 0xff, 0xff]).await;
    }
    let grown = rss_kib(child.process.id()).saturating_sub(before);
    assert!(before > 0, "the server's memory can be read");
    assert!(grown < 8 * 1024, "sessiond's resident memory grew by {grown} KiB over 6000 bad requests");
}

// ---------------------------------------------------------------------------
// Well-formed messages with invalid fields: one pass names every one.
// ---------------------------------------------------------------------------

/// Asserts an INVALID_ARGUMENT whose BadRequest names exactly `fields`.
#[track_caller]
fn assert_names_all(status: &Status, fields: &[&str]) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut named = bad_fields(status);
    named.sort();
    let mut expected: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    expected.sort();
    assert_eq!(named, expected, "{status:?}");
}

#[tokio::test]
async fn every_invalid_field_of_a_create_request_is_named_at_once() {
    let mut app = TestApp::spawn().await;

    let status = app
        .sessions
        .create_session(pb::CreateSessionRequest {
            kind: pb::SessionKind::Unspecified.into(),
            idle_timeout: Some(prost_types::Duration { seconds: -5, nanos: 0 }),
            user_id: "u".repeat(1025),
            labels: Some(pb::SessionLabels { endpoint: "check\0out".into(), ..Default::default() }),
            privileges: vec!["noSuchPrivilege".into()],
            roles: vec!["NoSuchRole".into()],
            storage: [("cart".to_owned(), text("a\0b")), (String::new(), text("x"))].into(),
            trusted: false,
            ..Default::default()
        })
        .await
        .expect_err("the request is invalid");

    assert_names_all(
        &status,
        &[
            "kind",
            "idle_timeout",
            "user_id",
            "labels.endpoint",
            "privileges[0]",
            "roles[0]",
            "storage[cart]",
            "storage",
        ],
    );
    let status = app
        .sessions
        .create_session(pb::CreateSessionRequest {
            kind: pb::SessionKind::WebUser.into(),
            lifetime: Some(prost_types::Duration { seconds: 0, nanos: 500_000_000 }),
            trusted: true,
            ..Default::default()
        })
        .await
        .expect_err("the request is invalid");
    assert_names_all(&status, &["lifetime", "trusted"]);
}

#[tokio::test]
async fn every_invalid_field_of_storage_log_privilege_and_query_calls_is_named_at_once() {
    let mut app = TestApp::spawn().await;
    let bad_session = by_token("sdt_not-a-token");

    let status = app
        .storage
        .put_storage(pb::PutStorageRequest {
            session: bad_session.clone(),
            values: [
                ("k".repeat(300), text("v")),
                ("nul".to_owned(), text("\0")),
                ("nan".to_owned(), number(f64::NAN)),
            ]
            .into(),
            expected_version: None,
        })
        .await
        .expect_err("the request is invalid");
    assert_names_all(&status, &["session.token", "values", "values[nul]", "values[nan]"]);

    let status = app
        .storage
        .delete_storage(pb::DeleteStorageRequest {
            session: None,
            keys: vec![String::new(), "ok".into(), "tab\t".into()],
            expected_version: None,
        })
        .await
        .expect_err("the request is invalid");
    assert_names_all(&status, &["session", "keys[0]", "keys[2]"]);

    let status = app
        .logs
        .log(pb::LogRequest {
            session: bad_session.clone(),
            entries: vec![
                pb::LogEntry { level: 0, message: "no level".into(), ..Default::default() },
                pb::LogEntry {
                    level: pb::LogLevel::Info.into(),
                    message: "nul\0".into(),
                    exception: "x".repeat(70_000),
                    client_time: Some(prost_types::Timestamp { seconds: -1, nanos: 0 }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .await
        .expect_err("the request is invalid");
    assert_names_all(
        &status,
        &["session.token", "entries[0].level", "entries[1].message", "entries[1].exception", "entries[1].client_time"],
    );

    let status = app
        .privileges
        .promote(pb::PromoteRequest { session: bad_session.clone(), privilege: "nope".into(), duration: None })
        .await
        .expect_err("the request is invalid");
    assert_names_all(&status, &["session.token", "privilege", "duration"]);

    let status = app
        .privileges
        .check_privileges(pb::CheckPrivilegesRequest {
            session: None,
            privileges: vec!["viewBasic".into(), "nope".into()],
            mode: 7,
        })
        .await
        .expect_err("the request is invalid");
    assert_names_all(&status, &["session", "privileges[1]", "mode"]);

    let status = app
        .logs
        .query_logs(pb::QueryLogsRequest {
            session_id: "nope".into(),
            user_id: "a\0".into(),
            kind: 99,
            min_level: 42,
            page_size: -1,
            page_token: "x".into(),
            start_time: Some(prost_types::Timestamp { seconds: 0, nanos: -1 }),
            ..Default::default()
        })
        .await
        .expect_err("the request is invalid");
    assert_names_all(&status, &["session_id", "user_id", "kind", "min_level", "page_size", "page_token", "start_time"]);

    let status = app
        .sessions
        .list_sessions(pb::ListSessionsRequest {
            user_id: "a\0".into(),
            kind: 99,
            state: 9,
            page_size: -1,
            page_token: "x".into(),
        })
        .await
        .expect_err("the request is invalid");
    assert_names_all(&status, &["user_id", "kind", "state", "page_size", "page_token"]);
}

// ---------------------------------------------------------------------------
// NUL characters, which no store keeps as text.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_nul_character_in_any_text_field_is_an_invalid_argument_naming_it_on_every_store() {
    let mut app = TestApp::spawn().await;
    let created = app
        .create_with(pb::CreateSessionRequest {
            kind: pb::SessionKind::WebUser.into(),
            user_id: "alice".into(),
            ..Default::default()
        })
        .await;
    let token = created.token.clone();
    let session = by_token(&token);

    let status = app
        .sessions
        .list_sessions(pb::ListSessionsRequest { user_id: "al\0ice".into(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["user_id"]);
    let status = app
        .logs
        .query_logs(pb::QueryLogsRequest { user_id: "\0".into(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["user_id"]);
    let status = app
        .sessions
        .revoke_sessions(pb::RevokeSessionsRequest { user_id: "a\0".into(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["user_id"]);
    let status = app
        .sessions
        .watch_sessions(pb::WatchSessionsRequest { user_id: "a\0".into(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["user_id"]);

    let status = app
        .sessions
        .create_session(pb::CreateSessionRequest {
            kind: pb::SessionKind::WebUser.into(),
            user_id: "a\0".into(),
            labels: Some(pb::SessionLabels {
                endpoint: "\0".into(),
                method: "\0".into(),
                future_call: "\0".into(),
                client_address: "\0".into(),
                user_agent: "\0".into(),
            }),
            privileges: vec!["view\0Basic".into()],
            roles: vec!["\0".into()],
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_names_all(
        &status,
        &[
            "user_id",
            "labels.endpoint",
            "labels.method",
            "labels.future_call",
            "labels.client_address",
            "labels.user_agent",
            "privileges[0]",
            "roles[0]",
        ],
    );

    let nested = prost_types::Value {
        kind: Some(prost_types::value::Kind::StructValue(prost_types::Struct {
            fields: [("inner".to_owned(), text("deep\0down"))].into(),
        })),
    };
    let status = app
        .storage
        .put_storage(pb::PutStorageRequest {
            session: session.clone(),
            values: [("flat".to_owned(), text("\0")), ("nested".to_owned(), nested), ("k\0".to_owned(), text("v"))]
                .into(),
            expected_version: None,
        })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["values[flat]", "values[nested]", "values"]);
    for keys in [vec!["k\0".to_owned()]] {
        let status = app
            .storage
            .get_storage(pb::GetStorageRequest { session: session.clone(), keys: keys.clone() })
            .await
            .expect_err("refused");
        assert_names_all(&status, &["keys[0]"]);
        let status = app
            .storage
            .delete_storage(pb::DeleteStorageRequest { session: session.clone(), keys, expected_version: None })
            .await
            .expect_err("refused");
        assert_names_all(&status, &["keys[0]"]);
    }

    let status = app
        .privileges
        .set_privileges(pb::SetPrivilegesRequest {
            session: session.clone(),
            privileges: vec!["\0".into()],
            roles: vec!["Manager\0".into()],
        })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["privileges[0]", "roles[0]"]);
    let status = app
        .privileges
        .has_privilege(pb::HasPrivilegeRequest { session: session.clone(), privilege: "admin\0".into() })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["privilege"]);

    let status = app
        .logs
        .log(pb::LogRequest {
            session: session.clone(),
            entries: vec![pb::LogEntry {
                level: pb::LogLevel::Error.into(),
                message: "\0".into(),
                exception: "\0".into(),
                stack_trace: "\0".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["entries[0].message", "entries[0].exception", "entries[0].stack_trace"]);

    let status = app
        .sessions
        .close_session(pb::CloseSessionRequest {
            session: session.clone(),
            error: "boom\0".into(),
            stack_trace: "\0".into(),
        })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["error", "stack_trace"]);

    // Nothing reached the store, and the session is as it was.
    let stored = app
        .storage
        .get_storage(pb::GetStorageRequest { session: session.clone(), keys: vec![] })
        .await
        .expect("GetStorage")
        .into_inner();
    assert_eq!((stored.values.len(), stored.version), (0, 0));
    app.get(&token).await.expect("the session is still open");
}

// ---------------------------------------------------------------------------
// List-shaped fields: one limit per kind of item, the same in every call.
// ---------------------------------------------------------------------------

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

#[tokio::test]
async fn list_fields_over_their_limit_are_invalid_arguments_alike_in_every_call() {
    let mut app = TestApp::spawn().await;
    let token = app.create(pb::SessionKind::WebUser, "alice").await.token;
    let session = by_token(&token);

    // Session ids: 1,000 per RevokeSessions (the embedded store once failed
    // at 32,766).
    let ids: Vec<String> = (0..40_000u32).map(|i| format!("{i:032x}")).collect();
    let status = app
        .sessions
        .revoke_sessions(pb::RevokeSessionsRequest { session_ids: ids.clone(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["session_ids"]);
    let revoked = app
        .sessions
        .revoke_sessions(pb::RevokeSessionsRequest { session_ids: ids[..1_000].to_vec(), ..Default::default() })
        .await
        .expect("1,000 ids are within the limit")
        .into_inner();
    assert!(revoked.session_ids.is_empty(), "none of them exists");

    // Storage keys: --storage-max-keys (1,000) in every call.
    let status = app
        .storage
        .get_storage(pb::GetStorageRequest { session: session.clone(), keys: keys(70_000) })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["keys"]);
    let status = app
        .storage
        .delete_storage(pb::DeleteStorageRequest {
            session: session.clone(),
            keys: keys(70_000),
            expected_version: None,
        })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["keys"]);
    let many: std::collections::HashMap<String, prost_types::Value> =
        keys(1_001).into_iter().map(|k| (k, number(1.0))).collect();
    let status = app
        .storage
        .put_storage(pb::PutStorageRequest { session: session.clone(), values: many.clone(), expected_version: None })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["values"]);
    let status = app
        .sessions
        .create_session(pb::CreateSessionRequest {
            kind: pb::SessionKind::WebUser.into(),
            storage: many,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["storage"]);
    app.storage
        .get_storage(pb::GetStorageRequest { session: session.clone(), keys: keys(1_000) })
        .await
        .expect("1,000 keys are within the limit");
    app.storage
        .delete_storage(pb::DeleteStorageRequest {
            session: session.clone(),
            keys: keys(1_000),
            expected_version: None,
        })
        .await
        .expect("1,000 keys are within the limit");

    // Privileges and roles: 256 names per call.
    let names = vec!["viewBasic".to_owned(); 257];
    let status = app
        .sessions
        .create_session(pb::CreateSessionRequest {
            kind: pb::SessionKind::WebUser.into(),
            privileges: names.clone(),
            roles: vec!["Viewer".to_owned(); 257],
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["privileges", "roles"]);
    let status = app
        .privileges
        .set_privileges(pb::SetPrivilegesRequest {
            session: session.clone(),
            privileges: names.clone(),
            roles: vec!["Viewer".to_owned(); 257],
        })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["privileges", "roles"]);
    let status = app
        .privileges
        .check_privileges(pb::CheckPrivilegesRequest { session: session.clone(), privileges: names, mode: 0 })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["privileges"]);
    app.privileges
        .check_privileges(pb::CheckPrivilegesRequest {
            session: session.clone(),
            privileges: vec!["viewBasic".to_owned(); 256],
            mode: 0,
        })
        .await
        .expect("256 names are within the limit");

    // Log entries: --session-log-max-entries (1,000) per Log call or stream message.
    let entries = vec![entry(pb::LogLevel::Info, "x"); 1_001];
    let status = app
        .logs
        .log(pb::LogRequest { session: session.clone(), entries: entries.clone(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_names_all(&status, &["entries"]);
    let stream = tokio_stream::iter([pb::StreamLogRequest { session: session.clone(), entries, ..Default::default() }]);
    let status = app.logs.stream_log(stream).await.expect_err("refused");
    assert_names_all(&status, &["entries"]);
}

#[tokio::test]
async fn thousands_of_invalid_items_are_answered_with_a_bounded_bad_request() {
    let mut app = TestApp::spawn().await;
    let token = app.create(pb::SessionKind::WebUser, "alice").await.token;
    let entries = vec![pb::LogEntry { level: 0, message: "no level".into(), ..Default::default() }; 1_000];

    let status = app
        .logs
        .log(pb::LogRequest { session: by_token(&token), entries, ..Default::default() })
        .await
        .expect_err("refused");

    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let named = bad_fields(&status);
    assert_eq!(named.len(), 101, "the first 100 violations and a count of the rest");
    assert_eq!(named[0], "entries[0].level");
    assert!(status.message().len() < 1_000, "{}", status.message());
}
