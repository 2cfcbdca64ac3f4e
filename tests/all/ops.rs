//! Operations on a running server: hot swap under load through the CLI, incompatible
//! builds refused, `--watch`, `membrane status`, and the dashboard in a real browser.

use crate::external::{ensure_installed, free_port};
use crate::util::{Served, guests, membrane};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// An app serving `web` at `/` from `source`.
pub(crate) fn web_app(dir: &Path, source: &str) -> PathBuf {
    let manifest = dir.join("membrane.toml");
    std::fs::write(
        &manifest,
        format!("[app]\nname = \"ops\"\n\n[component.web]\nsource = {source:?}\n\n[[route]]\npath = \"/\"\ncomponent = \"web\"\n"),
    )
    .unwrap();
    manifest
}

/// `membrane <verb> --admin URL --token-file F <args>` against `server`.
pub(crate) fn admin_cli(server: &Served, verb: &str, args: &[&str]) -> std::process::Output {
    membrane()
        .arg(verb)
        .args(["--admin", &format!("http://{}", server.admin.unwrap())])
        .arg("--token-file")
        .arg(server.admin_token_file.as_ref().expect("serve generated a token file"))
        .args(args)
        .output()
        .unwrap()
}

struct Sample {
    started: Instant,
    ended: Instant,
    status: u16,
    body: String,
}

struct Change {
    started: Instant,
    ended: Instant,
    /// What serves once the change is done.
    serving: &'static str,
}

#[test]
fn swap_under_load_fails_no_request_and_switches_exactly_when_published() {
    let dir = tempfile::tempdir().unwrap();
    let server = Served::start(&[web_app(dir.path(), guests::HTTP_V1).to_str().unwrap()]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (stop, sent, addr) = (stop.clone(), sent.clone(), server.addr);
            runtime.spawn(async move { load(addr, stop, sent).await })
        })
        .collect();

    // v1 -> v2 -> v1 (rollback), three times over, through the CLI.
    let mut changes = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        let started = Instant::now();
        let out = admin_cli(&server, "swap", &["web", guests::HTTP_V2]);
        assert!(out.status.success(), "swap: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("web swap: revision"), "{out:?}");
        changes.push(Change { started, ended: Instant::now(), serving: "http-v2" });
        std::thread::sleep(Duration::from_millis(400));
        let started = Instant::now();
        let out = admin_cli(&server, "rollback", &["web"]);
        assert!(out.status.success(), "rollback: {}", String::from_utf8_lossy(&out.stderr));
        changes.push(Change { started, ended: Instant::now(), serving: "http-v1" });
    }
    // At least 2,000 requests in all, however slow this machine is today.
    let deadline = Instant::now() + Duration::from_secs(180);
    while sent.load(Ordering::Relaxed) < 2000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for client in clients {
        samples.extend(runtime.block_on(client).unwrap());
    }
    assert!(samples.len() >= 2000, "only {} requests during the swaps; the load was too light", samples.len());

    let failed: Vec<_> = samples.iter().filter(|s| s.status != 200).map(|s| (s.status, s.body.clone())).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)]
    );
    // Each request that started after a change was published and ended before the next
    // began saw exactly that change's build; one overlapping a change saw either side.
    let mut checked = 0;
    for s in &samples {
        let done = changes.iter().take_while(|c| c.ended < s.started).count();
        let overlapping = changes.iter().any(|c| c.started <= s.ended && s.started <= c.ended);
        let expected = if done == 0 { "http-v1" } else { changes[done - 1].serving };
        if overlapping {
            assert!(s.body == "http-v1" || s.body == "http-v2", "a request saw {:?}", s.body);
        } else {
            assert_eq!(s.body, expected, "a request after change {done} saw the wrong build");
            checked += 1;
        }
    }
    // However slow the CLI is on a loaded machine, the requests after the last change count.
    assert!(checked >= 100, "too few requests fell between changes to judge: {checked}");
    for serving in ["http-v1", "http-v2"] {
        assert!(samples.iter().any(|s| s.body == serving), "no request saw {serving}");
    }

    // The admin API's view of it, through `membrane status`.
    let status = admin_cli(&server, "status", &[]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(text.contains("app ops"), "{text}");
    let web = text.lines().find(|l| l.starts_with("web ")).unwrap_or_else(|| panic!("no web row: {text}"));
    assert!(web.contains("per-call") && web.contains(" 7 ") && web.contains("ok"), "seven revisions: {web}");
}

