//! Spans as an OTLP `ExportTraceServiceRequest` in protobuf, written straight from the
//! span as membrane records it ([`Recorded`]): each span into a [`Chunk`] by the thread that
//! ended it, and an export's few bytes of header around the chunks by the export thread
//! ([`body`]); and attributes written once for the spans that share them ([`Prepared`]).
//!
//! Written here rather than taken from opentelemetry-otlp: its exporter converts every span
//! into opentelemetry-proto's message types first, copying each id, name, key and value into
//! a vector or string of its own, and then encodes and frees them: 2.0 µs a server span of
//! eight attributes, freeing included, where this writes the same bytes in 0.6 µs with no
//! allocation beyond the buffer (`benches/run.sh otlp_encode`). The export thread shares the cores
//! with the requests, so what it spends is taken from them. The field numbers are those of
//! `opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`; the tests decode
//! what this writes with opentelemetry-proto's own types.

mod wire;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceId};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};
use wire::{
    attributes, bytes, field_len, fixed32, fixed64, id, instrumentation_scope, key_value, length_delimited, nanos,
    nested, nested_within, string, uint,
};

/// The instrumentation scope of membrane's own spans.
pub(crate) static MEMBRANE: LazyLock<InstrumentationScope> =
    LazyLock::new(|| InstrumentationScope::builder("membrane").build());

/// A span as membrane records it and writes it: one of its own (a request, an instance, a
/// link call, a capability call), or one made outside it (a guest's, through wasi:otel),
/// which alone has a scope and links of its own ([`Foreign`]).
///
/// Not the SDK's `SpanData`, which carries a copy of its scope and its links in every span,
/// made, moved and dropped for each of a request's spans in code run cold between the
/// request's other work: with this record (and the sampler decided in place), tracing adds
/// about 80 fewer instruction-cache misses and 57 fewer data-cache misses to a docs-web
/// request (BENCHMARKS.md, "Tracing").
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) context: SpanContext,
    pub(crate) parent_span_id: SpanId,
    pub(crate) parent_is_remote: bool,
    pub(crate) kind: SpanKind,
    pub(crate) name: Cow<'static, str>,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) dropped_attributes: u32,
    /// Attributes it shares with other spans, beside its own.
    pub(crate) prepared: Option<&'static Prepared>,
    pub(crate) events: SpanEvents,
    pub(crate) status: Status,
    pub(crate) foreign: Option<Box<Foreign>>,
}

/// What a span made outside membrane has that membrane's own do not.
#[derive(Debug)]
pub(crate) struct Foreign {
    pub(crate) scope: InstrumentationScope,
    pub(crate) links: SpanLinks,
}

impl Recorded {
    /// The scope the span was made in.
    pub(crate) fn scope(&self) -> &InstrumentationScope {
        self.foreign.as_ref().map_or(&MEMBRANE, |foreign| &foreign.scope)
    }
}

impl From<SpanData> for Recorded {
    /// A span made outside membrane, as the SDK's types hold it.
    fn from(span: SpanData) -> Recorded {
        Recorded {
            context: span.span_context,
            parent_span_id: span.parent_span_id,
            parent_is_remote: span.parent_span_is_remote,
            kind: span.span_kind,
            name: span.name,
            start: span.start_time,
            end: span.end_time,
            attributes: span.attributes,
            dropped_attributes: span.dropped_attributes_count,
            prepared: None,
            events: span.events,
            status: span.status,
            foreign: Some(Box::new(Foreign { scope: span.instrumentation_scope, links: span.links })),
        }
    }
}

/// Attributes that every span of one thing an operator wrote carries alike (a link's
/// function, a component's instances, a route), written in protobuf once and kept for the
/// process's life: a span takes them by reference and its export copies their bytes.
/// Building each span's attributes, writing them one by one and freeing them was about a
/// third of what tracing added to a request across a link (BENCHMARKS.md, "Tracing").
#[derive(Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The attributes as `Span.attributes` fields (9).
    pub(crate) bytes: Box<[u8]>,
    pub(crate) attributes: Box<[KeyValue]>,
}

impl Prepared {
    /// `attributes`, prepared. Each distinct set is kept for the process's life, once: only
    /// for sets made of what an operator wrote (names, routes, modes), never of what a
    /// client or a guest chooses.
    pub fn of(attributes: &[KeyValue]) -> &'static Prepared {
        static KEPT: std::sync::Mutex<Vec<&'static Prepared>> = std::sync::Mutex::new(Vec::new());
        let mut bytes = Vec::new();
        wire::attributes(&mut bytes, 9, attributes);
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prepared) = kept.iter().find(|p| *p.bytes == *bytes) {
            return prepared;
        }
        let prepared: &'static Prepared =
            Box::leak(Box::new(Prepared { bytes: bytes.into(), attributes: attributes.into() }));
        kept.push(prepared);
        prepared
    }

    pub(crate) fn len(&self) -> usize {
        self.attributes.len()
    }
}

