//! Links with isolation = "component", whose provider lives in its consumer's store: every
//! path carries values exactly as between stores, a provider trap fails the consumer's call
//! and nothing else, each component keeps its own grants, the store's limits hold for both,
//! and `check` shows each link's level and refuses what the level cannot do.

use crate::crossing::{DRIVER, SHAPES, cases, runtime, shapes_app_with, trap_on_zero};
use crate::util::{TestApp, with_guests};
use membrane_manifest::AppSpec;
use membrane_runtime::{App, Audit, CompileCache, Crossing};
use wasmtime::component::Val;

const SNOOP_DRIVER: &str = "membrane:test/snoop-driver@0.1.0";

#[test]
fn every_path_carries_values_when_the_provider_shares_the_consumers_store() {
    let (_dir, app) = shapes_app_with("per-call", "component");
    let functions = &app.link_functions()[0];
    let typed = functions.iter().filter(|f| matches!(f.crossing, Crossing::Typed { .. })).count();
    assert_eq!(typed, functions.len() - 1, "every function but `row` is typed: {functions:#?}");

    let runtime = runtime();
    let cases = cases();
    for (function, params, expected) in &cases {
        let shown = format!("{function}({:.80})", format!("{params:?}"));
        // Through the consumer: the typed paths (and `row`'s dynamic one) in its store.
        let through = runtime.block_on(app.call("consumer", DRIVER, function, params));
        assert!(through.as_ref().is_ok_and(|r| r == expected), "{shown}: {through:.200?}");
        // Every function on the dynamic path, in a store of the consumer's.
        let dynamic = runtime.block_on(app.call_link("consumer", SHAPES, function, params));
        assert!(dynamic.as_ref().is_ok_and(|r| r == expected), "{shown} (dynamic): {dynamic:.200?}");
    }
    let stats = app.stats();
    let link = &stats.links[0].stats;
    assert_eq!((link.calls, link.errors), (2 * cases.len() as u64, 0), "{link:?}");
    // One provider instance per consumer store that crossed the link.
    assert_eq!(stats.components["provider"].instantiations, 2 * cases.len() as u64, "{stats:?}");
}

#[test]
fn a_provider_trap_fails_the_consumers_call_and_nothing_else() {
    let (_dir, app) = shapes_app_with("per-call", "component");
    let runtime = runtime();
    trap_on_zero(&runtime, &app);
    let stats = app.stats();
    assert_eq!((stats.links[0].stats.traps, stats.links[0].stats.errors), (1, 1), "{stats:?}");
    assert_eq!(stats.components["provider"].traps, 1, "{stats:?}");
    // Shared fate: the consumer's call failed with it; the next one is served afresh.
    assert_eq!(stats.components["consumer"].traps, 1, "{stats:?}");
    let answer = runtime.block_on(app.call("consumer", DRIVER, "word", &[Val::U32(9)])).unwrap();
    assert_eq!(answer, [Val::U32(9)]);
}

/// The snoop consumer with a preopened directory and a variable of its own, linked to the
/// snoop provider, which has a variable of its own, at `isolation`; the consumer's memory
/// limit is `memory`, the provider's 1 GiB.
fn snoop_app(isolation: &str, memory: &str) -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/secret.txt"), "the consumer's secret").unwrap();
    let manifest = format!(
        r#"[app]
name = "snoop"

[component.consumer]
source = "{{snoop-consumer}}"
limits = {{ memory = "{memory}" }}
grants = {{ dirs = [{{ host = "data", guest = "/data", mode = "ro" }}], env = {{ SECRET = "consumer-only" }} }}

[component.provider]
source = "{{snoop-provider}}"
limits = {{ memory = "1GiB" }}
grants = {{ env = {{ PROVIDER_ONLY = "yes" }} }}

[[link]]
from = "consumer"
import = "membrane:test/snoop@0.1.0"
to = "provider"
isolation = "{isolation}"
"#
    );
    let path = dir.path().join("membrane.toml");
    std::fs::write(&path, with_guests(&manifest)).unwrap();
    let spec = AppSpec::load(&path).unwrap();
    let app = App::load(spec, &CompileCache::disabled(), Audit::default()).unwrap();
    (dir, app)
}

fn text(value: &Val) -> &str {
    match value {
        Val::String(s) => s,
        other => panic!("expected a string, got {other:?}"),
    }
}

