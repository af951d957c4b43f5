//! [`LimitLayer`]: the transport limits every call meets before its
//! service, in one layer (it is on every call, so it is kept cheap: one
//! path comparison, three counters (`permits`), a deadline timer only for
//! a call still running when first polled, no allocation on the way
//! through but the request body's box and the caller in its extensions):
//!
//! - **Callers.** A call to a sessiond service is authenticated (`authn`)
//!   and counted against its API key's and its tenant's share
//!   (`fairness`): over either, it is refused at once with
//!   RESOURCE_EXHAUSTED (KEY_OVERLOADED, TENANT_OVERLOADED, RATE_LIMITED);
//!   a server stream also against its key's streams (KEY_STREAM_QUOTA).
//! - **Concurrency.** A call takes one of `--max-concurrent-calls` permits
//!   and keeps it until its answer has been sent in full, trailers and all:
//!   a server stream (WatchSessions) holds its permit as long as it runs,
//!   a client stream (StreamLog) from its first byte to its answer. With
//!   none free, the call is refused at once with RESOURCE_EXHAUSTED
//!   ([`status::overloaded`]) rather than queued. Health and reflection
//!   are neither counted nor refused, so probes answer when sessiond is
//!   busiest.
//! - **Deadlines.** An answer must start before the call's deadline: the
//!   client's `grpc-timeout` or `--max-call-duration`, whichever is
//!   sooner. Past it the call is cut and answered DEADLINE_EXCEEDED. A
//!   unary call and a client stream answer only at their end, so the
//!   deadline bounds them whole; a server stream answers when it starts,
//!   after which only the client's own deadline bounds it: at that
//!   deadline the stream ends with DEADLINE_EXCEEDED in its trailers.
//! - **Framing.** Request bodies of sessiond's services are followed
//!   message by message (`framing`), so an oversized or malformed one is
//!   refused with a fixed status.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tonic::Status;

use super::authn::SharedCallers;
use super::fairness::Admitted;
use super::framing::CheckedFrames;
use super::permits::{Limit, Permit};
use super::{deadline, status};

/// The services that are never counted nor shed: Kubernetes' probes and
/// grpcurl must get through to a busy server.
const UNLIMITED: [&str; 3] =
    ["/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

/// The services whose callers are authenticated and counted per key.
const SESSIOND: &str = "/sessiond.";

/// Whether a call to `path` is exempt from the concurrency limit.
fn unlimited(path: &str) -> bool {
    UNLIMITED.iter().any(|prefix| path.starts_with(prefix))
}

/// The transport limits of every call, shared by every connection.
#[derive(Debug, Clone)]
pub struct LimitLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    permits: Arc<Limit>,
    callers: SharedCallers,
    /// The paths of the methods that take a stream of requests; every
    /// other method takes exactly one message.
    streaming_requests: Vec<String>,
    /// The paths of the methods that answer with a stream, which count
    /// against their key's streams as well.
    streaming_responses: Vec<String>,
    max_concurrent_calls: usize,
    max_call_duration: Duration,
    max_request_bytes: usize,
}

impl LimitLayer {
    /// At most `max_concurrent_calls` counted calls at once, each answered
    /// within `max_call_duration` (or its client's sooner deadline), none
    /// with a request message over `max_request_bytes`; callers recognised
    /// by the `callers` in force and each held to its share.
    pub fn new(
        max_concurrent_calls: usize,
        max_call_duration: Duration,
        max_request_bytes: usize,
        callers: SharedCallers,
    ) -> Self {
        let permits = Arc::new(Limit::new(max_concurrent_calls));
        crate::telemetry::metrics::observe_call_limit(&permits, max_concurrent_calls);
        let shared = Shared {
            permits,
            callers,
            streaming_requests: streaming_methods(super::FILE_DESCRIPTOR_SET, |m| m.client_streaming()),
            streaming_responses: streaming_methods(super::FILE_DESCRIPTOR_SET, |m| m.server_streaming()),
            max_concurrent_calls,
            max_call_duration,
            max_request_bytes,
        };
        Self { shared: Arc::new(shared) }
    }
}

