use crate::util::{guests, membrane_with};
use sha2::{Digest, Sha256};

fn sha256_of(path: &str) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
}

#[test]
fn inspect_hello_maps_each_import_to_its_grant() {
    let out = membrane_with(["inspect", guests::HELLO]);
    out.assert_code(0);
    let text = &out.stdout;
    assert!(text.starts_with("component hello ("), "{text}");
    let size = std::fs::metadata(guests::HELLO).unwrap().len();
    assert_eq!(line_with(text, "size").trim(), format!("size    {size} bytes"));
    assert_eq!(line_with(text, "sha256").trim(), format!("sha256  {}", sha256_of(guests::HELLO)));
    assert!(
        line_with(text, "wasi:cli/environment@0.2.")
            .ends_with("-> --env / grants.env (environment variables and arguments)")
    );
    assert!(line_with(text, "wasi:cli/stdin@0.2.").ends_with("-> --stdin / grants.stdin (standard input)"));
    assert!(line_with(text, "wasi:cli/stdout@0.2.").contains("always available (standard output and error)"));
    assert!(
        line_with(text, "get-environment: func()").trim() == "get-environment: func() -> list<tuple<string, string>>"
    );
    let exports = &text[text.find("exports:").unwrap()..];
    assert!(exports.lines().any(|l| l.trim().starts_with("wasi:cli/run@0.2.")), "{exports}");
    assert!(exports.contains("run: func() -> result"), "{exports}");
}

#[test]
fn inspect_fs_probe_as_json() {
    let out = membrane_with(["inspect", "--json", guests::FS_PROBE]);
    out.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["name"], "fs-probe");
    assert_eq!(report["sha256"], sha256_of(guests::FS_PROBE));
    let imports = report["imports"].as_array().unwrap();
    let types = imports
        .iter()
        .find(|i| i["name"].as_str().unwrap().starts_with("wasi:filesystem/types@0.2."))
        .expect("fs-probe imports wasi:filesystem/types");
    assert_eq!(types["capability"]["kind"], "grant");
    assert_eq!(types["capability"]["flag"], "--dir");
    let preopens = imports.iter().find(|i| i["name"].as_str().unwrap().starts_with("wasi:filesystem/preopens@0.2."));
    assert_eq!(preopens.expect("fs-probe imports preopens")["capability"]["key"], "grants.dirs");
    let functions: Vec<&str> = types["functions"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(
        functions.contains(
            &"descriptor.open-at: func(self: borrow<descriptor>, path-flags: path-flags, path: string, \
              open-flags: open-flags, flags: descriptor-flags) -> result<descriptor, error-code>"
        ),
        "{functions:#?}"
    );
    let exports = report["exports"].as_array().unwrap();
    assert_eq!(exports.len(), 1);
    assert!(exports[0]["name"].as_str().unwrap().starts_with("wasi:cli/run@0.2."));
    assert!(exports[0].get("capability").is_none());
    for import in imports {
        assert_ne!(import["capability"]["kind"], "unsatisfied", "{import}");
    }
}

#[test]
fn inspect_shows_an_unsatisfied_import() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("needs.wat");
    std::fs::write(
        &path,
        r#"(component (import "example:markdown/render@0.1.0" (instance (export "render" (func)))))"#,
    )
    .unwrap();
    let out = membrane_with(["inspect", path.to_str().unwrap()]);
    out.assert_code(0);
    assert!(line_with(&out.stdout, "example:markdown/render@0.1.0").contains("-> unsatisfied:"));
}

#[test]
fn inspect_an_http_handler_shows_the_outbound_http_grant() {
    let out = membrane_with(["inspect", guests::HTTP_HELLO]);
    out.assert_code(0);
    let text = &out.stdout;
    assert!(
        line_with(text, "wasi:http/outgoing-handler@0.2.")
            .ends_with("-> --allow-http / grants.outbound_http (outbound HTTP requests)")
    );
    assert!(line_with(text, "wasi:http/types@0.2.").contains("always available (HTTP types)"));
    let exports = &text[text.find("exports:").unwrap()..];
    assert!(exports.contains("wasi:http/incoming-handler@0.2."), "{exports}");
}
