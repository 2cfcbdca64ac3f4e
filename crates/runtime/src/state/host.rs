//! The wasi:keyvalue host (and membrane's compare-and-swap): a component opens only the
//! buckets it was granted, writes only to `rw` ones, and every refusal is audited. Bucket
//! names are resolved inside the app's namespace by the store. wasi:config/store is linked
//! here too, from `wasmtime-wasi-config`, over each component's own values.

use super::{KeyValue, StoreError};
use crate::audit::Audit;
use crate::stats::ComponentStats;
use membrane_manifest::{Access, BucketGrant};
use membrane_telemetry::{Context, KeyValue as Attribute, Span, SpanKind};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi_config::WasiConfigVariables;

mod generated {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/keyvalue", "../../wit/deps/config", "../../wit/state"],
        world: "membrane:state/keyvalue",
        imports: { default: async | trappable },
        with: { "wasi:keyvalue/store.bucket": super::OpenBucket },
    });
}

use generated::membrane::state::cas;
use generated::wasi::keyvalue::{atomics, batch, store};

/// A bucket a guest opened, with the access it was granted.
pub struct OpenBucket {
    name: Arc<str>,
    access: Access,
}

/// What one component may do with key-value state. Shared by all its instances.
pub struct KeyValueAccess {
    component: Arc<str>,
    store: Option<Arc<KeyValue>>,
    grants: Vec<BucketGrant>,
    audit: Audit,
    /// Where granted calls are counted.
    stats: Arc<ComponentStats>,
}

impl KeyValueAccess {
    pub fn new(
        component: &str,
        store: Option<Arc<KeyValue>>,
        grants: &[BucketGrant],
        audit: &Audit,
        stats: Arc<ComponentStats>,
    ) -> Self {
        KeyValueAccess { component: component.into(), store, grants: grants.to_vec(), audit: audit.clone(), stats }
    }

    /// Counts one granted call.
    fn count(&self) {
        self.stats.keyvalue_calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn deny(&self, trace: Option<&Context>, what: String, why: &str) -> store::Error {
        self.audit.record_in(trace, &self.component, "denied", &what, why);
        store::Error::AccessDenied
    }
}

/// The state a component's stores hold: key-value access and wasi:config values.
#[derive(Clone)]
pub struct ComponentState {
    pub keyvalue: Arc<KeyValueAccess>,
    pub config: Arc<WasiConfigVariables>,
    /// The component's counters, shared by all its instances.
    pub stats: Arc<ComponentStats>,
}

impl ComponentState {
    /// No buckets and no config: what a component run on its own holds.
    pub fn none(component: &str, audit: &Audit) -> ComponentState {
        let stats = Arc::<ComponentStats>::default();
        ComponentState {
            keyvalue: Arc::new(KeyValueAccess::new(component, None, &[], audit, stats.clone())),
            config: Arc::new(WasiConfigVariables::new()),
            stats,
        }
    }
}

/// The borrowed view the generated host traits are implemented on.
pub struct KeyValueHost<'a> {
    access: &'a KeyValueAccess,
    table: &'a mut ResourceTable,
    /// The trace the store's calls are part of, when tracing is on.
    trace: Option<&'a Context>,
    /// The span of the call being served, ended when the call returns.
    span: Span,
}

impl<'a> KeyValueHost<'a> {
    pub fn new(access: &'a KeyValueAccess, table: &'a mut ResourceTable, trace: Option<&'a Context>) -> Self {
        KeyValueHost { access, table, trace, span: Span::default() }
    }
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueHost<'a>;
}

/// Links wasi:keyvalue (store, atomics, batch), membrane's cas and wasi:config/store, each
/// store's view of them reached through `keyvalue` and `config`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    keyvalue: fn(&mut T) -> KeyValueHost<'_>,
    config: fn(&mut T) -> wasmtime_wasi_config::WasiConfig<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKeyValue>(linker, keyvalue)?;
    atomics::add_to_linker::<_, HasKeyValue>(linker, keyvalue)?;
    batch::add_to_linker::<_, HasKeyValue>(linker, keyvalue)?;
    cas::add_to_linker::<_, HasKeyValue>(linker, keyvalue)?;
    wasmtime_wasi_config::add_to_linker(linker, config)?;
    Ok(())
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

fn store_error(e: StoreError) -> store::Error {
    store::Error::Other(e.to_string())
}

enum Op {
    Read,
    Write,
}

