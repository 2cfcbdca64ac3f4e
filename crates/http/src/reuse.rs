//! Optional instance reuse (`--max-instance-reuse N`, like `wasmtime serve`'s): an instance
//! that handled a request cleanly may handle up to N in all. It trades isolation between
//! requests for speed, so it is off (N = 1) unless asked for. It never crosses a tenant
//! boundary: a tenant's request neither takes an idle instance nor leaves one behind, so
//! what one tenant's request leaves in memory is never read by another's, or by a request
//! of no tenant. WASI 0.2 and 0.3 handlers alike; a WASI 0.3 instance serves its requests
//! one after another, each once the one before has finished, body written.

use membrane_runtime::SandboxState;
use std::collections::HashMap;
use std::sync::Mutex;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p3::bindings::Service;

/// A handler's instance, made before the request it serves.
pub enum Made {
    P2(Proxy),
    P3(Service),
}

/// An instance between requests, with the store that holds it.
pub struct Idle {
    pub store: Store<SandboxState>,
    pub instance: Made,
    /// Requests it has handled.
    pub uses: usize,
    /// The app version it belongs to: after a swap, instances of the old one are dropped.
    pub generation: u64,
}

#[derive(Default)]
pub struct Reuse {
    max_uses: usize,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl Reuse {
    pub fn new(max_uses: usize) -> Reuse {
        Reuse { max_uses, idle: Mutex::default() }
    }

    /// An idle instance of `component` for a request of `tenant` (`None` for none).
    pub fn take(&self, component: &str, generation: u64, tenant: Option<&str>) -> Option<Idle> {
        // A tenant's store is also narrowed by the tenant's limits, which an idle one is not.
        if self.max_uses <= 1 || tenant.is_some() {
            return None;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let idle = idle.get_mut(component)?;
        idle.retain(|i| i.generation == generation);
        idle.pop()
    }

    /// Keeps an instance that served a request of `tenant` (`None` for none) cleanly, if
    /// it may serve again.
    pub fn give_back(&self, component: &str, idle: Idle, tenant: Option<&str>) {
        if idle.uses >= self.max_uses || tenant.is_some() {
            return;
        }
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).entry(component.to_string()).or_default().push(idle);
    }
}