#[test]
fn a_provider_in_the_consumers_store_sees_only_its_own_grants() {
    let (_dir, app) = snoop_app("component", "64MiB");
    let runtime = runtime();
    let ask = |function: &str, arg: &str| {
        let answer = runtime.block_on(app.call("consumer", SNOOP_DRIVER, function, &[Val::String(arg.into())]));
        text(&answer.unwrap()[0]).to_string()
    };
    assert_eq!(ask("own-file", "/data/secret.txt"), "the consumer's secret");
    assert_eq!(ask("own-env", "SECRET"), "consumer-only");
    assert_eq!(ask("own-env", "PROVIDER_ONLY"), "(unset)");
    let none: &[Val] = &[];
    let own_preopens = runtime.block_on(app.call("consumer", SNOOP_DRIVER, "own-preopens", none)).unwrap();
    assert_eq!(text(&own_preopens[0]), "/data");

    // The provider, in the same store, finds none of it, and has what it was granted.
    let read = ask("provider-file", "/data/secret.txt");
    assert!(read.starts_with("error:") && !read.contains("secret"), "{read}");
    assert_eq!(ask("provider-env", "SECRET"), "(unset)");
    assert_eq!(ask("provider-env", "PROVIDER_ONLY"), "yes");
    let preopens = runtime.block_on(app.call("consumer", SNOOP_DRIVER, "provider-preopens", none)).unwrap();
    assert_eq!(text(&preopens[0]), "", "the provider has no preopened directory");

    // Within one consumer instance: its own reach before the call, the provider's own
    // during it, and its own again after.
    let params = [Val::String("/data/secret.txt".into()), Val::String("SECRET".into())];
    let seen = runtime.block_on(app.call("consumer", SNOOP_DRIVER, "sequence", &params)).unwrap();
    let Val::List(seen) = &seen[0] else { panic!("{seen:?}") };
    let seen: Vec<&str> = seen.iter().map(text).collect();
    assert_eq!(seen[..2], ["the consumer's secret", "consumer-only"], "{seen:?}");
    assert!(seen[2].starts_with("error:") && seen[3] == "(unset)", "{seen:?}");
    assert_eq!(seen[4..], ["the consumer's secret", "consumer-only"], "{seen:?}");
}

#[test]
fn the_consumers_limits_hold_for_the_provider_in_its_store() {
    let runtime = runtime();
    let hoard =
        |app: &App, mib: u32| runtime.block_on(app.call("consumer", SNOOP_DRIVER, "provider-hoard", &[Val::U32(mib)]));
    // In a store of its own the provider has its own 1 GiB limit, and 40 MiB fit.
    let (_a, apart) = snoop_app("store", "24MiB");
    assert_eq!(hoard(&apart, 40).unwrap(), [Val::U32(40)]);
    // In the consumer's store the pair shares the consumer's 24 MiB.
    let (_b, shared) = snoop_app("component", "24MiB");
    assert_eq!(hoard(&shared, 4).unwrap(), [Val::U32(4)]);
    let error = format!("{:?}", hoard(&shared, 40).unwrap_err());
    assert!(error.contains("its call to `provider`") && error.contains("memory"), "{error}");
    assert!(error.contains("past 24MiB"), "names the shared limit: {error}");
}

#[test]
fn check_shows_each_links_isolation_and_refuses_a_cycle_inside_one_store() {
    let app = TestApp::new(
        "[app]\nname = \"snoop\"\n\n[component.consumer]\nsource = \"{snoop-consumer}\"\n\n\
         [component.provider]\nsource = \"{snoop-provider}\"\n\n[[link]]\nfrom = \"consumer\"\n\
         import = \"membrane:test/snoop@0.1.0\"\nto = \"provider\"\nisolation = \"component\"\n",
    );
    app.check(&[])
        .assert_code(0)
        .assert_stdout_has("    membrane:test/snoop@0.1.0 -> provider [propagate, isolation component]\n")
        .assert_stdout_has("      read-file: typed (string) -> string\n");

    // relay imports callback and exports relay; reentrant the reverse: a cycle.
    let cycle = TestApp::new(
        "[app]\nname = \"cycle\"\n\n[component.relay]\nsource = \"{relay}\"\n\n\
         [component.reentrant]\nsource = \"{reentrant}\"\n\n\
         [[link]]\nfrom = \"reentrant\"\nimport = \"membrane:test/relay@0.1.0\"\nto = \"relay\"\nisolation = \"component\"\n\n\
         [[link]]\nfrom = \"relay\"\nimport = \"membrane:test/callback@0.1.0\"\nto = \"reentrant\"\nisolation = \"component\"\n",
    );
    let refused = cycle.check(&[]);
    refused.assert_code(79).assert_stderr_has(
        "error: link: link cycle reentrant -> relay -> reentrant has isolation = \"component\" all the way round",
    );
    assert!(!refused.stderr.contains("warning: link: link cycle"), "one message per cycle: {}", refused.stderr);
}
