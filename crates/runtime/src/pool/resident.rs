//! A long-lived instance (the singleton, or one of a pool's) that serves several calls at
//! once. An async function of a WASI 0.3 component returns before its work is done (the
//! streams it returned are written afterwards), so an instance that took one call at a
//! time would keep every other caller waiting on whoever holds such a stream, or stalls
//! while writing one, until the link's timeout discarded the instance. Instead, once such
//! an instance takes an async call, its event loop runs in a task of its own, the
//! *resident*, which takes every further call (sync or async) beside those in flight until
//! none is left; then the instance goes back to the singleton's slot or the pool's idle.
//!
//! Each call keeps its limits. At most a sixteenth of `host_resources` calls run at once
//! (each takes a dozen or so entries of the instance's table of tasks and streams); the
//! others wait their turn within their deadlines. Each call brings a CPU and fuel budget
//! that the calls in flight share, and its own deadline, which stops that call alone (its
//! streams are cut both ways): the instance and its other calls go on. A trap ends the
//! instance with every call in it, as a singleton's trap always has; a singleton restarts
//! as its policy says, a pool makes another instance when next needed.

use super::{CallError, Incarnation, Kept, Pool, Sandbox, Slot};
use crate::fault::{Fault, FaultKind};
use crate::invocation::Invocation;
use crate::limits::{Deadlines, Stuck, watched};
use crate::sandbox::{CallChain, SandboxState};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use membrane_telemetry::Context as TraceContext;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};
use tokio::sync::{MutexGuard, OwnedSemaphorePermit, mpsc, oneshot, watch};
use wasmtime::AsContextMut;
use wasmtime::component::{Accessor, ComponentExportIndex, Instance, ResourceAny};

/// A call's work in the resident's event loop, whose deadlines are watched from outside
/// it too.
type Run = Box<
    dyn for<'a> FnOnce(&'a Accessor<SandboxState>, &'a Arc<Deadlines>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>
        + Send,
>;

/// What a resident is handed.
enum Job {
    /// A call, made in the span `trace`.
    Call { run: Run, trace: Option<TraceContext> },
    /// A resource of the instance that nobody holds any more.
    Drop(ResourceAny),
}

/// The way into a running resident, kept in the singleton's slot (or the pool's list of
/// residents) while it runs: calls go in under that lock, and the resident closes it under
/// the same lock, so that no call is handed to a resident that has stopped taking them.
pub(super) struct Door {
    jobs: mpsc::UnboundedSender<Job>,
    /// The singleton's incarnation, or a pooled resident's number.
    incarnation: Incarnation,
    instance: Instance,
    /// Calls handed to it and not yet finished.
    load: Arc<AtomicUsize>,
    /// The fault that ended the resident, for the calls it had taken.
    ended: watch::Receiver<Option<Fault>>,
}

impl Door {
    fn hand(&self, job: Job) {
        self.load.fetch_add(1, Relaxed);
        let _ = self.jobs.send(job);
    }

    fn load(&self) -> usize {
        self.load.load(Relaxed)
    }
}

/// Where a resident's instance lives between its calls.
enum Home {
    /// The singleton's slot.
    Singleton,
    /// The pool's idle instances; the permit counts the instance among the pool's N while
    /// it runs.
    Pooled(OwnedSemaphorePermit),
}

/// How long a resident with nothing to do waits for another call before it closes.
const LINGER: Duration = Duration::from_millis(2);

/// Numbers pooled residents (a singleton's is its incarnation).
static NEXT_POOLED: AtomicU64 = AtomicU64::new(1);

/// Why the resident's event loop returned.
enum Served<'a> {
    /// No call in flight, no task left, no call waiting: the door is closed (a singleton's
    /// slot locked for the instance to go back, unless it was reset meanwhile: `false`,
    /// and the instance goes).
    Idle(Option<MutexGuard<'a, Slot>>, bool),
    /// No call in flight, resources to drop (which needs the store outside the loop).
    Drops,
}

