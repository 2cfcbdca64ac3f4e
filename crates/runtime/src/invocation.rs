//! What one call into a component's export carries: its arguments, owned, and where its
//! results go. The dynamic kind holds `Val`s and serves any signature; the typed kinds of
//! [`crate::link::typed`] hold Rust values that wasmtime lifts and lowers in bulk.

use crate::sandbox::SandboxState;
use std::future::Future;
use wasmtime::Store;
use wasmtime::component::{Accessor, Func, ResourceAny, Val};

/// The identity of the singleton instance a resource handle came from.
pub type Incarnation = u64;

/// One call's arguments and results. Owned (`'static`) because a call into a long-lived
/// instance runs on to its end after its caller has gone (see [`crate::Pool::call`]).
pub trait Invocation: Send + 'static {
    /// Calls `func` in `store` with the arguments, keeping the results. Called once.
    fn invoke<'a>(
        &'a mut self,
        store: &'a mut Store<SandboxState>,
        func: Func,
    ) -> impl Future<Output = wasmtime::Result<()>> + Send + 'a;

    /// Calls `func` as one of the calls a long-lived instance serves at once, in its
    /// event loop (see [`crate::resident`]).
    fn invoke_concurrent<'a>(
        &'a mut self,
        accessor: &'a Accessor<SandboxState>,
        func: Func,
    ) -> impl Future<Output = wasmtime::Result<()>> + Send + 'a;

    /// Whether the call is an async function's, which needs its instance's event loop
    /// to go on after it returns (to write the streams it returned, say).
    fn concurrent(&self) -> bool {
        false
    }

    /// Resources the call made for a caller that has gone, to be dropped in its instance.
    fn orphans(&mut self) -> Vec<ResourceAny> {
        Vec::new()
    }

    /// Tells the call that its instance is dropped after it (a per-call instance), and
    /// with the instance whatever work the guest leaves unfinished.
    fn disposable(&mut self) {}

    /// Tells the call which incarnation of a long-lived instance it runs in: the one that
    /// owns the resources it returns.
    fn incarnation(&mut self, _incarnation: Incarnation) {}

    /// Whether the results may hold resource handles, which a call whose caller has gone
    /// must drop in the instance that made them.
    fn may_return_resources(&self) -> bool {
        false
    }

    /// The resource handles among the results.
    fn resources(&self) -> Vec<ResourceAny> {
        Vec::new()
    }
}

/// A call with arguments and results as `Val`s: any signature, one `Val` per value (and
/// per list element).
#[derive(Debug)]
pub struct DynamicCall {
    pub params: Vec<Val>,
    pub results: Vec<Val>,
    /// Whether the function's results can hold resource handles.
    pub resources: bool,
}

impl DynamicCall {
    /// A call with `params` and room for `results` results, which may hold resources.
    pub fn new(params: Vec<Val>, results: usize) -> DynamicCall {
        DynamicCall { params, results: vec![Val::Bool(false); results], resources: true }
    }
}

impl Invocation for DynamicCall {
    async fn invoke(&mut self, store: &mut Store<SandboxState>, func: Func) -> wasmtime::Result<()> {
        func.call_async(store, &self.params, &mut self.results).await
    }

    async fn invoke_concurrent(&mut self, accessor: &Accessor<SandboxState>, func: Func) -> wasmtime::Result<()> {
        func.call_concurrent(accessor, &self.params, &mut self.results).await
    }

    fn may_return_resources(&self) -> bool {
        self.resources && !self.results.is_empty()
    }

    fn resources(&self) -> Vec<ResourceAny> {
        crate::values::resources_in(&self.results)
    }
}
