//! A wasi:http handler that answers with its package name (`http-v1`, `http-v2`), shared
//! by both packages so that hot-swap tests have two builds that differ only in what they
//! say.

use std::io::Write as _;
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(Version);

struct Version;

impl wasip2::exports::http::incoming_handler::Guest for Version {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        // `?ms=N` holds the response, so a request can be in flight across a swap.
        if let Some(ms) = path.split_once("ms=").and_then(|(_, v)| v.parse::<u64>().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())]).unwrap();
        let response = OutgoingResponse::new(headers);
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let mut stream = body.write().unwrap();
        stream.write_all(env!("CARGO_PKG_NAME").as_bytes()).unwrap();
        stream.flush().unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}
