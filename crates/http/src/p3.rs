//! A request to a WASI 0.3 handler (`wasi:http/handler@0.3.0`): served by the runtime's
//! [`membrane_runtime::serve_p3`] in a fresh instance, its bodies streaming both ways; here,
//! what ingress makes of it (its permits held to the end, its faults counted, its answer
//! in the one request path's terms).

use crate::body::LimitedBody;
use crate::handler::{Call, Response};
use crate::reuse::{Idle, Made};
use crate::server::Server;
use http_body_util::BodyExt;
use membrane_runtime::{CallError, Fault, HandlerCall, Keep, SandboxState};
use wasmtime::Store;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

impl Server {
    /// Runs a WASI 0.3 handler for `request` in a task of its own, in `store`: in
    /// `instance` when one is reused, else in a fresh one; the task holds `call` (its
    /// permits and app version) until the guest is done, and gives the instance back for
    /// reuse when it finished cleanly.
    pub(crate) fn spawn_p3(
        &self,
        call: Call,
        store: Store<SandboxState>,
        instance: Option<(Service, usize)>,
        pre: ServicePre<SandboxState>,
        request: http::Request<LimitedBody>,
        sender: tokio::sync::oneshot::Sender<Result<Response, ErrorCode>>,
    ) -> tokio::task::JoinHandle<Result<(), Fault>> {
        let instances = call.app.instances(&call.component).expect("routes name loaded components").clone();
        let (reuse, generation, tenant) = (self.reuse.clone(), call.app.generation(), call.tenant.clone());
        let reused = call.component.clone();
        let keep: Keep = Box::new(move |store, service, uses| {
            let idle = Idle { store, instance: Made::P3(service), uses, generation };
            reuse.give_back(&reused, idle, tenant.as_deref());
        });
        let (request, handler) = self.handler_call(call, request, sender, Some(keep));
        membrane_runtime::serve_p3(instances, store, pre, instance, request, handler)
    }

    /// Serves `request` in a WASI 0.3 instance shared with other requests (shared.rs).
    pub(crate) fn spawn_shared(
        &self,
        call: Call,
        pre: ServicePre<SandboxState>,
        request: http::Request<LimitedBody>,
        sender: tokio::sync::oneshot::Sender<Result<Response, ErrorCode>>,
    ) -> Result<tokio::task::JoinHandle<Result<(), Fault>>, CallError> {
        let instances = call.app.instances(&call.component).expect("routes name loaded components").clone();
        let (component, generation) = (call.component.clone(), call.app.generation());
        let (request, handler) = self.handler_call(call, request, sender, None);
        self.shared.serve(&component, generation, &instances, &pre, request, handler)
    }

    /// What the runtime needs of a request to a WASI 0.3 handler: the request, and the
    /// call that answers the client, counts faults and holds `call` to the end.
    fn handler_call(
        &self,
        call: Call,
        request: http::Request<LimitedBody>,
        sender: tokio::sync::oneshot::Sender<Result<Response, ErrorCode>>,
        keep: Option<Keep>,
    ) -> (http::Request<WasiBody>, HandlerCall) {
        let exceeded = request.body().exceeded.clone();
        let (metrics, component) = (self.metrics.clone(), call.component.clone());
        let handler = HandlerCall {
            timeout: call.timeout,
            exceeded: Some(exceeded),
            respond: Box::new(move |answer| {
                // WASI 0.3's error codes, told in the log in WASI 0.2's terms.
                let answer = answer.map_err(|code| ErrorCode::InternalError(Some(format!("{code:?}"))));
                let _ = sender.send(answer);
            }),
            on_fault: Box::new(move |fault| metrics.trap(&component, fault.kind.name())),
            held: Box::new(call),
            keep,
        };
        (request.map(|body| body.boxed_unsync()), handler)
    }
}
