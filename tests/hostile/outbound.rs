use crate::served::Served;
use std::io::{Read, Write};
use std::net::TcpListener;

/// A plain HTTP upstream on loopback answering 200 to whatever comes.
fn upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    addr
}

#[test]
fn restricted_addresses_are_refused_in_every_spelling() {
    let up = upstream();
    let port = up.port();
    // A wildcard grant and a public name: neither covers a restricted address.
    let server = Served::start(&[
        "--allow-http",
        "http://*.example.com",
        "--allow-http",
        "http://example.com",
        "--allow-http",
        &format!("http://127.0.0.1:{port}"),
        crate::util::guests::HOSTILE_HTTP,
    ]);
    let fetch = |url: &str| server.get(&format!("/fetch?url={url}")).1;
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/")), "timeouts accepted: None; upstream 200");
    for host in [
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.2]",
        "[::ffff:7f00:2]",
        "127.1",
        "0x7f.0.0.1",
        "0x7f000001",
        "2130706433",
        "017700000001",
        "0.0.0.0",
        "0",
        "[::]",
        "localhost",
        "LOCALHOST.",
        "169.254.169.254",
        "[::ffff:169.254.169.254]",
        "[fd00:ec2::254]",
        "100.100.100.200",
        "metadata.google.internal",
        "10.0.0.1",
        "192.168.0.1",
        "[fe80::1]",
        "[64:ff9b::7f00:1]",
        "example.com.127.0.0.1.nip.io",
        "127.0.0.1.example.org",
    ] {
        let line = fetch(&format!("http://{host}:{port}/"));
        assert!(line.ends_with("HttpRequestDenied") || line.ends_with("DestinationIpProhibited"), "{host}: {line}");
    }
    // Granted by name (through the wildcard), but the name is not what it seems: the
    // request's Host is `x.example.com` only if the guest connects there, never to an
    // address the name was not vetted for.
    let line = fetch("http://internal.example.com:80/");
    assert!(!line.contains("upstream 200"), "{line}");
    let (status, body) = server.get("/neighbour");
    assert_eq!((status, body.as_str()), (200, "healthy"));
}

#[test]
fn guest_timeouts_of_zero_and_forever_do_not_break_the_host() {
    let up = upstream();
    let granted = format!("http://{up}");
    let app_timeout = ["--timeout", "2s"];
    let server =
        Served::start(&[app_timeout[0], app_timeout[1], "--allow-http", &granted, crate::util::guests::HOSTILE_HTTP]);
    // Zero: the request cannot connect in no time, or it just makes it; either way an answer.
    let line = server.get(&format!("/fetch?url=http://{up}/&timeout-ns=0")).1;
    assert!(line.starts_with("timeouts accepted: Some("), "{line}");
    // 584 years: clamped to the component's own limit, no overflow.
    let line = server.get(&format!("/fetch?url=http://{up}/&timeout-ns={}", u64::MAX)).1;
    assert_eq!(line, "timeouts accepted: Some(true); upstream 200");
    crate::assert_no_host_panic(&server.stderr());
    assert_eq!(server.get("/neighbour"), (200, "healthy".to_string()));
}

#[test]
fn forbidden_headers_cannot_be_set() {
    let server = Served::start(&[crate::util::guests::HOSTILE_HTTP]);
    assert_eq!(server.get("/forbidden").1, "forbidden headers accepted: []");
    assert_eq!(server.get("/neighbour"), (200, "healthy".to_string()));
}
