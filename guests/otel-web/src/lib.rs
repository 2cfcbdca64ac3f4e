//! A wasi:http handler that adds its own spans through wasi:otel tracing, for membrane's
//! tracing tests. `/spans` reads the host's span context, starts a span under it and a
//! child under that, ends both, and then tries what a guest must not do: end a span in
//! another trace, one whose parent it never started, one it never started, one a second
//! time, one larger than the host takes, and one of many empty attributes.
//! Every path answers with the context the host gave (`outer TRACE SPAN sampled|unsampled`).

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wit_bindgen::generate!({
    path: ["../../wit/deps/clocks-0.2.0", "../../wit/deps/otel", "../../wit/otel"],
    world: "membrane:otel/guest",
    with: { "wasi:clocks/wall-clock@0.2.0": wasip2::clocks::wall_clock },
    generate_all,
});

use wasi::otel::tracing::{self, SpanContext, SpanData, SpanKind, Status, TraceFlags};
use wasi::otel::types::{InstrumentationScope, KeyValue};

wasip2::http::proxy::export!(OtelWeb);

/// A trace none of the tests' requests is in.
const OTHER_TRACE: &str = "0123456789abcdef0123456789abcdef";

struct OtelWeb;

impl wasip2::exports::http::incoming_handler::Guest for OtelWeb {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let outer = tracing::outer_span_context();
        if request.path_with_query().unwrap_or_default().starts_with("/spans") {
            let work = start(&outer.trace_id);
            let step = start(&outer.trace_id);
            end(&step, &work.span_id, "guest step", vec![attribute("guest.step", "1")]);
            end(&work, &outer.span_id, "guest work", vec![attribute("guest.items", "3"), attribute("guest.tags", r#"["a","b"]"#)]);
            // What must not reach the trace.
            let forged = start(OTHER_TRACE);
            end(&forged, &outer.span_id, "forged other trace", Vec::new());
            let orphan = start(&outer.trace_id);
            end(&orphan, "00000000000000ff", "forged parent", Vec::new());
            let unstarted = context(&outer.trace_id);
            end(&unstarted, &outer.span_id, "forged unstarted", Vec::new());
            end(&work, &outer.span_id, "forged second end", Vec::new());
            let big = start(&outer.trace_id);
            let blob = format!("\"{}\"", "x".repeat(20_000));
            end(&big, &outer.span_id, "forged big", vec![attribute("guest.blob", &blob)]);
            let many = start(&outer.trace_id);
            end(&many, &outer.span_id, "forged many", (0..200).map(|_| attribute("", "")).collect());
        }
        let sampled = if outer.trace_flags.contains(TraceFlags::SAMPLED) { "sampled" } else { "unsampled" };
        respond(out, &format!("outer {} {} {sampled}\n", outer.trace_id, outer.span_id));
    }
}

/// A new span's context in `trace_id`, with a random span id.
fn context(trace_id: &str) -> SpanContext {
    SpanContext {
        trace_id: trace_id.into(),
        span_id: format!("{:016x}", wasip2::random::random::get_random_u64() | 1),
        trace_flags: TraceFlags::SAMPLED,
        is_remote: false,
        trace_state: Vec::new(),
    }
}

/// Starts a span in `trace_id`, telling the host.
fn start(trace_id: &str) -> SpanContext {
    let context = context(trace_id);
    tracing::on_start(&context);
    context
}

fn attribute(key: &str, json: &str) -> KeyValue {
    KeyValue { key: key.into(), value: json.into() }
}

/// Ends the span of `context` under `parent`.
fn end(context: &SpanContext, parent: &str, name: &str, attributes: Vec<KeyValue>) {
    let time = wasip2::clocks::wall_clock::now();
    tracing::on_end(&SpanData {
        span_context: context.clone(),
        parent_span_id: parent.into(),
        span_kind: SpanKind::Internal,
        name: name.into(),
        start_time: time,
        end_time: time,
        attributes,
        events: Vec::new(),
        links: Vec::new(),
        status: Status::Ok,
        instrumentation_scope: InstrumentationScope {
            name: "otel-web".into(),
            version: Some("0.1.0".into()),
            schema_url: None,
            attributes: Vec::new(),
        },
        dropped_attributes: 0,
        dropped_events: 0,
        dropped_links: 0,
    });
}

fn respond(out: ResponseOutparam, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    let body = response.body().expect("a response body");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the body's stream");
    stream.blocking_write_and_flush(text.as_bytes()).expect("writing the body");
    drop(stream);
    OutgoingBody::finish(body, None).expect("finishing the body");
}
