//! State behind the membrane: wasi:keyvalue bucket grants and app namespaces on the
//! embedded store and on a real redis-server, durability across SIGKILL, per-component
//! wasi:config with secrets kept out of logs and audit, and several nodes sharing one
//! Redis behind nginx while one of them is killed.

use crate::external;
use crate::util::{Served, membrane, try_request, with_guests};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A `membrane serve` node of an app with its data directory, logging at debug level (so
/// that a secret reaching any log line would show).
pub fn start_node(manifest: &Path, data_dir: &Path, extra: &[&str]) -> Served {
    start_node_env(manifest, data_dir, extra, &[])
}

pub fn start_node_env(manifest: &Path, data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let mut args: Vec<&OsStr> = vec![manifest.as_os_str(), "--data-dir".as_ref(), data_dir.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    Served::start_with(&args, &[env, &[("MEMBRANE_LOG", "debug")]].concat())
}

/// One request over a fresh connection: status and body (status 0 when the connection
/// failed).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    try_request(addr, &raw).unwrap_or((0, "connection failed".into()))
}

/// An app folder: `membrane.toml` for app `name` with `body` (guest placeholders expanded)
/// and its audit log at `audit.jsonl`.
fn app(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let manifest = dir.join("membrane.toml");
    let text = format!("[app]\nname = \"{name}\"\naudit = \"audit.jsonl\"\n{}", with_guests(body));
    std::fs::write(&manifest, text).unwrap();
    manifest
}

fn audit(manifest: &Path) -> String {
    std::fs::read_to_string(manifest.with_file_name("audit.jsonl")).unwrap_or_default()
}

/// Two components of one app share buckets by name with their own access; a third sees
/// none. Every app has its own namespace.
const STATE_APP: &str = r#"
[keyvalue]
max_batch_keys = 50
max_key_size = "64B"
max_value_size = "64KiB"

[component.web]
source = "{state-web}"
grants.keyvalue = [{ bucket = "notes", access = "rw" }, { bucket = "catalog", access = "ro" }]

[component.admin]
source = "{state-web}"
grants.keyvalue = [{ bucket = "catalog", access = "rw" }]

[component.bare]
source = "{state-web}"

[[route]]
path = "/admin"
component = "admin"

[[route]]
path = "/bare"
component = "bare"

[[route]]
path = "/"
component = "web"
"#;

/// Isolation, access, limits and atomicity, on whichever backend `extra` picks.
fn buckets_are_isolated_by_grant_and_app(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alpha = app(&dir.path().join("alpha"), "alpha", STATE_APP);
    let beta = app(&dir.path().join("beta"), "beta", STATE_APP);
    let a = start_node(&alpha, &data, &[extra, &["--metrics-listen", "127.0.0.1:0"]].concat());
    let b = start_node(&beta, &data, extra);

    // Granted rw: write, read, list, delete.
    assert_eq!(http(a.addr, "PUT", "/kv/notes/greeting", "hello from alpha"), (200, "set greeting".into()));
    assert_eq!(http(a.addr, "GET", "/kv/notes/greeting", ""), (200, "hello from alpha".into()));
    assert_eq!(http(a.addr, "PUT", "/kv/notes/other", "x").0, 200);
    assert_eq!(http(a.addr, "GET", "/list/notes", ""), (200, "greeting\nother".into()));
    assert_eq!(http(a.addr, "GET", "/exists/notes/other", ""), (200, "true".into()));
    assert_eq!(http(a.addr, "DELETE", "/kv/notes/other", "").0, 200);
    assert_eq!(http(a.addr, "GET", "/kv/notes/other", "").0, 404);
    assert_eq!(http(a.addr, "GET", "/exists/notes/other", ""), (200, "false".into()));

    // The same bucket name in another app is another bucket, both ways.
    assert_eq!(http(b.addr, "GET", "/kv/notes/greeting", "").0, 404);
    assert_eq!(http(b.addr, "PUT", "/kv/notes/greeting", "hello from beta").0, 200);
    assert_eq!(http(a.addr, "GET", "/kv/notes/greeting", ""), (200, "hello from alpha".into()));
    assert_eq!(http(b.addr, "GET", "/kv/notes/greeting", ""), (200, "hello from beta".into()));

    // Read-only: admin (rw) writes the catalog, web reads it but cannot write it.
    assert_eq!(http(a.addr, "PUT", "/admin/kv/catalog/price", "42").0, 200);
    assert_eq!(http(a.addr, "GET", "/kv/catalog/price", ""), (200, "42".into()));
    assert_eq!(http(a.addr, "PUT", "/kv/catalog/price", "0"), (403, "access-denied".into()));
    assert_eq!(http(a.addr, "POST", "/incr/catalog/price", ""), (403, "access-denied".into()));
    assert_eq!(http(a.addr, "GET", "/kv/catalog/price", ""), (200, "42".into()));

    // Ungranted buckets, and a component with no grants at all.
    assert_eq!(http(a.addr, "GET", "/admin/kv/notes/greeting", ""), (403, "access-denied".into()));
    assert_eq!(http(a.addr, "GET", "/kv/private/x", ""), (403, "access-denied".into()));
    assert_eq!(http(a.addr, "GET", "/bare/kv/notes/greeting", ""), (403, "access-denied".into()));

    let log = audit(&alpha);
    let denied: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "denied")
        .collect();
    let has = |component: &str, what: &str| {
        denied.iter().any(|e| e["component"] == component && e["what"].as_str().unwrap().contains(what))
    };
    assert!(has("web", "keyvalue set in bucket catalog"), "{log}");
    assert!(has("web", "keyvalue increment in bucket catalog"), "{log}");
    assert!(has("web", "open bucket private"), "{log}");
    assert!(has("admin", "open bucket notes"), "{log}");
    assert!(has("bare", "open bucket notes"), "{log}");

    // Granted calls are counted per component, refusals as denials.
    let (_, metrics) = http(a.metrics.unwrap(), "GET", "/metrics", "");
    for line in [
        r#"membrane_keyvalue_calls_total{component="admin"} 2"#,
        r#"membrane_keyvalue_calls_total{component="bare"} 0"#,
        r#"membrane_denials_total{component="bare"} 1"#,
        r#"membrane_denials_total{component="web"} 3"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in:\n{metrics}");
    }

    // Limits: key size, value size and keys per batch.
    let long_key = "k".repeat(65);
    let (status, body) = http(a.addr, "PUT", &format!("/kv/notes/{long_key}"), "x");
    assert_eq!(status, 500);
    assert!(body.contains("max_key_size"), "{body}");
    assert_eq!(http(a.addr, "PUT", "/kv/notes/big", &"v".repeat(65536)).0, 200);
    let (status, body) = http(a.addr, "PUT", "/kv/notes/big", &"v".repeat(65537));
    assert_eq!(status, 500);
    assert!(body.contains("max_value_size"), "{body}");
    assert_eq!(http(a.addr, "POST", "/batch/notes?n=50", ""), (200, "set 50, found 50".into()));
    let (status, body) = http(a.addr, "POST", "/batch/notes?n=51", "");
    assert_eq!(status, 500);
    assert!(body.contains("max_batch_keys"), "{body}");

    // Increment and compare-and-swap stay atomic under concurrent requests.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = a.addr;
            std::thread::spawn(move || {
                for i in 0..10 {
                    assert_eq!(http(addr, "POST", "/incr/notes/hits", "").0, 200);
                    assert_eq!(http(addr, "POST", &format!("/count/notes/visits?id={t}-{i}"), "").0, 200);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(http(a.addr, "GET", "/kv/notes/hits", ""), (200, "80".into()));
    // A retried id counts once.
    assert_eq!(http(a.addr, "POST", "/count/notes/visits?id=0-0", ""), (200, "80".into()));
    assert_eq!(http(a.addr, "POST", "/count/notes/visits?id=new", ""), (200, "81".into()));
    assert_eq!(http(b.addr, "GET", "/kv/notes/hits", "").0, 404);
}

#[test]
fn embedded_buckets_are_isolated_by_grant_and_app() {
    buckets_are_isolated_by_grant_and_app(&[]);
}

#[test]
fn redis_buckets_are_isolated_by_grant_and_app() {
    let redis = external::redis();
    buckets_are_isolated_by_grant_and_app(&["--keyvalue", &redis.redis_url()]);
}

#[test]
fn redis_over_tls_verifies_the_server_certificate() {
    let (redis, ca) = external::redis_tls();
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(&dir.path().join("app"), "tls", STATE_APP);
    let url = format!("rediss://127.0.0.1:{}", redis.addr.port());
    let ca = ca.to_str().unwrap();
    let trusting = start_node_env(&manifest, &dir.path().join("d1"), &["--keyvalue", &url], &[("SSL_CERT_FILE", ca)]);
    assert_eq!(http(trusting.addr, "PUT", "/kv/notes/x", "over tls").0, 200);
    assert_eq!(http(trusting.addr, "GET", "/kv/notes/x", ""), (200, "over tls".into()));

    // A node that trusts other CAs only refuses the server.
    let other_ca = dir.path().join("other-ca.pem");
    let (other, other_pem) = external::redis_tls();
    std::fs::copy(other_pem, &other_ca).unwrap();
    drop(other);
    let env = [("SSL_CERT_FILE", other_ca.to_str().unwrap())];
    let untrusting = start_node_env(&manifest, &dir.path().join("d2"), &["--keyvalue", &url], &env);
    let (status, body) = http(untrusting.addr, "GET", "/kv/notes/x", "");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("redis") && body.contains("certificate"), "{body}");
}

#[test]
fn a_node_started_before_redis_warns_and_serves_state_once_redis_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(&dir.path().join("app"), "early", STATE_APP);
    let port = external::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let node = start_node(&manifest, &dir.path().join("data"), &["--keyvalue", &url]);
    let warning = format!("warning: key-value store {url}");
    for _ in 0..100 {
        if node.stderr().contains(&warning) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(node.stderr().contains(&warning), "{}", node.stderr());
    let (status, body) = http(node.addr, "GET", "/kv/notes/x", "");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("redis"), "{body}");

    let _redis = external::redis_on(port);
    assert_eq!(http(node.addr, "PUT", "/kv/notes/x", "late").0, 200);
    assert_eq!(http(node.addr, "GET", "/kv/notes/x", ""), (200, "late".into()));
}

#[test]
fn embedded_writes_acknowledged_before_sigkill_are_there_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let manifest = app(&dir.path().join("app"), "durable", STATE_APP);
    let mut node = start_node(&manifest, &data, &[]);
    for i in 0..40 {
        assert_eq!(http(node.addr, "PUT", &format!("/kv/notes/key{i}"), &format!("value {i}")).0, 200);
    }
    assert_eq!(http(node.addr, "POST", "/incr/notes/counter?by=7", ""), (200, "7".into()));
    node.kill();

    let node = start_node(&manifest, &data, &[]);
    for i in 0..40 {
        assert_eq!(http(node.addr, "GET", &format!("/kv/notes/key{i}"), ""), (200, format!("value {i}")));
    }
    assert_eq!(http(node.addr, "POST", "/incr/notes/counter", ""), (200, "8".into()));
}