/// Requests over one keep-alive connection until `stop`.
async fn load(addr: SocketAddr, stop: Arc<AtomicBool>, sent: Arc<AtomicUsize>) -> Vec<Sample> {
    let client = client();
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        samples.push(get(&client, addr).await);
        sent.fetch_add(1, Ordering::Relaxed);
    }
    samples
}

type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http()
}

async fn get(client: &Client, addr: SocketAddr) -> Sample {
    let started = Instant::now();
    let (status, body) = match client.get(format!("http://{addr}/").parse().unwrap()).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(error) => (0, error.to_string()),
    };
    Sample { started, ended: Instant::now(), status, body }
}

fn says(addr: SocketAddr) -> String {
    crate::state::http(addr, "GET", "/", "").1
}

#[test]
fn an_incompatible_swap_is_refused_with_the_reason_and_the_old_build_serves() {
    let dir = tempfile::tempdir().unwrap();
    let server = Served::start(&[web_app(dir.path(), guests::HTTP_V1).to_str().unwrap()]);
    let out = admin_cli(&server, "swap", &["web", guests::HELLO]);
    assert_eq!(out.status.code(), Some(89), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("409") && stderr.contains("wasi:http/incoming-handler"), "{stderr}");
    assert_eq!(says(server.addr), "http-v1");
    // A wrong token changes nothing either.
    let token = dir.path().join("wrong-token");
    std::fs::write(&token, "not-the-token\n").unwrap();
    let out = membrane()
        .args(["swap", "--admin", &format!("http://{}", server.admin.unwrap())])
        .arg("--token-file")
        .arg(&token)
        .args(["web", guests::HTTP_V2])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(89));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    assert_eq!(says(server.addr), "http-v1");
    // No server there at all: a port held bound but not listening, so that no other test's
    // server can take it meanwhile (a port only found free could be, and once was).
    let (_held, port) = refusing_port();
    let out = membrane().args(["status", "--admin", &format!("http://127.0.0.1:{port}")]).output().unwrap();
    assert_eq!(out.status.code(), Some(88), "{out:?}");
}

/// A loopback port that refuses connections for as long as the socket lives.
fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

#[test]
fn watch_swaps_in_a_changed_file_and_keeps_serving_through_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("web.wasm");
    std::fs::copy(guests::HTTP_V1, &component).unwrap();
    let manifest = web_app(dir.path(), component.to_str().unwrap());
    let server = Served::start_with(&[manifest.to_str().unwrap(), "--watch"], &[("MEMBRANE_LOG", "info")]);
    assert_eq!(says(server.addr), "http-v1");

    // Saved the way editors and build tools do: a new file renamed over the old one.
    let replace = |from: &Path| {
        let tmp = dir.path().join("web.wasm.tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, &component).unwrap();
    };
    replace(Path::new(guests::HTTP_V2));
    wait_for(|| says(server.addr) == "http-v2", "the changed file to be swapped in", &server);

    std::fs::write(&component, b"\0asm\x01\0\0\0 truncated").unwrap();
    wait_for(|| server.stderr().contains("not applied"), "the broken file to be refused", &server);
    assert_eq!(says(server.addr), "http-v2", "the running build keeps serving");

    // A manifest edit that breaks the app is refused too.
    std::fs::copy(guests::HTTP_V1, &component).unwrap();
    wait_for(|| says(server.addr) == "http-v1", "the repaired file to be swapped in", &server);
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&manifest).unwrap().replace("component = \"web\"", "component = \"nobody\""),
    )
    .unwrap();
    wait_for(|| server.stderr().matches("not applied").count() >= 2, "the broken manifest to be refused", &server);
    assert_eq!(says(server.addr), "http-v1");
}

/// A reload that needs what the running engine lacks (here fuel counting) is built on an
/// engine made for it, and the new limit holds from its first request; a reload that changes
/// the tenants is refused with the reason and the running version keeps answering. Adding a
/// fuel limit used to panic the host on every request.
#[test]
fn watch_applies_a_reload_that_needs_another_engine_and_refuses_new_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = web_app(dir.path(), guests::HTTP_V1);
    let server = Served::start_with(&[manifest.to_str().unwrap(), "--watch"], &[("MEMBRANE_LOG", "info")]);
    assert_eq!(says(server.addr), "http-v1");
    let original = std::fs::read_to_string(&manifest).unwrap();

    let starved = original.replace("[[route]]", "limits = { fuel = 1000 }\n\n[[route]]");
    std::fs::write(&manifest, starved).unwrap();
    let status = || crate::state::http(server.addr, "GET", "/", "").0;
    wait_for(|| status() == 500, "the fuel limit to apply", &server);
    // The server's log reaches the test through a reader thread, a moment after the answer.
    wait_for(|| server.stderr().contains("out of fuel"), "the fault to name fuel", &server);
    std::fs::write(&manifest, &original).unwrap();
    wait_for(|| status() == 200, "the limit to be lifted", &server);
    assert_eq!(says(server.addr), "http-v1");

    let with_tenant = format!("{original}\n[tenant.alice]\nhosts = [\"alice.localhost\"]\nrequests_per_second = 1\n");
    std::fs::write(&manifest, with_tenant).unwrap();
    wait_for(|| server.stderr().contains("tenant.*] tables changed"), "the tenant change to be refused", &server);
    assert_eq!(says(server.addr), "http-v1");
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

