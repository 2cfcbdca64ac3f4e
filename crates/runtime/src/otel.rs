//! wasi:otel tracing (0.2.0-rc.2): a component granted `grants.otel` adds its own spans to
//! the trace it runs in, under the host's span it runs under (the request's server span,
//! or the link call that reached it). The host decides what a guest may say:
//!
//! - it reads only the context of the span it runs under now (`outer-span-context`), never
//!   another request's, and a component without the grant reads an empty context;
//! - a span it ends joins the export only when it belongs to that trace and hangs under
//!   that span or under a span it started (`on-start`) there; any other span, one larger
//!   than [`SPAN_BYTES`], or more than [`SPANS_PER_CALL`] spans under one host span, is
//!   refused and audited, so a guest can neither write into another trace nor make the
//!   host hold more than a bounded number of bounded spans;
//! - sampling is the host's: under an unsampled span the guest's spans are dropped.
//!
//! Metrics and logs (the rest of wasi:otel) are not linked; a component importing them is
//! refused at load like any import no grant supplies.

use crate::audit::Audit;
use crate::outbound::Outbound;
use membrane_telemetry::Context;
use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;

mod generated {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/clocks-0.2.0", "../../wit/deps/otel", "../../wit/otel"],
        world: "membrane:otel/host",
        with: { "wasi:clocks/wall-clock": wasmtime_wasi::p2::bindings::clocks::wall_clock },
    });
}

use generated::wasi::otel::{tracing as wit, types};

/// The most a guest's span may carry, its text and its items together (see [`span_bytes`]):
/// what it ends is held in the export queue until it is sent, so the queue's bound in spans
/// (8,192 by default) bounds what guests make the host hold to some 64 MiB at worst.
pub(crate) const SPAN_BYTES: usize = 8 * 1024;
/// What an attribute, event, link or trace-state entry counts for beyond its text: about
/// what the host holds for it, so that a span of many empty attributes is not free.
const ITEM_BYTES: usize = 64;
/// Spans a guest may start under one host span (one request, or one link call).
pub(crate) const SPANS_PER_CALL: usize = 256;

/// One component's wasi:otel reach: whether it is granted, and the spans it started under
/// the host span it runs under now. Its name, audit trail and trace are its outbound
/// reach's ([`Outbound`]), not copies.
pub(crate) struct OtelReach {
    granted: bool,
    /// The host span these are under, and the spans the guest started there, each with
    /// whether it has ended.
    started: (SpanId, Vec<(SpanId, bool)>),
}

impl OtelReach {
    pub(crate) fn new(granted: bool) -> Self {
        OtelReach { granted, started: (SpanId::INVALID, Vec::new()) }
    }
}

/// The wasi:otel host for the component running in a store now.
pub struct OtelHost<'a> {
    reach: &'a mut OtelReach,
    component: &'a str,
    audit: &'a Audit,
    /// The host span the component runs under, when tracing is on.
    trace: Option<&'a Context>,
}

impl<'a> OtelHost<'a> {
    pub(crate) fn new(reach: &'a mut OtelReach, outbound: &'a Outbound) -> Self {
        let (component, audit) = outbound.component();
        OtelHost { reach, component, audit, trace: outbound.trace.as_ref() }
    }

    /// The host span the guest runs under, if tracing is on and the span is valid.
    fn outer(&self) -> Option<SpanContext> {
        let cx = self.trace?.span().span_context().clone();
        cx.is_valid().then_some(cx)
    }

    fn deny(&self, what: &str, why: &str) {
        self.audit.record_in(self.trace, self.component, "denied", what, why);
    }

    /// Whether the guest may use wasi:otel at all; a refusal is audited.
    fn granted(&self, what: &str) -> bool {
        if !self.reach.granted {
            self.deny(what, "the component has no grants.otel");
        }
        self.reach.granted
    }

    /// The spans the guest started under the host span `outer`, each with whether it has
    /// ended: those of an earlier host span (an earlier call to a long-lived instance) are
    /// forgotten.
    fn started(&mut self, outer: &SpanContext) -> &mut Vec<(SpanId, bool)> {
        if self.reach.started.0 != outer.span_id() {
            self.reach.started = (outer.span_id(), Vec::new());
        }
        &mut self.reach.started.1
    }

