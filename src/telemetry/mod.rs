//! Telemetry: logs, traces and metrics, set up once by [`init`].
//!
//! - logs: the `tracing` subscriber writes structured lines to stderr, text
//!   or JSON, levels chosen by an EnvFilter expression;
//! - traces: with an OTLP endpoint, `tracing` spans of sessiond (the RPC
//!   span of `grpc::observe`, the service and store spans) are bridged to
//!   OpenTelemetry and exported over OTLP/gRPC;
//! - metrics ([`metrics`]): OpenTelemetry instruments, exported over OTLP
//!   and/or scraped by Prometheus ([`prometheus`]); the store's latency is
//!   measured by the [`store::Metered`] decorator.
//!
//! - repeated failures ([`throttle`]): a cause that keeps failing is logged
//!   once per `--log-repeat-interval`, with the count of the others.
//!
//! Without an endpoint and a metrics address nothing but the log subscriber
//! is installed: spans are never built and instruments never created.
//!
//! Tokens and storage values are never recorded in fields, spans or
//! attributes; spans name sessions by their public id only.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::settings::{LogFormat, Settings};

pub mod message_metrics;
pub mod metrics;
pub mod process;
pub mod prometheus;
pub mod store;
pub mod tally;
pub mod throttle;

/// How long an export to the collector may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`init`] sets up, taken from the settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An EnvFilter expression for the log lines.
    pub log_filter: String,
    /// How far apart repeated failures of one cause are logged; zero: each
    /// one is.
    pub log_repeat_interval: Duration,
    /// The OTLP/gRPC collector traces and metrics go to; `None`: where
    /// the OTEL_EXPORTER_OTLP_* variables say, if `otlp_traces` or
    /// `otlp_metrics` asks for an export.
    pub otlp_endpoint: Option<String>,
    /// Whether traces are exported over OTLP.
    pub otlp_traces: bool,
    /// Whether metrics are exported over OTLP.
    pub otlp_metrics: bool,
    /// The `service.name` resource attribute; `None`: OTEL_SERVICE_NAME or
    /// the `service.name` of OTEL_RESOURCE_ATTRIBUTES, else `sessiond`.
    pub service_name: Option<String>,
    /// Whether metrics are kept for a Prometheus scrape.
    pub prometheus: bool,
}

impl TelemetryConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        let otlp_endpoint = settings.telemetry.otlp_endpoint.clone().filter(|endpoint| !endpoint.is_empty());
        Self {
            log_format: settings.telemetry.log_format,
            log_filter: settings.telemetry.log_filter.clone(),
            log_repeat_interval: settings.telemetry.log_repeat_interval,
            otlp_traces: otlp_endpoint.is_some() || settings.telemetry.otel_endpoints.traces,
            otlp_metrics: otlp_endpoint.is_some() || settings.telemetry.otel_endpoints.metrics,
            otlp_endpoint,
            service_name: settings.telemetry.otlp_service_name.clone().filter(|name| !name.is_empty()),
            prometheus: settings.telemetry.metrics_listen.is_some(),
        }
    }
}

/// The installed exporters. Keep it for the life of the process and call
/// [`Telemetry::shutdown`] at exit, which exports what is still buffered.
#[must_use = "dropping the guard loses the spans and metrics not yet exported"]
#[derive(Debug)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    /// Logs the counts of repeated failures as their intervals end.
    flusher: Option<tokio::task::JoinHandle<()>>,
}

/// Installs the global subscriber writing to stderr, and the exporters the
/// configuration asks for. Call once, from `main`, inside the tokio runtime
/// (the OTLP exporter's channel runs on it).
pub fn init(config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    install(config, std::io::stderr, colour)
}

/// As [`init`], with log lines written to `writer` without colour: for
/// tests that read what is logged.
pub fn init_with_writer<W>(config: &TelemetryConfig, writer: W) -> anyhow::Result<Telemetry>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(config, writer, false)
}

