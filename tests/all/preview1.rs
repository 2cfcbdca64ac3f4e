use crate::util::{Outcome, guests, membrane_with};

/// `membrane run [flags] <p1-probe module> <args>`.
fn probe(flags: &[&str], args: &[&str]) -> Outcome {
    let mut all = vec!["run"];
    all.extend_from_slice(flags);
    all.push(guests::P1_PROBE_MODULE);
    all.extend_from_slice(args);
    membrane_with(all)
}

#[test]
fn the_guest_is_a_core_module_built_for_preview_1() {
    let bytes = std::fs::read(guests::P1_PROBE_MODULE).unwrap();
    assert!(bytes.starts_with(b"\0asm\x01\0\0\0"), "a core module (version 1), not a component");
    // inspect sees the adapted component: a command with preview 2 imports.
    membrane_with(["inspect", guests::P1_PROBE_MODULE])
        .assert_code(0)
        .assert_stdout_has("wasi:cli/run@0.2")
        .assert_stdout_has("wasi:filesystem/preopens@0.2");
}

#[test]
fn a_preview_1_module_gets_granted_dirs_and_env_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("note.txt"), "inside").unwrap();
    let rw = format!("{}::/data", dir.path().display());
    let ro = format!("{}::/data:ro", dir.path().display());

    probe(&[], &["args", "a", "b"]).assert_code(0).assert_stdout_has("ok: args: a b");
    // Denied by default: no preopens, an empty environment.
    probe(&[], &["read", "/data/note.txt"]).assert_code(0).assert_stdout_has("denied:");
    probe(&[], &["env", "HOME"]).assert_code(0).assert_stdout_has("ok: HOME unset; environment has 0 variable(s)");
    // Granted.
    probe(&["--dir", &rw], &["read", "/data/note.txt"]).assert_code(0).assert_stdout_has("ok: read: inside");
    probe(&["--env", "GREETING=hi"], &["env", "GREETING"]).assert_code(0).assert_stdout_has("ok: GREETING=hi");
    probe(&["--dir", &rw], &["write", "/data/new.txt", "written"]).assert_code(0).assert_stdout_has("ok: wrote");
    assert_eq!(std::fs::read_to_string(dir.path().join("new.txt")).unwrap(), "written");
    // A read-only dir stays read-only through the adapter.
    probe(&["--dir", &ro], &["list", "/data"]).assert_code(0).assert_stdout_has("ok: entries: new.txt,note.txt");
    probe(&["--dir", &ro], &["write", "/data/note.txt", "changed"]).assert_code(0).assert_stdout_has("denied:");
    probe(&["--dir", &ro], &["write", "/data/other.txt", "x"]).assert_code(0).assert_stdout_has("denied:");
    assert_eq!(std::fs::read_to_string(dir.path().join("note.txt")).unwrap(), "inside");
    assert!(!dir.path().join("other.txt").exists());
}

#[test]
fn a_preview_1_module_is_held_to_its_limits() {
    membrane_with(["run", "--fuel", "1000", guests::P1_PROBE_MODULE, "args"]).assert_code(81);
}

#[test]
fn the_adapted_component_is_cached_like_any_other() {
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        membrane_with(["run", "--cache-dir", cache.path().to_str().unwrap(), guests::P1_PROBE_MODULE, "args", "cached"])
    };
    run().assert_code(0).assert_stdout_has("ok: args: cached");
    let entries = crate::cache::entries(cache.path());
    assert_eq!(entries.len(), 1, "one entry for the adapted component: {entries:?}");
    let modified = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();
    run().assert_code(0).assert_stdout_has("ok: args: cached");
    assert_eq!(std::fs::metadata(&entries[0]).unwrap().modified().unwrap(), modified, "the second run hit the cache");
}
