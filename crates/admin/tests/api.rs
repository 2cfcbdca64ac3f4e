//! The admin API driven in-process through its router: every read endpoint's shape, the
//! token on every change, and what swap, rollback and restart really do to the app.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use membrane_admin::{AdminState, router};
use membrane_manifest::AppSpec;
use membrane_runtime::Deployment;
use membrane_runtime::{App, Audit, CompileCache};
use membrane_test_guests as guests;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "a-test-token";

struct Fixture {
    _dir: tempfile::TempDir,
    deployment: Arc<Deployment>,
    router: axum::Router,
}

/// A web handler (routed), a singleton provider and a caller linked to it.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("membrane.toml");
    let link = |iface: &str| {
        format!("[[link]]\nfrom = \"caller\"\nimport = \"membrane:test/{iface}@0.1.0\"\nto = \"provider\"\n")
    };
    std::fs::write(
        &manifest,
        format!(
            "[app]\nname = \"shop\"\n\n[component.web]\nsource = {:?}\nlimits = {{ memory = \"32MiB\", timeout = \"5s\" }}\n\
             grants = {{ env = {{ WHO = \"shop\" }} }}\n\n\
             [component.provider]\nsource = {:?}\ninstances = \"singleton\"\n\n[component.caller]\nsource = {:?}\n\n{}{}{}\n\
             [[route]]\npath = \"/\"\ncomponent = \"web\"\n\n[tenant.acme]\nhosts = [\"acme.localhost\"]\nrequests_per_second = 50\n",
            guests::HTTP_V1,
            guests::PROVIDER,
            guests::CALLER,
            link("counter"),
            link("memory"),
            link("faults"),
        ),
    )
    .unwrap();
    let spec = AppSpec::load(&manifest).unwrap();
    let cache = CompileCache::at(dir.path().join("cache"));
    let app = App::load(spec, &cache, Audit::default()).unwrap();
    let deployment = Arc::new(Deployment::new(app, cache));
    let router = router(AdminState::new(deployment.clone(), TOKEN));
    Fixture { _dir: dir, deployment, router }
}

impl Fixture {
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
        json: bool,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if json {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None, Body::empty(), false).await
    }

    async fn swap(&self, component: &str, file: &str, token: Option<&str>) -> (StatusCode, Value) {
        let bytes = std::fs::read(file).unwrap();
        self.send(Method::POST, &format!("/api/components/{component}/swap"), token, Body::from(bytes), false).await
    }

    async fn post(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(Method::POST, path, token, Body::empty(), false).await
    }

    /// What the routed web component says now, through the running version.
    async fn web_says(&self) -> String {
        let app = self.deployment.current();
        let instances = app.instances("web").unwrap();
        let membrane_runtime::HttpHandler::P2(handler) = app.http_handler("web").unwrap().clone() else {
            panic!("the web component is a WASI 0.2 handler")
        };
        let mut store = instances.new_store(&["web".into()]).unwrap();
        let proxy = handler.instantiate_async(&mut store).await.unwrap();
        use wasmtime_wasi_http::WasiHttpView;
        let request = hyper_request();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http, request)
            .unwrap();
        let out = store.data_mut().http().new_response_outparam(sender).unwrap();
        proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await.unwrap();
        let response = receiver.await.unwrap().unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }
}

fn hyper_request() -> Request<http_body_util::Empty<bytes::Bytes>> {
    Request::builder().uri("http://localhost/").body(http_body_util::Empty::new()).unwrap()
}

