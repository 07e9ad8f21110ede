//! The one error type of the HTTP handlers (other than intake, which has its
//! own seed-000 answer contract). Each variant says its status; internal
//! details are logged, never shown to the caller.

use axum::http::{StatusCode, header};
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
    #[error("the body is larger than the {0}-byte limit (server.max_body_bytes)")]
    TooLarge(usize),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// No or a wrong bearer token: 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
}

impl ApiError {
    /// A JSON body that could not be read: 413 when it was too large,
    /// else 400 saying what was `expected`.
    pub fn from_json(
        e: axum::extract::rejection::JsonRejection,
        expected: &str,
        limit: usize,
    ) -> ApiError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadRequest(format!("expected {expected}: {}", e.body_text()))
        }
    }
}

/// A `limit=N` query parameter: `default` when absent, refused outside
/// 1..=`max` (a negative or zero limit is a mistake, not a request for one).
pub fn limit(raw: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match raw {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit={n} is out of range; use 1 to {max}"
        ))),
    }
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
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    axum::Json(json!({"error": self.to_string()})),
                )
                    .into_response();
            }
        };
        (status, axum::Json(json!({"error": self.to_string()}))).into_response()
    }
}
