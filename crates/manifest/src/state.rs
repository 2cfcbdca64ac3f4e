//! State and configuration in the manifest: key-value bucket grants, the `[keyvalue]` store
//! an app keeps its buckets in, and `config` values (literals, env vars, secret files).

use crate::units::{ByteSize, Duration};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A grant of one key-value bucket: `{ bucket = "notes", access = "rw" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketGrant {
    pub bucket: String,
    #[serde(default)]
    pub access: Access,
}

/// What a component may do in a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// get, exists, list-keys, get-many.
    #[default]
    Ro,
    /// Everything, including set, delete, increment and compare-and-swap.
    Rw,
}

impl Access {
    pub fn can_write(self) -> bool {
        self == Access::Rw
    }
}

/// Whether `name` can name a bucket: 1 to 64 of `a-z 0-9 - _ .`, starting with a letter or
/// digit. Bucket names become parts of file and Redis key names, so they are kept plain.
pub fn valid_bucket_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// Where an app keeps its key-value buckets, and the limits on what goes in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyValueSpec {
    /// `"embedded"` (a file under the data directory) or a `redis://` / `rediss://` URL.
    pub backend: Backend,
    /// Bytes of one key.
    pub max_key_size: ByteSize,
    /// Bytes of one value.
    pub max_value_size: ByteSize,
    /// Keys in one batch call (get-many, set-many, delete-many).
    pub max_batch_keys: u32,
    /// Deadline for one call to the backend.
    pub timeout: Duration,
}

impl KeyValueSpec {
    pub const DEFAULT_MAX_KEY_SIZE: ByteSize = ByteSize::kib(1);
    pub const DEFAULT_MAX_VALUE_SIZE: ByteSize = ByteSize::mib(1);
    pub const DEFAULT_MAX_BATCH_KEYS: u32 = 1000;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
}

impl Default for KeyValueSpec {
    fn default() -> Self {
        KeyValueSpec {
            backend: Backend::Embedded,
            max_key_size: Self::DEFAULT_MAX_KEY_SIZE,
            max_value_size: Self::DEFAULT_MAX_VALUE_SIZE,
            max_batch_keys: Self::DEFAULT_MAX_BATCH_KEYS,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// The store behind an app's buckets.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// A redb file under the data directory: nothing to set up, one node.
    #[default]
    Embedded,
    /// A Redis server shared by every node. The URL may hold a password, so it is shown
    /// with the password replaced (Display, Debug, Serialize); [`Backend::redis_url`] has it.
    Redis(String),
}

impl Backend {
    /// The full Redis URL, password included: for connecting only, never for printing.
    pub fn redis_url(&self) -> Option<&str> {
        match self {
            Backend::Redis(url) => Some(url),
            Backend::Embedded => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid key-value backend {shown:?}: expected \"embedded\" or a Redis URL such as \
     redis://127.0.0.1:6379/0 (rediss:// for TLS)"
)]
pub struct BackendError {
    shown: String,
}

impl FromStr for Backend {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, BackendError> {
        if s == "embedded" {
            return Ok(Backend::Embedded);
        }
        let rest = s.strip_prefix("redis://").or_else(|| s.strip_prefix("rediss://"));
        match rest {
            Some(rest) if !host_of(rest).is_empty() => Ok(Backend::Redis(s.to_string())),
            _ => Err(BackendError { shown: redact_url(s) }),
        }
    }
}

/// The host (and port) of a URL's `user:password@host:port/path` part.
fn host_of(rest: &str) -> &str {
    let authority = rest.split('/').next().unwrap_or_default();
    authority.rsplit_once('@').map_or(authority, |(_, host)| host)
}

/// `redis://user:secret@host` as `redis://user:***@host`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return url.to_string() };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    let user = if userinfo.contains(':') || !user.is_empty() { format!("{user}:***") } else { user.to_string() };
    let path = path.map(|p| format!("/{p}")).unwrap_or_default();
    format!("{scheme}://{user}@{host}{path}")
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Embedded => f.write_str("embedded"),
            Backend::Redis(url) => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Backend({self})")
    }
}

serde_via_str!(Backend);

/// One `config` value of a component. A literal is shown as written; the values behind
/// `env` and `secret_file` are read when the app starts and never shown anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Literal(String),
    Env { env: String },
    SecretFile { secret_file: PathBuf },
}

