//! How a component's instances are made, reused and supervised: a fresh instance per call,
//! one long-lived singleton restarted with backoff within a budget, or a pool of up to N.
//! Every instance is a [`Sandbox`] with its own store.

use crate::audit::Audit;
use crate::fault::{Fault, FaultKind};
use crate::invocation::Invocation;
use crate::sandbox::{self, CallChain, GrantError, Reach, SandboxState};
use crate::slots::InstanceSlots;
use crate::state::ComponentState;
use crate::stats::ComponentStats;
use membrane_manifest::{Grants, InstanceMode, Limits, RestartPolicy};
use membrane_telemetry::Context as TraceContext;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{ComponentExportIndex, Instance, InstancePre, ResourceAny};
use wasmtime::{Engine, Store};

/// One instance of a component and the store that owns it.
pub struct Sandbox {
    pub store: Store<SandboxState>,
    instance: Instance,
    incarnation: u64,
}

/// Calls export `func` of `instance` as `call` says; `caller` is the chain of components
/// that led here, this one is `name`, and `trace` the span the call is made in. Budgets
/// and faults are [`Pool::enter`]'s business.
async fn call_export<I: Invocation>(
    store: &mut Store<SandboxState>,
    instance: Instance,
    func: ComponentExportIndex,
    caller: &CallChain,
    trace: Option<&TraceContext>,
    name: &Arc<str>,
    call: &mut I,
) -> wasmtime::Result<()> {
    // A singleton called again from the same place keeps the chain it has.
    let chain = &mut store.data_mut().chain;
    let same = chain.len() == caller.len() + 1
        && chain.iter().zip(caller.iter().chain([name])).all(|(a, b)| Arc::ptr_eq(a, b));
    if !same {
        *chain = caller.iter().cloned().chain([name.clone()]).collect();
    }
    let f = instance
        .get_func(&mut *store, func)
        .ok_or_else(|| wasmtime::format_err!("export index does not name a function"))?;
    // For the length of the call, what the instance does (its own link calls,
    // instantiations, key-value and outbound calls) is part of the caller's trace. A call
    // that fails keeps the trace, so the fault's audit line leads to it; its instance is
    // not entered again. (With tracing off both are `None`: nothing is cloned.)
    let outer = store.data_mut().join_trace(trace.cloned());
    let result = call.invoke(store, f).await;
    if result.is_ok() {
        store.data_mut().join_trace(outer);
    }
    result
}

mod error;
mod resident;
mod spans;

pub use spans::Came;

pub use error::{CallError, MAX_CALL_DEPTH};

#[derive(Default)]
struct Slot {
    sandbox: Option<Sandbox>,
    /// The way to the resident running the instance's event loop, while one is (then
    /// `sandbox` is empty: the resident has it).
    resident: Option<resident::Door>,
    /// How many instances this slot has started.
    incarnation: u64,
    restarts: VecDeque<Instant>,
    failed: bool,
}

/// Everything needed to make and keep instances of one component.
pub struct Pool {
    pub(crate) name: Arc<str>,
    /// The name and instance mode as spans carry them.
    label: membrane_telemetry::Label,
    mode_label: membrane_telemetry::Label,
    /// Its instance spans' attributes, for each way an instance comes ([`Came`]).
    instance_attributes: [membrane_telemetry::PreparedOnce; Came::ALL],
    pub(crate) mode: InstanceMode,
    pub(crate) grants: Grants,
    pub(crate) limits: Limits,
    pub(crate) restart: RestartPolicy,
    pub(crate) stats: Arc<ComponentStats>,
    engine: Engine,
    /// Whether the engine counts fuel (asked once: wasmtime answers "no" with an error).
    fuel_metered: bool,
    pre: InstancePre<SandboxState>,
    audit: Audit,
    state: ComponentState,
    slot: tokio::sync::Mutex<Slot>,
    idle: std::sync::Mutex<Vec<Sandbox>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// A pool's instances running async calls side by side, each in its resident.
    residents: std::sync::Mutex<Vec<resident::Door>>,
    /// Its share of the engine's pooled slots; `None` without a pool.
    pub(crate) slots: Option<InstanceSlots>,
}

pub use crate::invocation::Incarnation;