#[tokio::test]
async fn read_endpoints_describe_the_running_app() {
    let f = fixture();
    let (status, app) = f.get("/api/app").await;
    assert_eq!(status, StatusCode::OK, "{app}");
    assert_eq!(app["name"], "shop");
    let web = &app["components"]["web"];
    assert_eq!(web["instances"], "per-call");
    assert_eq!(web["revision"], 1);
    assert!(web["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(web["grants"]["env"]["WHO"], "shop");
    assert_eq!(web["limits"]["memory"], "32MiB");
    assert!(
        web["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("wasi:http/incoming-handler"))
    );
    assert_eq!(app["components"]["provider"]["instances"], "singleton");
    assert_eq!(app["links"].as_array().unwrap().len(), 3);
    assert_eq!(app["links"][0]["from"], "caller");
    assert_eq!(app["links"][0]["to"], "provider");
    // Each linked function with the path its calls take.
    let increment = app["links"][0]["functions"].as_array().unwrap().iter().find(|f| f["name"] == "increment");
    assert_eq!(
        increment,
        Some(&serde_json::json!({ "name": "increment", "path": "typed", "shape": "() -> u64" })),
        "{app}"
    );
    assert_eq!(app["routes"][0]["component"], "web");
    assert_eq!(app["tenants"]["acme"]["requests_per_second"], 50);

    // A call through a link shows up in the link's and the provider's counters.
    let current = f.deployment.current();
    let n = current.call_link("caller", "membrane:test/counter@0.1.0", "increment", &[]).await.unwrap();
    assert_eq!(n, [wasmtime::component::Val::U64(1)]);
    let (status, stats) = f.get("/api/stats").await;
    assert_eq!(status, StatusCode::OK);
    let link =
        stats["links"].as_array().unwrap().iter().find(|l| l["import"].as_str().unwrap().contains("counter")).unwrap();
    assert_eq!(link["calls"], 1);
    assert_eq!(link["errors"], 0);
    assert!(link["p99_ns"].as_u64().unwrap() > 0);
    let provider = &stats["components"]["provider"];
    assert_eq!(provider["live"], 1, "the singleton stays alive: {provider}");
    assert!(provider["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(provider["traps"], 0);

    // A trap in the provider is counted by kind and appears in the audit feed.
    let trapped = current
        .call_link("caller", "membrane:test/faults@0.1.0", "maybe-trap", &[wasmtime::component::Val::Bool(true)])
        .await;
    assert!(trapped.is_err());
    let (_, stats) = f.get("/api/stats").await;
    assert_eq!(stats["components"]["provider"]["traps_by_kind"]["unreachable"], 1, "{stats}");
    let (status, audit) = f.get("/api/audit").await;
    assert_eq!(status, StatusCode::OK);
    let events = audit["events"].as_array().unwrap();
    let trap = events.iter().find(|e| e["event"] == "trap").expect("a trap event");
    assert_eq!(trap["component"], "provider");
    let next = audit["next"].as_u64().unwrap();
    let (_, later) = f.get(&format!("/api/audit?since={next}")).await;
    assert!(later["events"].as_array().unwrap().is_empty());
    assert_eq!(later["next"], next);

    let (status, health) = f.get("/healthz").await;
    assert_eq!((status, health.as_str().unwrap().trim()), (StatusCode::OK, "ok"));
    let (status, _) = f.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = f.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("<svg id=\"graph\""));
    let (status, error) = f.get("/api/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"].as_str().unwrap().contains("/api/nothing"));
}

#[tokio::test]
async fn changes_need_the_token_and_change_nothing_without_it() {
    let f = fixture();
    for token in [None, Some("wrong"), Some("")] {
        let (status, body) = f.swap("web", guests::HTTP_V2, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"));
        let (status, _) = f.post("/api/components/web/rollback", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = f.post("/api/components/provider/restart", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(f.web_says().await, "http-v1");
    assert!(f.deployment.audit().since(0).iter().all(|e| e.event != "swap" && e.event != "restart"));
}

#[tokio::test]
async fn swap_and_rollback_change_what_serves() {
    let f = fixture();
    let before = f.deployment.current().generation();
    assert_eq!(f.web_says().await, "http-v1");
    let (status, change) = f.swap("web", guests::HTTP_V2, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{change}");
    assert_eq!(change["action"], "swap");
    assert_eq!((change["from"]["revision"].as_u64(), change["to"]["revision"].as_u64()), (Some(1), Some(2)));
    assert_eq!(change["to"]["origin"], "upload");
    assert!(change["generation"].as_u64().unwrap() > before);
    assert_eq!(f.web_says().await, "http-v2");
    let (_, app) = f.get("/api/app").await;
    assert_eq!(app["components"]["web"]["revision"], 2);
    assert_eq!(app["components"]["web"]["history"][0]["revision"], 1);

    // A swap from a path on the host, as JSON.
    let body = serde_json::json!({ "path": guests::HTTP_V1 }).to_string();
    let (status, change) = f.send(Method::POST, "/api/components/web/swap", Some(TOKEN), Body::from(body), true).await;
    assert_eq!(status, StatusCode::OK, "{change}");
    assert_eq!(f.web_says().await, "http-v1");

    // Rollback walks back through the builds: v1 (path) -> v2 -> v1 (the first).
    let (status, change) = f.post("/api/components/web/rollback", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{change}");
    assert_eq!(change["action"], "rollback");
    assert_eq!(f.web_says().await, "http-v2");
    let (status, _) = f.post("/api/components/web/rollback", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.web_says().await, "http-v1");
    let (status, error) = f.post("/api/components/web/rollback", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(error["error"].as_str().unwrap().contains("no earlier build"));

    let kinds: Vec<String> = f.deployment.audit().since(0).into_iter().map(|e| e.event).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "swap").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "rollback").count(), 2, "{kinds:?}");
}

#[tokio::test]
async fn incompatible_builds_are_refused_and_the_old_one_keeps_serving() {
    let f = fixture();
    let generation = f.deployment.current().generation();
    // The routed component must stay an HTTP handler.
    let (status, error) = f.swap("web", guests::HELLO, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(error["error"].as_str().unwrap().contains("wasi:http/incoming-handler"), "{error}");
    // The provider must keep exporting what the caller imports...
    let (status, error) = f.swap("provider", guests::HELLO, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(error["error"].as_str().unwrap().contains("does not export membrane:test/counter"), "{error}");
    // ... with the same function types.
    let (status, error) = f.swap("provider", guests::COUNTER_MISMATCH, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("increment") && message.contains("string"), "{message}");
    // Not a component at all.
    let (status, error) =
        f.send(Method::POST, "/api/components/web/swap", Some(TOKEN), Body::from("not wasm"), false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, error) = f.swap("nobody", guests::HTTP_V2, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"].as_str().unwrap().contains("web"), "names the components: {error}");

    assert_eq!(f.deployment.current().generation(), generation, "nothing was published");
    assert_eq!(f.web_says().await, "http-v1");
    let n = f.deployment.current().call_link("caller", "membrane:test/counter@0.1.0", "increment", &[]).await.unwrap();
    assert_eq!(n, [wasmtime::component::Val::U64(1)]);
}

#[tokio::test]
async fn restart_clears_a_singleton() {
    let f = fixture();
    let app = f.deployment.current();
    let count = || app.call_link("caller", "membrane:test/counter@0.1.0", "increment", &[]);
    count().await.unwrap();
    assert_eq!(count().await.unwrap(), [wasmtime::component::Val::U64(2)]);
    let (status, body) = f.post("/api/components/provider/restart", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(count().await.unwrap(), [wasmtime::component::Val::U64(1)], "a fresh instance counts from zero");
    assert!(f.deployment.audit().since(0).iter().any(|e| e.event == "restart" && e.component == "provider"));
    let (status, _) = f.post("/api/components/nobody/restart", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_page_that_rebinds_a_name_to_the_admin_listener_reads_nothing() {
    let f = fixture();
    let mut state = AdminState::new(f.deployment.clone(), TOKEN);
    state.hosts = membrane_admin::AdminHosts::new(&["admin.internal".into()]).unwrap();
    state.hosts.listener = Some("127.0.0.1:9900".parse().unwrap());
    let admin = router(state);
    let get_as = |host: &'static str, path: &'static str| {
        let admin = admin.clone();
        async move {
            let request = Request::get(path).header(header::HOST, host).body(Body::empty()).unwrap();
            let response = admin.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    // The name a rebinding page was loaded from is what its browser sends.
    for host in ["rebound.example:9900", "rebound.example", "127.0.0.1.rebound.example:9900", "localhost.evil:9900"] {
        for path in ["/api/app", "/api/audit", "/api/stats", "/"] {
            let (status, body) = get_as(host, path).await;
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}{path}: {body}");
            assert!(body.contains("does not answer to Host") && body.contains("--admin-host"), "{body}");
            assert!(!body.contains("shop"), "{body}");
        }
    }
    // Another port of the same address is another origin.
    assert_eq!(get_as("127.0.0.1:8080", "/api/app").await.0, StatusCode::MISDIRECTED_REQUEST);
    // The listener's own address, localhost and a configured name are answered.
    for host in ["127.0.0.1:9900", "localhost:9900", "Admin.Internal.:9900", "admin.internal"] {
        let (status, body) = get_as(host, "/api/app").await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        assert!(body.contains("\"shop\""), "{body}");
    }
}
