//! Interpreted components: a Python handler (componentize-py, ≈18 MB with a pre-initialised
//! interpreter heap) and a JavaScript one (componentize-js, ≈14 MB with an embedded engine)
//! serve under `membrane serve`, start every request from their pristine image, hot-swap
//! and stay within their memory limits, like Rust ones.

use crate::ops::{admin_cli, web_app};
use crate::util::{Served, interpreted_guest, request};
use std::net::SocketAddr;

/// Both interpreted guests, with the word each says it is written in.
fn guests() -> [(String, &'static str); 2] {
    [(interpreted_guest("py-hello"), "python"), (interpreted_guest("js-hello"), "javascript")]
}

/// `GET path` with `Host: host` over a fresh connection: status and body (trimmed).
fn get_as(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let (status, body) = request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
    (status, body.trim().to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_as(addr, "localhost", path)
}

/// An app serving `web` at `/` from `source` with `extra` TOML lines for the component,
/// and the tenants alice and mallory by host.
fn tenant_app(dir: &std::path::Path, source: &str, extra: &str) -> String {
    let manifest = dir.join("membrane.toml");
    std::fs::write(
        &manifest,
        format!(
            "[app]\nname = \"interpreted\"\n\n[component.web]\nsource = {source:?}\n{extra}\n\n\
             [[route]]\npath = \"/\"\ncomponent = \"web\"\n\n\
             [tenant.alice]\nhosts = [\"alice.localhost\"]\n\n[tenant.mallory]\nhosts = [\"mallory.localhost\"]\n"
        ),
    )
    .unwrap();
    manifest.to_str().unwrap().to_string()
}

#[test]
fn python_and_javascript_handlers_start_every_request_from_the_pristine_image() {
    for (source, language) in guests() {
        let dir = tempfile::tempdir().unwrap();
        let server = Served::start(&[tenant_app(dir.path(), &source, "").as_str()]);
        let addr = server.addr;
        // Each request leaves a secret in the interpreter's globals; whichever request comes
        // next, of the same tenant, another or none, must find the globals as built.
        let hosts = ["mallory.localhost", "alice.localhost", "localhost"];
        for (i, host) in hosts.iter().cycle().take(12).enumerate() {
            let secret = format!("canary-{language}-{i}");
            assert_eq!(get_as(addr, host, &format!("/set?secret={secret}")), (200, format!("stored {secret}")));
            for reader in hosts {
                assert_eq!(
                    get_as(addr, reader, "/get"),
                    (200, "secret: none".into()),
                    "{language}: {reader} after {host}"
                );
            }
            let hello = format!("hello from /n{i} ({language}); request #1 of this instance");
            assert_eq!(get_as(addr, host, &format!("/n{i}")), (200, hello), "{}", server.stderr());
        }
        // A trap is contained: the next request gets a fresh instance that answers.
        assert_eq!(get(addr, "/trap").0, 500, "{language}");
        assert_eq!(get(addr, "/get"), (200, "secret: none".into()), "{language}");
    }
}

#[test]
fn with_instance_reuse_the_canary_is_seen_so_the_isolation_check_can_fail() {
    for (source, language) in guests() {
        // Reuse trades isolation for speed: the same instance answers the next request and
        // still holds the secret, which is what the canary above would catch.
        let server = Served::start(&["--max-instance-reuse", "2", &source]);
        assert_eq!(get(server.addr, "/set?secret=left-behind"), (200, "stored left-behind".into()));
        assert_eq!(get(server.addr, "/get"), (200, "secret: left-behind".into()), "{language}");
        // Its third request starts a new instance again.
        assert_eq!(get(server.addr, "/get"), (200, "secret: none".into()), "{language}");
    }
}

#[test]
fn python_and_javascript_handlers_hot_swap_like_rust_ones() {
    let [(python, _), (javascript, _)] = guests();
    let dir = tempfile::tempdir().unwrap();
    let server = Served::start(&[web_app(dir.path(), &python).to_str().unwrap()]);
    let says = |path: &str| get(server.addr, path).1;
    assert_eq!(says("/a"), "hello from /a (python); request #1 of this instance");
    for (to, language) in [(&javascript, "javascript"), (&python, "python"), (&javascript, "javascript")] {
        let out = admin_cli(&server, "swap", &["web", to]);
        assert!(out.status.success(), "swap to {language}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(says("/b"), format!("hello from /b ({language}); request #1 of this instance"));
        assert_eq!(says("/get"), "secret: none");
    }
}

#[test]
fn memory_limits_hold_for_python_and_javascript_handlers() {
    for (source, language) in guests() {
        let dir = tempfile::tempdir().unwrap();
        let app = tenant_app(dir.path(), &source, "limits = { memory = \"96MiB\" }");
        let server = Served::start(&[app.as_str()]);
        // Within the limit the handler holds what it asks for…
        assert_eq!(get(server.addr, "/grow?mb=8"), (200, "holding 8 MiB".into()), "{language}: {}", server.stderr());
        // …past it, the growth is refused and the request fails alone…
        assert_eq!(get(server.addr, "/grow?mb=200").0, 500, "{language}");
        // …and the next request starts from the pristine image, holding nothing.
        assert_eq!(get(server.addr, "/grow?mb=1"), (200, "holding 1 MiB".into()), "{language}");
    }
}

#[test]
fn spare_instances_made_ahead_still_serve_one_request_each_from_the_pristine_image() {
    for (source, language) in guests() {
        let dir = tempfile::tempdir().unwrap();
        let app = tenant_app(dir.path(), &source, "");
        let server = Served::start(&["--spare-instances", "2", app.as_str()]);
        for (i, host) in ["localhost", "alice.localhost"].iter().cycle().take(8).enumerate() {
            let secret = format!("spare-{i}");
            assert_eq!(get_as(server.addr, host, &format!("/set?secret={secret}")), (200, format!("stored {secret}")));
            assert_eq!(get_as(server.addr, host, "/get"), (200, "secret: none".into()), "{language}: {host}");
            let hello = format!("hello from /s{i} ({language}); request #1 of this instance");
            assert_eq!(get_as(server.addr, host, &format!("/s{i}")), (200, hello));
        }
    }
}

/// A WASI 0.3 handler in Python (componentize-py, which builds WASI 0.3 components as its
/// current release stands): served fresh per request like any other, or reused when asked;
/// its body written after it returned the response.
#[test]
fn a_python_wasi_p3_handler_is_served_fresh_per_request_or_reused() {
    let source = interpreted_guest("py-p3-http");
    let fresh = Served::start(&[source.as_str()]);
    for path in ["/a", "/b"] {
        assert_eq!(get(fresh.addr, path), (200, format!("python p3 hello from {path}; request #1 of this instance")));
    }
    let reused = Served::start(&["--max-instance-reuse", "2", &source]);
    let bodies: Vec<String> = ["/a", "/b"].iter().map(|p| get(reused.addr, p).1).collect();
    assert_eq!(
        bodies,
        [
            "python p3 hello from /a; request #1 of this instance",
            "python p3 hello from /b; request #2 of this instance"
        ]
    );
}
