//! Which server answers a call: sessiond's own services by the service
//! name in the call's path, everything else (health, reflection) by
//! tonic's `Routes`.
//!
//! tonic's `Routes` is an axum router. Per call it matches the path
//! against a pattern per service, keeps the captured rest of the path and
//! the matched route in the request's extensions (allocating both), and
//! boxes the body twice over. A `match` on the service's name makes the
//! same choice in a few comparisons, so the calls that come by the
//! thousand (the cached reads above all) skip it; a method a service does
//! not have is answered UNIMPLEMENTED by that service's generated server,
//! an unknown service by `Routes`, as before.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tonic::codegen::BoxFuture;
use tonic::server::NamedService as _;
use tower::{Service, ServiceExt as _};

use super::pb::log_service_server::LogServiceServer;
use super::pb::privilege_service_server::PrivilegeServiceServer;
use super::pb::server_service_server::ServerServiceServer;
use super::pb::session_service_server::SessionServiceServer;
use super::pb::storage_service_server::StorageServiceServer;
use super::{logs_api, messages_api, privileges_api, server_api, sessions_api, storage_api};
use crate::service::Service as DomainService;
use crate::service::messages::Messages;

/// sessiond's services, as a layer in front of the `Routes` of the rest.
#[derive(Clone)]
pub struct SessiondServices {
    sessions: SessionServiceServer<sessions_api::SessionsApi>,
    privileges: PrivilegeServiceServer<privileges_api::PrivilegesApi>,
    storage: StorageServiceServer<storage_api::StorageApi>,
    logs: LogServiceServer<logs_api::LogsApi>,
    messages: messages_api::MessageServer,
    server: ServerServiceServer<server_api::ServerApi>,
}

impl SessiondServices {
    /// The sessiond services over one domain service (and its messages),
    /// to be served behind `limits::LimitLayer`, which authenticates their
    /// callers, as the innermost layer. Requests larger than
    /// `max_request_bytes` are refused with OUT_OF_RANGE before they are
    /// decoded.
    pub fn new(service: &DomainService, messages: &Messages, max_request_bytes: usize) -> Self {
        Self {
            sessions: SessionServiceServer::new(sessions_api::SessionsApi::new(service.clone()))
                .max_decoding_message_size(max_request_bytes),
            privileges: PrivilegeServiceServer::new(privileges_api::PrivilegesApi::new(service.clone()))
                .max_decoding_message_size(max_request_bytes),
            storage: StorageServiceServer::new(storage_api::StorageApi::new(service.clone()))
                .max_decoding_message_size(max_request_bytes),
            logs: LogServiceServer::new(logs_api::LogsApi::new(service.clone()))
                .max_decoding_message_size(max_request_bytes),
            messages: messages_api::MessageServer::new(messages.clone(), max_request_bytes),
            server: ServerServiceServer::new(server_api::ServerApi::new(service.clone()))
                .max_decoding_message_size(max_request_bytes),
        }
    }
}

impl<S> tower::Layer<S> for SessiondServices {
    type Service = Dispatch<S>;

    fn layer(&self, other: S) -> Dispatch<S> {
        Dispatch { shared: Arc::new(Shared { services: self.clone(), other }) }
    }
}

/// sessiond's services, then `other` for every other call. The server
/// clones its whole stack of services for every call: both are shared,
/// behind one reference count, and only the service called is cloned.
pub struct Dispatch<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for Dispatch<S> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

struct Shared<S> {
    services: SessiondServices,
    other: S,
}

/// The service name of a gRPC path, `/<service>/<method>`.
fn service_name(path: &str) -> Option<&str> {
    Some(path.strip_prefix('/')?.split_once('/')?.0)
}

impl<S> Service<Request<Body>> for Dispatch<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Response<Body>, Infallible>;

    /// sessiond's generated servers are always ready (their `poll_ready`
    /// answers at once); `other` is readied by the call that needs it.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let services = &self.shared.services;
        match service_name(request.uri().path()) {
            Some(SessionServiceServer::<sessions_api::SessionsApi>::NAME) => services.sessions.clone().call(request),
            Some(PrivilegeServiceServer::<privileges_api::PrivilegesApi>::NAME) => {
                services.privileges.clone().call(request)
            }
            Some(StorageServiceServer::<storage_api::StorageApi>::NAME) => services.storage.clone().call(request),
            Some(LogServiceServer::<logs_api::LogsApi>::NAME) => services.logs.clone().call(request),
            Some(messages_api::MessageServer::NAME) => services.messages.clone().call(request),
            Some(ServerServiceServer::<server_api::ServerApi>::NAME) => services.server.clone().call(request),
            _ => Box::pin(self.shared.other.clone().oneshot(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_is_named_by_the_first_segment_of_the_path() {
        assert_eq!(service_name("/sessiond.v1.SessionService/GetSession"), Some("sessiond.v1.SessionService"));
        assert_eq!(service_name("/grpc.health.v1.Health/Check"), Some("grpc.health.v1.Health"));
        assert_eq!(service_name("/sessiond.v1.SessionService"), None);
        assert_eq!(service_name("sessiond.v1.SessionService/GetSession"), None);
        assert_eq!(service_name("/"), None);
    }
}
