//! A span that is nothing when tracing is off, and W3C trace context in and out of HTTP
//! headers.
//!
//! A span is recorded straight into membrane's own record of it ([`Recorded`]), with the
//! sampler `OTEL_TRACES_SAMPLER` names, the SDK's id generator and limits
//! ([`crate::Tracer`]), and handed to the export queue when dropped. Not through the SDK's
//! own `Span` and tracer: those carry a copy of the tracer (its scope and a shared counter
//! of the provider) in every span, build the data through a builder of options, and call
//! the processors on start and end: 2.2 µs a span of the server's CPU in `membrane serve`,
//! where a plain record cost nothing measurable (BENCHMARKS.md, "Tracing"). A span that is
//! not sampled builds neither its name nor its attributes.

use crate::otlp::{Prepared, Recorded};
use crate::{Tracer, tracer};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceState,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator as _, SpanEvents};
use std::borrow::Cow;

/// One operation of a trace. With tracing off it holds nothing and costs nothing; its
/// attributes are built only when it is sampled. Boxed, so that a span that is not made
/// is one null pointer in the futures that carry it across their awaits. A span that is
/// not sampled still carries its context, so the services it calls know not to sample.
#[derive(Debug, Default)]
pub struct Span(Option<Box<Recorded>>);

impl Span {
    /// Starts a span under `parent` (a new trace without one). `attributes` runs only when
    /// tracing is on.
    pub fn start(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&Context>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Span {
        let Some(tracer) = tracer() else { return Span(None) };
        let describe = || (name.into(), attributes(), None);
        Span(Some(match parent {
            Some(parent) => record(tracer, kind, parent, describe),
            None => record(tracer, kind, &Context::new(), describe),
        }))
    }

    /// [`Span::start`] with prepared attributes ([`Prepared`]).
    pub fn start_prepared(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&Context>,
        prepared: impl FnOnce() -> &'static Prepared,
    ) -> Span {
        let Some(tracer) = tracer() else { return Span(None) };
        let describe = || (name.into(), Vec::new(), Some(prepared()));
        Span(Some(match parent {
            Some(parent) => record(tracer, kind, parent, describe),
            None => record(tracer, kind, &Context::new(), describe),
        }))
    }

    /// Starts a span under `parent`, or none when there is no parent: tracing is off, or
    /// the work belongs to no trace (a link call made by the host, not by a request).
    /// `describe` (the span's name and attributes) runs only when the span is sampled, so
    /// without a parent this is one branch: no allocation, no clock read.
    pub fn child<N: Into<Cow<'static, str>>>(
        parent: Option<&Context>,
        kind: SpanKind,
        describe: impl FnOnce() -> (N, Vec<KeyValue>),
    ) -> Span {
        let Some(parent) = parent else { return Span(None) };
        let Some(tracer) = tracer() else { return Span(None) };
        Span(Some(record(tracer, kind, parent, || {
            let (name, attributes) = describe();
            (name.into(), attributes, None)
        })))
    }

    /// [`Span::child`] with prepared attributes ([`Prepared`]).
    pub fn child_prepared<N: Into<Cow<'static, str>>>(
        parent: Option<&Context>,
        kind: SpanKind,
        describe: impl FnOnce() -> (N, &'static Prepared),
    ) -> Span {
        let Some(parent) = parent else { return Span(None) };
        let Some(tracer) = tracer() else { return Span(None) };
        Span(Some(record(tracer, kind, parent, || {
            let (name, prepared) = describe();
            (name.into(), Vec::new(), Some(prepared))
        })))
    }

    /// The context in which this span is the parent, for the spans it leads to; `None`
    /// when tracing is off.
    pub fn context(&self) -> Option<Context> {
        let span = self.0.as_ref()?;
        Some(Context::new().with_remote_span_context(span.context.clone()))
    }

    /// This span's trace id (32 hex digits), for log lines that lead to the trace.
    pub fn trace_id(&self) -> Option<String> {
        self.0.as_ref().map(|s| s.context.trace_id().to_string())
    }

