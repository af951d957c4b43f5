//! The gRPC edge: tonic services that parse requests (`convert`), call the
//! domain service, and map errors once (`status`). No business logic here.
//! Every call is observed (`observe`): a span, a duration, a failure line;
//! every call meets the transport limits (`limits`: concurrency,
//! deadlines, request framing); every call to a sessiond service is
//! authenticated (`authn`), its request decoded by `codec`.

mod authn;
mod codec;
mod convert;
mod deadline;
mod framing;
pub mod limits;
mod logs_api;
mod messages_api;
pub mod observe;
mod privileges_api;
mod sessions_api;
pub mod status;
mod storage_api;

use tonic::service::Routes;

use crate::reload::SharedKeys;
use crate::service::Service;
use crate::service::messages::Messages;

/// Generated protobuf types and tonic stubs for `sessiond.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sessiond.v1");
}

/// The encoded descriptor set of `proto/`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sessiond_descriptor.bin"));

/// The sessiond services over one domain service (and its messages), each behind the
/// authentication interceptor (`keys`, which a reload may replace: none
/// runs open). Requests larger
/// than `max_request_bytes` are refused with OUT_OF_RANGE before they are
/// decoded.
pub fn routes(service: &Service, messages: &Messages, keys: Option<SharedKeys>, max_request_bytes: usize) -> Routes {
    use pb::log_service_server::LogServiceServer;
    use pb::message_service_server::MessageServiceServer;
    use pb::privilege_service_server::PrivilegeServiceServer;
    use pb::session_service_server::SessionServiceServer;
    use pb::storage_service_server::StorageServiceServer;
    use tonic::service::interceptor::InterceptedService;
    let authn = authn::Authenticate::new(keys);
    let sessions = SessionServiceServer::new(sessions_api::SessionsApi::new(service.clone()));
    let privileges = PrivilegeServiceServer::new(privileges_api::PrivilegesApi::new(service.clone()));
    let storage = StorageServiceServer::new(storage_api::StorageApi::new(service.clone()));
    let logs = LogServiceServer::new(logs_api::LogsApi::new(service.clone()));
    let messages = MessageServiceServer::new(messages_api::MessagesApi::new(messages.clone()));
    Routes::default()
        .add_service(InterceptedService::new(sessions.max_decoding_message_size(max_request_bytes), authn.clone()))
        .add_service(InterceptedService::new(privileges.max_decoding_message_size(max_request_bytes), authn.clone()))
        .add_service(InterceptedService::new(storage.max_decoding_message_size(max_request_bytes), authn.clone()))
        .add_service(InterceptedService::new(logs.max_decoding_message_size(max_request_bytes), authn.clone()))
        .add_service(InterceptedService::new(messages.max_decoding_message_size(max_request_bytes), authn))
}

/// The full names of the sessiond services, for health and reflection.
pub const SERVICE_NAMES: [&str; 5] = [
    "sessiond.v1.SessionService",
    "sessiond.v1.PrivilegeService",
    "sessiond.v1.StorageService",
    "sessiond.v1.LogService",
    "sessiond.v1.MessageService",
];