impl Pool {
    /// A call into the singleton through its resident: handed to the one running, or to
    /// one started for it. `slot` is the singleton's, locked.
    pub(super) async fn call_resident<I: Invocation>(
        self: &Arc<Self>,
        mut slot: MutexGuard<'_, Slot>,
        mut kept: Kept<'_, I>,
    ) -> Result<(Incarnation, I), CallError> {
        let resources_from = kept.resources_from;
        let stale = |incarnation| resources_from.is_some_and(|from| from != incarnation);
        let (reply, replied) = oneshot::channel();
        let (incarnation, ended) = match &slot.resident {
            Some(door) => {
                if stale(door.incarnation) {
                    return Err(CallError::StaleResource { component: self.name.to_string() });
                }
                kept.call.incarnation(door.incarnation);
                door.hand(self.job(door.instance, kept, reply));
                (door.incarnation, door.ended.clone())
            }
            None => {
                let sandbox = match slot.sandbox.take() {
                    Some(sandbox) => sandbox,
                    None => self.start_singleton(&mut slot, kept.trace).await?,
                };
                if stale(sandbox.incarnation) {
                    slot.sandbox = Some(sandbox);
                    return Err(CallError::StaleResource { component: self.name.to_string() });
                }
                kept.call.incarnation(sandbox.incarnation);
                let job = self.job(sandbox.instance, kept, reply);
                let incarnation = sandbox.incarnation;
                let door = self.open(sandbox, incarnation, Home::Singleton, job);
                let ended = door.ended.clone();
                slot.resident = Some(door);
                (incarnation, ended)
            }
        };
        drop(slot);
        Ok((incarnation, self.outcome(replied, ended).await?))
    }

    /// An async call into a pooled instance: handed to the least busy of the pool's
    /// residents with room, else to a resident started for it on an instance of the pool
    /// (idle or new) while the pool has fewer than its N running; with all N running, to
    /// the least busy, where it waits its turn.
    pub(super) async fn call_pooled_resident<I: Invocation>(
        self: &Arc<Self>,
        kept: Kept<'_, I>,
    ) -> Result<(Incarnation, I), CallError> {
        let room = self.calls_in_flight();
        let trace = kept.trace;
        let (reply, replied) = oneshot::channel();
        // Moved into whichever resident takes the call.
        let mut call = Some((kept, reply));
        let handed = {
            let doors = self.residents.lock().unwrap_or_else(|p| p.into_inner());
            let least = doors.iter().min_by_key(|door| door.load());
            least.filter(|door| door.load() < room || self.permits.available_permits() == 0).map(|door| {
                let (kept, reply) = call.take().expect("taken once");
                door.hand(self.job(door.instance, kept, reply));
                door.ended.clone()
            })
        };
        if let Some(ended) = handed {
            return Ok((0, self.outcome(replied, ended).await?));
        }
        let (kept, reply) = call.take().expect("taken once");
        let permit = self.permits.clone().acquire_owned().await.expect("the pool's semaphore is never closed");
        let sandbox = self.pooled_instance(trace).await?;
        let job = self.job(sandbox.instance, kept, reply);
        let number = NEXT_POOLED.fetch_add(1, Relaxed);
        let door = self.open(sandbox, number, Home::Pooled(permit), job);
        let ended = door.ended.clone();
        self.residents.lock().unwrap_or_else(|p| p.into_inner()).push(door);
        Ok((0, self.outcome(replied, ended).await?))
    }

    /// Starts a resident on `sandbox` with its first call: the door to it.
    fn open(self: &Arc<Self>, sandbox: Sandbox, number: u64, home: Home, first: Job) -> Door {
        let (jobs, inbox) = mpsc::unbounded_channel();
        let (obituary, ended) = watch::channel(None);
        let door = Door { jobs, incarnation: number, instance: sandbox.instance, load: Arc::default(), ended };
        door.hand(first);
        tokio::spawn(self.clone().reside(sandbox, number, home, door.load.clone(), inbox, obituary));
        door
    }

