//! What a pool's instances add to a trace: a span for each instance made (or taken from the
//! pool) for work in a trace, naming the component and how the instance came.

use super::Pool;
use crate::sandbox::SandboxState;
use membrane_telemetry::{Context, KeyValue, Prepared, Span, SpanKind};
use wasmtime::Store;

/// How an instance came to serve, as its span's `membrane.instance` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Came {
    /// Made for this work.
    Fresh,
    /// Made ahead, never used.
    Spare,
    /// Used before (reuse across requests).
    Reused,
    /// Taken from the component's pool.
    Pooled,
    /// A singleton made again after a trap.
    Restart,
    /// Made to serve many requests at once.
    Shared,
}

impl Came {
    /// How many ways there are: one more than the last.
    pub(super) const ALL: usize = Came::Shared as usize + 1;

    fn as_str(self) -> &'static str {
        match self {
            Came::Fresh => "fresh",
            Came::Spare => "spare",
            Came::Reused => "reused",
            Came::Pooled => "pooled",
            Came::Restart => "restart",
            Came::Shared => "shared",
        }
    }
}

impl Pool {
    /// The span of making an HTTP handler's instance in `store`, when tracing is on: under
    /// the request the store serves, or a trace of its own for an instance made before any
    /// request (a shared one).
    pub fn instantiation_span(&self, store: &Store<SandboxState>, how: Came) -> Span {
        Span::start_prepared("instantiate", SpanKind::Internal, store.data().trace(), || self.instance_attributes(how))
    }

    /// The span of an instance made (or taken from the pool) for a call in `trace`; none
    /// for a call in no trace.
    pub(super) fn instance_span(&self, trace: Option<&Context>, how: Came) -> Span {
        Span::child_prepared(trace, SpanKind::Internal, || ("instantiate", self.instance_attributes(how)))
    }

    /// The component and how the instance came, prepared once for each way.
    fn instance_attributes(&self, how: Came) -> &'static Prepared {
        self.instance_attributes[how as usize].of(|| {
            vec![KeyValue::new("membrane.component", self.label()), KeyValue::new("membrane.instance", how.as_str())]
        })
    }

    /// The component's name as spans carry it.
    pub(crate) fn label(&self) -> &'static str {
        self.label.of(&self.name)
    }

    /// The instance mode as spans carry it.
    pub(crate) fn mode_label(&self) -> &'static str {
        self.mode_label.of(self.mode)
    }
}
