use crate::util::{COUNTER, FAULTS, MEMORY, TestApp, caller_app, manifest, membrane_with};

const LINK_FAILED: i32 = 87;
const APP_CHECK: i32 = 79;

#[test]
fn memories_are_separate() {
    let app = TestApp::new(&caller_app("instances = \"singleton\"", ""));
    let out = app.run(&["canary"]);
    out.assert_code(0);
    // The provider's canary is at an address that, in the consumer, holds something else.
    out.assert_stdout_has("consumer sees at").assert_stdout_has(": false");
    out.assert_stdout_has("provider has at").assert_stdout_has(": canary-7f3a");
}

#[test]
fn values_cross_as_copies() {
    let app = TestApp::new(&caller_app("", ""));
    // The provider reversed its copy in place; the caller's list is as it was.
    app.run(&["copies"]).assert_code(0).assert_stdout_has("sent [1, 2, 3, 4], got [4, 3, 2, 1]");
}

#[test]
fn per_call_instances_start_fresh_and_a_singleton_keeps_state() {
    let per_call = TestApp::new(&caller_app("instances = \"per-call\"", ""));
    per_call.run(&["count", "4"]).assert_code(0).assert_stdout_has("counts: 1,1,1,1");
    let singleton = TestApp::new(&caller_app("instances = \"singleton\"", ""));
    singleton.run(&["count", "4"]).assert_code(0).assert_stdout_has("counts: 1,2,3,4");
    let pool = TestApp::new(&caller_app("instances = \"pool:2\"", ""));
    // Calls from one caller come one at a time, so the pool reuses one instance.
    pool.run(&["count", "4"]).assert_code(0).assert_stdout_has("counts: 1,2,3,4");
}

#[test]
fn propagate_names_the_provider_the_function_and_the_trap() {
    let app = TestApp::new(&caller_app("instances = \"singleton\"", "on_trap = \"propagate\""));
    let out = app.run(&["trap"]);
    out.assert_code(LINK_FAILED)
        .assert_stderr_has(
            "component `caller` stopped: its call to `provider` through membrane:test/faults@0.1.0 (maybe-trap) failed",
        )
        .assert_stderr_has("component `provider` stopped: wasm `unreachable` executed")
        .assert_stderr_has("provider asked to trap");
    let audit = app.audit();
    assert!(
        audit.iter().any(|e| e["component"] == "provider" && e["event"] == "trap" && e["what"] == "unreachable"),
        "{audit:?}"
    );
}

/// The caller and a provider with a writable /state for the flaky function, with
/// `faults_link` settings on the faults link.
pub(crate) fn flaky_app(state: &std::path::Path, faults_link: &str) -> TestApp {
    let provider = format!("grants.dirs = [{{ host = \"{}\", guest = \"/state\" }}]", state.display());
    TestApp::new(&manifest(
        "caller",
        &[("caller", ""), ("provider", &provider)],
        &[
            ("caller", COUNTER, "provider", ""),
            ("caller", MEMORY, "provider", ""),
            ("caller", FAULTS, "provider", faults_link),
        ],
    ))
}

#[test]
fn retry_succeeds_after_transient_traps() {
    let state = tempfile::tempdir().unwrap();
    let app = flaky_app(state.path(), "on_trap = \"retry:2\"");
    app.run(&["flaky", "2"]).assert_code(0).assert_stdout_has("answer: ok after 3 attempts");
    let retries = app.audit().iter().filter(|e| e["event"] == "retry").count();
    assert_eq!(retries, 2);

    // One retry is not enough for two failures.
    let state = tempfile::tempdir().unwrap();
    let app = flaky_app(state.path(), "on_trap = \"retry:1\"");
    app.run(&["flaky", "2"]).assert_code(LINK_FAILED).assert_stderr_has("transient failure 2 of 2");
}

#[test]
fn a_fallback_answers_when_the_provider_traps() {
    // The primary provider has no /state, so `flaky` traps there; the fallback has one.
    let state = tempfile::tempdir().unwrap();
    let backup = format!(
        "source = \"{{provider}}\"\ngrants.dirs = [{{ host = \"{}\", guest = \"/state\" }}]",
        state.path().display()
    );
    let app = TestApp::new(&manifest(
        "caller",
        &[("caller", ""), ("provider", ""), ("backup", &backup)],
        &[
            ("caller", COUNTER, "provider", ""),
            ("caller", MEMORY, "provider", ""),
            ("caller", FAULTS, "provider", "on_trap = \"fallback:backup\""),
        ],
    ));
    app.run(&["flaky", "0"]).assert_code(0).assert_stdout_has("answer: ok after 1 attempts");
    let audit = app.audit();
    assert!(audit.iter().any(|e| e["event"] == "trap" && e["component"] == "provider"), "{audit:?}");
    let fallback = audit.iter().find(|e| e["event"] == "fallback").expect("a fallback event");
    assert_eq!(fallback["component"], "caller");
    assert!(fallback["outcome"].as_str().unwrap().contains("answered by `backup`"), "{fallback}");
}

