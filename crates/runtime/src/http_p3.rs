//! Serving one request to a WASI 0.3 handler (`wasi:http/handler@0.3.0`) in a fresh
//! instance: the request goes in as a resource whose body is a stream the guest reads as it
//! arrives, and the response comes back with a body the guest may go on writing after
//! `handle` returns. Both stream chunk by chunk; neither is held whole. Ingress (crates/http)
//! and a middleware's link to the next handler both serve requests this way.

use crate::fault::Fault;
use crate::pool::Pool;
use crate::sandbox::SandboxState;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::Store;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};
use wasmtime_wasi_http::{Error as HttpError, WasiBody, WasiHttpView};

/// What the handler answered: a response whose body may still be streaming, or its error.
pub type Answer = Result<http::Response<WasiBody>, ErrorCode>;

/// One request to a WASI 0.3 handler, and what to do with its answer.
pub struct HandlerCall {
    /// The component's wall-clock limit for the whole exchange, body included.
    pub timeout: Option<Duration>,
    /// Raised when the request body was cut at its limit: the response body then fails.
    pub exceeded: Option<Arc<AtomicBool>>,
    /// Called once, with the answer, as soon as the guest returns it.
    pub respond: Box<dyn FnOnce(Answer) + Send>,
    /// Called with the fault, when the guest failed.
    pub on_fault: Box<dyn FnOnce(&Fault) + Send>,
    /// Held until the guest is done, body written (permits, the app version).
    pub held: Box<dyn std::any::Any + Send>,
    /// Given the instance, with the requests it has served, once it finished this one
    /// cleanly (instance reuse); `None` drops it.
    pub keep: Option<Keep>,
}

/// What takes back an instance that served its request cleanly: its store, the instance
/// and the requests it has served.
pub type Keep = Box<dyn FnOnce(Store<SandboxState>, Service, usize) + Send>;

/// Runs the handler `pre` of `instances`' component for `request` in a task of its own, in
/// `store`: in `instance` (one that served `uses` requests before, when reused) or a fresh
/// one, through the one way into a guest ([`Pool::enter`]: its CPU, fuel, memory and
/// wall-clock limits, fault classification and audit). The task ends when the guest has
/// nothing left to do, its body written, not when `handle` returns.
pub fn serve(
    instances: Arc<Pool>,
    mut store: Store<SandboxState>,
    pre: ServicePre<SandboxState>,
    instance: Option<(Service, usize)>,
    request: http::Request<WasiBody>,
    call: HandlerCall,
) -> tokio::task::JoinHandle<Result<(), Fault>> {
    tokio::spawn(async move {
        let HandlerCall { timeout, exceeded, respond, on_fault, held, keep } = call;
        let (finished, finished_rx) = tokio::sync::oneshot::channel();
        let served = instances
            .enter(&mut store, timeout, async |store| {
                let how = if instance.is_some() { crate::Came::Reused } else { crate::Came::Fresh };
                let instantiation = instances.instantiation_span(store, how);
                let (service, uses) = match instance {
                    Some(instance) => instance,
                    None => {
                        let service = pre.instantiate_async(&mut *store).await?;
                        instances.count_instantiation();
                        (service, 0)
                    }
                };
                drop(instantiation);
                let (request, request_io) =
                    wasmtime_wasi_http::p3::Request::from_http(store.data_mut().http().hooks, request);
                store
                    .run_concurrent(async |accessor| -> wasmtime::Result<()> {
                        match service.handle(accessor, request).await? {
                            Ok(response) => {
                                let response = accessor.with(|mut store| response.into_http(&mut store, request_io))?;
                                let body = |body| EndsWithGuest::new(body, finished_rx, exceeded).boxed_unsync();
                                respond(Ok(response.map(body)));
                            }
                            Err(code) => respond(Err(code)),
                        }
                        // The guest may still be writing the body, or doing other work it
                        // started: the instance lives until it has none left.
                        std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                        Ok(())
                    })
                    .await??;
                Ok((service, uses + 1))
            })
            .await;
        drop(held);
        match served {
            Ok((service, uses)) => {
                let _ = finished.send(());
                if let Some(keep) = keep {
                    keep(store, service, uses);
                }
                Ok(())
            }
            Err(fault) => {
                on_fault(&fault);
                Err(fault)
            }
        }
    })
}

/// A WASI 0.3 guest's response body, which the guest may go on writing after it returned
/// the response: it ends only once the guest has finished cleanly, and fails (the client
/// sees a broken response, never a short one that looks whole) when the guest trapped or
/// ran out of time mid-body, or when the request body was cut at its limit.
pub struct EndsWithGuest {
    inner: WasiBody,
    inner_done: bool,
    /// Resolves when the guest finished cleanly; closed unresolved when it failed.
    finished: tokio::sync::oneshot::Receiver<()>,
    /// Whether the guest is known to have finished cleanly.
    clean: bool,
    exceeded: Option<Arc<AtomicBool>>,
}

impl EndsWithGuest {
    pub fn new(
        inner: WasiBody,
        finished: tokio::sync::oneshot::Receiver<()>,
        exceeded: Option<Arc<AtomicBool>>,
    ) -> Self {
        EndsWithGuest { inner, inner_done: false, finished, clean: false, exceeded }
    }

    /// The guest's outcome, once known: `Err` when it stopped before finishing.
    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HttpError>> {
        if self.clean {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.finished).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.clean = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(_)) => {
                Poll::Ready(Err(HttpError::InternalError(Some("the handler stopped mid-body".into()))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Body for EndsWithGuest {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if !self.inner_done {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(None) => self.inner_done = true,
                Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame)),
                // A guest that fails while the client waits for more fails the body now.
                Poll::Pending => {
                    return match self.poll_outcome(cx) {
                        Poll::Ready(Err(stopped)) => Poll::Ready(Some(Err(stopped))),
                        _ => Poll::Pending,
                    };
                }
            }
        }
        if self.exceeded.as_ref().is_some_and(|e| e.load(Ordering::Relaxed)) {
            return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(None))));
        }
        match std::task::ready!(self.poll_outcome(cx)) {
            Ok(()) => Poll::Ready(None),
            Err(stopped) => Poll::Ready(Some(Err(stopped))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.clean && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
