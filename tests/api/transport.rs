//! Transport limits, produced for real: streams held open against the
//! concurrency limit, calls outliving their deadline, sockets that never
//! finish the HTTP/2 handshake, and hand-built malformed gRPC frames sent
//! over HTTP/2.

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

use crate::bad_input::MALFORMED;
use crate::helpers::{PATIENCE, TestApp, by_token, error_reason, failure, next_event};

/// Opens a watch of every event; `None` when it was refused.
async fn try_watch(app: &TestApp) -> Result<tonic::Streaming<pb::WatchSessionsResponse>, tonic::Status> {
    let mut sessions = app.sessions.clone();
    Ok(sessions.watch_sessions(pb::WatchSessionsRequest::default()).await?.into_inner())
}

/// Retries `GetSession` until it succeeds: the server learns of a stream
/// the client dropped a moment later.
async fn get_once_freed(app: &mut TestApp, token: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match app.get(token).await {
            Ok(_) => return,
            Err(shed) if shed.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::task::yield_now().await
            }
            Err(other) => panic!("calls succeed again once a slot is free: {other:?}"),
        }
    }
}

/// At most `limit` calls at once, and per key and tenant more than that,
/// so the global limit is the one calls meet.
fn only_the_global_limit(settings: &mut sessiond::settings::Settings, limit: usize) {
    settings.limits.max_concurrent_calls = limit;
    settings.limits.max_concurrent_calls_per_key = Some(limit + 1);
    settings.limits.max_concurrent_calls_per_tenant = Some(limit + 1);
}

/// Asserts a refusal by the concurrency limit, with its details.
#[track_caller]
fn assert_shed(status: &tonic::Status, limit: usize) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(status).as_deref(), Some("OVERLOADED"), "{status:?}");
    let details = status.get_error_details();
    let quota = details.quota_failure().expect("a QuotaFailure");
    assert_eq!(quota.violations[0].subject, "max-concurrent-calls");
    let info = details.error_info().expect("an ErrorInfo");
    assert_eq!(info.metadata["max_concurrent_calls"], limit.to_string());
}

#[tokio::test]
async fn watch_streams_hold_their_slot_of_the_concurrency_limit_as_long_as_they_run() {
    let mut app = TestApp::spawn_with(|s| only_the_global_limit(s, 8)).await;
    let created = app.create(Kind::WebUser, "alice").await;

    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let sessions = app.sessions.clone();
        opening.spawn(async move {
            let mut sessions = sessions;
            sessions.watch_sessions(pb::WatchSessionsRequest::default()).await.map(tonic::Response::into_inner)
        });
    }
    let mut watching = Vec::new();
    while let Some(opened) = opening.join_next().await {
        match opened.expect("the task does not panic") {
            Ok(stream) => watching.push(stream),
            Err(shed) => assert_shed(&shed, 8),
        }
    }
    assert_eq!(watching.len(), 8, "exactly the limit of watches are open at once");
    assert_shed(&failure(app.get(&created.token).await), 8);

    // Another watch is refused too; once one ends, calls go through and
    // the watches still open are served.
    assert_shed(&failure(try_watch(&app).await), 8);
    watching.pop();
    get_once_freed(&mut app, &created.token).await;
    let bob = app.create(Kind::WebUser, "bob").await.session.expect("a session").session_id;
    for watch in &mut watching {
        while next_event(watch).await.session_id != bob {}
    }
}

#[tokio::test]
async fn health_and_reflection_answer_while_every_slot_is_taken() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    let mut app = TestApp::spawn_with(|s| only_the_global_limit(s, 2)).await;
    let created = app.create(Kind::WebUser, "alice").await;
    let first = try_watch(&app).await.expect("a slot is free");
    let second = try_watch(&app).await.expect("a slot is free");
    assert_shed(&failure(app.get(&created.token).await), 2);

    let mut health = HealthClient::new(app.channel.clone());
    for _ in 0..5 {
        health.check(HealthCheckRequest::default()).await.expect("health is never shed");
    }
    let list = || ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut reflection = ServerReflectionClient::new(app.channel.clone());
    let mut answers =
        reflection.server_reflection_info(tokio_stream::iter([list()])).await.expect("not shed").into_inner();
    tokio::time::timeout(PATIENCE, answers.message()).await.expect("promptly").expect("no error").expect("an answer");
    let mut alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut alpha_answers =
        alpha.server_reflection_info(tokio_stream::iter([request])).await.expect("not shed").into_inner();
    tokio::time::timeout(PATIENCE, alpha_answers.message())
        .await
        .expect("promptly")
        .expect("no error")
        .expect("an answer");
    // Open reflection streams took no slot either.
    assert_shed(&failure(app.get(&created.token).await), 2);

    drop((first, second));
    get_once_freed(&mut app, &created.token).await;
}

