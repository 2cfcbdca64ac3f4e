use crate::oci_server::{Registry, oras};
use crate::util::{Outcome, TestApp, guests, membrane_with};
use sha2::{Digest, Sha256};
use std::path::Path;

fn sha256_of(path: &Path) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(std::fs::read(path).unwrap())))
}

/// A registry and a data dir of this test's own.
struct Setup {
    registry: Registry,
    data: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup { registry: Registry::start(), data: tempfile::tempdir().unwrap() }
    }

    /// `membrane VERB --data-dir D --insecure-registry HOST [extra flags] ARGS…`.
    fn membrane(&self, verb: &str, flags: &[&str], args: &[&str]) -> Outcome {
        let host = self.registry.host();
        let mut all = vec![verb, "--data-dir", self.data.path().to_str().unwrap(), "--insecure-registry", &host];
        all.extend_from_slice(flags);
        all.extend_from_slice(args);
        membrane_with(all)
    }

    fn push(&self, file: &str, reference: &str) -> Outcome {
        self.membrane("push", &[], &[file, reference])
    }

    fn blob(&self, digest: &str) -> std::path::PathBuf {
        self.data.path().join("oci/blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())
    }
}

/// The value after `label` on the line that starts with it (`  digest     sha256:…`).
fn field(out: &Outcome, label: &str) -> String {
    let line = out.stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| {
        panic!("no {label} line in\n{}", out.stdout);
    });
    line.trim_start()[label.len()..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_component_pushed_and_pulled_by_membrane_runs_from_the_registry_and_offline() {
    let s = Setup::new();
    let reference = format!("{}:v1", s.registry.oci("hello"));
    let file_digest = sha256_of(Path::new(guests::HELLO));

    // Plain HTTP is off by default: without --insecure-registry the push fails, and says how.
    membrane_with(["push", guests::HELLO, &reference])
        .assert_code(91)
        .assert_stderr_has("cannot reach the registry")
        .assert_stderr_has(&format!("add --insecure-registry {}", s.registry.host()));

    let pushed = s.push(guests::HELLO, &reference);
    pushed.assert_code(0);
    assert_eq!(field(&pushed, "digest"), file_digest);
    let manifest = field(&pushed, "manifest");

    let pulled = s.membrane("pull", &[], &[&reference]);
    pulled.assert_code(0).assert_stdout_has(&format!("pulled {reference}@{manifest}"));
    assert_eq!(field(&pulled, "digest"), file_digest);
    // The store holds the component byte for byte, under its digest.
    assert_eq!(std::fs::read(s.blob(&file_digest)).unwrap(), std::fs::read(guests::HELLO).unwrap());

    s.membrane("run", &[], &[&reference, "from-the-registry"])
        .assert_code(0)
        .assert_stdout_has("hello from inside a membrane")
        .assert_stdout_has("args: [\"from-the-registry\"]");
    // The same grants apply as to a file: nothing unless given.
    s.membrane("run", &["--env", "GREETING=hi"], &[&reference]).assert_code(0).assert_stdout_has("env: GREETING=hi");
    s.membrane("inspect", &[], &[&reference]).assert_code(0).assert_stdout_has(&file_digest[7..]);
    // By digest and offline: from the store alone.
    let by_digest = format!("{}@{manifest}", s.registry.oci("hello"));
    s.membrane("run", &["--offline"], &[&by_digest]).assert_code(0).assert_stdout_has("hello from inside a membrane");
    s.membrane("run", &["--offline"], &[&reference]).assert_code(0);

    // Offline, what was never pulled is named with the fix.
    s.membrane("run", &["--offline"], &[&format!("{}:v2", s.registry.oci("hello"))])
        .assert_code(91)
        .assert_stderr_has("not in membrane's store")
        .assert_stderr_has("membrane pull");
    // Online, a tag the registry does not have is refused by it.
    s.membrane("run", &[], &[&format!("{}:nope", s.registry.oci("hello"))])
        .assert_code(91)
        .assert_stderr_has("no such repository, tag or digest");
    // A reference without a registry host is refused before any network use.
    membrane_with(["run", "oci://acme/hello:v1"]).assert_code(91).assert_stderr_has("is not a registry host");
}

#[test]
fn interop_with_oras_both_ways() {
    let s = Setup::new();
    let host = s.registry.host();

    // Pushed by oras with the standard media types, pulled and run by membrane.
    let manifest = oras(&["push", guests::HELLO, &format!("{host}/by-oras:1.0")]);
    let manifest: serde_json::Value = serde_json::from_str(manifest.lines().last().unwrap()).unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    s.membrane("run", &[], &[&format!("{}:1.0", s.registry.oci("by-oras")), "via-oras"])
        .assert_code(0)
        .assert_stdout_has("hello from inside a membrane")
        .assert_stdout_has("via-oras");

    // Pushed by membrane, pulled by oras byte-identical.
    s.push(guests::FS_PROBE, &format!("{}:2.0", s.registry.oci("by-membrane"))).assert_code(0);
    let out = tempfile::tempdir().unwrap();
    let files = oras(&["pull", &format!("{host}/by-membrane:2.0"), out.path().to_str().unwrap()]);
    let pulled = files.lines().last().expect("oras pulled a file");
    assert_eq!(Path::new(pulled).file_name(), Path::new(guests::FS_PROBE).file_name(), "the layer keeps its name");
    assert_eq!(std::fs::read(pulled).unwrap(), std::fs::read(guests::FS_PROBE).unwrap());
}

#[test]
fn the_digest_pin_wins_and_a_moved_tag_is_an_error_naming_both_digests() {
    let s = Setup::new();
    let reference = format!("{}:stable", s.registry.oci("app"));
    let hello = sha256_of(Path::new(guests::HELLO));
    let other = sha256_of(Path::new(guests::FS_PROBE));
    s.push(guests::HELLO, &reference).assert_code(0);
    let app = TestApp::new(&format!(
        "[app]\nname = \"pinned\"\nentry = \"hello\"\n\n[component.hello]\nsource = \"{reference}\"\ndigest = \"{hello}\"\n"
    ));
    let manifest = app.manifest();
    let run = || s.membrane("run", &[], &[manifest.to_str().unwrap()]);
    run().assert_code(0).assert_stdout_has("hello from inside a membrane");
    s.membrane("check", &[], &[manifest.to_str().unwrap()]).assert_code(0);

    // The tag now points at another component: the pin refuses it, naming both digests.
    s.push(guests::FS_PROBE, &reference).assert_code(0);
    run()
        .assert_code(79)
        .assert_stderr_has(&format!("membrane.toml pins {hello}"))
        .assert_stderr_has(&format!("is {other}"))
        .assert_stderr_has("update `digest` in [component.hello]");
    // Offline, the tag resolves as last seen (moved), and the pin still refuses it.
    s.membrane("run", &["--offline"], &[manifest.to_str().unwrap()]).assert_code(79);
    // `membrane pull` follows the moved tag.
    let pulled = s.membrane("pull", &[], &[&reference]);
    assert_eq!(field(pulled.assert_code(0), "digest"), other);
}

#[test]
fn a_corrupted_store_entry_is_fetched_again_online_and_refused_offline() {
    let s = Setup::new();
    let reference = format!("{}:v1", s.registry.oci("hello"));
    let digest = sha256_of(Path::new(guests::HELLO));
    s.push(guests::HELLO, &reference).assert_code(0);
    s.membrane("pull", &[], &[&reference]).assert_code(0);
    let blob = s.blob(&digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    s.membrane("run", &["--offline"], &[&reference])
        .assert_code(91)
        .assert_stderr_has("is corrupted")
        .assert_stderr_has(&format!("not {digest}"))
        .assert_stderr_has("without --offline to fetch it again");
    s.membrane("run", &[], &[&reference])
        .assert_code(0)
        .assert_stderr_has("store entry corrupted; fetching it again")
        .assert_stdout_has("hello from inside a membrane");
    assert_eq!(std::fs::read(&blob).unwrap(), std::fs::read(guests::HELLO).unwrap(), "the entry was repaired");
    s.membrane("run", &["--offline"], &[&reference]).assert_code(0);
}

#[test]
fn with_the_registry_down_a_tag_is_a_clear_error_and_the_stored_digest_still_runs() {
    let mut s = Setup::new();
    let reference = format!("{}:v1", s.registry.oci("hello"));
    let manifest = field(s.push(guests::HELLO, &reference).assert_code(0), "manifest");
    s.membrane("pull", &[], &[&reference]).assert_code(0);
    s.registry.stop();

    s.membrane("run", &[], &[&reference])
        .assert_code(91)
        .assert_stderr_has(&format!("cannot reach the registry {}", s.registry.host()))
        .assert_stderr_has(&format!("membrane's store holds {manifest} for it: add --offline"));
    let by_digest = format!("{}@{manifest}", s.registry.oci("hello"));
    s.membrane("run", &[], &[&by_digest]).assert_code(0).assert_stdout_has("hello from inside a membrane");
    s.membrane("run", &["--offline"], &[&reference]).assert_code(0);
    // A push has nowhere to go.
    s.push(guests::HELLO, &reference).assert_code(91).assert_stderr_has("cannot reach the registry");
}

#[test]
fn serve_takes_its_component_from_a_registry() {
    let s = Setup::new();
    let reference = format!("{}:v1", s.registry.oci("http-hello"));
    s.push(guests::HTTP_HELLO, &reference).assert_code(0);
    let host = s.registry.host();
    let data = s.data.path().to_str().unwrap();
    let served = crate::util::Served::start(&["--data-dir", data, "--insecure-registry", &host, &reference]);
    let (status, body) =
        crate::util::request(served.addr, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello"), "{body}");
}