fn wait_for(mut done: impl FnMut() -> bool, what: &str, server: &Served) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}; server log:\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A WebDriver session with headless Chromium. WebDriver's JSON protocol is a handful of
/// calls here; a client crate would bring a second TLS stack for a loopback-only test.
struct Browser {
    driver: std::process::Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let chromium = ensure_installed("chromium", "chromium");
        let chromedriver = ensure_installed("chromedriver", "chromium-driver");
        let port = free_port();
        let driver = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1440,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let deadline = Instant::now() + Duration::from_secs(120);
        let session = loop {
            match webdriver("POST", &format!("{base}/session"), Some(&capabilities)) {
                Ok(v) => break v["sessionId"].as_str().expect("a session id").to_string(),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("chromedriver gave no session: {e}"),
            }
        };
        Browser { driver, base, session, _profile: profile }
    }

    fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> serde_json::Value {
        webdriver(method, &format!("{}/session/{}{path}", self.base, self.session), body)
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(&serde_json::json!({ "url": url })));
    }

    fn script(&self, js: &str) -> serde_json::Value {
        self.call("POST", "/execute/sync", Some(&serde_json::json!({ "script": js, "args": [] })))
    }

    fn screenshot(&self, to: &Path) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = webdriver("DELETE", &format!("{}/session/{}", self.base, self.session), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver command: its `value`, or the error it reported.
fn webdriver(method: &str, url: &str, body: Option<&serde_json::Value>) -> Result<serde_json::Value, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<Bytes>>();
        let request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
            .unwrap();
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {}", value["value"]));
        }
        Ok(value["value"].clone())
    })
}

#[test]
fn the_dashboard_draws_the_app_and_shows_a_swap_live_in_a_real_browser() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs-web/membrane.toml");
    let server = Served::start(&[manifest.to_str().unwrap()]);
    let admin = format!("http://{}", server.admin.unwrap());
    let browser = Browser::start();
    browser.open(&format!("{admin}/"));

    let nodes = || {
        browser.script("return Array.from(document.querySelectorAll('g.node')).map(n => n.dataset.component).sort()")
    };
    wait_for(|| nodes() == serde_json::json!(["fancy", "hello", "plain", "web"]), "the graph's nodes", &server);
    let edges = browser.script("return Array.from(document.querySelectorAll('g.edge[data-from]')).map(e => e.dataset.from + '->' + e.dataset.to)");
    assert_eq!(edges, serde_json::json!(["web->fancy"]));
    let edge = browser.script("return document.querySelector('g.edge[data-from=web]').textContent");
    assert!(edge.as_str().unwrap().contains("isolation: store"), "each link shows its level: {edge}");
    let membrane_of_fancy = browser.script("return document.querySelector('g.node[data-component=fancy]').textContent");
    let text = membrane_of_fancy.as_str().unwrap();
    assert!(text.contains("per-call") && text.contains("cpu 100ms") && text.contains("no grants"), "{text}");

    // Traffic through the link, then a swap made while the page is open.
    for _ in 0..5 {
        crate::state::http(server.addr, "POST", "/", "# Title");
    }
    let out = admin_cli(&server, "swap", &["fancy", guests::PLAIN_RENDERER]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let swap_in_feed = || {
        browser.script("return document.querySelectorAll('#feed li.event-swap[data-component=fancy]').length").as_u64()
            == Some(1)
    };
    wait_for(swap_in_feed, "the swap in the live feed", &server);
    // The feed and the graph are read one after the other in a tick: the node follows at
    // the latest one tick later.
    let revision = || browser.script("return document.querySelector('g.node[data-component=fancy]').textContent");
    wait_for(|| revision().as_str().unwrap().contains("revision 2"), "the node to show the new build", &server);

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../dashboard.png");
    browser.screenshot(&shot);
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"), "a PNG screenshot at {}", shot.display());
}

