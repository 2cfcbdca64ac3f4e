//! One request: routed, admitted, answered by a fresh instance of its component in a
//! store of its own, within the request deadline. Whatever the guest does, the client gets
//! a response and the host keeps serving.

use crate::access::AccessEntry;
use crate::body::{LimitedBody, plain};
use crate::server::Server;
use crate::tenants::{Tenant, Throttle};
use http::StatusCode;
use http_body_util::BodyExt;
use membrane_runtime::App;
use membrane_runtime::CallError;
use membrane_runtime::FaultKind;
use membrane_runtime::Route;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

type Response = http::Response<HyperOutgoingBody>;

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
        let (response, route) = self.respond(&app, request, host.as_deref(), &path).await;
        let entry = AccessEntry {
            method: method.to_string(),
            host: host.unwrap_or_else(|| "-".into()),
            path,
            route: route.map_or("-".into(), |r| r.prefix.clone()),
            component: route.map_or("-".into(), |r| r.component.clone()),
            status: response.status().as_u16(),
            started,
            bytes: 0,
            metrics: self.metrics.clone(),
        };
        // The entry is written when the body has been sent (or abandoned), with its size.
        response.map(|body| http_body_util::BodyExt::boxed_unsync(crate::body::Counted::new(body, entry)))
    }

    async fn respond<'a>(
        &self,
        app: &'a Arc<App>,
        request: http::Request<hyper::body::Incoming>,
        host: Option<&str>,
        path: &str,
    ) -> (Response, Option<&'a Route>) {
        let limits = &self.limits;
        let target_len = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if target_len > limits.max_url_bytes {
            return (plain(StatusCode::URI_TOO_LONG, "request target too long"), None);
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_body_bytes) {
            return (plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"), None);
        }
        let tenant = self.tenants.for_host(host);
        let tenant_permit = match tenant.map(Tenant::admit) {
            Some(Err(Throttle::Rate(wait))) => {
                let tenant = tenant.expect("matched above");
                self.metrics.throttled(&tenant.name, "rate");
                return (busy(StatusCode::TOO_MANY_REQUESTS, "over the request rate", wait.as_secs() + 1), None);
            }
            Some(Err(Throttle::Concurrency)) => {
                let tenant = tenant.expect("matched above");
                self.metrics.throttled(&tenant.name, "concurrency");
                return (busy(StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight", 1), None);
            }
            Some(Ok(permit)) => permit,
            None => None,
        };
        let Some(route) = app.router().route(host, path) else {
            return (plain(StatusCode::NOT_FOUND, "no route"), None);
        };
        let component = route.component.as_str();
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return (busy(StatusCode::SERVICE_UNAVAILABLE, "server busy, try again", 1), Some(route));
        };
        let handler = app.http_handler(component).expect("routes lead to checked handlers");
        let instances = app.instances(component).expect("routes name loaded components");
        let request = request.map(|body| LimitedBody::new(body, limits.max_body_bytes));
        let (parts, body) = request.into_parts();
        let exceeded = body.exceeded.clone();
        let request = http::Request::from_parts(parts, body);

        let limits_here = match tenant {
            Some(tenant) => tenant.narrow(&instances.limits),
            None => instances.limits.clone(),
        };
        // With instance reuse on, an idle instance that served earlier requests may take
        // this one, never across a tenant boundary (reuse.rs); by default every request
        // starts fresh.
        let generation = app.generation();
        let tenant_name = tenant.map(|t| t.name.clone());
        let reusable = self.reuse.take(component, generation, tenant_name.as_deref());
        let (mut store, reused) = match reusable {
            Some(idle) => (idle.store, Some((idle.proxy, idle.uses))),
            None => match instances.new_store_with(&[component.to_string()], &limits_here) {
                Ok(store) => (store, None),
                // This component has all its pool slots in use; others still have theirs.
                Err(full @ CallError::NoSlot { .. }) => {
                    tracing::warn!(component, "{full}");
                    return (
                        busy(StatusCode::SERVICE_UNAVAILABLE, "the component is at its instance limit", 1),
                        Some(route),
                    );
                }
                Err(error) => {
                    tracing::error!(component, "{error}");
                    return (plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"), Some(route));
                }
            },
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = (|| -> wasmtime::Result<_> {
            let req = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
            let out = store.data_mut().http().new_response_outparam(sender)?;
            Ok((req, out))
        })();
        let Ok((req, out)) = prepared else {
            return (plain(StatusCode::BAD_REQUEST, "malformed request"), Some(route));
        };
        let pre = handler.clone();
        let instances = instances.clone();
        let guest_timeout = limits_here.timeout.map(|t| t.std());
        // The task holds its app version until the guest is done, body included.
        let version = app.clone();
        let metrics = self.metrics.clone();
        let reuse = self.reuse.clone();
        let key = component.to_string();
        // The guest runs in its own task: it may keep streaming the body after the
        // response headers are sent, and it must not hold the connection's task.
        let task = tokio::spawn(async move {
            let _held = (permit, tenant_permit, version);
            let served = instances
                .enter(&mut store, guest_timeout, async |store| {
                    let (proxy, uses) = match reused {
                        Some(reused) => reused,
                        None => {
                            let proxy = pre.instantiate_async(&mut *store).await?;
                            instances.stats.instantiations.fetch_add(1, Ordering::Relaxed);
                            (proxy, 0)
                        }
                    };
                    proxy.wasi_http_incoming_handler().call_handle(&mut *store, req, out).await?;
                    Ok((proxy, uses + 1))
                })
                .await;
            match served {
                // Only an instance that finished cleanly may serve again.
                Ok((proxy, uses)) => {
                    reuse.give_back(
                        &key,
                        crate::reuse::Idle { store, proxy, uses, generation },
                        tenant_name.as_deref(),
                    );
                    Ok(())
                }
                Err(fault) => {
                    metrics.trap(&instances.name, fault.kind.name());
                    Err(fault)
                }
            }
        });
        // A client that goes away before the response takes its request with it: hyper
        // drops this future, and the guest's task must not keep the slot until its timeout.
        let abandoned = AbortOnDrop(Some(task.abort_handle()));

        let response = match tokio::time::timeout(limits.request_timeout, receiver).await {
            // A body over the limit is refused whatever the guest made of its truncation.
            Ok(Ok(Ok(_))) if exceeded.load(Ordering::Relaxed) => {
                plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            }
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(code))) => {
                tracing::warn!(component, ?code, "the handler answered with an error");
                if exceeded.load(Ordering::Relaxed) {
                    plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                } else {
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
            }
            // The guest ended without setting a response: it trapped or returned early.
            Ok(Err(_)) => match task.await {
                Ok(Err(fault)) => {
                    tracing::error!(component, "{fault}");
                    match fault.kind {
                        _ if exceeded.load(Ordering::Relaxed) => {
                            plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                        }
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
                tracing::warn!(component, "request timed out after {:?}", limits.request_timeout);
                plain(StatusCode::GATEWAY_TIMEOUT, "the handler took too long")
            }
        };
        // From here the client's interest is the body's: a client gone mid-body stops the
        // guest at once instead of leaving it (and its permits) until its timeout.
        let task = abandoned.disarm();
        (response.map(|body| crate::body::StopsGuest::new(body, task).boxed_unsync()), Some(route))
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

/// A refusal that tells the client when to try again.
fn busy(status: StatusCode, text: &str, retry_after_secs: u64) -> Response {
    let mut response = plain(status, text);
    response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(retry_after_secs));
    response
}
