//! One WASI 0.3 handler instance serving several requests at once (`membrane serve
//! --instance-concurrency N`): a trade-off a user asks for, never the default, since the
//! requests share the instance's memory and state, and a trap fails every request in it.
//!
//! The instance's event loop runs in a task of its own that takes requests beside those
//! in flight. Each request keeps its own limits: its wall-clock deadline (response and
//! body), and a CPU and fuel budget that the requests in flight share. A response body
//! ends cleanly only once the instance has answered a check sent after the body ended
//! through its event loop: a trap stops that loop, so a body cut short by a trap always
//! fails and never looks whole to the client.

use crate::fault::{Fault, FaultKind};
use crate::http_p3::{Answer, HandlerCall};
use crate::limits::{Deadlines, Stuck, watched};
use crate::pool::Pool;
use crate::sandbox::SandboxState;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};
use wasmtime::component::Accessor;
use wasmtime::{AsContextMut, Store};
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};
use wasmtime_wasi_http::{Error as HttpError, WasiBody, WasiHttpView};

/// What the instance's event loop is handed.
enum Work {
    Serve(Box<Job>),
    /// Answered by a loop still running: the instance has not failed.
    Check(oneshot::Sender<()>),
}

/// One request, and where its outcome goes.
struct Job {
    request: http::Request<WasiBody>,
    call: HandlerCall,
    /// When the request was handed over: its deadline runs from then.
    handed: Instant,
    /// `Ok` once the guest answered; the fault when it failed before.
    outcome: oneshot::Sender<Result<(), Fault>>,
    /// The way to the event loop, for the response body to check with.
    work: mpsc::UnboundedSender<Work>,
}

/// The task that ends with the guest's answer to one request, or its fault.
pub type Served = tokio::task::JoinHandle<Result<(), Fault>>;

/// A request the instance has no room for, given back.
pub type Refused = (http::Request<WasiBody>, HandlerCall);

/// A handler instance that serves up to `concurrency` requests at once and `total` in all.
pub struct SharedHandler {
    work: mpsc::UnboundedSender<Work>,
    in_flight: Arc<AtomicUsize>,
    /// Whether the event loop last stopped to wait (for I/O, a client, a timer) rather
    /// than being kept busy by the guest.
    waiting: Arc<AtomicBool>,
    taken: AtomicUsize,
    concurrency: usize,
    total: usize,
    generation: u64,
    ended: watch::Receiver<Option<Fault>>,
    instances: Arc<Pool>,
}

impl SharedHandler {
    /// Makes the instance of `pre` in `store` and starts its event loop, for requests of
    /// the app version `generation`.
    pub fn start(
        instances: Arc<Pool>,
        store: Store<SandboxState>,
        pre: ServicePre<SandboxState>,
        concurrency: usize,
        total: usize,
        generation: u64,
    ) -> Arc<SharedHandler> {
        let (work, inbox) = mpsc::unbounded_channel();
        let (obituary, ended) = watch::channel(None);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::new(AtomicBool::new(false));
        tokio::spawn(drive(instances.clone(), store, pre, inbox, in_flight.clone(), waiting.clone(), obituary));
        Arc::new(SharedHandler {
            work,
            in_flight,
            waiting,
            taken: AtomicUsize::new(0),
            concurrency,
            total,
            generation,
            ended,
            instances,
        })
    }

    /// The app version whose requests it serves.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether it will never take another request: it failed, or took all it may.
    pub fn is_spent(&self) -> bool {
        self.ended.borrow().is_some() || self.work.is_closed() || self.taken.load(Relaxed) >= self.total
    }

