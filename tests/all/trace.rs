//! OpenTelemetry traces: a real OTLP/HTTP receiver (hyper, decoding the protobuf with the
//! `opentelemetry-proto` types) gets one trace per request, joined to the caller's
//! `traceparent`, with the instantiation under the server span, link calls (their traps
//! and fallbacks) nested as the calls nest, and outbound requests as client spans whose
//! context reaches the next service. The exporter's side (a collector down, slow or
//! stuck, sampling, settings) is in `trace_export`.

use crate::state::http as request;
use crate::util::{Outcome, Served, guests};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP trace receiver on loopback, keeping every span it is sent, the services
/// that sent them and the headers of the last export.
pub(crate) struct Collector {
    addr: SocketAddr,
    pub(crate) spans: Arc<Mutex<Vec<Span>>>,
    pub(crate) services: Arc<Mutex<Vec<String>>>,
    headers: Arc<Mutex<hyper::HeaderMap>>,
}

impl Collector {
    pub(crate) fn start() -> Collector {
        Collector::answering_after(Duration::ZERO)
    }

    /// A collector that takes `delay` to answer each export.
    pub(crate) fn answering_after(delay: Duration) -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let headers = Arc::new(Mutex::new(hyper::HeaderMap::new()));
        let services = Arc::new(Mutex::new(Vec::new()));
        let (kept, seen, named) = (spans.clone(), headers.clone(), services.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (kept, seen, named) = (kept.clone(), seen.clone(), named.clone());
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                                let (kept, named) = (kept.clone(), named.clone());
                                *seen.lock().unwrap() = request.headers().clone();
                                async move {
                                    assert_eq!(request.uri().path(), "/v1/traces");
                                    let body = request.into_body().collect().await?.to_bytes();
                                    let export =
                                        ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
                                    tokio::time::sleep(delay).await;
                                    let mut spans = kept.lock().unwrap();
                                    for resource in export.resource_spans {
                                        let mut service = resource.resource.iter().flat_map(|r| &r.attributes);
                                        let service = service.find(|a| a.key == "service.name");
                                        if let Some(Value::StringValue(name)) =
                                            service.and_then(|a| a.value.clone()).and_then(|v| v.value)
                                        {
                                            named.lock().unwrap().push(name);
                                        }
                                        for scope in resource.scope_spans {
                                            spans.extend(scope.spans);
                                        }
                                    }
                                    Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                                        bytes::Bytes::new(),
                                    )))
                                }
                            });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            });
        });
        Collector { addr, spans, services, headers }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until a span named `name` arrives.
    fn span(&self, name: &str) -> Span {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(span) = self.spans.lock().unwrap().iter().find(|s| s.name == name) {
                return span.clone();
            }
            assert!(Instant::now() < deadline, "no span {name:?}; got {:?}", self.names());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the spans of trace `trace_id` include one named `name` (the root, which
    /// ends last), and gives them all.
    pub(crate) fn trace(&self, trace_id: &str, name: &str) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans: Vec<Span> =
                self.spans.lock().unwrap().iter().filter(|s| hex(&s.trace_id) == trace_id).cloned().collect();
            if spans.iter().any(|s| s.name == name) {
                return spans;
            }
            assert!(Instant::now() < deadline, "no span {name:?} in trace {trace_id}; got {:?}", self.names());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.spans.lock().unwrap().iter().map(|s| s.name.clone()).collect()
    }
}

pub(crate) fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.clone()).and_then(|v| v.value)
}

pub(crate) fn traceparent_request(addr: SocketAddr, path: &str) -> String {
    request_in_trace(addr, path, TRACE_ID)
}

