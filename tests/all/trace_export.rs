//! The exporter's side of traces: a collector that is down, slow or never answers costs
//! requests nothing, and what it cannot take is dropped, counted and bounded; sampling
//! follows the caller and the ratio; settings membrane cannot use are refused by name.

use super::trace::{Collector, TRACE_ID, attribute, hex, only, traceparent_request};
use crate::state::http as request;
use crate::util::{Served, guests};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::time::{Duration, Instant};

#[test]
fn a_collector_that_is_down_costs_requests_nothing_and_its_spans_are_counted() {
    // Nothing listens on the collector's address.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    requests_answered_and_spans_dropped(&format!("http://{gone}"), &[]);
}

#[test]
fn a_collector_that_answers_slowly_costs_requests_nothing_and_its_spans_are_counted() {
    let slow = Collector::answering_after(Duration::from_secs(5));
    // Each export may take 200 ms; the collector takes longer.
    requests_answered_and_spans_dropped(&slow.endpoint(), &[("OTEL_EXPORTER_OTLP_TIMEOUT", "200")]);
    assert!(slow.names().is_empty(), "no export finished: {:?}", slow.names());
}

/// Serves 20 requests exporting to `endpoint`, all answered, and waits until their 40
/// spans are counted as dropped.
fn requests_answered_and_spans_dropped(endpoint: &str, env: &[(&str, &str)]) {
    let server =
        Served::start_with(&["--otlp-endpoint", endpoint, "--metrics-listen", "127.0.0.1:0", guests::HTTP_HELLO], env);
    for i in 0..20 {
        assert_eq!(request(server.addr, "GET", &format!("/n{i}"), "").0, 200);
    }
    let metrics = server.metrics.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = request(metrics, "GET", "/metrics", "").1;
        let dropped = text
            .lines()
            .find_map(|l| l.strip_prefix("membrane_trace_spans_total{outcome=\"dropped\"} "))
            .map(|n| n.parse::<u64>().unwrap());
        if dropped.is_some_and(|n| n >= 40) {
            break;
        }
        assert!(Instant::now() < deadline, "spans not counted as dropped:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sampling_follows_the_callers_decision_and_the_ratio_and_the_service_is_named() {
    let collector = Collector::start();
    let server = Served::start_with(
        &["--otlp-endpoint", &collector.endpoint(), guests::HTTP_HELLO],
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ("OTEL_SERVICE_NAME", "docs-edge"),
        ],
    );
    // A ratio of 0 keeps no trace of its own starting...
    assert_eq!(request(server.addr, "GET", "/unsampled", "").0, 200);
    // ...but a caller that sampled its trace has it followed. Its spans leave after the
    // unsampled request's would have.
    assert!(traceparent_request(server.addr, "/sampled").starts_with("HTTP/1.1 200"));
    let spans = collector.trace(TRACE_ID, "GET /");
    let root = only(&spans, "GET /", None);
    assert_eq!(attribute(root, "url.path"), Some(Value::StringValue("/sampled".into())));
    let unsampled = collector.spans.lock().unwrap().iter().any(|s| hex(&s.trace_id) != TRACE_ID);
    assert!(!unsampled, "only the caller's trace is exported: {:?}", collector.names());
    assert!(collector.services.lock().unwrap().iter().all(|s| s == "docs-edge"));
    assert!(!collector.services.lock().unwrap().is_empty());
}

#[test]
fn an_exporter_setting_membrane_cannot_use_is_refused_before_serving_and_named() {
    let serve = |env: &[(&str, &str)], endpoint: &str| {
        let mut command = crate::util::membrane();
        command.args(["serve", "--listen", "127.0.0.1:0", "--otlp-endpoint", endpoint, guests::HTTP_HELLO]);
        command.envs(env.iter().copied());
        crate::util::output(&mut command)
    };
    serve(&[], "https://collector:4318").assert_code(2).assert_stderr_has("plain HTTP");
    /// The environment, what the refusal names, and why.
    type Refused<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let refused: [Refused; 5] = [
        (&[("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")], "OTEL_EXPORTER_OTLP_TIMEOUT=\"soon\"", "milliseconds"),
        (
            &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-api-key")],
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "is not key=value",
        ),
        (&[("OTEL_BSP_MAX_QUEUE_SIZE", "-1")], "OTEL_BSP_MAX_QUEUE_SIZE=\"-1\"", "a count of spans"),
        (&[("OTEL_TRACES_SAMPLER", "xray")], "OTEL_TRACES_SAMPLER=\"xray\"", "parentbased_traceidratio"),
        (
            &[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "5%")],
            "OTEL_TRACES_SAMPLER_ARG=\"5%\"",
            "from 0 to 1",
        ),
    ];
    for (env, names, why) in refused {
        serve(env, "http://127.0.0.1:4318").assert_code(2).assert_stderr_has(names).assert_stderr_has(why);
    }
}

#[test]
fn a_collector_that_never_answers_holds_no_more_spans_than_the_queue() {
    let stuck = Collector::answering_after(Duration::from_secs(600));
    let server = Served::start_with(
        &["--otlp-endpoint", &stuck.endpoint(), "--metrics-listen", "127.0.0.1:0", guests::HTTP_HELLO],
        &[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16"),
        ],
    );
    // 100 requests make 200 spans. The export thread takes what waits (at most the 64 the
    // queue holds) and waits on the collector; 64 more fill the queue; the rest are
    // dropped as they end, and nothing grows.
    for i in 0..100 {
        assert_eq!(request(server.addr, "GET", &format!("/n{i}"), "").0, 200);
    }
    let text = request(server.metrics.unwrap(), "GET", "/metrics", "").1;
    let metric = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    };
    assert_eq!(metric("membrane_trace_queue_spans "), 64, "{text}");
    let dropped = metric("membrane_trace_spans_total{outcome=\"dropped\"} ");
    assert!((200 - 64 - 64..=200 - 64).contains(&dropped), "dropped {dropped}:\n{text}");
    assert_eq!(metric("membrane_trace_spans_total{outcome=\"exported\"} "), 0);
}