impl Pool {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: Arc<str>,
        mode: InstanceMode,
        grants: Grants,
        limits: Limits,
        restart: RestartPolicy,
        engine: Engine,
        pre: InstancePre<SandboxState>,
        audit: Audit,
        state: ComponentState,
        stats: Arc<ComponentStats>,
        slots: Option<InstanceSlots>,
    ) -> Pool {
        let permits = match mode {
            InstanceMode::Pool(n) => n as usize,
            _ => tokio::sync::Semaphore::MAX_PERMITS,
        };
        let fuel_metered = Store::new(&engine, ()).get_fuel().is_ok();
        Pool {
            name,
            label: Default::default(),
            mode_label: Default::default(),
            instance_attributes: Default::default(),
            mode,
            grants,
            limits,
            restart,
            stats,
            fuel_metered,
            engine,
            pre,
            audit,
            state,
            slot: tokio::sync::Mutex::default(),
            idle: std::sync::Mutex::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(permits)),
            residents: std::sync::Mutex::default(),
            slots,
        }
    }

    /// The component's limits, as its manifest (or the command line) sets them.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts an instance made outside [`Pool::call`] (an HTTP handler's, per request).
    pub fn count_instantiation(&self) {
        self.stats.instantiations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn pre(&self) -> &InstancePre<SandboxState> {
        &self.pre
    }

    /// A store for an instance of this component, with its grants and limits.
    pub fn new_store(&self, args: &[String]) -> Result<Store<SandboxState>, CallError> {
        self.new_store_with(args, &self.limits)
    }

    /// A store with the component's grants and `limits` (a caller's narrower limits, such
    /// as a tenant's per-request quota), holding one of the component's pool slots until
    /// it is dropped; refused when the component has all its slots in use. Grants were
    /// checked at load, but a granted directory can vanish since (another component with
    /// `rw` on its parent may remove it): that fails this call, not the host.
    pub fn new_store_with(&self, args: &[String], limits: &Limits) -> Result<Store<SandboxState>, CallError> {
        let slot = match &self.slots {
            Some(slots) => Some(slots.claim().ok_or_else(|| CallError::NoSlot {
                component: self.name.to_string(),
                share: slots.share,
                memories: slots.needs.memories,
                tables: slots.needs.tables,
            })?),
            None => None,
        };
        let mut store = self.open_store(args, limits).map_err(|error| {
            let kind = FaultKind::Host(error.to_string());
            self.audit_trap(&kind);
            self.fault(kind)
        })?;
        store.data_mut().slot = slot;
        Ok(store)
    }

    /// A store with the component's grants and `limits`, counted in its stats; a grant
    /// that cannot be honoured is returned as it is, for `membrane run` to report as the
    /// user's to fix.
    pub(crate) fn open_store(&self, args: &[String], limits: &Limits) -> Result<Store<SandboxState>, GrantError> {
        let mut store = sandbox::new_store(
            &self.engine,
            self.fuel_metered,
            &self.name,
            &self.grants,
            limits,
            args,
            &self.audit,
            &self.state,
        )?;
        store.data_mut().limiter.report_to(self.stats.clone());
        Ok(store)
    }

    /// This component's reach (WASI, HTTP, state, budget) for an instance that lives in
    /// another component's store; see [`crate::sandbox::Reach`].
    pub(crate) fn reach(&self) -> Result<Reach, GrantError> {
        Reach::new(&self.name, &self.grants, &self.limits, &[self.name.to_string()], &self.audit, &self.state)
    }

    /// A new instance for a call made in `trace`, which gets a span for it (`how`: fresh,
    /// or a singleton's restart).
    async fn instantiate(
        &self,
        incarnation: u64,
        trace: Option<&TraceContext>,
        how: Came,
    ) -> Result<Sandbox, CallError> {
        let mut span = self.instance_span(trace, how);
        let mut store = self.new_store(&[self.name.to_string()])?;
        let instance = self.pre.instantiate_async(&mut store).await.map_err(|e| {
            let fault = Fault::classify(&self.name, &e, store.data().limiter.hit());
            span.fail(|| fault.kind.to_string());
            CallError::Fault(fault)
        })?;
        self.stats.instantiations.fetch_add(1, Relaxed);
        Ok(Sandbox { store, instance, incarnation })
    }

    /// Calls `func` on an instance chosen by the instance mode, within the component's
    /// wall-clock limit narrowed to `deadline` (a link's timeout), and gives `call` back
    /// with its results. A trapped or timed-out instance is discarded, since wasmtime
    /// forbids entering it again.
    ///
    /// A caller that stops waiting (its client disconnected, its own instance ended) does
    /// not end the call into a long-lived instance: the call runs on to its end in a task of
    /// its own, bounded by the same limits, and the instance keeps its state. Only a
    /// per-call instance, which nobody else can reach, goes with its caller.
    ///
    /// `trace` is the span the call is made in (a link call's): the instance's own spans
    /// are its children.
    pub async fn call<I: Invocation>(
        self: &Arc<Self>,
        chain: &CallChain,
        trace: Option<&TraceContext>,
        func: ComponentExportIndex,
        resources_from: Option<Incarnation>,
        deadline: Option<Duration>,
        mut call: I,
    ) -> Result<(Incarnation, I), CallError> {
        if chain.len() >= MAX_CALL_DEPTH {
            return Err(CallError::TooDeep { chain: self.chain_names(chain) });
        }
        if self.mode != InstanceMode::PerCall && chain.contains(&self.name) {
            return Err(CallError::Reentrant {
                component: self.name.to_string(),
                mode: self.mode,
                chain: self.chain_names(chain),
            });
        }
        let limit = match (deadline, self.limits.timeout.map(|d| d.std())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.mode == InstanceMode::PerCall {
            let mut sandbox = self.instantiate(0, trace, Came::Fresh).await?;
            call.disposable();
            self.run(&mut sandbox, chain, trace, func, limit, &mut call).await?;
            return Ok((0, call));
        }
        // The call owns everything it needs (the arguments moved in, not copied), so that
        // it can move to a task of its own if its caller goes.
        let this = self.clone();
        let chain = chain.clone();
        let trace = trace.cloned();
        // Only a call whose results may hold resources needs to know it was abandoned
        // (to drop them); the others save the allocation.
        let abandoned = call.may_return_resources().then(|| Arc::new(AtomicBool::new(false)));
        let kept = {
            let abandoned = abandoned.clone();
            async move {
                let kept = Kept { chain: &chain, trace: trace.as_ref(), func, resources_from, limit, call, abandoned };
                this.call_kept(kept).await
            }
        };
        Detachable { call: Some(Box::pin(kept)), abandoned }.await
    }

    fn chain_names(&self, chain: &CallChain) -> Vec<String> {
        chain.iter().map(|c| c.to_string()).chain([self.name.to_string()]).collect()
    }

    /// A call into the singleton or a pooled instance; see [`Pool::call`]. When its
    /// caller has gone (`abandoned`), resources it returns have nobody to hold them and are
    /// dropped at once.
    async fn call_kept<I: Invocation>(self: &Arc<Self>, kept: Kept<'_, I>) -> Result<(Incarnation, I), CallError> {
        if self.mode == InstanceMode::Singleton {
            // Uncontended, `try_lock` takes the slot without the lock future's machinery.
            let mut slot = match self.slot.try_lock() {
                Ok(slot) => slot,
                Err(_) => self.wait_turn(kept.limit, kept.trace, self.slot.lock()).await?,
            };
            // An async call, and any call while one is in flight, goes to the instance's
            // event loop, which serves them side by side.
            if kept.call.concurrent() || slot.resident.is_some() {
                return self.call_resident(slot, kept).await;
            }
            let Kept { chain, trace, func, resources_from, limit, mut call, abandoned } = kept;
            // Otherwise the lock is held across the call: calls into a singleton are
            // serialized.
            let mut sandbox = match slot.sandbox.take() {
                Some(sandbox) => sandbox,
                None => self.start_singleton(&mut slot, trace).await?,
            };
            // Resources live in the instance that made them; another store must
            // never see them.
            if resources_from.is_some_and(|g| g != sandbox.incarnation) {
                slot.sandbox = Some(sandbox);
                return Err(CallError::StaleResource { component: self.name.to_string() });
            }
            call.incarnation(sandbox.incarnation);
            self.run(&mut sandbox, chain, trace, func, limit, &mut call).await?;
            if abandoned.is_some_and(|a| a.load(Relaxed)) {
                for resource in call.resources() {
                    let _ = resource.resource_drop_async(&mut sandbox.store).await;
                }
            }
            let incarnation = sandbox.incarnation;
            slot.sandbox = Some(sandbox);
            return Ok((incarnation, call));
        }
        // As for a singleton: async calls, and any call while some run, go to the pool's
        // residents, which serve them side by side.
        if kept.call.concurrent() || !self.residents.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            return self.call_pooled_resident(kept).await;
        }
        let Kept { chain, trace, func, limit, mut call, .. } = kept;
        let permit = self.wait_turn(limit, trace, self.permits.acquire()).await?;
        let _permit = permit.expect("the pool's semaphore is never closed");
        let mut sandbox = self.pooled_instance(trace).await?;
        self.run(&mut sandbox, chain, trace, func, limit, &mut call).await?;
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(sandbox);
        Ok((0, call))
    }

    /// Waits for `turn` (the singleton's slot, one of the pool's instances) at most the
    /// call's wall-clock `limit`, then fails as a timeout: callers queued behind slow calls
    /// time out as a slow call does, rather than waiting as long as the whole queue takes.
    /// The call then runs within its limit.
    async fn wait_turn<T>(
        &self,
        limit: Option<Duration>,
        trace: Option<&TraceContext>,
        turn: impl Future<Output = T>,
    ) -> Result<T, CallError> {
        let Some(limit) = limit else { return Ok(turn.await) };
        crate::limits::within(limit, turn).await.map_err(|_| {
            let fault = self.fault(FaultKind::Timeout(limit));
            self.audit_trap_in(&fault.kind, trace);
            fault.into()
        })
    }

    /// Runs one call in `sandbox` within `limit`. After an error the sandbox must not be
    /// entered again.
    async fn run<I: Invocation>(
        &self,
        sandbox: &mut Sandbox,
        chain: &CallChain,
        trace: Option<&TraceContext>,
        func: ComponentExportIndex,
        limit: Option<Duration>,
        call: &mut I,
    ) -> Result<(), CallError> {
        let (instance, name) = (sandbox.instance, &self.name);
        let call =
            async |store: &mut Store<SandboxState>| call_export(store, instance, func, chain, trace, name, call).await;
        self.enter(&mut sandbox.store, limit, call).await.map_err(CallError::Fault)
    }

    /// The one way into a guest: every HTTP request, `membrane run` and call across a link
    /// enters an instance of this component through here. `call` runs in `store` with the
    /// CPU and fuel budgets started afresh and the wall clock running for `limit`; a
    /// failure becomes a classified [`Fault`], audited and counted. Callers decide only
    /// what to call and what an outcome means to them.
    pub async fn enter<T>(
        &self,
        store: &mut Store<SandboxState>,
        limit: Option<Duration>,
        call: impl AsyncFnOnce(&mut Store<SandboxState>) -> wasmtime::Result<T>,
    ) -> Result<T, Fault> {
        let cpu = store.data().cpu.clone();
        cpu.reset();
        if let Some(fuel) = store.data().fuel {
            store.set_fuel(fuel).map_err(|e| Fault::classify(&self.name, &e, None))?;
        }
        let running = cpu.meter(call(&mut *store));
        let outcome = match limit {
            Some(limit) => crate::limits::within(limit, running).await.map_err(|_| limit),
            None => Ok(running.await),
        };
        let fault = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => Fault::classify(&self.name, &error, store.data().limiter.hit()),
            Err(limit) => self.fault(FaultKind::Timeout(limit)),
        };
        self.audit_trap_in(&fault.kind, store.data().trace());
        Err(fault)
    }

    /// One of the pool's instances for a call made in `trace`: an idle one, or a new one.
    async fn pooled_instance(&self, trace: Option<&TraceContext>) -> Result<Sandbox, CallError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(sandbox) => {
                // A pool hit: the span says so, and takes no time.
                drop(self.instance_span(trace, Came::Pooled));
                Ok(sandbox)
            }
            None => self.instantiate(0, trace, Came::Fresh).await,
        }
    }

    /// Counts and audits a fault of this component.
    pub fn audit_trap(&self, kind: &FaultKind) {
        self.audit_trap_in(kind, None);
    }

    pub(crate) fn audit_trap_in(&self, kind: &FaultKind, trace: Option<&TraceContext>) {
        self.stats.trapped(kind.name());
        self.audit.record_in(trace, &self.name, "trap", kind.name(), &kind.to_string());
    }

    /// Starts the singleton: the first time at once, afterwards as a restart with
    /// exponential backoff, refused once the restart budget for the window is spent.
    async fn start_singleton(&self, slot: &mut Slot, trace: Option<&TraceContext>) -> Result<Sandbox, CallError> {
        let failed = || CallError::Failed {
            component: self.name.to_string(),
            restarts: self.restart.max_restarts,
            window: self.restart.window,
        };
        if slot.failed {
            return Err(failed());
        }
        if slot.incarnation > 0 {
            let now = Instant::now();
            let window = self.restart.window.std();
            slot.restarts.retain(|t| now.duration_since(*t) < window);
            if slot.restarts.len() >= self.restart.max_restarts as usize {
                slot.failed = true;
                self.audit.record(&self.name, "failed", "restart budget", "component marked failed");
                return Err(failed());
            }
            let backoff = self.restart.backoff.std() * 2u32.saturating_pow(slot.restarts.len() as u32);
            tokio::time::sleep(backoff).await;
            slot.restarts.push_back(Instant::now());
            self.stats.restarts.fetch_add(1, Relaxed);
            self.audit.record(&self.name, "restart", "singleton", &format!("after {backoff:?} backoff"));
        }
        slot.incarnation += 1;
        let how = if slot.incarnation > 1 { Came::Restart } else { Came::Fresh };
        self.instantiate(slot.incarnation, trace, how).await
    }

    /// Clears a failed singleton so the next call starts it afresh.
    pub async fn reset(&self) {
        let mut slot = self.slot.lock().await;
        *slot = Slot { incarnation: slot.incarnation, ..Slot::default() };
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Drops a resource the singleton instance of `incarnation` owns, running its
    /// destructor there. A resource of an instance that is gone is gone with it.
    pub async fn drop_resource(&self, incarnation: Incarnation, resource: ResourceAny) -> wasmtime::Result<()> {
        let mut slot = self.slot.lock().await;
        let Some(resource) = Pool::drop_in_resident(&slot, incarnation, resource) else {
            return Ok(());
        };
        match slot.sandbox.as_mut() {
            Some(sandbox) if sandbox.incarnation == incarnation => {
                resource.resource_drop_async(&mut sandbox.store).await
            }
            _ => Ok(()),
        }
    }

    /// Whether a call would find this component failed.
    pub async fn is_failed(&self) -> bool {
        self.slot.lock().await.failed
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fault(&self, kind: FaultKind) -> Fault {
        Fault { component: self.name.to_string(), kind, backtrace: Vec::new() }
    }
}

/// A call into a long-lived instance, with what it was made in: see [`Pool::call`].
struct Kept<'a, I> {
    chain: &'a CallChain,
    trace: Option<&'a TraceContext>,
    func: ComponentExportIndex,
    /// The instance the call's resource arguments belong to.
    resources_from: Option<Incarnation>,
    limit: Option<Duration>,
    call: I,
    /// Raised when the caller has gone.
    abandoned: Option<Arc<AtomicBool>>,
}

/// A call that finishes even when its caller stops waiting: dropped unfinished, it raises
/// `abandoned` and moves to a task of its own, where it runs to its end (within the limits
/// it carries).
///
/// A long-lived instance abandoned mid-call could never be entered again (its guest state
/// may be half-updated), so dropping the call would discard a healthy instance and count
/// its caller's disconnect as its restart.
struct Detachable<T: Send + 'static> {
    call: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
    abandoned: Option<Arc<AtomicBool>>,
}

impl<T: Send + 'static> Future for Detachable<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let call = self.call.as_mut().expect("a Detachable is not polled after it is done");
        let out = std::task::ready!(call.as_mut().poll(cx));
        self.call = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for Detachable<T> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            if let Some(abandoned) = &self.abandoned {
                abandoned.store(true, Relaxed);
            }
            runtime.spawn(call);
        }
    }
}