/// A GET whose `traceparent` names trace `trace_id` and span [`PARENT_ID`].
pub(crate) fn request_in_trace(addr: SocketAddr, path: &str, trace_id: &str) -> String {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:8080\r\ntraceparent: 00-{trace_id}-{PARENT_ID}-01\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn a_request_is_one_trace_joined_to_its_traceparent() {
    let collector = Collector::start();
    let server = Served::start_with(
        &["--otlp-endpoint", &collector.endpoint(), guests::HTTP_HELLO],
        &[
            ("MEMBRANE_LOG", "membrane::access=info"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cr%65t, x-team = web"),
        ],
    );
    let response = traceparent_request(server.addr, "/traced");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let request = collector.span("GET /");
    assert_eq!(hex(&request.trace_id), TRACE_ID, "the caller's trace");
    assert_eq!(hex(&request.parent_span_id), PARENT_ID, "under the caller's span");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(attribute(&request, "http.response.status_code"), Some(Value::IntValue(200)));
    assert_eq!(attribute(&request, "membrane.component"), Some(Value::StringValue("http-hello".into())));
    assert_eq!(attribute(&request, "http.request.method"), Some(Value::StringValue("GET".into())));
    assert_eq!(attribute(&request, "network.protocol.version"), Some(Value::StringValue("1.1".into())));
    assert_eq!(attribute(&request, "server.address"), Some(Value::StringValue("localhost".into())));
    assert_eq!(attribute(&request, "server.port"), Some(Value::IntValue(8080)));
    // The collector gets the headers OTEL_EXPORTER_OTLP_HEADERS names, values decoded.
    let headers = collector.headers.lock().unwrap().clone();
    assert_eq!(headers.get("x-api-key").map(|v| v.as_bytes()), Some(&b"s3cret"[..]), "{headers:?}");
    assert_eq!(headers.get("x-team").map(|v| v.as_bytes()), Some(&b"web"[..]), "{headers:?}");
    assert_eq!(headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/x-protobuf"[..]));

    let instantiation = collector.span("instantiate");
    assert_eq!(hex(&instantiation.trace_id), TRACE_ID);
    assert_eq!(instantiation.parent_span_id, request.span_id, "the instance is made for the request");
    assert_eq!(attribute(&instantiation, "membrane.instance"), Some(Value::StringValue("fresh".into())));

    // The access log line leads to the trace.
    server.assert_log("trace id", |log| log.contains(TRACE_ID));
}

#[test]
fn an_outbound_request_carries_the_trace_to_the_next_service() {
    let collector = Collector::start();
    let (upstream, seen) = header_recorder();
    let granted = format!("http://{upstream}");
    let server =
        Served::start(&["--otlp-endpoint", &collector.endpoint(), "--allow-http", &granted, guests::HTTP_HELLO]);
    let response = traceparent_request(server.addr, &format!("/fetch?url=http://{upstream}/next"));
    assert!(response.contains("upstream 200"), "{response}");

    let client = collector.span("GET");
    assert_eq!(client.kind, SpanKind::Client as i32);
    assert_eq!(hex(&client.trace_id), TRACE_ID);
    let request = collector.span("GET /");
    assert_eq!(client.parent_span_id, request.span_id, "the call out is the request's child");
    let head = seen.lock().unwrap().clone();
    let expected = format!("traceparent: 00-{TRACE_ID}-{}-01", hex(&client.span_id));
    assert!(head.to_ascii_lowercase().contains(&expected), "the upstream got:\n{head}");
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A loopback HTTP server that answers 200 and keeps the head of the last request.
fn header_recorder() -> (SocketAddr, Arc<Mutex<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            *kept.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).to_string();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (addr, seen)
}

#[test]
fn a_key_value_call_is_a_span_and_a_denial_an_event_on_it() {
    let collector = Collector::start();
    let app = crate::util::TestApp::new(
        r#"[app]
name = "traced-state"

[component.web]
source = "{state-web}"
grants.keyvalue = [{ bucket = "notes", access = "rw" }, { bucket = "catalog", access = "ro" }]

[[route]]
path = "/"
component = "web"
"#,
    );
    let data = app.dir.path().join("data");
    let audit = app.dir.path().join("audit.jsonl");
    let server = Served::start(&[
        "--otlp-endpoint",
        &collector.endpoint(),
        "--data-dir",
        data.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
        app.manifest().to_str().unwrap(),
    ]);
    assert_eq!(request(server.addr, "PUT", "/kv/notes/a", "note").0, 200);
    let set = collector.span("keyvalue set");
    assert_eq!(attribute(&set, "db.system.name"), Some(Value::StringValue("embedded".into())));
    assert_eq!(attribute(&set, "db.collection.name"), Some(Value::StringValue("notes".into())));
    let put = collector.span("PUT /");
    assert_eq!(set.parent_span_id, put.span_id, "the call is the request's child");
    assert!(set.events.is_empty());

    assert_eq!(request(server.addr, "PUT", "/kv/catalog/x", "nope").0, 403);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = collector.spans.lock().unwrap().clone();
        let denied = spans.iter().find(|s| {
            s.name == "keyvalue set" && attribute(s, "db.collection.name") == Some(Value::StringValue("catalog".into()))
        });
        if let Some(denied) = denied {
            assert_eq!(denied.events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["denied"]);
            // The audit line of the denial leads to its trace.
            let trail = std::fs::read_to_string(&audit).unwrap();
            let line = trail.lines().find(|l| l.contains("\"denied\"")).expect("the denial is audited");
            assert!(line.contains(&format!("\"trace_id\":\"{}\"", hex(&denied.trace_id))), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "no span of the refused write; got {:?}", collector.names());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_guest_cannot_forge_the_trace_context_its_requests_carry() {
    let collector = Collector::start();
    let (upstream, seen) = header_recorder();
    let app = crate::util::TestApp::new(&format!(
        r#"[app]
name = "forger"

[component.evil]
source = "{{hostile-http}}"
grants.outbound_http = ["http://{upstream}"]

[[route]]
path = "/"
component = "evil"
"#
    ));
    let server = Served::start(&["--otlp-endpoint", &collector.endpoint(), app.manifest().to_str().unwrap()]);
    let response = traceparent_request(server.addr, &format!("/fetch?url=http://{upstream}/next&forge-trace=1"));
    assert!(response.contains("upstream 200"), "{response}");
    let head = seen.lock().unwrap().to_ascii_lowercase();
    let carried: Vec<&str> = head.lines().filter(|l| l.starts_with("traceparent:")).collect();
    assert_eq!(carried.len(), 1, "one traceparent, the host's:\n{head}");
    assert!(carried[0].contains(TRACE_ID), "the request's own trace:\n{head}");
    assert!(!head.contains("0123456789abcdef0123456789abcdef"), "the forged context is gone:\n{head}");
}

fn string(value: &str) -> Option<Value> {
    Some(Value::StringValue(value.into()))
}

/// The one span named `name` among `spans` whose attribute `key` is `value` (any, without
/// a key).
pub(crate) fn only<'a>(spans: &'a [Span], name: &str, key: Option<(&str, &str)>) -> &'a Span {
    let found: Vec<&Span> =
        spans.iter().filter(|s| s.name == name && key.is_none_or(|(k, v)| attribute(s, k) == string(v))).collect();
    assert_eq!(
        found.len(),
        1,
        "one span {name:?} {key:?}; the trace has {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

/// Through the docs-web example (`web` links to the per-call `fancy` renderer, which
/// panics on raw HTML, with the singleton `plain` as its fallback): the request, each
/// instance made for it, the link call with the renderer's trap as its outcome and the
/// fallback's call under it are one trace, under the caller's `traceparent`.
#[test]
fn a_link_call_is_a_span_whose_trap_and_fallback_nest_under_it() {
    let collector = Collector::start();
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs-web/membrane.toml");
    let server = Served::start(&["--otlp-endpoint", &collector.endpoint(), manifest.to_str().unwrap()]);

    let response = traceparent_request(server.addr, "/?doc=%3Cscript%3Ealert(1)%3C/script%3E");
    assert!(response.starts_with("HTTP/1.1 200") && response.contains("rendered by the plain fallback"), "{response}");
    let spans = collector.trace(TRACE_ID, "GET /");
    let request = only(&spans, "GET /", None);
    assert_eq!(hex(&request.parent_span_id), PARENT_ID, "under the caller's span");
    let web = only(&spans, "instantiate", Some(("membrane.component", "web")));
    assert_eq!(web.parent_span_id, request.span_id, "the handler's instance is made for the request");

    let link = only(&spans, "web -> fancy render", None);
    assert_eq!(link.parent_span_id, request.span_id, "the handler made the call");
    assert_eq!(link.kind, SpanKind::Internal as i32);
    assert_eq!(attribute(link, "membrane.link"), string("web -> fancy"));
    assert_eq!(attribute(link, "membrane.link.import"), string("example:markdown/render@0.1.0"));
    assert_eq!(attribute(link, "membrane.link.function"), string("render"));
    assert_eq!(attribute(link, "membrane.link.instances"), string("per-call"));
    assert_eq!(attribute(link, "membrane.link.outcome"), string("fallback"));
    assert_eq!(attribute(link, "membrane.link.fallback"), string("plain"));
    assert_eq!(attribute(link, "membrane.trap.kind"), string("unreachable"), "the renderer's trap");
    let failed: Vec<&str> = link.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(failed, ["attempt failed"]);
    let fancy = only(&spans, "instantiate", Some(("membrane.component", "fancy")));
    assert_eq!(fancy.parent_span_id, link.span_id, "the renderer's instance is made for the link call");

    let fallback = only(&spans, "fallback plain render", None);
    assert_eq!(fallback.parent_span_id, link.span_id, "the fallback answers the link call");
    assert_eq!(attribute(fallback, "membrane.link.instances"), string("singleton"));
    assert_eq!(attribute(fallback, "membrane.link.outcome"), string("ok"));
    let plain = only(&spans, "instantiate", Some(("membrane.component", "plain")));
    assert_eq!(plain.parent_span_id, fallback.span_id, "the singleton starts for the fallback's call");
    assert_eq!(attribute(plain, "membrane.instance"), string("fresh"));
    assert_eq!(spans.len(), 6, "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());

    // A document the renderer takes: the link call is `ok`, and nothing falls back.
    let healthy = "0af7651916cd43dd8448eb211c80319c";
    let response = request_in_trace(server.addr, "/?doc=%23+Hello", healthy);
    assert!(response.contains("<h1>Hello</h1>"), "{response}");
    let spans = collector.trace(healthy, "GET /");
    let link = only(&spans, "web -> fancy render", None);
    assert_eq!(link.parent_span_id, only(&spans, "GET /", None).span_id);
    assert_eq!(attribute(link, "membrane.link.outcome"), string("ok"));
    assert_eq!(attribute(link, "membrane.trap.kind"), None);
    assert!(link.events.is_empty());
    assert_eq!(only(&spans, "instantiate", Some(("membrane.component", "fancy"))).parent_span_id, link.span_id);
    assert!(spans.iter().all(|s| !s.name.starts_with("fallback")), "no fallback");
}

/// `membrane run` of an app is one trace: the run is the root, and each call the entry
/// makes across its link is a span under it, the crashing plugin's answered by the fallback.
#[test]
fn a_run_of_an_app_is_one_trace_with_its_link_calls_under_it() {
    let collector = Collector::start();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("target/pipeline-out")).unwrap();
    let manifest = root.join("examples/pipeline/membrane.toml");
    crate::util::membrane_with(["run", "--otlp-endpoint", &collector.endpoint(), manifest.to_str().unwrap()])
        .assert_code(0);
    let run = collector.span("run pipeline");
    assert!(run.parent_span_id.is_empty(), "the run starts its trace");
    let spans = collector.trace(&hex(&run.trace_id), "run pipeline");
    let links: Vec<&Span> = spans.iter().filter(|s| s.name == "pipeline -> fancy render").collect();
    assert_eq!(links.len(), 3, "one call per document: {:?}", collector.names());
    assert!(links.iter().all(|l| l.parent_span_id == run.span_id), "the entry made the calls");
    let outcomes: Vec<Option<Value>> = links.iter().map(|l| attribute(l, "membrane.link.outcome")).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == string("fallback")).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == string("ok")).count(), 2, "{outcomes:?}");
    let fallback = only(&spans, "fallback plain render", None);
    assert!(links.iter().any(|l| l.span_id == fallback.parent_span_id));
}

/// Runs the flaky app, its faults link set with `faults_link`, traced into a collector
/// with `check` applied to the run's outcome; gives the span of the link call to
/// `function`, which is a child of the run's span.
fn flaky_link_span(faults_link: &str, args: &[&str], function: &str, check: impl FnOnce(Outcome)) -> Span {
    let collector = Collector::start();
    let state = tempfile::tempdir().unwrap();
    let app = crate::compose::flaky_app(state.path(), faults_link);
    let manifest = app.manifest();
    let endpoint = collector.endpoint();
    let mut command = vec!["run", "--otlp-endpoint", &endpoint, manifest.to_str().unwrap(), "--"];
    command.extend(args);
    check(crate::util::membrane_with(command));
    let run = collector.span("run test");
    let spans = collector.trace(&hex(&run.trace_id), "run test");
    let link =
        spans.iter().find(|s| attribute(s, "membrane.link.function") == string(function)).expect("the link span");
    assert_eq!(link.name, format!("caller -> provider {function}"));
    assert_eq!(link.parent_span_id, run.span_id);
    link.clone()
}

/// A call that traps twice and is answered on the third attempt is one link span with
/// outcome `retried`, two retries and an event per failed attempt.
#[test]
fn a_retried_link_call_is_one_span_with_its_retries() {
    let link = flaky_link_span("on_trap = \"retry:2\"", &["flaky", "2"], "flaky", |out| {
        out.assert_code(0).assert_stdout_has("ok after 3 attempts");
    });
    assert_eq!(attribute(&link, "membrane.link.outcome"), string("retried"));
    assert_eq!(attribute(&link, "membrane.link.retries"), Some(Value::IntValue(2)));
    let events: Vec<&str> = link.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, ["attempt failed", "retry", "attempt failed", "retry"]);
}

#[test]
fn a_link_call_cut_off_by_its_timeout_ends_its_span_as_a_timeout() {
    let link = flaky_link_span("timeout = \"200ms\"", &["spin-then-ok"], "spin", |out| {
        out.assert_code(87).assert_stderr_has("timed out: the component ran longer than its 200ms wall-clock limit");
    });
    assert_eq!(attribute(&link, "membrane.link.outcome"), string("timeout"));
    assert_eq!(attribute(&link, "membrane.trap.kind"), string("timeout"));
    let status = link.status.as_ref().expect("a failed span has a status");
    assert!(status.message.contains("200ms"), "the status names the limit: {}", status.message);
}

/// A call the open circuit refuses never reaches the provider: its span ends as
/// `circuit_open`, with no instance made under it.
#[test]
fn a_link_call_refused_by_the_open_circuit_ends_its_span_as_circuit_open() {
    let collector = Collector::start();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs-web");
    let text = std::fs::read_to_string(examples.join("membrane.toml"))
        .unwrap()
        .replace("../../guests/", &format!("{}/guests/", env!("CARGO_MANIFEST_DIR")))
        .replace("on_trap = \"fallback:plain\"", "circuit = { failures = 1, cooldown = \"60s\" }");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("membrane.toml");
    std::fs::write(&manifest, text).unwrap();
    let server = Served::start(&["--otlp-endpoint", &collector.endpoint(), manifest.to_str().unwrap()]);

    // The renderer traps once: the circuit opens.
    let trapped = "1af7651916cd43dd8448eb211c80319c";
    request_in_trace(server.addr, "/?doc=%3Cscript%3Ealert(1)%3C/script%3E", trapped);
    let spans = collector.trace(trapped, "GET /");
    assert_eq!(attribute(only(&spans, "web -> fancy render", None), "membrane.link.outcome"), string("trap"));

    // The next call is refused before it reaches the renderer.
    let refused = "2af7651916cd43dd8448eb211c80319c";
    request_in_trace(server.addr, "/?doc=%23+Hello", refused);
    let spans = collector.trace(refused, "GET /");
    let link = only(&spans, "web -> fancy render", None);
    assert_eq!(link.parent_span_id, only(&spans, "GET /", None).span_id);
    assert_eq!(attribute(link, "membrane.link.outcome"), string("circuit_open"));
    assert!(link.status.as_ref().is_some_and(|s| !s.message.is_empty()), "the refusal says why");
    assert!(
        spans.iter().all(|s| attribute(s, "membrane.component") != string("fancy")),
        "no renderer instance is made: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}

/// A call the host refuses before it reaches the provider (here, a reentrant call into a
/// singleton already in the call chain) ends its span as `refused`, naming why.
#[test]
fn a_link_call_refused_by_the_host_ends_its_span_as_refused() {
    let collector = Collector::start();
    let app = crate::util::TestApp::new(&crate::util::manifest(
        "reentrant",
        &[("reentrant", "instances = \"singleton\""), ("relay", "")],
        &[
            ("reentrant", "membrane:test/relay@0.1.0", "relay", ""),
            ("relay", "membrane:test/callback@0.1.0", "reentrant", ""),
        ],
    ));
    let manifest = app.manifest();
    crate::util::membrane_with(["run", "--otlp-endpoint", &collector.endpoint(), manifest.to_str().unwrap()])
        .assert_code(87);
    let run = collector.span("run test");
    let spans = collector.trace(&hex(&run.trace_id), "run test");
    let refused = only(&spans, "relay -> reentrant ping", None);
    assert_eq!(attribute(refused, "membrane.link.outcome"), string("refused"));
    assert_eq!(attribute(refused, "membrane.trap.kind"), string("reentrant"));
    let outer = only(&spans, "reentrant -> relay call-back", None);
    assert_eq!(refused.parent_span_id, outer.span_id, "the refused call nests under the call that made it");
    assert!(!spans.iter().any(|s| s.parent_span_id == refused.span_id), "no instance was made for it");
}
