//! A request to a WASI 0.3 handler (`wasi:http/handler@0.3.0`): served by the runtime's
//! [`membrane_runtime::serve_p3`] in a fresh instance, its bodies streaming both ways; here,
//! what ingress makes of it (its permits held to the end, its faults counted, its answer
//! in the one request path's terms).

use crate::body::LimitedBody;
use crate::handler::{Call, Response};
use crate::reuse::{Idle, Made};
use crate::server::Server;
use http_body_util::BodyExt;
use membrane_runtime::{Fault, HandlerCall, SandboxState};
use wasmtime::Store;
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
        let exceeded = request.body().exceeded.clone();
        let instances = call.app.instances(&call.component).expect("routes name loaded components").clone();
        let (metrics, component) = (self.metrics.clone(), call.component.clone());
        let (reuse, generation, tenant) = (self.reuse.clone(), call.app.generation(), call.tenant.clone());
        let reused = call.component.clone();
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
            keep: Some(Box::new(move |store, service, uses| {
                let idle = Idle { store, instance: Made::P3(service), uses, generation };
                reuse.give_back(&reused, idle, tenant.as_deref());
            })),
        };
        let request = request.map(|body| body.boxed_unsync());
        membrane_runtime::serve_p3(instances, store, pre, instance, request, handler)
    }
}
