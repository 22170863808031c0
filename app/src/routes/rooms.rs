//! The rooms API: create, list and fetch watch-together rooms. Fetching one reads
//! through the Redis cache (`room:<id>`, 60 s), which is where the app's cache hit and
//! miss counters come from.

use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// How long a fetched room stays in the cache.
const CACHE_TTL_SECONDS: u64 = 60;

/// The rooms routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/rooms", get(list).post(create))
        .route("/api/rooms/{id}", get(fetch))
}

/// A room as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Room {
    /// The room's id.
    pub id: i64,
    /// Its display name, 1 to 100 characters.
    pub name: String,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The body of `POST /api/rooms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoom {
    /// The display name.
    pub name: String,
}

/// Runs a query under the database timeout and records its duration.
async fn timed<T>(
    state: &AppState,
    query: &'static str,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, ApiError> {
    let start = Instant::now();
    let result = tokio::time::timeout(state.db_timeout, fut).await;
    metrics::histogram!("db_query_duration_seconds", "query" => query)
        .record(start.elapsed().as_secs_f64());
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if !matches!(e, sqlx::Error::PoolTimedOut) => Err(ApiError::Unavailable(
            crate::error::hidden("the database failed", e),
        )),
        Ok(Err(_)) | Err(_) => Err(ApiError::Unavailable(format!(
            "database did not answer within {:?}",
            state.db_timeout
        ))),
    }
}

async fn create(
    State(state): State<AppState>,
    body: Result<Json<NewRoom>, JsonRejection>,
) -> Result<(StatusCode, Json<Room>), ApiError> {
    let Json(new) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::BadRequest(
            "name must be 1 to 100 characters".to_string(),
        ));
    }
    let room = timed(
        &state,
        "insert_room",
        sqlx::query_as::<_, Room>(
            "INSERT INTO rooms (name) VALUES ($1) RETURNING id, name, created_at",
        )
        .bind(name)
        .fetch_one(&state.db),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(room)))
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<Room>>, ApiError> {
    let rooms = timed(
        &state,
        "list_rooms",
        sqlx::query_as::<_, Room>(
            "SELECT id, name, created_at FROM rooms ORDER BY id DESC LIMIT 100",
        )
        .fetch_all(&state.db),
    )
    .await?;
    Ok(Json(rooms))
}

async fn fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Room>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("room id {id:?} is not a number")))?;
    let key = format!("room:{id}");
    let mut conn = state.cache.clone();
    // The cache is an optimisation: when Redis fails we count it and read the database.
    let cached =
        tokio::time::timeout(state.cache_timeout, conn.get::<_, Option<String>>(&key)).await;
    match cached {
        Ok(Ok(Some(json))) => {
            if let Ok(room) = serde_json::from_str::<Room>(&json) {
                metrics::counter!("cache_requests_total", "operation" => "get_room", "result" => "hit").increment(1);
                return Ok(Json(room));
            }
            metrics::counter!("cache_requests_total", "operation" => "get_room", "result" => "miss").increment(1);
        }
        Ok(Ok(None)) => metrics::counter!("cache_requests_total", "operation" => "get_room", "result" => "miss").increment(1),
        _ => metrics::counter!("cache_requests_total", "operation" => "get_room", "result" => "error").increment(1),
    }
    let room = timed(
        &state,
        "get_room",
        sqlx::query_as::<_, Room>("SELECT id, name, created_at FROM rooms WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.db),
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("room {id} does not exist")))?;
    if let Ok(json) = serde_json::to_string(&room) {
        let _ = tokio::time::timeout(
            state.cache_timeout,
            conn.set_ex::<_, _, ()>(&key, json, CACHE_TTL_SECONDS),
        )
        .await;
    }
    Ok(Json(room))
}
