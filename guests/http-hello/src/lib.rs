//! A wasi:http handler for membrane's serving tests. Acts on the last path segment:
//! `…/trap` panics, `…/spin` never returns, `…/slow?ms=N` sleeps, `…/echo` reads the body,
//! `…/fetch?url=URL` calls out through wasi:http (following one redirect), and anything
//! else says hello (naming `$WHO` when granted) with how many requests this instance has
//! served.

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

/// Requests this instance has served: 1 forever when every request gets a fresh instance.
static SERVED: AtomicU32 = AtomicU32::new(0);

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let target = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let param = |name: &str| {
            query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_string)
        };
        // The last segment picks the action, so the handler works behind any route prefix.
        let action = path.rsplit('/').next().unwrap_or_default();
        let (status, body) = match action {
            "trap" => panic!("the handler was asked to trap"),
            "spin" => loop {
                std::hint::black_box(served);
            },
            "slow" => {
                let ms: u64 = param("ms").and_then(|v| v.parse().ok()).unwrap_or(500);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                (200, format!("slept {ms} ms"))
            }
            "echo" => (200, format!("read {} bytes", read_body(&request))),
            "fetch" => match param("url") {
                Some(url) => fetch(&url, 1),
                None => (400, "give ?url=".into()),
            },
            _ => {
                let who = std::env::var("WHO").map(|w| format!(" ({w})")).unwrap_or_default();
                (200, format!("hello from {path}{who}; request #{served} of this instance"))
            }
        };
        respond(out, status, &body);
    }
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())]).unwrap();
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).unwrap();
    let body = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body.write().unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    stream.flush().unwrap();
    drop(stream);
    OutgoingBody::finish(body, None).unwrap();
}

fn read_body(request: &IncomingRequest) -> usize {
    let body = request.consume().unwrap();
    let stream = body.stream().unwrap();
    let mut total = 0;
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        total += chunk.len();
    }
    total
}

/// GETs `url` through wasi:http; follows a redirect `hops` more times.
fn fetch(url: &str, hops: u32) -> (u16, String) {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some(("http", rest)) => (Scheme::Http, rest),
        _ => return (400, format!("not an http(s) URL: {url}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).unwrap();
    request.set_scheme(Some(&scheme)).unwrap();
    request.set_authority(Some(authority)).unwrap();
    request.set_path_with_query(Some(path)).unwrap();
    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(code) => return (502, format!("denied: {code:?}")),
    };
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return (502, format!("denied: {code:?}")),
        _ => return (502, "no response".into()),
    };
    let status = response.status();
    if (300..400).contains(&status) && hops > 0 {
        let location = response.headers().get("location");
        if let Some(location) = location.first() {
            return fetch(&String::from_utf8_lossy(location), hops - 1);
        }
    }
    let body = response.consume().unwrap();
    let stream = body.stream().unwrap();
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend(chunk);
    }
    (200, format!("upstream {status}: {}", String::from_utf8_lossy(&bytes).trim()))
}
