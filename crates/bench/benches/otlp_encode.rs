//! A batch of spans encoded for an OTLP/HTTP export: membrane's encoder, which takes each of
//! the SDK's spans into its own record (a move, as it does a guest's span) and writes the
//! protobuf straight from it, next to opentelemetry-proto's conversion into its message
//! types followed by prost's encoding (what opentelemetry-otlp's exporter does). 512 server
//! spans of eight attributes, as `membrane serve` makes them; both sides end with the spans
//! freed, as the export thread does. Run with `benches/run.sh otlp_encode`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message;
use std::time::SystemTime;

const SPANS: usize = 512;

fn server_span(n: u64) -> SpanData {
    let context = SpanContext::new(
        TraceId::from(u128::from(n) + 1),
        SpanId::from(n + 1),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    SpanData {
        span_context: context,
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: format!("GET /docs/{n}").into(),
        start_time: SystemTime::now(),
        end_time: SystemTime::now(),
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", format!("/docs/{n}")),
            KeyValue::new("server.address", "127.0.0.1:8080".to_string()),
            KeyValue::new("network.protocol.version", "1.1"),
            KeyValue::new("http.route", "/docs".to_string()),
            KeyValue::new("membrane.component", "docs-web".to_string()),
            KeyValue::new("http.response.status_code", 200),
            KeyValue::new("http.response.body.size", 1024),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("membrane").build(),
    }
}

fn batch() -> Vec<SpanData> {
    (0..SPANS as u64).map(server_span).collect()
}

fn encode(c: &mut Criterion) {
    let resource = Resource::builder().with_service_name("membrane").build();
    let with_schema = ResourceAttributesWithSchema::from(&resource);
    let mut group = c.benchmark_group("otlp");
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("membrane (straight from span data)", |b| {
        b.iter_batched(batch, |spans| membrane_telemetry::encode_export(&resource, spans), BatchSize::LargeInput)
    });
    group.bench_function("opentelemetry-proto (message types, then prost)", |b| {
        b.iter_batched(
            batch,
            |spans| {
                let request = ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(spans, &with_schema),
                };
                request.encode_to_vec()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