#[test]
fn reentrancy_into_a_singleton_fails_clearly_and_per_call_is_served() {
    let app = |mode: &str| {
        TestApp::new(&manifest(
            "reentrant",
            &[("reentrant", &format!("instances = \"{mode}\"")), ("relay", "")],
            &[
                ("reentrant", "membrane:test/relay@0.1.0", "relay", ""),
                ("relay", "membrane:test/callback@0.1.0", "reentrant", ""),
            ],
        ))
    };
    let singleton = app("singleton");
    singleton
        .run(&[])
        .assert_code(LINK_FAILED)
        .assert_stderr_has("reentrant call into component `reentrant` (call chain: reentrant -> relay -> reentrant)");
    singleton.check(&[]).assert_code(0).assert_stderr_has("warning: link: link cycle reentrant -> relay -> reentrant");

    let per_call = app("per-call");
    per_call.run(&[]).assert_code(0).assert_stdout_has("relayed: pong from reentrant");
}

fn kv_app(store: &str) -> TestApp {
    TestApp::new(&manifest(
        "client",
        &[("client", "source = \"{kv-client}\""), ("store", &format!("source = \"{{provider}}\"\n{store}"))],
        &[("client", "membrane:test/kv@0.1.0", "store", "")],
    ))
}

#[test]
fn resources_are_proxied_across_a_link() {
    let app = kv_app("instances = \"singleton\"");
    let out = app.run(&["resources"]);
    out.assert_code(0);
    for line in [
        "a is named a",
        "a.colour = Some(\"teal\")",
        "merged 1",
        "a.shape = Some(\"hexagon\")",
        "live while held: 2",
        "consumed b",
        "live after consume: 1",
        // Dropping the consumer's handle ran the provider's destructor.
        "live after drop: 0",
    ] {
        out.assert_stdout_has(line);
    }
    // A handle number from anywhere else names nothing in this consumer's table.
    let out = app.run(&["forge", "1"]);
    assert_ne!(out.code, 0, "{out:?}");
    out.assert_stderr_has("component `client` stopped: host error: handle index 1");
    assert!(!out.stdout.contains("name:"), "{}", out.stdout);
}

#[test]
fn resources_need_a_singleton_provider() {
    kv_app("").check(&[]).assert_code(APP_CHECK).assert_stderr_has("set instances = \"singleton\" for `store`");
}

/// A component that exports membrane:test/counter with `increment` returning u32, not u64.
const WRONG_COUNTER: &str = r#"(component
  (core module $m (func (export "inc") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func $inc (result u32) (canon lift (core func $i "inc")))
  (instance $c (export "increment" (func $inc)))
  (export "membrane:test/counter@0.1.0" (instance $c)))"#;

#[test]
fn a_wit_mismatch_shows_both_sides() {
    let app = TestApp::new(&manifest(
        "caller",
        &[("caller", ""), ("provider", ""), ("wrong", "source = \"wrong.wat\"")],
        &[("caller", COUNTER, "wrong", ""), ("caller", MEMORY, "provider", ""), ("caller", FAULTS, "provider", "")],
    ));
    std::fs::write(app.path("wrong.wat"), WRONG_COUNTER).unwrap();
    app.check(&[])
        .assert_code(APP_CHECK)
        .assert_stderr_has(
            "error: link[0].to: `wrong` cannot serve membrane:test/counter@0.1.0 to `caller`: \
             function `increment` differs",
        )
        .assert_stderr_has("`caller` imports: increment: func() -> u64")
        .assert_stderr_has("`wrong` exports: increment: func() -> u32");
    // Running refuses the same way, before anything starts.
    app.run(&["count"]).assert_code(APP_CHECK).assert_stderr_has("function `increment` differs");
}

#[test]
fn an_unlinked_import_names_a_component_that_could_serve_it() {
    let app = TestApp::new(&manifest(
        "caller",
        &[("caller", ""), ("provider", "")],
        &[("caller", COUNTER, "provider", ""), ("caller", MEMORY, "provider", "")],
    ));
    app.check(&[]).assert_code(APP_CHECK).assert_stderr_has(
        "`caller` imports membrane:test/faults@0.1.0, which nothing supplies; add [[link]] from = \"caller\", \
         import = \"membrane:test/faults@0.1.0\", to = \"provider\"",
    );
}

#[test]
fn a_digest_pin_that_does_not_match_refuses_to_start() {
    let pinned = format!("instances = \"singleton\"\ndigest = \"sha256:{}\"", "ab".repeat(32));
    let app = TestApp::new(&caller_app(&pinned, ""));
    app.run(&["count"])
        .assert_code(APP_CHECK)
        .assert_stderr_has("component `provider`: digest mismatch: membrane.toml pins sha256:abab")
        .assert_stderr_has("update `digest` in [component.provider]");
}

