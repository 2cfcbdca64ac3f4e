//! Socket grants with the `net-probe` and `hostile-http` guests: a TCP server inside a
//! component, UDP to a host peer, no socket of a protocol without its grant, every
//! denial audited with the grant that would allow it, and the counters served.

use crate::state::http;
use crate::util::{Served, TestApp, guests, membrane, membrane_with};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::time::Duration;

/// `membrane run --audit-log LOG [flags] net-probe <op> <target>`: the probe's last line.
fn probe(log: &Path, flags: &[&str], op: &str, target: &str) -> String {
    let mut args = vec!["run", "--audit-log", log.to_str().unwrap()];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[guests::NET_PROBE, "--", op, target]);
    let out = membrane_with(&args);
    out.assert_code(0);
    out.stdout.lines().last().unwrap_or_default().to_string()
}

/// The audit events in `log` as (event, what, outcome).
fn audited(log: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            let text = |k: &str| e[k].as_str().unwrap().to_string();
            (text("event"), text("what"), text("outcome"))
        })
        .collect()
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `net-probe <op> 127.0.0.1:0` granted that bind, started: the process, its output after
/// the `listening on ADDR` line, and ADDR.
fn listening(log: &Path, flags: &[&str], op: &str) -> (Child, BufReader<ChildStdout>, SocketAddr) {
    let mut child = membrane()
        .args(["run", "--audit-log", log.to_str().unwrap(), "--allow-tcp-bind", "127.0.0.1:0"])
        .args(flags)
        .args([guests::NET_PROBE, "--", op, "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no listening line: {line:?}"))
        .parse()
        .unwrap();
    (child, stdout, addr)
}

#[test]
fn a_guest_tcp_echo_server_on_a_granted_port_answers_a_host_client() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (mut child, mut stdout, addr) = listening(&log, &[], "tcp-echo");

    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let peer = client.local_addr().unwrap();
    client.write_all(b"hello membrane").unwrap();
    let mut echo = [0u8; 14];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"hello membrane");
    client.shutdown(std::net::Shutdown::Write).unwrap();

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert_eq!(rest.trim(), format!("ok: echoed 14 bytes to {peer}"));
    // The bind, the listen and the accepted client (by its address) are in the audit log.
    let events = audited(&log);
    for what in ["TcpBind 127.0.0.1:0".to_string(), format!("TcpListen {addr}"), format!("TcpAccept {peer}")] {
        assert!(events.iter().any(|(e, w, _)| e == "granted" && *w == what), "{what} not audited: {events:?}");
    }
}

#[test]
fn accepted_connections_count_against_the_socket_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (mut child, mut stdout, addr) = listening(&log, &["--max-sockets", "3"], "accept-all");
    // The listener and two connections fill three sockets; a third client waits unaccepted.
    let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert!(rest.trim().starts_with("ok: accepted 2; then"), "{rest}");
    let events = audited(&log);
    assert!(
        events.iter().any(|(e, w, o)| e == "denied" && w == "accept" && o.contains("limits.sockets")),
        "{events:?}"
    );
    drop(clients);
}

#[test]
fn binding_outside_the_grant_is_denied_and_audited_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (granted, other) = (free_port(), free_port());
    let grant = format!("127.0.0.1:{granted}");
    let line = probe(&log, &["--allow-tcp-bind", &grant], "tcp-echo", &format!("127.0.0.1:{other}"));
    assert!(line.starts_with("denied: PermissionDenied"), "{line}");
    let events = audited(&log);
    let want = (
        "denied".to_string(),
        format!("TcpBind 127.0.0.1:{other}"),
        format!("no grants.allow_tcp_bind rule matches; grant it with --allow-tcp-bind 127.0.0.1:{other}"),
    );
    assert!(events.contains(&want), "{events:?}");

    // An outbound grant connects; it does not listen, even on the port it may reach.
    let line = probe(&log, &["--allow-tcp", "127.0.0.0/8"], "tcp-echo", "127.0.0.1:0");
    assert!(line.starts_with("denied: PermissionDenied"), "{line}");
    let events = audited(&log);
    assert!(events.iter().any(|(e, w, _)| e == "denied" && w == "TcpBind 127.0.0.1:0"), "{events:?}");
}