/// Prepared attributes made at their first traced use and kept ([`Prepared`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreparedOnce(std::sync::OnceLock<&'static Prepared>);

impl PreparedOnce {
    /// The attributes `attributes` makes, made only the first time.
    pub fn of(&self, attributes: impl FnOnce() -> Vec<KeyValue>) -> &'static Prepared {
        self.0.get_or_init(|| Prepared::of(&attributes()))
    }
}

/// Spans of one instrumentation scope, each written as it is sent: a `spans` field (2) of a
/// `ScopeSpans`, so that an export is the bytes of its chunks with a few bytes around them
/// ([`body`]). A chunk is written by the thread that ended its spans (`export` says why),
/// with what the recent traces need to know of each span without reading it back.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) scope: InstrumentationScope,
    pub(crate) bytes: Vec<u8>,
    pub(crate) spans: Vec<Entry>,
}

/// One span of a chunk.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) trace_id: TraceId,
    /// Whether it is its trace's root in this process: no parent, or a remote one.
    pub(crate) root: bool,
    pub(crate) duration: Duration,
    /// Its `spans` field in the chunk's bytes.
    pub(crate) at: Range<usize>,
}

impl Chunk {
    /// A chunk of `scope` with room for about `spans` spans.
    pub(crate) fn new(scope: &InstrumentationScope, spans: usize) -> Chunk {
        Chunk { scope: scope.clone(), bytes: Vec::with_capacity(spans * 320), spans: Vec::with_capacity(spans) }
    }

    /// Writes `span`.
    pub(crate) fn push(&mut self, span: &Recorded) {
        let start = self.bytes.len();
        // A span's length takes two bytes (128 bytes to 16 KiB), kept before it is written.
        nested_within(&mut self.bytes, 2, 2, |out| self::span(out, span));
        self.spans.push(Entry {
            trace_id: span.context.trace_id(),
            root: span.parent_span_id == SpanId::INVALID || span.parent_is_remote,
            duration: span.end.duration_since(span.start).unwrap_or_default(),
            at: start..self.bytes.len(),
        });
    }

    /// Spans in this chunk.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }
}

/// Spans made outside membrane written as chunks, as [`write`] does.
pub(crate) fn chunks(spans: impl IntoIterator<Item = SpanData>) -> Vec<Chunk> {
    let spans: Vec<Recorded> = spans.into_iter().map(Recorded::from).collect();
    write(spans.iter())
}

/// `spans` written as chunks: one for each scope, in the order first seen, each span in
/// its scope's chunk in the order given. Membrane's own spans find theirs without
/// comparing scopes.
pub(crate) fn write<'s>(spans: impl ExactSizeIterator<Item = &'s Recorded>) -> Vec<Chunk> {
    let room = spans.len();
    let mut chunks: Vec<Chunk> = Vec::with_capacity(1);
    let mut own_chunk = None;
    for span in spans {
        let found = match &span.foreign {
            None => own_chunk,
            Some(foreign) => chunks.iter().position(|c| c.scope == foreign.scope),
        };
        let at = found.unwrap_or_else(|| {
            chunks.push(Chunk::new(span.scope(), room));
            chunks.len() - 1
        });
        if span.foreign.is_none() {
            own_chunk = Some(at);
        }
        chunks[at].push(span);
    }
    chunks
}

/// `ExportTraceServiceRequest` of `spans` made outside membrane, all of `resource`,
/// grouped by their scope.
pub(crate) fn encode(resource: &Resource, spans: impl IntoIterator<Item = SpanData>) -> Vec<u8> {
    body(resource, chunks(spans).iter())
}