/// Opens a StreamLog on `token` and keeps it open (the answer comes only
/// when the client ends it): a call as long as the test wants.
async fn held_stream_log(
    app: &TestApp,
    token: &str,
) -> (tokio::sync::mpsc::Sender<pb::StreamLogRequest>, Result<pb::StreamLogResponse, tonic::Status>) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<pb::StreamLogRequest>(1);
    sender
        .send(pb::StreamLogRequest { session: by_token(token), entries: vec![], ..Default::default() })
        .await
        .expect("queued");
    let mut logs = app.logs.clone();
    let answer = tokio::time::timeout(PATIENCE, logs.stream_log(tokio_stream::wrappers::ReceiverStream::new(receiver)))
        .await
        .expect("answered promptly");
    (sender, answer.map(tonic::Response::into_inner))
}

#[tokio::test]
async fn a_call_over_max_call_duration_is_cut_with_deadline_exceeded_while_a_watch_outlives_it() {
    let mut app = TestApp::spawn_with(|s| s.limits.max_call_duration = Duration::from_millis(300)).await;
    let created = app.create(Kind::WebUser, "alice").await;
    let mut watch = try_watch(&app).await.expect("the watch starts");

    let started = Instant::now();
    let (_sender, answer) = held_stream_log(&app, &created.token).await;
    let status = answer.expect_err("the stream is cut");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(300), "cut at the ceiling, not before");

    // The watch started within the ceiling, so it goes on past it.
    let bob = app.create(Kind::WebUser, "bob").await.session.expect("a session").session_id;
    assert_eq!(next_event(&mut watch).await.session_id, bob);
}

#[tokio::test]
async fn a_clients_deadline_cuts_its_call_and_its_watch_with_deadline_exceeded() {
    // By hand: tonic's own client gives up at its deadline and reports
    // CANCELLED before the server's answer arrives.
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebUser, "alice").await;
    let first = pb::StreamLogRequest { session: by_token(&created.token), entries: vec![], ..Default::default() };
    let deadline = [("grpc-timeout", "300m")];

    let started = Instant::now();
    let held_open =
        raw_call(&app, "/sessiond.v1.LogService/StreamLog", frame(false, &first.encode_to_vec()), false, &deadline);
    let (code, _) = held_open.await;
    assert_eq!(code, Code::DeadlineExceeded as i32, "the client stream is cut at the client's deadline");
    assert!(started.elapsed() >= Duration::from_millis(300), "cut at the deadline, not before");

    let started = Instant::now();
    let watch = frame(false, &pb::WatchSessionsRequest::default().encode_to_vec());
    let (code, _) = raw_call(&app, "/sessiond.v1.SessionService/WatchSessions", watch, true, &deadline).await;
    assert_eq!(code, Code::DeadlineExceeded as i32, "the watch ends at the client's deadline");
    assert!(started.elapsed() >= Duration::from_millis(300), "ended at the deadline, not before");
    app.get(&created.token).await.expect("the server still answers");
}

/// Reads from `socket` until the server closes it; answers how long that took.
async fn closed_within(mut socket: TcpStream, started: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, socket.read(&mut buf)).await.expect("the server closes the connection") {
            Ok(0) | Err(_) => return started.elapsed(),
            // The server's SETTINGS frame.
            Ok(_) => continue,
        }
    }
}

#[tokio::test]
async fn connections_that_never_finish_the_http2_preface_are_closed_within_the_handshake_timeout() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let bound = Duration::from_millis(500);
    let mut app = TestApp::spawn_with(|s| s.transport.handshake_timeout = bound).await;
    let address = app.address.trim_start_matches("http://").to_owned();

    let started = Instant::now();
    let mut waiting = tokio::task::JoinSet::new();
    for i in 0..10 {
        let mut socket = TcpStream::connect(&address).await.expect("connects");
        if i % 2 == 1 {
            socket.write_all(&PREFACE[..12]).await.expect("half the preface is sent");
        }
        waiting.spawn(closed_within(socket, started));
    }
    // Meanwhile a client that spoke HTTP/2 keeps being served.
    let created = app.create(Kind::WebUser, "alice").await;
    while let Some(closed) = waiting.join_next().await {
        let after = closed.expect("the task does not panic");
        assert!(after >= bound, "closed after {after:?}, before the bound");
        assert!(after < bound + Duration::from_secs(5), "closed after {after:?}, long past the bound");
    }
    app.get(&created.token).await.expect("the established client is still served");
    app.get_on_a_new_connection(&created.token).await.expect("a new client is served");
}

/// A gRPC call made by hand over HTTP/2: `body` as the request's bytes,
/// verbatim. Answers the status code and message.
/// With `end` false, the request stays open after `body`.
async fn raw_call(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    end: bool,
    headers: &[(&'static str, &'static str)],
) -> (i32, String) {
    let address = app.address.trim_start_matches("http://");
    let socket = TcpStream::connect(address).await.expect("connects");
    let (client, connection) = h2::client::handshake(socket).await.expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("the connection is ready");
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (answer, mut sending) =
        client.send_request(request.body(()).expect("a valid request"), false).expect("the request is sent");
    sending.send_data(Bytes::from(body), end).expect("the body is sent");
    let answer = tokio::time::timeout(PATIENCE, answer).await.expect("answered promptly").expect("an answer");
    let (head, mut body) = answer.into_parts();
    let status = if head.headers.contains_key("grpc-status") {
        head.headers
    } else {
        while let Some(data) = body.data().await {
            let data = data.expect("the body is read");
            let _ = body.flow_control().release_capacity(data.len());
        }
        body.trailers().await.expect("trailers are read").expect("the status is in the trailers")
    };
    let status = tonic::Status::from_header_map(&status).expect("a gRPC status");
    (status.code() as i32, status.message().to_owned())
}