    /// Names the span anew, once what it is about is known (a request's route).
    pub fn rename<N: Into<Cow<'static, str>>>(&mut self, name: impl FnOnce() -> N) {
        if let Some(span) = self.sampled() {
            span.name = name().into();
        }
    }

    pub fn set(&mut self, attribute: impl FnOnce() -> KeyValue) {
        let Some(limits) = tracer().map(|t| t.limits) else { return };
        if let Some(span) = self.sampled() {
            span.attributes.push(attribute());
            span.keep_within(limits.max_attributes_per_span);
        }
    }

    /// Adds prepared attributes ([`Prepared`]). A span carries one prepared set by
    /// reference; the attributes of another are added one by one.
    pub fn set_prepared(&mut self, prepared: impl FnOnce() -> &'static Prepared) {
        let Some(limits) = tracer().map(|t| t.limits) else { return };
        if let Some(span) = self.sampled() {
            span.prepare(limits.max_attributes_per_span, prepared());
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&mut self, why: impl FnOnce() -> String) {
        // Ok is final, as the SDK has it; failing twice keeps the last reason.
        if let Some(span) = self.sampled().filter(|s| s.status != Status::Ok) {
            span.status = Status::error(why());
        }
    }

    /// An event on the span (a denial, a retry), with its attributes; beyond the limit of
    /// events a span keeps (`OTEL_SPAN_EVENT_COUNT_LIMIT`, 128) it is only counted, so a
    /// guest denied in a loop cannot grow its request's span without bound.
    pub fn event(&mut self, name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) {
        let Some(limits) = tracer().map(|t| t.limits) else { return };
        let Some(span) = self.sampled() else { return };
        if span.events.len() >= limits.max_events_per_span as usize {
            span.events.dropped_count += 1;
            return;
        }
        let (attributes, dropped) = bounded(attributes(), limits.max_attributes_per_event);
        span.events.events.push(Event::new(name, opentelemetry::time::now(), attributes, dropped));
    }

    pub fn is_recording(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.context.is_sampled())
    }

    /// The span's record, if it is sampled (else nothing of it is kept).
    fn sampled(&mut self) -> Option<&mut Recorded> {
        self.0.as_deref_mut().filter(|s| s.context.is_sampled())
    }
}

impl Recorded {
    /// Takes `prepared` by reference when the span has none yet and there is room for it;
    /// otherwise adds its attributes one by one, within the limit.
    fn prepare(&mut self, limit: u32, prepared: &'static Prepared) {
        let room = (limit as usize).saturating_sub(self.attributes.len());
        if self.prepared.is_none() && prepared.len() <= room {
            self.prepared = Some(prepared);
        } else {
            self.attributes.extend(prepared.attributes.iter().cloned());
            self.keep_within(limit);
        }
    }

    /// Cuts the span's own attributes to what its `limit` leaves beside its prepared ones,
    /// counting those cut as dropped.
    fn keep_within(&mut self, limit: u32) {
        let room = (limit as usize).saturating_sub(self.prepared.map_or(0, Prepared::len));
        self.dropped_attributes += self.attributes.len().saturating_sub(room) as u32;
        self.attributes.truncate(room);
    }
}

impl Drop for Span {
    /// Ends the span: a sampled one goes to the export queue.
    fn drop(&mut self) {
        let Some(mut span) = self.0.take().filter(|s| s.context.is_sampled()) else { return };
        if let Some(tracer) = tracer() {
            span.end = opentelemetry::time::now();
            tracer.queue.end(span);
        }
    }
}

/// A span of `tracer` under `parent` (a new trace when it has no valid span), as the SDK's
/// tracer makes one: the same ids, sampling decision, trace state and limits. `describe`
/// (name and attributes) runs only for a sampled span: the sampler decides before, by the
/// parent and the trace id alone, as the standard samplers (the only ones
/// `OTEL_TRACES_SAMPLER` can choose) do.
fn record(
    tracer: &Tracer,
    kind: SpanKind,
    parent: &Context,
    describe: impl FnOnce() -> (Cow<'static, str>, Vec<KeyValue>, Option<&'static Prepared>),
) -> Box<Recorded> {
    let mut span = begin(tracer, kind, parent);
    if span.context.is_sampled() {
        let (name, attributes, prepared) = describe();
        span.describe(tracer, name, attributes, prepared);
    }
    span
}