impl KeyValueHost<'_> {
    /// The open bucket and the store, if `op` is allowed on it; else the error to return.
    /// The call is a span of the trace (bucket, operation, backend), with a denial as an event.
    fn bucket(&mut self, bucket: &Resource<OpenBucket>, op: Op, what: &str) -> KvResult<(Arc<str>, Arc<KeyValue>)> {
        let open = self.table.get(bucket)?;
        let store = self.access.store.as_ref().expect("a bucket is only opened when there is a store");
        if let Some(parent) = self.trace {
            self.span = Span::start(format!("keyvalue {what}"), SpanKind::Client, Some(parent), || {
                vec![
                    Attribute::new("db.system.name", store.backend_name()),
                    Attribute::new("db.operation.name", what.to_string()),
                    Attribute::new("db.collection.name", open.name.to_string()),
                ]
            });
        }
        if matches!(op, Op::Write) && !open.access.can_write() {
            self.span.event("denied", || vec![Attribute::new("membrane.grant", "keyvalue ro")]);
            return Ok(Err(self.access.deny(
                self.trace,
                format!("keyvalue {what} in bucket {}", open.name),
                "the bucket is granted read-only (access = \"ro\")",
            )));
        }
        self.access.count();
        Ok(Ok((open.name.clone(), store.clone())))
    }

    fn check_key(&self, store: &KeyValue, key: &str) -> Result<(), store::Error> {
        let max = store.limits.max_key_size.bytes();
        if key.len() as u64 > max {
            return Err(store::Error::Other(format!(
                "a key of {} bytes is over the limit of {max} bytes ([keyvalue] max_key_size)",
                key.len()
            )));
        }
        Ok(())
    }

    fn check_value(&self, store: &KeyValue, value: &[u8]) -> Result<(), store::Error> {
        let max = store.limits.max_value_size.bytes();
        if value.len() as u64 > max {
            return Err(store::Error::Other(format!(
                "a value of {} bytes is over the limit of {max} bytes ([keyvalue] max_value_size)",
                value.len()
            )));
        }
        Ok(())
    }

    fn check_batch(&self, store: &KeyValue, n: usize) -> Result<(), store::Error> {
        let max = store.limits.max_batch_keys as usize;
        if n > max {
            return Err(store::Error::Other(format!(
                "a batch of {n} keys is over the limit of {max} ([keyvalue] max_batch_keys)"
            )));
        }
        Ok(())
    }
}

/// Unwraps a `Result<_, store::Error>` from a check, returning it to the guest.
macro_rules! guest_try {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

impl store::Host for KeyValueHost<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<OpenBucket>> {
        let access = self.access;
        let what = format!("keyvalue open bucket {identifier}");
        if access.store.is_none() {
            return Ok(Err(access.deny(self.trace, what, "the component has no keyvalue grants and the app no store")));
        }
        let Some(grant) = access.grants.iter().find(|g| g.bucket == identifier) else {
            return Ok(Err(access.deny(
                self.trace,
                what,
                "no grants.keyvalue entry names this bucket; add { bucket = \"…\", access = \"ro\"|\"rw\" }",
            )));
        };
        access.count();
        Ok(Ok(self.table.push(OpenBucket { name: identifier.into(), access: grant.access })?))
    }
}

impl store::HostBucket for KeyValueHost<'_> {
    async fn get(&mut self, bucket: Resource<OpenBucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Read, "get")?);
        guest_try!(self.check_key(&store, &key));
        Ok(store.get(&name, key).await.map_err(store_error))
    }

    async fn set(&mut self, bucket: Resource<OpenBucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Write, "set")?);
        guest_try!(self.check_key(&store, &key));
        guest_try!(self.check_value(&store, &value));
        Ok(store.set(&name, key, value).await.map_err(store_error))
    }

    async fn delete(&mut self, bucket: Resource<OpenBucket>, key: String) -> KvResult<()> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Write, "delete")?);
        guest_try!(self.check_key(&store, &key));
        Ok(store.delete(&name, key).await.map_err(store_error))
    }

    async fn exists(&mut self, bucket: Resource<OpenBucket>, key: String) -> KvResult<bool> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Read, "exists")?);
        guest_try!(self.check_key(&store, &key));
        Ok(store.exists(&name, key).await.map_err(store_error))
    }

    async fn list_keys(&mut self, bucket: Resource<OpenBucket>, cursor: Option<u64>) -> KvResult<store::KeyResponse> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Read, "list-keys")?);
        Ok(store
            .list_keys(&name, cursor)
            .await
            .map(|(keys, cursor)| store::KeyResponse { keys, cursor })
            .map_err(store_error))
    }

    async fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueHost<'_> {
    async fn increment(&mut self, bucket: Resource<OpenBucket>, key: String, delta: u64) -> KvResult<u64> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Write, "increment")?);
        guest_try!(self.check_key(&store, &key));
        Ok(store.increment(&name, key, delta).await.map_err(store_error))
    }
}

impl cas::Host for KeyValueHost<'_> {
    async fn compare_and_swap(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        old: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> KvResult<bool> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Write, "compare-and-swap")?);
        guest_try!(self.check_key(&store, &key));
        guest_try!(self.check_value(&store, &new));
        Ok(store.compare_and_swap(&name, key, old, new).await.map_err(store_error))
    }
}

impl batch::Host for KeyValueHost<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Read, "get-many")?);
        guest_try!(self.check_batch(&store, keys.len()));
        for key in &keys {
            guest_try!(self.check_key(&store, key));
        }
        let values = guest_try!(store.get_many(&name, keys.clone()).await.map_err(store_error));
        Ok(Ok(keys.into_iter().zip(values).map(|(k, v)| v.map(|v| (k, v))).collect()))
    }

    async fn set_many(&mut self, bucket: Resource<OpenBucket>, key_values: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Write, "set-many")?);
        guest_try!(self.check_batch(&store, key_values.len()));
        for (key, value) in &key_values {
            guest_try!(self.check_key(&store, key));
            guest_try!(self.check_value(&store, value));
        }
        Ok(store.set_many(&name, key_values).await.map_err(store_error))
    }

    async fn delete_many(&mut self, bucket: Resource<OpenBucket>, keys: Vec<String>) -> KvResult<()> {
        let (name, store) = guest_try!(self.bucket(&bucket, Op::Write, "delete-many")?);
        guest_try!(self.check_batch(&store, keys.len()));
        for key in &keys {
            guest_try!(self.check_key(&store, key));
        }
        Ok(store.delete_many(&name, keys).await.map_err(store_error))
    }
}
