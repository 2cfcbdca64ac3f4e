use crate::util::{guests, membrane_with};

// Exit codes from `membrane run --help`.
const TRAP: i32 = 80;
const OUT_OF_FUEL: i32 = 81;
const CPU_TIME: i32 = 82;
const TIMEOUT: i32 = 83;
const MEMORY_LIMIT: i32 = 84;
const STACK_OVERFLOW: i32 = 85;

#[test]
fn a_spinning_guest_is_stopped_by_its_cpu_time() {
    membrane_with(["run", "--cpu-time", "200ms", guests::SPIN])
        .assert_code(CPU_TIME)
        .assert_stdout_has("spinning")
        .assert_stderr_has("component `spin` stopped: CPU time limit reached");
}

#[test]
fn a_spinning_guest_is_stopped_by_its_wall_clock_timeout() {
    membrane_with(["run", "--timeout", "300ms", guests::SPIN])
        .assert_code(TIMEOUT)
        .assert_stderr_has("component `spin` stopped: timed out");
}

#[test]
fn the_timeout_includes_time_blocked_in_host_calls_and_cpu_time_does_not() {
    // Sleeping uses no CPU, so only the wall clock can end it.
    membrane_with(["run", "--cpu-time", "50ms", "--timeout", "500ms", guests::SPIN, "--", "sleep"])
        .assert_code(TIMEOUT)
        .assert_stdout_has("sleeping")
        .assert_stderr_has("timed out");
}

#[test]
fn a_guest_runs_out_of_fuel() {
    membrane_with(["run", "--fuel", "5000000", guests::SPIN]).assert_code(OUT_OF_FUEL).assert_stderr_has("out of fuel");
}

#[test]
fn memory_is_capped_for_the_whole_component() {
    membrane_with(["run", "--max-memory", "32MiB", guests::MEMHOG])
        .assert_code(MEMORY_LIMIT)
        .assert_stderr_has("component `memhog` stopped: memory limit reached")
        .assert_stderr_has("32MiB");
    // Under the cap the same guest finishes.
    membrane_with(["run", "--max-memory", "64MiB", guests::MEMHOG, "--", "16"])
        .assert_code(0)
        .assert_stdout_has("held 16 MiB, stopping");
}

#[test]
fn unbounded_recursion_overflows_the_wasm_stack() {
    membrane_with(["run", "--max-wasm-stack", "256KiB", guests::DEEP])
        .assert_code(STACK_OVERFLOW)
        .assert_stderr_has("stack overflow")
        .assert_stderr_has("descend");
}

#[test]
fn a_panic_is_a_trap_with_the_guest_backtrace() {
    membrane_with(["run", guests::PANICKY])
        .assert_code(TRAP)
        .assert_stderr_has("invariant violated: expected 42, got 7")
        .assert_stderr_has("component `panicky` stopped: wasm `unreachable` executed")
        .assert_stderr_has("guest backtrace:")
        .assert_stderr_has("check_invariant");
}

#[test]
fn too_few_instances_refuse_instantiation() {
    let out = membrane_with(["run", "--max-instances", "1", guests::HELLO]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("instance"), "{}", out.stderr);
}

#[test]
fn the_guest_exit_status_passes_through() {
    membrane_with(["run", guests::HELLO, "--", "--exit", "0"]).assert_code(0);
    // Rust's std reports any non-zero exit through WASI's `exit(err)`, which is 1.
    membrane_with(["run", guests::HELLO, "--", "--exit", "3"]).assert_code(1).assert_stderr_has("exiting with 3");
}

/// A command component in WAT whose `run` grows a table by a million elements and traps
/// with `unreachable` if the growth is refused.
const TABLE_BOMB: &str = r#"(component
  (core module $m
    (table $t 1 funcref)
    (func (export "run") (result i32)
      (if (i32.eq (table.grow $t (ref.null func) (i32.const 1000000)) (i32.const -1))
        (then unreachable))
      (i32.const 0)))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $run-instance (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run-instance)))"#;

#[test]
fn a_table_grow_bomb_is_stopped_by_the_table_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table-bomb.wat");
    std::fs::write(&path, TABLE_BOMB).unwrap();
    membrane_with(["run", "--max-table-elements", "10000", path.to_str().unwrap()])
        .assert_code(86)
        .assert_stderr_has("component `table-bomb` stopped: table limit reached")
        .assert_stderr_has("10000 elements");
    // With room for it, the same growth succeeds.
    membrane_with(["run", "--max-table-elements", "2000000", path.to_str().unwrap()]).assert_code(0);
}
