//! The one error type of the HTTP handlers (other than intake, which has its
//! own seed-000 answer contract). Each variant says its status; internal
//! details are logged, never shown to the caller.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("the store is not answering; try again")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store failed while answering a request");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, axum::Json(json!({"error": self.to_string()}))).into_response()
    }
}
