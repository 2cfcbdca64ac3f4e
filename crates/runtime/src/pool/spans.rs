//! What a pool's instances add to a trace: a span for each instance made (or taken from the
//! pool) for work in a trace, naming the component and how the instance came.

use super::Pool;
use crate::sandbox::SandboxState;
use membrane_telemetry::{Context, KeyValue, Span, SpanKind};
use wasmtime::Store;

impl Pool {
    /// The span of making an HTTP handler's instance in `store`, when tracing is on: under
    /// the request the store serves, or a trace of its own for an instance made before any
    /// request (a shared one).
    pub fn instantiation_span(&self, store: &Store<SandboxState>, how: &'static str) -> Span {
        Span::start("instantiate", SpanKind::Internal, store.data().trace(), || self.instance_attributes(how))
    }

    /// The span of an instance made (or taken from the pool) for a call in `trace`; none
    /// for a call in no trace.
    pub(super) fn instance_span(&self, trace: Option<&Context>, how: &'static str) -> Span {
        Span::child(trace, SpanKind::Internal, || ("instantiate", self.instance_attributes(how)))
    }

    fn instance_attributes(&self, how: &'static str) -> Vec<KeyValue> {
        vec![KeyValue::new("membrane.component", self.label()), KeyValue::new("membrane.instance", how)]
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
