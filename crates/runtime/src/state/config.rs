//! A component's wasi:config values, read once when the app starts. Values from `env` and
//! `secret_file` are secrets: Debug and Serialize show them as `<redacted>`, so the type is
//! safe to log or serve; only the guest that owns them reads them.

use membrane_manifest::ConfigValue;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use wasmtime_wasi_config::WasiConfigVariables;

pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "component `{component}`: config.{key} reads environment variable {env}, which is not set; \
         set it for membrane, or change [component.{component}] config.{key}"
    )]
    MissingEnv { component: String, key: String, env: String },
    #[error(
        "component `{component}`: config.{key} reads secret file {path}: {reason}; \
         create the file or fix the path in [component.{component}] config.{key}"
    )]
    SecretFile { component: String, key: String, path: String, reason: String },
}

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    value: String,
    secret: bool,
}

/// The resolved config of one component.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ComponentConfig {
    entries: BTreeMap<String, Entry>,
}

impl ComponentConfig {
    /// Reads the values of `config` (env vars, secret files) for `component`.
    pub fn resolve(component: &str, config: &BTreeMap<String, ConfigValue>) -> Result<ComponentConfig, ConfigError> {
        let mut entries = BTreeMap::new();
        for (key, source) in config {
            let value = match source {
                ConfigValue::Literal(v) => v.clone(),
                ConfigValue::Env { env } => std::env::var(env).map_err(|_| ConfigError::MissingEnv {
                    component: component.to_string(),
                    key: key.clone(),
                    env: env.clone(),
                })?,
                ConfigValue::SecretFile { secret_file } => std::fs::read_to_string(secret_file)
                    .map_err(|e| ConfigError::SecretFile {
                        component: component.to_string(),
                        key: key.clone(),
                        path: secret_file.display().to_string(),
                        reason: e.to_string(),
                    })?
                    // Files written by editors and `echo` end in a newline that is no part
                    // of the secret.
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            };
            entries.insert(key.clone(), Entry { value, secret: source.is_secret() });
        }
        Ok(ComponentConfig { entries })
    }

    /// The value of `key`, secret or not: for the guest only.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|e| e.value.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the guest's wasi:config/store reads.
    pub fn to_wasi(&self) -> WasiConfigVariables {
        self.entries.iter().map(|(k, e)| (k.as_str(), e.value.as_str())).collect()
    }

    fn shown(&self) -> BTreeMap<&str, &str> {
        self.entries.iter().map(|(k, e)| (k.as_str(), if e.secret { REDACTED } else { e.value.as_str() })).collect()
    }
}

impl fmt::Debug for ComponentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.shown()).finish()
    }
}

impl Serialize for ComponentConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shown().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_serialize_but_reach_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t-token\n").unwrap();
        let config = BTreeMap::from([
            ("api_base".to_string(), ConfigValue::Literal("https://api.example.com".into())),
            ("token".to_string(), ConfigValue::SecretFile { secret_file: file }),
            ("home".to_string(), ConfigValue::Env { env: "HOME".into() }),
        ]);
        let resolved = ComponentConfig::resolve("web", &config).unwrap();
        assert_eq!(resolved.value("token"), Some("s3cr3t-token"));
        let home = std::env::var("HOME").unwrap();
        assert_eq!(resolved.value("home"), Some(home.as_str()));
        let debug = format!("{resolved:?} {resolved:#?}");
        let json = serde_json::to_string(&resolved).unwrap();
        for shown in [&debug, &json] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(!shown.contains(&home), "{shown}");
            assert!(shown.contains("https://api.example.com"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }

    #[test]
    fn missing_sources_name_the_key_and_the_fix() {
        let config = BTreeMap::from([("region".to_string(), ConfigValue::Env { env: "MEMBRANE_NO_SUCH_VAR".into() })]);
        let e = ComponentConfig::resolve("web", &config).unwrap_err().to_string();
        assert!(
            e.contains("config.region") && e.contains("MEMBRANE_NO_SUCH_VAR") && e.contains("[component.web]"),
            "{e}"
        );
        let config =
            BTreeMap::from([("t".to_string(), ConfigValue::SecretFile { secret_file: "/nonexistent/t".into() })]);
        let e = ComponentConfig::resolve("web", &config).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/t") && e.contains("create the file"), "{e}");
    }
}
