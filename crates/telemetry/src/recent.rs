//! The recent traces the dashboard shows, kept in the process beside the export: the
//! chunks of spans last sent ([`KEPT_BYTES`] of them), moved here once sent. Nothing is
//! done per span: when the dashboard asks, the roots among them are sorted by duration and
//! the slowest traces gathered from the chunks and read back as trees of spans. Indexing
//! each span into its trace as it was sent cost the export thread about 3,300 instructions
//! a docs-web request (BENCHMARKS.md, "Tracing").

use crate::otlp::Chunk;
use opentelemetry::trace::TraceId;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// Bytes of the spans last sent that are kept for the dashboard (with what is known of
/// each, about 48 bytes a span more): about 25,000 spans of a docs-web request.
pub const KEPT_BYTES: usize = 8 << 20;
/// Spans kept of one trace; the rest are counted.
const SPANS_PER_TRACE: usize = 256;

/// One finished trace.
#[derive(Debug, Clone, Serialize)]
pub struct TraceView {
    pub trace_id: String,
    /// The root span's name, e.g. `GET /api`.
    pub root: String,
    pub started_ms: u64,
    pub duration_us: u64,
    pub error: bool,
    /// Root first, then each span after its parent.
    pub spans: Vec<SpanView>,
    /// Spans of this trace not kept (over [`SPANS_PER_TRACE`]).
    pub spans_left_out: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpanView {
    pub span_id: String,
    /// Empty for the root.
    pub parent_id: String,
    /// How deep in the tree: 0 for the root.
    pub depth: usize,
    pub name: String,
    /// Microseconds after the root started.
    pub offset_us: u64,
    pub duration_us: u64,
    /// The span's status message when it failed.
    pub error: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub events: Vec<String>,
}

/// A trace gathered from the kept chunks: its root's bytes and its other spans' bytes,
/// each a `spans` field of a `ScopeSpans`.
#[derive(Debug, Default)]
struct Gathered {
    /// Where the root is: its chunk and its place in it.
    root_at: (usize, usize),
    root: Vec<u8>,
    bytes: Vec<u8>,
    spans: usize,
    left_out: usize,
}

/// The chunks last sent, the oldest first.
#[derive(Debug, Default)]
struct Kept {
    chunks: VecDeque<Chunk>,
    bytes: usize,
}

/// Keeps the recent traces, fed by the export thread. Clones share them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recent {
    kept: Arc<Mutex<Kept>>,
}

impl Recent {
    /// The `n` slowest of the recent traces (those whose root span is among the kept
    /// chunks), slowest first. A trace's spans are gathered from every kept chunk: each
    /// thread writes the spans it ends, so a request's root may be sent before or after the
    /// spans its instances ended on another thread.
    pub(crate) fn slowest(&self, n: usize) -> Vec<TraceView> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let mut roots: Vec<(Duration, TraceId, usize, usize)> = Vec::new();
        for (c, chunk) in kept.chunks.iter().enumerate() {
            for (at, entry) in chunk.spans.iter().enumerate() {
                if entry.root {
                    roots.push((entry.duration, entry.trace_id, c, at));
                }
            }
        }
        roots.sort_by_key(|(duration, ..)| std::cmp::Reverse(*duration));
        // The slowest root of each trace (a caller may send one trace's request twice).
        let mut traces: HashMap<TraceId, Gathered> = HashMap::new();
        let mut order = Vec::new();
        for (_, trace_id, c, at) in roots {
            if traces.len() == n {
                break;
            }
            if let std::collections::hash_map::Entry::Vacant(vacant) = traces.entry(trace_id) {
                let chunk = &kept.chunks[c];
                let root = chunk.bytes[chunk.spans[at].at.clone()].to_vec();
                vacant.insert(Gathered { root_at: (c, at), root, ..Default::default() });
                order.push(trace_id);
            }
        }
        for (c, chunk) in kept.chunks.iter().enumerate() {
            for (at, entry) in chunk.spans.iter().enumerate() {
                let Some(trace) = traces.get_mut(&entry.trace_id) else { continue };
                if trace.root_at == (c, at) {
                    continue;
                }
                if trace.spans < SPANS_PER_TRACE {
                    trace.bytes.extend_from_slice(&chunk.bytes[entry.at.clone()]);
                    trace.spans += 1;
                } else {
                    trace.left_out += 1;
                }
            }
        }
        order.iter().filter_map(|t| view(&traces[t])).collect()
    }

    /// Keeps chunks sent, forgetting the oldest beyond [`KEPT_BYTES`]; the export thread
    /// hands them over once it has sent them, so keeping them costs the request path
    /// nothing and the export thread a move.
    pub(crate) fn keep(&self, chunks: impl IntoIterator<Item = Chunk>) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in chunks {
            kept.bytes += weight(&chunk);
            kept.chunks.push_back(chunk);
        }
        while kept.bytes > KEPT_BYTES
            && kept.chunks.len() > 1
            && let Some(oldest) = kept.chunks.pop_front()
        {
            kept.bytes -= weight(&oldest);
        }
    }
}

