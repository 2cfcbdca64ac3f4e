use crate::engine::{assert_contained, attacked_app, faults_provider};
use crate::util::{COUNTER, FAULTS, MEMORY, TestApp, manifest};

/// A provider of membrane:test/memory with a `realloc` that answers with `realloc_body`
/// and a `peek` that answers with `peek_body` (both WAT instructions leaving an i32).
fn memory_provider(realloc_body: &str, peek_body: &str) -> String {
    format!(
        r#"(component
  (core module $m
    (memory (export "mem") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) {realloc_body})
    (func (export "plant") (param i32 i32) (result i32) (i32.const 0))
    (func (export "peek") (param i32 i32) (result i32) {peek_body})
    (func (export "reverse") (param i32 i32) (result i32)
      (i32.store (i32.const 16) (local.get 0))
      (i32.store (i32.const 20) (local.get 1))
      (i32.const 16)))
  (core instance $i (instantiate $m))
  (alias core export $i "mem" (core memory $mem))
  (alias core export $i "realloc" (core func $realloc))
  (func $plant (param "secret" string) (result u32) (canon lift (core func $i "plant") (memory $mem) (realloc $realloc)))
  (func $peek (param "addr" u32) (param "len" u32) (result (list u8)) (canon lift (core func $i "peek") (memory $mem) (realloc $realloc)))
  (func $reverse (param "data" (list u8)) (result (list u8)) (canon lift (core func $i "reverse") (memory $mem) (realloc $realloc)))
  (instance $memory (export "plant" (func $plant)) (export "peek" (func $peek)) (export "reverse" (func $reverse)))
  (export "membrane:test/memory@0.1.0" (instance $memory)))"#
    )
}

/// The caller with its memory link served by `evil.wat`, falling back to the provider.
fn memory_attacked_app(evil_wat: &str) -> TestApp {
    let app = TestApp::new(&manifest(
        "caller",
        &[("caller", ""), ("good", "source = \"{provider}\""), ("evil", "source = \"evil.wat\"")],
        &[
            ("caller", COUNTER, "good", ""),
            ("caller", MEMORY, "evil", "on_trap = \"fallback:good\""),
            ("caller", FAULTS, "good", ""),
        ],
    ));
    std::fs::write(app.path("evil.wat"), evil_wat).unwrap();
    app
}

#[test]
fn a_hostile_realloc_cannot_make_the_host_write_outside_the_provider() {
    // Memory for the caller's list "at" the end of the address space, past the provider's
    // memory, and one that overlaps its end.
    for address in ["(i32.const -16)", "(i32.const 65534)"] {
        let app = memory_attacked_app(&memory_provider(address, "(i32.const 0)"));
        let out = app.run(&["copies"]);
        out.assert_code(0).assert_stdout_has("sent [1, 2, 3, 4], got [4, 3, 2, 1]");
        crate::assert_no_host_panic(&out.stderr);
        let audit = app.audit();
        assert!(audit.iter().any(|e| e["component"] == "evil" && e["event"] == "trap"), "{audit:#?}");
    }
}

#[test]
fn invalid_results_from_a_provider_are_refused_not_trusted() {
    // A (list u8) result claiming 1 GiB at an address past the provider's memory.
    let peek =
        "(i32.store (i32.const 16) (i32.const 4096)) (i32.store (i32.const 20) (i32.const 1073741824)) (i32.const 16)";
    let app = memory_attacked_app(&memory_provider("(i32.const 1024)", peek));
    let out = app.run(&["canary"]);
    out.assert_code(0).assert_stdout_has("provider has at 0: ");
    crate::assert_no_host_panic(&out.stderr);
    assert!(app.audit().iter().any(|e| e["component"] == "evil" && e["event"] == "trap"), "{:#?}", app.audit());

    // A string result that is not UTF-8, and one whose pointer is out of bounds.
    for result in [
        "(i32.store (i32.const 100) (i32.const 0xfffefdfc)) (i32.store (i32.const 16) (i32.const 100)) (i32.store (i32.const 20) (i32.const 4)) (i32.const 16)",
        "(i32.store (i32.const 16) (i32.const -8)) (i32.store (i32.const 20) (i32.const 64)) (i32.const 16)",
    ] {
        let attack = format!("(return {result})");
        let app = attacked_app(&faults_provider("1", "1", &attack, ""), "", "");
        assert_contained(&app, "host_error");
    }
}

/// Runs `membrane <args>` and samples its peak resident memory (VmHWM, KiB) until it exits.
pub fn run_with_peak_rss(args: &[&str]) -> (crate::util::Outcome, u64) {
    let child = crate::util::membrane()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            while let Ok(text) = std::fs::read_to_string(&status) {
                let hwm = text.lines().find_map(|l| l.strip_prefix("VmHWM:")).map(|v| v.trim().trim_end_matches(" kB"));
                match hwm.and_then(|v| v.parse().ok()) {
                    Some(kib) => peak.store(kib, std::sync::atomic::Ordering::Relaxed),
                    None => break,
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let out = child.wait_with_output().unwrap();
    sampler.join().unwrap();
    let outcome = crate::util::Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (outcome, peak.load(std::sync::atomic::Ordering::Relaxed))
}

#[test]
fn a_gigabyte_list_across_a_link_is_refused_with_bounded_host_memory() {
    let app = TestApp::new(&manifest(
        "caller",
        &[("caller", "limits = { memory = \"1280MiB\" }"), ("provider", "")],
        &[("caller", COUNTER, "provider", ""), ("caller", MEMORY, "provider", ""), ("caller", FAULTS, "provider", "")],
    ));
    let manifest = app.manifest();
    let run = |mib: &str| run_with_peak_rss(&["run", manifest.to_str().unwrap(), "--", "big", mib]);
    let (out, _) = run("1");
    out.assert_code(0).assert_stdout_has("sent 1 MiB, got 1048576 bytes back");
    // wasmtime meters what one host call may copy; a gigabyte is far over it, and the
    // host holds little beyond the guest's own gigabyte.
    let (out, peak_kib) = run("1024");
    assert_ne!(out.code, 0, "{out:?}");
    out.assert_stderr_has("component `caller` stopped")
        .assert_stderr_has("too much data is being copied between the host and the guest");
    crate::assert_no_host_panic(&out.stderr);
    assert!(peak_kib < (1024 + 512) * 1024, "peak RSS {peak_kib} KiB for a 1 GiB list");
}

#[test]
fn a_provider_trapping_with_resources_borrowed_fails_the_call_cleanly() {
    let app = TestApp::new(&manifest(
        "client",
        &[("client", "source = \"{kv-client}\""), ("store", "source = \"{provider}\"\ninstances = \"singleton\"")],
        &[("client", "membrane:test/kv@0.1.0", "store", "")],
    ));
    let out = app.run(&["trap-borrowed"]);
    out.assert_code(87)
        .assert_stdout_has("merging with both borrowed")
        .assert_stderr_has("its call to `store` through membrane:test/kv@0.1.0 (merge) failed")
        .assert_stderr_has("merging a poisoned bucket");
    // The client's handles died with the provider instance; dropping them at exit is no
    // crash of the host.
    crate::assert_no_host_panic(&out.stderr);
    assert!(!out.stdout.contains("merged"), "{}", out.stdout);
    let audit = app.audit();
    assert!(audit.iter().any(|e| e["component"] == "store" && e["event"] == "trap"), "{audit:#?}");
    // The same app, next time, works.
    app.run(&["resources"]).assert_code(0).assert_stdout_has("live after drop: 0");
}