/// A span of `tracer` under `parent`, with its ids, sampling decision and start, and no
/// name or attributes yet. Not generic, as all that [`record`] makes for each kind of span
/// is its description: one copy of this code serves every span of a request, where a copy
/// for each kind of span cost a docs-web request about 110 more instruction-cache misses
/// (BENCHMARKS.md, "Tracing").
#[inline(never)]
fn begin(tracer: &Tracer, kind: SpanKind, parent: &Context) -> Box<Recorded> {
    let parent_span = parent.span();
    let parent = Some(parent_span.span_context()).filter(|c| c.is_valid());
    let trace_id = parent.map_or_else(|| tracer.ids.new_trace_id(), |c| c.trace_id());
    let sampled = tracer.sampler.samples(parent, trace_id);
    let flags = parent.map_or(TraceFlags::default(), |c| c.trace_flags()).with_sampled(sampled);
    let state = parent.map_or(TraceState::NONE, |c| c.trace_state().clone());
    // A span that is not sampled is never sent: it has no use for the time.
    let now = if sampled { opentelemetry::time::now() } else { std::time::UNIX_EPOCH };
    Box::new(Recorded {
        context: SpanContext::new(trace_id, tracer.ids.new_span_id(), flags, false, state),
        parent_span_id: parent.map_or(SpanId::INVALID, |c| c.span_id()),
        parent_is_remote: parent.is_some_and(|c| c.is_remote()),
        kind,
        name: Cow::Borrowed(""),
        start: now,
        end: now,
        attributes: Vec::new(),
        dropped_attributes: 0,
        prepared: None,
        events: SpanEvents::default(),
        status: Status::Unset,
        foreign: None,
    })
}

impl Recorded {
    /// Names a sampled span and gives it its attributes, within the limits.
    #[inline(never)]
    fn describe(
        &mut self,
        tracer: &Tracer,
        name: Cow<'static, str>,
        attributes: Vec<KeyValue>,
        prepared: Option<&'static Prepared>,
    ) {
        let limit = tracer.limits.max_attributes_per_span;
        self.name = name;
        self.attributes = attributes;
        match prepared {
            Some(prepared) => self.prepare(limit, prepared),
            None => self.keep_within(limit),
        }
    }
}

/// `attributes` cut to `limit`, and how many were cut.
fn bounded(mut attributes: Vec<KeyValue>, limit: u32) -> (Vec<KeyValue>, u32) {
    let dropped = attributes.len().saturating_sub(limit as usize);
    attributes.truncate(limit as usize);
    (attributes, dropped as u32)
}

/// `name`, kept for the process's life, so that every span named by it takes it without a
/// copy: each distinct name is made once. Only for names an operator writes (a route, a
/// link and its functions), of which there are few; never for what a client or a guest
/// chooses, which would grow the set without bound.
pub fn static_name(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(kept) = names.get(name) {
        return kept;
    }
    let kept: &'static str = Box::leak(name.into());
    names.insert(kept);
    kept
}

/// A name an operator wrote (a component's, a route's, a tenant's) as its spans take it:
/// made a `&'static str` ([`static_name`]) at its first traced use and kept. A span then
/// takes it with no allocation and no reference count: shared names counted by reference
/// (`Arc<str>`) made every request thread and the export thread update the same count, a
/// cache line bouncing between cores for each attribute of each span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Label(std::sync::OnceLock<&'static str>);

impl Label {
    /// `name` as a span attribute, written out only at the first use; the same `name`
    /// each time.
    pub fn of(&self, name: impl std::fmt::Display) -> &'static str {
        self.0.get_or_init(|| static_name(&name.to_string()))
    }
}

/// The standard HTTP methods, whose names spans take without an allocation.
const STANDARD_METHODS: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"];

/// An HTTP method as a span name and attribute: the standard ones without an allocation.
pub fn method_name(method: &http::Method) -> Cow<'static, str> {
    match STANDARD_METHODS.into_iter().find(|name| *name == method.as_str()) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(method.to_string()),
    }
}

/// A route's server span names (`GET /api`), one for each standard method, made at the
/// route's first traced request and kept, so that a request's span takes its name without
/// making it; nothing is made while tracing is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteNames(std::sync::OnceLock<[&'static str; STANDARD_METHODS.len()]>);

