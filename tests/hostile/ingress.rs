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
