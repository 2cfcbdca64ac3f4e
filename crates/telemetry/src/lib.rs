//! OpenTelemetry traces of membrane. Off unless an OTLP endpoint is given
//! (`--otlp-endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`): off, no span is ever made and
//! [`tracer`] is `None` at every site that would make one. On, each request, instantiation,
//! link call and capability call that leaves a sandbox is a span of one trace, sampled
//! parent-based (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), named by
//! `OTEL_SERVICE_NAME` (default `membrane`), and exported over OTLP/HTTP (protobuf) by a
//! thread of its own from a bounded queue ([`export`]): a slow or dead collector never
//! slows a request, and what the queue cannot take is counted in [`dropped_spans`].

mod config;
mod export;
mod otlp;
mod recent;
mod span;

pub use opentelemetry::{Context, KeyValue, trace::SpanKind};
pub use otlp::{Prepared, PreparedOnce};
pub use recent::{KEPT_BYTES, SpanView, TraceView};
pub use span::{Label, RouteNames, Span, extract, inject, method_name, protocol_version, static_name, trace_id};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{RandomIdGenerator, SpanData, SpanLimits};
use std::sync::OnceLock;
use std::time::Duration;

/// Spans a process may hold for export at once, unless `OTEL_BSP_MAX_QUEUE_SIZE` says;
/// beyond it they are dropped and counted.
pub const QUEUE_SPANS: usize = 8192;
/// Spans sent in one export, unless `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` says. Large, as each
/// export costs the collector (and the export thread) a request.
pub const BATCH_SPANS: usize = 2048;

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// The `n` slowest of the recent finished traces, slowest first; empty when tracing is off.
pub fn slowest_traces(n: usize) -> Vec<TraceView> {
    tracer().map(|t| t.recent.slowest(n)).unwrap_or_default()
}

/// The process's tracer, or `None` when tracing is off.
pub fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

/// What makes and sends spans: the sampler and the limits (from the `OTEL_*` variables,
/// the limits as the SDK reads them), the SDK's generator of random ids, the export queue,
/// and the recent traces it feeds for the dashboard.
#[derive(Debug)]
pub struct Tracer {
    sampler: config::Sampler,
    ids: RandomIdGenerator,
    limits: SpanLimits,
    queue: export::BoundedBatch,
    recent: recent::Recent,
}

/// The OTLP/HTTP body of `spans` (an `ExportTraceServiceRequest`), as the export thread
/// sends spans made outside membrane; public for the encoding benchmark.
#[doc(hidden)]
pub fn encode_export(resource: &Resource, spans: Vec<SpanData>) -> Vec<u8> {
    otlp::encode(resource, spans)
}

/// Queues a span made outside membrane's own spans (a guest's, through wasi:otel) for
/// export, as a span of membrane's does when it ends; nothing when tracing is off.
pub fn export(span: SpanData) {
    if let Some(tracer) = tracer() {
        tracer.queue.end(Box::new(span.into()));
    }
}

/// The limits every span keeps to (`OTEL_SPAN_*_COUNT_LIMIT`); the SDK's defaults when
/// tracing is off.
pub fn span_limits() -> SpanLimits {
    tracer().map(|t| t.limits).unwrap_or_default()
}

/// Spans dropped because the export queue was full or the collector refused them.
pub fn dropped_spans() -> u64 {
    export::DROPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Spans waiting in the export queue (at most its size).
pub fn queued_spans() -> usize {
    tracer().map_or(0, |t| t.queue.len())
}

/// Spans handed to the collector.
pub fn exported_spans() -> u64 {
    export::EXPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "--otlp-endpoint {endpoint}: {reason}; give the collector's OTLP/HTTP base address, such as \
         http://localhost:4318"
    )]
    Endpoint { endpoint: String, reason: String },
    #[error("{variable}={value:?}: {reason}")]
    Variable { variable: &'static str, value: String, reason: String },
    #[error("tracing is already on in this process")]
    AlreadyOn,
}

/// Tracing for the life of the process; dropping it sends what is queued (for at most a
/// few seconds).
#[derive(Debug)]
pub struct Telemetry {
    _on: (),
}

impl Telemetry {
    /// Turns tracing on when `endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) is set, exporting
    /// to `{endpoint}/v1/traces`; `None` leaves it off.
    pub fn install(endpoint: Option<&str>) -> Result<Option<Telemetry>, TelemetryError> {
        let from_env = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty());
        let Some(endpoint) = endpoint.map(str::to_string).or(from_env) else { return Ok(None) };
        let refused = |reason: String| TelemetryError::Endpoint { endpoint: endpoint.clone(), reason };
        let uri: http::Uri = endpoint.parse().map_err(|e| refused(format!("not an address ({e})")))?;
        if uri.scheme_str() != Some("http") {
            return Err(refused("membrane exports over plain HTTP; run the collector (or a sidecar) on a trusted network and give an http:// address".into()));
        }
        let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let traces: http::Uri = traces.parse().map_err(|e| refused(format!("not an address ({e})")))?;
        let headers = config::headers()?;
        let timeout = config::timeout()?;
        let (capacity, batch) = config::queue()?;
        let sampler = config::Sampler::from_env()?;
        if TRACER.get().is_some() {
            return Err(TelemetryError::AlreadyOn);
        }
        let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|n| !n.is_empty());
        let resource = Resource::builder().with_service_name(name.unwrap_or_else(|| "membrane".into())).build();
        let collector = export::Collector { traces, headers, timeout, resource };
        let recent = recent::Recent::default();
        let queue = export::BoundedBatch::start(collector, capacity, batch, recent.clone());
        let limits = opentelemetry_sdk::trace::Config::default().span_limits;
        let ids = RandomIdGenerator::default();
        TRACER.set(Tracer { sampler, ids, limits, queue, recent }).map_err(|_| TelemetryError::AlreadyOn)?;
        Ok(Some(Telemetry { _on: () }))
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(tracer) = tracer()
            && let Err(error) = tracer.queue.shutdown(Duration::from_secs(5))
        {
            tracing::warn!("sending the last spans: {error}");
        }
    }
}
