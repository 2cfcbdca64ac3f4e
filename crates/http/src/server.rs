//! The listener: accepts connections, speaks HTTP/1.1 and HTTP/2 (h2c), and on shutdown
//! stops accepting and drains requests in flight.

use crate::ingress::IngressLimits;
use crate::metrics::Metrics;
use crate::reuse::Reuse;
use crate::tenants::Tenants;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use membrane_runtime::Deployment;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the app has no [[route]]; add one, e.g. [[route]] path = \"/\" component = \"frontend\"")]
    NoRoutes,
    #[error(
        "--instance-concurrency {concurrency} needs --max-instance-reuse of at least {concurrency}: the requests \
         one instance serves in all, of which up to {concurrency} at once"
    )]
    Concurrency { concurrency: usize },
}

pub struct Server {
    /// The app version serving now; each request holds the version it started on.
    pub(crate) deployment: Arc<Deployment>,
    pub(crate) limits: IngressLimits,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) tenants: Tenants,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) reuse: Arc<Reuse>,
    pub(crate) spares: Arc<crate::spares::Spares>,
    pub(crate) shared: crate::shared::Shared,
}

impl Server {
    /// Serves the routes of `deployment`'s app (loading it checked that each route leads
    /// to an HTTP handler). Tenants are read from the app as it starts.
    pub fn new(deployment: Arc<Deployment>, limits: IngressLimits) -> Result<Server, ServerError> {
        let app = deployment.current();
        if app.router().routes().is_empty() {
            return Err(ServerError::NoRoutes);
        }
        let concurrency = limits.instance_concurrency;
        if concurrency > 1 && limits.max_instance_reuse < concurrency {
            return Err(ServerError::Concurrency { concurrency });
        }
        let shared = crate::shared::Shared::new(concurrency, limits.max_instance_reuse);
        let permits = Arc::new(Semaphore::new(limits.max_concurrent));
        let tenants = Tenants::new(&app.spec.tenants);
        let reuse = Arc::new(Reuse::new(limits.max_instance_reuse));
        let spares = Arc::new(crate::spares::Spares::new(limits.spare_instances));
        Ok(Server { deployment, limits, permits, tenants, metrics: Arc::default(), reuse, spares, shared })
    }

    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.deployment
    }

    /// The server's counters: requests, latency, traps and throttles.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
                        let mut r = crate::body::plain(
                            http::StatusCode::OK,
                            &server.metrics.render(&server.deployment.current()),
                        );
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
