//! `/api/silences`: list (`GET`), add (`POST`), expire (`DELETE /api/silences/{id}`).
//!
//! Every call needs `Authorization: Bearer <VIGIL_API_TOKEN>`: a silence can hide an
//! outage, so nobody who merely reaches the port may make one. The token is compared
//! in constant time. Without a token configured the endpoints answer 401 and say so.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::{ApiState, error};
use crate::route::silence::{NewSilence, SilenceError};

/// Whether two byte strings are equal, in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `None` when the request carries the right bearer token, else the 401 to answer;
/// `disabled` says what is off without a token (`silences are disabled`).
pub(crate) fn check_token(
    state: &ApiState,
    headers: &HeaderMap,
    disabled: &str,
) -> Option<Response> {
    let Some(token) = &state.token else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("{disabled}: start Vigil with VIGIL_API_TOKEN set"),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared as digests: equal length whatever was sent, so the time says nothing
    // of the token's length either.
    use sha2::Digest;
    let (given, wanted) = (
        sha2::Sha256::digest(given),
        sha2::Sha256::digest(token.expose()),
    );
    if constant_time_eq(&given, &wanted) {
        None
    } else {
        Some(
            (
                [(header::WWW_AUTHENTICATE, "Bearer")],
                error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid Authorization: Bearer token is required",
                ),
            )
                .into_response(),
        )
    }
}

fn no_paging() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no_routing",
        "paging is not configured: set routing: in the config",
    )
}

fn failure(e: SilenceError) -> Response {
    let (code, kind) = match &e {
        SilenceError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        SilenceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        SilenceError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
    };
    error(code, kind, e.to_string())
}

/// `GET /api/silences`: every silence with its state, newest last.
pub async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(r) = check_token(&state, &headers, "silences are disabled") {
        return r;
    }
    let Some(p) = &state.paging else {
        return no_paging();
    };
    let now = Utc::now();
    let silences: Vec<_> = p
        .silences
        .list()
        .into_iter()
        .map(|s| {
            let state = s.state(now);
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["status"] = json!({ "state": state });
            v
        })
        .collect();
    Json(json!({ "silences": silences })).into_response()
}

/// `POST /api/silences`: adds one; 200 with its id.
pub async fn add(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = check_token(&state, &headers, "silences are disabled") {
        return r;
    }
    let Some(p) = &state.paging else {
        return no_paging();
    };
    let new: NewSilence = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not a silence: {e}"),
            );
        }
    };
    match p.silences.add(new, Utc::now()).await {
        Ok(s) => Json(json!({ "silenceID": s.id, "silence": s })).into_response(),
        Err(e) => failure(e),
    }
}

/// `DELETE /api/silences/{id}`: expires it now.
pub async fn expire(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = check_token(&state, &headers, "silences are disabled") {
        return r;
    }
    let Some(p) = &state.paging else {
        return no_paging();
    };
    match p.silences.expire(&id, Utc::now()).await {
        Ok(s) => Json(json!({ "status": "expired", "silence": s })).into_response(),
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
