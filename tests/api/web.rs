//! The HTTP faces of the gRPC port, spoken over raw HTTP/1.1 sockets: the
//! Connect protocol's unary form with JSON and protobuf, gRPC-Web, CORS,
//! and the bad-input set through each face, answered with the same codes,
//! limits and `google.rpc` details as gRPC.

use base64::Engine as _;
use prost::Message as _;
use serde_json::{Value, json};
use sessiond::auth::{generate_key, hash_key};
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{PATIENCE, TestApp};

/// An HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| panic!("a JSON body ({err}): {self:?}"))
    }
}

/// Sends one HTTP/1.1 request on a new connection and reads the answer to
/// the connection's end.
async fn http1(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let address = app.address.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).await.expect("connects");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    socket.write_all(request.as_bytes()).await.expect("the head is sent");
    socket.write_all(body).await.expect("the body is sent");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut raw)).await.expect("answered promptly").expect("read");
    parse(&raw)
}

fn parse(raw: &[u8]) -> Answer {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = std::str::from_utf8(&raw[..end]).expect("a text head");
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body = unchunk(&body);
    }
    Answer { status, headers, body }
}

fn unchunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line = raw.windows(2).position(|w| w == b"\r\n").expect("a chunk size");
        let size = std::str::from_utf8(&raw[..line]).expect("hex");
        let size = usize::from_str_radix(size.split(';').next().expect("a size").trim(), 16).expect("a hex size");
        raw = &raw[line + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A Connect JSON call.
async fn connect(app: &TestApp, path: &str, body: &Value, extra: &[(&str, &str)]) -> Answer {
    let mut headers = vec![JSON];
    headers.extend_from_slice(extra);
    http1(app, "POST", path, &headers, body.to_string().as_bytes()).await
}

/// Asserts a Connect error: its HTTP status and code, and the ErrorInfo
/// reason or BadRequest field among its details (checked both in the
/// protobuf `value` and in `debug`).
#[track_caller]
fn assert_error(answer: &Answer, status: u16, code: &str) -> Value {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"), "{answer:?}");
    let error = answer.json();
    assert_eq!(error["code"], code, "{error}");
    error
}

/// The ErrorInfo reason and BadRequest fields of a Connect error, decoded
/// from the details' protobuf values.
fn details(error: &Value) -> (Option<String>, Vec<String>) {
    let (mut reason, mut fields) = (None, Vec::new());
    for detail in error["details"].as_array().into_iter().flatten() {
        let value = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(detail["value"].as_str().expect("a value"))
            .expect("base64 without padding");
        match detail["type"].as_str() {
            Some("google.rpc.ErrorInfo") => {
                let info = tonic_types::pb::ErrorInfo::decode(value.as_slice()).expect("an ErrorInfo");
                assert_eq!(detail["debug"]["reason"], info.reason, "debug and value agree");
                assert_eq!(info.domain, "sessiond.dev");
                reason = Some(info.reason);
            }
            Some("google.rpc.BadRequest") => {
                let bad = tonic_types::pb::BadRequest::decode(value.as_slice()).expect("a BadRequest");
                fields.extend(bad.field_violations.into_iter().map(|v| v.field));
            }
            _ => {}
        }
    }
    (reason, fields)
}

const CREATE: &str = "/sessiond.v1.SessionService/CreateSession";
const GET: &str = "/sessiond.v1.SessionService/GetSession";
const CLOSE: &str = "/sessiond.v1.SessionService/CloseSession";
const HAS: &str = "/sessiond.v1.PrivilegeService/HasPrivilege";
const PUT: &str = "/sessiond.v1.StorageService/PutStorage";
const GET_STORAGE: &str = "/sessiond.v1.StorageService/GetStorage";

#[tokio::test]
async fn a_web_login_flow_runs_over_http1_with_json() {
    let app = TestApp::spawn().await;
    let created = connect(
        &app,
        CREATE,
        &json!({"kind": "SESSION_KIND_WEB_USER", "userId": "alice", "idleTimeout": "1800s",
                "roles": ["Manager"], "storage": {"cart": {"items": ["book"], "total": 12.5}}}),
        &[],
    )
    .await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(created.header("content-type"), Some("application/json"));
    let created = created.json();
    let token = created["token"].as_str().expect("a token").to_owned();
    assert_eq!(created["session"]["userId"], "alice");
    assert_eq!(created["session"]["idleTimeout"], "1800s");
    assert_eq!(created["session"]["kind"], "SESSION_KIND_WEB_USER");

    let session = json!({"token": token});
    let granted = connect(&app, HAS, &json!({"session": session, "privilege": "viewBasic"}), &[]).await;
    assert_eq!(granted.json()["granted"], true, "{granted:?}");
    // Fields at their default are answered too.
    let denied = connect(&app, HAS, &json!({"session": session, "privilege": "admin"}), &[]).await;
    assert_eq!(denied.json()["granted"], false, "{denied:?}");

    let storage = connect(&app, GET_STORAGE, &json!({"session": session}), &[]).await.json();
    assert_eq!(storage["values"]["cart"]["total"], 12.5);
    let version = storage["version"].as_str().expect("a 64-bit integer is a string").to_owned();
    let put = json!({"session": session, "expectedVersion": version, "values": {"cart": {"items": []}}});
    assert_eq!(connect(&app, PUT, &put, &[]).await.status, 200);
    let stale = connect(&app, PUT, &put, &[]).await;
    let error = assert_error(&stale, 409, "aborted");
    assert_eq!(details(&error).0.as_deref(), Some("VERSION_CONFLICT"));

    let closed = connect(&app, CLOSE, &json!({"session": session}), &[]).await.json();
    assert_eq!(closed["endReason"], "END_REASON_CLOSED");
    let after = connect(&app, GET, &json!({"session": session}), &[]).await;
    let error = assert_error(&after, 400, "failed_precondition");
    assert_eq!(details(&error).0.as_deref(), Some("SESSION_CLOSED"));
    assert_eq!(error["message"], "session has ended: closed");
}

#[tokio::test]
async fn protobuf_bodies_are_served_as_application_proto() {
    let app = TestApp::spawn().await;
    let request = pb::CreateSessionRequest { kind: Kind::WebUser.into(), user_id: "bob".into(), ..Default::default() };
    let answer = http1(&app, "POST", CREATE, &[("Content-Type", "application/proto")], &request.encode_to_vec()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/proto"));
    let created = pb::CreateSessionResponse::decode(answer.body.as_slice()).expect("a CreateSessionResponse");
    assert_eq!(created.session.expect("a session").user_id, "bob");
    // Errors are JSON whatever the request's encoding.
    let answer = http1(&app, "POST", GET, &[("Content-Type", "application/proto")], &[0x0a, 0xff, 0x0f]).await;
    let error = assert_error(&answer, 400, "invalid_argument");
    assert_eq!(details(&error).0.as_deref(), Some("MALFORMED_REQUEST"));
}

#[tokio::test]
async fn bad_input_through_the_json_face_gets_clear_codes_and_never_reaches_the_service() {
    let app = TestApp::spawn_with(|s| s.transport.max_request_bytes = 1024).await;

    // Wrong content type: 415, with what is served.
    let answer = http1(&app, "POST", CREATE, &[("Content-Type", "text/plain")], b"{}").await;
    assert_error(&answer, 415, "unimplemented");
    assert!(answer.header("accept-post").is_some_and(|v| v.contains("application/json")), "{answer:?}");
    let answer = http1(&app, "POST", CREATE, &[], b"{}").await;
    assert_error(&answer, 415, "unimplemented");

    // Malformed JSON, unknown fields, unknown enum names, wrong types.
    let cases: [(&[u8], &str, &str); 6] = [
        (b"{\"kind\": ", "", "MALFORMED_REQUEST"),
        (b"[1, 2]", "", "MALFORMED_REQUEST"),
        (b"{\"kind\": \"SESSION_KIND_WEB_USER\", \"userid\": \"alice\"}", "userid", "MALFORMED_REQUEST"),
        (b"{\"session\": {\"tokne\": \"x\"}}", "session.tokne", "MALFORMED_REQUEST"),
        (b"{\"kind\": \"SESSION_KIND_NOPE\"}", "kind", "MALFORMED_REQUEST"),
        (b"{\"userId\": 5}", "userId", "MALFORMED_REQUEST"),
    ];
    for (body, field, reason) in cases {
        let path = if field.starts_with("session") { GET } else { CREATE };
        let answer = http1(&app, "POST", path, &[JSON], body).await;
        let error = assert_error(&answer, 400, "invalid_argument");
        let (got_reason, fields) = details(&error);
        assert_eq!(got_reason.as_deref(), Some(reason), "{error}");
        if !field.is_empty() {
            assert_eq!(fields, [field], "{error}");
        }
    }

    // Missing or invalid fields: the service's own validation, as over gRPC.
    let answer = connect(&app, CREATE, &json!({"userId": "alice"}), &[]).await;
    let error = assert_error(&answer, 400, "invalid_argument");
    assert_eq!(details(&error).1, ["kind"], "{error}");
    let answer = connect(&app, GET, &json!({"session": {"token": "not-a-token"}}), &[]).await;
    let error = assert_error(&answer, 400, "invalid_argument");
    assert_eq!(details(&error).1, ["session.token"], "{error}");

    // Oversized bodies: refused from Content-Length, before they are read.
    let big = json!({"kind": "SESSION_KIND_WEB_USER", "userId": "x".repeat(2000)});
    let error = assert_error(&connect(&app, CREATE, &big, &[]).await, 400, "out_of_range");
    assert_eq!(details(&error).0.as_deref(), Some("REQUEST_TOO_LARGE"));

    // Bad Connect headers, methods and paths.
    let answer = connect(&app, CREATE, &json!({}), &[("Connect-Timeout-Ms", "soon")]).await;
    assert_eq!(details(&assert_error(&answer, 400, "invalid_argument")).1, ["connect-timeout-ms"]);
    let answer = connect(&app, CREATE, &json!({}), &[("Connect-Protocol-Version", "2")]).await;
    assert_error(&answer, 400, "invalid_argument");
    let answer = connect(&app, CREATE, &json!({}), &[("Content-Encoding", "br")]).await;
    assert_error(&answer, 501, "unimplemented");
    let answer = http1(&app, "GET", CREATE, &[JSON], b"").await;
    assert_eq!(answer.status, 405, "{answer:?}");
    let answer = connect(&app, "/sessiond.v1.SessionService/Nope", &json!({}), &[]).await;
    assert_error(&answer, 501, "unimplemented");
    let answer = connect(&app, "/sessiond.v1.SessionService/WatchSessions", &json!({}), &[]).await;
    assert_error(&answer, 501, "unimplemented");

    let mut sessions = app.sessions.clone();
    let listed = sessions.list_sessions(pb::ListSessionsRequest::default()).await.expect("listed").into_inner();
    assert!(listed.sessions.is_empty(), "no refused request created a session: {listed:?}");
}

/// An app whose callers need an API key; answers it with the key.
async fn with_keys() -> (TestApp, String) {
    let key = generate_key().0;
    let keys = format!("keys:\n  - {{name: svc, tenant: acme, role: service, hash: \"{}\"}}\n", hash_key(&key));
    (TestApp::spawn_with_keys(&keys).await, key)
}

#[tokio::test]
async fn the_json_face_authenticates_with_the_same_api_keys() {
    let (app, key) = with_keys().await;
    let create = json!({"kind": "SESSION_KIND_WEB_USER", "userId": "alice"});
    assert_error(&connect(&app, CREATE, &create, &[]).await, 401, "unauthenticated");
    let wrong = connect(&app, CREATE, &create, &[("Authorization", "Bearer sdk_wrong")]).await;
    let error = assert_error(&wrong, 401, "unauthenticated");
    assert!(!error.to_string().contains("sdk_wrong"), "the key is never echoed: {error}");
    let bearer = format!("Bearer {key}");
    let created = connect(&app, CREATE, &create, &[("Authorization", &bearer)]).await;
    assert_eq!(created.status, 200, "{created:?}");
}

#[tokio::test]
async fn the_json_face_meets_the_concurrency_limit_and_its_clients_deadline() {
    let app = TestApp::spawn_with(|s| {
        s.limits.max_concurrent_calls = 1;
        // The server's limit, not a caller's share, is the one met here.
        s.limits.max_concurrent_calls_per_key = Some(2);
        s.limits.max_concurrent_calls_per_tenant = Some(2);
    })
    .await;
    // A watch holds the one slot as long as it runs.
    let mut sessions = app.sessions.clone();
    let watch = sessions.watch_sessions(pb::WatchSessionsRequest::default()).await.expect("a watch");
    let create = json!({"kind": "SESSION_KIND_WEB_USER", "userId": "alice"});
    let shed = connect(&app, CREATE, &create, &[]).await;
    let error = assert_error(&shed, 429, "resource_exhausted");
    assert_eq!(details(&error).0.as_deref(), Some("OVERLOADED"));
    drop(watch);

    // A body that does not arrive within the client's deadline.
    let app = TestApp::spawn().await;
    let address = app.address.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).await.expect("connects");
    let head = format!(
        "POST {CREATE} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Connect-Timeout-Ms: 300\r\nContent-Length: 100\r\n\r\n{{\"kind\": "
    );
    // Started before the server reads the head, so never late.
    let started = std::time::Instant::now();
    socket.write_all(head.as_bytes()).await.expect("the head is sent");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut raw)).await.expect("answered promptly").expect("read");
    assert_error(&parse(&raw), 504, "deadline_exceeded");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "cut at the deadline, not before");
    let in_time = connect(&app, CREATE, &create, &[("Connect-Timeout-Ms", "10000")]).await;
    assert_eq!(in_time.status, 200, "{in_time:?}");
}