/// The paths (`/package.Service/Method`) of the methods that the encoded
/// descriptor set `set` describes and `streaming` picks (client or server
/// streaming).
fn streaming_methods(set: &[u8], streaming: impl Fn(&prost_types::MethodDescriptorProto) -> bool) -> Vec<String> {
    use prost::Message as _;
    // The set is compiled in; one that does not decode names nothing.
    let Ok(set) = prost_types::FileDescriptorSet::decode(set) else { return Vec::new() };
    let mut paths = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in service.method.iter().filter(|method| streaming(method)) {
                paths.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
            }
        }
    }
    paths
}

impl<S> tower::Layer<S> for LimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limited { inner, shared: self.shared.clone() }
    }
}

/// A service whose calls are limited.
#[derive(Debug, Clone)]
pub struct Limited<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ResBody> tower::Service<http::Request<tonic::body::Body>> for Limited<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<LimitedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let client_timeout = deadline::client_timeout(request.headers());
        let timeout = client_timeout.map_or(self.shared.max_call_duration, |t| t.min(self.shared.max_call_duration));
        let now = Instant::now();
        let (permit, request) = if unlimited(request.uri().path()) {
            (None, request)
        } else {
            let (mut parts, body) = request.into_parts();
            let admitted = match self.admit(&mut parts, now) {
                Ok(admitted) => admitted,
                Err(status) => return ResponseFuture::Answered { status: Some(status) },
            };
            let Some(global) = self.shared.permits.try_acquire() else {
                crate::telemetry::metrics::call_shed("OVERLOADED");
                return ResponseFuture::Answered { status: Some(status::overloaded(self.shared.max_concurrent_calls)) };
            };
            let max = self.shared.max_request_bytes;
            let one_message = !self.shared.streaming_requests.iter().any(|path| path == parts.uri.path());
            let body = tonic::body::Body::new(CheckedFrames::new(body, &parts.headers, max, one_message));
            (Some(Permits { _global: global, _share: admitted }), http::Request::from_parts(parts, body))
        };
        ResponseFuture::Running {
            inner: self.inner.call(request),
            deadline: now + timeout,
            timer: None,
            permit,
            client_deadline: client_timeout.map(|t| now + t),
        }
    }
}

impl<S> Limited<S> {
    /// Authenticates a call to a sessiond service, puts its caller in the
    /// request's extensions and admits it within its caller's share.
    fn admit(&self, parts: &mut http::request::Parts, now: Instant) -> Result<Option<Admitted>, Status> {
        if !parts.uri.path().starts_with(SESSIOND) {
            return Ok(None);
        }
        // One snapshot: the caller is counted by the keys that recognised it.
        let callers = self.shared.callers.current();
        let caller = callers.caller_of(&parts.headers, &parts.extensions)?;
        let stream = self.shared.streaming_responses.iter().any(|path| path == parts.uri.path());
        let admitted = callers.admit(&caller, now, stream)?;
        parts.extensions.insert(caller);
        Ok(Some(admitted))
    }
}

/// What a counted call holds until its answer ends: a global permit and
/// its caller's.
#[derive(Debug)]
pub struct Permits {
    _global: Permit,
    _share: Option<Admitted>,
}

pin_project! {
    /// The answer's headers, awaited until the call's deadline.
    #[project = ResponseProj]
    pub enum ResponseFuture<F> {
        // Answered by this layer without calling the service.
        Answered { status: Option<Status> },
        // Under way in the service.
        Running {
            #[pin]
            inner: F,
            deadline: Instant,
            // Set when the service is first pending: a call answered on
            // its first poll, as a cached read is, never arms a timer.
            #[pin]
            timer: Option<Sleep>,
            permit: Option<Permits>,
            client_deadline: Option<Instant>,
        },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<LimitedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseProj::Answered { status } => {
                // Polled again only after it was ready, which a future never is.
                let status = status.take().unwrap_or_else(|| Status::internal("polled after completion"));
                Poll::Ready(Ok(answer(status)))
            }
            ResponseProj::Running { inner, deadline, mut timer, permit, client_deadline } => {
                // The service first: an answer ready at the deadline is sent.
                if let Poll::Ready(result) = inner.poll(cx) {
                    let (permit, client_deadline) = (permit.take(), *client_deadline);
                    return Poll::Ready(
                        result.map(|response| response.map(|body| LimitedBody::new(body, permit, client_deadline))),
                    );
                }
                if timer.is_none() {
                    timer.set(Some(tokio::time::sleep_until(*deadline)));
                }
                // Set just above.
                let Some(timer) = timer.as_pin_mut() else { return Poll::Pending };
                ready!(timer.poll(cx));
                permit.take();
                Poll::Ready(Ok(answer(status::deadline_exceeded())))
            }
        }
    }
}

