//! Spans from inside a component (wasi:otel tracing 0.2.0-rc.2): a component granted
//! `grants.otel` reads the context of the span it runs under and adds its spans there; it
//! cannot read another request's context, nor end a span into another trace, under a span
//! it never started, or that it never started; each refusal is audited. Without the grant
//! it reads no context and adds nothing.

use crate::trace::{Collector, TRACE_ID, attribute, hex, request_in_trace, traceparent_request};
use crate::util::{Served, TestApp};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
use std::time::Duration;

/// An app serving the otel-web guest at `/`, granted wasi:otel or not.
fn app(granted: bool) -> TestApp {
    TestApp::new(&format!(
        r#"[app]
name = "guest-spans"

[component.web]
source = "{{otel-web}}"
grants.otel = {granted}

[[route]]
path = "/"
component = "web"
"#
    ))
}

/// The context the guest said the host gave it: (trace id, span id, sampled).
fn outer(response: &str) -> (String, String, bool) {
    let line = response.lines().find(|l| l.starts_with("outer ")).unwrap_or_else(|| panic!("{response}"));
    let fields: Vec<&str> = line.split(' ').collect();
    (fields[1].to_string(), fields[2].to_string(), fields[3] == "sampled")
}

/// `app` served, exporting to `collector`, its audit trail in `audit.jsonl` beside it.
fn serve(app: &TestApp, collector: &Collector) -> Served {
    let audit = app.path("audit.jsonl");
    Served::start(&[
        "--otlp-endpoint",
        &collector.endpoint(),
        "--audit-log",
        audit.to_str().unwrap(),
        app.manifest().to_str().unwrap(),
    ])
}

/// The audited refusals of wasi:otel calls.
fn refusals(app: &TestApp) -> Vec<serde_json::Value> {
    app.audit()
        .into_iter()
        .filter(|e| e["event"] == "denied" && e["what"].as_str().unwrap().starts_with("wasi:otel"))
        .collect()
}

#[test]
fn a_granted_guest_adds_its_spans_under_the_request_and_nowhere_else() {
    let collector = Collector::start();
    let app = app(true);
    let server = serve(&app, &collector);
    let response = traceparent_request(server.addr, "/spans");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (trace, span, sampled) = outer(&response);
    assert_eq!(trace, TRACE_ID, "the guest runs in the request's trace");
    assert!(sampled);

    let spans = collector.trace(TRACE_ID, "GET /");
    let request = spans.iter().find(|s| s.name == "GET /").unwrap();
    assert_eq!(span, hex(&request.span_id), "the guest runs under the request's server span");
    let work = spans.iter().find(|s| s.name == "guest work").expect("the guest's span");
    assert_eq!(work.parent_span_id, request.span_id, "under the request");
    assert_eq!(attribute(work, "guest.items"), Some(Value::IntValue(3)), "JSON values keep their type");
    let tags =
        ArrayValue { values: ["a", "b"].map(|t| AnyValue { value: Some(Value::StringValue(t.into())) }).to_vec() };
    assert_eq!(attribute(work, "guest.tags"), Some(Value::ArrayValue(tags)));
    let step = spans.iter().find(|s| s.name == "guest step").expect("the guest's child span");
    assert_eq!(step.parent_span_id, work.span_id, "nested as the guest nested it");
    assert_eq!(step.trace_id, request.trace_id);

    // Nothing of what it must not do reached the collector, in this trace or any other.
    std::thread::sleep(Duration::from_millis(700));
    let names = collector.names();
    assert!(!names.iter().any(|n| n.starts_with("forged")), "{names:?}");
    // Each refusal is audited, in the request's trace: the span in another trace (started
    // and ended), the one under a parent it never started, the one it never started, the
    // second end of a span, the spans over the size the host takes (in text, and in empty
    // attributes, each of which the host would hold all the same).
    let refused = refusals(&app);
    assert_eq!(refused.len(), 7, "{refused:#?}");
    assert!(refused.iter().all(|e| e["trace_id"] == TRACE_ID && e["component"] == "web"), "{refused:#?}");
    let why =
        |what: &str| refused.iter().filter(|e| e["what"] == what).map(|e| e["outcome"].to_string()).collect::<Vec<_>>();
    assert!(why("wasi:otel/tracing on-start")[0].contains("is not the trace the component runs in"));
    let ended = why("wasi:otel/tracing on-end");
    assert!(ended.iter().any(|o| o.contains("is not the trace the component runs in")), "{ended:?}");
    assert!(ended.iter().any(|o| o.contains("neither the host's span nor one the component started")), "{ended:?}");
    assert!(ended.iter().any(|o| o.contains("was not started")), "{ended:?}");
    assert!(ended.iter().any(|o| o.contains("has already ended")), "{ended:?}");
    assert_eq!(ended.iter().filter(|o| o.contains("bytes; at most 8192 are taken")).count(), 2, "{ended:?}");
}

