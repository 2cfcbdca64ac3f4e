//! An HTTP front that reaches a provider only through links: `/count` increments the
//! provider's counter, `/wait?ms=N` holds a healthy call into it for N ms, `/hold?n=K&ms=N`
//! makes K provider resources and keeps them through such a wait, `/leak?n=K` makes K and
//! never drops them, `/live` tells how many the provider holds, and `/stream` streams a
//! body for as long as someone reads it, then goes on working for nobody. What a request
//! that ends early (its client gone, its instance discarded) leaves behind is the host's to
//! clean up, not this component's.

use membrane::test::{counter, kv, pace};
use std::io::Write as _;
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wit_bindgen::generate!({ path: "../../wit/test", world: "link-web" });
wasip2::http::proxy::export!(Web);

struct Web;

impl wasip2::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let param = |name: &str| -> u32 {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (status, body) = match path {
            "/count" => (200, counter::increment().to_string()),
            "/wait" => {
                pace::wait(param("ms"));
                (200, "waited".to_string())
            }
            "/hold" => {
                let buckets: Vec<kv::Bucket> = (0..param("n")).map(|i| kv::Bucket::new(&format!("b{i}"))).collect();
                pace::wait(param("ms"));
                (200, format!("held {}", buckets.len()))
            }
            "/leak" => {
                for i in 0..param("n") {
                    // Never dropped: the handles die with this instance's store.
                    std::mem::forget(kv::Bucket::new(&format!("leak{i}")));
                }
                (200, "leaked".to_string())
            }
            "/live" => (200, kv::live().to_string()),
            "/stream" => return stream_forever(out),
            _ => (404, "no such path".to_string()),
        };
        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())]).unwrap();
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

/// Streams chunks until the client stops taking them, then keeps working as if it had not
/// noticed: only the host can end this instance early.
fn stream_forever(out: ResponseOutparam) {
    let response = OutgoingResponse::new(Fields::new());
    let outgoing = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().unwrap();
    let chunk = [b'x'; 4096];
    while stream.blocking_write_and_flush(&chunk).is_ok() {}
    loop {
        pace::wait(0);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
