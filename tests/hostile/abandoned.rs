//! Requests that end early while their component is inside a call to another one: a client
//! that disconnects mid-call, a consumer that never drops the provider resources it holds.
//! Neither may cost a healthy provider its instance, its state or its memory.

use crate::served::Served;
use crate::util::TestApp;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `link-web` at `/` reaching a singleton `provider` through three links, `http-hello` as
/// the neighbour at `/neighbour`.
fn linked_app() -> TestApp {
    let mut components = String::from(
        "[component.web]\nsource = \"{link-web}\"\n\n[component.provider]\nsource = \"{provider}\"\ninstances = \"singleton\"\n",
    );
    for interface in ["counter", "kv", "pace"] {
        components.push_str(&format!(
            "\n[[link]]\nfrom = \"web\"\nimport = \"membrane:test/{interface}@0.1.0\"\nto = \"provider\"\n"
        ));
    }
    crate::served::beside_neighbour(&components, "web", "/", "")
}

/// Sends `GET path` and hangs up after `after`, before the response.
fn disconnect_during(server: &Served, path: &str, after: Duration) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    std::thread::sleep(after);
    drop(stream);
}

/// Polls `path` until it answers `want` (up to 20 s); the last answer otherwise.
fn eventually(server: &Served, path: &str, want: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = server.get(path);
        if answer == (200, want.to_string()) || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn clients_that_disconnect_inside_a_singleton_call_do_not_restart_it_or_lose_its_state() {
    let app = linked_app();
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    assert_eq!(server.get("/count"), (200, "1".to_string()), "{}", server.stderr());
    // More disconnects than the singleton's restart budget (5): each used to discard the
    // instance as if it had failed, and the sixth marked it failed for good.
    for _ in 0..8 {
        disconnect_during(&server, "/wait?ms=300", Duration::from_millis(60));
        server.assert_neighbour_answers();
    }
    // The abandoned waits run on to their end in the provider, which keeps its count.
    assert_eq!(eventually(&server, "/count", "2"), (200, "2".to_string()), "{}", server.stderr());
    let restarts: Vec<_> =
        app.audit().into_iter().filter(|e| e["event"] == "restart" || e["event"] == "failed").collect();
    assert!(restarts.is_empty(), "a disconnect counted against the provider: {restarts:#?}");
    server.assert_neighbour_answers();
    crate::assert_no_host_panic(&server.stderr());
}

#[test]
fn provider_resources_of_consumers_that_end_early_are_dropped_in_the_provider() {
    let app = linked_app();
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    // Handles the consumer never drops: its instance ends with them still open.
    for _ in 0..4 {
        assert_eq!(server.get("/leak?n=50"), (200, "leaked".to_string()), "{}", server.stderr());
    }
    assert_eq!(eventually(&server, "/live", "0"), (200, "0".to_string()), "{}", server.stderr());
    // Handles held by requests whose clients go away mid-call.
    for _ in 0..4 {
        disconnect_during(&server, "/hold?n=25&ms=300", Duration::from_millis(60));
    }
    assert_eq!(eventually(&server, "/live", "0"), (200, "0".to_string()), "{}", server.stderr());
    // A request that drops its handles itself still works, and leaves nothing either.
    assert_eq!(server.get("/hold?n=3&ms=1"), (200, "held 3".to_string()));
    assert_eq!(server.get("/live"), (200, "0".to_string()));
    server.assert_neighbour_answers();
    crate::assert_no_host_panic(&server.stderr());
}

#[test]
fn a_client_gone_mid_body_stops_the_guest_and_frees_its_slot() {
    let app = linked_app();
    // Two requests at a time; the guest's own limit would hold a slot for a minute.
    let server = Served::start(&[app.manifest().to_str().unwrap(), "--max-concurrent", "2"]);
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        write!(stream, "GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut first = [0u8; 1024];
        std::io::Read::read_exact(&mut stream, &mut first).unwrap();
        assert!(String::from_utf8_lossy(&first).starts_with("HTTP/1.1 200"));
    }
    // Both clients are gone; the guests streaming to them must go too, and their slots
    // serve the next requests well before the guests' 30 s timeout.
    assert_eq!(eventually(&server, "/neighbour", "hello from /neighbour; request #1 of this instance").0, 200);
    let (status, body) = server.get("/count");
    assert_eq!((status, body.as_str()), (200, "1"), "{}", server.stderr());
    crate::assert_no_host_panic(&server.stderr());
}

#[test]
fn calls_queued_for_a_busy_instance_time_out_at_their_limit_not_behind_the_whole_queue() {
    for mode in ["pool:1", "singleton"] {
        // One instance of the provider, its links limited to 2.5 s a call (resources live
        // in one instance: kv goes to a singleton of the same provider).
        let mut components = format!(
            "[component.web]\nsource = \"{{link-web}}\"\n\n[component.provider]\nsource = \"{{provider}}\"\n\
             instances = \"{mode}\"\n\n[component.buckets]\nsource = \"{{provider}}\"\ninstances = \"singleton\"\n",
        );
        for (interface, to) in [("counter", "provider"), ("kv", "buckets"), ("pace", "provider")] {
            components.push_str(&format!(
                "\n[[link]]\nfrom = \"web\"\nimport = \"membrane:test/{interface}@0.1.0\"\nto = \"{to}\"\ntimeout = \"2500ms\"\n"
            ));
        }
        let app = crate::served::beside_neighbour(&components, "web", "/", "");
        let server = Served::start(&[app.manifest().to_str().unwrap()]);
        assert_eq!(server.get("/count"), (200, "1".to_string()), "{mode}: {}", server.stderr());
        // Three calls of 2 s each for the one instance: the third used to wait for the other
        // two (about 4 s) and then run its own 2 s, beyond its limit.
        let started = Instant::now();
        let answers: Vec<(u16, Duration)> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..3)
                .map(|_| {
                    scope.spawn(|| {
                        let status = server.get("/wait?ms=2000").0;
                        (status, started.elapsed())
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert!(answers.iter().any(|(status, _)| *status == 200), "{mode}: one call has the instance: {answers:?}");
        assert!(
            answers.iter().any(|(status, _)| *status != 200),
            "{mode}: the last in the queue times out: {answers:?}"
        );
        // Within its limit of waiting and its limit of running (5 s), not the queue's 6 s and more.
        let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
        assert!(slowest < Duration::from_millis(5500), "{mode}: {answers:?}");
        let timeouts: Vec<_> =
            app.audit().into_iter().filter(|e| e["event"] == "trap" && e["what"] == "timeout").collect();
        assert!(!timeouts.is_empty(), "{mode}: the wait is audited as the timeout it is");
        server.assert_neighbour_answers();
    }
}
