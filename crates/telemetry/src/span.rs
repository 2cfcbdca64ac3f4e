//! A span that is nothing when tracing is off, and W3C trace context in and out of HTTP
//! headers.

use crate::tracer;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::borrow::Cow;

/// One operation of a trace. With tracing off it holds nothing and costs nothing; its
/// attributes are built only when it is recorded. Boxed, so that a span that is not made
/// is one null pointer in the futures that carry it across their awaits.
#[derive(Debug, Default)]
pub struct Span(Option<Box<opentelemetry_sdk::trace::Span>>);

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
        let builder = tracer.span_builder(name).with_kind(kind).with_attributes(attributes());
        let span = match parent {
            Some(parent) => tracer.build_with_context(builder, parent),
            None => tracer.build_with_context(builder, &Context::new()),
        };
        Span(Some(Box::new(span)))
    }

    /// Starts a span under `parent`, or none when there is no parent: tracing is off, or
    /// the work belongs to no trace (a link call made by the host, not by a request).
    /// `describe` (the span's name and attributes) runs only when the span is made, so
    /// without a parent this is one branch: no allocation, no clock read.
    pub fn child<N: Into<Cow<'static, str>>>(
        parent: Option<&Context>,
        kind: SpanKind,
        describe: impl FnOnce() -> (N, Vec<KeyValue>),
    ) -> Span {
        let Some(parent) = parent else { return Span(None) };
        let Some(tracer) = tracer() else { return Span(None) };
        let (name, attributes) = describe();
        let builder = tracer.span_builder(name).with_kind(kind).with_attributes(attributes);
        Span(Some(Box::new(tracer.build_with_context(builder, parent))))
    }

    /// The context in which this span is the parent, for the spans it leads to; `None`
    /// when tracing is off.
    pub fn context(&self) -> Option<Context> {
        let span = self.0.as_ref()?;
        Some(Context::new().with_remote_span_context(span.span_context().clone()))
    }

    /// This span's trace id (32 hex digits), for log lines that lead to the trace.
    pub fn trace_id(&self) -> Option<String> {
        self.0.as_ref().map(|s| s.span_context().trace_id().to_string())
    }

    /// Names the span anew, once what it is about is known (a request's route).
    pub fn rename(&mut self, name: impl FnOnce() -> String) {
        if let Some(span) = &mut self.0 {
            span.update_name(name());
        }
    }

    pub fn set(&mut self, attribute: impl FnOnce() -> KeyValue) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(attribute());
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&mut self, why: impl FnOnce() -> String) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(why()));
        }
    }

    /// An event on the span (a denial, a retry), with its attributes.
    pub fn event(&mut self, name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(span) = &mut self.0 {
            span.add_event(name, attributes());
        }
    }

    pub fn is_recording(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.is_recording())
    }
}

/// An HTTP method as a span name and attribute: the standard ones without an allocation.
pub fn method_name(method: &http::Method) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"];
    match STANDARD.into_iter().find(|name| *name == method.as_str()) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(method.to_string()),
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
