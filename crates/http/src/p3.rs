//! A request to a WASI 0.3 handler (`wasi:http/handler@0.3.0`): the request goes in as a
//! resource whose body is a stream the guest reads as it arrives, and the response comes
//! back with a body stream the guest may go on writing after `handle` returns. Both
//! stream through the host chunk by chunk; neither is ever held whole.

use crate::body::{EndsWithGuest, LimitedBody};
use crate::handler::{Call, Response, instantiation_span};
use crate::server::Server;
use http_body_util::BodyExt;
use membrane_runtime::{Fault, SandboxState};
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::bindings::ServicePre;

impl Server {
    /// Runs a WASI 0.3 handler for `request` in a task of its own, in a fresh instance in
    /// `store`, through the one way into a guest (`Pool::enter`: its CPU, fuel, memory and
    /// wall-clock limits, fault classification and audit). The task ends when the guest
    /// has nothing left to do, its body written, not when `handle` returns.
    pub(crate) fn spawn_p3(
        &self,
        call: Call,
        mut store: Store<SandboxState>,
        pre: ServicePre<SandboxState>,
        request: http::Request<LimitedBody>,
        sender: tokio::sync::oneshot::Sender<Result<Response, ErrorCode>>,
    ) -> tokio::task::JoinHandle<Result<(), Fault>> {
        let exceeded = request.body().exceeded.clone();
        let instances = call.app.instances(&call.component).expect("routes name loaded components").clone();
        let metrics = self.metrics.clone();
        // The handles of the async ABI's tasks, streams and futures live in the store's own
        // table; they are bounded like the host's.
        let max = instances.limits().host_resources as usize;
        if let Some(table) = store.concurrent_resource_table() {
            table.set_max_capacity(max);
        }
        tokio::spawn(async move {
            // The whole call moves in, its permits and app version with it, until the end.
            let call = call;
            let (finished, finished_rx) = tokio::sync::oneshot::channel();
            let served = instances
                .enter(&mut store, call.timeout, async |store| {
                    let instantiation = instantiation_span(store, &call.component, true);
                    let service = pre.instantiate_async(&mut *store).await?;
                    instances.count_instantiation();
                    drop(instantiation);
                    let request = request.map(|body| body.boxed_unsync());
                    let (request, request_io) =
                        wasmtime_wasi_http::p3::Request::from_http(store.data_mut().http().hooks, request);
                    store
                        .run_concurrent(async |accessor| {
                            match service.handle(accessor, request).await? {
                                Ok(response) => {
                                    let response =
                                        accessor.with(|mut store| response.into_http(&mut store, request_io))?;
                                    let response = response
                                        .map(|body| EndsWithGuest::new(body, finished_rx, exceeded).boxed_unsync());
                                    let _ = sender.send(Ok(response));
                                }
                                // WASI 0.3's error codes, told in the log in WASI 0.2's terms.
                                Err(code) => {
                                    let _ = sender.send(Err(ErrorCode::InternalError(Some(format!("{code:?}")))));
                                }
                            }
                            // The guest may still be writing the body, or doing other work
                            // it started: the instance lives until it has none left.
                            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                            wasmtime::Result::Ok(())
                        })
                        .await?
                })
                .await;
            match served {
                Ok(()) => {
                    let _ = finished.send(());
                    Ok(())
                }
                Err(fault) => {
                    metrics.trap(&call.component, fault.kind.name());
                    Err(fault)
                }
            }
        })
    }
}
