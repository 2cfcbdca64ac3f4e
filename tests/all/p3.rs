use crate::util::{TestApp, guests, membrane, membrane_with, output};
use std::fs;
use std::net::TcpListener;

// Exit codes from `membrane run --help`, the same as for WASI 0.2 components.
const UNSATISFIED_IMPORT: i32 = 75;
const OUT_OF_FUEL: i32 = 81;
const CPU_TIME: i32 = 82;
const TIMEOUT: i32 = 83;
const MEMORY_LIMIT: i32 = 84;
const STACK_OVERFLOW: i32 = 85;
const NOT_SUPPORTED: i32 = 93;
const APP_CHECK: i32 = 79;

/// `membrane run [flags] p3-probe <args...>`.
fn probe(flags: &[&str], args: &[&str]) -> crate::util::Outcome {
    let mut all = vec!["run"];
    all.extend_from_slice(flags);
    all.push(guests::P3_PROBE);
    all.push("--");
    all.extend_from_slice(args);
    let out = membrane_with(&all);
    assert!(!out.stderr.contains("not a valid component"), "a WASI 0.3 component was called invalid:\n{}", out.stderr);
    out
}

/// The probe's one result line for `args`, after a successful run.
fn probe_line(flags: &[&str], args: &[&str]) -> String {
    let out = probe(flags, args);
    out.assert_code(0);
    out.stdout.lines().last().unwrap_or_default().to_string()
}

#[test]
fn a_wasi_p3_command_runs_with_its_output_and_args() {
    probe(&[], &["hello", "one", "two"]).assert_code(0).assert_stdout_has("hello from p3; args: hello one two");
}

#[test]
fn a_wasi_p3_command_exits_with_the_statuses_of_p2() {
    probe(&[], &["fail"]).assert_code(1);
    probe(&[], &["exit-err"]).assert_code(1);
    probe(&[], &["exit-code", "7"]).assert_code(7);
}

#[test]
fn env_and_stdin_reach_a_wasi_p3_command_only_when_granted() {
    let out = output(membrane().env("P3_SECRET", "leaked").args(["run", guests::P3_PROBE, "--", "env", "P3_SECRET"]));
    out.assert_code(0).assert_stdout_has("P3_SECRET unset");
    assert_eq!(probe_line(&["--env", "P3_SECRET=given"], &["env", "P3_SECRET"]), "P3_SECRET=given");

    let piped = |flags: &[&str]| {
        let mut cmd = membrane();
        cmd.arg("run").args(flags).args([guests::P3_PROBE, "--", "stdin"]);
        cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"typed").unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    assert_eq!(piped(&[]).trim(), "stdin:");
    assert_eq!(piped(&["--stdin"]).trim(), "stdin: typed");
}

#[test]
fn a_read_only_dir_refuses_every_change_through_the_p3_filesystem_api() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("ro")).unwrap();
    fs::write(root.path().join("ro/kept.txt"), "kept").unwrap();
    let ro = format!("{}::/ro:ro", root.path().join("ro").display());
    let flags = ["--dir", ro.as_str()];

    assert_eq!(probe_line(&flags, &["fs", "read", "/ro/kept.txt"]), "ok kept");
    for op in ["write", "truncate", "set-size", "rename", "unlink"] {
        assert_eq!(probe_line(&flags, &["fs", op, "/ro/kept.txt"]), "error ErrorCode::NotPermitted", "{op}");
    }
    for op in ["create", "mkdir"] {
        assert_eq!(probe_line(&flags, &["fs", op, "/ro/new"]), "error ErrorCode::NotPermitted", "{op}");
    }
    assert_eq!(fs::read_to_string(root.path().join("ro/kept.txt")).unwrap(), "kept");
    let names: Vec<_> = fs::read_dir(root.path().join("ro")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["kept.txt"]);
    // Without the grant the directory is not there at all.
    assert_eq!(probe_line(&[], &["fs", "read", "/ro/kept.txt"]), "error no preopened directory holds /ro/kept.txt");
}

