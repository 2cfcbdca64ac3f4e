//! Prometheus metrics of the server: requests by route and status, a latency histogram,
//! instantiations and traps by component, denials, tenant throttles.

use membrane_runtime::App;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BOUNDS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    buckets: [AtomicU64; BOUNDS.len()],
    latency_sum_ns: AtomicU64,
    latency_count: AtomicU64,
    traps: Mutex<BTreeMap<(String, &'static str), u64>>,
    throttled: Mutex<BTreeMap<(String, &'static str), u64>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default() += 1;
}

fn snapshot<K: Ord + Clone>(map: &Mutex<BTreeMap<K, u64>>) -> BTreeMap<K, u64> {
    map.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        bump(&self.requests, (route.to_string(), status));
        let seconds = took.as_secs_f64();
        for (bound, bucket) in BOUNDS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.latency_sum_ns.fetch_add(took.as_nanos() as u64, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
    }

    /// Requests answered so far, by route prefix and status.
    pub fn requests(&self) -> BTreeMap<(String, u16), u64> {
        snapshot(&self.requests)
    }

    pub fn trap(&self, component: &str, kind: &'static str) {
        bump(&self.traps, (component.to_string(), kind));
    }

    pub fn throttled(&self, tenant: &str, reason: &'static str) {
        bump(&self.throttled, (tenant.to_string(), reason));
    }

    /// The text exposition format.
    pub fn render(&self, app: &App) -> String {
        let mut out = String::new();
        out.push_str("# HELP membrane_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE membrane_http_requests_total counter\n");
        for ((route, status), n) in snapshot(&self.requests) {
            let _ = writeln!(out, "membrane_http_requests_total{{route={route:?},status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP membrane_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE membrane_http_request_duration_seconds histogram\n");
        for (bound, bucket) in BOUNDS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "membrane_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "membrane_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "membrane_http_request_duration_seconds_sum {}",
            self.latency_sum_ns.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "membrane_http_request_duration_seconds_count {count}");
        out.push_str("# HELP membrane_instantiations_total Component instances created.\n");
        out.push_str("# TYPE membrane_instantiations_total counter\n");
        for (component, stats) in app.stats().components {
            let _ = writeln!(out, "membrane_instantiations_total{{component={component:?}}} {}", stats.instantiations);
        }
        out.push_str("# HELP membrane_keyvalue_calls_total Granted wasi:keyvalue calls, by component.\n");
        out.push_str("# TYPE membrane_keyvalue_calls_total counter\n");
        for (component, stats) in app.stats().components {
            let _ = writeln!(out, "membrane_keyvalue_calls_total{{component={component:?}}} {}", stats.keyvalue_calls);
        }
        out.push_str(
            "# HELP membrane_socket_uses_total Socket addresses a component used or was refused, by use \
             (tcp_bind, tcp_listen, tcp_accept, tcp_connect, udp_bind, udp_send, udp_receive).\n",
        );
        out.push_str("# TYPE membrane_socket_uses_total counter\n");
        for (component, stats) in app.stats().components {
            for (outcome, counts) in [("granted", &stats.sockets.granted), ("denied", &stats.sockets.denied)] {
                for (usage, n) in counts {
                    let _ = writeln!(
                        out,
                        "membrane_socket_uses_total{{component={component:?},use=\"{usage}\",outcome=\"{outcome}\"}} {n}"
                    );
                }
            }
        }
        if membrane_telemetry::tracer().is_some() {
            out.push_str("# HELP membrane_trace_spans_total Spans sent to the OTLP collector, or dropped (queue full or refused).\n");
            out.push_str("# TYPE membrane_trace_spans_total counter\n");
            let _ = writeln!(
                out,
                "membrane_trace_spans_total{{outcome=\"exported\"}} {}",
                membrane_telemetry::exported_spans()
            );
            let _ = writeln!(
                out,
                "membrane_trace_spans_total{{outcome=\"dropped\"}} {}",
                membrane_telemetry::dropped_spans()
            );
            out.push_str("# HELP membrane_trace_queue_spans Spans waiting for export (at most the queue's size).\n");
            out.push_str("# TYPE membrane_trace_queue_spans gauge\n");
            let _ = writeln!(out, "membrane_trace_queue_spans {}", membrane_telemetry::queued_spans());
        }
        out.push_str("# HELP membrane_traps_total Requests whose handler trapped or hit a limit, by kind.\n");
        out.push_str("# TYPE membrane_traps_total counter\n");
        for ((component, kind), n) in snapshot(&self.traps) {
            let _ = writeln!(out, "membrane_traps_total{{component={component:?},kind=\"{kind}\"}} {n}");
        }
        out.push_str("# HELP membrane_denials_total Capability uses refused at a membrane.\n");
        out.push_str("# TYPE membrane_denials_total counter\n");
        for ((event, component), n) in app.audit().counts() {
            if event == "denied" {
                let _ = writeln!(out, "membrane_denials_total{{component={component:?}}} {n}");
            }
        }
        out.push_str("# HELP membrane_tenant_throttled_total Requests refused by a tenant's quota.\n");
        out.push_str("# TYPE membrane_tenant_throttled_total counter\n");
        for ((tenant, reason), n) in snapshot(&self.throttled) {
            let _ = writeln!(out, "membrane_tenant_throttled_total{{tenant={tenant:?},reason=\"{reason}\"}} {n}");
        }
        out
    }
}
