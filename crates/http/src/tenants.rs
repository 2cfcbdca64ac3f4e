//! Tenants: requests grouped by `Host`, each group with its own rate and concurrency
//! quotas, so one tenant over its quota is throttled while the others are not.

use membrane_manifest::{Limits, TenantSpec, normalize_host};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Tenant {
    pub name: String,
    /// The name as its requests' server spans carry it.
    pub label: membrane_telemetry::Label,
    spec: TenantSpec,
    concurrency: Option<Arc<Semaphore>>,
    bucket: Option<Mutex<TokenBucket>>,
}

/// Why a tenant's request was not admitted.
pub enum Throttle {
    /// Over the rate: 429, with how long until a token is back.
    Rate(Duration),
    /// Over the concurrency quota: 503.
    Concurrency,
}

impl Tenant {
    /// Admits a request, or says why not. The permit, if any, is held for the request.
    pub fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Throttle> {
        if let Some(bucket) = &self.bucket {
            bucket.lock().unwrap_or_else(|p| p.into_inner()).take().map_err(Throttle::Rate)?;
        }
        match &self.concurrency {
            Some(semaphore) => semaphore.clone().try_acquire_owned().map(Some).map_err(|_| Throttle::Concurrency),
            None => Ok(None),
        }
    }

    /// The component's limits, narrowed by the tenant's per-request quota.
    pub fn narrow(&self, limits: &Limits) -> Limits {
        let mut narrowed = limits.clone();
        if let Some(cpu) = self.spec.cpu {
            narrowed.cpu = Some(narrowed.cpu.map_or(cpu, |own| own.min(cpu)));
        }
        if let Some(memory) = self.spec.memory {
            narrowed.memory = narrowed.memory.min(memory);
            // An explicit host memory budget is capped alike; an implicit one follows memory.
            narrowed.host_memory = narrowed.host_memory.map(|own| own.min(memory));
        }
        narrowed
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[derive(Default)]
pub struct Tenants {
    tenants: Vec<Tenant>,
    by_host: HashMap<String, usize>,
}

impl Tenants {
    pub fn new(specs: &BTreeMap<String, TenantSpec>) -> Tenants {
        let mut tenants = Tenants::default();
        for (name, spec) in specs {
            for host in &spec.hosts {
                // The manifest refuses a host that does not normalize (see `Router::new`).
                let host = normalize_host(host).unwrap_or_else(|_| host.clone());
                tenants.by_host.insert(host, tenants.tenants.len());
            }
            let bucket = spec.requests_per_second.map(|rate| {
                let burst = f64::from(spec.burst.unwrap_or(rate).max(1));
                Mutex::new(TokenBucket { rate: f64::from(rate), burst, tokens: burst, refilled: Instant::now() })
            });
            tenants.tenants.push(Tenant {
                name: name.clone(),
                label: membrane_telemetry::Label::default(),
                spec: spec.clone(),
                concurrency: spec.max_concurrent.map(|n| Arc::new(Semaphore::new(n as usize))),
                bucket,
            });
        }
        tenants
    }

    /// The tenant a `Host` header (port allowed) belongs to, with the header compared as
    /// DNS compares names: `ALICE.localhost.:8080` is `alice.localhost`'s. A host that
    /// belongs to no tenant (or is no valid name) runs under the server's limits alone.
    pub fn for_host(&self, host: Option<&str>) -> Option<&Tenant> {
        if self.by_host.is_empty() {
            return None;
        }
        let host = normalize_host(host?).ok()?;
        self.by_host.get(&host).map(|i| &self.tenants[*i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_tenant_host_finds_the_tenant() {
        let spec = TenantSpec {
            hosts: vec!["Alice.localhost".into()],
            max_concurrent: None,
            requests_per_second: None,
            burst: None,
            cpu: None,
            memory: None,
        };
        let tenants = Tenants::new(&BTreeMap::from([("alice".to_string(), spec)]));
        for host in ["alice.localhost", "alice.localhost.", "ALICE.LOCALHOST.:8080", "ａｌｉｃｅ.localhost"] {
            assert_eq!(tenants.for_host(Some(host)).map(|t| t.name.as_str()), Some("alice"), "{host}");
        }
        for host in ["bob.localhost", "alice.localhost..", "alice.localhost.evil"] {
            assert!(tenants.for_host(Some(host)).is_none(), "{host}");
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut bucket = TokenBucket { rate: 10.0, burst: 3.0, tokens: 3.0, refilled: Instant::now() };
        assert!((0..3).all(|_| bucket.take().is_ok()));
        let wait = bucket.take().unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        std::thread::sleep(Duration::from_millis(120));
        assert!(bucket.take().is_ok());
    }
}
