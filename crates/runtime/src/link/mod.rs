//! A link: one consumer import served by a provider's export, through the host. Every
//! call is counted, timed out, audited and subject to the link's policy (propagate, retry,
//! fallback) and circuit breaker. Resources the provider owns reach the consumer as proxy
//! handles that the host maps back on every call and whose drop it forwards.

use crate::audit::Audit;
use crate::fault::{Fault, FaultKind};
use crate::invocation::{DynamicCall, Invocation};
use crate::pool::{CallError, Incarnation, Pool};
use crate::sandbox::{CallChain, ReleaseProxy, SandboxState};
use crate::stats::LinkStats;
use crate::values::map_resources;
use circuit::Circuit;
use membrane_manifest::{CircuitSpec, Isolation};
use membrane_telemetry::Context as TraceContext;
use span::LinkSpan;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use typed::{Crossing, TypedArgs, TypedInvocation};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentExportIndex, ResourceAny, ResourceDynamic, Val};

mod circuit;
mod concurrent;
mod embedded;
pub mod http_hop;
pub mod kind;
mod span;
pub mod streams;
pub mod typed;

pub(crate) use concurrent::define as define_concurrent;
pub(crate) use embedded::{InStore, ValCall};

/// What a link does when its provider fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Propagate,
    Retry(u32),
    /// Call the same function on this component (an index into the app's components).
    Fallback(usize),
}

/// A consumer's call through a link that failed, naming both sides and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("its call to `{provider}` through {import} ({function}) failed: {cause}")]
pub struct LinkError {
    pub consumer: String,
    pub provider: String,
    pub import: String,
    pub function: String,
    pub cause: LinkCause,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkCause {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the link's circuit is open after {failures} consecutive failures; calls fail fast until {cooldown} pass")]
    CircuitOpen { failures: u32, cooldown: membrane_manifest::Duration },
    #[error("the resource handle belongs to an instance of `{0}` that has since been discarded")]
    StaleResource(String),
    #[error("unknown resource handle {0}")]
    UnknownResource(u32),
    #[error("the app is shutting down")]
    ShuttingDown,
}

/// The app as links see it: its components, by index.
pub trait Components: Send + Sync + 'static {
    fn instances(&self, index: usize) -> &Arc<Pool>;
}

/// One function of the linked interface, with where it lives in the provider (and in the
/// fallback, when there is one).
#[derive(Debug, Clone)]
pub struct LinkedFunc {
    pub name: String,
    /// How many results the function returns (0 or 1).
    pub results: usize,
    /// Whether a parameter or result holds a resource handle, which the link must map
    /// between the stores; without one, values pass through untouched.
    pub resources: bool,
    /// The path its calls take: typed, or dynamic for any signature.
    pub crossing: Crossing,
    pub provider: ComponentExportIndex,
    pub fallback: Option<ComponentExportIndex>,
}

/// A fault a chaos experiment injects into the calls of a link. Only `membrane chaos`
/// installs one, through [`crate::App::inject_link_fault`]; no manifest key can.
pub trait LinkFault: Send + Sync + 'static {
    /// The fate of one call to the link's provider (not to its fallback).
    fn next_call(&self) -> Injected;
}

/// What an injected fault does to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    Pass,
    /// The call waits this long first (within the link's timeout).
    Delay(Duration),
    /// The call fails as if the provider had trapped with this message.
    Trap(String),
}

struct Proxy {
    incarnation: Incarnation,
    resource: ResourceAny,
}

pub struct Link<A: Components> {
    pub consumer: Arc<str>,
    /// The interface name as the consumer imports it.
    pub import: String,
    pub provider: usize,
    pub provider_name: Arc<str>,
    pub policy: Policy,
    pub timeout: Option<Duration>,
    pub funcs: Vec<LinkedFunc>,
    /// The `ResourceType::host_dynamic` payload of this link's proxy handles.
    pub resource_type: u32,
    pub stats: Arc<LinkStats>,
    /// Whether the provider has a store of its own or lives in the consumer's.
    pub isolation: Isolation,
    /// The bytes that streams across the link may have in flight, all together.
    pub budget: streams::Budget,
    circuit: Option<Circuit>,
    proxies: Mutex<HashMap<u32, Proxy>>,
    next_proxy: AtomicU32,
    audit: Audit,
    app: OnceLock<Weak<A>>,
    injected: OnceLock<Arc<dyn LinkFault>>,
    /// What its spans say of it, once a call is traced.
    labels: OnceLock<span::Labels>,
}

