//! One request: routed, admitted, answered by a fresh instance of its component in a
//! store of its own, within the request deadline. Whatever the guest does, the client gets
//! a response and the host keeps serving. WASI 0.2 and 0.3 handlers share this path and
//! part only where the guest is called (`spawn_guest`; WASI 0.3's side is in p3.rs).

use crate::access::AccessEntry;
use crate::body::{LimitedBody, plain};
use crate::reuse::Made;
use crate::server::Server;
use crate::tenants::{Tenant, Throttle};
use http::StatusCode;
use http_body_util::BodyExt;
use membrane_runtime::{App, CallError, Came, HttpHandler, Route, SandboxState};
use membrane_runtime::{Fault, FaultKind};
use membrane_telemetry::{Context, KeyValue, Span, SpanKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub(crate) type Response = http::Response<HyperOutgoingBody>;

impl Server {
    pub(crate) async fn handle(&self, request: http::Request<hyper::body::Incoming>) -> Response {
        let started = Instant::now();
        let method = request.method().clone();
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()));
        let path = request.uri().path().to_string();
        let app = self.deployment.current();
        let mut span = server_span(&request, host.as_deref());
        let tenant = self.tenants.for_host(host.as_deref());
        let (response, route) = self.respond(&app, request, host.as_deref(), tenant, &path, span.context()).await;
        let status = response.status().as_u16();
        if let Some(route) = route {
            span.rename(|| route.span_name(&method));
            span.set_prepared(|| route.span_attributes());
        }
        if let Some(tenant) = tenant {
            span.set(|| KeyValue::new("membrane.tenant", tenant.label.of(&tenant.name)));
        }
        span.set(|| KeyValue::new("http.response.status_code", i64::from(status)));
        if status >= 500 {
            span.fail(|| format!("status {status}"));
        }
        let entry = AccessEntry {
            method: method.to_string(),
            host: host.unwrap_or_else(|| "-".into()),
            path,
            route: route.map(|r| r.prefix.clone()),
            component: route.map(|r| r.component.clone()),
            status,
            started,
            bytes: 0,
            metrics: self.metrics.clone(),
            span,
        };
        // The entry is written when the body has been sent (or abandoned), with its size.
        response.map(|body| http_body_util::BodyExt::boxed_unsync(crate::body::Counted::new(body, entry)))
    }

    async fn respond<'a>(
        &self,
        app: &'a Arc<App>,
        request: http::Request<hyper::body::Incoming>,
        host: Option<&str>,
        tenant: Option<&Tenant>,
        path: &str,
        trace: Option<Context>,
    ) -> (Response, Option<&'a Route>) {
        let tenant_permit = match self.admit(&request, tenant) {
            Ok(permit) => permit,
            Err(refused) => return (refused.response(), None),
        };
        let Some(route) = app.router().route(host, path) else {
            return (plain(StatusCode::NOT_FOUND, "no route"), None);
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let busy = Refusal::busy(StatusCode::SERVICE_UNAVAILABLE, "server busy, try again", 1);
            return (busy.response(), Some(route));
        };
        let component = &*route.component;
        let instances = app.instances(component).expect("routes name loaded components");
        let limits = match tenant {
            Some(tenant) => tenant.narrow(instances.limits()),
            None => instances.limits().clone(),
        };
        let tenant_name = tenant.map(|t| t.name.clone());
        let request = request.map(|body| LimitedBody::new(body, self.limits.max_body_bytes));
        let exceeded = request.body().exceeded.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let shared = self.shared.applies(tenant_name.as_deref());
        let call = Call {
            app: app.clone(),
            component: component.to_string(),
            tenant: tenant_name,
            timeout: limits.timeout.map(|t| t.std()),
            _held: (permit, tenant_permit),
        };
        let spawned = match app.http_handler(component).expect("routes lead to checked handlers") {
            HttpHandler::P3(pre) if shared => {
                let pre = pre.clone();
                self.spawn_shared(call, pre, request, sender).map_err(|error| refusal(component, error))
            }
            _ => self.instance_for(app, component, call.tenant.as_deref(), &limits).and_then(|mut guest| {
                guest.store.data_mut().join_trace(trace);
                self.spawn_guest(call, guest, request, sender)
            }),
        };
        let task = match spawned {
            Ok(task) => task,
            Err(refused) => return (refused.response(), Some(route)),
        };
        // A client that goes away before the response takes its request with it: hyper
        // drops this future, and the guest's task must not keep the slot until its timeout.
        let abandoned = AbortOnDrop(Some(task.abort_handle()));
        let response = self.await_response(component, receiver, task, &exceeded).await;
        // From here the client's interest is the body's: a client gone mid-body stops the
        // guest at once instead of leaving it (and its permits) until its timeout.
        let task = abandoned.disarm();
        (response.map(|body| crate::body::StopsGuest::new(body, task).boxed_unsync()), Some(route))
    }

    /// Refuses what the ingress limits refuse before anything is routed: an overlong target,
    /// a declared body over the limit, a tenant over its rate or concurrency.
    fn admit(
        &self,
        request: &http::Request<hyper::body::Incoming>,
        tenant: Option<&Tenant>,
    ) -> Result<Option<OwnedSemaphorePermit>, Refusal> {
        let limits = &self.limits;
        let target_len = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if target_len > limits.max_url_bytes {
            return Err(Refusal::new(StatusCode::URI_TOO_LONG, "request target too long"));
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_body_bytes) {
            return Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"));
        }
        let Some(tenant) = tenant else { return Ok(None) };
        tenant.admit().map_err(|throttle| match throttle {
            Throttle::Rate(wait) => {
                self.metrics.throttled(&tenant.name, "rate");
                Refusal::busy(StatusCode::TOO_MANY_REQUESTS, "over the request rate", wait.as_secs() + 1)
            }
            Throttle::Concurrency => {
                self.metrics.throttled(&tenant.name, "concurrency");
                Refusal::busy(StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight", 1)
            }
        })
    }

    /// The store the request runs in: a fresh one with `limits` (the component's, narrowed
    /// by the tenant), a spare made ahead with the same limits and never used (spares.rs),
    /// or, with instance reuse on, an idle instance of the same app version and tenant
    /// (reuse.rs).
    fn instance_for(
        &self,
        app: &Arc<App>,
        component: &str,
        tenant: Option<&str>,
        limits: &membrane_manifest::Limits,
    ) -> Result<Guest, Refusal> {
        if let Some(idle) = self.reuse.take(component, app.generation(), tenant) {
            return Ok(Guest { store: idle.store, instance: Some((idle.instance, idle.uses)) });
        }
        if let Some(spare) = self.spares.take(app, component, tenant, limits) {
            return Ok(Guest { store: spare.store, instance: Some((Made::P2(spare.proxy), 0)) });
        }
        let instances = app.instances(component).expect("routes name loaded components");
        let mut made = instances.new_store_with(&[component.to_string()], limits);
        // Spares hold slots of the component's share: a request comes first.
        if matches!(made, Err(CallError::NoSlot { .. })) && self.spares.release(component) {
            made = instances.new_store_with(&[component.to_string()], limits);
        }
        made.map(|store| Guest { store, instance: None }).map_err(|error| refusal(component, error))
    }

    /// Runs the handler in a task of its own: it may keep streaming the body after the
    /// response headers are sent, and it must not hold the connection's task. The task
    /// holds its app version and permits until the guest is done, body included.
    fn spawn_guest(
        &self,
        call: Call,
        guest: Guest,
        request: http::Request<LimitedBody>,
        sender: tokio::sync::oneshot::Sender<Result<Response, ErrorCode>>,
    ) -> Result<tokio::task::JoinHandle<Result<(), Fault>>, Refusal> {
        let Guest { store, instance } = guest;
        match call.app.http_handler(&call.component).expect("routes lead to checked handlers").clone() {
            HttpHandler::P2(pre) => {
                let instance = instance.and_then(|(made, uses)| match made {
                    Made::P2(proxy) => Some((proxy, uses)),
                    Made::P3(_) => None,
                });
                self.spawn_p2(call, store, instance, pre, request, sender)
            }
            HttpHandler::P3(pre) => {
                let instance = instance.and_then(|(made, uses)| match made {
                    Made::P3(service) => Some((service, uses)),
                    Made::P2(_) => None,
                });
                Ok(self.spawn_p3(call, store, instance, pre, request, sender))
            }
        }
    }

    /// [`Server::spawn_guest`] for a WASI 0.2 handler: the request and the response
    /// outparam are resources the guest is handed.
    fn spawn_p2(
        &self,
        call: Call,
        mut store: wasmtime::Store<SandboxState>,
        instance: Option<(Proxy, usize)>,
        pre: ProxyPre<SandboxState>,
        request: http::Request<LimitedBody>,
        sender: tokio::sync::oneshot::Sender<Result<Response, ErrorCode>>,
    ) -> Result<tokio::task::JoinHandle<Result<(), Fault>>, Refusal> {
        let prepared = (|| -> wasmtime::Result<_> {
            let req = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
            let out = store.data_mut().http().new_response_outparam(sender)?;
            Ok((req, out))
        })();
        let Ok((req, out)) = prepared else {
            return Err(Refusal::new(StatusCode::BAD_REQUEST, "malformed request"));
        };
        let instances = call.app.instances(&call.component).expect("routes name loaded components").clone();
        let (metrics, reuse) = (self.metrics.clone(), self.reuse.clone());
        Ok(tokio::spawn(async move {
            // The whole call moves in, its permits and app version with it, until the end.
            let call = call;
            let served = instances
                .enter(&mut store, call.timeout, async |store| {
                    let how = match &instance {
                        None => Came::Fresh,
                        Some((_, 0)) => Came::Spare,
                        Some(_) => Came::Reused,
                    };
                    let _instantiation = instances.instantiation_span(store, how);
                    let (proxy, uses) = match instance {
                        Some(instance) => instance,
                        None => {
                            let proxy = pre.instantiate_async(&mut *store).await?;
                            instances.count_instantiation();
                            (proxy, 0)
                        }
                    };
                    drop(_instantiation);
                    proxy.wasi_http_incoming_handler().call_handle(&mut *store, req, out).await?;
                    Ok((proxy, uses + 1))
                })
                .await;
            match served {
                // Only an instance that finished cleanly may serve again.
                Ok((proxy, uses)) => {
                    let generation = call.app.generation();
                    let idle = crate::reuse::Idle { store, instance: Made::P2(proxy), uses, generation };
                    reuse.give_back(&call.component, idle, call.tenant.as_deref());
                    Ok(())
                }
                Err(fault) => {
                    metrics.trap(&call.component, fault.kind.name());
                    Err(fault)
                }
            }
        }))
    }

    /// The guest's response within the request deadline, or the status that says why
    /// there is none: a body over the limit, a timeout, a trap.
    async fn await_response(
        &self,
        component: &str,
        receiver: tokio::sync::oneshot::Receiver<Result<Response, ErrorCode>>,
        task: tokio::task::JoinHandle<Result<(), Fault>>,
        exceeded: &AtomicBool,
    ) -> Response {
        let too_large = || plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        match tokio::time::timeout(self.limits.request_timeout, receiver).await {
            // A body over the limit is refused whatever the guest made of its truncation.
            Ok(Ok(Ok(_))) if exceeded.load(Ordering::Relaxed) => too_large(),
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(code))) => {
                tracing::warn!(component, ?code, "the handler answered with an error");
                if exceeded.load(Ordering::Relaxed) {
                    too_large()
                } else {
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
            }
            // The guest ended without setting a response: it trapped or returned early.
            Ok(Err(_)) => match task.await {
                Ok(Err(fault)) => {
                    tracing::error!(component, "{fault}");
                    match fault.kind {
                        _ if exceeded.load(Ordering::Relaxed) => too_large(),
                        FaultKind::Timeout(_) | FaultKind::CpuTime(_) => {
                            plain(StatusCode::GATEWAY_TIMEOUT, "the handler took too long")
                        }
                        _ => plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                    }
                }
                Ok(Ok(())) => {
                    tracing::error!(component, "the handler returned without setting a response");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
                Err(join) => {
                    tracing::error!(component, "the handler's task failed: {join}");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
            },
            Err(_) => {
                task.abort();
                tracing::warn!(component, "request timed out after {:?}", self.limits.request_timeout);
                plain(StatusCode::GATEWAY_TIMEOUT, "the handler took too long")
            }
        }
    }
}

/// What a request's guest task carries: its app version (held until the guest is done),
/// where it is going, and the permits it holds.
pub(crate) struct Call {
    pub(crate) app: Arc<App>,
    pub(crate) component: String,
    pub(crate) tenant: Option<String>,
    pub(crate) timeout: Option<std::time::Duration>,
    _held: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
}

/// The store a request runs in, and the instance in it when one was made before the
/// request (a spare, with no uses, or a reused one): with the requests it has handled.
struct Guest {
    store: wasmtime::Store<SandboxState>,
    instance: Option<(Made, usize)>,
}

/// The request's server span (HTTP semantic conventions), joining the trace its
/// `traceparent` names or starting one; nothing when tracing is off.
fn server_span(request: &http::Request<hyper::body::Incoming>, host: Option<&str>) -> Span {
    let Some(parent) = membrane_telemetry::extract(request.headers()) else { return Span::default() };
    let method = membrane_telemetry::method_name(request.method());
    Span::start(method.clone(), SpanKind::Server, Some(&parent), || {
        // Room for the attributes set when the response is known, so none moves the rest.
        let mut attributes = Vec::with_capacity(11);
        attributes.extend([
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", request.uri().path().to_string()),
            KeyValue::new("network.protocol.version", membrane_telemetry::protocol_version(request.version())),
        ]);
        if let Some((address, port)) = host.map(host_and_port) {
            attributes.push(KeyValue::new("server.address", address.to_string()));
            if let Some(port) = port {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        attributes
    })
}

/// A Host header's name and port, apart, as the conventions have them (an IPv6 address
/// keeps its brackets). Split, not parsed as an `http::uri::Authority`, whose checks of
/// every character cost a traced request more than the rest of its server span's
/// attributes: hyper has taken the header as visible ASCII, and the span only shows it.
fn host_and_port(host: &str) -> (&str, Option<u16>) {
    match host.rsplit_once(':') {
        Some((address, port)) if !port.contains(']') => (address, port.parse().ok()),
        _ => (host, None),
    }
}

/// Aborts a guest's task when dropped, unless disarmed once the response is in hand.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl AbortOnDrop {
    fn disarm(mut self) -> Option<tokio::task::AbortHandle> {
        self.0.take()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Why a request's instance could not be made, as the client is told.
fn refusal(component: &str, error: CallError) -> Refusal {
    match error {
        // This component has all its pool slots in use; others still have theirs.
        full @ CallError::NoSlot { .. } => {
            tracing::warn!(component, "{full}");
            Refusal::busy(StatusCode::SERVICE_UNAVAILABLE, "the component is at its instance limit", 1)
        }
        error => {
            tracing::error!(component, "{error}");
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// A request answered by the host instead of a guest: the status, a short text, and when
/// to try again.
struct Refusal {
    status: StatusCode,
    text: &'static str,
    retry_after_secs: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, text: &'static str) -> Refusal {
        Refusal { status, text, retry_after_secs: None }
    }

    /// A refusal that tells the client when to try again.
    fn busy(status: StatusCode, text: &'static str, retry_after_secs: u64) -> Refusal {
        Refusal { status, text, retry_after_secs: Some(retry_after_secs) }
    }

    fn response(self) -> Response {
        let mut response = plain(self.status, self.text);
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::host_and_port;

    #[test]
    fn a_host_header_is_split_into_its_address_and_port() {
        assert_eq!(host_and_port("localhost:8080"), ("localhost", Some(8080)));
        assert_eq!(host_and_port("docs.example.com"), ("docs.example.com", None));
        assert_eq!(host_and_port("[::1]:443"), ("[::1]", Some(443)));
        assert_eq!(host_and_port("[::1]"), ("[::1]", None));
        assert_eq!(host_and_port("localhost:http"), ("localhost", None), "a port that is no number is left out");
    }
}
