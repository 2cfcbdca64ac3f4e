//! WASI 0.3 HTTP middleware (`wasi:http/middleware@0.3.0`) for membrane's tests: it lets a
//! request through to the next handler (its imported `wasi:http/handler`, which a
//! `[[link]]` names) only with `x-token: open-sesame`, else answers 401 itself; the next
//! handler's response goes back with an `x-middleware` header added, its body streaming
//! through untouched.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "membrane:p3-probe/middleware-guest",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::http::handler;
use wasi::http::types::{ErrorCode, Fields, Request, Response};

struct Middleware;

export!(Middleware);

impl Guest for Middleware {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let allowed = request.get_headers().get("x-token").iter().any(|v| v == b"open-sesame");
        if !allowed {
            let (mut tx, rx) = wit_stream::new::<u8>();
            let (_, trailers) = wit_future::new(|| Ok(None));
            let (response, _) = Response::new(Fields::new(), Some(rx), trailers);
            response.set_status_code(401).unwrap();
            wit_bindgen::spawn_local(async move {
                tx.write_all(b"the middleware wants x-token\n".to_vec()).await;
            });
            return Ok(response);
        }
        let response = handler::handle(request).await?;
        let status = response.get_status_code();
        let headers = response.get_headers().clone();
        headers.append("x-middleware", b"passed").unwrap();
        let (_, done) = wit_future::new(|| Ok(()));
        let (body, trailers) = Response::consume_body(response, done);
        let (passed, _) = Response::new(headers, Some(body), trailers);
        passed.set_status_code(status).unwrap();
        Ok(passed)
    }
}
