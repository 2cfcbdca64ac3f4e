//! Limits on what a client may make the server hold, with safe defaults.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct IngressLimits {
    /// Time a client has to send a request's headers (slowloris).
    pub header_timeout: Duration,
    /// Bytes of request headers (431 beyond).
    pub max_header_bytes: usize,
    /// Bytes of the request target, path and query (414 beyond).
    pub max_url_bytes: usize,
    /// Bytes of request body, enforced while streaming (413 beyond).
    pub max_body_bytes: u64,
    /// Time from the request's arrival to the response's headers (504 beyond).
    pub request_timeout: Duration,
    /// Requests in flight at once; more get 503 with `Retry-After` at once.
    pub max_concurrent: usize,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Requests one instance may handle; 1 (the default) means a fresh instance for each.
    pub max_instance_reuse: usize,
    /// Requests one WASI 0.3 instance serves at once (shared.rs); 1 (the default) for one
    /// at a time.
    pub instance_concurrency: usize,
    /// Never-used instances made ahead per component and tenant (spares.rs); 0 for none.
    pub spare_instances: usize,
}

impl Default for IngressLimits {
    fn default() -> Self {
        IngressLimits {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            max_url_bytes: 8 << 10,
            max_body_bytes: 10 << 20,
            request_timeout: Duration::from_secs(30),
            max_concurrent: 512,
            drain_timeout: Duration::from_secs(30),
            max_instance_reuse: 1,
            instance_concurrency: 1,
            spare_instances: 0,
        }
    }
}