/// `ExportTraceServiceRequest` of the spans of `chunks`, all of `resource`: one
/// `ScopeSpans` for each scope, in the order first seen, holding the spans of each chunk
/// of that scope in their order. The chunks' bytes are copied once, each length written
/// before what it measures, so nothing moves.
pub(crate) fn body<'c>(resource: &Resource, chunks: impl Iterator<Item = &'c Chunk>) -> Vec<u8> {
    let mut scopes: Vec<(&InstrumentationScope, Vec<&Chunk>)> = Vec::new();
    for chunk in chunks {
        match scopes.iter_mut().find(|(scope, _)| *scope == &chunk.scope) {
            Some((_, of_scope)) => of_scope.push(chunk),
            None => scopes.push((&chunk.scope, vec![chunk])),
        }
    }
    // ResourceSpans.resource = 1: Resource.attributes = 1
    let mut head = Vec::new();
    nested(&mut head, 1, |out| {
        for (key, value) in resource.iter() {
            key_value(out, 1, key, value);
        }
    });
    // ResourceSpans.scope_spans = 2: its scope = 1 before the spans, its schema = 3 after.
    let scope_spans: Vec<ScopeSpans> = scopes
        .iter()
        .map(|(scope, chunks)| {
            let mut before = Vec::new();
            nested(&mut before, 1, |out| instrumentation_scope(out, scope));
            let mut after = Vec::new();
            string(&mut after, 3, scope.schema_url().unwrap_or_default());
            let len = before.len() + chunks.iter().map(|c| c.bytes.len()).sum::<usize>() + after.len();
            ScopeSpans { before, chunks, after, len }
        })
        .collect();
    let mut tail = Vec::new();
    string(&mut tail, 3, resource.schema_url().unwrap_or_default());
    let inner = head.len() + scope_spans.iter().map(|s| field_len(2, s.len)).sum::<usize>() + tail.len();
    // ExportTraceServiceRequest.resource_spans = 1
    let mut out = Vec::with_capacity(field_len(1, inner));
    length_delimited(&mut out, 1, inner);
    out.extend_from_slice(&head);
    for scope in &scope_spans {
        length_delimited(&mut out, 2, scope.len);
        out.extend_from_slice(&scope.before);
        for chunk in scope.chunks {
            out.extend_from_slice(&chunk.bytes);
        }
        out.extend_from_slice(&scope.after);
    }
    out.extend_from_slice(&tail);
    out
}

/// A `ScopeSpans` of an export: what goes before its chunks' spans and after them, and its
/// length.
struct ScopeSpans<'c> {
    before: Vec<u8>,
    chunks: &'c [&'c Chunk],
    after: Vec<u8>,
    len: usize,
}

/// `trace.v1.Span`.
fn span(out: &mut Vec<u8>, span: &Recorded) {
    let context = &span.context;
    // Room at once for what every span has: its ids, kind, times, status and flags.
    out.reserve(80 + span.name.len());
    id(out, 1, context.trace_id().to_bytes());
    id(out, 2, context.span_id().to_bytes());
    let state = context.trace_state().header();
    string(out, 3, &state);
    if span.parent_span_id != SpanId::INVALID {
        id(out, 4, span.parent_span_id.to_bytes());
    }
    string(out, 5, &span.name);
    let kind = match span.kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    uint(out, 6, kind);
    fixed64(out, 7, nanos(span.start));
    fixed64(out, 8, nanos(span.end));
    attributes(out, 9, &span.attributes);
    if let Some(prepared) = span.prepared {
        out.extend_from_slice(&prepared.bytes);
    }
    uint(out, 10, u64::from(span.dropped_attributes));
    for event in span.events.iter() {
        nested(out, 11, |out| {
            fixed64(out, 1, nanos(event.timestamp));
            string(out, 2, &event.name);
            attributes(out, 3, &event.attributes);
            uint(out, 4, u64::from(event.dropped_attributes_count));
        });
    }
    uint(out, 12, u64::from(span.events.dropped_count));
    let links = span.foreign.as_ref().map(|foreign| &foreign.links);
    for link in links.into_iter().flat_map(|links| links.iter()) {
        nested(out, 13, |out| {
            bytes(out, 1, &link.span_context.trace_id().to_bytes());
            bytes(out, 2, &link.span_context.span_id().to_bytes());
            string(out, 3, &link.span_context.trace_state().header());
            attributes(out, 4, &link.attributes);
            uint(out, 5, u64::from(link.dropped_attributes_count));
            fixed32(out, 6, flags(link.span_context.trace_flags().to_u8(), link.span_context.is_remote()));
        });
    }
    uint(out, 14, u64::from(links.map_or(0, |links| links.dropped_count)));
    // Status: message = 2, code = 3 (unset 0, ok 1, error 2).
    nested(out, 15, |out| match &span.status {
        Status::Unset => {}
        Status::Ok => uint(out, 3, 1),
        Status::Error { description } => {
            string(out, 2, description);
            uint(out, 3, 2);
        }
    });
    fixed32(out, 16, flags(context.trace_flags().to_u8(), span.parent_is_remote));
}