#[test]
fn a_second_process_on_the_same_embedded_store_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let manifest = app(&dir.path().join("app"), "single", STATE_APP);
    let _first = start_node(&manifest, &data, &[]);
    let out = membrane()
        .arg("serve")
        .arg(&manifest)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("another membrane process") && stderr.contains("redis://"), "{stderr}");
}

#[test]
fn config_is_per_component_and_secrets_stay_out_of_logs_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let app_dir = dir.path().join("app");
    std::fs::create_dir_all(&app_dir).unwrap();
    let secret = "tok-5f3a9c-very-secret";
    let region = "eu-north-secret-region";
    std::fs::write(app_dir.join("token.txt"), format!("{secret}\n")).unwrap();
    let manifest = app(
        &app_dir,
        "configured",
        r#"
[component.web]
source = "{state-web}"
config = { api_base = "https://api.example.com", token = { secret_file = "token.txt" }, region = { env = "TEST_REGION" } }

[component.other]
source = "{state-web}"
config = { greeting = "hello" }

[[route]]
path = "/other"
component = "other"

[[route]]
path = "/"
component = "web"
"#,
    );
    let node = start_node_env(&manifest, &dir.path().join("data"), &[], &[("TEST_REGION", region)]);
    assert_eq!(http(node.addr, "GET", "/config", ""), (200, "api_base\nregion\ntoken".into()));
    assert_eq!(http(node.addr, "GET", "/config/token", ""), (200, secret.into()));
    assert_eq!(http(node.addr, "GET", "/config/region", ""), (200, region.into()));
    assert_eq!(http(node.addr, "GET", "/config/api_base", ""), (200, "https://api.example.com".into()));
    assert_eq!(http(node.addr, "GET", "/other/config", ""), (200, "greeting".into()));
    assert_eq!(http(node.addr, "GET", "/other/config/token", "").0, 404);
    // Something for the audit log too: a denied bucket.
    assert_eq!(http(node.addr, "GET", "/kv/notes/x", "").0, 403);
    std::thread::sleep(Duration::from_millis(200));

    let logs = node.stderr();
    assert!(logs.contains("configured") || logs.contains("membrane"), "debug logging is on: {logs}");
    let log = audit(&manifest);
    assert!(log.contains("denied"), "{log}");
    // The admin API shows which keys a component has, never a secret's value.
    let admin = node.admin.expect("the admin listener");
    let (status, api) = http(admin, "GET", "/api/app", "");
    assert_eq!(status, 200);
    let view: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(view["components"]["web"]["config"]["api_base"], "https://api.example.com", "{api}");
    assert_eq!(view["components"]["web"]["config"]["token"], "<redacted>", "{api}");
    let feed = http(admin, "GET", "/api/audit", "").1;
    for text in [&logs, &log, &api, &feed] {
        assert!(!text.contains(secret), "the secret leaked: {text}");
        assert!(!text.contains(region), "the env value leaked: {text}");
    }

    // A secret file that cannot be read stops the app before it serves, naming the key.
    std::fs::remove_file(app_dir.join("token.txt")).unwrap();
    let out = membrane()
        .arg("serve")
        .arg(&manifest)
        .args(["--listen", "127.0.0.1:0"])
        .env("TEST_REGION", region)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("config.token") && stderr.contains("token.txt"), "{stderr}");
    // A Redis password given through the environment is not shown by --help.
    let help = membrane().args(["serve", "--help"]).env("MEMBRANE_KEYVALUE", "redis://:pw-4711@h").output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("pw-4711"));

    // `membrane check` says so before anything starts.
    let out = membrane().arg("check").arg(&manifest).env("TEST_REGION", region).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(79), "{text}");
    assert!(text.contains("component.web.config") && text.contains("token.txt"), "{text}");
}

