//! Every way an admin request fails, mapped to a response in one place. Messages name
//! what the operator sent and what to change; host internals stay in the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use membrane_runtime::DeployError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid `Authorization: Bearer <token>` header is required; the token is in the file serve printed")]
    Unauthorized,
    #[error("no such admin endpoint: {0}; see GET /api/app, /api/stats, /api/audit, /metrics")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "the admin API does not answer to Host {0:?}, so that no web page can reach it by rebinding a name; \
         use the address serve printed (`admin http://…`), localhost, or pass --admin-host NAME to serve"
    )]
    Misdirected(String),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// Something in the host failed; the detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Deploy(DeployError::UnknownComponent { .. }) => StatusCode::NOT_FOUND,
            ApiError::Deploy(DeployError::Invalid { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Deploy(DeployError::Incompatible(_) | DeployError::NothingToRollBack { .. }) => {
                StatusCode::CONFLICT
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(target: "membrane::admin", "{detail}");
        }
        let status = self.status();
        let mut response = (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