impl ConfigValue {
    /// Whether the value is kept out of logs and APIs.
    pub fn is_secret(&self) -> bool {
        !matches!(self, ConfigValue::Literal(_))
    }
}

const CONFIG_VALUE_FORMS: &str = "a string, { env = \"VARIABLE\" } or { secret_file = \"path/to/file\" }";

// Hand-written rather than `#[serde(untagged)]`, whose error ("data did not match any
// variant") names neither the key nor the forms that are allowed.
impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ConfigValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(CONFIG_VALUE_FORMS)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Literal(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ConfigValue, A::Error> {
                use serde::de::Error;
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::custom(format!("an empty table; a config value is {CONFIG_VALUE_FORMS}")));
                };
                let value = match key.as_str() {
                    "env" => ConfigValue::Env { env: map.next_value()? },
                    "secret_file" => ConfigValue::SecretFile { secret_file: map.next_value()? },
                    other => {
                        return Err(A::Error::custom(format!(
                            "unknown key `{other}`; a config value is {CONFIG_VALUE_FORMS}"
                        )));
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom(format!(
                        "more than one source; a config value is {CONFIG_VALUE_FORMS}"
                    )));
                }
                Ok(value)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl crate::AppSpec {
    /// Checks a component's bucket grants and config keys.
    pub(crate) fn validate_state(
        &self,
        name: &str,
        component: &crate::ComponentSpec,
    ) -> Result<(), crate::ManifestError> {
        for (i, grant) in component.grants.keyvalue.iter().enumerate() {
            let key = format!("component.{name}.grants.keyvalue[{i}].bucket");
            if !valid_bucket_name(&grant.bucket) {
                return Err(self.invalid(
                    key,
                    format!("{:?} is not a bucket name", grant.bucket),
                    "use 1 to 64 of a-z, 0-9, -, _ and ., starting with a letter or digit, e.g. bucket = \"notes\"",
                ));
            }
            if component.grants.keyvalue[..i].iter().any(|g| g.bucket == grant.bucket) {
                return Err(self.invalid(
                    key,
                    format!("bucket {:?} is granted twice", grant.bucket),
                    "keep one grant per bucket, with access = \"rw\" if the component writes",
                ));
            }
        }
        for (key, value) in &component.config {
            let at = format!("component.{name}.config.{key}");
            if key.is_empty() {
                return Err(self.invalid(at, "a config key is empty", "name the key, e.g. api_base = \"…\""));
            }
            match value {
                ConfigValue::Env { env } if env.is_empty() || env.contains('=') => {
                    return Err(self.invalid(
                        at,
                        format!("{env:?} is not an environment variable name"),
                        "write { env = \"VARIABLE\" }",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks the `[keyvalue]` limits.
    pub(crate) fn validate_keyvalue(&self) -> Result<(), crate::ManifestError> {
        let kv = &self.keyvalue;
        if kv.max_key_size.bytes() == 0 || kv.max_value_size.bytes() == 0 || kv.max_batch_keys == 0 {
            return Err(self.invalid(
                "keyvalue",
                "a key-value limit of 0 would refuse every call",
                "leave the limit out for its default, or give at least 1",
            ));
        }
        if kv.timeout.std().is_zero() {
            return Err(self.invalid("keyvalue.timeout", "the timeout is zero", "give a timeout such as \"2s\""));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_never_show() {
        let b: Backend = "redis://app:hunter2@db.internal:6379/0".parse().unwrap();
        assert_eq!(b.to_string(), "redis://app:***@db.internal:6379/0");
        assert!(!format!("{b:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&b).unwrap().contains("hunter2"));
        assert_eq!(b.redis_url(), Some("redis://app:hunter2@db.internal:6379/0"));
        let b: Backend = "redis://:hunter2@h".parse().unwrap();
        assert_eq!(b.to_string(), "redis://:***@h");
        assert_eq!("redis://h:1".parse::<Backend>().unwrap().to_string(), "redis://h:1");
        let err = "redis://:hunter2@".parse::<Backend>().map(|_| ()).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        for bad in ["", "redis://", "http://h", "memory"] {
            assert!(bad.parse::<Backend>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_names_are_plain() {
        for ok in ["notes", "a", "user-1.cache_v2"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in ["", "Notes", "-x", "a/b", "a:b", "a*", &"x".repeat(65)] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
