//! An OpenTelemetry collector inside the test process: an OTLP/gRPC server
//! on a free loopback port that keeps every trace and metrics export it
//! receives, for tests to look at.
//!
//! Include it with `#[path = "support/otlp.rs"] mod otlp;`.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// A running collector.
pub struct Collector {
    /// What to give an exporter: `http://127.0.0.1:<port>`.
    pub endpoint: String,
    received: Received,
}

/// What the collector was sent, shared with its server.
#[derive(Clone, Default)]
struct Received {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

impl Collector {
    /// Starts serving on the current tokio runtime, until it stops.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port is free");
        let endpoint = format!("http://{}", listener.local_addr().expect("a bound listener has an address"));
        let received = Received::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received.clone()))
            .add_service(MetricsServiceServer::new(received.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        Self { endpoint, received }
    }

    /// Every span received so far, with the resource it came from.
    pub fn spans(&self) -> Vec<(Option<Resource>, Span)> {
        let traces = self.received.traces.lock().expect("no test panics holding the lock");
        traces
            .iter()
            .flat_map(|request| &request.resource_spans)
            .flat_map(|resource_spans| {
                let resource = resource_spans.resource.clone();
                resource_spans
                    .scope_spans
                    .iter()
                    .flat_map(|scope| &scope.spans)
                    .map(move |span| (resource.clone(), span.clone()))
            })
            .collect()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &[u8]) -> Vec<Span> {
        self.spans().into_iter().map(|(_, span)| span).filter(|span| span.trace_id == trace_id).collect()
    }

    /// Everything received, traces and metrics, in `Debug` form: to check
    /// that a secret appears nowhere.
    pub fn everything(&self) -> String {
        let traces = self.received.traces.lock().expect("no test panics holding the lock");
        let metrics = self.received.metrics.lock().expect("no test panics holding the lock");
        format!("{traces:?}\n{metrics:?}")
    }

    /// The names of the metrics received so far.
    pub fn metric_names(&self) -> Vec<String> {
        let metrics = self.received.metrics.lock().expect("no test panics holding the lock");
        metrics
            .iter()
            .flat_map(|request| &request.resource_metrics)
            .flat_map(|resource| &resource.scope_metrics)
            .flat_map(|scope| &scope.metrics)
            .map(|metric| metric.name.clone())
            .collect()
    }
}

/// The value of attribute `key`, if present.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

/// The text attribute `key`, if present and text.
pub fn text_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key) {
        Some(any_value::Value::StringValue(text)) => Some(text),
        _ => None,
    }
}

/// The integer attribute `key`, if present and an integer.
pub fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key) {
        Some(any_value::Value::IntValue(n)) => Some(*n),
        _ => None,
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.traces.lock().expect("no test panics holding the lock").push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.metrics.lock().expect("no test panics holding the lock").push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}
