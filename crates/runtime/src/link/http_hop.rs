//! A middleware's link to the next HTTP handler. A component of the `wasi:http/middleware`
//! world imports `wasi:http/handler@0.3.0` and exports it; a `[[link]]` from that import to
//! another component's handler makes each call a request that a fresh instance of the next
//! component serves ([`crate::http_p3::serve`], as for a request from ingress: its own
//! store, limits, faults and audit), its bodies streaming between the two stores through
//! the host. Chained, such links make auth -> rate limit -> app, each hop its own membrane.

use super::span::LinkSpan;
use super::{Components, Link};
use crate::fault::FaultKind;
use crate::http_p3::{self, HandlerCall};
use crate::pool::CallError;
use crate::sandbox::SandboxState;
use crate::wit_compat;
use http::Uri;
use http::header::HOST;
use http::uri::{Authority, Scheme};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use wasmtime::component::{Accessor, LinkerInstance, Resource};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::{Request, Response};

/// The interface a middleware imports and every WASI 0.3 handler exports.
pub const HTTP_HANDLER_P3: &str = "wasi:http/handler@0.3.0";

/// Whether a link of `import` is a hop to the next HTTP handler.
pub fn is_http_hop(import: &str) -> bool {
    wit_compat::same_interface(import, HTTP_HANDLER_P3)
}

/// Defines the consumer's imported `handle` as a call into the next handler of `link`.
pub(crate) fn define<A: Components>(
    instance: &mut LinkerInstance<'_, SandboxState>,
    link: Arc<Link<A>>,
) -> wasmtime::Result<()> {
    instance.func_wrap_concurrent(
        "handle",
        move |accessor: &Accessor<SandboxState>, (request,): (Resource<Request>,)| {
            let link = link.clone();
            Box::pin(async move { Ok((forward(accessor, &link, request).await?,)) })
        },
    )
}

/// The request as ingress would hand it over: its target a path, one Host (`into_http`
/// appends the authority as a second).
fn as_from_ingress<B>(request: &mut http::Request<B>) {
    let hosts: Vec<_> = request.headers().get_all(HOST).iter().cloned().collect();
    if let Some(first) = hosts.first().cloned() {
        request.headers_mut().insert(HOST, first);
    }
    if let Some(target) = request.uri().path_and_query().cloned() {
        *request.uri_mut() = Uri::from(target);
    }
}

/// Takes `request` out of the consumer's store, has a fresh instance of the next handler
/// answer it, and hands the response to the consumer: its body streams from the next
/// handler's store as the consumer reads it. A next handler that fails before answering
/// is an `internal-error` to the consumer, which decides what its client sees.
async fn forward<A: Components>(
    accessor: &Accessor<SandboxState>,
    link: &Link<A>,
    request: Resource<Request>,
) -> wasmtime::Result<Result<Resource<Response>, ErrorCode>> {
    let (request, trace) = accessor.with(|mut store| -> wasmtime::Result<_> {
        let mut request = store.get().table.delete(request).map_err(wasmtime::Error::from)?;
        // A request as ingress made it names no scheme or authority (its target is a path),
        // and `into_http` builds an absolute URI from both: they are filled in here, from
        // the request's Host, and taken out again below.
        let host = request.headers.get(HOST).and_then(|h| h.to_str().ok()).and_then(|h| h.parse().ok());
        request.scheme.get_or_insert(Scheme::HTTP);
        if request.authority.is_none() {
            request.authority = Some(host.unwrap_or(Authority::from_static("localhost")));
        }
        let trace = store.get().trace().cloned();
        Ok((request.into_http(&mut store, async { Ok(()) }), trace))
    })?;
    let mut request = match request {
        Ok((request, _options)) => request,
        Err(error) => return Ok(Err(error.downcast()?)),
    };
    as_from_ingress(&mut request);
    let internal = |why: String| Ok(Err(ErrorCode::InternalError(Some(why))));
    let Some(next) = link.provider_pool() else { return internal("the app is shutting down".into()) };
    // Checked at load: the provider exports the handler.
    let pre = ServicePre::new(next.pre().clone())?;
    let mut store = match next.new_store_with(&[next.name().to_string()], next.limits()) {
        Ok(store) => store,
        Err(refused) => return internal(refused.to_string()),
    };
    // The hop is a link call like any other: a span under the middleware's, which the next
    // handler's instance joins.
    let span = LinkSpan::start(trace.as_ref(), || link.labels(), None, &next);
    store.data_mut().join_trace(span.context().cloned());
    let timeout = match (link.timeout, next.limits().timeout.map(|t| t.std())) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // Counted like any link's calls: the dashboard and `status` show the hop's traffic.
    let stats = link.stats.clone();
    stats.calls.fetch_add(1, Relaxed);
    let started = std::time::Instant::now();
    let (answered, answer) = tokio::sync::oneshot::channel();
    let call = HandlerCall {
        timeout,
        exceeded: None,
        respond: Box::new(move |answer| {
            let _ = answered.send(answer);
        }),
        on_fault: Box::new(move |fault| {
            stats.errors.fetch_add(1, Relaxed);
            match fault.kind {
                FaultKind::Timeout(_) => stats.timeouts.fetch_add(1, Relaxed),
                _ => stats.traps.fetch_add(1, Relaxed),
            };
        }),
        held: Box::new(()),
        // A hop's instance serves one request: its store carries the hop's trace.
        keep: None,
    };
    let task = http_p3::serve(next.clone(), store, pre, None, request, call);
    // A middleware that stops waiting (its own client went away, it trapped) takes the
    // next hop's request with it; once answered, the body carries the next hop's fate.
    let pending = AbortOnDrop(task.abort_handle());
    let answer = answer.await;
    std::mem::forget(pending);
    let answer = match answer {
        Ok(answer) => {
            link.stats.record_latency(started, started.elapsed());
            span.end(&Ok::<_, CallError>(()), false);
            answer
        }
        Err(_) => {
            let error = match task.await {
                Ok(Err(fault)) => CallError::Fault(fault),
                _ => CallError::Fault(next.fault(FaultKind::Trap("returned without a response".to_string()))),
            };
            let why = error.summary();
            span.end(&Err::<(), _>(error), false);
            return internal(why);
        }
    };
    match answer {
        Ok(response) => accessor.with(|mut store| -> wasmtime::Result<_> {
            let state = store.get();
            let (response, _io) = Response::from_http(state.http().hooks, response);
            Ok(Ok(state.table.push(response).map_err(wasmtime::Error::from)?))
        }),
        Err(code) => Ok(Err(code)),
    }
}

/// Aborts the next hop's task if the middleware's call is dropped before it is answered.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
