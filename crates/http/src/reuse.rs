//! Optional instance reuse (`--max-instance-reuse N`, like `wasmtime serve`'s): an instance
//! that handled a request cleanly may handle up to N in all. It trades isolation between
//! requests for speed, so it is off (N = 1) unless asked for.

use membrane_runtime::sandbox::SandboxState;
use std::collections::HashMap;
use std::sync::Mutex;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

/// An instance between requests, with the store that holds it.
pub struct Idle {
    pub store: Store<SandboxState>,
    pub proxy: Proxy,
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

    pub fn take(&self, component: &str, generation: u64) -> Option<Idle> {
        if self.max_uses <= 1 {
            return None;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let idle = idle.get_mut(component)?;
        idle.retain(|i| i.generation == generation);
        idle.pop()
    }

    pub fn give_back(&self, component: &str, idle: Idle) {
        if idle.uses >= self.max_uses {
            return;
        }
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).entry(component.to_string()).or_default().push(idle);
    }
}
