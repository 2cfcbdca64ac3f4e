//! The Redis key-value backend, for many nodes sharing state: one Redis hash per bucket
//! (`membrane:<app>:<bucket>`), reached through a `ConnectionManager` (one multiplexed
//! connection that reconnects by itself) with connect and response timeouts. Increment is
//! `HINCRBY`; compare-and-swap is a Lua script, so both are atomic across nodes.

use super::StoreError;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Keys a `list-keys` call asks Redis for at once (a hint: HSCAN may return more or fewer).
const LIST_PAGE: usize = 1000;

/// Sets field ARGV[1] of hash KEYS[1] to ARGV[4] if it holds ARGV[3] (ARGV[2] = "1") or is
/// absent (ARGV[2] = "0"). Redis runs a script without interleaving other commands.
const CAS_SCRIPT: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return 0 end
elseif current then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return 1
"#;

pub struct Redis {
    client: redis::Client,
    /// Connected on first use, inside the async runtime, so that a node can start before
    /// Redis is up (its readiness says so until it is).
    conn: OnceCell<ConnectionManager>,
    timeout: Duration,
    /// `membrane:<app>:`; the bucket name follows.
    prefix: String,
    cas: redis::Script,
    /// The URL without its password, for messages.
    shown: String,
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

impl Redis {
    pub fn open(url: &str, shown: String, namespace: &str, timeout: Duration) -> Result<Redis, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Open {
            what: shown.clone(),
            reason: e.to_string(),
            fix: "fix [keyvalue] backend (or --keyvalue): redis://[user:password@]host:port[/db]",
        })?;
        Ok(Redis {
            client,
            conn: OnceCell::new(),
            timeout,
            prefix: format!("membrane:{namespace}:"),
            cas: redis::Script::new(CAS_SCRIPT),
            shown,
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .map_err(|e| StoreError::Backend(format!("redis at {}: {e}", self.shown)))?;
        Ok(conn.clone())
    }

    fn hash(&self, bucket: &str) -> String {
        format!("{}{bucket}", self.prefix)
    }

    pub async fn ready(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await.map(|_| ()).map_err(err)
    }

    pub async fn get(&self, bucket: &str, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn().await?.hget(self.hash(bucket), key).await.map_err(err)
    }

    pub async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // HMGET with one field returns a bare value rather than a list; ask for a list.
        redis::cmd("HMGET").arg(self.hash(bucket)).arg(&keys).query_async(&mut self.conn().await?).await.map_err(err)
    }

    pub async fn exists(&self, bucket: &str, key: String) -> Result<bool, StoreError> {
        self.conn().await?.hexists(self.hash(bucket), key).await.map_err(err)
    }

    pub async fn list_keys(&self, bucket: &str, cursor: u64) -> Result<(Vec<String>, Option<u64>), StoreError> {
        let (next, pairs): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
            .arg(self.hash(bucket))
            .arg(cursor)
            .arg("COUNT")
            .arg(LIST_PAGE)
            .query_async(&mut self.conn().await?)
            .await
            .map_err(err)?;
        Ok((pairs.into_iter().map(|(k, _)| k).collect(), (next != 0).then_some(next)))
    }

    pub async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.conn().await?.hset_multiple(self.hash(bucket), &entries).await.map_err(err)
    }

    pub async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.conn().await?.hdel(self.hash(bucket), keys).await.map_err(err)
    }

    pub async fn increment(&self, bucket: &str, key: String, delta: u64) -> Result<u64, StoreError> {
        let delta = i64::try_from(delta).map_err(|_| StoreError::Overflow)?;
        let next: i64 = self.conn().await?.hincr(self.hash(bucket), key, delta).await.map_err(|e| {
            if e.to_string().contains("not an integer") {
                StoreError::NotACounter
            } else if e.to_string().contains("overflow") {
                StoreError::Overflow
            } else {
                err(e)
            }
        })?;
        u64::try_from(next).map_err(|_| StoreError::NotACounter)
    }

    pub async fn compare_and_swap(
        &self,
        bucket: &str,
        key: String,
        old: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.cas.key(self.hash(bucket));
        invocation.arg(key).arg(if old.is_some() { "1" } else { "0" }).arg(old.unwrap_or_default()).arg(new);
        let swapped: i64 = invocation.invoke_async(&mut self.conn().await?).await.map_err(err)?;
        Ok(swapped == 1)
    }
}
