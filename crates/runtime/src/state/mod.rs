//! State and configuration behind the membrane: an app's key-value store (embedded redb or
//! Redis) with every bucket inside the app's namespace, the wasi:keyvalue host that lets a
//! component reach only the buckets it was granted, and per-component wasi:config values.

pub mod config;
mod embedded;
pub mod host;
mod redis;

use membrane_manifest::{AppSpec, Backend, KeyValueSpec};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::{ComponentConfig, ConfigError};
pub use host::{ComponentState, KeyValueAccess};

/// Why a key-value call or the store itself failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("key-value store {what}: cannot open it: {reason}; {fix}")]
    Open { what: String, reason: String, fix: &'static str },
    #[error("{0}")]
    Backend(String),
    #[error("the key-value backend did not answer within {0:?} ([keyvalue] timeout)")]
    Timeout(Duration),
    #[error("the value is not a decimal counter, so it cannot be incremented")]
    NotACounter,
    #[error("the counter would overflow")]
    Overflow,
}

/// How a node finds its store, beyond the manifest: where embedded files go, and a backend
/// that overrides the manifest's (`--keyvalue`).
#[derive(Debug, Clone, Default)]
pub struct StateOptions {
    /// The data directory; `None` for the default ([`default_data_dir`]).
    pub data_dir: Option<PathBuf>,
    pub backend: Option<Backend>,
}

/// `$XDG_DATA_HOME/membrane`, else `~/.local/share/membrane`, else `./membrane-data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("membrane"))
        .unwrap_or_else(|| PathBuf::from("membrane-data"))
}

/// App names may hold any character; in file names and Redis keys they are percent-encoded
/// (`:` and `/` included), so that two apps never map to one namespace.
const NAMESPACE_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

pub fn namespace(app: &str) -> String {
    utf8_percent_encode(app, NAMESPACE_ESCAPES).to_string()
}

enum BackendImpl {
    Embedded(embedded::Embedded),
    Redis(Box<redis::Redis>),
}

/// An app's key-value store. Bucket names given to it are already granted; it only keeps
/// them inside the app's namespace.
pub struct KeyValue {
    backend: BackendImpl,
    pub limits: KeyValueSpec,
    /// Where it is, for messages (a Redis password never shows).
    pub location: String,
}

/// Runs one backend call within the store's timeout.
macro_rules! timed {
    ($self:ident, |$b:ident| $call:expr) => {{
        let call = async {
            match &$self.backend {
                BackendImpl::Embedded($b) => $call.await,
                BackendImpl::Redis($b) => $call.await,
            }
        };
        let limit = $self.limits.timeout.std();
        tokio::time::timeout(limit, call).await.map_err(|_| StoreError::Timeout(limit))?
    }};
}

