//! Health endpoints: `/api/health` for the load balancer, and one per dependency for
//! people and for Vigil. Each answers within its dependency's timeout, also when the
//! dependency accepts connections and never replies.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

/// The health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/health/database", get(database))
        .route("/api/health/cache", get(cache))
}

/// `GET /api/health`: the process is up and serving. It checks no dependency on
/// purpose: the load balancer must not take every task out when the database blips.
async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

fn unhealthy(reason: String, latency_ms: f64) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "error", "reason": reason, "latency_ms": latency_ms })),
    )
}

/// `GET /api/health/database`: a `SELECT 1` round trip, its latency and the pool.
async fn database(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let start = Instant::now();
    let result = tokio::time::timeout(
        state.db_timeout,
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db),
    )
    .await;
    let elapsed = start.elapsed();
    crate::telemetry::record(
        "app_db_query_duration_seconds",
        &[("query", "health_select_1")],
        elapsed.as_secs_f64(),
    );
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let size = state.db.size();
    let idle = state.db.num_idle() as u32;
    match result {
        Ok(Ok(1)) => (
            StatusCode::OK,
            Json(json!({
                "status": "ok",
                "latency_ms": latency_ms,
                "pool": { "size": size, "idle": idle, "in_use": size.saturating_sub(idle),
                          "max": state.db.options().get_max_connections() },
            })),
        ),
        Ok(Ok(other)) => unhealthy(format!("SELECT 1 returned {other}"), latency_ms),
        Ok(Err(e)) if !matches!(e, sqlx::Error::PoolTimedOut) => {
            unhealthy(crate::error::hidden("database query failed", e), latency_ms)
        }
        // The pool's own wait for a live connection ran out: the same hang, seen
        // from the pool's side.
        Ok(Err(_)) | Err(_) => unhealthy(
            format!("database did not answer within {:?}", state.db_timeout),
            latency_ms,
        ),
    }
}

/// The key the cache check reads and, when it is missing, writes back.
const HEALTH_KEY: &str = "watch-together:health";

/// `GET /api/health/cache`: a PING round trip and its latency, then a read of a
/// sentinel key (counted as a hit or a miss under `operation="health_check"`, so the
/// cache counters exist from the first check and can be told apart from real traffic).
async fn cache(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let mut conn = state.cache.clone();
    let start = Instant::now();
    let result = tokio::time::timeout(state.cache_timeout, async {
        let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
        let present: Option<String> = redis::cmd("GET")
            .arg(HEALTH_KEY)
            .query_async(&mut conn)
            .await?;
        let result = if present.is_some() { "hit" } else { "miss" };
        crate::telemetry::increment(
            "app_cache_requests_total",
            &[("operation", "health_check"), ("result", result)],
        );
        if present.is_none() {
            redis::cmd("SET")
                .arg(HEALTH_KEY)
                .arg("ok")
                .arg("EX")
                .arg(300)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok::<String, redis::RedisError>(pong)
    })
    .await;
    let elapsed = start.elapsed();
    crate::telemetry::record(
        "cache_command_duration_seconds",
        &[("command", "ping")],
        elapsed.as_secs_f64(),
    );
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(pong)) if pong == "PONG" => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "latency_ms": latency_ms })),
        ),
        Ok(Ok(other)) => unhealthy(format!("PING answered {other:?}"), latency_ms),
        Ok(Err(e)) => unhealthy(crate::error::hidden("cache command failed", e), latency_ms),
        Err(_) => unhealthy(
            format!("cache did not answer within {:?}", state.cache_timeout),
            latency_ms,
        ),
    }
}
