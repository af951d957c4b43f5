//! What the server offers beside the sessiond API: health, reflection, and
//! a bound on request size.

use std::collections::HashMap;

use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{PATIENCE, TestApp, by_token, failure, text};

const SERVICES: [&str; 6] = [
    "sessiond.v1.SessionService",
    "sessiond.v1.PrivilegeService",
    "sessiond.v1.StorageService",
    "sessiond.v1.LogService",
    "sessiond.v1.MessageService",
    "sessiond.v1.ServerService",
];

#[tokio::test]
async fn health_answers_serving_for_the_server_and_each_service() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel.clone());

    for service in std::iter::once("").chain(SERVICES) {
        let answer = health.check(HealthCheckRequest { service: service.into() }).await.expect("Check").into_inner();
        assert_eq!(answer.status, i32::from(ServingStatus::Serving), "{service:?}");
    }
    let status = failure(health.check(HealthCheckRequest { service: "no.such.Service".into() }).await);
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_v1_lists_the_session_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };

    let mut answers =
        client.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection answers").into_inner();
    let answer = tokio::time::timeout(PATIENCE, answers.message())
        .await
        .expect("promptly")
        .expect("no error")
        .expect("an answer");

    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list, got {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in SERVICES {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_session_service() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };

    let mut answers =
        client.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection answers").into_inner();
    let answer = tokio::time::timeout(PATIENCE, answers.message())
        .await
        .expect("promptly")
        .expect("no error")
        .expect("an answer");

    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list, got {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == "sessiond.v1.SessionService"), "{names:?}");
}

#[tokio::test]
async fn reflection_describes_the_session_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("sessiond.v1.SessionService".into())),
    };

    let mut answers =
        client.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection answers").into_inner();
    let answer = tokio::time::timeout(PATIENCE, answers.message())
        .await
        .expect("promptly")
        .expect("no error")
        .expect("an answer");

    let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response else {
        panic!("expected file descriptors, got {answer:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_the_server_still_answers() {
    let mut app = TestApp::spawn_with(|s| s.transport.max_request_bytes = 1024).await;
    let created = app.create(Kind::WebUser, "alice").await;

    let request = pb::PutStorageRequest {
        session: by_token(&created.token),
        values: HashMap::from([("big".to_owned(), text(&"x".repeat(4096)))]),
        expected_version: None,
    };
    let status = failure(app.storage.put_storage(request).await);

    assert!(matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange), "{status:?}");
    let session = app.get(&created.token).await.expect("the server still answers on the same channel");
    assert_eq!(session.user_id, "alice");
    let stored = app
        .storage
        .get_storage(pb::GetStorageRequest { session: by_token(&created.token), keys: vec![] })
        .await
        .expect("GetStorage")
        .into_inner();
    assert!(stored.values.is_empty(), "the refused request changed nothing");
    app.get_on_a_new_connection(&created.token).await.expect("a new connection is served");
}

#[tokio::test]
async fn calls_over_the_global_limit_are_shed_with_resource_exhausted_and_the_server_recovers() {
    let mut app = TestApp::spawn_with(|s| s.limits.max_concurrent_calls = 1).await;
    let created = app.create(pb::SessionKind::WebUser, "alice").await;
    // A client stream holds its call open until the client ends it. Which
    // of it and a unary call reaches the server first is a race: when the
    // stream is the one shed, it is opened again.
    for _ in 0..50 {
        let (sender, receiver) = tokio::sync::mpsc::channel::<pb::StreamLogRequest>(1);
        let mut logs = app.logs.clone();
        let open =
            tokio::spawn(async move { logs.stream_log(tokio_stream::wrappers::ReceiverStream::new(receiver)).await });
        let first = pb::StreamLogRequest {
            session: crate::helpers::by_token(&created.token),
            entries: vec![],
            ..Default::default()
        };
        if sender.send(first).await.is_err() {
            continue;
        }
        while !open.is_finished() {
            match app.get(&created.token).await {
                Err(shed) => {
                    assert_eq!(shed.code(), tonic::Code::ResourceExhausted, "shed, not failed: {shed:?}");
                    drop(sender);
                    open.await.expect("the stream task does not panic").expect("the stream ends cleanly");
                    app.get(&created.token).await.expect("with the slot free again, calls succeed");
                    return;
                }
                Ok(_) => tokio::task::yield_now().await,
            }
        }
        let refused = open.await.expect("the stream task does not panic").expect_err("only a shed stream ends early");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    }
    panic!("no call was ever shed while a stream held the only slot");
}

#[tokio::test]
async fn server_info_tells_the_version_build_store_and_start_of_the_process() {
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    let app = TestApp::spawn().await;
    let mut server = pb::server_service_client::ServerServiceClient::new(app.channel.clone());
    let info = server.get_server_info(pb::GetServerInfoRequest {}).await.expect("answered").into_inner();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.build_profile, if cfg!(debug_assertions) { "debug" } else { "release" });
    assert!(info.build_target.contains("-linux-"), "{}", info.build_target);
    let (store, schema) = match crate::helpers::on_postgres() {
        true => (pb::StoreKind::Postgres, sessiond::store::postgres::SCHEMA_VERSION),
        false => (pb::StoreKind::Embedded, sessiond::store::sqlite::SCHEMA_VERSION),
    };
    assert_eq!((info.store(), info.schema_version), (store, schema));
    let started = info.started_at.expect("a start time").seconds as u64;
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    assert!((before..=after).contains(&started), "{before} <= {started} <= {after}");
}
