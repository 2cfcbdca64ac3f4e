use crate::served::Served;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn twice_the_concurrency_limit_in_slow_clients_leaves_the_server_answering() {
    let server = Served::start(&[
        "--max-concurrent",
        "4",
        "--header-timeout",
        "1s",
        "--request-timeout",
        "2s",
        crate::util::guests::HTTP_HELLO,
    ]);
    // Eight clients that never finish their headers, and eight that send a body one byte
    // at a time and never finish it.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut slow = TcpStream::connect(server.addr).unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: l\r\nX-Slow: ").unwrap();
        held.push(slow);
        let mut body = TcpStream::connect(server.addr).unwrap();
        body.write_all(b"POST /echo HTTP/1.1\r\nHost: l\r\nContent-Length: 1000000\r\n\r\nx").unwrap();
        held.push(body);
    }
    // While the slow bodies hold every slot, the server refuses at once with 503 (and
    // Retry-After) instead of queueing without bound.
    std::thread::sleep(Duration::from_millis(200));
    let during: Vec<u16> = (0..4).map(|i| server.get(&format!("/during{i}")).0).collect();
    assert!(during.iter().all(|s| [200, 503].contains(s)), "{during:?}");
    // Once the header timeout and the request timeout have cut them off, everything is
    // answered again, and every slow connection has been closed by the server.
    std::thread::sleep(Duration::from_millis(2500));
    for i in 0..4 {
        assert_eq!(server.get(&format!("/after{i}")).0, 200, "{}", server.stderr());
    }
    for mut conn in held {
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        assert!(conn.read_to_end(&mut rest).is_ok(), "a slow connection is still open");
    }
}

#[test]
fn a_trailing_dot_or_any_other_spelling_of_a_tenants_host_gets_the_tenants_quota() {
    let app = crate::util::TestApp::new(
        r#"[app]
name = "tenants"

[component.hello]
source = "{http-hello}"

[[route]]
path = "/"
component = "hello"

[tenant.alice]
hosts = ["alice.localhost"]
requests_per_second = 1
burst = 2
"#,
    );
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    let host_get = |host: &str| {
        crate::served::request(server.addr, &format!("GET /q HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).0
    };
    // Each spelling DNS takes for alice's name: fully qualified, upper case, with a port.
    for spelling in ["alice.localhost.", "ALICE.Localhost.", "alice.localhost.:80"] {
        let statuses: Vec<u16> = (0..6).map(|_| host_get(spelling)).collect();
        let throttled = statuses.iter().filter(|s| **s == 429).count();
        assert!(throttled >= 3, "{spelling}: {statuses:?}");
        assert!(statuses.iter().all(|s| [200, 429].contains(s)), "{spelling}: {statuses:?}");
        // A host of no tenant answers meanwhile.
        server.assert_neighbour_answers_at("other.localhost");
    }
    server.assert_neighbour_answers();
}

#[test]
fn content_length_with_transfer_encoding_on_bare_lf_lines_is_refused() {
    let server = Served::start(&[crate::util::guests::HTTP_HELLO]);
    for raw in [
        "POST /echo HTTP/1.1\nHost: l\nContent-Length: 5\nTransfer-Encoding: chunked\n\n5\r\nhello\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: l\nTransfer-Encoding: chunked\r\nContent-Length: 5\n\n5\r\nhello\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\nHost: l\nContent-Length: 5\nTransfer-Encoding: chunked\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        assert_eq!(crate::served::request(server.addr, raw).0, 400, "{raw:?}\n{}", server.stderr());
        server.assert_neighbour_answers();
    }
    // A bare-LF request with one framing is served as before.
    let plain = "POST /echo HTTP/1.1\nHost: l\nContent-Length: 5\nConnection: close\n\nhello";
    assert_eq!(crate::served::request(server.addr, plain), (200, "read 5 bytes".to_string()));
}
