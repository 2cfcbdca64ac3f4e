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

#[test]
fn a_guest_denied_in_a_loop_writes_a_bounded_audit_and_every_denial_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let server = Served::start(&["--audit-log", log.to_str().unwrap(), crate::util::guests::HOSTILE_HTTP]);
    let flood = 5_000;
    let (status, body) = server.get(&format!("/fetch-loop?url=http://elsewhere.example/&count={flood}"));
    assert_eq!((status, body.as_str()), (200, format!("{flood} of {flood} refused").as_str()));
    let lines = || std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect::<Vec<_>>();
    // A burst of 200, and what the loop's time earned at 100 a second.
    let written = lines().len();
    assert!(written < 400, "{written} audit lines for {flood} denials");
    let logged = server.stderr().matches("outbound HTTP denied").count();
    assert!(logged < 400, "{logged} log lines: the log is bounded as the audit is");
    // A second later the next denial is written, after the count of those that were not.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(server.get("/fetch-loop?url=http://elsewhere.example/&count=1").1, "1 of 1 refused");
    let lines = lines();
    let events: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let denied = events.iter().filter(|e| e["event"] == "denied").count();
    let suppressed: usize = events
        .iter()
        .filter(|e| e["event"] == "suppressed")
        .map(|e| e["what"].as_str().unwrap().trim_end_matches(" denied events").parse::<usize>().unwrap())
        .sum();
    assert!(suppressed > 0, "{lines:?}");
    assert_eq!(denied + suppressed, flood + 1, "every denial is written or counted");
}