impl<A: Components> Link<A> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        consumer: Arc<str>,
        import: String,
        provider: usize,
        provider_name: Arc<str>,
        policy: Policy,
        timeout: Option<Duration>,
        circuit: Option<CircuitSpec>,
        funcs: Vec<LinkedFunc>,
        resource_type: u32,
        audit: Audit,
    ) -> Self {
        Link {
            consumer,
            import,
            provider,
            provider_name,
            policy,
            timeout,
            funcs,
            resource_type,
            stats: Arc::default(),
            isolation: Isolation::Store,
            budget: streams::Budget::default(),
            circuit: circuit.map(Circuit::new),
            proxies: Mutex::default(),
            next_proxy: AtomicU32::new(1),
            audit,
            app: OnceLock::new(),
            injected: OnceLock::new(),
            labels: OnceLock::new(),
        }
    }

    /// Connects the link to the app it belongs to, once the app exists.
    pub fn attach(&self, app: Weak<A>) {
        let _ = self.app.set(app);
    }

    /// Installs a chaos experiment's fault; a link takes at most one, for its lifetime.
    pub fn inject(&self, fault: Arc<dyn LinkFault>) -> bool {
        self.injected.set(fault).is_ok()
    }

    /// What the link's spans say of it.
    fn labels(&self) -> &span::Labels {
        self.labels.get_or_init(|| {
            let functions = self.funcs.iter().map(|f| f.name.as_str());
            span::Labels::new(&self.consumer, &self.provider_name, &self.import, functions)
        })
    }

    fn app(&self) -> Option<Arc<A>> {
        self.app.get().and_then(Weak::upgrade)
    }

    /// The provider's instances, while the app is running.
    pub(crate) fn provider_pool(&self) -> Option<Arc<Pool>> {
        self.app().map(|app| app.instances(self.provider).clone())
    }

    /// Whether the circuit is open (calls fail fast), for status reports.
    pub fn circuit_state(&self) -> Option<&'static str> {
        self.circuit.as_ref().map(Circuit::state_name)
    }

    fn error(&self, func: usize, cause: impl Into<LinkCause>) -> LinkError {
        LinkError {
            consumer: self.consumer.to_string(),
            provider: self.provider_name.to_string(),
            import: self.import.clone(),
            function: self.funcs[func].name.clone(),
            cause: cause.into(),
        }
    }

    /// Serves the consumer's call of function `func` with `params`, writing `results`:
    /// the dynamic path, for any signature.
    pub async fn forward(
        self: &Arc<Self>,
        consumer: &mut StoreContextMut<'_, SandboxState>,
        func: usize,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let outcome = self.call(consumer, func, params, results).await;
        outcome.map_err(|error| self.failed(error))
    }

    /// Serves the consumer's call of function `func` on a typed path: `call` holds the
    /// arguments and, given back, the results. See [`typed`].
    /// `trace` is the consumer's trace context, under which the call is a span.
    pub(crate) async fn forward_typed(
        self: &Arc<Self>,
        chain: CallChain,
        trace: Option<TraceContext>,
        func: usize,
        call: Box<dyn TypedInvocation>,
    ) -> wasmtime::Result<Box<dyn TypedInvocation>> {
        let outcome = match self.begin() {
            Some(app) => {
                let mut args = TypedArgs(Some(call));
                self.supervise(&app, &chain, trace.as_ref(), func, None, &mut args).await
            }
            None => Err(self.error(func, LinkCause::ShuttingDown)),
        };
        outcome.map(|(_, call)| call).map_err(|error| self.failed(error))
    }

    fn failed(&self, error: LinkError) -> wasmtime::Error {
        self.stats.errors.fetch_add(1, Relaxed);
        wasmtime::Error::new(crate::fault::LinkFailed(error.to_string()))
    }

    /// Counts a call and finds the app it runs in (none once it is shutting down).
    fn begin(&self) -> Option<Arc<A>> {
        self.stats.calls.fetch_add(1, Relaxed);
        self.app()
    }

    async fn call(
        self: &Arc<Self>,
        consumer: &mut StoreContextMut<'_, SandboxState>,
        func: usize,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), LinkError> {
        let app = self.begin().ok_or_else(|| self.error(func, LinkCause::ShuttingDown))?;
        let chain = consumer.data().chain.clone();
        let trace = consumer.data().trace().cloned();
        let resources = self.funcs[func].resources;
        let (params, incarnation) = if resources {
            let (params, incarnation) = self.params_to_provider(consumer, params).map_err(|c| self.error(func, c))?;
            (Cow::Owned(params), incarnation)
        } else {
            (Cow::Borrowed(params), None)
        };
        let mut args = DynamicArgs { params, results: results.len(), resources };
        let (incarnation, call) = self.supervise(&app, &chain, trace.as_ref(), func, incarnation, &mut args).await?;
        for (result, value) in results.iter_mut().zip(call.results) {
            *result = value;
        }
        if !resources {
            return Ok(());
        }
        self.results_to_consumer(consumer, results, incarnation).map_err(|c| self.error(func, c))
    }

    /// Calls `func` on the provider with `args` under the link's policy: the circuit, the
    /// chaos experiment's fault, retries and the fallback, each attempt within the timeout.
    /// Gives back the invocation that answered, with its results. The call is a span under
    /// `trace` (see [`span`]).
    async fn supervise<G: Arguments>(
        self: &Arc<Self>,
        app: &Arc<A>,
        chain: &CallChain,
        trace: Option<&TraceContext>,
        func: usize,
        incarnation: Option<Incarnation>,
        args: &mut G,
    ) -> Result<(Incarnation, G::Call), LinkError> {
        let provider = app.instances(self.provider);
        let function = &self.funcs[func].name;
        let mut span = LinkSpan::start(trace, || self.labels(), Some(func), provider);
        if let Some(circuit) = &self.circuit
            && let Err(cause) = circuit.admit(&self.audit, &self.consumer, &self.import)
        {
            self.stats.rejected.fetch_add(1, Relaxed);
            span.circuit_open(&cause);
            return Err(self.error(func, cause));
        }
        let started = Instant::now();
        let mut attempt = 0;
        let mut fell_back = false;
        let outcome = loop {
            let (delay, trap) = match self.injected.get().map(|f| f.next_call()) {
                Some(Injected::Delay(delay)) => (Some(delay), None),
                Some(Injected::Trap(why)) => (None, Some(why)),
                _ => (None, None),
            };
            let result = match trap {
                Some(why) => {
                    self.audit.record(&self.consumer, "chaos", &self.import, &why);
                    Err(CallError::Fault(provider.fault(FaultKind::Trap(why))))
                }
                None => {
                    // The arguments are copied only when a later attempt may need them.
                    let again = args.replayable()
                        && match self.policy {
                            Policy::Propagate => false,
                            Policy::Retry(n) => attempt < n,
                            Policy::Fallback(_) => true,
                        };
                    let call = args.attempt(again);
                    let index = self.funcs[func].provider;
                    self.call_once(provider, chain, span.context(), index, incarnation, delay, call).await
                }
            };
            let Err(error) = result else { break result };
            self.count_failure(&error);
            match self.policy {
                Policy::Retry(n) if attempt < n && retriable(&error) && args.replayable() => {
                    attempt += 1;
                    span.failed(&error, Some(attempt));
                    self.stats.retries.fetch_add(1, Relaxed);
                    self.audit.record(
                        &self.consumer,
                        "retry",
                        &self.import,
                        &format!("attempt {} of {n}: {}", attempt + 1, error.summary()),
                    );
                }
                Policy::Fallback(fallback) if retriable(&error) && args.replayable() => {
                    span.failed(&error, None);
                    let fallback = app.instances(fallback);
                    self.stats.fallbacks.fetch_add(1, Relaxed);
                    self.audit.record(
                        &self.consumer,
                        "fallback",
                        &self.import,
                        &format!(
                            "`{}` failed ({}); answered by `{}`",
                            self.provider_name,
                            error.summary(),
                            fallback.name()
                        ),
                    );
                    let index = self.funcs[func].fallback.expect("fallback exports were checked at load");
                    let fallback_span = span.fallback(fallback, function);
                    let trace = fallback_span.context();
                    let call = args.attempt(false);
                    let result = self.call_once(fallback, chain, trace.as_ref(), index, None, None, call).await;
                    span::end_fallback(fallback_span, &result);
                    fell_back = true;
                    break result;
                }
                _ => break Err(error),
            }
        };
        self.stats.record_latency(started, started.elapsed());
        span.end(&outcome, fell_back);
        match &outcome {
            Ok(_) => {
                if let Some(circuit) = &self.circuit {
                    circuit.success(&self.audit, &self.consumer, &self.import);
                }
            }
            Err(_) => {
                if let Some(circuit) = &self.circuit {
                    circuit.failure(&self.audit, &self.consumer, &self.import);
                }
            }
        }
        outcome.map_err(|error| self.error(func, error))
    }

    /// One call of `func` in `instances`, after the chaos experiment's `delay` if any, the
    /// whole within the link's timeout, in the trace of span `trace`.
    #[allow(clippy::too_many_arguments)]
    async fn call_once<I: Invocation>(
        &self,
        instances: &Arc<Pool>,
        chain: &CallChain,
        trace: Option<&TraceContext>,
        func: ComponentExportIndex,
        incarnation: Option<Incarnation>,
        delay: Option<Duration>,
        call: I,
    ) -> Result<(Incarnation, I), CallError> {
        let mut deadline = self.timeout;
        if let Some(delay) = delay {
            if let Some(limit) = deadline.filter(|limit| delay >= *limit) {
                tokio::time::sleep(limit).await;
                instances.audit_trap(&FaultKind::Timeout(limit));
                return Err(CallError::Fault(instances.fault(FaultKind::Timeout(limit))));
            }
            tokio::time::sleep(delay).await;
            deadline = deadline.map(|limit| limit - delay);
        }
        // The deadline goes with the call rather than around it: a provider past the
        // link's timeout is stopped and discarded by its supervisor, while a caller that
        // merely goes away leaves a long-lived provider to finish (see `Pool::call`).
        instances.call(chain, trace, func, incarnation, deadline, call).await
    }

    fn count_failure(&self, error: &CallError) {
        match error {
            CallError::Fault(Fault { kind: FaultKind::Timeout(_), .. }) => self.stats.timeouts.fetch_add(1, Relaxed),
            CallError::Fault(_) => self.stats.traps.fetch_add(1, Relaxed),
            _ => self.stats.rejected.fetch_add(1, Relaxed),
        };
    }

    /// Replaces each proxy handle among `params` with the provider's own resource. An
    /// owned handle moves to the provider and leaves the proxy table.
    fn params_to_provider(
        &self,
        consumer: &mut StoreContextMut<'_, SandboxState>,
        params: &[Val],
    ) -> Result<(Vec<Val>, Option<Incarnation>), LinkCause> {
        let mut incarnation = None;
        let mut mapped = Vec::with_capacity(params.len());
        for param in params {
            mapped.push(map_resources(param.clone(), &mut |resource| {
                let handle = ResourceDynamic::try_from_resource_any(resource, &mut *consumer)
                    .map_err(|_| LinkCause::UnknownResource(0))?;
                let mut proxies = self.proxies.lock().unwrap_or_else(|p| p.into_inner());
                let proxy = if handle.owned() {
                    consumer.data_mut().proxies.forget(self.resource_type, handle.rep());
                    proxies.remove(&handle.rep())
                } else {
                    proxies.get(&handle.rep()).map(|p| Proxy { incarnation: p.incarnation, resource: p.resource })
                };
                let proxy = proxy.ok_or(LinkCause::UnknownResource(handle.rep()))?;
                match incarnation {
                    Some(g) if g != proxy.incarnation => {
                        return Err(LinkCause::StaleResource(self.provider_name.to_string()));
                    }
                    _ => incarnation = Some(proxy.incarnation),
                }
                Ok(proxy.resource)
            })?);
        }
        Ok((mapped, incarnation))
    }

    /// Replaces each resource the provider returned with a new proxy handle in the
    /// consumer's store.
    fn results_to_consumer(
        self: &Arc<Self>,
        consumer: &mut StoreContextMut<'_, SandboxState>,
        results: &mut [Val],
        incarnation: Incarnation,
    ) -> Result<(), LinkCause> {
        let link: Weak<dyn ReleaseProxy> = Arc::downgrade(self) as Weak<dyn ReleaseProxy>;
        for result in results.iter_mut() {
            let value = std::mem::replace(result, Val::Bool(false));
            *result = map_resources(value, &mut |resource| {
                let rep = self.next_proxy.fetch_add(1, Relaxed);
                self.proxies.lock().unwrap_or_else(|p| p.into_inner()).insert(rep, Proxy { incarnation, resource });
                consumer.data_mut().proxies.hold(self.resource_type, rep, link.clone());
                ResourceDynamic::new_own(rep, self.resource_type)
                    .try_into_resource_any(&mut *consumer)
                    .map_err(|_| LinkCause::UnknownResource(rep))
            })?;
        }
        Ok(())
    }

    /// The consumer dropped its proxy handle `rep`: drop the provider's resource.
    pub async fn drop_proxy(&self, consumer: &mut SandboxState, rep: u32) -> wasmtime::Result<()> {
        consumer.proxies.forget(self.resource_type, rep);
        match self.take_proxy(rep) {
            Some((provider, proxy)) => provider.drop_resource(proxy.incarnation, proxy.resource).await,
            None => Ok(()),
        }
    }

    /// Takes proxy `rep` out of the table, with the provider that owns its resource.
    fn take_proxy(&self, rep: u32) -> Option<(Arc<Pool>, Proxy)> {
        let proxy = self.proxies.lock().unwrap_or_else(|p| p.into_inner()).remove(&rep)?;
        Some((self.app()?.instances(self.provider).clone(), proxy))
    }
}

