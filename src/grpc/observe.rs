//! [`RpcLayer`]: a tower layer around every gRPC call that gives it a
//! span, a duration metric and, when it fails, one log line.
//!
//! - The span follows the OpenTelemetry RPC conventions: named
//!   `sessiond.v1.SessionService/CreateSession`, kind SERVER, with
//!   `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`,
//!   `server.*` and `network.peer.*`. Its parent is the caller's span when
//!   the metadata carries W3C `traceparent`/`tracestate`. It is a `debug`
//!   span of `tracing`, bridged to OpenTelemetry by `telemetry`: without an
//!   exporter (and at the default log level) it is never built. The service
//!   and store spans of the call are its children.
//! - `rpc.server.duration` is recorded when the status is sent: in the
//!   headers of an error answered at once, else in the trailers after the
//!   last message (so a stream counts its whole life). A call dropped
//!   before that was cancelled by its client, or reached the client's
//!   deadline (`grpc-timeout`) if that had passed, give or take
//!   [`DEADLINE_SLACK`]: DEADLINE_EXCEEDED, as the client sees it.
//! - A call that ends with another status than OK logs one line, with the
//!   method, the code, the message and its cause (`CODE/REASON`, the
//!   ErrorInfo reason when there is one): at `warn` for the codes that mean
//!   sessiond failed, at `info` for those that answer the request. Repeated
//!   failures of one cause are throttled (`telemetry::throttle`), client
//!   faults as much as server ones: an outage, or one client repeating a
//!   bad request, logs a line per cause per interval with the count.
//!   Internal causes are logged by `status`, never here.
//!
//! Method names come from the services' descriptors, so a client cannot
//! make up new metric labels: unknown paths count as `_OTHER`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use pin_project_lite::pin_project;
use prost::Message as _;
use tonic::Code;
use tonic::transport::server::TcpConnectInfo;
use tonic_types::StatusExt as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry::metrics;
use crate::telemetry::throttle::{self, Cause};

/// How early a client may give up and still count as reaching its
/// deadline: its clock started when it sent the call, before sessiond saw
/// it.
const DEADLINE_SLACK: Duration = Duration::from_millis(50);

/// The name used for paths that are no known method.
const OTHER: &str = "_OTHER";

/// The methods observed, by path. Looked up on every call, so hashed with
/// foldhash (seeded per process) rather than SipHash: the table is fixed,
/// a caller only looks paths up.
type Methods = HashMap<String, Method, foldhash::fast::RandomState>;

/// sessiond's services, health and reflection: built once per process
/// from the compiled-in descriptors, so that a call refers to its method
/// without counting a reference (a count every call of every core writes).
static METHODS: LazyLock<Methods> = LazyLock::new(|| {
    methods_of(&[
        super::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])
});

/// The methods of the services the encoded descriptor `sets` describe.
fn methods_of(sets: &[&[u8]]) -> Methods {
    let mut methods = Methods::default();
    // The sets are compiled in; one that does not decode names nothing.
    for set in sets.iter().filter_map(|set| prost_types::FileDescriptorSet::decode(*set).ok()) {
        for file in set.file {
            for service in &file.service {
                let service_name = match file.package() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                for method in &service.method {
                    let full_name = format!("{service_name}/{}", method.name());
                    let path = format!("/{full_name}");
                    let method = Method { full_name, service: service_name.clone(), method: method.name().to_owned() };
                    methods.insert(path, method);
                }
            }
        }
    }
    methods
}

/// Observes the calls of sessiond's services, health and reflection.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    methods: &'static Methods,
}

impl RpcLayer {
    pub fn new() -> Self {
        Self { methods: &METHODS }
    }
}

impl Default for RpcLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// A known method's names.
#[derive(Debug)]
struct Method {
    full_name: String,
    service: String,
    method: String,
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observed { inner, methods: self.methods }
    }
}

/// A service whose calls are observed.
#[derive(Debug, Clone)]
pub struct Observed<S> {
    inner: S,
    methods: &'static Methods,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Observed<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = Call::start(self.methods.get(request.uri().path()), &request);
        let inner = call.span.in_scope(|| self.inner.call(request));
        ResponseFuture { inner, call: Some(call) }
    }
}

