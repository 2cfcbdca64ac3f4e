//! The endpoints. Changes run off the async executor (they compile) and are authorized
//! before anything is read from the body.

use crate::error::ApiError;
use crate::views::{AppView, AuditPage, StatsView};
use crate::{AdminState, token};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use membrane_runtime::{Change, DeployError, Deployment, Source};
use serde::{Deserialize, Serialize};

const DASHBOARD: &str = include_str!("dashboard/index.html");

pub async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the app is loaded (it is, or this listener would not be up) and its
/// key-value store answers.
pub async fn readyz(State(state): State<AdminState>) -> Response {
    match state.deployment.current().ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
    }
}

pub async fn metrics(State(state): State<AdminState>) -> Response {
    let text = match &state.metrics {
        Some(metrics) => metrics.render(&state.deployment.current()),
        None => String::new(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn app(State(state): State<AdminState>) -> Json<AppView> {
    Json(AppView::of(&state.deployment))
}

pub async fn stats(State(state): State<AdminState>) -> Json<StatsView> {
    let requests = state.metrics.as_ref().map(|m| m.requests()).unwrap_or_default();
    Json(StatsView::of(&state.deployment.current(), requests))
}

/// `GET /api/links/latency`: each link's p50 and p99 over the last five minutes, by
/// window, for the dashboard's per-edge charts.
pub async fn link_latency(State(state): State<AdminState>) -> Json<Vec<membrane_runtime::LinkLatency>> {
    Json(state.deployment.current().link_latency())
}

/// Traces shown at most, slowest first.
const SLOWEST_TRACES: usize = 20;

#[derive(Serialize)]
pub struct TracesView {
    /// Whether this process traces (`--otlp-endpoint`); without it there are none.
    pub tracing: bool,
    /// The slowest recent traces, each a tree of spans.
    pub traces: Vec<membrane_telemetry::TraceView>,
}

pub async fn traces() -> Json<TracesView> {
    Json(TracesView {
        tracing: membrane_telemetry::tracer().is_some(),
        traces: membrane_telemetry::slowest_traces(SLOWEST_TRACES),
    })
}

#[derive(Deserialize)]
pub struct Since {
    #[serde(default)]
    since: u64,
}

pub async fn audit(State(state): State<AdminState>, Query(Since { since }): Query<Since>) -> Json<AuditPage> {
    let events = state.deployment.audit().since(since);
    let next = events.last().map_or(since, |e| e.seq);
    Json(AuditPage { events, next })
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    if !token::matches(given, &state.token) {
        return Err(ApiError::Unauthorized);
    }
    Ok(())
}

/// A swap's body: the component's bytes, or `{"path": "…"}` naming a file on the host.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapFromPath {
    path: std::path::PathBuf,
}

pub async fn swap(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Change>, ApiError> {
    authorize(&state, &headers)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let source = if json {
        let SwapFromPath { path } = serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!("a JSON swap body is {{\"path\": \"/path/to/component.wasm\"}}: {e}"))
        })?;
        Source::Path(path)
    } else if body.is_empty() {
        return Err(ApiError::BadRequest(
            "send the component's bytes as the body (Content-Type: application/wasm), \
             or {\"path\": \"…\"} as application/json"
                .into(),
        ));
    } else {
        Source::Bytes(body.to_vec())
    };
    publish(&state, "swap", move |d| d.swap(&name, source)).await
}

/// Runs a change off the async executor (it compiles and checks a whole app version).
async fn publish(
    state: &AdminState,
    what: &'static str,
    change: impl FnOnce(&Deployment) -> Result<Change, DeployError> + Send + 'static,
) -> Result<Json<Change>, ApiError> {
    let deployment = state.deployment.clone();
    let change = tokio::task::spawn_blocking(move || change(&deployment))
        .await
        .map_err(|e| ApiError::Internal(format!("{what} task failed: {e}")))??;
    Ok(Json(change))
}

pub async fn rollback(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Change>, ApiError> {
    authorize(&state, &headers)?;
    publish(&state, "rollback", move |d| d.rollback(&name)).await
}

pub async fn restart(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers)?;
    state.deployment.restart(&name).await?;
    Ok(Json(serde_json::json!({ "component": name, "restarted": true })))
}
