//! A link call's span: a child of the caller's span naming the link, the interface, the
//! function and the provider's instance mode, ended with how the call went (`ok`,
//! `retried`, `fallback`, `trap`, `timeout`, `circuit_open`, `refused`). The fallback's
//! call is a span of its own under it. The provider's instance joins the trace under the
//! span, so its own spans nest as the calls nest.
//!
//! A caller in no trace (always so when tracing is off) gets no span, and every method
//! here is then one branch: no allocation, no clock read on the link call path.

use crate::fault::{Fault, FaultKind};
use crate::pool::{CallError, Pool};
use membrane_telemetry::{Context, KeyValue, Prepared, Span, SpanKind};
use std::sync::OnceLock;

/// What `membrane.link.outcome` says of a failed call, and the kind of its fault.
fn failure(error: &CallError) -> (&'static str, &'static str) {
    match error {
        CallError::Fault(Fault { kind: FaultKind::Timeout(_), .. }) => ("timeout", "timeout"),
        CallError::Fault(fault) => ("trap", fault.kind.name()),
        CallError::Reentrant { .. } => ("refused", "reentrant"),
        CallError::TooDeep { .. } => ("refused", "too_deep"),
        CallError::Failed { .. } => ("refused", "failed"),
        CallError::StaleResource { .. } => ("refused", "stale_resource"),
        CallError::NoSuchExport { .. } => ("refused", "no_such_export"),
        CallError::NoSlot { .. } => ("refused", "no_slot"),
    }
}

/// What a link's spans say of it, made at its first traced call and kept for the
/// process's life ([`membrane_telemetry::static_name`], [`Prepared`]), so that a call's
/// span takes its name and attributes without making or counting them.
pub(super) struct Labels {
    /// `consumer -> provider`.
    link: &'static str,
    import: &'static str,
    /// Each linked function's.
    functions: Vec<Function>,
    /// A hop's to the next HTTP handler (`handle`).
    handle: Function,
}

/// What the spans of calls to one function of a link say.
struct Function {
    /// `consumer -> provider function`.
    span_name: &'static str,
    name: &'static str,
    /// The attributes of its calls, with the provider's instance mode they were made for.
    attributes: OnceLock<(&'static str, &'static Prepared)>,
}

impl Function {
    fn attributes(&self, labels: &Labels, mode: &'static str) -> &'static Prepared {
        let prepare = || {
            Prepared::of(&[
                KeyValue::new("membrane.link", labels.link),
                KeyValue::new("membrane.link.import", labels.import),
                KeyValue::new("membrane.link.function", self.name),
                KeyValue::new("membrane.link.instances", mode),
                // The RPC conventions' names, for tools that group by them.
                KeyValue::new("rpc.system", "membrane"),
                KeyValue::new("rpc.service", labels.import),
                KeyValue::new("rpc.method", self.name),
            ])
        };
        match self.attributes.get() {
            Some((made_for, attributes)) if *made_for == mode => attributes,
            // A provider of another mode under the same link (a swap keeps the mode and a
            // reload makes new links, so only a safety net): prepared again each call.
            Some(_) => prepare(),
            None => self.attributes.get_or_init(|| (mode, prepare())).1,
        }
    }
}

impl Labels {
    pub(super) fn new<'a>(
        consumer: &str,
        provider: &str,
        import: &str,
        functions: impl Iterator<Item = &'a str>,
    ) -> Labels {
        use membrane_telemetry::static_name;
        let link = format!("{consumer} -> {provider}");
        let function = |f: &str| Function {
            span_name: static_name(&format!("{link} {f}")),
            name: static_name(f),
            attributes: OnceLock::new(),
        };
        let functions = functions.map(function).collect();
        let handle = function("handle");
        Labels { link: static_name(&link), import: static_name(import), functions, handle }
    }
}

/// The span of one call across a link, all attempts and the fallback included.
pub(super) struct LinkSpan {
    span: Span,
    /// The context the provider's instance runs in: this span's.
    context: Option<Context>,
    retries: u32,
    /// The kind of the provider's last fault, if it had one.
    fault: Option<&'static str>,
}

