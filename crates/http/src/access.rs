//! The access log: one line per request, written when its response body is done (sent,
//! failed or abandoned), with the bytes sent; and the request counted in the metrics.

use std::time::Instant;

/// One access log line, written when the response body is done.
pub(crate) struct AccessEntry {
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) path: String,
    /// The route's prefix and component; `None` (`-` in the log) when no route matched.
    pub(crate) route: Option<std::sync::Arc<str>>,
    pub(crate) component: Option<std::sync::Arc<str>>,
    pub(crate) status: u16,
    pub(crate) started: Instant,
    pub(crate) bytes: u64,
    pub(crate) metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The request's server span, ended with the body.
    pub(crate) span: membrane_telemetry::Span,
}

impl Drop for AccessEntry {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let route = self.route.as_deref().unwrap_or("-");
        self.metrics.request(route, self.status, took);
        let bytes = self.bytes as i64;
        self.span.set(|| membrane_telemetry::KeyValue::new("http.response.body.size", bytes));
        tracing::info!(
            target: "membrane::access",
            method = self.method,
            host = self.host,
            path = self.path,
            route,
            component = self.component.as_deref().unwrap_or("-"),
            status = self.status,
            bytes = self.bytes,
            duration_us = took.as_micros() as u64,
            trace_id = self.span.trace_id().unwrap_or_default(),
        );
    }
}
