//! What a pool's instances add to a trace: a span for each instance made (or taken from the
//! pool) for work in a trace, naming the component and how the instance came.

use super::Pool;
use crate::sandbox::SandboxState;
use membrane_telemetry::{Context, KeyValue, Prepared, Span, SpanKind};
use wasmtime::Store;

/// The ways an instance comes, each with its prepared attributes in a pool.
pub(super) const INSTANCE_WAYS: [&str; 6] = ["fresh", "spare", "reused", "pooled", "restart", "shared"];

impl Pool {
    /// The span of making an HTTP handler's instance in `store`, when tracing is on: under
    /// the request the store serves, or a trace of its own for an instance made before any
    /// request (a shared one).
    pub fn instantiation_span(&self, store: &Store<SandboxState>, how: &'static str) -> Span {
        Span::start_prepared("instantiate", SpanKind::Internal, store.data().trace(), || self.instance_attributes(how))
    }

    /// The span of an instance made (or taken from the pool) for a call in `trace`; none
    /// for a call in no trace.
    pub(super) fn instance_span(&self, trace: Option<&Context>, how: &'static str) -> Span {
        Span::child_prepared(trace, SpanKind::Internal, || ("instantiate", self.instance_attributes(how)))
    }

    /// The component and how the instance came (`fresh`, `spare`, `reused`, `pooled`,
    /// `restart`, `shared`), prepared once for each way.
    fn instance_attributes(&self, how: &'static str) -> &'static Prepared {
        let attributes =
            || vec![KeyValue::new("membrane.component", self.label()), KeyValue::new("membrane.instance", how)];
        match INSTANCE_WAYS.iter().position(|way| *way == how) {
            Some(at) => self.instance_attributes[at].of(attributes),
            None => Prepared::of(&attributes()),
        }
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