/// With tracing on, the dashboard lists the slowest recent traces and opens one to its
/// span tree: the request, the instance made for it and what it called.
#[test]
fn the_dashboard_shows_the_slowest_traces_as_span_trees_in_a_real_browser() {
    // Spans also go to a collector that is not there: the dashboard does not need one.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs-web/membrane.toml");
    let endpoint = format!("http://{gone}");
    let server = Served::start(&["--otlp-endpoint", &endpoint, manifest.to_str().unwrap()]);
    let admin = format!("http://{}", server.admin.unwrap());
    for _ in 0..3 {
        assert_eq!(crate::state::http(server.addr, "POST", "/", "# Title").0, 200);
    }
    let browser = Browser::start();
    browser.open(&format!("{admin}/"));
    let roots = || {
        browser.script(
            "return Array.from(document.querySelectorAll('#traces summary')).map(s => s.firstChild.textContent)",
        )
    };
    wait_for(
        || roots().as_array().is_some_and(|r| r.len() == 3 && r.iter().all(|n| n == "POST /")),
        "three traces",
        &server,
    );
    browser.script("document.querySelector('#traces summary').click(); return null");
    let spans = browser
        .script("return Array.from(document.querySelectorAll('#traces details[open] .span')).map(s => s.dataset.span)");
    let spans: Vec<&str> = spans.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(spans.first(), Some(&"POST /"), "the request is the root: {spans:?}");
    assert!(spans.contains(&"instantiate"), "the instance made for it: {spans:?}");
    assert!(spans.contains(&"web -> fancy render"), "its call across the link: {spans:?}");
}

/// The dashboard charts each link's latency over the last five minutes, p50 and p99 per
/// window, from `/api/links/latency`.
#[test]
fn the_dashboard_charts_each_links_latency_in_a_real_browser() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs-web/membrane.toml");
    let server = Served::start(&[manifest.to_str().unwrap()]);
    let admin_addr = server.admin.unwrap();
    for _ in 0..5 {
        assert_eq!(crate::state::http(server.addr, "POST", "/", "# Title").0, 200);
    }
    let (status, body) = crate::state::http(admin_addr, "GET", "/api/links/latency", "");
    assert_eq!(status, 200, "{body}");
    let links: serde_json::Value = serde_json::from_str(&body).unwrap();
    let link = &links[0];
    assert_eq!((link["from"].as_str(), link["to"].as_str()), (Some("web"), Some("fancy")));
    assert_eq!(link["window_s"], 10);
    let windows = link["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 30, "five minutes of 10 s windows");
    let busy: Vec<&serde_json::Value> = windows.iter().filter(|w| w["calls"].as_u64() > Some(0)).collect();
    assert_eq!(busy.iter().map(|w| w["calls"].as_u64().unwrap()).sum::<u64>(), 5, "every call in a window");
    let last = busy.last().unwrap();
    assert!(last["p50_ns"].as_u64() <= last["p99_ns"].as_u64() && last["p50_ns"].as_u64() > Some(0), "{last}");

    let browser = Browser::start();
    browser.open(&format!("http://{admin_addr}/"));
    let chart = || {
        browser.script(
            "const f = document.querySelector('figure.link-latency[data-from=web][data-to=fancy]');
             return f && { p50: f.querySelector('polyline.p50').getAttribute('points'),
                           p99: f.querySelector('polyline.p99').getAttribute('points'),
                           figures: f.querySelector('.figures').textContent }",
        )
    };
    wait_for(|| chart()["p50"].as_str().is_some_and(|p| !p.is_empty()), "the link's chart", &server);
    let chart = chart();
    let points = |line: &str| chart[line].as_str().unwrap().split_whitespace().count();
    assert_eq!((points("p50"), points("p99")), (busy.len(), busy.len()), "a point per window with calls: {chart}");
    let figures = chart["figures"].as_str().unwrap();
    assert!(figures.starts_with("p50 ") && figures.contains(" · p99 "), "{figures}");
    assert!(figures.contains(&format!("{} calls", last["calls"])), "the latest window's: {figures}");
    let dots = browser.script("return document.querySelectorAll('figure.link-latency circle').length");
    assert_eq!(dots.as_u64(), Some(2 * busy.len() as u64), "a dot per window with calls, p50 and p99");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../dashboard-latency.png");
    browser.screenshot(&shot);
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"), "a PNG screenshot at {}", shot.display());
}
