use crate::util::{Served, guests, request};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path` over a fresh HTTP/1.1 connection: status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

#[test]
fn routes_by_host_and_longest_prefix_and_404_otherwise() {
    let app = crate::util::TestApp::new(
        r#"[app]
name = "site"

[component.web]
source = "{http-hello}"
grants.env = { WHO = "web" }

[component.api]
source = "{http-hello}"
grants.env = { WHO = "api" }

[component.admin]
source = "{http-hello}"
grants.env = { WHO = "admin" }

[[route]]
path = "/web"
component = "web"

[[route]]
path = "/web/api"
component = "api"

[[route]]
host = "admin.localhost"
path = "/"
component = "admin"
"#,
    );
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    assert_eq!(get(server.addr, "/web/page"), (200, "hello from /web/page (web); request #1 of this instance".into()));
    assert_eq!(get(server.addr, "/web/api/x").1, "hello from /web/api/x (api); request #1 of this instance");
    assert_eq!(get(server.addr, "/other"), (404, "no route".into()));
    let admin = request(server.addr, "GET /web/x HTTP/1.1\r\nHost: admin.localhost:80\r\nConnection: close\r\n\r\n");
    assert_eq!(admin.1, "hello from /web/x (admin); request #1 of this instance");
    // The access log names the route, the component, the status and the bytes sent.
    let find = || {
        let log = server.stderr();
        log.lines().find(|l| l.contains("membrane::access") && l.contains("path=\"/web/page\"")).map(str::to_string)
    };
    // The entry is written once the body is sent, and read from the child's stderr.
    let line = (0..50)
        .find_map(|_| {
            find().or_else(|| {
                std::thread::sleep(Duration::from_millis(50));
                None
            })
        })
        .unwrap_or_else(|| panic!("no access log line in {}", server.stderr()));
    let bytes = format!("bytes={}", "hello from /web/page (web); request #1 of this instance\n".len());
    for field in ["route=\"/web\"", "component=\"web\"", "status=200", bytes.as_str(), "method=\"GET\""] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

#[test]
fn every_request_gets_a_fresh_instance_over_keep_alive_and_http2() {
    let server = Served::start(&[guests::HTTP_HELLO]);
    let addr = server.addr;
    runtime().block_on(async move {
        // 100 requests over one HTTP/1.1 keep-alive connection.
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        for i in 0..100 {
            sender.ready().await.unwrap();
            let req = hyper::Request::get(format!("/n{i}"))
                .header("host", "localhost")
                .body(Full::<Bytes>::default())
                .unwrap();
            let res = sender.send_request(req).await.unwrap();
            assert_eq!(res.status(), 200);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(String::from_utf8_lossy(&body).trim(), format!("hello from /n{i}; request #1 of this instance"));
        }
        // HTTP/2 with prior knowledge (h2c).
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{addr}/h2")).body(Full::<Bytes>::default()).unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.version(), hyper::Version::HTTP_2);
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&body).trim(), "hello from /h2; request #1 of this instance");
    });
}

/// A plain HTTP upstream on loopback that answers every request with `body`, or with a
/// redirect when the path is `/redirect?to=URL`.
fn upstream(body: &'static str) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let target = head.split(' ').nth(1).unwrap_or("/").to_string();
            let response = match target.strip_prefix("/redirect?to=") {
                Some(to) => {
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                }
                None => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (addr, handle)
}

#[test]
fn outbound_http_reaches_only_granted_vetted_addresses() {
    let (up, _thread) = upstream("from upstream");
    let port = up.port();
    let granted = format!("http://127.0.0.1:{port}");
    let by_name = format!("http://localhost:{port}");
    let server = Served::start(&[
        "--allow-http",
        &granted,
        "--allow-http",
        &by_name,
        "--allow-http",
        "http://example.com",
        guests::HTTP_HELLO,
    ]);
    let fetch = |url: &str| get(server.addr, &format!("/fetch?url={url}")).1;

    // Granted by IP literal: allowed.
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/x")), "upstream 200: from upstream");
    // Granted by a name that resolves to loopback: refused, only the IP literal reaches it.
    assert_eq!(fetch(&format!("http://localhost:{port}/x")), "denied: ErrorCode::DestinationIpProhibited");
    // Not granted: refused, whatever the spelling.
    for url in [
        format!("http://127.0.0.1:{}/x", port.wrapping_add(1)),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://[::ffff:7f00:1]:{}/x", port.wrapping_add(1)),
        "http://10.0.0.1/".to_string(),
        // Decimal and octal spellings of 127.0.0.1 are names, and no grant names them.
        format!("http://2130706433:{port}/x"),
        format!("http://0177.0.0.1:{port}/x"),
        "http://not-granted.example.org/".to_string(),
    ] {
        assert_eq!(fetch(&url), "denied: ErrorCode::HttpRequestDenied", "{url}");
    }
    // A redirect off the allowlist is refused at the next hop.
    let redirect = format!("http://127.0.0.1:{port}/redirect?to=http://127.0.0.2:{port}/");
    assert_eq!(fetch(&redirect), "denied: ErrorCode::HttpRequestDenied");
    server.assert_log("fix naming the redirect's target", |log| {
        log.contains("add \\\"http://127.0.0.2:") || log.contains("add \"http://127.0.0.2:")
    });
}

#[test]
fn ingress_limits_answer_with_their_status_codes() {
    let server = Served::start(&[
        "--max-url-bytes",
        "256",
        "--max-body-bytes",
        "1KiB",
        "--max-header-bytes",
        "8KiB",
        "--header-timeout",
        "500ms",
        guests::HTTP_HELLO,
    ]);
    let addr = server.addr;
    assert_eq!(get(addr, &format!("/{}", "a".repeat(300))).0, 414);
    let big = "x".repeat(2048);
    let declared = request(
        addr,
        &format!("POST /echo HTTP/1.1\r\nHost: l\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n{big}"),
    );
    assert_eq!(declared.0, 413);
    let small = request(addr, "POST /echo HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    assert_eq!(small, (200, "read 5 bytes".into()));
    // Chunked, no length declared: refused while streaming.
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n800\r\n{big}\r\n0\r\n\r\n"
    );
    assert_eq!(request(addr, &chunked).0, 413);
    let huge_header =
        format!("GET / HTTP/1.1\r\nHost: l\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "h".repeat(16 << 10));
    assert_eq!(request(addr, &huge_header).0, 431);
    // Conflicting framing is refused, in whichever order the headers come.
    for conflicting in [
        "POST /echo HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        assert_eq!(request(addr, conflicting).0, 400, "{conflicting:?}");
    }
    // Slowloris: headers that never finish are cut off.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: l\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(4), "the slow connection was not closed");
    // The server still serves.
    assert_eq!(get(addr, "/after").0, 200);
}

#[test]
fn a_trapping_route_fails_alone_under_load_and_memory_stays_bounded() {
    let server = Served::start(&["--request-timeout", "2s", guests::HTTP_HELLO]);
    let addr = server.addr;
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap()
    };
    let (ok, failed) = runtime().block_on(async move {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        let mut ok = 0;
        let mut failed = 0;
        for round in 0..25 {
            let mut calls = Vec::new();
            for i in 0..40 {
                let path = if i % 2 == 0 { "/trap" } else { "/healthy" };
                let client = client.clone();
                let uri: hyper::Uri = format!("http://{addr}{path}?{round}").parse().unwrap();
                calls.push(tokio::spawn(async move { (path, client.get(uri).await.unwrap().status()) }));
            }
            for call in calls {
                match call.await.unwrap() {
                    ("/trap", status) => {
                        assert_eq!(status, 500);
                        failed += 1;
                    }
                    (_, status) => {
                        assert_eq!(status, 200);
                        ok += 1;
                    }
                }
            }
        }
        (ok, failed)
    });
    assert_eq!((ok, failed), (500, 500));
    let before = rss();
    let trapped = runtime().block_on(async move {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    for _ in 0..1250 {
                        let uri: hyper::Uri = format!("http://{addr}/trap").parse().unwrap();
                        assert_eq!(client.get(uri).await.unwrap().status(), 500);
                    }
                    1250
                })
            })
            .collect();
        let mut total = 0;
        for worker in workers {
            total += worker.await.unwrap();
        }
        total
    });
    let after = rss();
    assert_eq!(trapped, 10_000);
    // 10,000 more trapped requests: the host's memory does not grow with them.
    assert!(after < before + 64 * 1024, "RSS grew from {before} kB to {after} kB");
}

#[test]
fn a_spinning_handler_times_out_and_concurrency_beyond_the_limit_gets_503() {
    let server =
        Served::start(&["--request-timeout", "500ms", "--max-concurrent", "2", "--timeout", "1s", guests::HTTP_HELLO]);
    let addr = server.addr;
    assert_eq!(get(addr, "/spin").0, 504);
    // The abandoned handler gives its slot back at its next epoch tick, just after the 504.
    std::thread::sleep(Duration::from_millis(100));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..6).map(|_| scope.spawn(move || get(addr, "/slow?ms=400").0)).collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(statuses.iter().filter(|s| **s == 200).count() >= 2, "{statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    // Afterwards the server answers as before.
    assert_eq!(get(addr, "/again").0, 200);
}

#[test]
fn sigterm_drains_a_request_in_flight_and_exits_cleanly() {
    let mut server = Served::start(&[guests::HTTP_HELLO]);
    let addr = server.addr;
    let slow = std::thread::spawn(move || get(addr, "/slow?ms=1000"));
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert_eq!(slow.join().unwrap(), (200, "slept 1000 ms".into()));
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(TcpStream::connect(addr).is_err(), "still accepting after shutdown");
}

#[test]
fn the_docs_web_example_renders_falls_back_and_contains_faults() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs-web/membrane.toml");
    let server = Served::start(&[manifest.to_str().unwrap()]);
    let addr = server.addr;
    let (status, html) = get(addr, "/?doc=%23+Hello%0AThis+is+*fancy*");
    assert_eq!(status, 200);
    assert!(html.contains("rendered by the fancy plugin; it sees 0 env vars; files: denied"), "{html}");
    assert!(html.contains("<h1>Hello</h1>") && html.contains("<em>fancy</em>"), "{html}");
    let (status, html) = get(addr, "/?doc=%3Cscript%3Ealert(1)%3C/script%3E");
    assert_eq!(status, 200);
    assert!(html.contains("rendered by the plain fallback") && html.contains("&lt;script&gt;"), "{html}");
    assert_eq!(get(addr, "/hello/world").1, "hello from /hello/world (the hello handler); request #1 of this instance");
    assert_eq!(
        get(addr, "/hello/fetch?url=http://169.254.169.254/latest/meta-data/").1,
        "denied: ErrorCode::HttpRequestDenied"
    );
    assert_eq!(get(addr, "/hello/trap"), (500, "internal error".into()));
    assert_eq!(get(addr, "/hello/after").0, 200);
}

#[test]
fn a_tenant_over_its_quota_is_throttled_while_another_is_not() {
    let app = crate::util::TestApp::new(
        r#"[app]
name = "tenants"

[component.hello]
source = "{http-hello}"

[[route]]
path = "/"
component = "hello"

[tenant.limited]
hosts = ["limited.localhost"]
requests_per_second = 2
burst = 4

[tenant.single]
hosts = ["single.localhost"]
max_concurrent = 1

[tenant.free]
hosts = ["free.localhost"]
"#,
    );
    let server = Served::start(&["--metrics-listen", "127.0.0.1:0", app.manifest().to_str().unwrap()]);
    let addr = server.addr;
    let host_get = |host: &str, path: &str| {
        request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).0
    };
    let (limited, free): (Vec<u16>, Vec<u16>) = std::thread::scope(|scope| {
        let limited: Vec<_> = (0..20).map(|_| scope.spawn(|| host_get("limited.localhost", "/x"))).collect();
        let free: Vec<_> = (0..20).map(|_| scope.spawn(|| host_get("free.localhost", "/x"))).collect();
        (
            limited.into_iter().map(|c| c.join().unwrap()).collect(),
            free.into_iter().map(|c| c.join().unwrap()).collect(),
        )
    });
    assert!(free.iter().all(|s| *s == 200), "{free:?}");
    let throttled = limited.iter().filter(|s| **s == 429).count();
    assert!(throttled >= 10, "{limited:?}");
    assert!(limited.iter().all(|s| *s == 200 || *s == 429), "{limited:?}");

    let single: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..3).map(|_| scope.spawn(|| host_get("single.localhost", "/slow?ms=300"))).collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(single.contains(&200) && single.contains(&503), "{single:?}");

    // The metrics show what happened.
    host_get("free.localhost", "/trap");
    let (status, text) = get(server.metrics.unwrap(), "/metrics");
    assert_eq!(status, 200);
    assert!(text.contains("membrane_http_requests_total{route=\"/\",status=\"200\"}"), "{text}");
    assert!(text.contains("membrane_tenant_throttled_total{tenant=\"limited\",reason=\"rate\"}"), "{text}");
    assert!(text.contains("membrane_tenant_throttled_total{tenant=\"single\",reason=\"concurrency\"}"), "{text}");
    assert!(text.contains("membrane_traps_total{component=\"hello\",kind=\"unreachable\"} 1"), "{text}");
    assert!(text.contains("membrane_http_request_duration_seconds_count"), "{text}");
    assert!(text.contains("membrane_instantiations_total{component=\"hello\"}"), "{text}");
}

#[test]
fn with_instance_reuse_on_an_instance_serves_several_requests() {
    let server = Served::start(&["--max-instance-reuse", "3", guests::HTTP_HELLO]);
    let bodies: Vec<String> = (0..6).map(|i| get(server.addr, &format!("/r{i}")).1).collect();
    let counts: Vec<&str> = bodies.iter().map(|b| b.rsplit("request #").next().unwrap()).collect();
    assert_eq!(
        counts,
        [
            "1 of this instance",
            "2 of this instance",
            "3 of this instance",
            "1 of this instance",
            "2 of this instance",
            "3 of this instance"
        ]
    );
}
