//! Calls across a link whose provider lives in its consumer's store (isolation =
//! "component"). The provider is instantiated in that store at its first call and lives
//! as long as the store; each call trades the store's reach (WASI, HTTP hooks, state,
//! budget) for the provider's and back, so neither ever runs with the other's grants.
//! The component model's boundary stays whole: own memories, tables and globals, values
//! copied by the canonical ABI. What the two share is the store: its limits, its CPU meter
//! and its fate (a provider trap fails the consumer's call, and the pool discards both).
//!
//! The call skips everything a crossing between stores needs: a second store and its
//! lock, the provider's pool, the detachable call, the deadline and the supervisor.

use super::{Components, Link, LinkCause};
use crate::fault::Fault;
use crate::pool::{CallError, MAX_CALL_DEPTH, Pool};
use crate::sandbox::{CallChain, Embedded, SandboxState};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Func, Val};
use wasmtime::{AsContextMut, StoreContextMut};

/// A call into a function of a provider in the caller's own store.
pub(crate) trait InStore: Send {
    fn invoke<'a>(
        &'a mut self,
        store: StoreContextMut<'a, SandboxState>,
        func: Func,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>>;
}

/// The dynamic path's call in the caller's store: wasmtime's own `Val`s, borrowed.
pub(crate) struct ValCall<'v> {
    pub(crate) params: &'v [Val],
    pub(crate) results: &'v mut [Val],
}

impl InStore for ValCall<'_> {
    fn invoke<'a>(
        &'a mut self,
        store: StoreContextMut<'a, SandboxState>,
        func: Func,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>> {
        Box::pin(async move { func.call_async(store, self.params, self.results).await })
    }
}

impl<A: Components> Link<A> {
    /// Serves the consumer's call of function `func` with the provider in the consumer's
    /// own store, made there at the first call.
    pub(crate) async fn call_in_store(
        self: &Arc<Self>,
        store: &mut StoreContextMut<'_, SandboxState>,
        func: usize,
        call: &mut dyn InStore,
    ) -> wasmtime::Result<()> {
        let Some(app) = self.begin() else {
            return Err(self.failed(self.error(func, LinkCause::ShuttingDown)));
        };
        let provider = app.instances(self.provider);
        let chain = store.data().chain.clone();
        if chain.len() >= MAX_CALL_DEPTH {
            let names = chain.iter().map(|c| c.to_string()).chain([provider.name().to_string()]).collect();
            return Err(self.failed(self.error(func, CallError::TooDeep { chain: names })));
        }
        let started = Instant::now();
        let found = store.data().embedded.iter().position(|e| e.provider == self.provider);
        let at = match found {
            Some(at) => at,
            None => self.embed(store, provider, func).await?,
        };
        let instance = store.data().embedded[at].instance;
        let export = instance.get_func(&mut *store, self.funcs[func].provider);
        self.enter(store.data_mut(), at);
        let outcome = match export {
            Some(export) => call.invoke(store.as_context_mut(), export).await,
            None => Err(wasmtime::format_err!("export index does not name a function")),
        };
        self.leave(store.data_mut(), at, chain);
        self.stats.record_latency(started.elapsed());
        outcome.map_err(|error| self.provider_failed(store.data(), provider, func, &error))
    }

    /// The provider failed in the consumer's store: classified, audited and counted as its
    /// own fault, and the consumer's call fails with it.
    fn provider_failed(
        &self,
        state: &SandboxState,
        provider: &Pool,
        func: usize,
        error: &wasmtime::Error,
    ) -> wasmtime::Error {
        let fault = Fault::classify(provider.name(), error, state.limiter.hit());
        provider.audit_trap_in(&fault.kind, state.trace());
        let error = CallError::Fault(fault);
        self.count_failure(&error);
        self.failed(self.error(func, error))
    }

    /// Makes the provider's instance in the consumer's store, with its own reach; its
    /// start code runs within it. Gives its place among the store's embedded providers.
    async fn embed(
        &self,
        store: &mut StoreContextMut<'_, SandboxState>,
        provider: &Pool,
        func: usize,
    ) -> wasmtime::Result<usize> {
        let mut reach = provider.reach().map_err(|error| {
            let fault = provider.fault(crate::fault::FaultKind::Host(error.to_string()));
            self.failed(self.error(func, CallError::Fault(fault)))
        })?;
        let trace = store.data().trace().cloned();
        let state = store.data_mut();
        state.trade_reach(&mut reach);
        state.join_trace(trace);
        let made = provider.pre().instantiate_async(&mut *store).await;
        store.data_mut().trade_reach(&mut reach);
        let instance = made.map_err(|error| self.provider_failed(store.data(), provider, func, &error))?;
        provider.count_instantiation();
        let embedded = &mut store.data_mut().embedded;
        embedded.push(Embedded { provider: self.provider, instance, reach, chain: None });
        Ok(embedded.len() - 1)
    }

    /// The provider at `at` runs next: its reach in place, the consumer's trace joined,
    /// and the call chain one longer.
    fn enter(&self, state: &mut SandboxState, at: usize) {
        let trace = state.trace().cloned();
        state.trade_reach_with_embedded(at);
        state.join_trace(trace);
        let chain = match &state.embedded[at].chain {
            Some((from, chain)) if Arc::ptr_eq(from, &state.chain) => chain.clone(),
            _ => {
                let chain: CallChain = state.chain.iter().cloned().chain([self.provider_name.clone()]).collect();
                state.embedded[at].chain = Some((state.chain.clone(), chain.clone()));
                chain
            }
        };
        state.chain = chain;
    }

    /// The consumer runs again, with its own reach and `chain`.
    fn leave(&self, state: &mut SandboxState, at: usize, chain: CallChain) {
        state.trade_reach_with_embedded(at);
        state.chain = chain;
    }
}
