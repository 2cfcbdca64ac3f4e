//! Every manifest in `tests/invalid/` is refused with exactly the error in its `.err`
//! file. `BLESS=1 cargo test -p membrane-manifest` rewrites the `.err` files.

use membrane_manifest::AppSpec;
use std::path::Path;

#[test]
fn invalid_manifests_are_refused_with_their_expected_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "expected the invalid-manifest corpus in {}", dir.display());
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for case in cases {
        let name = format!("invalid/{}", case.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(&case).unwrap();
        let error = match AppSpec::parse(Path::new(&name), &text) {
            Ok(_) => "(accepted, but should have been refused)".to_string(),
            Err(error) => error.to_string(),
        };
        let expected_file = case.with_extension("err");
        if bless {
            std::fs::write(&expected_file, format!("{error}\n")).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        if expected.trim_end() != error {
            failures.push(format!("{name}:\n  expected: {}\n  actual:   {error}", expected.trim_end()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_valid_manifest_resolves_paths_against_its_folder() {
    let text = r#"
[app]
name = "notes"
entry = "frontend"
audit = "logs/audit.jsonl"

[component.frontend]
source = "guests/frontend.wasm"
limits = { memory = "64MiB", cpu = "50ms", timeout = "2s" }
grants = { env = { GREETING = "hi" }, allow_tcp = ["127.0.0.1:6379"] }

[component.renderer]
source = "/abs/renderer.wasm"
instances = "pool:4"
grants.dirs = [{ host = "templates", guest = "/templates", mode = "ro" }]

[component.plain]
source = "plain.wasm"
instances = "singleton"

[[link]]
from = "frontend"
import = "example:markdown/render@0.1.0"
to = "renderer"
on_trap = "fallback:plain"
timeout = "100ms"
circuit = { failures = 5, cooldown = "10s" }
"#;
    let spec = AppSpec::parse(Path::new("/srv/notes/membrane.toml"), text).unwrap();
    let frontend = &spec.components["frontend"];
    assert_eq!(frontend.source, Path::new("/srv/notes/guests/frontend.wasm"));
    assert_eq!(frontend.limits.memory, membrane_manifest::ByteSize::mib(64));
    assert_eq!(frontend.limits.cpu, Some(membrane_manifest::Duration::from_millis(50)));
    // Limits not written keep their safe defaults.
    assert_eq!(frontend.limits.wasm_stack, membrane_manifest::Limits::DEFAULT_WASM_STACK);
    assert_eq!(frontend.grants.env["GREETING"], "hi");
    assert_eq!(spec.components["renderer"].source, Path::new("/abs/renderer.wasm"));
    assert_eq!(spec.components["renderer"].instances, membrane_manifest::InstanceMode::Pool(4));
    assert_eq!(spec.components["renderer"].grants.dirs[0].host, Path::new("/srv/notes/templates"));
    assert_eq!(spec.app.audit.as_deref(), Some(Path::new("/srv/notes/logs/audit.jsonl")));
    assert_eq!(spec.links[0].on_trap, membrane_manifest::OnTrap::Fallback("plain".into()));
    assert_eq!(spec.links[0].circuit.unwrap().failures, 5);
}
