//! The HTTP front of the demo: renders the Markdown it is sent (`?doc=` or a POST body)
//! through the `example:markdown/render` link. Which component renders it, the plugin or
//! its fallback, is the host's decision, not this component's.

use std::io::Write as _;
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wit_bindgen::generate!({ path: "../../wit/markdown", world: "pipeline" });
wasip2::http::proxy::export!(Web);

struct Web;

impl wasip2::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let doc = match query.split('&').find_map(|kv| kv.strip_prefix("doc=")) {
            Some(doc) => percent_decode(doc),
            None => read_body(&request),
        };
        let (status, kind, body) = if doc.trim().is_empty() {
            (400, "text/plain", "send a Markdown document as ?doc=... or as the request body\n".to_string())
        } else {
            (200, "text/html", example::markdown::render::render(&doc))
        };
        let headers = Fields::from_list(&[("content-type".into(), kind.as_bytes().to_vec())]).unwrap();
        let response = OutgoingResponse::new(headers);
        response.set_status_code(status).unwrap();
        let outgoing = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let mut stream = outgoing.write().unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        stream.flush().unwrap();
        drop(stream);
        OutgoingBody::finish(outgoing, None).unwrap();
    }
}

fn read_body(request: &IncomingRequest) -> String {
    let Ok(body) = request.consume() else { return String::new() };
    let stream = body.stream().unwrap();
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend(chunk);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `a+b%2Fc` as `a b/c`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