/// A gRPC frame: flag, big-endian length, message.
fn frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut framed = vec![u8::from(compressed)];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

#[tokio::test]
async fn malformed_frames_get_a_clear_code_and_a_fixed_message_and_the_server_stays_healthy() {
    let mut app = TestApp::spawn_with(|s| s.transport.max_request_bytes = 1024).await;
    let created = app.create(Kind::WebUser, "alice").await;
    let get = "/sessiond.v1.SessionService/GetSession";
    let watch = "/sessiond.v1.SessionService/WatchSessions";
    let stream_log = "/sessiond.v1.LogService/StreamLog";
    // GetSessionRequest { session: SessionRef { token: <not UTF-8> } }.
    let not_utf8: &[u8] = &[0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
    // A length-delimited field whose length runs past the message.
    let not_protobuf: &[u8] = &[0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01];
    let mut announced_more = frame(false, &[0x0a, 0x00]);
    announced_more[4] = 100;
    let mut over_limit = vec![0, 0, 0x20, 0, 0];
    over_limit.extend_from_slice(&[0; 64]);
    let valid_log = pb::StreamLogRequest { session: by_token(&created.token), entries: vec![], ..Default::default() };
    let valid_log = valid_log.encode_to_vec();

    let malformed = [
        ("invalid UTF-8", get, frame(false, not_utf8)),
        ("invalid protobuf", get, frame(false, not_protobuf)),
        ("invalid protobuf, server stream", watch, frame(false, not_protobuf)),
        (
            "invalid protobuf after a valid message",
            stream_log,
            [frame(false, &valid_log), frame(false, not_protobuf)].concat(),
        ),
        ("a prefix announcing more than sent", get, announced_more.clone()),
        (
            "a prefix announcing more than sent, client stream",
            stream_log,
            [frame(false, &valid_log), announced_more].concat(),
        ),
        ("a compressed flag without grpc-encoding", get, frame(true, &[0x0a, 0x00])),
        ("no message at all", get, vec![]),
        ("no message at all, server stream", watch, vec![]),
        ("an unknown compressed flag", watch, [vec![7], frame(false, &[])[1..].to_vec()].concat()),
    ];
    for (what, path, body) in malformed {
        let (code, message) = raw_call(&app, path, body, true, &[]).await;
        assert_eq!(code, Code::InvalidArgument as i32, "{what}: {message}");
        assert_eq!(message, MALFORMED, "{what}");
    }
    for path in [get, watch, stream_log] {
        let (code, message) = raw_call(&app, path, over_limit.clone(), true, &[]).await;
        assert_eq!(code, Code::OutOfRange as i32, "over the limit at {path}: {message}");
        assert_eq!(message, "the request message is larger than the server accepts");
    }

    let mut health = HealthClient::new(app.channel.clone());
    health.check(HealthCheckRequest::default()).await.expect("the server stays healthy");
    app.get(&created.token).await.expect("and serves calls");
}

#[tokio::test]
async fn unknown_methods_and_services_are_unimplemented_and_every_service_is_reached() {
    let app = TestApp::spawn().await;
    let empty = frame(false, &[]);
    for path in [
        "/sessiond.v1.SessionService/NoSuchMethod",
        "/sessiond.v1.PrivilegeService/NoSuchMethod",
        "/sessiond.v1.MessageService/NoSuchMethod",
        "/sessiond.v1.NoSuchService/GetSession",
        "/sessiond.v1.SessionService",
    ] {
        let (code, message) = raw_call(&app, path, empty.clone(), true, &[]).await;
        assert_eq!(code, Code::Unimplemented as i32, "{path}: {message}");
    }
    // An empty request reaches each service's method: a bad-input answer
    // is the service's own, where an unrouted call would be UNIMPLEMENTED.
    for path in [
        "/sessiond.v1.SessionService/GetSession",
        "/sessiond.v1.PrivilegeService/HasPrivilege",
        "/sessiond.v1.StorageService/GetStorage",
        "/sessiond.v1.LogService/QueryLogs",
        "/sessiond.v1.MessageService/Post",
        "/sessiond.v1.ServerService/GetServerInfo",
        "/grpc.health.v1.Health/Check",
    ] {
        let (code, message) = raw_call(&app, path, empty.clone(), true, &[]).await;
        assert_ne!(code, Code::Unimplemented as i32, "{path}: {message}");
    }
}
