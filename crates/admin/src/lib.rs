//! The admin API and the dashboard, on a listener of their own (never the public one).
//!
//! Reads are open to whoever can reach the listener (loopback by default) under its own
//! address or a configured name (never a name a web page could rebind); changes need
//! `Authorization: Bearer <token>`. [`router`] builds the whole API, so tests drive it
//! in-process and `membrane serve` puts it on `--admin-listen`.

mod api;
mod error;
mod hosts;
pub mod token;
mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use membrane_http::Metrics;
use membrane_runtime::Deployment;
use std::sync::Arc;

pub use error::ApiError;
pub use hosts::AdminHosts;
pub use views::{AppView, AuditPage, StatsView};

/// The largest component a swap may upload. Components from other toolchains
/// (componentize-py, jco) are 10–20 MB.
pub const MAX_UPLOAD_BYTES: usize = 256 * 1024 * 1024;

/// What the admin API reads and changes.
#[derive(Clone)]
pub struct AdminState {
    pub deployment: Arc<Deployment>,
    /// The HTTP server's counters, when serving: they join the app's in `/metrics`.
    pub metrics: Option<Arc<Metrics>>,
    /// The bearer token changes need.
    pub token: Arc<str>,
    /// The `Host` names requests are answered under; [`serve`] adds the listener's address.
    pub hosts: AdminHosts,
}

impl AdminState {
    pub fn new(deployment: Arc<Deployment>, token: impl Into<Arc<str>>) -> AdminState {
        AdminState { deployment, metrics: None, token: token.into(), hosts: AdminHosts::default() }
    }
}

/// Every admin route.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(api::dashboard))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/app", get(api::app))
        .route("/api/stats", get(api::stats))
        .route("/api/links/latency", get(api::link_latency))
        .route("/api/audit", get(api::audit))
        .route("/api/traces", get(api::traces))
        .route("/api/components/{name}/swap", post(api::swap))
        .route("/api/components/{name}/rollback", post(api::rollback))
        .route("/api/components/{name}/restart", post(api::restart))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), hosts::check))
        .with_state(state)
}

/// Serves [`router`] on `listener` until the process ends, answering under the
/// listener's own address besides `state.hosts`.
pub async fn serve(listener: tokio::net::TcpListener, mut state: AdminState) -> std::io::Result<()> {
    state.hosts.listener = Some(listener.local_addr()?);
    axum::serve(listener, router(state)).await
}