/// A gRPC-Web frame (`0x80`: trailers) and the messages and trailers of a
/// gRPC-Web answer body.
fn grpc_web_frames(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut messages, mut trailers) = (Vec::new(), String::new());
    while body.len() >= 5 {
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = body[5..5 + length].to_vec();
        if body[0] & 0x80 != 0 {
            trailers = String::from_utf8(payload).expect("text trailers");
        } else {
            messages.push(payload);
        }
        body = &body[5 + length..];
    }
    (messages, trailers)
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

const GRPC_WEB: (&str, &str) = ("Content-Type", "application/grpc-web+proto");

#[tokio::test]
async fn grpc_web_over_http1_serves_calls_with_the_same_limits_and_errors() {
    let (app, key) = with_keys().await;
    let bearer = format!("Bearer {key}");
    let request =
        pb::CreateSessionRequest { kind: Kind::WebUser.into(), user_id: "carol".into(), ..Default::default() };
    let answer =
        http1(&app, "POST", CREATE, &[GRPC_WEB, ("Authorization", &bearer)], &framed(&request.encode_to_vec())).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let (messages, trailers) = grpc_web_frames(&answer.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    let created = pb::CreateSessionResponse::decode(messages[0].as_slice()).expect("a CreateSessionResponse");
    assert_eq!(created.session.expect("a session").user_id, "carol");

    // Without a key; an oversized message; a frame that is not protobuf.
    let unauthenticated = http1(&app, "POST", CREATE, &[GRPC_WEB], &framed(&request.encode_to_vec())).await;
    assert_eq!(grpc_status(&unauthenticated), 16, "{unauthenticated:?}");
    let mut oversized = vec![0, 0, 0x80, 0, 0];
    oversized.extend_from_slice(&[0; 16]);
    let too_large = http1(&app, "POST", CREATE, &[GRPC_WEB, ("Authorization", &bearer)], &oversized).await;
    assert_eq!(grpc_status(&too_large), 11, "{too_large:?}");
    let garbage = http1(&app, "POST", GET, &[GRPC_WEB, ("Authorization", &bearer)], &framed(&[0x0a, 0xff, 0x0f])).await;
    assert_eq!(grpc_status(&garbage), 3, "{garbage:?}");

    // The text form: the same frames in base64.
    let text = base64::engine::general_purpose::STANDARD.encode(framed(&request.encode_to_vec()));
    let answer = http1(
        &app,
        "POST",
        CREATE,
        &[
            ("Content-Type", "application/grpc-web-text"),
            ("Accept", "application/grpc-web-text"),
            ("Authorization", &bearer),
        ],
        text.as_bytes(),
    )
    .await;
    let body = decode_text(&answer.body);
    assert!(grpc_web_frames(&body).1.contains("grpc-status:0"), "{answer:?}");
}

/// A `grpc-web-text` body: base64 chunks, each padded on its own.
fn decode_text(mut text: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while !text.is_empty() {
        // A chunk ends after its padding, or where the text ends.
        let mut end = text.iter().position(|&b| b == b'=').unwrap_or(text.len());
        while end < text.len() && text[end] == b'=' {
            end += 1;
        }
        body.extend(base64::engine::general_purpose::STANDARD.decode(&text[..end]).expect("base64"));
        text = &text[end..];
    }
    body
}

/// The gRPC status of a gRPC-Web answer: in its headers when it has no
/// message, else in its trailers frame.
fn grpc_status(answer: &Answer) -> i32 {
    if let Some(status) = answer.header("grpc-status") {
        return status.parse().expect("a number");
    }
    let (_, trailers) = grpc_web_frames(&answer.body);
    trailers
        .lines()
        .find_map(|line| line.strip_prefix("grpc-status:"))
        .and_then(|s| s.trim().parse().ok())
        .expect("a status")
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let app = TestApp::spawn_with(|s| s.server.cors_allowed_origins = vec!["http://app.test:8080".into()]).await;
    let preflight = |origin: &'static str| {
        [
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,x-grpc-web,authorization"),
        ]
    };
    let allowed = http1(&app, "OPTIONS", CREATE, &preflight("http://app.test:8080"), b"").await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("access-control-allow-origin"), Some("http://app.test:8080"));
    assert!(allowed.header("access-control-allow-headers").is_some_and(|h| h.contains("authorization")));
    let refused = http1(&app, "OPTIONS", CREATE, &preflight("http://evil.test"), b"").await;
    assert_eq!(refused.header("access-control-allow-origin"), None, "{refused:?}");

    let create = json!({"kind": "SESSION_KIND_WEB_USER", "userId": "alice"});
    let answer = connect(&app, CREATE, &create, &[("Origin", "http://app.test:8080")]).await;
    assert_eq!(answer.header("access-control-allow-origin"), Some("http://app.test:8080"), "{answer:?}");
    assert!(answer.header("access-control-expose-headers").is_some_and(|h| h.contains("grpc-status")));

    // Without configured origins no origin is allowed.
    let closed = TestApp::spawn().await;
    let answer = http1(&closed, "OPTIONS", CREATE, &preflight("http://app.test:8080"), b"").await;
    assert_eq!(answer.header("access-control-allow-origin"), None, "{answer:?}");
}

#[tokio::test]
async fn health_is_served_over_json_too() {
    let app = TestApp::spawn().await;
    let answer = connect(&app, "/grpc.health.v1.Health/Check", &json!({}), &[]).await;
    assert_eq!(answer.json()["status"], "SERVING", "{answer:?}");
}

#[tokio::test]
async fn an_http1_connection_that_never_finishes_its_request_head_is_closed_within_the_handshake_timeout() {
    let app = TestApp::spawn_with(|s| s.transport.handshake_timeout = std::time::Duration::from_millis(300)).await;
    let address = app.address.trim_start_matches("http://");
    // Started before the server accepts, so never late.
    let started = std::time::Instant::now();
    let mut socket = TcpStream::connect(address).await.expect("connects");
    socket.write_all(format!("POST {CREATE} HTTP/1.1\r\nHost: {address}\r\n").as_bytes()).await.expect("sent");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut rest)).await.expect("closed promptly");
    assert!(closed.is_err() || rest.is_empty(), "no answer to half a head: {rest:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "closed at the timeout, not before");
}
