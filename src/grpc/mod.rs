//! The gRPC edge: tonic services that parse requests (`convert`), call the
//! domain service, and map errors once (`status`). No business logic here.
//! Every call is observed (`observe`): a span, a duration, a failure line;
//! every call meets the transport limits (`limits`: concurrency,
//! deadlines, request framing); every call to a sessiond service is
//! authenticated (`authn`) and counted against its caller's share
//! (`fairness`) there, its request decoded by `codec`. In front of them
//! all, `web` serves the same calls over HTTP/1.1: gRPC-Web, and the
//! Connect protocol's unary form with JSON (`connect`).

pub mod authn;
mod codec;
mod connect;
mod convert;
mod deadline;
pub mod dispatch;
pub mod fairness;
mod framing;
pub mod limits;
mod logs_api;
mod messages_api;
pub mod observe;
pub mod permits;
mod privileges_api;
mod server_api;
mod sessions_api;
pub mod status;
mod storage_api;
pub mod web;

pub use convert::proto_value;

/// The `sessiond.v1` messages and clients (the `sessiond-api` crate), and
/// the service traits generated here with sessiond's codec.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    pub use sessiond_api::v1::*;
    tonic::include_proto!("sessiond.v1");
}

/// The encoded descriptor set of `proto/`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = sessiond_api::FILE_DESCRIPTOR_SET;

/// The HTTP faces of every unary method of sessiond's services and
/// health (Connect) and of every method (gRPC-Web), with CORS for
/// `cors_allowed_origins`. Bodies and deadlines are bounded as gRPC's are.
pub fn web_layer(
    cors_allowed_origins: &[String],
    max_request_bytes: usize,
    max_call_duration: std::time::Duration,
) -> web::WebLayer {
    let connect = connect::Connect::new(max_request_bytes, max_call_duration);
    web::WebLayer::new(connect, web::cors(cors_allowed_origins))
}

/// The full names of the sessiond services, for health and reflection.
pub const SERVICE_NAMES: [&str; 6] = [
    "sessiond.v1.SessionService",
    "sessiond.v1.PrivilegeService",
    "sessiond.v1.StorageService",
    "sessiond.v1.LogService",
    "sessiond.v1.MessageService",
    "sessiond.v1.ServerService",
];
