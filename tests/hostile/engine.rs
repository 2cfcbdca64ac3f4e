//! Each attack is the body of `maybe-trap` in a WAT provider of membrane:test/faults; the
//! caller's call falls back to a well-behaved provider in the same process, so the answer
//! it prints is the neighbour's, given after the attack was stopped.

use crate::util::{COUNTER, FAULTS, MEMORY, TestApp, manifest};

/// A provider of membrane:test/faults whose `maybe-trap` runs `attack` (WAT instructions
/// inside a core module that has `memory` and `table` as declared) and then traps.
pub fn faults_provider(memory: &str, table: &str, attack: &str, extra_core: &str) -> String {
    format!(
        r#"(component
  (core module $m
    (memory (export "mem") {memory})
    (table $t {table} funcref)
    {extra_core}
    (func (export "maybe-trap") (param i32) (result i32) {attack} unreachable)
    (func (export "flaky") (param i32) (result i32) unreachable)
    (func (export "spin") unreachable))
  (core instance $i (instantiate $m))
  (func $maybe-trap (param "trap" bool) (result string) (canon lift (core func $i "maybe-trap") (memory (core memory $i "mem"))))
  (func $flaky (param "n" u32) (result string) (canon lift (core func $i "flaky") (memory (core memory $i "mem"))))
  (func $spin (canon lift (core func $i "spin")))
  (instance $faults (export "maybe-trap" (func $maybe-trap)) (export "flaky" (func $flaky)) (export "spin" (func $spin)))
  (export "membrane:test/faults@0.1.0" (instance $faults)))"#
    )
}

/// The caller with counter and memory from the provider guest and faults from `evil.wat`
/// (with `evil` settings), falling back to the provider guest.
pub fn attacked_app(evil_wat: &str, evil: &str, link: &str) -> TestApp {
    let evil = format!("source = \"evil.wat\"\n{evil}");
    let link = format!("on_trap = \"fallback:good\"\n{link}");
    let app = TestApp::new(&manifest(
        "caller",
        &[("caller", ""), ("good", "source = \"{provider}\""), ("evil", &evil)],
        &[("caller", COUNTER, "good", ""), ("caller", MEMORY, "good", ""), ("caller", FAULTS, "evil", &link)],
    ));
    std::fs::write(app.path("evil.wat"), evil_wat).unwrap();
    app
}

/// Runs the caller's `ok` scenario against `evil`: the neighbour answers, and the audit
/// log shows the evil provider stopped with `kind`.
#[track_caller]
pub fn assert_contained(app: &TestApp, kind: &str) {
    let out = app.run(&["ok"]);
    out.assert_code(0).assert_stdout_has("answer: ok");
    crate::assert_no_host_panic(&out.stderr);
    let audit = app.audit();
    assert!(
        audit.iter().any(|e| e["component"] == "evil" && e["event"] == "trap" && e["what"] == kind),
        "no `{kind}` trap of evil in {audit:#?}"
    );
    assert!(audit.iter().any(|e| e["event"] == "fallback"), "{audit:#?}");
}

#[test]
fn a_memory_grow_bomb_stops_at_the_memory_limit() {
    let attack =
        "(block $done (loop $grow (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1))) (br $grow)))";
    let app = attacked_app(&faults_provider("1", "1", attack, ""), "limits = { memory = \"32MiB\" }", "");
    assert_contained(&app, "memory_limit");
}

#[test]
fn a_table_grow_bomb_stops_at_the_table_limit() {
    let attack = "(block $done (loop $grow (br_if $done (i32.eq (table.grow $t (ref.null func) (i32.const 100000)) (i32.const -1))) (br $grow)))";
    let app = attacked_app(&faults_provider("1", "1", attack, ""), "limits = { table_elements = 50000 }", "");
    assert_contained(&app, "table_limit");
}

/// A command component whose core module declares `memory` pages and `table` elements.
fn command_declaring(memory: &str, table: &str) -> String {
    format!(
        r#"(component
  (core module $m
    (memory {memory})
    (table {table} funcref)
    (func (export "run") (result i32) (i32.const 0)))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run)))"#
    )
}

#[test]
fn huge_declared_minimums_are_refused_without_a_panic() {
    // 4 GiB of memory and ten million table elements, demanded before any code runs.
    for (memory, table, limit) in [("65536", "1", "memory"), ("1", "10000000", "table")] {
        // In an app, the engine's instance slots cannot hold it: refused at load, by name.
        let app = attacked_app(&faults_provider(memory, table, "", ""), "", "");
        let out = app.run(&["ok"]);
        out.assert_code(74).assert_stderr_has("component `evil`").assert_stderr_has("pooling allocator");
        crate::assert_no_host_panic(&out.stderr);
        // Run alone, it is refused when instantiated, by the limit it exceeds.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greedy.wat");
        std::fs::write(&path, command_declaring(memory, table)).unwrap();
        let out = crate::util::membrane_with(["run", path.to_str().unwrap()]);
        assert!([84, 86].contains(&out.code), "{out:?}");
        out.assert_stderr_has(&format!("component `greedy` stopped: {limit} limit reached"));
        crate::assert_no_host_panic(&out.stderr);
    }
}

#[test]
fn a_maximum_size_memory_fill_overruns_a_one_tick_deadline_by_one_fill() {
    // 256 MiB filled again and again: one `memory.fill` cannot be interrupted, the loop can.
    let attack = "(loop $fill (memory.fill (i32.const 0) (i32.const 85) (i32.const 268435456)) (br $fill))";
    let app = attacked_app(&faults_provider("4096", "1", attack, ""), "", "timeout = \"5ms\"");
    assert_contained(&app, "timeout");
}

/// `n` instances of an inner component, each with a core instance of its own.
fn nested_instances(n: usize) -> String {
    let mut wat = String::from("(component $inner (core module $c) (core instance (instantiate $c)))\n");
    for i in 0..n {
        wat.push_str(&format!("(instance $n{i} (instantiate $inner))\n"));
    }
    wat
}

#[test]
fn hundreds_of_nested_instances_stop_at_the_instance_limit() {
    let with_nested = |n| {
        faults_provider("1", "1", "", "").replacen(
            "(core instance $i",
            &format!("{}(core instance $i", nested_instances(n)),
            1,
        )
    };
    // As a provider in an app: refused when instantiated, and the neighbour answers.
    let app = attacked_app(&with_nested(40), "limits = { instances = 10 }", "");
    let out = app.run(&["ok"]);
    out.assert_code(0).assert_stdout_has("answer: ok");
    crate::assert_no_host_panic(&out.stderr);
    let audit = app.audit();
    let fallback = audit.iter().find(|e| e["event"] == "fallback").expect("the neighbour answered instead");
    assert!(fallback["outcome"].as_str().unwrap().contains("`evil` failed"), "{fallback}");
    // More than the engine's instance slots hold is refused at load, naming the component.
    let app = attacked_app(&with_nested(900), "", "");
    app.run(&["ok"])
        .assert_code(74)
        .assert_stderr_has("component `evil`")
        .assert_stderr_has("901 core module instances");
    // More than the format allows is refused as invalid, before anything is compiled.
    let app = attacked_app(&with_nested(1001), "", "");
    app.run(&["ok"]).assert_code(74).assert_stderr_has("instances count exceeds limit");
}