    /// Admits the span `context` names into the trace of `outer`, or says why not: it must
    /// be in that trace and have an id of its own; when it ends (`parent` given), it must
    /// hang under the host's span or one the guest started there, and have been started
    /// itself and not ended yet. Gives its id.
    fn admit(
        &mut self,
        outer: &SpanContext,
        context: &wit::SpanContext,
        parent: Option<&str>,
    ) -> Result<SpanId, String> {
        if parse_trace_id(&context.trace_id) != Some(outer.trace_id()) {
            return Err(format!("trace {:?} is not the trace the component runs in", context.trace_id));
        }
        let own = |s: &SpanId| *s != SpanId::INVALID && *s != outer.span_id();
        let Some(span) = parse_span_id(&context.span_id).filter(own) else {
            return Err(format!("span id {:?} is not one the component may use", context.span_id));
        };
        let Some(parent) = parent else { return Ok(span) };
        let started = self.started(outer);
        let known = |p: SpanId| p == outer.span_id() || started.iter().any(|(s, _)| *s == p);
        if !parse_span_id(parent).is_some_and(known) {
            return Err(format!("parent span {parent:?} is neither the host's span nor one the component started"));
        }
        match started.iter_mut().find(|(s, _)| *s == span) {
            None => Err(format!("span {span} was not started (on-start) under the host's span")),
            Some((_, true)) => Err(format!("span {span} has already ended")),
            Some((_, ended)) => {
                *ended = true;
                Ok(span)
            }
        }
    }
}

/// The store data the wasi:otel host borrows.
pub(crate) struct Otel;

impl HasData for Otel {
    type Data<'a> = OtelHost<'a>;
}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    host: fn(&mut T) -> OtelHost<'_>,
) -> wasmtime::Result<()> {
    generated::wasi::otel::types::add_to_linker::<T, Otel>(linker, host)?;
    wit::add_to_linker::<T, Otel>(linker, host)
}

impl types::Host for OtelHost<'_> {}

impl wit::Host for OtelHost<'_> {
    fn on_start(&mut self, context: wit::SpanContext) {
        const WHAT: &str = "wasi:otel/tracing on-start";
        if !self.granted(WHAT) {
            return;
        }
        let Some(outer) = self.outer() else { return };
        let span = match self.admit(&outer, &context, None) {
            Ok(span) => span,
            Err(why) => return self.deny(WHAT, &why),
        };
        let started = self.started(&outer);
        if started.iter().any(|(s, _)| *s == span) {
            return;
        }
        if started.len() >= SPANS_PER_CALL {
            return self.deny(WHAT, &format!("more than {SPANS_PER_CALL} spans under one host span"));
        }
        started.push((span, false));
    }

    fn on_end(&mut self, span: wit::SpanData) {
        const WHAT: &str = "wasi:otel/tracing on-end";
        if !self.granted(WHAT) {
            return;
        }
        let Some(outer) = self.outer() else { return };
        let id = match self.admit(&outer, &span.span_context, Some(&span.parent_span_id)) {
            Ok(id) => id,
            Err(why) => return self.deny(WHAT, &why),
        };
        let size = span_bytes(&span);
        if size > SPAN_BYTES {
            return self.deny(WHAT, &format!("a span of {size} bytes; at most {SPAN_BYTES} are taken"));
        }
        // Under an unsampled host span, nothing of the trace is kept.
        if outer.is_sampled() {
            membrane_telemetry::export(convert(span, id, &outer));
        }
    }

    fn outer_span_context(&mut self) -> wit::SpanContext {
        if !self.granted("wasi:otel/tracing outer-span-context") {
            return empty();
        }
        let Some(outer) = self.outer() else { return empty() };
        wit::SpanContext {
            trace_id: outer.trace_id().to_string(),
            span_id: outer.span_id().to_string(),
            trace_flags: if outer.is_sampled() { wit::TraceFlags::SAMPLED } else { wit::TraceFlags::empty() },
            is_remote: false,
            trace_state: trace_state(outer.trace_state()),
        }
    }
}