    /// Serves `request` if the instance has room for it, in a task that ends with the
    /// guest's answer (or its fault); gives both back otherwise.
    #[allow(clippy::result_large_err)]
    pub fn serve(self: &Arc<Self>, request: http::Request<WasiBody>, mut call: HandlerCall) -> Result<Served, Refused> {
        if self.is_spent() || self.in_flight.load(Relaxed) >= self.concurrency {
            return Err((request, call));
        }
        // A request joins others only while the instance waits, as wasmtime's own
        // `ProxyHandler` does: requests that keep a guest busy go to other instances (and
        // cores) rather than queue behind each other on one event loop.
        if !self.waiting.swap(false, Relaxed) && self.in_flight.load(Relaxed) > 0 {
            return Err((request, call));
        }
        self.in_flight.fetch_add(1, Relaxed);
        self.taken.fetch_add(1, Relaxed);
        // Told here of the request's fault, whether its own or the instance's.
        let on_fault = std::mem::replace(&mut call.on_fault, Box::new(|_| {}));
        let (outcome, answered) = oneshot::channel();
        let job = Job { request, call, handed: Instant::now(), outcome, work: self.work.clone() };
        if let Err(mpsc::error::SendError(Work::Serve(mut job))) = self.work.send(Work::Serve(Box::new(job))) {
            self.in_flight.fetch_sub(1, Relaxed);
            job.call.on_fault = on_fault;
            return Err((job.request, job.call));
        }
        let (mut ended, instances) = (self.ended.clone(), self.instances.clone());
        Ok(tokio::spawn(async move {
            let outcome = match answered.await {
                Ok(outcome) => outcome,
                // The instance failed before the guest answered.
                Err(_) => {
                    let fault = ended.wait_for(Option::is_some).await.ok().and_then(|fault| fault.clone());
                    Err(fault.unwrap_or_else(|| {
                        instances.fault(FaultKind::Host("the shared instance stopped before it answered".into()))
                    }))
                }
            };
            if let Err(fault) = &outcome {
                on_fault(fault);
            }
            outcome
        }))
    }
}

/// The instance's event loop: makes the instance, then serves what it is handed until
/// nothing can hand it more and it has nothing left to do. Through the one way into a
/// guest ([`Pool::enter`]): a trap is classified, audited and counted once, for the
/// instance, and every request still in it fails.
async fn drive(
    instances: Arc<Pool>,
    mut store: Store<SandboxState>,
    pre: ServicePre<SandboxState>,
    mut inbox: mpsc::UnboundedReceiver<Work>,
    in_flight: Arc<AtomicUsize>,
    waiting: Arc<AtomicBool>,
    obituary: watch::Sender<Option<Fault>>,
) {
    let deadlines = Arc::new(Deadlines::default());
    let served = instances
        .enter(&mut store, None, async |store| {
            let instantiation = instances.instantiation_span(store, crate::Came::Shared);
            let service = pre.instantiate_async(&mut *store).await?;
            instances.count_instantiation();
            drop(instantiation);
            let event_loop = store.run_concurrent(async |accessor| {
                let mut running = FuturesUnordered::new();
                let mut first = true;
                let mut open = true;
                loop {
                    tokio::select! {
                        work = inbox.recv(), if open => match work {
                            Some(Work::Serve(job)) => {
                                if !std::mem::take(&mut first) {
                                    accessor.with(|mut store| instances.grant_joining(store.as_context_mut()));
                                }
                                running.push(job.run(accessor, &service, &instances, &deadlines));
                            }
                            Some(Work::Check(alive)) => drop(alive.send(())),
                            None => open = false,
                        },
                        Some(()) = running.next() => {
                            in_flight.fetch_sub(1, Relaxed);
                        }
                        () = std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)),
                            if !open && running.is_empty() => break,
                    }
                }
            });
            let mut event_loop = std::pin::pin!(event_loop);
            let noted = std::future::poll_fn(|cx| {
                let polled = event_loop.as_mut().poll(cx);
                waiting.store(polled.is_pending(), Relaxed);
                polled
            });
            match watched(&deadlines, noted).await {
                Ok(looped) => looped.map(Ok),
                Err(stuck) => Ok(Err(stuck)),
            }
        })
        .await;
    // Told before the store, and the bodies it feeds, go.
    let fault = match served {
        Ok(Ok(())) => return,
        Ok(Err(Stuck(limit))) => {
            // A request ran over its time and the loop could not stop it (its guest
            // computes without waiting): the instance goes, with every request in it.
            let fault = instances.fault(FaultKind::Timeout(limit));
            instances.audit_trap(&fault.kind);
            fault
        }
        Err(fault) => fault,
    };
    obituary.send_replace(Some(fault));
}