impl LinkSpan {
    /// Starts the span of a call through the link `labels` describes to `provider`, of
    /// its function `func` (the HTTP handler's `handle` without one), under `parent`;
    /// nothing without a parent.
    pub(super) fn start<'l>(
        parent: Option<&Context>,
        labels: impl FnOnce() -> &'l Labels,
        func: Option<usize>,
        provider: &Pool,
    ) -> LinkSpan {
        let span = Span::child_prepared(parent, SpanKind::Internal, || {
            let labels = labels();
            let function = func.and_then(|f| labels.functions.get(f)).unwrap_or(&labels.handle);
            (function.span_name, function.attributes(labels, provider.mode_label()))
        });
        let context = span.context();
        LinkSpan { span, context, retries: 0, fault: None }
    }

    /// The context the provider's instance runs in.
    pub(super) fn context(&self) -> Option<&Context> {
        self.context.as_ref()
    }

    /// The circuit refused the call before it reached the provider.
    pub(super) fn circuit_open(mut self, cause: &super::LinkCause) {
        self.span.set(|| KeyValue::new("membrane.link.outcome", "circuit_open"));
        self.span.fail(|| cause.to_string());
    }

    /// An attempt failed with `error`; `retry` says the next attempt is this retry.
    pub(super) fn failed(&mut self, error: &CallError, retry: Option<u32>) {
        if self.context.is_none() {
            return;
        }
        let (_, kind) = failure(error);
        self.fault = Some(kind);
        self.span.event("attempt failed", || {
            vec![KeyValue::new("membrane.trap.kind", kind), KeyValue::new("exception.message", error.summary())]
        });
        if let Some(retry) = retry {
            self.retries = retry;
            self.span.event("retry", || vec![KeyValue::new("membrane.link.retry", i64::from(retry))]);
        }
    }

    /// The span of the call to the fallback `instances`, under this one.
    pub(super) fn fallback(&mut self, instances: &Pool, function: &str) -> Span {
        self.span.set(|| KeyValue::new("membrane.link.fallback", instances.label()));
        Span::child(self.context.as_ref(), SpanKind::Internal, || {
            let attributes = vec![
                KeyValue::new("membrane.component", instances.label()),
                KeyValue::new("membrane.link.function", function.to_string()),
                KeyValue::new("membrane.link.instances", instances.mode_label()),
            ];
            (format!("fallback {} {function}", instances.name()), attributes)
        })
    }

    /// Ends the span with the call's outcome; `fell_back` says the fallback answered or
    /// failed in the provider's place.
    pub(super) fn end<T>(mut self, outcome: &Result<T, CallError>, fell_back: bool) {
        if self.context.is_none() {
            return;
        }
        let name = match outcome {
            Ok(_) if fell_back => "fallback",
            Ok(_) if self.retries > 0 => "retried",
            Ok(_) => "ok",
            Err(error) => {
                let (name, kind) = failure(error);
                self.fault = Some(kind);
                self.span.fail(|| error.summary());
                name
            }
        };
        self.span.set(|| KeyValue::new("membrane.link.outcome", name));
        if self.retries > 0 {
            self.span.set(|| KeyValue::new("membrane.link.retries", i64::from(self.retries)));
        }
        if let Some(kind) = self.fault {
            self.span.set(|| KeyValue::new("membrane.trap.kind", kind));
        }
    }
}

/// Ends a fallback's span with how its call went.
pub(super) fn end_fallback<T>(mut span: Span, outcome: &Result<T, CallError>) {
    let name = match outcome {
        Ok(_) => "ok",
        Err(error) => {
            let (name, kind) = failure(error);
            span.set(|| KeyValue::new("membrane.trap.kind", kind));
            span.fail(|| error.summary());
            name
        }
    };
    span.set(|| KeyValue::new("membrane.link.outcome", name));
}