/// No context: what a component without the grant, or outside any trace, reads.
fn empty() -> wit::SpanContext {
    wit::SpanContext {
        trace_id: TraceId::INVALID.to_string(),
        span_id: SpanId::INVALID.to_string(),
        trace_flags: wit::TraceFlags::empty(),
        is_remote: false,
        trace_state: Vec::new(),
    }
}

fn trace_state(state: &TraceState) -> Vec<(String, String)> {
    let header = state.header();
    header.split(',').filter_map(|entry| entry.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
}

fn parse_trace_id(hex: &str) -> Option<TraceId> {
    (hex.len() == 32).then(|| TraceId::from_hex(hex).ok()).flatten()
}

fn parse_span_id(hex: &str) -> Option<SpanId> {
    (hex.len() == 16).then(|| SpanId::from_hex(hex).ok()).flatten()
}

/// What a span makes the host hold: its text, and [`ITEM_BYTES`] for each of its items.
fn span_bytes(span: &wit::SpanData) -> usize {
    let pairs =
        |kvs: &[types::KeyValue]| kvs.iter().map(|kv| ITEM_BYTES + kv.key.len() + kv.value.len()).sum::<usize>();
    let scope = &span.instrumentation_scope;
    span.name.len()
        + pairs(&span.attributes)
        + span.events.iter().map(|e| ITEM_BYTES + e.name.len() + pairs(&e.attributes)).sum::<usize>()
        + span.links.iter().map(|l| ITEM_BYTES + pairs(&l.attributes)).sum::<usize>()
        + span.span_context.trace_state.iter().map(|(k, v)| ITEM_BYTES + k.len() + v.len()).sum::<usize>()
        + scope.name.len()
        + scope.version.as_ref().map_or(0, String::len)
        + pairs(&scope.attributes)
        + match &span.status {
            wit::Status::Error(why) => why.len(),
            _ => 0,
        }
}

/// The guest's span as the SDK's span data, in the trace of `outer`, cut to the span limits
/// the host's own spans keep.
fn convert(span: wit::SpanData, id: SpanId, outer: &SpanContext) -> SpanData {
    let limits = membrane_telemetry::span_limits();
    let (attributes, dropped_attributes) = bounded(span.attributes, limits.max_attributes_per_span);
    let mut events = SpanEvents::default();
    for event in span.events {
        if events.len() >= limits.max_events_per_span as usize {
            events.dropped_count += 1;
            continue;
        }
        let (attributes, dropped) = bounded(event.attributes, limits.max_attributes_per_event);
        events.events.push(Event::new(event.name, time(event.time), attributes, dropped));
    }
    events.dropped_count += span.dropped_events;
    // A link names a span: only one of this trace, so a guest cannot point into another.
    let mut links = SpanLinks::default();
    for link in span.links {
        let linked = parse_span_id(&link.span_context.span_id)
            .filter(|_| parse_trace_id(&link.span_context.trace_id) == Some(outer.trace_id()));
        match linked {
            Some(span_id) if links.len() < limits.max_links_per_span as usize => {
                let context = SpanContext::new(outer.trace_id(), span_id, TraceFlags::SAMPLED, false, TraceState::NONE);
                let (attributes, dropped) = bounded(link.attributes, limits.max_attributes_per_link);
                links.links.push(Link::new(context, attributes, dropped));
            }
            _ => links.dropped_count += 1,
        }
    }
    links.dropped_count += span.dropped_links;
    let scope = span.instrumentation_scope;
    let start_time = time(span.start_time);
    SpanData {
        span_context: SpanContext::new(outer.trace_id(), id, TraceFlags::SAMPLED, false, outer.trace_state().clone()),
        parent_span_id: parse_span_id(&span.parent_span_id).unwrap_or(outer.span_id()),
        parent_span_is_remote: false,
        span_kind: match span.span_kind {
            wit::SpanKind::Client => SpanKind::Client,
            wit::SpanKind::Server => SpanKind::Server,
            wit::SpanKind::Producer => SpanKind::Producer,
            wit::SpanKind::Consumer => SpanKind::Consumer,
            wit::SpanKind::Internal => SpanKind::Internal,
        },
        name: span.name.into(),
        start_time,
        end_time: time(span.end_time).max(start_time),
        attributes,
        dropped_attributes_count: dropped_attributes + span.dropped_attributes,
        events,
        links,
        status: match span.status {
            wit::Status::Unset => Status::Unset,
            wit::Status::Ok => Status::Ok,
            wit::Status::Error(why) => Status::error(why),
        },
        instrumentation_scope: InstrumentationScope::builder(scope.name)
            .with_version(scope.version.unwrap_or_default())
            .with_schema_url(scope.schema_url.unwrap_or_default())
            .with_attributes(bounded(scope.attributes, u32::MAX).0)
            .build(),
    }
}

/// `pairs` as attributes, at most `limit` of them, and how many were left out.
fn bounded(pairs: Vec<types::KeyValue>, limit: u32) -> (Vec<KeyValue>, u32) {
    let dropped = pairs.len().saturating_sub(limit as usize) as u32;
    let kept = pairs.into_iter().take(limit as usize).map(|kv| KeyValue::new(kv.key, value(kv.value))).collect();
    (kept, dropped)
}

/// An attribute value as wasi:otel sends it, JSON-encoded: a string, a boolean, a number
/// or an array of one of them is that value; anything else (an object, null, bytes as a
/// data URI, text that is not JSON) is kept as the text the guest wrote.
fn value(json: String) -> Value {
    use serde_json::Value as Json;
    let array = |items: &[Json]| -> Option<Array> {
        Some(match items.first()? {
            Json::String(_) => {
                Array::String(items.iter().map(|i| i.as_str().map(|s| s.to_string().into())).collect::<Option<_>>()?)
            }
            Json::Bool(_) => Array::Bool(items.iter().map(Json::as_bool).collect::<Option<_>>()?),
            Json::Number(n) if n.is_i64() => Array::I64(items.iter().map(Json::as_i64).collect::<Option<_>>()?),
            Json::Number(_) => Array::F64(items.iter().map(Json::as_f64).collect::<Option<_>>()?),
            _ => return None,
        })
    };
    match serde_json::from_str::<Json>(&json) {
        Ok(Json::String(text)) => Value::String(text.into()),
        Ok(Json::Bool(b)) => Value::Bool(b),
        Ok(Json::Number(n)) if n.is_i64() => Value::I64(n.as_i64().unwrap_or_default()),
        Ok(Json::Number(n)) if n.as_f64().is_some() => Value::F64(n.as_f64().unwrap_or_default()),
        Ok(Json::Array(items)) => array(&items).map_or_else(|| Value::String(json.into()), Value::Array),
        _ => Value::String(json.into()),
    }
}

/// A wasi datetime as a time (one the clock cannot hold is taken as now).
fn time(at: Datetime) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(at.seconds))
        .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(at.nanoseconds))))
        .unwrap_or_else(SystemTime::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_keep_their_type_and_anything_else_is_the_text() {
        assert_eq!(value("\"text\"".into()), Value::String("text".into()));
        assert_eq!(value("true".into()), Value::Bool(true));
        assert_eq!(value("-3".into()), Value::I64(-3));
        assert_eq!(value("0.5".into()), Value::F64(0.5));
        assert_eq!(value("[1, 2]".into()), Value::Array(Array::I64(vec![1, 2])));
        assert_eq!(value("[1, \"a\"]".into()), Value::String("[1, \"a\"]".into()), "mixed arrays are text");
        assert_eq!(value("{\"a\": 1}".into()), Value::String("{\"a\": 1}".into()));
        assert_eq!(value("not json".into()), Value::String("not json".into()));
    }

    #[test]
    fn a_time_the_clock_cannot_hold_is_now_not_a_panic() {
        let at = time(Datetime { seconds: 1, nanoseconds: 5 });
        assert_eq!(at, UNIX_EPOCH + Duration::new(1, 5));
        let before = SystemTime::now();
        assert!(time(Datetime { seconds: u64::MAX, nanoseconds: u32::MAX }) >= before);
    }
}