#[test]
fn a_guest_reads_only_the_context_of_the_request_it_serves() {
    let collector = Collector::start();
    let app = app(true);
    let server = Served::start(&["--otlp-endpoint", &collector.endpoint(), app.manifest().to_str().unwrap()]);
    let other = "0af7651916cd43dd8448eb211c80319c";
    let first = outer(&traceparent_request(server.addr, "/"));
    let second = outer(&request_in_trace(server.addr, "/", other));
    assert_eq!(first.0, TRACE_ID);
    assert_eq!(second.0, other);
    assert_ne!(first.1, second.1, "each under its own request's span");
    // A request that carries no trace gets one of its own, not the last one's.
    let own = outer(&crate::util::request(server.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").1);
    assert!(own.0 != TRACE_ID && own.0 != other && own.0 != "0".repeat(32), "{own:?}");
}

#[test]
fn without_the_grant_a_guest_reads_no_context_and_adds_no_span() {
    let collector = Collector::start();
    let app = app(false);
    let server = serve(&app, &collector);
    let response = traceparent_request(server.addr, "/spans");
    assert_eq!(outer(&response), ("0".repeat(32), "0".repeat(16), false), "{response}");
    collector.trace(TRACE_ID, "GET /");
    std::thread::sleep(Duration::from_millis(700));
    let names = collector.names();
    assert!(!names.iter().any(|n| n.starts_with("guest") || n.starts_with("forged")), "{names:?}");
    let refused = refusals(&app);
    assert!(refused.iter().all(|e| e["outcome"] == "the component has no grants.otel"), "{refused:#?}");
    // outer-span-context, then six spans started and eight ended.
    assert_eq!(refused.len(), 15, "{refused:#?}");

    // Granted but with tracing off, there is no context to read either.
    let app = self::app(true);
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    let response = traceparent_request(server.addr, "/spans");
    assert_eq!(outer(&response), ("0".repeat(32), "0".repeat(16), false), "{response}");
}

/// A provider reached through a link runs under the link call's span, and its own spans
/// nest there, beside the instance made for the call.
#[test]
fn a_providers_spans_nest_under_the_link_call_that_reached_it() {
    let collector = Collector::start();
    let app = TestApp::new(
        r#"[app]
name = "guest-spans-linked"

[component.web]
source = "{docs-web}"

[component.render]
source = "{otel-renderer}"
grants.otel = true

[[link]]
from = "web"
import = "example:markdown/render@0.1.0"
to = "render"

[[route]]
path = "/"
component = "web"
"#,
    );
    let server = serve(&app, &collector);
    let response = traceparent_request(server.addr, "/?doc=%23+Hi");
    assert!(response.contains("<p>Hi</p>"), "{response}");
    let spans = collector.trace(TRACE_ID, "GET /");
    let link = spans.iter().find(|s| s.name == "web -> render render").expect("the link span");
    let own = spans.iter().find(|s| s.name == "render markdown").expect("the provider's own span");
    assert_eq!(own.parent_span_id, link.span_id, "under the call that reached it");
    assert_eq!(attribute(own, "doc.bytes"), Some(Value::IntValue(4)));
    let instance = spans.iter().find(|s| s.name == "instantiate" && s.parent_span_id == link.span_id);
    assert!(instance.is_some(), "the provider's instance is the link call's too: {spans:#?}");
    assert!(refusals(&app).is_empty(), "{:#?}", refusals(&app));
}