/// Three nodes share one Redis behind nginx. Concurrent clients count through nginx with
/// an idempotency id each, retrying on any failure; one node is SIGKILLed mid-run. Every
/// 2xx is counted exactly once, nothing acknowledged is lost, and the survivors serve on.
#[test]
fn three_nodes_behind_nginx_share_one_redis_and_survive_a_killed_node() {
    let redis = external::redis();
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(&dir.path().join("app"), "cluster", STATE_APP);
    let url = redis.redis_url();
    let mut nodes: Vec<Served> =
        (0..3).map(|i| start_node(&manifest, &dir.path().join(format!("data{i}")), &["--keyvalue", &url])).collect();
    let lb = external::nginx(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>());

    // Plain atomic increments through the balancer, spread over all nodes.
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let addr = lb.addr;
            std::thread::spawn(move || {
                for _ in 0..20 {
                    assert_eq!(http(addr, "POST", "/incr/notes/plain", "").0, 200);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(http(lb.addr, "GET", "/kv/notes/plain", ""), (200, "120".into()));

    // Counting with retries while a node dies.
    let acknowledged = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (addr, acknowledged, failures, done) = (lb.addr, acknowledged.clone(), failures.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..40 {
                    let path = format!("/count/notes/total?id=c{c}-{i}");
                    let mut tries = 0;
                    loop {
                        let (status, body) = http(addr, "POST", &path, "");
                        if (200..300).contains(&status) {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        failures.fetch_add(1, Ordering::Relaxed);
                        tries += 1;
                        assert!(tries < 100, "{path} kept failing: {status} {body}");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    while done.load(Ordering::Relaxed) < 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    nodes[1].kill();
    clients.into_iter().for_each(|t| t.join().unwrap());

    let acknowledged = acknowledged.load(Ordering::Relaxed);
    assert_eq!(acknowledged, 8 * 40);
    let (status, record) = http(lb.addr, "GET", "/kv/notes/total", "");
    assert_eq!(status, 200, "{record}");
    let count: u64 = record.split(' ').next().unwrap().parse().unwrap();
    let failures = failures.load(Ordering::Relaxed);
    eprintln!("{acknowledged} counts acknowledged; {failures} tries failed around the kill and were retried");
    assert_eq!(count, acknowledged, "every acknowledged count is there, once");

    // The survivors serve, directly and through the balancer.
    for node in [&nodes[0], &nodes[2]] {
        assert_eq!(http(node.addr, "POST", "/count/notes/total?id=after", "").0, 200);
    }
    assert_eq!(http(lb.addr, "GET", "/kv/notes/plain", ""), (200, "120".into()));
    assert_eq!(http(nodes[1].addr, "GET", "/kv/notes/plain", "").0, 0, "the killed node is gone");
}