/// What a kept chunk weighs: its bytes, and what is known of each of its spans.
fn weight(chunk: &Chunk) -> usize {
    chunk.bytes.len() + chunk.spans.len() * std::mem::size_of::<crate::otlp::Entry>()
}

/// What the dashboard reads of a span sent: the fields of `trace.v1.Span` it shows, read
/// back with prost (the rest are skipped).
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Spans {
        #[prost(message, repeated, tag = "2")]
        pub(super) spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub(super) trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(super) span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub(super) parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub(super) name: String,
        #[prost(fixed64, tag = "7")]
        pub(super) start: u64,
        #[prost(fixed64, tag = "8")]
        pub(super) end: u64,
        #[prost(message, repeated, tag = "9")]
        pub(super) attributes: Vec<KeyValue>,
        #[prost(message, repeated, tag = "11")]
        pub(super) events: Vec<Event>,
        #[prost(message, optional, tag = "15")]
        pub(super) status: Option<Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct KeyValue {
        #[prost(string, tag = "1")]
        pub(super) key: String,
        #[prost(message, optional, tag = "2")]
        pub(super) value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct AnyValue {
        #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5")]
        pub(super) value: Option<Value>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Value {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
        #[prost(message, tag = "5")]
        Array(ArrayValue),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub(super) values: Vec<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Event {
        #[prost(string, tag = "2")]
        pub(super) name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Status {
        #[prost(string, tag = "2")]
        pub(super) message: String,
        #[prost(int32, tag = "3")]
        pub(super) code: i32,
    }

    impl std::fmt::Display for AnyValue {
        /// As opentelemetry shows a value: strings bare, arrays in brackets (their strings
        /// quoted).
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match &self.value {
                None => Ok(()),
                Some(Value::String(s)) => f.write_str(s),
                Some(Value::Bool(b)) => write!(f, "{b}"),
                Some(Value::Int(i)) => write!(f, "{i}"),
                Some(Value::Double(d)) => write!(f, "{d}"),
                Some(Value::Array(array)) => {
                    f.write_str("[")?;
                    for (i, value) in array.values.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        match &value.value {
                            Some(Value::String(s)) => write!(f, "\"{s}\"")?,
                            _ => write!(f, "{value}")?,
                        }
                    }
                    f.write_str("]")
                }
            }
        }
    }
}

/// A span id as 16 hex digits.
fn hex_id(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A finished trace as a tree: the root first, each span after
/// its parent, siblings in the order they started. `None` if its bytes do not read back,
/// which only a bug in the encoder would make.
fn view(open: &Gathered) -> Option<TraceView> {
    use prost::Message as _;
    let mut spans = wire::Spans::decode(open.bytes.as_slice()).ok()?.spans;
    let root = wire::Spans::decode(open.root.as_slice()).ok()?.spans.pop()?;
    spans.sort_by_key(|s| s.start);
    let origin = root.start;
    let micros = |nanos: u64| nanos / 1000;
    let mut ordered = Vec::with_capacity(spans.len() + 1);
    let mut stack = vec![(root, 0usize)];
    while let Some((span, depth)) = stack.pop() {
        let children: Vec<wire::Span> = spans.extract_if(.., |s| s.parent_span_id == span.span_id).collect();
        stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
        ordered.push((span, depth));
    }
    // Spans whose parent was not kept hang under the root.
    ordered.extend(spans.into_iter().map(|s| (s, 1)));
    let (root, _) = &ordered[0];
    Some(TraceView {
        trace_id: hex_id(&root.trace_id),
        root: root.name.clone(),
        started_ms: micros(root.start) / 1000,
        duration_us: micros(root.end.saturating_sub(root.start)),
        error: ordered.iter().any(|(s, _)| s.status.as_ref().is_some_and(|s| s.code == 2)),
        spans: ordered
            .iter()
            .map(|(s, depth)| SpanView {
                span_id: hex_id(&s.span_id),
                parent_id: if *depth == 0 { String::new() } else { hex_id(&s.parent_span_id) },
                depth: *depth,
                name: s.name.clone(),
                offset_us: micros(s.start.saturating_sub(origin)),
                duration_us: micros(s.end.saturating_sub(s.start)),
                error: s.status.as_ref().filter(|s| s.code == 2).map(|s| s.message.clone()),
                attributes: s
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.as_ref().map(|v| v.to_string()).unwrap_or_default()))
                    .collect(),
                events: s.events.iter().map(|e| e.name.clone()).collect(),
            })
            .collect(),
        spans_left_out: open.left_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceState};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use std::time::UNIX_EPOCH;

    fn span(trace: u128, id: u64, parent: u64, name: &'static str, micros: (u64, u64)) -> SpanData {
        let at = |us: u64| UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_000 + us);
        SpanData {
            span_context: SpanContext::new(trace.into(), id.into(), TraceFlags::SAMPLED, false, TraceState::NONE),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: at(micros.0),
            end_time: at(micros.1),
            attributes: vec![KeyValue::new("membrane.link.outcome", "fallback"), KeyValue::new("n", 7)],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("membrane").build(),
        }
    }

    #[test]
    fn a_trace_is_kept_from_its_spans_bytes_and_read_back_as_a_tree_when_asked() {
        let recent = Recent::default();
        // Two traces; their spans end children first, interleaved, in two chunks.
        let mut failed = span(2, 23, 21, "web -> fancy render", (10, 40));
        failed.status = Status::error("fancy trapped");
        let first = crate::otlp::chunks([
            span(1, 12, 11, "instantiate", (5, 20)),
            failed,
            span(1, 13, 11, "web -> fancy render", (30, 50)),
        ]);
        let second = crate::otlp::chunks([
            span(1, 11, 0, "GET /", (0, 100)),
            span(2, 22, 23, "fallback plain render", (20, 30)),
            span(2, 21, 0, "GET /", (0, 300)),
        ]);
        recent.keep(first);
        recent.keep(second);
        let traces = recent.slowest(5);
        assert_eq!(traces.len(), 2);
        let slow = &traces[0];
        assert_eq!((slow.duration_us, slow.root.as_str(), slow.error), (300, "GET /", true));
        assert_eq!(slow.trace_id, format!("{:032x}", 2));
        let tree: Vec<(usize, &str, &str)> =
            slow.spans.iter().map(|s| (s.depth, s.name.as_str(), s.parent_id.as_str())).collect();
        assert_eq!(
            tree,
            [
                (0, "GET /", ""),
                (1, "web -> fancy render", "0000000000000015"),
                (2, "fallback plain render", "0000000000000017"),
            ]
        );
        assert_eq!(slow.spans[1].error.as_deref(), Some("fancy trapped"));
        assert_eq!((slow.spans[1].offset_us, slow.spans[1].duration_us), (10, 30));
        assert_eq!(
            slow.spans[2].attributes,
            [("membrane.link.outcome".into(), "fallback".into()), ("n".into(), "7".into())]
        );
        let fast = &traces[1];
        assert_eq!((fast.duration_us, fast.spans.len(), fast.error), (100, 3, false));
        assert_eq!(
            fast.spans.iter().map(|s| s.depth).collect::<Vec<_>>(),
            [0, 1, 1],
            "siblings in the order they started"
        );
    }

    #[test]
    fn spans_that_reach_the_export_after_their_root_join_its_finished_trace() {
        let recent = Recent::default();
        // The root ended on the thread that answered; its instance's spans on another,
        // whose chunk came later.
        recent.keep(crate::otlp::chunks([span(1, 11, 0, "GET /", (0, 100))]));
        recent.keep(crate::otlp::chunks([
            span(1, 12, 11, "instantiate", (5, 20)),
            span(1, 13, 11, "web -> fancy render", (30, 50)),
        ]));
        let traces = recent.slowest(5);
        assert_eq!(traces.len(), 1, "one trace, not a finished one and an open one");
        let names: Vec<(usize, &str)> = traces[0].spans.iter().map(|s| (s.depth, s.name.as_str())).collect();
        assert_eq!(names, [(0, "GET /"), (1, "instantiate"), (1, "web -> fancy render")]);
    }

    #[test]
    fn only_the_chunks_last_sent_are_kept_up_to_their_weight() {
        let recent = Recent::default();
        let (mut traces, mut sent) = (0u128, 0);
        // Slow traces first, then enough fast ones to push them out.
        while sent < 2 * KEPT_BYTES {
            traces += 1;
            let took = if traces <= 10 { 1_000_000 } else { traces as u64 % 1000 };
            let chunks = crate::otlp::chunks([
                span(traces, 2, 1, "instantiate", (0, 1)),
                span(traces, 1, 0, "GET /", (0, took)),
            ]);
            sent += chunks.iter().map(weight).sum::<usize>();
            recent.keep(chunks);
        }
        let kept = recent.kept.lock().unwrap();
        assert!(kept.bytes <= KEPT_BYTES);
        assert_eq!(kept.bytes, kept.chunks.iter().map(weight).sum::<usize>());
        drop(kept);
        let slowest = recent.slowest(3);
        assert_eq!(slowest.len(), 3);
        assert!(slowest.iter().all(|t| t.duration_us < 1000), "the first, slow traces were forgotten");
        assert!(slowest.iter().all(|t| t.spans.len() == 2), "each with its child");
    }
}
