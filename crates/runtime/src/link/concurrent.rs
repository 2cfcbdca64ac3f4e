//! Async functions across a link. The consumer's call is a concurrent host function: it
//! takes the streams and futures among the arguments out of the consumer's store
//! ([`streams`]), and a task of the host calls the provider under the link's supervision,
//! each in its own store. The provider's call is concurrent too (`run_concurrent`,
//! `call_concurrent`): once it returns, its results (streams and futures taken out of the
//! provider's store the same way) answer the consumer at once, while the provider's
//! instance goes on running until its streams are written; the call ends, for the
//! link's timeout, counters and span, only then.
//!
//! A call is supervised like any other until it has answered: retried or sent to the
//! fallback when that can be done again, which a call that handed over a stream cannot
//! (its bytes are gone). A provider that fails after answering (a trap mid-stream, its
//! deadline) ends the streams it was writing: the consumer sees them end, its store
//! untouched, and the failure counts against the link like any other.

use super::streams::{Budget, Carried, Cut, Interest, Landing, Toward, take_off};
use super::{Arguments, Components, Link, LinkCause};
use crate::invocation::Invocation;
use crate::pool::{Incarnation, Pool};
use crate::sandbox::SandboxState;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use wasmtime::component::{Accessor, Func, LinkerInstance, ResourceAny, Val};
use wasmtime::{AsContextMut, Store};

/// Defines the consumer's imported `func` (an index into the link's functions) as a
/// concurrent call through `link`.
pub(crate) fn define<A: Components>(
    instance: &mut LinkerInstance<'_, SandboxState>,
    link: Arc<Link<A>>,
    func: usize,
) -> wasmtime::Result<()> {
    let name = link.funcs[func].name.clone();
    instance.func_new_concurrent(&name, move |accessor, _ty, params, results| {
        let link = link.clone();
        Box::pin(async move { link.forward_concurrent(accessor, func, params, results).await })
    })
}

/// A result on its way back to the consumer.
enum Answered {
    Value(Val),
    /// A stream or future, to be made in the consumer's store.
    Landing(Box<dyn Landing>),
}

/// The provider's results, with the instance that made any resources among them.
type Results = (Incarnation, Vec<Answered>);

/// Results on their way to the consumer. Dropped unclaimed (the consumer's call went away
/// after they were sent, before it took them), the resources among them are dropped where
/// they were made, in the background: a consumer that keeps going away at that moment
/// cannot fill a long-lived provider's table.
struct Unclaimed {
    results: Option<Results>,
    provider: Option<Arc<Pool>>,
}

impl Unclaimed {
    fn claim(mut self) -> Results {
        self.results.take().unwrap_or_default()
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        let (Some((incarnation, answered)), Some(provider)) = (self.results.take(), self.provider.take()) else {
            return;
        };
        let values: Vec<Val> = answered.into_iter().filter_map(Answered::into_value).collect();
        let resources = crate::values::resources_in(&values);
        if resources.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for resource in resources {
                    let _ = provider.drop_resource(incarnation, resource).await;
                }
            });
        }
    }
}

impl Answered {
    fn into_value(self) -> Option<Val> {
        match self {
            Answered::Value(value) => Some(value),
            Answered::Landing(_) => None,
        }
    }
}

/// Where the provider's results go, once: shared by every attempt of one call.
#[derive(Clone)]
struct Answer {
    tx: Arc<Mutex<Option<oneshot::Sender<Unclaimed>>>>,
    /// The provider, when the results may hold its resources.
    provider: Option<Arc<Pool>>,
}

impl Answer {
    /// Hands the results over; gives them back when the consumer is gone (its streams
    /// go with them, its resources must be dropped where they were made).
    fn send(&self, results: Results) -> Option<Results> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let unclaimed = Unclaimed { results: Some(results), provider: self.provider.clone() };
        tx.send(unclaimed).err().map(Unclaimed::claim)
    }

    fn is_sent(&self) -> bool {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }
}

/// One concurrent call into the provider.
pub(crate) struct ConcurrentCall {
    params: Vec<Val>,
    /// The arguments' streams and futures, by position, to be made in the provider's store.
    landings: Vec<(usize, Box<dyn Landing>)>,
    results: Arc<[Option<Carried>]>,
    budget: Budget,
    answer: Answer,
    /// Whether the instance is dropped after the call (per-call), taking with it what
    /// the guest leaves unfinished.
    disposable: bool,
    /// The instance the call runs in, which owns any resource it returns.
    incarnation: Incarnation,
    /// Stops the call's streams, both ways.
    cut: Cut,
    /// Resources returned to a consumer that had gone, to drop where they were made.
    orphans: Vec<ResourceAny>,
}

