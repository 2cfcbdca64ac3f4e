//! The access log: one line per request, written when its response body is done (sent,
//! failed or abandoned), with the bytes sent; and the request counted in the metrics.

use std::time::Instant;

/// One access log line, written when the response body is done.
pub(crate) struct AccessEntry {
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) route: String,
    pub(crate) component: String,
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
        self.metrics.request(&self.route, self.status, took);
        let bytes = self.bytes as i64;
        self.span.set(|| membrane_telemetry::KeyValue::new("http.response.body.size", bytes));
        tracing::info!(
            target: "membrane::access",
            method = self.method,
            host = self.host,
            path = self.path,
            route = self.route,
            component = self.component,
            status = self.status,
            bytes = self.bytes,
            duration_us = took.as_micros() as u64,
            trace_id = self.span.trace_id().unwrap_or_default(),
        );
    }
}
