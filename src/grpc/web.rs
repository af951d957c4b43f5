//! [`WebLayer`]: the HTTP faces of the gRPC port. Every request is told
//! apart by its `Content-Type`, in front of the observed, limited gRPC
//! services:
//!
//! - `application/grpc` over HTTP/2: gRPC, passed straight through (no
//!   allocation, no copy: gRPC's own path stays as it was);
//! - `application/grpc-web`, `application/grpc-web+proto`,
//!   `application/grpc-web-text` (HTTP/1.1 or HTTP/2): gRPC-Web, translated
//!   by `tonic-web`, server streams included;
//! - `application/json`, `application/proto`: the Connect protocol's unary
//!   form (`connect`);
//! - anything else: 415 Unsupported Media Type, with a Connect error body.
//!
//! Browsers calling from another origin need CORS: the origins of
//! `--cors-allowed-origins` are answered with its headers (preflights
//! included) on the gRPC-Web and Connect faces; other origins get none,
//! so browsers refuse to hand them the answer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Request, Response, Version, header};
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt as _};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::connect::{Connect, Encoding};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The request headers a browser may send cross-origin.
const ALLOWED_HEADERS: [&str; 9] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "connect-protocol-version",
    "connect-timeout-ms",
    "traceparent",
    "tracestate",
];

/// The answer headers a browser may read cross-origin.
const EXPOSED_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// The CORS policy for `origins` (`*`: any origin); none when empty.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        // The settings checked each origin is a valid header value.
        AllowOrigin::list(origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// The HTTP faces in front of a gRPC service.
#[derive(Debug, Clone)]
pub struct WebLayer {
    connect: Connect,
    cors: Option<CorsLayer>,
}

impl WebLayer {
    /// Serves `connect`'s methods over Connect, and gRPC-Web, with `cors`.
    pub fn new(connect: Connect, cors: Option<CorsLayer>) -> Self {
        Self { connect, cors }
    }
}

impl<S> Layer<S> for WebLayer {
    type Service = Web<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Web { inner, connect: self.connect, cors: self.cors.clone() }
    }
}

/// A gRPC service with its HTTP faces.
#[derive(Debug, Clone)]
pub struct Web<S> {
    inner: S,
    connect: Connect,
    cors: Option<CorsLayer>,
}

/// Whether a request is native gRPC: over HTTP/2, of content type
/// `application/grpc` or `application/grpc+…` (not gRPC-Web).
fn is_grpc(request: &Request<tonic::body::Body>) -> bool {
    request.version() == Version::HTTP_2
        && request.headers().get(header::CONTENT_TYPE).is_some_and(|value| {
            let value = value.as_bytes();
            value.starts_with(b"application/grpc") && !value.starts_with(b"application/grpc-web")
        })
}

impl<S, ResBody> Service<Request<tonic::body::Body>> for Web<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<ResBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + std::fmt::Display,
{
    type Response = Response<Either<ResBody, tonic::body::Body>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        if is_grpc(&request) {
            return ResponseFuture::Grpc { inner: self.inner.call(request) };
        }
        let faces = Faces { inner: self.inner.clone(), connect: self.connect };
        let answered: Pin<Box<dyn Future<Output = Response<tonic::body::Body>> + Send>> = match self.cors.clone() {
            Some(cors) => Box::pin(async move {
                match cors.layer(faces).oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }),
            None => Box::pin(async move {
                match faces.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }),
        };
        ResponseFuture::Web { answered }
    }
}

pin_project! {
    /// The answer of one of the faces.
    #[project = ResponseProj]
    pub enum ResponseFuture<F> {
        Grpc { #[pin] inner: F },
        Web { answered: Pin<Box<dyn Future<Output = Response<tonic::body::Body>> + Send>> },
    }
}

impl<F, ResBody> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, Infallible>>,
{
    type Output = Result<Response<Either<ResBody, tonic::body::Body>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseProj::Grpc { inner } => inner.poll(cx).map(|result| result.map(|r| r.map(Either::Left))),
            ResponseProj::Web { answered } => answered.as_mut().poll(cx).map(|r| Ok(r.map(Either::Right))),
        }
    }
}

/// The gRPC-Web and Connect faces (behind CORS, when configured).
#[derive(Clone)]
struct Faces<S> {
    inner: S,
    connect: Connect,
}

impl<S, ResBody> Service<Request<tonic::body::Body>> for Faces<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<ResBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + std::fmt::Display,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call readies its own clone of the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let inner = self.inner.clone();
        let connect = self.connect;
        Box::pin(async move { Ok(answer(inner, &connect, request).await) })
    }
}

/// Answers a request that is not native gRPC.
async fn answer<S, ResBody>(
    inner: S,
    connect: &Connect,
    request: Request<tonic::body::Body>,
) -> Response<tonic::body::Body>
where
    S: Service<Request<tonic::body::Body>, Response = Response<ResBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + std::fmt::Display,
{
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let kind = content_type.as_ref().map(HeaderValue::as_bytes).unwrap_or_default();
    if kind.starts_with(b"application/grpc") {
        // gRPC-Web (and gRPC over HTTP/1.1, which tonic-web refuses).
        let web = tonic_web::GrpcWebLayer::new().layer(inner);
        return match web.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let path = request.uri().path().to_owned();
    let Some(encoding) = Encoding::of(kind) else {
        tracing::debug!(path, "refused a request in a content type that is not served");
        return connect.unsupported_media_type(content_type.as_ref());
    };
    let (request, output) = match connect.request(request, encoding).await {
        Ok(translated) => translated,
        Err(answered) => {
            // Refused before it became a call (bad JSON, headers, size):
            // the answer says why; no value of the request is logged.
            tracing::debug!(path, status = answered.status().as_u16(), "refused a Connect request");
            return answered;
        }
    };
    let response = match inner.oneshot(request).await {
        Ok(response) => response.map(tonic::body::Body::new),
        Err(never) => match never {},
    };
    connect.response(response, output, encoding).await
}
