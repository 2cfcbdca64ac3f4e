//! The recent traces the dashboard shows, kept in the process beside the export: every
//! finished trace (its root span ended) among the last [`KEPT_TRACES`], as a tree of spans.
//! Bounded everywhere: traces still open, spans per trace, traces kept.

use opentelemetry::trace::{Status, TraceId};
use opentelemetry_sdk::trace::SpanData;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

/// Finished traces kept for the dashboard.
pub const KEPT_TRACES: usize = 256;
/// Traces whose root has not ended yet; beyond it the oldest is forgotten.
const OPEN_TRACES: usize = 1024;
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

#[derive(Debug, Default)]
struct Open {
    #[expect(clippy::vec_box, reason = "the export queue's boxes, kept as they come")]
    spans: Vec<Box<SpanData>>,
    left_out: usize,
}

#[derive(Debug, Default)]
struct Kept {
    open: HashMap<TraceId, Open>,
    /// Open traces in the order they were first seen, to forget the oldest.
    order: VecDeque<TraceId>,
    /// As their spans ended: a tree is made only of those the dashboard asks for.
    finished: VecDeque<Open>,
}

/// Keeps the recent traces, fed by the export thread. Clones share them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recent {
    kept: Arc<Mutex<Kept>>,
}

impl Recent {
    /// The `n` slowest of the recent traces, slowest first.
    pub(crate) fn slowest(&self, n: usize) -> Vec<TraceView> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let mut traces: Vec<&Open> = kept.finished.iter().collect();
        traces.sort_by_key(|t| std::cmp::Reverse(t.duration()));
        traces.into_iter().take(n).map(view).collect()
    }
}

impl Open {
    /// How long the finished trace took: its root span's duration (the root ends last).
    fn duration(&self) -> Duration {
        self.spans.last().and_then(|root| root.end_time.duration_since(root.start_time).ok()).unwrap_or_default()
    }
}

impl Recent {
    /// Takes sampled spans that ended; the export thread hands them over once it has sent
    /// them, so keeping them costs the request path nothing.
    pub(crate) fn record(&self, spans: impl Iterator<Item = Box<SpanData>>) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        for span in spans {
            kept.record(span);
        }
    }
}

impl Kept {
    /// Keeps `span` with its trace; a root span finishes its trace.
    fn record(&mut self, span: Box<SpanData>) {
        let trace_id = span.span_context.trace_id();
        let is_root = span.parent_span_id == opentelemetry::trace::SpanId::INVALID || span.parent_span_is_remote;
        if !self.open.contains_key(&trace_id) {
            if self.order.len() == OPEN_TRACES
                && let Some(oldest) = self.order.pop_front()
            {
                self.open.remove(&oldest);
            }
            self.order.push_back(trace_id);
        }
        let open = self.open.entry(trace_id).or_default();
        if open.spans.len() < SPANS_PER_TRACE || is_root {
            open.spans.push(span);
        } else {
            open.left_out += 1;
        }
        if is_root {
            let open = self.open.remove(&trace_id).expect("just added");
            self.order.retain(|t| *t != trace_id);
            if self.finished.len() == KEPT_TRACES {
                self.finished.pop_front();
            }
            self.finished.push_back(open);
        }
    }
}

/// A finished trace as a tree: the root (the last span to end) first, each span after
/// its parent, siblings in the order they started.
fn view(open: &Open) -> TraceView {
    let mut spans = open.spans.clone();
    let left_out = open.left_out;
    let root = spans.pop().expect("a finished trace has its root");
    spans.sort_by_key(|s| s.start_time);
    let origin = root.start_time;
    let micros = |d: Result<Duration, _>| d.map_or(0, |d: Duration| d.as_micros() as u64);
    let mut ordered = Vec::with_capacity(spans.len() + 1);
    let mut stack = vec![(root, 0usize)];
    while let Some((span, depth)) = stack.pop() {
        let id = span.span_context.span_id();
        let children: Vec<Box<SpanData>> = spans.extract_if(.., |s| s.parent_span_id == id).collect();
        stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
        ordered.push((span, depth));
    }
    // Spans whose parent was not kept hang under the root.
    ordered.extend(spans.into_iter().map(|s| (s, 1)));
    let (root, _) = &ordered[0];
    TraceView {
        trace_id: root.span_context.trace_id().to_string(),
        root: root.name.to_string(),
        started_ms: micros(root.start_time.duration_since(UNIX_EPOCH)) / 1000,
        duration_us: micros(root.end_time.duration_since(root.start_time)),
        error: ordered.iter().any(|(s, _)| matches!(s.status, Status::Error { .. })),
        spans: ordered
            .iter()
            .map(|(s, depth)| SpanView {
                span_id: s.span_context.span_id().to_string(),
                parent_id: if *depth == 0 { String::new() } else { s.parent_span_id.to_string() },
                depth: *depth,
                name: s.name.to_string(),
                offset_us: micros(s.start_time.duration_since(origin)),
                duration_us: micros(s.end_time.duration_since(s.start_time)),
                error: match &s.status {
                    Status::Error { description } => Some(description.to_string()),
                    _ => None,
                },
                attributes: s.attributes.iter().map(|kv| (kv.key.to_string(), kv.value.to_string())).collect(),
                events: s.events.iter().map(|e| e.name.to_string()).collect(),
            })
            .collect(),
        spans_left_out: left_out,
    }
}
