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

use super::span::LinkSpan;
use super::{Components, Link, LinkCause};
use crate::fault::Fault;
use crate::pool::{CallError, MAX_CALL_DEPTH, Pool};
use crate::sandbox::{CallChain, Embedded, SandboxState};
use membrane_telemetry::Context as TraceContext;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{ComponentExportIndex, Func, Val};
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
        let span = LinkSpan::start(store.data().trace(), || self.labels(), Some(func), provider);
        let started = Instant::now();
        let found = store.data().embedded.iter().position(|e| e.provider == self.provider);
        let at = match found {
            Some(at) => Ok(at),
            None => self.embed(store, provider, span.context()).await,
        };
        let outcome = match at {
            Ok(at) => {
                let export = self.provider_func(store, at, self.funcs[func].provider);
                self.enter(store.data_mut(), at, span.context());
                let outcome = match export {
                    Some(export) => call.invoke(store.as_context_mut(), export).await,
                    None => Err(wasmtime::format_err!("export index does not name a function")),
                };
                self.leave(store.data_mut(), at, chain);
                outcome.map_err(|error| self.provider_fault(store.data(), provider, &error))
            }
            Err(error) => Err(error),
        };
        self.stats.record_latency(started, started.elapsed());
        span.end(&outcome, false);
        outcome.map_err(|error| self.failed(self.error(func, error)))
    }

    /// The function `index` of the provider at `at`, found at its first call.
    fn provider_func(
        &self,
        store: &mut StoreContextMut<'_, SandboxState>,
        at: usize,
        index: ComponentExportIndex,
    ) -> Option<Func> {
        let embedded = &store.data().embedded[at];
        if let Some((_, func)) = embedded.funcs.iter().find(|(i, _)| *i == index) {
            return Some(*func);
        }
        let instance = embedded.instance;
        let func = instance.get_func(&mut *store, index)?;
        store.data_mut().embedded[at].funcs.push((index, func));
        Some(func)
    }

    /// The provider failed in the consumer's store: classified, audited and counted as its
    /// own fault, which the consumer's call fails with.
    fn provider_fault(&self, state: &SandboxState, provider: &Pool, error: &wasmtime::Error) -> CallError {
        let fault = Fault::classify(provider.name(), error, state.limiter.hit());
        provider.audit_trap_in(&fault.kind, state.trace());
        let error = CallError::Fault(fault);
        self.count_failure(&error);
        error
    }

    /// Makes the provider's instance in the consumer's store, with its own reach and in
    /// the link call's `trace`; its start code runs within it. Gives its place among the
    /// store's embedded providers.
    async fn embed(
        &self,
        store: &mut StoreContextMut<'_, SandboxState>,
        provider: &Pool,
        trace: Option<&TraceContext>,
    ) -> Result<usize, CallError> {
        let mut reach = provider
            .reach()
            .map_err(|error| CallError::Fault(provider.fault(crate::fault::FaultKind::Host(error.to_string()))))?;
        let state = store.data_mut();
        state.trade_reach(&mut reach);
        state.join_trace(trace.cloned());
        let made = provider.pre().instantiate_async(&mut *store).await;
        store.data_mut().trade_reach(&mut reach);
        let instance = made.map_err(|error| self.provider_fault(store.data(), provider, &error))?;
        provider.count_instantiation();
        let embedded = &mut store.data_mut().embedded;
        embedded.push(Embedded { provider: self.provider, instance, reach, chain: None, funcs: Vec::new() });
        Ok(embedded.len() - 1)
    }

    /// The provider at `at` runs next: its reach in place, in the link call's `trace`,
    /// and the call chain one longer.
    fn enter(&self, state: &mut SandboxState, at: usize, trace: Option<&TraceContext>) {
        state.trade_reach_with_embedded(at);
        state.join_trace(trace.cloned());
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