#[test]
fn check_prints_the_graph_as_text_and_dot() {
    let app = TestApp::new(&caller_app("instances = \"singleton\"", "timeout = \"100ms\""));
    let out = app.check(&[]);
    out.assert_code(0)
        .assert_stdout_has("app test")
        .assert_stdout_has("  caller (per-call, entry)")
        .assert_stdout_has("    membrane:test/faults@0.1.0 -> provider [propagate, timeout 100ms, isolation store]")
        .assert_stdout_has("  provider (singleton)")
        .assert_stderr_has("ok, the app would start");
    let dot = app.check(&["--format", "dot"]);
    dot.assert_code(0).assert_stdout_has("digraph \"test\" {").assert_stdout_has(
        "\"caller\" -> \"provider\" [label=\"membrane:test/counter@0.1.0\\npropagate, isolation store\"];",
    );
}

/// An inner app exporting the provider's interfaces, granted `inner_grants`.
const INNER: &str = r#"[app]
name = "inner"

[app.exports]
"membrane:test/counter@0.1.0" = "store"
"membrane:test/memory@0.1.0" = "store"
"membrane:test/faults@0.1.0" = "store"

[component.store]
source = "{provider}"
instances = "singleton"
"#;

fn outer_app(outer_grants: &str, inner_grants: &str) -> TestApp {
    let services = format!("source = \"inner/membrane.toml\"\n{outer_grants}");
    let app = TestApp::new(&manifest(
        "caller",
        &[("caller", ""), ("services", &services)],
        &[("caller", COUNTER, "services", ""), ("caller", MEMORY, "services", ""), ("caller", FAULTS, "services", "")],
    ));
    std::fs::create_dir_all(app.path("inner")).unwrap();
    let mut inner = crate::util::with_guests(INNER);
    inner.push_str(inner_grants);
    std::fs::write(app.path("inner/membrane.toml"), inner).unwrap();
    app
}

#[test]
fn a_nested_app_serves_the_interfaces_it_exports() {
    let app = outer_app("", "");
    app.run(&["count", "3"]).assert_code(0).assert_stdout_has("counts: 1,2,3");
    app.check(&[]).assert_code(0).assert_stdout_has("  services.store (singleton)");
}

#[test]
fn a_nested_app_cannot_grant_more_than_it_is_given() {
    let shared = tempfile::tempdir().unwrap();
    let inner_grant = format!("grants.dirs = [{{ host = \"{}\", guest = \"/data\" }}]\n", shared.path().display());
    // Nothing granted outside: the inner grant is a violation.
    let app = outer_app("", &inner_grant);
    app.run(&["count"])
        .assert_code(78)
        .assert_stderr_has("component.store.grants.dirs[0]: grants")
        .assert_stderr_has("which")
        .assert_stderr_has("does not grant `services`; an inner app can only narrow what it is given");
    // Read-only outside and read-write inside is still more.
    let ro = format!("grants.dirs = [{{ host = \"{}\", guest = \"/data\", mode = \"ro\" }}]", shared.path().display());
    outer_app(&ro, &inner_grant).run(&["count"]).assert_code(78);
    // The same directory read-write outside: allowed.
    let rw = format!("grants.dirs = [{{ host = \"{}\", guest = \"/data\" }}]", shared.path().display());
    outer_app(&rw, &inner_grant).run(&["count", "2"]).assert_code(0).assert_stdout_has("counts: 1,2");
}

#[test]
fn the_pipeline_example_falls_back_from_a_crashing_plugin_and_carries_on() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/pipeline-out");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&out).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let audit = tempfile::tempdir().unwrap();
    let audit_log = audit.path().join("audit.jsonl");
    let manifest = root.join("examples/pipeline/membrane.toml");
    let run =
        crate::util::membrane_with(["run", "--audit-log", audit_log.to_str().unwrap(), manifest.to_str().unwrap()]);
    run.assert_code(0)
        .assert_stdout_has("/docs/welcome.md -> /out/welcome.html")
        .assert_stdout_has("/docs/untrusted.md -> /out/untrusted.html");
    let welcome = std::fs::read_to_string(out.join("welcome.html")).unwrap();
    assert!(welcome.contains("rendered by the fancy plugin; it sees 0 env vars; files: denied"), "{welcome}");
    assert!(welcome.contains("<em>third-party plugin</em>"), "{welcome}");
    let untrusted = std::fs::read_to_string(out.join("untrusted.html")).unwrap();
    assert!(untrusted.contains("rendered by the plain fallback"), "{untrusted}");
    assert!(untrusted.contains("&lt;script&gt;"), "{untrusted}");
    let audit = std::fs::read_to_string(&audit_log).unwrap();
    assert!(audit.contains(r#""component":"fancy","event":"trap""#), "{audit}");
    assert!(audit.contains("answered by `plain`"), "{audit}");
}

/// Grants of an app's components live in its manifest; a grant flag beside a manifest is
/// refused with the fix rather than silently ignored, whichever grant it is.
#[test]
fn grant_flags_beside_an_app_manifest_are_refused() {
    let app = TestApp::new(&caller_app("", ""));
    let manifest = app.manifest();
    for flag in [&["--allow-http", "https://api.example.com"][..], &["--allow-dns"], &["--env", "A=1"]] {
        let mut args = vec!["run"];
        args.extend_from_slice(flag);
        args.push(manifest.to_str().unwrap());
        membrane_with(args).assert_code(2).assert_stderr_has("remove the grant flags");
    }
}
