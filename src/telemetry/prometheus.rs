//! The Prometheus scrape: a metric reader that keeps the instruments in a
//! Prometheus registry (`opentelemetry-prometheus`), and a small HTTP/1
//! server answering `GET /metrics` with its text exposition.
//!
//! The server is hyper, which tonic already builds with HTTP/1 server
//! support; nothing else answers on that address.

use std::convert::Infallible;
use std::sync::OnceLock;

use anyhow::Context as _;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder as _, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How long to wait before accepting again after a failed accept.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// The registry the reader fills, once [`super::init`] installed it.
static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();

/// The reader to add to the meter provider. Only one may exist per process.
pub(super) fn reader() -> anyhow::Result<opentelemetry_prometheus::PrometheusExporter> {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .scope_info_enabled(false)
        .build()
        .context("building the Prometheus exporter")?;
    REGISTRY.set(registry).map_err(|_| anyhow::anyhow!("the Prometheus exporter is already installed"))?;
    Ok(exporter)
}

/// The text exposition of every metric; empty before [`super::init`]
/// installed the Prometheus reader.
pub fn exposition() -> String {
    let Some(registry) = REGISTRY.get() else { return String::new() };
    let mut text = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&registry.gather(), &mut text) {
        tracing::warn!(error = %err, "cannot encode the metrics");
    }
    // The text encoder writes UTF-8 only.
    String::from_utf8(text).unwrap_or_default()
}

/// Answers scrapes on `listener` until the task is dropped or aborted,
/// which closes the connections too.
pub async fn serve(listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: a later accept
                // may do better.
                tracing::warn!(error = %err, "cannot accept a metrics connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Forget the connections that are done, so the set stays small.
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                .await;
            if let Err(err) = served {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => Response::builder()
            .header(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)
            .body(Full::new(Bytes::from(exposition()))),
        (_, "/metrics") => Response::builder().status(StatusCode::METHOD_NOT_ALLOWED).body(Full::default()),
        _ => Response::builder().status(StatusCode::NOT_FOUND).body(Full::default()),
    };
    // Only static, valid header values are set above.
    Ok(response.expect("a response of valid parts"))
}
