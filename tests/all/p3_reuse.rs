//! Instance reuse for WASI 0.3 handlers: one request after another
//! (`--max-instance-reuse`), and several at once (`--instance-concurrency`).

use crate::p3_serve::{get, h2, runtime};
use crate::util::{Served, TestApp, guests, membrane_with, request};
use bytes::Bytes;
use http_body_util::BodyExt;

#[test]
fn with_instance_reuse_on_a_p3_instance_serves_requests_one_after_another() {
    let server = Served::start(&["--max-instance-reuse", "3", guests::P3_HTTP]);
    let count = |path: &str| {
        let (status, body) = get(server.addr, path);
        (status, body.rsplit("request #").next().unwrap_or_default().trim().to_string())
    };
    let counts: Vec<_> = (0..4).map(|i| count(&format!("/r{i}")).1).collect();
    assert_eq!(counts, ["1 of this instance", "2 of this instance", "3 of this instance", "1 of this instance"]);
    // An instance that trapped is never served again.
    assert_eq!(count("/trap").0, 500);
    assert_eq!(count("/after").1, "1 of this instance");
}

/// A request body sent as the test hands it chunks; it ends when the sender is dropped.
struct Held(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|chunk| Ok(hyper::body::Frame::data(chunk))))
    }
}

#[test]
fn with_instance_concurrency_a_p3_instance_serves_requests_side_by_side_and_fails_them_together() {
    let server = Served::start(&["--instance-concurrency", "4", "--max-instance-reuse", "100", guests::P3_HTTP]);
    let addr = server.addr;
    let get_async = |path: &'static str| tokio::task::spawn_blocking(move || get(addr, path));
    runtime().block_on(async move {
        // An echo whose request body keeps coming stays in flight in the instance...
        let mut sender = h2(addr).await;
        let (chunks, rx) = tokio::sync::mpsc::channel(4);
        let req = hyper::Request::post("/echo").header("host", "l").body(Held(rx).boxed()).unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        chunks.send(Bytes::from_static(b"first")).await.unwrap();
        let mut body = res.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "first");
        // ...while the same instance answers another request.
        let (status, text) = get_async("/meanwhile").await.unwrap();
        assert_eq!((status, text.as_str()), (200, "p3 hello from /meanwhile; request #2 of this instance"));
        // A trap in the instance fails the request still in it: its body breaks, never
        // ending as if whole.
        assert_eq!(get_async("/trap").await.unwrap().0, 500);
        let broken = loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(broken, "the echo in the instance that trapped ended as if whole");
        drop(chunks);
    });
    // The next request gets an instance of its own; a clean body ends cleanly.
    assert_eq!(get(addr, "/after"), (200, "p3 hello from /after; request #1 of this instance".into()));
    let (status, echoed) =
        request(addr, "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    assert_eq!((status, echoed.as_str()), (200, "hello"));
}

#[test]
fn instance_concurrency_needs_as_much_instance_reuse() {
    membrane_with(["serve", "--listen", "127.0.0.1:0", "--instance-concurrency", "4", guests::P3_HTTP])
        .assert_code(2)
        .assert_stderr_has("--instance-concurrency 4 needs --max-instance-reuse of at least 4");
}

#[test]
fn with_instance_concurrency_a_tenants_requests_still_get_instances_of_their_own() {
    let app = TestApp::new(
        r#"[app]
name = "p3-shared-tenants"

[component.web]
source = "{p3-http}"

[[route]]
path = "/"
component = "web"

[tenant.acme]
hosts = ["acme.localhost"]
"#,
    );
    let manifest = app.manifest();
    let server =
        Served::start(&["--instance-concurrency", "2", "--max-instance-reuse", "10", manifest.to_str().unwrap()]);
    let host_get = |host: &str, path: &str| {
        request(server.addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).1
    };
    for i in 1..=3 {
        assert_eq!(host_get("acme.localhost", "/t"), "p3 hello from /t; request #1 of this instance");
        assert_eq!(host_get("other.localhost", "/o"), format!("p3 hello from /o; request #{i} of this instance"));
    }
}

#[test]
fn with_instance_concurrency_a_request_that_computes_forever_is_stopped_with_its_instance() {
    // The instance's event loop is stuck in the guest: the request's deadline is enforced
    // from outside it, and the instance goes; the next request is served at once.
    let args = ["--metrics-listen", "127.0.0.1:0", "--timeout", "1s", "--instance-concurrency", "2"];
    let server = Served::start(&[&args[..], &["--max-instance-reuse", "10", guests::P3_HTTP]].concat());
    assert_eq!(get(server.addr, "/spin"), (504, "the handler took too long".into()));
    assert_eq!(get(server.addr, "/after"), (200, "p3 hello from /after; request #1 of this instance".into()));
    let (_, metrics) = get(server.metrics.unwrap(), "/metrics");
    assert!(metrics.contains("membrane_traps_total{component=\"p3-http\",kind=\"timeout\"} 1"), "{metrics}");
}