    /// What became of a call handed to a resident.
    async fn outcome<I>(
        &self,
        replied: oneshot::Receiver<Result<I, Fault>>,
        mut ended: watch::Receiver<Option<Fault>>,
    ) -> Result<I, CallError> {
        match replied.await {
            Ok(Ok(call)) => Ok(call),
            Ok(Err(fault)) => Err(CallError::Fault(fault)),
            // The instance ended (it trapped) before the call did.
            Err(_) => {
                let fault = ended.wait_for(Option::is_some).await.ok().and_then(|fault| fault.clone());
                Err(CallError::Fault(fault.unwrap_or_else(|| {
                    self.fault(FaultKind::Host("the instance stopped before it finished the call".into()))
                })))
            }
        }
    }

    /// Drops `resource` in the resident running instance `incarnation`; gives it back if
    /// there is none.
    pub(super) fn drop_in_resident(
        slot: &Slot,
        incarnation: Incarnation,
        resource: ResourceAny,
    ) -> Option<ResourceAny> {
        match &slot.resident {
            Some(door) if door.incarnation == incarnation => {
                let _ = door.jobs.send(Job::Drop(resource));
                None
            }
            _ => Some(resource),
        }
    }

    /// The call as the resident runs it: within its deadline, its result sent to `reply`.
    fn job<I: Invocation>(
        self: &Arc<Self>,
        instance: Instance,
        kept: Kept<'_, I>,
        reply: oneshot::Sender<Result<I, Fault>>,
    ) -> Job {
        let Kept { chain, trace, func, limit, mut call, abandoned, .. } = kept;
        let pool = self.clone();
        let span = trace.cloned();
        // The deadline runs from now: time spent waiting for room counts.
        let handed = Instant::now();
        let chain: CallChain = chain.iter().cloned().chain([self.name.clone()]).collect();
        let run: Run = Box::new(move |accessor, deadlines| {
            Box::pin(async move {
                let _due = limit.map(|limit| deadlines.start(handed + limit, limit));
                let limit = limit.map(|limit| limit.saturating_sub(handed.elapsed()));
                let result = pool.run_job(accessor, instance, &chain, span.as_ref(), func, limit, &mut call).await;
                let result = result.map(|()| {
                    // A caller gone leaves the resources it was to hold to the instance.
                    if abandoned.is_some_and(|a| a.load(Relaxed)) {
                        for resource in call.resources() {
                            pool.drop_resource_later(&resource);
                        }
                    }
                    for resource in call.orphans() {
                        pool.drop_resource_later(&resource);
                    }
                    call
                });
                let _ = reply.send(result);
            })
        });
        Job::Call { run, trace: trace.cloned() }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_job<I: Invocation>(
        &self,
        accessor: &Accessor<SandboxState>,
        instance: Instance,
        chain: &CallChain,
        trace: Option<&TraceContext>,
        func: ComponentExportIndex,
        limit: Option<Duration>,
        call: &mut I,
    ) -> Result<(), Fault> {
        let f = accessor.with(|mut store| {
            // What the instance calls in turn is refused if it leads back here.
            store.get().chain = chain.clone();
            instance.get_func(&mut store, func)
        });
        let Some(f) = f else {
            return Err(self.fault(FaultKind::Host("export index does not name a function".into())));
        };
        let running = call.invoke_concurrent(accessor, f);
        let outcome = match limit {
            Some(limit) => crate::limits::within(limit, running).await.map_err(|_| limit),
            None => Ok(running.await),
        };
        let fault = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => {
                let hit = accessor.with(|mut store| store.get().limiter.hit());
                Fault::classify(&self.name, &error, hit)
            }
            // Stopped alone: the instance goes on with its other calls.
            Err(limit) => self.fault(FaultKind::Timeout(limit)),
        };
        self.audit_trap_in(&fault.kind, trace);
        Err(fault)
    }