#[test]
fn a_read_write_dir_takes_changes_through_the_p3_filesystem_api() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("old.txt"), "old contents").unwrap();
    let rw = format!("{}::/rw", root.path().display());
    let flags = ["--dir", rw.as_str()];
    assert_eq!(probe_line(&flags, &["fs", "create", "/rw/new.txt"]), "ok written");
    assert_eq!(fs::read_to_string(root.path().join("new.txt")).unwrap(), "written by p3-probe\n");
    assert_eq!(probe_line(&flags, &["fs", "truncate", "/rw/old.txt"]), "ok truncated");
    assert_eq!(fs::read_to_string(root.path().join("old.txt")).unwrap(), "");
    assert_eq!(probe_line(&flags, &["fs", "rename", "/rw/new.txt"]), "ok renamed");
    assert!(root.path().join("new.txt.renamed").exists());
}

#[test]
fn a_wasi_p3_socket_needs_a_grant_and_every_denial_is_audited() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // No TCP grant: no socket at all.
    assert_eq!(probe_line(&[], &["connect", &addr]), "error create ErrorCode::AccessDenied");
    // A grant for another address: the socket exists, the connection is refused and audited.
    let audit = tempfile::tempdir().unwrap();
    let log = audit.path().join("audit.jsonl");
    let log_flag = log.to_str().unwrap();
    let other = ["--allow-tcp", "127.0.0.1:1", "--audit-log", log_flag];
    assert_eq!(probe_line(&other, &["connect", &addr]), "error connect ErrorCode::AccessDenied");
    let events = fs::read_to_string(&log).unwrap();
    assert!(events.contains(r#""event":"denied""#) && events.contains(&format!("TcpConnect {addr}")), "{events}");
    // The granted address connects.
    assert_eq!(probe_line(&["--allow-tcp", &addr], &["connect", &addr]), "ok connected");
}

#[test]
fn a_wasi_p3_guest_holds_no_more_sockets_than_its_limit_and_refusals_are_audited() {
    let audit = tempfile::tempdir().unwrap();
    let log = audit.path().join("audit.jsonl");
    let log_flag = log.to_str().unwrap();
    assert_eq!(
        probe_line(&["--audit-log", log_flag], &["sockets", "3"]),
        "created 0 then error ErrorCode::AccessDenied"
    );
    assert!(fs::read_to_string(&log).unwrap().contains("a socket needs grants.allow_tcp"));
    let flags = ["--allow-tcp", "127.0.0.1:1", "--max-sockets", "2", "--audit-log", log_flag];
    assert_eq!(
        probe_line(&flags, &["sockets", "5"]),
        r#"created 2 then error ErrorCode::Other(Some("new-socket-limit"))"#
    );
    assert!(fs::read_to_string(&log).unwrap().contains("the instance holds 2 sockets"));
    assert_eq!(probe_line(&["--allow-tcp", "127.0.0.1:1"], &["sockets", "5"]), "created 5");
    // UDP: no socket without a UDP grant; with one, within the same budget.
    assert_eq!(probe_line(&["--allow-tcp", "127.0.0.1:1"], &["udp"]), "error create ErrorCode::AccessDenied");
    assert_eq!(probe_line(&["--allow-udp", "127.0.0.1:9"], &["udp"]), "ok created");
    let none = ["--allow-udp", "127.0.0.1:9", "--max-sockets", "0"];
    assert_eq!(probe_line(&none, &["udp"]), r#"error create ErrorCode::Other(Some("new-socket-limit"))"#);
}

#[test]
fn limits_stop_a_wasi_p3_command_with_the_p2_fault_reports() {
    probe(&["--fuel", "5000000"], &["spin"]).assert_code(OUT_OF_FUEL).assert_stderr_has("out of fuel");
    probe(&["--cpu-time", "200ms"], &["spin"])
        .assert_code(CPU_TIME)
        .assert_stderr_has("component `p3_probe` stopped: CPU time limit reached");
    probe(&["--timeout", "300ms"], &["spin"]).assert_code(TIMEOUT).assert_stderr_has("300ms wall-clock limit");
    probe(&["--max-memory", "16MiB"], &["alloc", "64"]).assert_code(MEMORY_LIMIT).assert_stderr_has("memory limit");
    probe(&["--max-memory", "64MiB"], &["alloc", "16"]).assert_code(0).assert_stdout_has("allocated 16 MiB");
    probe(&["--max-wasm-stack", "256KiB"], &["recurse"])
        .assert_code(STACK_OVERFLOW)
        .assert_stderr_has("stack overflow")
        .assert_stderr_has("descend");
}

#[test]
fn an_app_runs_a_wasi_p3_entry_and_is_no_http_handler() {
    let app = TestApp::new("[app]\nname = \"p3\"\nentry = \"probe\"\n\n[component.probe]\nsource = \"{p3-probe}\"\n");
    app.run(&["hello", "x"]).assert_code(0).assert_stdout_has("hello from p3; args: hello x");
    // A WASI 0.3 command is not an HTTP handler.
    membrane_with(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off", guests::P3_PROBE])
        .assert_code(APP_CHECK)
        .assert_stderr_has("exports neither wasi:http/incoming-handler (WASI 0.2) nor wasi:http/handler (WASI 0.3)");
}

#[test]
fn what_wasmtime_48_does_not_implement_of_wasi_p3_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let timezone = dir.path().join("timezone.wat");
    fs::write(&timezone, r#"(component (import "wasi:clocks/timezone@0.3.0" (instance (export "display" (func)))))"#)
        .unwrap();
    membrane_with(["run", timezone.to_str().unwrap()])
        .assert_code(UNSATISFIED_IMPORT)
        .assert_stderr_has("wasi:clocks/timezone@0.3.0 is an unstable WASI 0.3 interface");
    let error_context = dir.path().join("error-context.wat");
    fs::write(&error_context, "(component (core func (canon error-context.drop)))").unwrap();
    let out = membrane_with(["run", error_context.to_str().unwrap()]);
    out.assert_code(NOT_SUPPORTED)
        .assert_stderr_has("`error-context.drop` (the component model error-context feature)");
    assert!(!out.stderr.contains("not a valid component"), "{}", out.stderr);
}

#[test]
fn a_wasi_p3_engine_keeps_its_own_compile_cache_entries() {
    let cache = tempfile::tempdir().unwrap();
    let run = |guest: &str, arg: &str| {
        let out = output(
            membrane()
                .env("MEMBRANE_CACHE_DIR", cache.path())
                .env("MEMBRANE_LOG", "membrane_runtime=debug")
                .args(["run", guest, "--", arg]),
        );
        out.assert_code(0);
        out
    };
    run(guests::P3_PROBE, "hello").assert_stderr_has("compile cache miss");
    run(guests::P3_PROBE, "hello").assert_stderr_has("compile cache hit");
    run(guests::HELLO, "x").assert_stderr_has("compile cache miss");
    // `<component digest>-<engine hash>.cwasm`: a WASI 0.3 engine has a hash of its own.
    let engines: std::collections::BTreeSet<String> = crate::cache::entries(cache.path())
        .iter()
        .map(|e| e.file_stem().unwrap().to_string_lossy().rsplit('-').next().unwrap().to_string())
        .collect();
    assert_eq!(engines.len(), 2, "{engines:?}");
}

#[test]
fn inspect_shows_wasi_p3_imports_with_their_grants() {
    let out = membrane_with(["inspect", guests::P3_PROBE]);
    out.assert_code(0)
        .assert_stdout_has("wasi:cli/run@0.3.0")
        .assert_stdout_has("run: async func() -> result")
        .assert_stdout_has("wasi:filesystem/preopens@0.3.0  -> --dir")
        .assert_stdout_has("wasi:sockets/types@0.3.0        -> --allow-tcp");
}

#[test]
fn a_component_cut_short_inside_a_nested_module_is_invalid_not_a_crash() {
    // A component header, then a module section that claims 100 bytes and has 3: the
    // WASI 0.3 detection must stop there and leave the verdict to validation.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wasm");
    fs::write(&path, b"\0asm\x0d\x00\x01\x00\x01\x64\x00\x01\x02").unwrap();
    let out = membrane_with(["run", path.to_str().unwrap()]);
    out.assert_code(74).assert_stderr_has("is not a valid component");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}
