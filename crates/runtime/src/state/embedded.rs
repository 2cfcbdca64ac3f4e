//! The embedded key-value backend: one redb file per app under the data directory, one
//! table per bucket. Every write is committed with `Durability::Immediate` (fsync) before
//! the call returns, and redb's single writer makes increment and compare-and-swap atomic.

use super::StoreError;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

/// Keys a `list-keys` call returns at most; the cursor continues from there.
const LIST_PAGE: usize = 1000;

pub struct Embedded {
    db: Arc<Database>,
}

fn table(bucket: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(bucket)
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("embedded store: {e}"))
}

impl Embedded {
    pub fn open(path: &Path) -> Result<Embedded, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                what: path.display().to_string(),
                reason: format!("cannot create {}: {e}", dir.display()),
                fix: "give a writable directory with --data-dir",
            })?;
        }
        let db = Database::create(path).map_err(|e| StoreError::Open {
            what: path.display().to_string(),
            reason: e.to_string(),
            fix: match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    "another membrane process has this app's store open; give each process its own --data-dir, \
                     or use a shared Redis store ([keyvalue] backend = \"redis://…\") for many nodes"
                }
                _ => "check the file, or give another --data-dir",
            },
        })?;
        Ok(Embedded { db: Arc::new(db) })
    }

    /// Runs `f` on a blocking thread: redb does file I/O and fsync synchronously.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(err)?
    }

    /// Reads in a read transaction; a bucket never written reads as empty.
    async fn read<T: Send + 'static>(
        &self,
        bucket: &str,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, StoreError> + Send + 'static,
        empty: T,
    ) -> Result<T, StoreError> {
        let bucket = bucket.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            match txn.open_table(table(&bucket)) {
                Ok(t) => f(&t),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
                Err(e) => Err(err(e)),
            }
        })
        .await
    }

    /// Writes in one durable write transaction, committed before this returns.
    async fn write<T: Send + 'static>(
        &self,
        bucket: &str,
        f: impl FnOnce(&mut redb::Table<&'static str, &'static [u8]>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let bucket = bucket.to_string();
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(err)?;
            txn.set_durability(Durability::Immediate).map_err(err)?;
            let out = {
                let mut t = txn.open_table(table(&bucket)).map_err(err)?;
                f(&mut t)?
            };
            txn.commit().map_err(err)?;
            Ok(out)
        })
        .await
    }

    pub async fn ready(&self) -> Result<(), StoreError> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(err)).await
    }

    pub async fn get(&self, bucket: &str, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(bucket, move |t| Ok(t.get(key.as_str()).map_err(err)?.map(|v| v.value().to_vec())), None).await
    }

    pub async fn exists(&self, bucket: &str, key: String) -> Result<bool, StoreError> {
        self.read(bucket, move |t| Ok(t.get(key.as_str()).map_err(err)?.is_some()), false).await
    }

    pub async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let n = keys.len();
        self.read(
            bucket,
            move |t| keys.iter().map(|k| Ok(t.get(k.as_str()).map_err(err)?.map(|v| v.value().to_vec()))).collect(),
            vec![None; n],
        )
        .await
    }

    pub async fn list_keys(&self, bucket: &str, cursor: u64) -> Result<(Vec<String>, Option<u64>), StoreError> {
        self.read(
            bucket,
            move |t| {
                let skip = usize::try_from(cursor).unwrap_or(usize::MAX);
                let mut keys = Vec::new();
                for entry in t.iter().map_err(err)?.skip(skip).take(LIST_PAGE + 1) {
                    keys.push(entry.map_err(err)?.0.value().to_string());
                }
                let more = keys.len() > LIST_PAGE;
                keys.truncate(LIST_PAGE);
                Ok((keys, more.then(|| cursor + LIST_PAGE as u64)))
            },
            (Vec::new(), None),
        )
        .await
    }

    pub async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        self.write(bucket, move |t| {
            for (k, v) in &entries {
                t.insert(k.as_str(), v.as_slice()).map_err(err)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), StoreError> {
        self.write(bucket, move |t| {
            for k in &keys {
                t.remove(k.as_str()).map_err(err)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn increment(&self, bucket: &str, key: String, delta: u64) -> Result<u64, StoreError> {
        self.write(bucket, move |t| {
            let current = match t.get(key.as_str()).map_err(err)? {
                Some(v) => super::parse_counter(v.value())?,
                None => 0,
            };
            let next = current.checked_add(delta).ok_or(StoreError::Overflow)?;
            t.insert(key.as_str(), next.to_string().as_bytes()).map_err(err)?;
            Ok(next)
        })
        .await
    }

    pub async fn compare_and_swap(
        &self,
        bucket: &str,
        key: String,
        old: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.write(bucket, move |t| {
            let current = t.get(key.as_str()).map_err(err)?.map(|v| v.value().to_vec());
            if current != old {
                return Ok(false);
            }
            t.insert(key.as_str(), new.as_slice()).map_err(err)?;
            Ok(true)
        })
        .await
    }
}