#[test]
fn a_udp_guest_talks_to_a_granted_peer_and_not_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap().to_string();
    peer.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let replier = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        peer.send_to(&[b"pong:", &buf[..n]].concat(), from).unwrap();
        let mut stray = [0u8; 64];
        peer.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        peer.recv_from(&mut stray).is_ok()
    });
    let line = probe(&log, &["--allow-udp", &peer_addr], "udp-ask", &peer_addr);
    assert_eq!(line, format!("ok: pong:ping from {peer_addr}"));

    // Granted another peer only: nothing reaches this one.
    let other = format!("127.0.0.1:{}", free_port());
    let line = probe(&log, &["--allow-udp", &other], "udp-ask", &peer_addr);
    assert!(line.starts_with("denied: PermissionDenied"), "{line}");
    assert!(!replier.join().unwrap(), "a datagram outside the grant reached the peer");

    let events = audited(&log);
    assert!(events.iter().any(|(e, w, _)| e == "granted" && *w == format!("UdpSend {peer_addr}")), "{events:?}");
    assert!(
        events.iter().any(|(e, w, o)| e == "denied"
            && *w == format!("UdpSend {peer_addr}")
            && o.ends_with(&format!("--allow-udp {peer_addr}"))),
        "{events:?}"
    );
    // Binding needs its own grant.
    let line = probe(&log, &["--allow-udp", &other], "udp-bind", "127.0.0.1:0");
    assert!(line.starts_with("denied: PermissionDenied"), "{line}");
    let line = probe(&log, &["--allow-udp-bind", "127.0.0.1:0"], "udp-bind", "127.0.0.1:0");
    assert!(line.starts_with("ok: bound 127.0.0.1:"), "{line}");
}

#[test]
fn a_protocol_without_a_grant_gets_no_socket() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    for protocol in ["tcp", "udp"] {
        assert_eq!(probe(&log, &[], "create", protocol), "ok: refused: access-denied");
    }
    // A grant for one protocol creates no socket of the other.
    assert_eq!(probe(&log, &["--allow-tcp", "127.0.0.1:9"], "create", "udp"), "ok: refused: access-denied");
    assert_eq!(probe(&log, &["--allow-tcp-bind", "127.0.0.1:0"], "create", "tcp"), "ok: created a tcp socket");
    assert_eq!(probe(&log, &["--allow-udp", "127.0.0.1:9"], "create", "tcp"), "ok: refused: access-denied");
    assert_eq!(probe(&log, &["--allow-udp-bind", "127.0.0.1:0"], "create", "udp"), "ok: created a udp socket");
    let events = audited(&log);
    for what in ["create-tcp-socket", "create-udp-socket"] {
        assert!(events.iter().any(|(e, w, _)| e == "denied" && w == what), "{what}: {events:?}");
    }
}

#[test]
fn udp_sockets_count_against_the_socket_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let flags = ["--allow-udp", "127.0.0.1:9", "--max-sockets", "20"];
    assert_eq!(probe(&log, &flags, "flood", "udp"), "ok: created 20 sockets; refused: new-socket-limit");
    assert!(
        audited(&log).iter().any(|(e, w, o)| e == "denied" && w == "create-udp-socket" && o.contains("limits.sockets"))
    );
}

#[test]
fn check_warns_about_a_socket_grant_the_component_cannot_use() {
    let app = TestApp::new(
        "[app]\nname = \"n\"\nentry = \"hello\"\n\n[component.hello]\nsource = \"{hello}\"\n\
         grants = { allow_udp = [\"127.0.0.1:53\"], allow_tcp_bind = [\"127.0.0.1:0\"] }\n",
    );
    let out = app.check(&[]);
    out.assert_code(0)
        .assert_stderr_has("warning: component.hello.grants.allow_udp: `hello` does not import wasi:sockets/udp")
        .assert_stderr_has("warning: component.hello.grants.allow_tcp_bind: `hello` does not import wasi:sockets/tcp");
}

#[test]
fn socket_uses_and_denials_are_counted_per_component() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let granted = peer.local_addr().unwrap().to_string();
    let app = TestApp::new(&format!(
        "[app]\nname = \"n\"\n\n[component.evil]\nsource = \"{{hostile-http}}\"\n\
         grants = {{ allow_udp = [\"{granted}\"] }}\n\n[[route]]\npath = \"/\"\ncomponent = \"evil\"\n"
    ));
    let server = Served::start(&[app.manifest().to_str().unwrap(), "--metrics-listen", "127.0.0.1:0"]);
    let other = format!("127.0.0.1:{}", free_port());
    assert_eq!(http(server.addr, "GET", &format!("/udp-send?to={granted}"), ""), (200, "sent".into()));
    let (status, body) = http(server.addr, "GET", &format!("/udp-send?to={other}"), "");
    assert_eq!(status, 200);
    assert!(body.starts_with("not sent"), "{body}");

    let (_, metrics) = http(server.metrics.unwrap(), "GET", "/metrics", "");
    for line in [
        r#"membrane_socket_uses_total{component="evil",use="udp_send",outcome="granted"} 1"#,
        r#"membrane_socket_uses_total{component="evil",use="udp_send",outcome="denied"} 1"#,
        r#"membrane_socket_uses_total{component="evil",use="tcp_bind",outcome="denied"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in:\n{metrics}");
    }
    let (_, stats) = http(server.admin.unwrap(), "GET", "/api/stats", "");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let sockets = &stats["components"]["evil"]["sockets"];
    assert_eq!((&sockets["granted"]["udp_send"], &sockets["denied"]["udp_send"]), (&1.into(), &1.into()), "{stats}");
}
