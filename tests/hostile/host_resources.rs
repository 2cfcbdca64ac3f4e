use crate::served::{Served, hostile_app};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn floods_of_host_resources_trap_at_a_cap_and_host_memory_stays_bounded() {
    let app = hostile_app(r#"timeout = "20s""#);
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    server.assert_neighbour_answers();
    let before = server.rss_kib();
    for attack in ["/evil/fields", "/evil/pollables", "/evil/fields", "/evil/pollables"] {
        assert_eq!(server.get(attack).0, 500, "{attack}; stderr:\n{}", server.stderr());
        server.assert_neighbour_answers();
    }
    let after = server.rss_kib();
    assert!(after < before + 128 * 1024, "RSS grew from {before} KiB to {after} KiB");
    server.wait_for_log("host resource limit reached");

    // get-random-bytes(u64::MAX) is refused, not allocated.
    assert_eq!(server.get("/evil/random").0, 500);
    server.assert_neighbour_answers();
    // 100,000 headers in one `fields`: the host stops it at the fields' size cap.
    assert_eq!(server.get("/evil/headers").0, 500);
    server.assert_neighbour_answers();
    for stopped in ["requested len 18446744073709551615 exceeds limit", "total size of fields exceeds limit"] {
        server.wait_for_log(stopped);
    }
}

#[test]
fn a_stdout_flood_is_cut_off_by_the_wall_clock_with_bounded_host_memory() {
    let app = hostile_app(r#"timeout = "2s""#);
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    let before = server.rss_kib();
    assert_eq!(server.get("/evil/stdout").0, 504, "{}", server.stderr());
    // The guest really wrote, and the host passed it on without holding it.
    let written = server.stdout_bytes.load(Ordering::Relaxed);
    assert!(written > 1 << 20, "only {written} bytes reached stdout");
    let after = server.rss_kib();
    assert!(after < before + 64 * 1024, "RSS grew from {before} KiB to {after} KiB");
    // The flood has stopped: stdout is quiet again.
    std::thread::sleep(Duration::from_millis(300));
    let settled = server.stdout_bytes.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.stdout_bytes.load(Ordering::Relaxed), settled, "the guest is still writing");
    server.assert_neighbour_answers();
}

#[test]
fn requests_abandoned_by_their_clients_give_their_slots_back() {
    // Two slots, and attacks that would hold one for 30 s each if left to run.
    let app = hostile_app(r#"timeout = "30s""#);
    let server = Served::start(&["--max-concurrent", "2", app.manifest().to_str().unwrap()]);
    for attack in ["/evil/block", "/evil/spin", "/evil/block", "/evil/spin", "/evil/block", "/evil/spin"] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        write!(stream, "GET {attack} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(stream);
    }
    // The slots come back as soon as the server sees the clients gone, not after 30 s.
    let started = Instant::now();
    let status = loop {
        let status = server.get("/neighbour").0;
        if status == 200 || started.elapsed() > Duration::from_secs(10) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "the abandoned requests kept their slots; stderr:\n{}", server.stderr());
    server.assert_neighbour_answers();
}

#[test]
fn a_fresh_instance_never_sees_what_an_earlier_one_or_another_tenant_left() {
    let tenants =
        "\n[tenant.alice]\nhosts = [\"alice.localhost\"]\n\n[tenant.mallory]\nhosts = [\"mallory.localhost\"]\n";
    let app = crate::served::hostile_app_and("", "", tenants);
    let server = Served::start(&[app.manifest().to_str().unwrap()]);
    let canary = |host: &str| canary_as(&server, host);
    // Every instance leaves a canary in its data and in freshly grown pages; whichever
    // tenant comes next in that memory slot must find zeros.
    for host in ["mallory.localhost", "alice.localhost"].iter().cycle().take(20) {
        assert_eq!(canary(host), (200, "leftovers: data 0, grown 0".into()), "{host}");
    }
    server.assert_neighbour_answers();
}

#[test]
fn instance_reuse_never_carries_what_a_tenant_left_across_the_tenant_boundary() {
    let app = crate::served::hostile_app_and("", "", "\n[tenant.alice]\nhosts = [\"alice.localhost\"]\n");
    let server = Served::start(&["--max-instance-reuse", "3", app.manifest().to_str().unwrap()]);
    let canary = |host: &str| canary_as(&server, host);
    let clean = (200, "leftovers: data 0, grown 0".to_string());
    // alice's instance leaves a canary behind: no request of another tenant, or of none,
    // may be given that instance.
    assert_eq!(canary("alice.localhost"), clean);
    assert_eq!(canary("localhost"), clean, "an untenanted request read alice's leftovers");
    // Reuse is on: the untenanted instance is given the next untenanted request, which
    // finds its own predecessor's canary (the isolation --max-instance-reuse trades away)…
    assert_eq!(canary("localhost"), (200, "leftovers: data 1048576, grown 0".to_string()));
    // …but never alice's, in the other direction either.
    assert_eq!(canary("alice.localhost"), clean, "alice read an untenanted request's leftovers");
    assert_eq!(canary("alice.localhost"), clean);
    server.assert_neighbour_answers();
}

/// `GET /evil/canary` as `host`: what the hostile guest found left in its memory.
fn canary_as(server: &Served, host: &str) -> (u16, String) {
    crate::served::request(
        server.addr,
        &format!("GET /evil/canary HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}
