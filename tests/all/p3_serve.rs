use crate::util::{Served, TestApp, guests, membrane_with, request};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `GET path` over a fresh HTTP/1.1 connection: status and body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// An h2c connection to `addr`: request and response bodies stream at the same time.
pub(crate) async fn h2(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::combinators::BoxBody<Bytes, std::io::Error>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// A request body of `chunks` 1 MiB chunks, each made as it is sent; with the sha256 of
/// all of it.
fn generated_body(chunks: usize) -> (http_body_util::combinators::BoxBody<Bytes, std::io::Error>, [u8; 32]) {
    let mut sha = Sha256::new();
    for i in 0..chunks {
        sha.update(chunk(i));
    }
    (Generated { next: 0, chunks }.boxed(), sha.finalize().into())
}

fn chunk(i: usize) -> Bytes {
    Bytes::from((0..1 << 20).map(|j| ((i * 31 + j * 7) % 251) as u8).collect::<Vec<u8>>())
}

struct Generated {
    next: usize,
    chunks: usize,
}

impl hyper::body::Body for Generated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        if self.next == self.chunks {
            return std::task::Poll::Ready(None);
        }
        self.next += 1;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk(self.next - 1)))))
    }
}

/// The server's resident memory: now, and its peak so far (kB).
fn memory_kb(server: &Served) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_p3_handler_gets_a_fresh_instance_per_request_over_keep_alive_and_http2() {
    let server = Served::start(&[guests::P3_HTTP]);
    let addr = server.addr;
    runtime().block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        for i in 0..20 {
            sender.ready().await.unwrap();
            let req = hyper::Request::get(format!("/n{i}")).header("host", "localhost").body(Full::<Bytes>::default());
            let res = sender.send_request(req.unwrap()).await.unwrap();
            assert_eq!(res.status(), 200);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                String::from_utf8_lossy(&body).trim(),
                format!("p3 hello from /n{i}; request #1 of this instance")
            );
        }
        let mut sender = h2(addr).await;
        let req = hyper::Request::get(format!("http://{addr}/h2"))
            .body(http_body_util::Empty::new().map_err(|n| match n {}).boxed());
        let res = sender.send_request(req.unwrap()).await.unwrap();
        assert_eq!(res.version(), hyper::Version::HTTP_2);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&body).trim(), "p3 hello from /h2; request #1 of this instance");
    });
    // The access log has the p3 component's requests, with their bytes.
    let line = "p3 hello from /n0; request #1 of this instance\n";
    let logged = format!("bytes={}", line.len());
    wait_until(|| server.stderr().lines().any(|l| l.contains("path=\"/n0\"") && l.contains(&logged)), &server);
}

/// 100 MiB in and 100 MiB back through a guest that copies each chunk as it arrives, with
/// the server's memory growing by far less than the body; a body over the limit is refused
/// (declared: 413 before the guest runs; streamed: the response breaks) and the server
/// answers the next request.
#[test]
fn a_large_body_streams_through_a_p3_handler_both_ways_under_the_body_limit() {
    let server = Served::start(&["--max-body-bytes", "101MiB", guests::P3_HTTP]);
    let addr = server.addr;
    let (before, _) = memory_kb(&server);
    runtime().block_on(async move {
        let mut sender = h2(addr).await;
        let (body, sent) = generated_body(100);
        let req = hyper::Request::post(format!("http://{addr}/echo")).body(body).unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        let (mut sha, mut received) = (Sha256::new(), 0usize);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                received += data.len();
                sha.update(&data);
            }
        }
        assert_eq!(received, 100 << 20);
        assert_eq!(<[u8; 32]>::from(sha.finalize()), sent, "the echoed body differs from the one sent");
    });
    let (_, peak) = memory_kb(&server);
    // Held whole, either body alone would add 100 MiB.
    assert!(peak < before + 48 * 1024, "the server grew from {before} kB to a peak of {peak} kB");

    let declared = request(
        addr,
        &format!("POST /echo HTTP/1.1\r\nHost: l\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 102u64 << 20),
    );
    assert_eq!(declared.0, 413);
    runtime().block_on(async move {
        let mut sender = h2(addr).await;
        let (body, _) = generated_body(110);
        let req = hyper::Request::post(format!("http://{addr}/echo")).body(body).unwrap();
        // The guest answered before the body was over the limit; the response must not
        // then end as if it were whole.
        let outcome = match sender.send_request(req).await {
            Ok(res) if res.status() == 200 => {
                res.into_body().collect().await.map(|b| b.to_bytes().len()).map_err(|_| ())
            }
            Ok(res) => Ok(usize::from(res.status().as_u16())),
            Err(_) => Err(()),
        };
        assert!(outcome.is_err() || outcome == Ok(413), "a body over the limit was answered: {outcome:?}");
    });
    assert_eq!(get(addr, "/after").1, "p3 hello from /after; request #1 of this instance");
}