pin_project! {
    /// The answer's headers, awaited inside the call's span.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<ObservedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match this.call.as_ref() {
            Some(call) => call.span.in_scope(|| this.inner.poll(cx)),
            None => this.inner.poll(cx),
        };
        let result = ready!(polled);
        let mut call = this.call.take();
        if let Some(open) = call.as_mut() {
            match &result {
                // An error answered at once carries its status in the headers.
                Ok(response) if response.headers().contains_key(&GRPC_STATUS) => open.finish(response.headers()),
                Ok(_) => {}
                Err(_) => open.finish_with(Code::Internal, "the service failed before answering"),
            }
        }
        let call = call.filter(|open| !open.ended);
        Poll::Ready(result.map(|response| response.map(|inner| ObservedBody { inner, call })))
    }
}

pin_project! {
    /// The answer's body, read inside the call's span; the call ends with
    /// the trailers.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(call) = this.call.as_mut() else { return this.inner.poll_frame(cx) };
        let frame = ready!(call.span.in_scope(|| this.inner.poll_frame(cx)));
        let ended = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|trailers| call.finish(trailers)).is_some(),
            Some(Err(_)) => {
                call.finish_with(Code::Internal, "the answer failed while being sent");
                true
            }
            None => {
                call.finish_with(Code::Unknown, "the answer ended without a status");
                true
            }
        };
        if ended {
            *this.call = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The status header (a `HeaderName`: looked up with no name parsed).
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// One call under way: its span and when it started. Ends once, with the
/// status sent or, when dropped before, as cancelled.
struct Call {
    span: tracing::Span,
    started: Instant,
    method: Option<&'static Method>,
    /// How long the client gave the call, if it said.
    client_timeout: Option<Duration>,
    ended: bool,
}

impl Call {
    fn start<B>(method: Option<&'static Method>, request: &http::Request<B>) -> Self {
        let full_name = method.map_or(OTHER, |m| m.full_name.as_str());
        let span = tracing::debug_span!(
            "rpc",
            otel.name = full_name,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = method.map_or(OTHER, |m| m.service.as_str()),
            rpc.method = method.map_or(OTHER, |m| m.method.as_str()),
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
            server.address = Empty,
            server.port = Empty,
            network.peer.address = Empty,
            network.peer.port = Empty,
        );
        if !span.is_disabled() {
            if let Some(connection) = request.extensions().get::<TcpConnectInfo>() {
                if let Some(local) = connection.local_addr() {
                    span.record("server.address", tracing::field::display(local.ip()));
                    span.record("server.port", i64::from(local.port()));
                }
                if let Some(peer) = connection.remote_addr() {
                    span.record("network.peer.address", tracing::field::display(peer.ip()));
                    span.record("network.peer.port", i64::from(peer.port()));
                }
            }
            let parent = TraceContextPropagator::new().extract(&Metadata(request.headers()));
            if parent.span().span_context().is_valid() {
                // Fails only without the OpenTelemetry layer, when the
                // parent would go nowhere anyway.
                let _ = span.set_parent(parent);
            }
        }
        let client_timeout = super::deadline::client_timeout(request.headers());
        Self { span, started: Instant::now(), method, client_timeout, ended: false }
    }

    /// Ends with the status in `headers` (the answer's headers or trailers).
    fn finish(&mut self, headers: &HeaderMap) {
        let code = headers.get(&GRPC_STATUS).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok());
        match code.map(Code::from) {
            Some(Code::Ok) => self.finish_with(Code::Ok, ""),
            Some(_) => match tonic::Status::from_header_map(headers) {
                Some(status) => {
                    let reason = status.get_details_error_info().map(|info| info.reason).unwrap_or_default();
                    self.finish_with_reason(status.code(), status.message(), &reason);
                }
                None => self.finish_with(Code::Unknown, "the status does not parse"),
            },
            None => self.finish_with(Code::Unknown, "the answer carries no status"),
        }
    }

    fn finish_with(&mut self, code: Code, message: &str) {
        self.finish_with_reason(code, message, "");
    }

    /// Ends with `code`, `message` and the ErrorInfo `reason` (or "").
    fn finish_with_reason(&mut self, code: Code, message: &str, reason: &str) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let status_code = code as i32;
        self.span.record("rpc.grpc.status_code", i64::from(status_code));
        let server_fault = is_server_fault(code);
        if server_fault {
            self.span.record("otel.status_code", "error");
        }
        crate::telemetry::tally::call_finished(code != Code::Ok);
        if let Some(metrics) = metrics::get() {
            let (service, method) = self.method.map_or((OTHER, OTHER), |m| (m.service.as_str(), m.method.as_str()));
            let attributes = [
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service),
                KeyValue::new("rpc.method", method),
                KeyValue::new("rpc.response.status_code", code_name(code)),
            ];
            metrics.rpc_finished(elapsed, &attributes);
        }
        if code == Code::Ok {
            return;
        }
        let level = if server_fault { tracing::Level::WARN } else { tracing::Level::INFO };
        let cause = Cause::with_reason(level, ENDED_WITH_AN_ERROR, code_name(code), reason);
        let Some(admitted) = throttle::admit(cause) else { return };
        let repeated = admitted.repeated;
        let _inside = self.span.enter();
        let method = self.method.map_or(OTHER, |m| m.full_name.as_str());
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let trace_id = self.trace_id().map(tracing::field::display);
        if server_fault {
            tracing::warn!(method, code = ?code, status_message = message, cause = %cause, repeated, elapsed_ms, trace_id, "{ENDED_WITH_AN_ERROR}");
        } else {
            tracing::info!(method, code = ?code, status_message = message, cause = %cause, repeated, elapsed_ms, trace_id, "{ENDED_WITH_AN_ERROR}");
        }
    }

    /// The trace this call is part of, when traces are exported.
    fn trace_id(&self) -> Option<opentelemetry::trace::TraceId> {
        if self.span.is_disabled() {
            return None;
        }
        let context = self.span.context();
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then(|| span_context.trace_id())
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A client gives up at its deadline, often a moment before the
        // server would have answered DEADLINE_EXCEEDED itself.
        if self.client_timeout.is_some_and(|timeout| self.started.elapsed() + DEADLINE_SLACK >= timeout) {
            self.finish_with(Code::DeadlineExceeded, "the client's deadline passed");
        }
        self.finish_with(Code::Cancelled, "the client cancelled the call or went away");
    }
}

