use crate::util::{guests, membrane, output};
use std::path::Path;

fn run_hello(cache: &Path) -> crate::util::Outcome {
    let out = output(
        membrane()
            .env("MEMBRANE_CACHE_DIR", cache)
            .env("MEMBRANE_LOG", "membrane_runtime=debug")
            .args(["run", guests::HELLO]),
    );
    out.assert_code(0).assert_stdout_has("hello from inside a membrane");
    out
}

/// Every file in the cache directory.
fn files(cache: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

/// The compiled artifacts (each has a `.sum` beside it).
pub fn entries(cache: &Path) -> Vec<std::path::PathBuf> {
    let files = files(cache);
    let entries: Vec<_> = files.iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).cloned().collect();
    for entry in &entries {
        let sum = entry.with_extension("cwasm.sum");
        assert!(files.contains(&sum), "{} has no checksum file beside it", entry.display());
    }
    entries
}

#[test]
fn the_second_run_uses_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    run_hello(cache.path()).assert_stderr_has("compile cache miss");
    assert_eq!(entries(cache.path()).len(), 1);
    run_hello(cache.path()).assert_stderr_has("compile cache hit");
}

#[test]
fn a_corrupt_entry_is_detected_and_replaced() {
    let cache = tempfile::tempdir().unwrap();
    run_hello(cache.path());
    let entry = entries(cache.path()).pop().unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    run_hello(cache.path()).assert_stderr_has("compile cache entry rejected").assert_stderr_has("checksum mismatch");
    run_hello(cache.path()).assert_stderr_has("compile cache hit");
    // A truncated entry is rejected the same way.
    std::fs::write(&entry, b"membrane").unwrap();
    run_hello(cache.path()).assert_stderr_has("compile cache entry rejected");
    // So is an artifact whose checksum file is gone.
    run_hello(cache.path()).assert_stderr_has("compile cache hit");
    std::fs::remove_file(entry.with_extension("cwasm.sum")).unwrap();
    run_hello(cache.path()).assert_stderr_has("compile cache miss");
    run_hello(cache.path()).assert_stderr_has("compile cache hit");
}

#[test]
fn no_cache_writes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let out = output(
        membrane().env("MEMBRANE_CACHE_DIR", cache.path()).env("MEMBRANE_LOG", "membrane_runtime=debug").args([
            "run",
            "--no-cache",
            guests::HELLO,
        ]),
    );
    out.assert_code(0);
    assert!(!out.stderr.contains("compile cache"), "{}", out.stderr);
    assert!(files(cache.path()).is_empty());
}