impl ConcurrentCall {
    /// Makes the call in the provider's event loop and answers the consumer with its
    /// results; gives back the consumer's interest in the streams and futures among them.
    async fn start(&mut self, accessor: &Accessor<SandboxState>, func: Func) -> wasmtime::Result<Vec<Interest>> {
        let params = accessor.with(|mut store| -> wasmtime::Result<_> {
            let mut params = std::mem::take(&mut self.params);
            for (at, landing) in self.landings.drain(..) {
                params[at] = landing.land(store.as_context_mut())?;
            }
            Ok(params)
        })?;
        let mut results = vec![Val::Bool(false); self.results.len()];
        func.call_concurrent(accessor, &params, &mut results).await?;
        let mut interest: Vec<Interest> = Vec::new();
        let answered = accessor.with(|mut store| {
            results
                .into_iter()
                .zip(self.results.iter())
                .map(|(value, carried)| match carried {
                    Some(carried) => {
                        let (landing, wanted) = take_off(
                            *carried,
                            &value,
                            store.as_context_mut(),
                            &self.budget,
                            Toward::Consumer,
                            &self.cut,
                        )?;
                        interest.push(wanted);
                        Ok(Answered::Landing(landing))
                    }
                    None => Ok(Answered::Value(value)),
                })
                .collect::<wasmtime::Result<Vec<_>>>()
        })?;
        if let Some((_, unclaimed)) = self.answer.send((self.incarnation, answered)) {
            let values: Vec<Val> = unclaimed.into_iter().filter_map(Answered::into_value).collect();
            self.orphans = crate::values::resources_in(&values);
        }
        Ok(interest)
    }
}

impl Invocation for ConcurrentCall {
    fn disposable(&mut self) {
        self.disposable = true;
    }

    fn incarnation(&mut self, incarnation: Incarnation) {
        self.incarnation = incarnation;
    }

    fn concurrent(&self) -> bool {
        true
    }

    fn orphans(&mut self) -> Vec<ResourceAny> {
        std::mem::take(&mut self.orphans)
    }

    /// A per-call or pooled instance's call: the instance serves this call alone, in an
    /// event loop of its own for the call.
    async fn invoke(&mut self, store: &mut Store<SandboxState>, func: Func) -> wasmtime::Result<()> {
        let this = self;
        store
            .run_concurrent(async |accessor| -> wasmtime::Result<()> {
                let interest = this.start(accessor, func).await?;
                // The provider may still be writing its streams, or doing other work it
                // started: the call lasts until it has none left. A per-call instance
                // also ends once the consumer holds none of what it returned: one that
                // stalls, or ignores a reader gone, does not keep its slot for nobody.
                let finished = std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx));
                if !this.disposable || interest.is_empty() {
                    finished.await;
                } else {
                    let abandoned = futures_util::future::join_all(interest);
                    tokio::select! {
                        () = finished => {}
                        _ = abandoned => {}
                    }
                }
                Ok(())
            })
            .await??;
        // Resources made for a consumer that has gone have nobody to hold them.
        for resource in std::mem::take(&mut this.orphans) {
            resource.resource_drop_async(&mut *store).await?;
        }
        Ok(())
    }

    /// A call among others in a long-lived instance's event loop: it lasts until the
    /// consumer holds none of what it returned. Stopped before (its deadline passed),
    /// its streams are cut, in both directions: the instance lives on, and so could a
    /// writer in it that stalls.
    async fn invoke_concurrent(&mut self, accessor: &Accessor<SandboxState>, func: Func) -> wasmtime::Result<()> {
        let cut = self.cut.clone().drop_guard();
        let interest = self.start(accessor, func).await?;
        futures_util::future::join_all(interest).await;
        cut.disarm();
        Ok(())
    }
}

/// A concurrent call's arguments: the call as its first attempt makes it, whose plain
/// arguments are copied for another attempt while it holds no stream or future.
struct ConcurrentArgs {
    call: ConcurrentCall,
    carries: bool,
}

impl ConcurrentCall {
    /// A call with no arguments yet, answering where this one does.
    fn sibling(&self) -> ConcurrentCall {
        ConcurrentCall {
            params: Vec::new(),
            landings: Vec::new(),
            results: self.results.clone(),
            budget: self.budget.clone(),
            answer: self.answer.clone(),
            disposable: false,
            incarnation: 0,
            cut: self.cut.clone(),
            orphans: Vec::new(),
        }
    }
}

impl Arguments for ConcurrentArgs {
    type Call = ConcurrentCall;