fn install<W>(config: &TelemetryConfig, writer: W, colour: bool) -> anyhow::Result<Telemetry>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let log_filter = EnvFilter::try_new(&config.log_filter).context("parsing the log filter")?;
    let logs = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(colour).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(writer).boxed(),
    }
    .with_filter(log_filter);

    let resource = resource(config);
    let tracer =
        config.otlp_traces.then(|| tracer_provider(config.otlp_endpoint.as_deref(), resource.clone())).transpose()?;
    let meter = meter_provider(config, resource)?;

    // sessiond's own spans, the service and store ones at debug included,
    // whatever the log filter says; other crates' only from warnings up.
    let traces = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("sessiond"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(Targets::new().with_target("sessiond", LevelFilter::DEBUG).with_default(LevelFilter::WARN))
    });
    tracing_subscriber::registry().with(logs).with(traces).try_init().context("installing the tracing subscriber")?;

    if let Some(provider) = &meter {
        metrics::install(provider);
    }
    throttle::set_interval(config.log_repeat_interval);
    let flusher = (!config.log_repeat_interval.is_zero()).then(|| {
        let period = throttle::flush_period(config.log_repeat_interval);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                throttle::flush();
            }
        })
    });
    Ok(Telemetry { tracer, meter, flusher })
}

/// The resource of exported traces and metrics: the SDK's detectors read
/// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; --otlp-service-name
/// overrides the name, and without any name it is `sessiond`.
fn resource(config: &TelemetryConfig) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::new("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let name = match &config.service_name {
        Some(name) => Some(name.clone()),
        None if named => None,
        None => Some("sessiond".to_owned()),
    };
    let builder = Resource::builder().with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    match name {
        Some(name) => builder.with_service_name(name).build(),
        None => builder.build(),
    }
}

/// Where an exporter sends: the configured endpoint, or (`None`) where
/// the OTEL_EXPORTER_OTLP_* variables say, which the exporter reads.
fn endpoint_name(endpoint: Option<&str>) -> &str {
    endpoint.unwrap_or("the OTEL_EXPORTER_OTLP_* endpoint")
}

fn tracer_provider(endpoint: Option<&str>, resource: Resource) -> anyhow::Result<SdkTracerProvider> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_timeout(EXPORT_TIMEOUT);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let exporter =
        builder.build().with_context(|| format!("building the OTLP span exporter for {}", endpoint_name(endpoint)))?;
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// A meter provider when metrics go anywhere: to the collector, to a
/// Prometheus scrape, or both.
fn meter_provider(config: &TelemetryConfig, resource: Resource) -> anyhow::Result<Option<SdkMeterProvider>> {
    if !config.otlp_metrics && !config.prometheus {
        return Ok(None);
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    if config.otlp_metrics {
        let endpoint = config.otlp_endpoint.as_deref();
        let mut exporter = opentelemetry_otlp::MetricExporter::builder().with_tonic().with_timeout(EXPORT_TIMEOUT);
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        let exporter = exporter
            .build()
            .with_context(|| format!("building the OTLP metric exporter for {}", endpoint_name(endpoint)))?;
        builder = builder.with_reader(PeriodicReader::builder(exporter).build());
    }
    if config.prometheus {
        builder = builder.with_reader(prometheus::reader()?);
    }
    Ok(Some(builder.build()))
}

impl Telemetry {
    /// Exports every finished span and the current metrics now. Blocks
    /// until the collector answered: call it off the async threads
    /// (`spawn_blocking`).
    pub fn force_flush(&self) -> anyhow::Result<()> {
        if let Some(tracer) = &self.tracer {
            tracer.force_flush().context("exporting spans")?;
        }
        if let Some(meter) = &self.meter {
            meter.force_flush().context("exporting metrics")?;
        }
        Ok(())
    }

    /// Exports what is buffered and stops the exporters. Failures are
    /// logged: the process is ending anyway.
    pub async fn shutdown(mut self) {
        if let Some(flusher) = self.flusher.take() {
            flusher.abort();
        }
        throttle::flush_all();
        if self.tracer.is_none() && self.meter.is_none() {
            return;
        }
        // Shutting down blocks until the last export is answered, which
        // needs the runtime's threads free to drive the connection.
        let stopped = tokio::task::spawn_blocking(move || {
            if let Some(Err(err)) = self.tracer.as_ref().map(SdkTracerProvider::shutdown) {
                tracing::warn!(error = %err, "the span exporter did not shut down cleanly");
            }
            if let Some(Err(err)) = self.meter.as_ref().map(SdkMeterProvider::shutdown) {
                tracing::warn!(error = %err, "the metric exporter did not shut down cleanly");
            }
        })
        .await;
        if let Err(err) = stopped {
            tracing::warn!(error = %err, "telemetry shutdown failed");
        }
    }
}