/// The message of a failed call's line.
const ENDED_WITH_AN_ERROR: &str = "call ended with an error";

/// A code's name as the gRPC spec spells it, e.g. `UNAVAILABLE`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The codes that say sessiond (or what it depends on) failed, rather than
/// answering the request: the RPC conventions' errors of a server span.
fn is_server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// gRPC metadata (HTTP/2 headers) as an OpenTelemetry carrier.
struct Metadata<'a>(&'a HeaderMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::{Ready, ready};
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt as _, Empty, Full};
    use hyper::body::Bytes;
    use tower::{Layer as _, Service as _};

    use super::*;

    /// A service answering every request with what `answer` makes.
    struct Answering<F>(F);

    impl<F: FnMut() -> http::Response<B>, B> tower::Service<http::Request<()>> for Answering<F> {
        type Response = http::Response<B>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            ready(Ok((self.0)()))
        }
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).expect("a valid request")
    }

    fn status(code: Code, message: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_STATUS, http::HeaderValue::from(code as i32));
        headers.insert("grpc-message", http::HeaderValue::from_static(message));
        headers
    }

    /// Log lines, kept in memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("no writer panics holding the lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What is logged at info and above while `run` runs.
    async fn logged(run: impl Future<Output = ()>) -> String {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        run.await;
        let bytes = lines.0.lock().expect("no writer panics holding the lock").clone();
        String::from_utf8(bytes).expect("logs are text")
    }

    #[tokio::test]
    async fn an_error_answered_at_once_is_logged_once_with_its_method_code_and_message() {
        let logs = logged(async {
            let mut service = RpcLayer::new().layer(Answering(|| {
                let mut response = http::Response::new(Empty::<Bytes>::new());
                *response.headers_mut() = status(Code::NotFound, "session not found");
                response
            }));
            let response = service.call(request("/sessiond.v1.SessionService/GetSession")).await.expect("an answer");
            response.into_body().collect().await.expect("the body is read");
        })
        .await;
        let lines: Vec<&str> = logs.lines().collect();
        assert_eq!(lines.len(), 1, "{logs}");
        for expected in [" INFO ", "sessiond.v1.SessionService/GetSession", "code=NotFound", "session not found"] {
            assert!(lines[0].contains(expected), "{expected:?} is missing from {logs}");
        }
    }

    #[tokio::test]
    async fn a_status_in_the_trailers_ends_the_call_after_its_messages() {
        let logs = logged(async {
            let mut service = RpcLayer::new().layer(Answering(|| {
                let trailers = status(Code::Internal, "internal error");
                http::Response::new(Full::new(Bytes::from_static(b"message")).with_trailers(ready(Some(Ok(trailers)))))
            }));
            let response = service.call(request("/sessiond.v1.SessionService/WatchSessions")).await.expect("an answer");
            response.into_body().collect().await.expect("the body is read");
        })
        .await;
        assert_eq!(logs.lines().count(), 1, "{logs}");
        assert!(logs.contains(" WARN ") && logs.contains("code=Internal"), "{logs}");
    }

    #[tokio::test]
    async fn a_call_that_ends_ok_logs_nothing() {
        let logs = logged(async {
            let mut service = RpcLayer::new().layer(Answering(|| {
                http::Response::new(
                    Full::new(Bytes::from_static(b"message")).with_trailers(ready(Some(Ok(status(Code::Ok, ""))))),
                )
            }));
            let response = service.call(request("/sessiond.v1.SessionService/CreateSession")).await.expect("an answer");
            response.into_body().collect().await.expect("the body is read");
        })
        .await;
        assert_eq!(logs, "");
    }

    #[tokio::test]
    async fn a_call_dropped_before_its_status_was_cancelled() {
        let logs = logged(async {
            let mut service =
                RpcLayer::new().layer(Answering(|| http::Response::new(Full::new(Bytes::from_static(b"message")))));
            let response = service.call(request("/nope.Service/Unknown")).await.expect("an answer");
            drop(response);
        })
        .await;
        assert_eq!(logs.lines().count(), 1, "{logs}");
        assert!(logs.contains("code=Cancelled") && logs.contains("_OTHER"), "{logs}");
    }

    #[tokio::test]
    async fn a_call_dropped_after_its_clients_deadline_reached_the_deadline() {
        let logs = logged(async {
            let mut service =
                RpcLayer::new().layer(Answering(|| http::Response::new(Full::new(Bytes::from_static(b"message")))));
            for timeout in ["1n", "1H"] {
                let mut request = request("/sessiond.v1.SessionService/GetSession");
                request.headers_mut().insert("grpc-timeout", http::HeaderValue::from_static(timeout));
                let response = service.call(request).await.expect("an answer");
                drop(response);
            }
        })
        .await;
        let lines: Vec<&str> = logs.lines().collect();
        assert_eq!(lines.len(), 2, "{logs}");
        assert!(lines[0].contains("code=DeadlineExceeded"), "{logs}");
        assert!(lines[1].contains("code=Cancelled"), "an hour is not up yet: {logs}");
    }

    #[test]
    fn methods_are_known_from_the_descriptors_of_every_service_served() {
        let layer = RpcLayer::new();
        let create = &layer.methods["/sessiond.v1.SessionService/CreateSession"];
        assert_eq!((create.service.as_str(), create.method.as_str()), ("sessiond.v1.SessionService", "CreateSession"));
        assert!(layer.methods.contains_key("/grpc.health.v1.Health/Check"));
        assert!(layer.methods.contains_key("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
    }
}
