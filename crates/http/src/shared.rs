//! `--instance-concurrency N`: one WASI 0.3 handler instance serves up to N requests at
//! once, and `--max-instance-reuse` in all. It trades the isolation between requests for
//! fewer instances (they share the instance's memory and state, and a trap fails every
//! request in it), so it is off (N = 1) unless asked for. Never across a tenant boundary:
//! a tenant's request always gets an instance of its own, as without the option.

use membrane_runtime::{CallError, Fault, HandlerCall, Pool, SandboxState, SharedHandler};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;

pub struct Shared {
    concurrency: usize,
    total: usize,
    handlers: Mutex<HashMap<String, Vec<Arc<SharedHandler>>>>,
}

impl Shared {
    pub fn new(concurrency: usize, total: usize) -> Shared {
        Shared { concurrency, total, handlers: Mutex::default() }
    }

    /// Whether a request of `tenant` (`None` for none) is served by a shared instance.
    pub fn applies(&self, tenant: Option<&str>) -> bool {
        self.concurrency > 1 && tenant.is_none()
    }

    /// Serves `request` in an instance of `component` (of app version `generation`) with
    /// room for it, or in a new one; refused when the component has all its instance slots
    /// in use.
    pub fn serve(
        &self,
        component: &str,
        generation: u64,
        instances: &Arc<Pool>,
        pre: &ServicePre<SandboxState>,
        request: http::Request<WasiBody>,
        call: HandlerCall,
    ) -> Result<tokio::task::JoinHandle<Result<(), Fault>>, CallError> {
        let mut handlers = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        let running = handlers.entry(component.to_string()).or_default();
        // Instances that failed, took all they may or serve an older app version go once
        // their requests are done.
        running.retain(|handler| !handler.is_spent() && handler.generation() == generation);
        let (mut request, mut call) = (request, call);
        for handler in running.iter() {
            match handler.serve(request, call) {
                Ok(task) => return Ok(task),
                Err(back) => (request, call) = back,
            }
        }
        let store = instances.new_store_with(&[component.to_string()], instances.limits())?;
        let handler =
            SharedHandler::start(instances.clone(), store, pre.clone(), self.concurrency, self.total, generation);
        let task = handler.serve(request, call).map_err(|_| {
            CallError::Fault(
                instances
                    .fault(membrane_runtime::FaultKind::Host("a new shared instance refused its first request".into())),
            )
        })?;
        running.push(handler);
        Ok(task)
    }
}
