//! A WASI 0.3 HTTP handler (`wasi:http/handler@0.3.0`) for membrane's serving tests. Acts
//! on the last path segment: `…/echo` streams the request body back chunk by chunk as it
//! arrives, `…/trap-mid-body` sends part of a body and then traps, `…/trap` traps before
//! answering, `…/spin` never returns, `…/alloc?mib=N` holds N MiB, `…/fetch?url=URL`
//! calls out through `wasi:http/client@0.3.0`, and anything else says hello with how many
//! requests this instance has served.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "membrane:p3-probe/http-guest",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use std::sync::atomic::{AtomicU32, Ordering};
use wasi::http::client;
use wasi::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use wit_bindgen::StreamResult;

struct Handler;

export!(Handler);

/// Requests this instance has served: 1 forever when every request gets a fresh instance.
static SERVED: AtomicU32 = AtomicU32::new(0);

/// How much of a body the guest holds at once while it streams.
const CHUNK: usize = 64 * 1024;

impl Guest for Handler {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let target = request.get_path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let param = |name: &str| {
            query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_string)
        };
        // The last segment picks the action, so the handler works behind any route prefix.
        match path.rsplit('/').next().unwrap_or_default() {
            "echo" => Ok(echo(request)),
            "trap-mid-body" => Ok(trap_mid_body()),
            "trap" => panic!("the handler was asked to trap"),
            "spin" => loop {
                std::hint::black_box(served);
            },
            "alloc" => {
                let mib: usize = param("mib").and_then(|v| v.parse().ok()).unwrap_or(1);
                let block = vec![1u8; mib << 20];
                let held = block.iter().map(|b| *b as usize).sum::<usize>() >> 20;
                Ok(text(200, format!("allocated {held} MiB")))
            }
            "fetch" => Ok(match param("url") {
                Some(url) => fetch(&url).await,
                None => text(400, "give ?url=".into()),
            }),
            _ => Ok(text(200, format!("p3 hello from {path}; request #{served} of this instance"))),
        }
    }
}

/// A response whose body is `body` and a newline.
fn text(status: u16, body: String) -> Response {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let (_, trailers) = wit_future::new(|| Ok(None));
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())]).unwrap();
    let (response, _sent) = Response::new(headers, Some(rx), trailers);
    response.set_status_code(status).unwrap();
    wit_bindgen::spawn_local(async move {
        tx.write_all(format!("{body}\n").into_bytes()).await;
    });
    response
}

/// Answers at once with a body that copies the request's body through the guest, chunk
/// by chunk as it arrives: neither body is ever held whole. A request body that fails
/// (cut at the host's limit) fails the response's trailers, so the response fails too.
fn echo(request: Request) -> Response {
    let (_, request_done) = wit_future::new(|| Ok(()));
    let (mut body, request_trailers) = Request::consume_body(request, request_done);
    let (mut tx, rx) = wit_stream::new::<u8>();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let headers = Fields::from_list(&[("content-type".into(), b"application/octet-stream".to_vec())]).unwrap();
    let (response, _sent) = Response::new(headers, Some(rx), trailers_rx);
    wit_bindgen::spawn_local(async move {
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let (status, read) = body.read(chunk).await;
            chunk = read;
            match status {
                StreamResult::Complete(_) => {
                    chunk = tx.write_all(chunk).await;
                    chunk.clear();
                }
                StreamResult::Dropped | StreamResult::Cancelled => break,
            }
        }
        drop(tx);
        let _ = trailers_tx.write(request_trailers.await).await;
    });
    response
}

/// Sends 1 MiB of body, then traps while the client waits for the rest.
fn trap_mid_body() -> Response {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let (_, trailers) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(rx), trailers);
    wit_bindgen::spawn_local(async move {
        for _ in 0..16 {
            tx.write_all(vec![b'x'; CHUNK]).await;
        }
        panic!("the handler was asked to trap mid-body");
    });
    response
}

/// GETs `url` through `wasi:http/client@0.3.0`: the upstream's status and body, or the
/// error code the host answered with.
async fn fetch(url: &str) -> Response {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some(("http", rest)) => (Scheme::Http, rest),
        _ => return text(400, format!("not an http(s) URL: {url}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (_, trailers) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, trailers, None);
    request.set_method(&Method::Get).unwrap();
    request.set_scheme(Some(&scheme)).unwrap();
    request.set_authority(Some(authority)).unwrap();
    request.set_path_with_query(Some(path)).unwrap();
    let response = match client::send(request).await {
        Ok(response) => response,
        Err(code) => return text(502, format!("denied: {code:?}")),
    };
    let status = response.get_status_code();
    let (_, done) = wit_future::new(|| Ok(()));
    let (body, _trailers) = Response::consume_body(response, done);
    let bytes = body.collect().await;
    text(200, format!("upstream {status}: {}", String::from_utf8_lossy(&bytes).trim()))
}
