//! Supervision and link policy, driven through the library API against real guests:
//! restarts and their budget, pools, timeouts, circuit breakers and the audit trail.

use membrane_manifest::AppSpec;
use membrane_runtime::App;
use membrane_runtime::CallError;
use membrane_runtime::{Audit, CompileCache, FaultKind};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Val;

const COUNTER: &str = "membrane:test/counter@0.1.0";
const FAULTS: &str = "membrane:test/faults@0.1.0";

struct Loaded {
    app: App,
    dir: tempfile::TempDir,
}

impl Loaded {
    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn events(&self, event: &str) -> usize {
        self.audit().iter().filter(|e| e["event"] == event).count()
    }
}

/// The caller and one provider with `provider` settings, all three links with `link`.
fn load(provider: &str, link: &str) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[app]\nname = \"t\"\nentry = \"caller\"\n\n[component.caller]\nsource = {:?}\n\n\
         [component.provider]\nsource = {:?}\n{provider}\n",
        membrane_test_guests::CALLER,
        membrane_test_guests::PROVIDER
    );
    for iface in ["counter", "memory", "faults"] {
        text.push_str(&format!(
            "\n[[link]]\nfrom = \"caller\"\nimport = \"membrane:test/{iface}@0.1.0\"\nto = \"provider\"\n{link}\n"
        ));
    }
    let path = dir.path().join("membrane.toml");
    std::fs::write(&path, text).unwrap();
    let spec = AppSpec::load(&path).unwrap();
    let cache = CompileCache::at(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtime-test-cache"));
    let audit = Audit::to_file(&dir.path().join("audit.jsonl")).unwrap();
    let app = App::load(spec, &cache, audit).unwrap();
    Loaded { app, dir }
}

async fn increment(app: &App) -> Result<u64, CallError> {
    match app.call("provider", COUNTER, "increment", &[]).await?.as_slice() {
        [Val::U64(n)] => Ok(*n),
        other => panic!("increment returned {other:?}"),
    }
}

async fn trap(app: &App) -> CallError {
    app.call("provider", FAULTS, "maybe-trap", &[Val::Bool(true)]).await.unwrap_err()
}

#[tokio::test]
async fn a_trapped_singleton_restarts_fresh_until_its_budget_is_spent() {
    let t = load("instances = \"singleton\"\nrestart = { max_restarts = 2, window = \"60s\", backoff = \"1ms\" }", "");
    let app = &t.app;
    assert_eq!(increment(app).await.unwrap(), 1);
    assert_eq!(increment(app).await.unwrap(), 2);
    for restart in 1..=2 {
        let error = trap(app).await;
        assert!(matches!(&error, CallError::Fault(f) if f.kind == FaultKind::Unreachable), "{error}");
        // The trapped instance was discarded; its replacement starts from zero.
        assert_eq!(increment(app).await.unwrap(), 1);
        assert_eq!(app.stats().components["provider"].restarts, restart);
    }
    trap(app).await;
    let error = increment(app).await.unwrap_err();
    assert!(matches!(error, CallError::Failed { .. }), "{error}");
    assert!(error.to_string().contains("it trapped again after 2 restarts within 1m"), "{error}");
    assert_eq!(t.events("restart"), 2);
    assert_eq!(t.events("failed"), 1);
    assert_eq!(t.events("trap"), 3);

    // An operator's restart clears the failure.
    assert!(app.restart("provider").await);
    assert_eq!(increment(app).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_never_holds_more_than_n_instances() {
    let t = load("instances = \"pool:2\"", "");
    let app = Arc::new(t.app);
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { increment(&app).await.unwrap() })
        })
        .collect();
    let mut counts = Vec::new();
    for call in calls {
        counts.push(call.await.unwrap());
    }
    let stats = app.stats().components["provider"].clone();
    assert!(stats.instantiations <= 2, "{stats:?}");
    assert!(stats.live <= 2, "{stats:?}");
    // 16 calls on at most two instances: one of them counted to at least 8.
    assert!(counts.iter().max().unwrap() >= &8, "{counts:?}");
}

#[tokio::test]
async fn a_link_timeout_abandons_a_spinning_provider_and_the_next_call_works() {
    for mode in ["singleton", "per-call"] {
        let t = load(&format!("instances = \"{mode}\""), "timeout = \"200ms\"");
        let app = &t.app;
        let error = app.call_link("caller", FAULTS, "spin", &[]).await.unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("its call to `provider` through membrane:test/faults@0.1.0 (spin) failed"),
            "{message}"
        );
        assert!(message.contains("timed out"), "{message}");
        let answer = app.call_link("caller", FAULTS, "maybe-trap", &[Val::Bool(false)]).await.unwrap();
        assert_eq!(answer, [Val::String("ok".into())], "{mode}");
        let link = &app.stats().links[2];
        assert_eq!((link.import.as_str(), link.stats.timeouts, link.stats.calls), (FAULTS, 1, 2), "{mode}");
    }
}

#[tokio::test]
async fn a_cpu_limit_stops_a_provider_call_without_a_link_timeout() {
    let t = load("instances = \"singleton\"\nlimits = { cpu = \"100ms\" }", "");
    let error = t.app.call("provider", FAULTS, "spin", &[]).await.unwrap_err();
    assert!(matches!(&error, CallError::Fault(f) if matches!(f.kind, FaultKind::CpuTime(_))), "{error}");
    assert_eq!(increment(&t.app).await.unwrap(), 1);
}

#[tokio::test]
async fn a_circuit_opens_fails_fast_and_recovers() {
    let t = load(
        "instances = \"singleton\"\nrestart = { max_restarts = 10, backoff = \"1ms\" }",
        "circuit = { failures = 2, cooldown = \"300ms\" }",
    );
    let app = &t.app;
    for _ in 0..2 {
        let error = app.call_link("caller", FAULTS, "maybe-trap", &[Val::Bool(true)]).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("provider asked to trap") || format!("{error:#}").contains("unreachable")
        );
    }
    // Open: even a call that would succeed fails fast, without reaching the provider.
    let error = app.call_link("caller", FAULTS, "maybe-trap", &[Val::Bool(false)]).await.unwrap_err();
    assert!(format!("{error:#}").contains("circuit is open after 2 consecutive failures"), "{error:#}");
    let stats = app.stats();
    assert_eq!(stats.components["provider"].traps, 2);
    assert_eq!(stats.links[2].circuit, Some("open"));
    assert_eq!(stats.links[2].stats.rejected, 1);

    tokio::time::sleep(Duration::from_millis(350)).await;
    let answer = app.call_link("caller", FAULTS, "maybe-trap", &[Val::Bool(false)]).await.unwrap();
    assert_eq!(answer, [Val::String("ok".into())]);
    assert_eq!(app.stats().links[2].circuit, Some("closed"));
    let circuit: Vec<String> = t
        .audit()
        .iter()
        .filter(|e| e["event"] == "circuit")
        .map(|e| e["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(circuit, ["open for 300ms", "half-open: letting one probe through", "closed: the probe succeeded"]);
}
