//! The listener: accepts connections, speaks HTTP/1.1 and HTTP/2 (h2c), and on shutdown
//! stops accepting and drains requests in flight.

use crate::ingress::IngressLimits;
use crate::metrics::Metrics;
use crate::reuse::Reuse;
use crate::router::Router;
use crate::tenants::Tenants;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use membrane_runtime::App;
use membrane_runtime::sandbox::SandboxState;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("route to `{component}`: no such component; declared: {known}")]
    UnknownComponent { component: String, known: String },
    #[error(
        "component `{component}` cannot serve HTTP: it does not export wasi:http/incoming-handler; \
         it exports: {exports}"
    )]
    NotHandler { component: String, exports: String },
    #[error("the app has no [[route]]; add one, e.g. [[route]] path = \"/\" component = \"frontend\"")]
    NoRoutes,
}

pub struct Server {
    pub(crate) app: App,
    pub(crate) router: Router,
    pub(crate) handlers: HashMap<String, ProxyPre<SandboxState>>,
    pub(crate) limits: IngressLimits,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) tenants: Tenants,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) reuse: Arc<Reuse>,
}

impl Server {
    /// Checks that every route leads to an HTTP handler, before anything listens.
    pub fn new(app: App, router: Router, limits: IngressLimits) -> Result<Server, ServerError> {
        if router.routes().is_empty() {
            return Err(ServerError::NoRoutes);
        }
        let mut handlers = HashMap::new();
        for route in router.routes() {
            let Some(instances) = app.instances(&route.component) else {
                return Err(ServerError::UnknownComponent {
                    component: route.component.clone(),
                    known: app.spec.components.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            };
            let pre = ProxyPre::new(instances.pre().clone()).map_err(|_| ServerError::NotHandler {
                component: route.component.clone(),
                exports: instances
                    .pre()
                    .component()
                    .component_type()
                    .exports(app.engine().engine())
                    .map(|(n, _)| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            handlers.insert(route.component.clone(), pre);
        }
        let permits = Arc::new(Semaphore::new(limits.max_concurrent));
        let tenants = Tenants::new(&app.spec.tenants);
        let reuse = Arc::new(Reuse::new(limits.max_instance_reuse));
        Ok(Server { app, router, handlers, limits, permits, tenants, metrics: Arc::default(), reuse })
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Serves `listener` until `shutdown` resolves, then drains connections for at most
    /// the drain timeout.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(self.limits.max_header_bytes.max(8192))
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new()).max_header_list_size(self.limits.max_header_bytes as u32);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Responses go out as headers then body: without this, Nagle's algorithm and
            // the client's delayed ACK hold the second write for ~40 ms.
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let service = hyper::service::service_fn(move |request| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(request).await) }
            });
            let stream = crate::framing::Guarded::new(
                stream,
                self.limits.max_header_bytes.max(8192),
                self.limits.header_timeout,
            );
            let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            });
        }
        drop(listener);
        tracing::info!(target: "membrane::serve", "shutting down: draining requests in flight");
        if tokio::time::timeout(self.limits.drain_timeout, graceful.shutdown()).await.is_err() {
            tracing::warn!(target: "membrane::serve", "drain timeout reached; closing remaining connections");
        }
        Ok(())
    }

    /// Serves the Prometheus text format at `GET /metrics` on `listener`, until the
    /// process ends.
    pub async fn serve_metrics(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let server = self.clone();
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let server = server.clone();
                async move {
                    let response = if request.uri().path() == "/metrics" {
                        let mut r = crate::body::plain(http::StatusCode::OK, &server.metrics.render(&server.app));
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        r
                    } else {
                        crate::body::plain(http::StatusCode::NOT_FOUND, "metrics are at /metrics")
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    }
}