impl RouteNames {
    /// The name of the span of a request with `method` to `route`.
    pub fn of(&self, method: &http::Method, route: &str) -> Cow<'static, str> {
        match STANDARD_METHODS.iter().position(|name| *name == method.as_str()) {
            Some(at) => {
                let names = self.0.get_or_init(|| STANDARD_METHODS.map(|m| static_name(&format!("{m} {route}"))));
                Cow::Borrowed(names[at])
            }
            None => Cow::Owned(format!("{method} {route}")),
        }
    }
}

/// `network.protocol.version` of an HTTP version, as the semantic conventions spell it.
pub fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "unknown",
    }
}

/// The trace a request belongs to, from its `traceparent` / `tracestate` headers; `None`
/// when tracing is off, an empty context when the request carries none.
pub fn extract(headers: &http::HeaderMap) -> Option<Context> {
    tracer()?;
    // Most requests carry none: one lookup by a name already made, not the propagator's
    // by text.
    const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    if !headers.contains_key(TRACEPARENT) {
        return Some(Context::new());
    }
    Some(TraceContextPropagator::new().extract(&HeaderExtractor(headers)))
}

/// Writes `cx`'s `traceparent` (and `tracestate`) into `headers`, so the next service joins
/// the trace.
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// The trace id of `cx`'s span, if it has a valid one.
pub fn trace_id(cx: &Context) -> Option<String> {
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TRACER, export, recent};
    use opentelemetry::trace::TraceState;

    /// The process's tracer, exporting to a port where nothing listens (what it sends is
    /// dropped and counted; these tests look at the spans themselves).
    fn on() -> &'static Tracer {
        TRACER.get_or_init(|| {
            let collector = export::Collector {
                traces: "http://127.0.0.1:9/v1/traces".parse().unwrap(),
                headers: http::HeaderMap::new(),
                timeout: std::time::Duration::from_millis(100),
                resource: opentelemetry_sdk::Resource::builder().build(),
            };
            Tracer {
                sampler: crate::config::Sampler::default(),
                ids: opentelemetry_sdk::trace::RandomIdGenerator::default(),
                limits: opentelemetry_sdk::trace::SpanLimits::default(),
                queue: export::BoundedBatch::start(collector, 16, 16, recent::Recent::default()),
                recent: recent::Recent::default(),
            }
        })
    }

    fn remote(sampled: bool) -> Context {
        let flags = TraceFlags::default().with_sampled(sampled);
        let state = TraceState::from_key_value([("vendor", "opaque")]).unwrap();
        let parent = SpanContext::new(0xabcd.into(), 0x42.into(), flags, true, state);
        Context::new().with_remote_span_context(parent)
    }

    #[test]
    fn a_span_without_a_parent_starts_a_sampled_trace_with_its_attributes() {
        on();
        let span = Span::start("GET", SpanKind::Server, None, || vec![KeyValue::new("url.path", "/")]);
        let data = span.0.as_deref().expect("tracing is on");
        assert!(data.context.is_valid() && data.context.is_sampled());
        assert_eq!(data.parent_span_id, SpanId::INVALID);
        assert_eq!(data.attributes, vec![KeyValue::new("url.path", "/")]);
        assert_eq!(data.scope().name(), "membrane");
    }

    #[test]
    fn a_span_under_a_sampled_caller_joins_its_trace_and_keeps_its_state() {
        on();
        let span = Span::start("GET", SpanKind::Server, Some(&remote(true)), Vec::new);
        let data = span.0.as_deref().unwrap();
        assert_eq!(data.context.trace_id(), 0xabcd.into());
        assert_eq!(data.parent_span_id, 0x42.into());
        assert!(data.parent_is_remote && data.context.is_sampled());
        assert_eq!(data.context.trace_state().get("vendor"), Some("opaque"));
        let child = Span::child(span.context().as_ref(), SpanKind::Internal, || ("instantiate", Vec::new()));
        let child = child.0.as_deref().unwrap();
        assert_eq!(child.parent_span_id, data.context.span_id());
        assert!(!child.parent_is_remote, "its parent is in this process");
        assert_eq!(child.context.trace_state().get("vendor"), Some("opaque"), "the trace keeps its state");
    }

    #[test]
    fn a_span_under_an_unsampled_caller_is_not_sampled_and_builds_nothing() {
        on();
        let parent = Span::start("GET", SpanKind::Server, Some(&remote(false)), || panic!("attributes built"));
        let mut span =
            Span::child(parent.context().as_ref(), SpanKind::Internal, || -> (String, _) { panic!("name built") });
        span.set(|| panic!("attribute built"));
        span.event("denied", || panic!("event built"));
        assert!(!span.is_recording());
        // Its context still tells the next service the trace and that it is not sampled.
        let cx = span.context().expect("a context to pass on");
        let passed = cx.span().span_context().clone();
        assert_eq!(passed.trace_id(), 0xabcd.into());
        assert!(!passed.is_sampled());
    }

    /// The attribute keys `span` is exported with.
    fn exported_keys(span: &Span) -> Vec<String> {
        use prost::Message as _;
        let recorded = span.0.as_deref().expect("tracing is on");
        let mut chunk = crate::otlp::Chunk::new(recorded.scope(), 1);
        chunk.push(recorded);
        // A chunk's bytes are the `spans` fields of a `ScopeSpans`.
        let scope = opentelemetry_proto::tonic::trace::v1::ScopeSpans::decode(chunk.bytes.as_slice()).unwrap();
        scope.spans[0].attributes.iter().map(|kv| kv.key.clone()).collect()
    }

    #[test]
    fn prepared_attributes_are_made_once_and_exported_with_the_spans_own() {
        on();
        let attributes = || vec![KeyValue::new("membrane.link", "web -> fancy"), KeyValue::new("rpc.method", "render")];
        let prepared = Prepared::of(&attributes());
        assert!(std::ptr::eq(prepared, Prepared::of(&attributes())), "the same set is kept once");
        let parent = Span::start("GET", SpanKind::Server, None, Vec::new);
        let mut span = Span::child_prepared(parent.context().as_ref(), SpanKind::Internal, || ("call", prepared));
        span.set(|| KeyValue::new("membrane.link.outcome", "ok"));
        // A second prepared set is added one by one: a span carries one by reference.
        span.set_prepared(|| Prepared::of(&[KeyValue::new("membrane.trap.kind", "unreachable")]));
        assert_eq!(
            exported_keys(&span),
            ["membrane.link.outcome", "membrane.trap.kind", "membrane.link", "rpc.method"]
        );
        let mut route = Span::start("GET", SpanKind::Server, None, || vec![KeyValue::new("url.path", "/")]);
        route.set_prepared(|| prepared);
        assert_eq!(exported_keys(&route), ["url.path", "membrane.link", "rpc.method"]);
    }

    #[test]
    fn prepared_attributes_count_toward_the_limit_of_attributes() {
        let limit = on().limits.max_attributes_per_span as usize;
        let many: Vec<KeyValue> = (0..limit - 1).map(|n| KeyValue::new(format!("k{n}"), n as i64)).collect();
        let mut span = Span::start_prepared("GET", SpanKind::Server, None, || Prepared::of(&many));
        span.set(|| KeyValue::new("last", true));
        span.set(|| KeyValue::new("beyond", true));
        let recorded = span.0.as_deref().unwrap();
        assert_eq!(recorded.attributes.len() + recorded.prepared.unwrap().len(), limit);
        assert_eq!(recorded.dropped_attributes, 1);
        assert_eq!(exported_keys(&span).len(), limit);
    }

    #[test]
    fn events_beyond_the_limit_are_counted_not_kept() {
        let limit = on().limits.max_events_per_span as usize;
        let mut span = Span::start("GET", SpanKind::Server, None, Vec::new);
        for _ in 0..limit + 5 {
            span.event("denied", || vec![KeyValue::new("membrane.denied", "wasi:sockets")]);
        }
        span.fail(|| "trapped".into());
        let data = span.0.as_deref().unwrap();
        assert_eq!(data.events.len(), limit);
        assert_eq!(data.events.dropped_count, 5);
        assert_eq!(data.status, Status::error("trapped"));
    }
}
