//! Errors as JSON bodies: `{"error": "...", "reason": "..."}` with a fitting status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error a handler answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request names no valid credential (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The credential is valid but may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing has this id (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the resource's state, e.g. a full room (409).
    #[error("{0}")]
    Conflict(String),
    /// A dependency failed or timed out (503).
    #[error("{0}")]
    Unavailable(String),
}

/// Logs a failure's `detail` (a database's or cache's own error text, which may name
/// hosts, users, tables or the query) under the request's id, and answers what the
/// client may be told: `what` and that id.
pub fn hidden(what: &str, detail: impl std::fmt::Display) -> String {
    let id = crate::telemetry::request_id();
    tracing::error!(message = what, request_id = %id, error = %detail);
    format!("{what}; the server log has the details under request id {id}")
}

impl From<crate::domain::Invalid> for ApiError {
    fn from(e: crate::domain::Invalid) -> ApiError {
        ApiError::BadRequest(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        (
            status,
            Json(json!({
                "error": kind,
                "reason": self.to_string(),
                "request_id": crate::telemetry::request_id(),
            })),
        )
            .into_response()
    }
}

/// The answer for a path no route matches.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