    /// Hands `resource` to the resident to drop, if one is running; a resource of an
    /// instance that has gone went with it.
    fn drop_resource_later(self: &Arc<Self>, resource: &ResourceAny) {
        if let Ok(slot) = self.slot.try_lock() {
            if let Some(door) = &slot.resident {
                let _ = door.jobs.send(Job::Drop(*resource));
            }
            return;
        }
        let (pool, resource) = (self.clone(), *resource);
        tokio::spawn(async move {
            let slot = pool.slot.lock().await;
            if let Some(door) = &slot.resident {
                let _ = door.jobs.send(Job::Drop(resource));
            }
        });
    }

    /// The resident: runs the instance's event loop with the calls it is handed until
    /// it has none left, then puts the instance back at `home`; or ends it, and the
    /// calls in flight, on a trap.
    async fn reside(
        self: Arc<Self>,
        mut sandbox: Sandbox,
        number: u64,
        home: Home,
        load: Arc<AtomicUsize>,
        mut inbox: mpsc::UnboundedReceiver<Job>,
        obituary: watch::Sender<Option<Fault>>,
    ) {
        let cpu = sandbox.store.data().cpu.clone();
        cpu.reset();
        if let Some(fuel) = sandbox.store.data().fuel {
            let _ = sandbox.store.set_fuel(fuel);
        }
        let mut drops = Vec::new();
        let mut first = true;
        let deadlines = Arc::new(Deadlines::default());
        loop {
            let event_loop = cpu.meter(sandbox.store.run_concurrent(async |accessor| {
                self.serve(accessor, number, &home, &load, &deadlines, &mut inbox, &mut drops, &mut first).await
            }));
            let served = match watched(&deadlines, event_loop).await {
                Ok(served) => served,
                // A call ran over its time and the loop could not stop it (its guest
                // computes without waiting): the instance goes, with every call in it.
                Err(Stuck(limit)) => {
                    return self.end_resident(number, &home, self.fault(FaultKind::Timeout(limit)), &obituary).await;
                }
            };
            match served {
                Ok(Served::Idle(slot, ours)) => {
                    match (slot, home) {
                        (Some(mut slot), Home::Singleton) if ours => slot.sandbox = Some(sandbox),
                        (_, Home::Pooled(permit)) => {
                            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(sandbox);
                            drop(permit);
                        }
                        _ => {}
                    }
                    return;
                }
                Ok(Served::Drops) => {
                    for resource in drops.drain(..) {
                        // A destructor that traps ends the instance like any trap.
                        if let Err(error) = resource.resource_drop_async(&mut sandbox.store).await {
                            let fault = Fault::classify(&self.name, &error, sandbox.store.data().limiter.hit());
                            return self.end_resident(number, &home, fault, &obituary).await;
                        }
                    }
                }
                Err(error) => {
                    let fault = Fault::classify(&self.name, &error, sandbox.store.data().limiter.hit());
                    return self.end_resident(number, &home, fault, &obituary).await;
                }
            }
        }
    }