impl KeyValue {
    /// Which backend this is, as traces name it.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            BackendImpl::Embedded(_) => "embedded",
            BackendImpl::Redis(_) => "redis",
        }
    }

    /// Opens the store of `spec`'s app, or `None` when no component holds a bucket grant.
    pub fn for_app(spec: &AppSpec, options: &StateOptions) -> Result<Option<KeyValue>, StoreError> {
        if spec.components.values().all(|c| c.grants.keyvalue.is_empty()) {
            return Ok(None);
        }
        let mut limits = spec.keyvalue.clone();
        if let Some(backend) = &options.backend {
            limits.backend = backend.clone();
        }
        let data_dir = options.data_dir.clone().unwrap_or_else(default_data_dir);
        KeyValue::open(&spec.app.name, limits, &data_dir).map(Some)
    }

    pub fn open(app: &str, limits: KeyValueSpec, data_dir: &Path) -> Result<KeyValue, StoreError> {
        let ns = namespace(app);
        let (backend, location) = match &limits.backend {
            Backend::Embedded => {
                let path = data_dir.join("keyvalue").join(format!("{ns}.redb"));
                let location = format!("embedded ({})", path.display());
                (BackendImpl::Embedded(embedded::Embedded::open(&path)?), location)
            }
            Backend::Redis(url) => {
                let shown = limits.backend.to_string();
                let r = redis::Redis::open(url, shown.clone(), &ns, limits.timeout.std())?;
                (BackendImpl::Redis(Box::new(r)), shown)
            }
        };
        Ok(KeyValue { backend, limits, location })
    }

    /// Whether the store answers: for readiness.
    pub async fn ready(&self) -> Result<(), StoreError> {
        timed!(self, |b| b.ready())
    }

    pub async fn get(&self, bucket: &str, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        timed!(self, |b| b.get(bucket, key))
    }

    pub async fn exists(&self, bucket: &str, key: String) -> Result<bool, StoreError> {
        timed!(self, |b| b.exists(bucket, key))
    }

    pub async fn set(&self, bucket: &str, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        self.set_many(bucket, vec![(key, value)]).await
    }

    pub async fn delete(&self, bucket: &str, key: String) -> Result<(), StoreError> {
        self.delete_many(bucket, vec![key]).await
    }

    pub async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), StoreError> {
        timed!(self, |b| b.list_keys(bucket, cursor.unwrap_or(0)))
    }

    pub async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        timed!(self, |b| b.get_many(bucket, keys))
    }

    pub async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        timed!(self, |b| b.set_many(bucket, entries))
    }

    pub async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), StoreError> {
        timed!(self, |b| b.delete_many(bucket, keys))
    }

    pub async fn increment(&self, bucket: &str, key: String, delta: u64) -> Result<u64, StoreError> {
        timed!(self, |b| b.increment(bucket, key, delta))
    }

    pub async fn compare_and_swap(
        &self,
        bucket: &str,
        key: String,
        old: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, StoreError> {
        timed!(self, |b| b.compare_and_swap(bucket, key, old, new))
    }
}

/// A counter is stored as decimal text, as Redis keeps it, so both backends agree on what
/// `get` returns after `increment`.
fn parse_counter(bytes: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).ok_or(StoreError::NotACounter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_keys_list_in_pages_and_counters_refuse_other_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyValue::open("paged", KeyValueSpec::default(), dir.path()).unwrap();
        store.ready().await.unwrap();
        let entries: Vec<(String, Vec<u8>)> = (0..2500).map(|i| (format!("k{i:04}"), vec![1])).collect();
        for chunk in entries.chunks(1000) {
            store.set_many("b", chunk.to_vec()).await.unwrap();
        }
        let (mut keys, mut cursor) = store.list_keys("b", None).await.unwrap();
        let mut pages = 1;
        while let Some(next) = cursor {
            let (more, after) = store.list_keys("b", Some(next)).await.unwrap();
            keys.extend(more);
            cursor = after;
            pages += 1;
        }
        assert_eq!(pages, 3);
        assert_eq!(keys, entries.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
        assert_eq!(store.list_keys("never-written", None).await.unwrap(), (Vec::new(), None));

        assert!(matches!(store.increment("b", "k0000".into(), 1).await, Err(StoreError::NotACounter)));
        store.set("b", "n".into(), u64::MAX.to_string().into_bytes()).await.unwrap();
        assert!(matches!(store.increment("b", "n".into(), 1).await, Err(StoreError::Overflow)));
        assert!(!store.compare_and_swap("b", "n".into(), None, b"x".to_vec()).await.unwrap());
        assert!(store.compare_and_swap("b", "new".into(), None, b"x".to_vec()).await.unwrap());
        assert!(store.compare_and_swap("b", "new".into(), Some(b"x".to_vec()), b"y".to_vec()).await.unwrap());
        assert_eq!(store.get("b", "new".into()).await.unwrap(), Some(b"y".to_vec()));
    }

    #[test]
    fn namespaces_of_distinct_apps_differ() {
        assert_eq!(namespace("notes"), "notes");
        assert_ne!(namespace("a:b"), namespace("a_b"));
        assert_ne!(namespace("a/b"), namespace("a%2Fb"));
        assert!(!namespace("../x").contains('/'));
    }
}
