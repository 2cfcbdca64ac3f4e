//! Spare instances: a few fresh, never-used instances of each component that serves, made
//! ahead of time off the request path, so a request takes one instead of instantiating.
//! Isolation is unchanged: a spare serves exactly one request and is dropped after it like
//! any fresh instance; before that it has run no request's code, only its instantiation
//! from the component's pristine image, in a store of its own with the limits the request
//! would get (spares are kept per component and tenant, and a swap retires them).

use membrane_manifest::Limits;
use membrane_runtime::{App, HttpHandler, SandboxState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

/// A fresh instance nobody has called yet, with the store that holds it.
pub struct Spare {
    pub store: Store<SandboxState>,
    pub proxy: Proxy,
    generation: u64,
}

/// The spares of one component for one tenant (or none), and how many are being made.
#[derive(Default)]
struct Shelf {
    ready: Vec<Spare>,
    making: usize,
}

pub struct Spares {
    /// Spares kept ready per component and tenant (`--spare-instances`; 0, none, by
    /// default; 2 is one for the request that comes next and one being made behind it).
    per_key: usize,
    shelves: Mutex<HashMap<(String, Option<String>), Shelf>>,
}

impl Spares {
    pub fn new(per_key: usize) -> Spares {
        Spares { per_key, shelves: Mutex::default() }
    }

    /// A spare of `component` for `tenant` made from this app version, if one is ready;
    /// either way, more are made in the background up to the number kept.
    pub fn take(
        self: &Arc<Self>,
        app: &Arc<App>,
        component: &str,
        tenant: Option<&str>,
        limits: &Limits,
    ) -> Option<Spare> {
        // Spares are WASI 0.2 instances (a WASI 0.3 handler is fresh or reused, never a spare).
        if self.per_key == 0 || !matches!(app.http_handler(component), Some(HttpHandler::P2(_))) {
            return None;
        }
        let key = (component.to_string(), tenant.map(str::to_string));
        let mut shelves = self.shelves.lock().unwrap_or_else(|p| p.into_inner());
        let shelf = shelves.entry(key.clone()).or_default();
        // After a swap the old version's spares are dropped, never served.
        shelf.ready.retain(|s| s.generation == app.generation());
        let spare = shelf.ready.pop();
        let missing = self.per_key.saturating_sub(shelf.ready.len() + shelf.making);
        shelf.making += missing;
        drop(shelves);
        for _ in 0..missing {
            self.clone().make(app.clone(), key.clone(), limits.clone());
        }
        spare
    }

    /// Drops every spare of `component`, giving their pool slots back (for a request that
    /// found the component's slots all taken).
    pub fn release(&self, component: &str) -> bool {
        let mut shelves = self.shelves.lock().unwrap_or_else(|p| p.into_inner());
        let mut released = false;
        for ((name, _), shelf) in shelves.iter_mut() {
            if name == component && !shelf.ready.is_empty() {
                shelf.ready.clear();
                released = true;
            }
        }
        released
    }

    /// Makes one spare in a task of its own, within the component's limits like any
    /// instantiation; a failure (no free slot, a trap while instantiating) just leaves
    /// the shelf one short, and the next request instantiates as it would without spares.
    fn make(self: Arc<Self>, app: Arc<App>, key: (String, Option<String>), limits: Limits) {
        tokio::spawn(async move {
            let made = async {
                let instances = app.instances(&key.0)?.clone();
                let Some(HttpHandler::P2(pre)) = app.http_handler(&key.0).cloned() else { return None };
                let mut store = instances.new_store_with(std::slice::from_ref(&key.0), &limits).ok()?;
                let timeout = limits.timeout.map(|t| t.std());
                let proxy = instances
                    .enter(&mut store, timeout, async |store| pre.instantiate_async(&mut *store).await)
                    .await
                    .ok()?;
                instances.count_instantiation();
                Some(Spare { store, proxy, generation: app.generation() })
            }
            .await;
            let mut shelves = self.shelves.lock().unwrap_or_else(|p| p.into_inner());
            let shelf = shelves.entry(key).or_default();
            shelf.making -= 1;
            shelf.ready.extend(made);
        });
    }
}
