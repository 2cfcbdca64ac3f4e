use crate::oci_server::Registry;
use crate::util::{TestApp, guests, membrane_with};
use std::path::{Path, PathBuf};

/// `membrane keygen` in `dir`; returns the key file and its public key.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = membrane_with(["keygen", key.to_str().unwrap()]);
    out.assert_code(0);
    let public = out.stdout.trim().to_string();
    assert!(public.starts_with("ed25519:"), "{public}");
    assert_eq!(std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap().trim(), public);
    (key, public)
}

fn sign(file: &Path, key: &Path) {
    membrane_with(["sign", file.to_str().unwrap(), "--key", key.to_str().unwrap()])
        .assert_code(0)
        .assert_stdout_has(&format!("wrote {}.sig", file.display()));
}

/// An app whose one component, `source`, must be signed by `key` (per component, or for
/// the whole app).
fn signed_app(source: &str, key: &str, app_wide: bool) -> TestApp {
    let (app_keys, component_keys) = if app_wide {
        (format!("trusted_keys = [\"{key}\"]\n"), String::new())
    } else {
        (String::new(), format!("trusted_keys = [\"{key}\"]\n"))
    };
    TestApp::new(&format!(
        "[app]\nname = \"signed\"\nentry = \"hello\"\n{app_keys}\n[component.hello]\nsource = \"{source}\"\n{component_keys}"
    ))
}

#[test]
fn a_required_signature_is_checked_missing_untrusted_tampered_and_forged() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "release.key");
    let (other_key, _) = keygen(dir.path(), "other.key");
    membrane_with(["keygen", key.to_str().unwrap()]).assert_code(70).assert_stderr_has("never overwritten");
    let file = dir.path().join("hello.wasm");
    std::fs::copy(guests::HELLO, &file).unwrap();
    let sig = dir.path().join("hello.wasm.sig");

    for app_wide in [false, true] {
        let app = signed_app(file.to_str().unwrap(), &public, app_wide);
        let _ = std::fs::remove_file(&sig);
        app.run(&[])
            .assert_code(90)
            .assert_stderr_has("component `hello`: refused to start")
            .assert_stderr_has(&format!("has no signature (no {})", sig.display()))
            .assert_stderr_has("membrane sign FILE --key KEY");
        sign(&file, &key);
        app.run(&[]).assert_code(0).assert_stdout_has("hello from inside a membrane");
        app.check(&[]).assert_code(0);
    }
    let app = signed_app(file.to_str().unwrap(), &public, false);

    sign(&file, &other_key);
    app.run(&[]).assert_code(90).assert_stderr_has("which is not among its trusted_keys");

    // The file changes after it was signed.
    sign(&file, &key);
    std::fs::copy(guests::FS_PROBE, &file).unwrap();
    app.run(&[]).assert_code(90).assert_stderr_has("changed after it was signed");

    // A signature relabelled for the new file does not verify.
    let text = std::fs::read_to_string(&sig).unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(&text).unwrap();
    let digest =
        format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&file).unwrap())));
    forged["digest"] = digest.into();
    std::fs::write(&sig, forged.to_string()).unwrap();
    app.run(&[]).assert_code(90).assert_stderr_has("the signature does not verify");

    std::fs::write(&sig, "not json").unwrap();
    app.run(&[]).assert_code(90).assert_stderr_has("the signature cannot be read");
}

#[test]
fn a_malformed_trusted_key_is_a_manifest_error() {
    let app = signed_app(guests::HELLO, "ed25519:short", false);
    app.run(&[]).assert_code(78).assert_stderr_has("invalid trusted key \"ed25519:short\"");
}

#[test]
fn a_signature_travels_with_its_component_through_a_registry() {
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "release.key");
    let (other_key, _) = keygen(dir.path(), "other.key");
    let file = dir.path().join("hello.wasm");
    std::fs::copy(guests::HELLO, &file).unwrap();
    sign(&file, &key);

    let push_file = |file: &Path, reference: &str, extra: &[&str]| {
        let mut args = vec!["push", "--insecure-registry", &host, file.to_str().unwrap(), reference];
        args.extend_from_slice(extra);
        membrane_with(args)
    };
    let push = |reference: &str, extra: &[&str]| push_file(&file, reference, extra);
    let signed = format!("{}:signed", registry.oci("hello"));
    let unsigned = format!("{}:unsigned", registry.oci("hello"));
    let other = format!("{}:other", registry.oci("hello"));
    push(&signed, &[]).assert_code(0).assert_stdout_has("signature  pushed as a referrer");
    // Signatures belong to content, not to tags: an unsigned component is another file.
    let net = dir.path().join("net.wasm");
    std::fs::copy(guests::NET_PROBE, &net).unwrap();
    sign(&net, &key);
    push_file(&net, &unsigned, &["--no-signature"]).assert_code(0).assert_stdout_has("signature  none");
    // Another component, signed by a key the app does not trust.
    let probe = dir.path().join("probe.wasm");
    std::fs::copy(guests::FS_PROBE, &probe).unwrap();
    sign(&probe, &other_key);
    push_file(&probe, &other, &[]).assert_code(0);

    let run = |reference: &str| {
        let app = signed_app(reference, &public, false);
        let data = tempfile::tempdir().unwrap();
        let manifest = app.manifest();
        membrane_with([
            "run",
            "--insecure-registry",
            &host,
            "--data-dir",
            data.path().to_str().unwrap(),
            manifest.to_str().unwrap(),
        ])
    };
    run(&signed).assert_code(0).assert_stdout_has("hello from inside a membrane");
    run(&unsigned).assert_code(90).assert_stderr_has("no signature is published for it in the registry");
    run(&other).assert_code(90).assert_stderr_has("which is not among its trusted_keys");

    // A second signer's signature is listed beside the first; either one lets it start.
    sign(&file, &other_key);
    push(&signed, &[]).assert_code(0);
    run(&signed).assert_code(0);
    let pulled = membrane_with([
        "pull",
        "--insecure-registry",
        &host,
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        &signed,
    ]);
    pulled.assert_code(0).assert_stdout_has("signatures 2 published");

    // A file whose signature does not match it is not pushed with it.
    std::fs::copy(guests::FS_PROBE, &file).unwrap();
    push(&signed, &[]).assert_code(90).assert_stderr_has("changed after it was signed");
}