impl<A: Components> ReleaseProxy for Link<A> {
    /// The consumer's store went away still holding `rep`: the provider drops it in the
    /// background, after the call it may be serving.
    fn release(&self, rep: u32) {
        let Some((provider, proxy)) = self.take_proxy(rep) else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = provider.drop_resource(proxy.incarnation, proxy.resource).await;
            });
        }
    }
}

/// The arguments of a call through a link, from which each attempt takes its own
/// invocation.
trait Arguments: Send {
    type Call: Invocation;
    /// The invocation of one attempt; `again` says whether a later attempt may need the
    /// arguments once more (then they are copied, else moved).
    fn attempt(&mut self, again: bool) -> Self::Call;

    /// Whether another attempt can be made: not once a stream has been handed over or
    /// the consumer answered.
    fn replayable(&self) -> bool {
        true
    }
}

/// The dynamic path's arguments: borrowed from wasmtime, or owned once resources in them
/// were mapped to the provider's.
struct DynamicArgs<'a> {
    params: Cow<'a, [Val]>,
    results: usize,
    resources: bool,
}

impl Arguments for DynamicArgs<'_> {
    type Call = DynamicCall;
    fn attempt(&mut self, again: bool) -> DynamicCall {
        let params = if again { self.params.to_vec() } else { std::mem::take(&mut self.params).into_owned() };
        DynamicCall { resources: self.resources, ..DynamicCall::new(params, self.results) }
    }
}

/// Faults are worth another try elsewhere; a refused call (reentrancy, a failed
/// component) is not going to change by trying again.
fn retriable(error: &CallError) -> bool {
    matches!(error, CallError::Fault(_) | CallError::Failed { .. })
}
