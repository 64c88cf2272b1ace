//! Structured logs: one JSON object per line (or pretty lines), filtered by `RUST_LOG`; and,
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the same request spans exported as OpenTelemetry
//! traces over OTLP/HTTP (protobuf), joined to the caller's W3C `traceparent`.

use std::time::Duration;

use defendable_config::{Config, LogFormat};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How often finished spans are sent to the collector.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// What [`init`] installed; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[derive(Debug, Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends what is still queued and stops the exporter (call once, on the way out).
    pub fn shutdown(self) {
        if let Some(provider) = self.traces {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "could not flush the last trace spans");
            }
        }
    }
}

/// Installs the global subscriber. Call once, early in `main`, outside any async runtime (the
/// OTLP exporter runs its own thread).
pub fn init(config: &Config) -> Telemetry {
    // One filter per layer: logs and traces keep the same `RUST_LOG` view.
    let filter =
        || EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            // The request span: each line inside a request says `"span": {"request_id": …}`.
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
    };
    let mut layers = vec![logs];
    let provider = match config.otlp_endpoint.as_ref().map(exporter) {
        Some(Ok(provider)) => {
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("defendable-api"))
                    .with_filter(filter())
                    .boxed(),
            );
            Some(provider)
        }
        Some(Err(e)) => {
            eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}; traces are not exported");
            None
        }
        None => None,
    };
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Telemetry { traces: provider }
}

/// A tracer provider that batches spans to `{endpoint}/v1/traces`.
fn exporter(endpoint: &impl std::fmt::Display) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    let url = format!("{}/v1/traces", endpoint.to_string().trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| e.to_string())?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_EVERY)
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("defendable-api")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_resource(resource)
        .build())
}

/// Makes `span` a child of the caller's W3C trace context, if the headers carry a valid one
/// (a no-op when traces are not exported).
pub fn join_caller_trace(span: &tracing::Span, headers: &actix_web::http::header::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(parent);
}

struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