impl Job {
    /// Hands the request to the guest and its answer to the client, within its deadline.
    async fn run(
        self: Box<Self>,
        accessor: &Accessor<SandboxState>,
        service: &Service,
        instances: &Pool,
        deadlines: &Arc<Deadlines>,
    ) {
        let Job { request, call, handed, outcome, work } = *self;
        let HandlerCall { timeout, exceeded, respond, held, .. } = call;
        let deadline = timeout.map(|limit| handed + limit);
        // Watched from outside the loop too, until the guest answers.
        let due = deadline.zip(timeout).map(|(deadline, limit)| deadlines.start(deadline, limit));
        // Boxed: the future's type would otherwise borrow the store it was made with.
        let (request, request_io) = accessor.with(|mut store| {
            let (request, io) = wasmtime_wasi_http::p3::Request::from_http(store.get().http().hooks, request);
            let io: Pin<Box<dyn Future<Output = Result<(), HttpError>> + Send>> = Box::pin(io);
            (request, io)
        });
        let handling = service.handle(accessor, request);
        let handled = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                crate::limits::within(left, handling).await.map_err(|_| timeout.unwrap_or_default())
            }
            None => Ok(handling.await),
        };
        let answered = match handled {
            Ok(Ok(Ok(response))) => accessor.with(|mut store| response.into_http(&mut store, request_io)).map(Ok),
            Ok(Ok(Err(code))) => Ok(Err(code)),
            Ok(Err(error)) => Err(error),
            Err(limit) => {
                drop(due);
                let fault = instances.fault(FaultKind::Timeout(limit));
                instances.audit_trap(&fault.kind);
                let _ = outcome.send(Err(fault));
                return;
            }
        };
        drop(due);
        match answered {
            Ok(answer) => {
                let answer: Answer = answer.map(|response| {
                    response.map(|body| Checked::new(body, deadline, exceeded, work, held).boxed_unsync())
                });
                respond(answer);
                let _ = outcome.send(Ok(()));
            }
            Err(error) => {
                let hit = accessor.with(|mut store| store.get().limiter.hit());
                let fault = Fault::classify(instances.name(), &error, hit);
                instances.audit_trap(&fault.kind);
                let _ = outcome.send(Err(fault));
            }
        }
    }
}

/// A response body from a shared instance: it fails when the request runs over its
/// deadline mid-body, and once the guest has written it, ends only when the instance is
/// known not to have failed (see the module's documentation).
struct Checked {
    inner: WasiBody,
    inner_done: bool,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    exceeded: Option<Arc<AtomicBool>>,
    /// The instance's event loop, to check with.
    work: Option<mpsc::UnboundedSender<Work>>,
    check: Option<oneshot::Receiver<()>>,
    /// The request's permits and app version, held until the body is done.
    _held: Box<dyn std::any::Any + Send>,
}

impl Checked {
    fn new(
        inner: WasiBody,
        deadline: Option<Instant>,
        exceeded: Option<Arc<AtomicBool>>,
        work: mpsc::UnboundedSender<Work>,
        held: Box<dyn std::any::Any + Send>,
    ) -> Checked {
        let deadline = deadline.map(|at| Box::pin(tokio::time::sleep_until(at.into())));
        Checked { inner, inner_done: false, deadline, exceeded, work: Some(work), check: None, _held: held }
    }
}

impl Body for Checked {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.deadline.as_mut().is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready()) {
            self.deadline = None;
            self.inner_done = true;
            self.work = None;
            return Poll::Ready(Some(Err(stopped("the handler ran over its time mid-body"))));
        }
        if !self.inner_done {
            match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(frame) => return Poll::Ready(Some(frame)),
                None => self.inner_done = true,
            }
        }
        if self.exceeded.as_ref().is_some_and(|e| e.load(Relaxed)) {
            self.work = None;
            return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(None))));
        }
        if self.check.is_none() {
            let Some(work) = self.work.take() else { return Poll::Ready(None) };
            let (alive, check) = oneshot::channel();
            if work.send(Work::Check(alive)).is_err() {
                return Poll::Ready(Some(Err(stopped("the handler stopped mid-body"))));
            }
            self.check = Some(check);
        }
        let check = self.check.as_mut().expect("made above");
        let alive = std::task::ready!(Pin::new(check).poll(cx));
        self.check = None;
        match alive {
            Ok(()) => Poll::Ready(None),
            Err(_) => Poll::Ready(Some(Err(stopped("the handler stopped mid-body")))),
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn stopped(why: &str) -> HttpError {
    HttpError::InternalError(Some(why.into()))
}