/// An answer of this layer's own: the status in the headers, no body.
fn answer<B>(status: Status) -> http::Response<LimitedBody<B>> {
    let (parts, ()) = status.into_http::<()>().into_parts();
    http::Response::from_parts(parts, LimitedBody::empty())
}

pin_project! {
    /// The answer's body, holding the call's permit until it ends, and
    /// ended with DEADLINE_EXCEEDED if the client's deadline passes first.
    pub struct LimitedBody<B> {
        #[pin]
        inner: Option<B>,
        client_deadline: Option<Instant>,
        // Set when the answer is first pending with a client deadline:
        // an answer sent whole at once never arms a timer.
        #[pin]
        timer: Option<Sleep>,
        permit: Option<Permits>,
    }
}

impl<B> LimitedBody<B> {
    fn new(inner: B, permit: Option<Permits>, client_deadline: Option<Instant>) -> Self {
        Self { inner: Some(inner), client_deadline, timer: None, permit }
    }

    fn empty() -> Self {
        Self { inner: None, client_deadline: None, timer: None, permit: None }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else { return Poll::Ready(None) };
        if let Poll::Ready(frame) = inner.poll_frame(cx) {
            let last = match &frame {
                Some(Ok(frame)) => frame.is_trailers(),
                Some(Err(_)) | None => true,
            };
            if last {
                this.permit.take();
            }
            return Poll::Ready(frame);
        }
        let Some(deadline) = *this.client_deadline else { return Poll::Pending };
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep_until(deadline)));
        }
        // Set just above.
        let Some(timer) = this.timer.as_mut().as_pin_mut() else { return Poll::Pending };
        ready!(timer.poll(cx));
        // The stream is cut between two messages: what was sent stays whole.
        this.inner.set(None);
        this.timer.set(None);
        *this.client_deadline = None;
        this.permit.take();
        Poll::Ready(Some(Ok(Frame::trailers(deadline_trailers()))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The trailers of a stream cut at its client's deadline.
fn deadline_trailers() -> http::HeaderMap {
    let mut trailers = http::HeaderMap::with_capacity(2);
    // Fails only for a message that is not a valid header value; this one is.
    let _ = status::deadline_exceeded().add_header(&mut trailers);
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_reflection_are_unlimited_and_sessiond_services_are_not() {
        assert!(unlimited("/grpc.health.v1.Health/Check"));
        assert!(unlimited("/grpc.health.v1.Health/Watch"));
        assert!(unlimited("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(unlimited("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
        assert!(!unlimited("/sessiond.v1.SessionService/WatchSessions"));
        assert!(!unlimited("/grpc.health.v1.HealthExtra/Check"));
        assert!(!unlimited("/"));
    }

    #[test]
    fn stream_log_is_the_one_method_that_takes_a_stream() {
        let streaming = streaming_methods(crate::grpc::FILE_DESCRIPTOR_SET, |m| m.client_streaming());
        assert_eq!(streaming, ["/sessiond.v1.LogService/StreamLog"]);
    }

    #[test]
    fn watches_follows_and_subscriptions_are_the_methods_that_answer_a_stream() {
        let mut streaming = streaming_methods(crate::grpc::FILE_DESCRIPTOR_SET, |m| m.server_streaming());
        streaming.sort();
        assert_eq!(
            streaming,
            [
                "/sessiond.v1.LogService/FollowLogs",
                "/sessiond.v1.MessageService/Subscribe",
                "/sessiond.v1.SessionService/WatchSessions"
            ]
        );
    }
}