    /// The event loop's work: takes calls and runs them beside each other.
    #[allow(clippy::too_many_arguments)]
    async fn serve<'s>(
        &'s self,
        accessor: &Accessor<SandboxState>,
        number: u64,
        home: &Home,
        load: &AtomicUsize,
        deadlines: &Arc<Deadlines>,
        inbox: &mut mpsc::UnboundedReceiver<Job>,
        drops: &mut Vec<ResourceAny>,
        first: &mut bool,
    ) -> Served<'s> {
        let mut running = FuturesUnordered::new();
        let room = self.calls_in_flight();
        loop {
            let job = tokio::select! {
                Some(job) = inbox.recv(), if running.len() < room => Some(job),
                Some(()) = running.next() => {
                    load.fetch_sub(1, Relaxed);
                    None
                }
                () = std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)), if running.is_empty() => {
                    if !drops.is_empty() {
                        return Served::Drops;
                    }
                    // A caller that makes one call after another (most do) finds the loop
                    // still running, rather than a new one started for each call.
                    match tokio::time::timeout(LINGER, inbox.recv()).await {
                        Ok(Some(job)) => Some(job),
                        _ => match self.close(number, home, inbox).await {
                            Ok(served) => return served,
                            Err(job) => Some(job),
                        },
                    }
                }
            };
            match job {
                Some(Job::Call { run, trace }) => {
                    self.admit(accessor, trace, running.is_empty(), std::mem::take(first));
                    running.push(run(accessor, deadlines));
                }
                Some(Job::Drop(resource)) => drops.push(resource),
                None => {}
            }
            if running.is_empty() && !drops.is_empty() {
                return Served::Drops;
            }
        }
    }

    /// Closes the door of the resident `number` unless a call came in meanwhile (given
    /// back): under the lock its callers hand calls in under.
    async fn close(
        &self,
        number: u64,
        home: &Home,
        inbox: &mut mpsc::UnboundedReceiver<Job>,
    ) -> Result<Served<'_>, Job> {
        match home {
            Home::Singleton => {
                let mut slot = self.slot.lock().await;
                if let Ok(job) = inbox.try_recv() {
                    return Err(job);
                }
                let ours = slot.resident.as_ref().is_some_and(|door| door.incarnation == number);
                if ours {
                    slot.resident = None;
                }
                Ok(Served::Idle(Some(slot), ours))
            }
            Home::Pooled(_) => {
                let mut doors = self.residents.lock().unwrap_or_else(|p| p.into_inner());
                if let Ok(job) = inbox.try_recv() {
                    return Err(job);
                }
                doors.retain(|door| door.incarnation != number);
                Ok(Served::Idle(None, true))
            }
        }
    }

    /// The most calls the resident runs at once; the others wait their turn (within their
    /// deadlines). Each call takes up to a dozen or so entries of the instance's table of tasks, streams
    /// and futures, capped at `host_resources`: callers that crowd in wait rather than
    /// fill it and make the instance fail every call it serves.
    fn calls_in_flight(&self) -> usize {
        (self.limits.host_resources as usize / 16).max(1)
    }

    /// Gives a call that joins others in flight in one instance's event loop (a resident,
    /// a shared handler) its own CPU and fuel budget on top of theirs: what [`Pool::enter`]
    /// gives each call afresh, where calls take turns.
    pub(crate) fn grant_joining(&self, mut store: wasmtime::StoreContextMut<'_, SandboxState>) {
        if let Some(cpu) = self.limits.cpu {
            store.data().cpu.grant(cpu.std());
        }
        if let Some(fuel) = store.data().fuel {
            let left = store.get_fuel().unwrap_or(0);
            let _ = store.set_fuel(left.saturating_add(fuel));
        }
    }

    /// Starts a call in the event loop: each call after the first brings its CPU and fuel
    /// budget to the ones in flight; the instance's own calls join the caller's trace
    /// while it serves that call alone (with several, none can say whose they are).
    fn admit(&self, accessor: &Accessor<SandboxState>, trace: Option<TraceContext>, alone: bool, first: bool) {
        accessor.with(|mut store| {
            if !first {
                self.grant_joining(store.as_context_mut());
            }
            store.get().join_trace(if alone { trace } else { None });
        });
    }

    /// Ends a resident whose instance failed: the calls it had taken get the fault, the
    /// slot is emptied for the next call to restart the singleton.
    async fn end_resident(&self, number: u64, home: &Home, fault: Fault, obituary: &watch::Sender<Option<Fault>>) {
        self.audit_trap_in(&fault.kind, None);
        match home {
            Home::Singleton => {
                let mut slot = self.slot.lock().await;
                if slot.resident.as_ref().is_some_and(|door| door.incarnation == number) {
                    slot.resident = None;
                }
            }
            Home::Pooled(_) => {
                self.residents.lock().unwrap_or_else(|p| p.into_inner()).retain(|door| door.incarnation != number);
            }
        }
        obituary.send_replace(Some(fault));
    }
}
