//! Key-value grants and config in manifests: nested apps may only narrow bucket grants,
//! and config values keep their sources (a secret's value is never in the spec).

use membrane_manifest::{Access, AppSpec, Backend, ConfigValue};

fn nested(outer_grant: &str, inner_grant: &str) -> Result<AppSpec, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inner.toml"),
        format!(
            "[app]\nname = \"inner\"\n\n[component.store]\nsource = \"store.wasm\"\ngrants.keyvalue = [{inner_grant}]\n"
        ),
    )
    .unwrap();
    let outer = dir.path().join("membrane.toml");
    std::fs::write(
        &outer,
        format!(
            "[app]\nname = \"outer\"\n\n[component.lib]\nsource = \"inner.toml\"\ngrants.keyvalue = [{outer_grant}]\n"
        ),
    )
    .unwrap();
    AppSpec::load(&outer).map_err(|e| e.to_string())
}

#[test]
fn nested_apps_only_narrow_bucket_grants() {
    let ok = nested(r#"{ bucket = "notes", access = "rw" }"#, r#"{ bucket = "notes", access = "ro" }"#).unwrap();
    assert_eq!(ok.components["lib.store"].grants.keyvalue[0].access, Access::Ro);
    nested(r#"{ bucket = "notes", access = "rw" }"#, r#"{ bucket = "notes", access = "rw" }"#).unwrap();

    let wider = nested(r#"{ bucket = "notes", access = "ro" }"#, r#"{ bucket = "notes", access = "rw" }"#).unwrap_err();
    assert!(wider.contains("component.store.grants.keyvalue[0]") && wider.contains("can only narrow"), "{wider}");
    let other = nested(r#"{ bucket = "notes", access = "rw" }"#, r#"{ bucket = "secrets" }"#).unwrap_err();
    assert!(other.contains("bucket \"secrets\""), "{other}");
}

#[test]
fn keyvalue_and_config_parse_with_defaults_and_sources() {
    let spec = AppSpec::parse(
        std::path::Path::new("/srv/app/membrane.toml"),
        r#"
[app]
name = "notes"

[keyvalue]
backend = "redis://:pw@redis:6379/0"

[component.web]
source = "web.wasm"
grants.keyvalue = [{ bucket = "notes" }]
config = { api = "https://x", token = { secret_file = "token" }, region = { env = "REGION" } }
"#,
    )
    .unwrap();
    assert_eq!(spec.keyvalue.backend, Backend::Redis("redis://:pw@redis:6379/0".into()));
    assert_eq!(spec.keyvalue.max_batch_keys, 1000);
    let web = &spec.components["web"];
    assert_eq!(web.grants.keyvalue[0].access, Access::Ro, "access defaults to read-only");
    assert_eq!(web.config["token"], ConfigValue::SecretFile { secret_file: "/srv/app/token".into() });
    assert_eq!(web.config["region"], ConfigValue::Env { env: "REGION".into() });
    // The spec as served (e.g. by an admin API) shows sources, never the Redis password.
    let json = serde_json::to_string(&spec).unwrap();
    assert!(!json.contains("pw@") && json.contains("redis://:***@redis:6379/0"), "{json}");
    assert!(json.contains(r#""token":{"secret_file":"/srv/app/token"}"#), "{json}");
    assert!(!format!("{spec:?}").contains("pw@"));
}