#[test]
fn a_p3_handler_trapping_mid_body_or_running_over_its_time_fails_that_request_only() {
    let server = Served::start(&["--metrics-listen", "127.0.0.1:0", "--timeout", "1s", guests::P3_HTTP]);
    let addr = server.addr;
    runtime().block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("/trap-mid-body").header("host", "l").body(Full::<Bytes>::default()).unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200, "the headers went out before the trap");
        let mut body = res.into_body();
        let mut received = 0;
        let broken = loop {
            match body.frame().await {
                Some(Ok(frame)) => received += frame.into_data().map_or(0, |d| d.len()),
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(broken, "a body cut short by a trap ended as if whole after {received} bytes");
    });
    // A trap before the response is a 500, a guest over its time a 504; the host keeps serving.
    assert_eq!(get(addr, "/trap"), (500, "internal error".into()));
    assert_eq!(get(addr, "/spin"), (504, "the handler took too long".into()));
    assert_eq!(get(addr, "/after"), (200, "p3 hello from /after; request #1 of this instance".into()));
    let log = server.stderr();
    assert!(log.contains("component `p3-http` stopped") && log.contains("asked to trap mid-body"), "{log}");
    let (_, metrics) = get(server.metrics.unwrap(), "/metrics");
    assert!(metrics.contains("membrane_traps_total{component=\"p3-http\",kind=\"unreachable\"} 2"), "{metrics}");
    assert!(metrics.contains("membrane_traps_total{component=\"p3-http\",kind=\"timeout\"} 1"), "{metrics}");
    assert!(metrics.contains("membrane_instantiations_total{component=\"p3-http\"} 4"), "{metrics}");
}

#[test]
fn tenants_throttle_and_narrow_the_limits_of_a_p3_handler() {
    let app = TestApp::new(
        r#"[app]
name = "p3-tenants"

[component.web]
source = "{p3-http}"
limits = { memory = "128MiB" }

[[route]]
path = "/"
component = "web"

[tenant.small]
hosts = ["small.localhost"]
memory = "32MiB"

[tenant.limited]
hosts = ["limited.localhost"]
requests_per_second = 1
burst = 2
"#,
    );
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    let host_get = |host: &str, path: &str| {
        request(server.addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
    };
    assert_eq!(host_get("other.localhost", "/alloc?mib=64"), (200, "allocated 64 MiB".into()));
    assert_eq!(host_get("small.localhost", "/alloc?mib=64").0, 500, "the tenant's memory limit did not hold");
    assert_eq!(host_get("small.localhost", "/alloc?mib=8"), (200, "allocated 8 MiB".into()));
    let statuses: Vec<u16> = (0..6).map(|_| host_get("limited.localhost", "/x").0).collect();
    assert!(statuses.contains(&429) && statuses.contains(&200), "{statuses:?}");
    server.assert_log("memory limit", |log| log.contains("memory limit"));
}

/// A plain HTTP upstream on loopback that answers every request with `body`.
fn upstream(body: &'static str) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let response =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = std::io::Write::write_all(&mut stream, response.as_bytes());
        }
    });
    addr
}

