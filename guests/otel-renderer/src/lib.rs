//! A renderer that adds a span of its own (wasi:otel tracing) under the span it runs
//! under: reached through a link, that is the link call's. For membrane's tracing tests.

wit_bindgen::generate!({ path: "../../wit/markdown", world: "renderer" });

mod otel {
    wit_bindgen::generate!({
        path: ["../../wit/deps/clocks-0.2.0", "../../wit/deps/otel", "../../wit/otel"],
        world: "membrane:otel/guest",
        generate_all,
    });
}

use otel::wasi::clocks::wall_clock;
use otel::wasi::otel::tracing::{self, SpanContext, SpanData, SpanKind, Status};
use otel::wasi::otel::types::{InstrumentationScope, KeyValue};

struct Renderer;

impl exports::example::markdown::render::Guest for Renderer {
    fn render(doc: String) -> String {
        let outer = tracing::outer_span_context();
        let started = wall_clock::now();
        // An id of its own: the clock's nanoseconds, never zero.
        let id = (started.seconds << 30) ^ u64::from(started.nanoseconds) | 1;
        let context = SpanContext { span_id: format!("{id:016x}"), is_remote: false, ..outer.clone() };
        tracing::on_start(&context);
        let html = format!("<p>{}</p>\n", doc.trim_start_matches('#').trim().replace('<', "&lt;"));
        tracing::on_end(&SpanData {
            span_context: context,
            parent_span_id: outer.span_id,
            span_kind: SpanKind::Internal,
            name: "render markdown".into(),
            start_time: started,
            end_time: wall_clock::now(),
            attributes: vec![KeyValue { key: "doc.bytes".into(), value: doc.len().to_string() }],
            events: Vec::new(),
            links: Vec::new(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope {
                name: "otel-renderer".into(),
                version: None,
                schema_url: None,
                attributes: Vec::new(),
            },
            dropped_attributes: 0,
            dropped_events: 0,
            dropped_links: 0,
        });
        html
    }
}

export!(Renderer);
