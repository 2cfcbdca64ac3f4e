use crate::util::{guests, membrane_with};
use std::fs;

#[test]
fn a_missing_file_is_named() {
    membrane_with(["run", "no/such/component.wasm"])
        .assert_code(71)
        .assert_stderr_has("no/such/component.wasm: no such file");
}

#[test]
fn a_file_that_is_not_wasm_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.wasm");
    fs::write(&path, "just some text").unwrap();
    membrane_with(["run", path.to_str().unwrap()]).assert_code(72).assert_stderr_has("is not WebAssembly");
}

#[test]
fn a_core_module_is_explained_with_how_to_make_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("core.wasm");
    fs::write(&binary, wat::parse_str("(module (func (export \"_start\")))").unwrap()).unwrap();
    let text = dir.path().join("core.wat");
    fs::write(&text, "(module)").unwrap();
    for path in [&binary, &text] {
        membrane_with(["run", path.to_str().unwrap()])
            .assert_code(73)
            .assert_stderr_has("is a core WebAssembly module, not a component")
            .assert_stderr_has("wasm32-wasip2")
            .assert_stderr_has("not a WASI preview 1 command");
    }
}

#[test]
fn a_broken_component_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.wasm");
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend_from_slice(&[0x07, 0x20, 0xff, 0xff]);
    fs::write(&path, bytes).unwrap();
    membrane_with(["run", path.to_str().unwrap()]).assert_code(74).assert_stderr_has("is not a valid component");
}

#[test]
fn an_import_nothing_supplies_is_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("needs-render.wat");
    fs::write(
        &path,
        r#"(component
             (import "example:markdown/render@0.1.0" (instance
               (export "render" (func))))
           )"#,
    )
    .unwrap();
    membrane_with(["run", path.to_str().unwrap()])
        .assert_code(75)
        .assert_stderr_has("component `needs-render` cannot start")
        .assert_stderr_has("imports example:markdown/render@0.1.0")
        .assert_stderr_has("[[link]]");
}

#[test]
fn a_component_without_wasi_cli_run_is_not_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("library.wat");
    fs::write(&path, "(component)").unwrap();
    membrane_with(["run", path.to_str().unwrap()]).assert_code(76).assert_stderr_has("does not export wasi:cli/run");
}

#[test]
fn a_dir_grant_for_a_missing_host_dir_is_refused() {
    membrane_with(["run", "--dir", "/no/such/dir::/data", guests::HELLO])
        .assert_code(77)
        .assert_stderr_has("/no/such/dir")
        .assert_stderr_has("create the directory or fix the host path");
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let out = membrane_with(["run", "--max-memory", "lots", guests::HELLO]);
    out.assert_code(2).assert_stderr_has("e.g. 64MiB");
    let out = membrane_with(["run", "--allow-tcp", "example.com:80", guests::HELLO]);
    out.assert_code(2).assert_stderr_has("CIDR");
}