    fn attempt(&mut self, again: bool) -> ConcurrentCall {
        let params =
            if again && !self.carries { self.call.params.clone() } else { std::mem::take(&mut self.call.params) };
        ConcurrentCall { params, landings: std::mem::take(&mut self.call.landings), ..self.call.sibling() }
    }

    fn replayable(&self) -> bool {
        !self.carries && !self.call.answer.is_sent()
    }
}

impl<A: Components> Link<A> {
    /// Serves the consumer's concurrent call of `func`: see the module's documentation.
    async fn forward_concurrent(
        self: &Arc<Self>,
        accessor: &Accessor<SandboxState>,
        func: usize,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let Some(app) = self.begin() else {
            return Err(self.failed(self.error(func, LinkCause::ShuttingDown)));
        };
        let super::typed::Crossing::Concurrent { carrying } = &self.funcs[func].crossing else {
            wasmtime::bail!("{} is not a concurrent function of the link", self.funcs[func].name);
        };
        let (tx, answered) = oneshot::channel();
        let cut = Cut::new();
        let resources = self.funcs[func].resources;
        let (chain, trace, incarnation, mut args) = accessor.with(|mut store| -> wasmtime::Result<_> {
            let state = store.get();
            let (chain, trace) = (state.chain.clone(), state.trace().cloned());
            // Proxy handles become the provider's own resources (streams pass untouched).
            let (mapped, incarnation) = if resources {
                self.params_to_provider(&mut store.as_context_mut(), params)
                    .map_err(|cause| self.failed(self.error(func, cause)))?
            } else {
                (params.to_vec(), None)
            };
            let mut plain = Vec::with_capacity(params.len());
            let mut landings = Vec::new();
            for (at, (param, carried)) in mapped.into_iter().zip(&carrying.params).enumerate() {
                match carried {
                    Some(carried) => {
                        // The provider's interest in an argument is its own business: it
                        // ends its call when it is done.
                        let (landing, _) =
                            take_off(*carried, &param, store.as_context_mut(), &self.budget, Toward::Provider, &cut)?;
                        landings.push((at, landing));
                        // Made in the provider's store when the call starts.
                        plain.push(Val::Bool(false));
                    }
                    None => plain.push(param),
                }
            }
            let call = ConcurrentCall {
                params: plain,
                landings,
                results: carrying.results.clone().into(),
                budget: self.budget.clone(),
                answer: Answer {
                    tx: Arc::new(Mutex::new(Some(tx))),
                    provider: resources.then(|| app.instances(self.provider).clone()),
                },
                disposable: false,
                incarnation: 0,
                cut,
                orphans: Vec::new(),
            };
            let args = ConcurrentArgs { carries: !call.landings.is_empty(), call };
            Ok((chain, trace, incarnation, args))
        })?;
        // In a task of its own: the provider's store runs its own event loop, which wasmtime
        // does not allow inside the consumer's (a nested `run_concurrent` panics), and the
        // call goes on after it answered, while the provider writes its streams.
        let link = self.clone();
        let provider = resources.then(|| app.instances(self.provider).clone());
        let call = tokio::spawn(async move {
            link.supervise(&app, &chain, trace.as_ref(), func, incarnation, &mut args).await.map(drop)
        });
        let (made_by, answered) = match answered.await {
            Ok(unclaimed) => unclaimed.claim(),
            // Every attempt failed before answering: the call's error says why.
            Err(_) => {
                return match call.await {
                    Ok(Err(error)) => Err(self.failed(error)),
                    Ok(Ok(())) => Err(wasmtime::format_err!("the provider returned without results")),
                    Err(join) => Err(wasmtime::format_err!("the call through the link stopped: {join}")),
                };
            }
        };
        accessor.with(|mut store| {
            let mut answered = answered.into_iter();
            for at in 0..results.len() {
                let Some(next) = answered.next() else { break };
                results[at] = match next {
                    Answered::Value(value) => value,
                    Answered::Landing(landing) => match landing.land(store.as_context_mut()) {
                        Ok(value) => value,
                        Err(error) => {
                            // The consumer fails; the provider's resources among the
                            // results are dropped where they were made.
                            let given: Vec<Answered> =
                                results.iter().cloned().map(Answered::Value).chain(answered).collect();
                            drop(Unclaimed { results: Some((made_by, given)), provider });
                            return Err(error);
                        }
                    },
                };
            }
            // Resources the provider returned reach the consumer as proxy handles.
            if resources {
                self.results_to_consumer(&mut store.as_context_mut(), results, made_by)
                    .map_err(|cause| self.failed(self.error(func, cause)))?;
            }
            Ok(())
        })
    }
}