/// `wasi:http/client@0.3.0` goes through the same allowlist, address vetting and audit as
/// WASI 0.2's outgoing-handler.
#[test]
fn the_outbound_allowlist_holds_for_a_p3_handler() {
    let up = upstream("from upstream");
    let port = up.port();
    let audit = tempfile::tempdir().unwrap();
    let log = audit.path().join("audit.jsonl");
    let server = Served::start(&[
        "--allow-http",
        &format!("http://127.0.0.1:{port}"),
        "--allow-http",
        &format!("http://localhost:{port}"),
        "--audit-log",
        log.to_str().unwrap(),
        guests::P3_HTTP,
    ]);
    let fetch = |url: &str| get(server.addr, &format!("/fetch?url={url}")).1;
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/x")), "upstream 200: from upstream");
    // A granted name that resolves to loopback is refused: only the IP literal reaches it.
    assert_eq!(fetch(&format!("http://localhost:{port}/x")), "denied: ErrorCode::DestinationIpProhibited");
    for url in [
        format!("http://127.0.0.1:{}/x", port.wrapping_add(1)),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://0177.0.0.1:{port}/x"),
    ] {
        assert_eq!(fetch(&url), "denied: ErrorCode::HttpRequestDenied", "{url}");
    }
    let events = std::fs::read_to_string(&log).unwrap();
    assert!(events.contains(r#""event":"granted""#) && events.contains(&format!("127.0.0.1:{port}")), "{events}");
    assert!(events.contains(r#""event":"denied""#) && events.contains("169.254.169.254"), "{events}");
    server.assert_log("fix naming the metadata address", |log| {
        log.contains("add \\\"http://169.254.169.254:80\\\"") || log.contains("add \"http://169.254.169.254:80\"")
    });
}

/// `--watch` and `membrane swap` replace a WASI 0.2 handler with a WASI 0.3 one (on an
/// engine made for it) and back, while the server keeps answering.
#[test]
fn watch_and_swap_move_between_a_p2_and_a_p3_handler() {
    let app = TestApp::new(
        "[app]\nname = \"swap\"\n\n[component.web]\nsource = \"{http-hello}\"\n\n[[route]]\npath = \"/\"\ncomponent = \"web\"\n",
    );
    let manifest = app.manifest();
    let server = Served::start(&[manifest.to_str().unwrap(), "--watch"]);
    assert!(get(server.addr, "/a").1.starts_with("hello from /a"));
    // The running engine has no component-model async: the swap brings one.
    let swap = |file: &str| {
        crate::util::membrane()
            .args(["swap", "--admin", &format!("http://{}", server.admin.unwrap()), "--token-file"])
            .arg(server.admin_token_file.as_ref().expect("serve generated a token file"))
            .args(["web", file])
            .output()
            .unwrap()
    };
    let out = swap(guests::P3_HTTP);
    assert!(out.status.success(), "swap: {}", String::from_utf8_lossy(&out.stderr));
    assert!(get(server.addr, "/d").1.starts_with("p3 hello from /d"));
    let out = swap(guests::HTTP_HELLO);
    assert!(out.status.success(), "swap back: {}", String::from_utf8_lossy(&out.stderr));
    assert!(get(server.addr, "/e").1.starts_with("hello from /e"));
    let p2 = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, p2.replace(guests::HTTP_HELLO, guests::P3_HTTP)).unwrap();
    wait_until(|| get(server.addr, "/b").1.starts_with("p3 hello from /b"), &server);
    std::fs::write(&manifest, &p2).unwrap();
    wait_until(|| get(server.addr, "/c").1.starts_with("hello from /c"), &server);
}

#[test]
fn check_and_inspect_accept_a_p3_handler() {
    let app = TestApp::new(
        "[app]\nname = \"p3\"\n\n[component.web]\nsource = \"{p3-http}\"\n\n[[route]]\npath = \"/\"\ncomponent = \"web\"\n",
    );
    app.check(&[]).assert_code(0).assert_stderr_has("ok, the app would start");
    membrane_with(["inspect", guests::P3_HTTP])
        .assert_code(0)
        .assert_stdout_has("wasi:http/handler@0.3.0")
        .assert_stdout_has("handle: async func(request: request) -> result<response, error-code>")
        .assert_stdout_has("wasi:http/client@0.3.0")
        .assert_stdout_has("--allow-http");
}

fn wait_until(mut done: impl FnMut() -> bool, server: &Served) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out; server log:\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// auth (a `wasi:http/middleware` component) -> web (a WASI 0.3 handler), linked by a
/// `[[link]]`: each hop its own fresh instance, the bodies streaming through both.
#[test]
fn a_middleware_chain_serves_each_hop_in_its_own_instance_with_bodies_streaming_through() {
    let app = TestApp::new(
        r#"[app]
name = "chain"

[component.auth]
source = "{p3-middleware}"

[component.web]
source = "{p3-http}"

[[link]]
from = "auth"
import = "wasi:http/handler@0.3.0"
to = "web"

[[route]]
path = "/"
component = "auth"
"#,
    );
    app.check(&[]).assert_code(0).assert_stdout_has("wasi:http/handler@0.3.0 -> web");
    let retried = TestApp::new(
        &std::fs::read_to_string(app.manifest())
            .unwrap()
            .replace("to = \"web\"", "to = \"web\"\non_trap = \"retry:2\""),
    );
    retried.check(&[]).assert_code(79).assert_stderr_has("on_trap and circuit do not apply to a hop");
    // The next hop must be a WASI 0.3 handler: a WASI 0.2 one is named as the problem.
    let to_p2 = std::fs::read_to_string(app.manifest()).unwrap().replace(guests::P3_HTTP, guests::HTTP_HELLO);
    TestApp::new(&to_p2)
        .check(&[])
        .assert_code(79)
        .assert_stderr_has("component `web` does not export wasi:http/handler@0.3.0");
    let server = Served::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--max-body-bytes",
        "64MiB",
        app.manifest().to_str().unwrap(),
    ]);
    let addr = server.addr;
    let with_token = |path: &str| {
        request(addr, &format!("GET {path} HTTP/1.1\r\nHost: l\r\nx-token: open-sesame\r\nConnection: close\r\n\r\n"))
    };
    // The middleware answers by itself: the next handler is never made.
    assert_eq!(get(addr, "/x"), (401, "the middleware wants x-token".into()));
    let (_, metrics) = get(server.metrics.unwrap(), "/metrics");
    assert!(metrics.contains("membrane_instantiations_total{component=\"web\"} 0"), "{metrics}");
    assert_eq!(with_token("/hello"), (200, "p3 hello from /hello; request #1 of this instance".into()));
    assert_eq!(with_token("/again"), (200, "p3 hello from /again; request #1 of this instance".into()));
    runtime().block_on(async move {
        let mut sender = h2(addr).await;
        let (body, sent) = generated_body(16);
        let req = hyper::Request::post(format!("http://{addr}/echo")).header("x-token", "open-sesame").body(body);
        let res = sender.send_request(req.unwrap()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-middleware"], "passed");
        let received = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(received.len(), 16 << 20);
        assert_eq!(<[u8; 32]>::from(Sha256::digest(&received)), sent, "the body changed on its way through the chain");
    });
    // A fault in the next hop fails that request alone.
    assert_eq!(with_token("/trap"), (500, "internal error".into()));
    let broken = runtime().block_on(async move {
        let mut sender = h2(addr).await;
        let req = hyper::Request::get(format!("http://{addr}/trap-mid-body")).header("x-token", "open-sesame");
        let res = sender.send_request(req.body(http_body_util::Empty::new().map_err(|n| match n {}).boxed()).unwrap());
        res.await.unwrap().into_body().collect().await.is_err()
    });
    assert!(broken, "a body cut short by a trap in the next hop ended as if whole");
    assert_eq!(with_token("/after"), (200, "p3 hello from /after; request #1 of this instance".into()));
    let (_, metrics) = get(server.metrics.unwrap(), "/metrics");
    assert!(metrics.contains("membrane_instantiations_total{component=\"web\"} 6"), "{metrics}");
    assert!(metrics.contains("membrane_instantiations_total{component=\"auth\"} 7"), "{metrics}");
    server.assert_log("trap", |log| log.contains("asked to trap mid-body"));
    // The hop is counted like any link: 6 calls, the 2 traps among them.
    let status = crate::util::membrane()
        .args(["status", "--json", "--admin", &format!("http://{}", server.admin.unwrap()), "--token-file"])
        .arg(server.admin_token_file.as_ref().expect("serve generated a token file"))
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let hop = &status["stats"]["links"][0];
    assert_eq!((hop["from"].as_str(), hop["to"].as_str()), (Some("auth"), Some("web")), "{status}");
    assert_eq!((hop["calls"].as_u64(), hop["errors"].as_u64()), (Some(6), Some(2)), "{status}");
}

/// Three hops: each middleware's next handler is itself a middleware, up to the app.
#[test]
fn a_chain_of_two_middlewares_passes_through_both() {
    let app = TestApp::new(
        r#"[app]
name = "chain3"

[component.outer]
source = "{p3-middleware}"

[component.inner]
source = "{p3-middleware}"

[component.web]
source = "{p3-http}"

[[link]]
from = "outer"
import = "wasi:http/handler@0.3.0"
to = "inner"

[[link]]
from = "inner"
import = "wasi:http/handler@0.3.0"
to = "web"

[[route]]
path = "/"
component = "outer"
"#,
    );
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    let addr = server.addr;
    let headers = runtime().block_on(async move {
        let mut sender = h2(addr).await;
        let req = hyper::Request::get(format!("http://{addr}/deep")).header("x-token", "open-sesame");
        let res = sender.send_request(req.body(http_body_util::Empty::new().map_err(|n| match n {}).boxed()).unwrap());
        let res = res.await.unwrap();
        let passed: Vec<String> =
            res.headers().get_all("x-middleware").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (passed, String::from_utf8_lossy(&body).trim().to_string())
    });
    assert_eq!(
        headers,
        (
            vec!["passed".to_string(), "passed".to_string()],
            "p3 hello from /deep; request #1 of this instance".to_string()
        )
    );
}

#[test]
fn serving_an_app_without_routes_is_a_manifest_error() {
    let app = TestApp::new("[app]\nname = \"no-routes\"\n\n[component.web]\nsource = \"{p3-http}\"\n");
    membrane_with(["serve", "--listen", "127.0.0.1:0", app.manifest().to_str().unwrap()])
        .assert_code(78)
        .assert_stderr_has("the app has no [[route]]; add one");
}