/// `SpanFlags`: the W3C trace flags, and that whether the parent is remote is known.
fn flags(trace_flags: u8, remote: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    u32::from(trace_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Event, Link, SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry::{Array, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;
    use std::time::Duration;
    use std::time::UNIX_EPOCH;

    fn context(trace: u128, span: u64, remote: bool) -> SpanContext {
        let state = TraceState::from_key_value([("vendor", "opaque")]).unwrap();
        SpanContext::new(TraceId::from(trace), SpanId::from(span), TraceFlags::SAMPLED, remote, state)
    }

    /// A span with every kind of field and value, in `scope`.
    fn span(n: u64, scope: &InstrumentationScope, status: Status) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + n);
        let long = "x".repeat(20_000);
        let mut events = SpanEvents::default();
        events.events.push(Event::new("retry", start, vec![KeyValue::new("membrane.link.retry", 2)], 1));
        events.dropped_count = 3;
        let mut links = SpanLinks::default();
        links.links.push(Link::new(context(9, 9, true), vec![KeyValue::new("why", "follows")], 0));
        SpanData {
            span_context: context(0x0af7651916cd43dd8448eb211c80319c, n + 1, false),
            parent_span_id: if n == 0 { SpanId::INVALID } else { SpanId::from(n) },
            parent_span_is_remote: n == 2,
            span_kind: [SpanKind::Server, SpanKind::Internal, SpanKind::Client][n as usize % 3].clone(),
            name: format!("span {n}").into(),
            start_time: start,
            end_time: start + Duration::from_micros(250),
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("empty", ""),
                KeyValue::new("long", long),
                KeyValue::new("http.response.status_code", 200),
                KeyValue::new("negative", -5),
                KeyValue::new("flag", false),
                KeyValue::new("ratio", 0.25),
                KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
                KeyValue::new("ints", Value::Array(Array::I64(vec![0, -1, 300]))),
                KeyValue::new("floats", Value::Array(Array::F64(vec![0.0, 1.5]))),
                KeyValue::new("strings", Value::Array(Array::String(vec!["a".into(), "".into()]))),
            ],
            dropped_attributes_count: 4,
            events,
            links,
            status,
            instrumentation_scope: scope.clone(),
        }
    }

    #[test]
    fn a_batch_decodes_as_the_message_opentelemetry_proto_makes_of_it() {
        let resource = Resource::builder().with_service_name("membrane").build();
        let membrane = InstrumentationScope::builder("membrane").build();
        let other = InstrumentationScope::builder("other")
            .with_version("1.2")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.attr", 7)])
            .build();
        let spans = vec![
            span(0, &membrane, Status::Unset),
            span(1, &other, Status::error("renderer trapped")),
            span(2, &membrane, Status::Ok),
        ];
        let ours = ExportTraceServiceRequest::decode(encode(&resource, spans.clone()).as_slice()).expect("decodes");
        let theirs = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &ResourceAttributesWithSchema::from(&resource)),
        };
        assert_eq!(ours, theirs);
        assert_eq!(ours.resource_spans[0].scope_spans.len(), 2, "one scope_spans for each scope");
    }

    #[test]
    fn a_span_shorter_than_the_room_kept_for_its_length_decodes_the_same() {
        let resource = Resource::builder().build();
        let scope = InstrumentationScope::builder("membrane").build();
        let mut small = span(1, &scope, Status::Unset);
        small.attributes.clear();
        small.events = SpanEvents::default();
        small.links = SpanLinks::default();
        small.span_context = SpanContext::new(1.into(), 2.into(), TraceFlags::SAMPLED, false, TraceState::NONE);
        let written = encode(&resource, [small.clone()]);
        let ours = ExportTraceServiceRequest::decode(written.as_slice()).expect("decodes");
        let theirs = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                vec![small],
                &ResourceAttributesWithSchema::from(&resource),
            ),
        };
        assert_eq!(ours, theirs);
    }

    #[test]
    fn an_own_span_with_prepared_attributes_writes_as_the_same_span_made_outside() {
        let mut outside = span(1, &MEMBRANE, Status::Ok);
        outside.links = SpanLinks::default();
        let mut own = Recorded::from(outside.clone());
        own.foreign = None;
        own.prepared = Some(Prepared::of(&own.attributes.split_off(3)));
        let written = |span: &Recorded| {
            let mut chunk = Chunk::new(span.scope(), 1);
            chunk.push(span);
            chunk.bytes
        };
        assert_eq!(written(&own), written(&Recorded::from(outside)));
        assert_eq!(own.scope(), &*MEMBRANE);
    }

    #[test]
    fn an_empty_batch_is_a_resource_with_no_spans() {
        let resource = Resource::builder().with_service_name("membrane").build();
        let ours = ExportTraceServiceRequest::decode(encode(&resource, []).as_slice()).expect("decodes");
        assert_eq!(ours.resource_spans.len(), 1);
        assert!(ours.resource_spans[0].scope_spans.is_empty());
    }
}
